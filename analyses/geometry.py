"""Reproduce the geometry figures of the study: PCA per layer, EN/LOC perpendicularity, mixing.

Usage (from the repository root; about 2 minutes on 2 CPU cores)::

    HF_HUB_OFFLINE=1 .venv/bin/python analyses/geometry.py --out figures/

Writes ``pca``, ``perpendicularity`` and ``mixing`` (.html reading the ``plotly.min.js`` written
beside it, and .png) plus ``geometry_results.json`` (perpendicularity table, mixing per layer,
PCA explained variance, collection time and peak memory, and every setting) into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from lens_steer import load_model
from lens_steer._io import write_json_atomic
from lens_steer.data import LOC_LANGUAGES, limit_probe_set, load_probe_set
from lens_steer.figures import save_figure
from lens_steer.figures.geometry import geometry_figures
from lens_steer.geometry import geometry_study, measure_cost


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="gemma-3-270m",
        help="model name or path (default: the embedded Gemma 3 270M)",
    )
    parser.add_argument(
        "--langs",
        nargs="+",
        default=list(LOC_LANGUAGES),
        help="LOC languages (English is always added)",
    )
    parser.add_argument(
        "--layers", nargs="+", type=int, default=None, help="layers to read (default: all)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many parallel groups / localization items per language",
    )
    parser.add_argument(
        "--position", default="last", help="read position: last, mean or an integer index"
    )
    parser.add_argument("--split", default="fit", help="split the vectors are fitted on")
    parser.add_argument("--n-bootstrap", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path("figures"))
    parser.add_argument("--no-png", action="store_true", help="write the HTML figures only")
    parser.add_argument(
        "--save-vectors", type=Path, default=None, help="also save the EN/LOC vectors here"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    position = int(args.position) if args.position.lstrip("-").isdigit() else args.position
    load_at_start = os.getloadavg()
    with measure_cost() as load_cost:
        model = load_model(args.model, device=args.device)
    probe_set = limit_probe_set(load_probe_set(args.langs), args.limit)
    study = geometry_study(
        model, probe_set, args.langs, layers=args.layers, position=position, split=args.split,
        n_bootstrap=args.n_bootstrap, seed=args.seed, batch_size=args.batch_size,
        show_progress=not args.quiet,
    )  # fmt: skip
    results = study.to_json()
    results["settings"]["limit"] = args.limit
    results["costs"]["load_model"] = load_cost
    # The machine may be shared: say how busy it was, so the seconds can be read fairly.
    results["costs"]["environment"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_start": round(load_at_start[0], 2),
        "load_average_1min_end": round(os.getloadavg()[0], 2),
        "device": str(model.cfg.device),
    }

    start = time.perf_counter()
    written = {}
    for name, fig in geometry_figures(study).items():
        paths = save_figure(fig, args.out / name, png=not args.no_png)
        written[name] = [str(path) for path in paths.values()]
    results["costs"]["figures"] = {"seconds": round(time.perf_counter() - start, 3)}
    results["figures"] = written
    if args.save_vectors is not None:
        results["vectors"] = [str(path) for path in study.save_vectors(args.save_vectors)]
    write_json_atomic(args.out / "geometry_results.json", results)

    summary = results["summary"]
    collect = [results["costs"]["collect_parallel"], results["costs"]["collect_localization"]]
    print(f"null band ±{summary['null_band']:.3f}")
    print(
        f"cos(EN, LOC) raw in [{summary['cos_raw_range'][0]:+.3f}, {summary['cos_raw_range'][1]:+.3f}]"
    )
    print(
        f"cos(EN, LOC) standardized in [{summary['cos_std_range'][0]:+.3f}, {summary['cos_std_range'][1]:+.3f}]"
    )
    for key, mixing in summary["mixing"].items():
        print(f"mixing ({key}): best retrieval at layer {mixing['best_retrieval_layer']} "
              f"({mixing['best_retrieval_accuracy']:.3f}), lowest silhouette at layer "
              f"{mixing['lowest_silhouette_layer']} ({mixing['lowest_silhouette']:.3f})")  # fmt: skip
    print(f"collection: {sum(c['seconds'] for c in collect):.1f} s for "
          f"{sum(c['n_prompts'] for c in collect)} prompts, peak RSS "
          f"{max(c['peak_rss_mb'] or 0 for c in collect):.0f} MiB")  # fmt: skip
    print(f"wrote {args.out / 'geometry_results.json'}")
    return results


if __name__ == "__main__":
    main()
