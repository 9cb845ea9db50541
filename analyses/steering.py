"""Reproduce the steering figures of the study: layer sweeps, surgical search, the plane.

Usage (from the repository root; 13 minutes on 2 idle CPU cores with the defaults)::

    HF_HUB_OFFLINE=1 .venv/bin/python analyses/steering.py --out figures/

For each LOC language: EN and LOC vectors from the fit split, EN- and LOC-steering at every
layer and a few alphas on the eval split (``sweep_{lang}``), a Surgical Steering grid chosen on
dev with its Pareto frontier re-scored on eval, and the transfer–localization plane
(``plane_{lang}``), each as .html (reading the ``plotly.min.js`` beside it) and .png.
``steering_results.json`` holds every score with its interval and settings, the item counts,
the timings, and a side by side timing of the fast sweep against the naive hooked loop on a
small subset.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from lens_steer import load_model
from lens_steer._io import write_json_atomic
from lens_steer.data import limit_probe_set, load_probe_set
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.study import SteeringStudy, steering_study
from lens_steer.figures.steering import save_steering_figures
from lens_steer.steering import Steering, single_layer_steering


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m", help="model name or path")
    parser.add_argument("--langs", nargs="+", default=["ko", "id"], help="LOC languages")
    parser.add_argument("--layers", nargs="+", type=int, default=None, help="sweep layers (all)")
    parser.add_argument(
        "--alphas", nargs="+", type=float, default=[0.1, 0.2], help="sweep alphas (relative)"
    )
    parser.add_argument("--transfer-layers", nargs="+", type=int, default=None)
    parser.add_argument("--transfer-alphas", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument("--local-layers", nargs="+", type=int, default=None)
    parser.add_argument("--local-alphas", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument(
        "--limit", type=int, default=24,
        help="at most this many transfer groups / localization items per language in dev and "
        "eval (0: all)",
    )  # fmt: skip
    parser.add_argument("--criterion", default="sum_gain", choices=["sum_gain", "harmonic_mean"])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--speed-items", type=int, default=4,
        help="transfer and localization items of the first language in the speed comparison",
    )  # fmt: skip
    parser.add_argument("--speed-repeats", type=int, default=2)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice; 1 helps on a shared, busy machine)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("figures"))
    parser.add_argument("--no-png", action="store_true", help="write the HTML figures only")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def compare_sweep_speed(
    model: Any, study: SteeringStudy, probe: Any, lang: str, n_items: int, repeats: int
) -> dict[str, Any]:
    """Time the fast engine against the naive hooked loop on the same EN-sweep subset.

    Every layer at the first sweep alpha plus the unsteered model, on the first ``n_items``
    transfer and localization eval items; the two methods alternate, medians are reported,
    and the largest log-prob difference between them is recorded.
    """
    transfer = [i for i in probe.transfer if i.lang == lang and i.split == "eval"][:n_items]
    local = [i for i in probe.localization if i.lang == lang and i.split == "eval"][:n_items]
    items = PlaneItems.build(transfer, local, split="eval")
    alpha = study.settings["alphas"][0]
    norms = study.reference_norms[lang]
    layers = study.settings["sweep_layers"]
    en = study.vectors[lang]["en"]
    steerings: dict[str, Steering | None] = {"unsteered": None}
    for layer in layers:
        steerings[f"en@{layer}"] = single_layer_steering(
            en.at_layer(layer), layer, alpha, reference_norm=norms[layer]
        )
    times: dict[str, list[float]] = {"fast": [], "naive": []}
    outputs = {}
    for _ in range(repeats):
        for method in ("fast", "naive"):
            start = time.perf_counter()
            outputs[method] = score_steerings(
                model,
                items.requests,
                steerings,
                method=method,
                show_progress=False,  # type: ignore[arg-type]
            )
            times[method].append(time.perf_counter() - start)
    diff = max(
        abs(a - b)
        for key in steerings
        for fa, na in zip(outputs["fast"][key], outputs["naive"][key], strict=True)
        for a, b in zip(fa.logprobs, na.logprobs, strict=True)
    )
    fast, naive = statistics.median(times["fast"]), statistics.median(times["naive"])
    return {
        "lang": lang,
        "n_requests": len(items.requests),
        "n_sequences": sum(len(r.options) for r in items.requests),
        "n_steerings": len(steerings),
        "alpha": alpha,
        "layers": layers,
        "repeats": repeats,
        "fast_seconds": [round(t, 3) for t in times["fast"]],
        "naive_seconds": [round(t, 3) for t in times["naive"]],
        "speedup_median": round(naive / fast, 2),
        "max_abs_logprob_diff": diff,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model, device=args.device)
    load_seconds = time.perf_counter() - start
    probe = limit_probe_set(load_probe_set(args.langs), args.limit or None, splits=("dev", "eval"))
    study = steering_study(
        model, probe, args.langs, sweep_layers=args.layers, alphas=args.alphas,
        transfer_layers=args.transfer_layers, transfer_alphas=args.transfer_alphas,
        local_layers=args.local_layers, local_alphas=args.local_alphas,
        criterion=args.criterion, batch_size=args.batch_size, n_bootstrap=args.n_bootstrap,
        seed=args.seed, checkpoint_dir=args.checkpoint_dir, show_progress=not args.quiet,
    )  # fmt: skip
    speed = compare_sweep_speed(
        model, study, probe, args.langs[0], args.speed_items, args.speed_repeats
    )
    figure_start = time.perf_counter()
    written = save_steering_figures(
        list(study.sweeps.values()), list(study.planes.values()), args.out, png=not args.no_png
    )
    results = study.to_json()
    results["costs_seconds"].update(
        load_model=round(load_seconds, 2),
        speed_comparison=round(sum(speed["fast_seconds"]) + sum(speed["naive_seconds"]), 2),
        figures=round(time.perf_counter() - figure_start, 2),
        total=round(time.perf_counter() - start, 2),
    )
    results["speed"] = speed
    results["settings"]["limit"] = args.limit
    results["sizes"] = {
        lang: {
            split: {
                "transfer": sum(i.lang == lang and i.split == split for i in probe.transfer),
                "localization": sum(
                    i.lang == lang and i.split == split for i in probe.localization
                ),
                "parallel": sum(i.lang == lang and i.split == split for i in probe.parallel),
            }
            for split in ("fit", "dev", "eval")
        }
        for lang in args.langs
    }
    results["figures"] = {name: [str(p) for p in paths.values()] for name, paths in written.items()}
    write_json_atomic(args.out / "steering_results.json", results)

    for lang, summary in results["summary"].items():
        peaks = summary["peaks"]
        print(f"[{lang}] EN-steering transfer peak: layer {peaks['en_transfer']['layer']} "
              f"(α={peaks['en_transfer']['alpha']:g}, {peaks['en_transfer']['value']:.3f} vs "
              f"unsteered {peaks['en_transfer']['unsteered']:.3f}); LOC-steering localization "
              f"peak: layer {peaks['loc_localization']['layer']} "
              f"(α={peaks['loc_localization']['alpha']:g}, {peaks['loc_localization']['value']:.3f}"
              f" vs {peaks['loc_localization']['unsteered']:.3f})")  # fmt: skip
        for row in summary["dominance"]:
            print(f"[{lang}] {row['point']}: dominated by {row['dominated_by'] or 'none'}; "
                  f"with a disjoint interval by {row['dominated_with_disjoint_interval_by'] or 'none'}")  # fmt: skip
    print(f"fast sweep {speed['speedup_median']}x faster than the naive loop "
          f"(max |Δ log p| = {speed['max_abs_logprob_diff']:.2e})")  # fmt: skip
    print(
        f"total {results['costs_seconds']['total']:.0f} s; wrote {args.out / 'steering_results.json'}"
    )
    return results


if __name__ == "__main__":
    main()
