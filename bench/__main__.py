"""``python -m bench``: run the benchmarks on the embedded Gemma 3 270M and write the table.

Examples:
    .venv/bin/python -m bench                      # everything, 3 alternating repeats
    .venv/bin/python -m bench --quick              # small smoke run (~1-2 min)
    .venv/bin/python -m bench --only sweep --repeats 2 --out sweep-only.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402

from bench import collect, overhead, reference, scoring, sweep  # noqa: E402
from bench._config import FULL, QUICK, Sizes  # noqa: E402
from bench._timing import git_revision, library_versions, machine_info  # noqa: E402
from bench.report import HEADLINE_KEYS, check_targets, doc_path, embed_in_doc, to_markdown  # noqa: E402
from lens_steer._io import read_json, write_json_atomic, write_text_atomic  # noqa: E402
from lens_steer.models import model_id  # noqa: E402

BENCHMARKS = ("collect", "scoring", "sweep", "overhead", "reference")
_NEEDS_HF = {"overhead", "reference"}
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results.json"


def load_hf_model() -> tuple[Any, Any]:
    """The transformers model and tokenizer of the embedded Gemma 3 270M (float32, eval)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lens_steer.models import embedded_model_folder

    folder = embedded_model_folder()
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return hf_model.eval(), AutoTokenizer.from_pretrained(str(folder))


@torch.inference_mode()
def _warm_up(model: HookedTransformer, hf_model: Any | None) -> None:
    """One forward of each model first, so one-time initialisation is timed on neither side."""
    tokens = torch.full((4, 16), 2, dtype=torch.long, device=model.cfg.device)
    model(tokens)
    if hf_model is not None:
        hf_model(input_ids=tokens)


def run_benchmarks(
    names: Sequence[str],
    model: HookedTransformer,
    *,
    sizes: Sizes = FULL,
    repeats: int = 3,
    hf_model: Any | None = None,
    tokenizer: Any | None = None,
    measure_rss: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Run the named benchmarks and gather headline numbers and details into one dict.

    Headline keys of benchmarks that did not run are ``None``.
    """
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    if "reference" in names and (hf_model is None or tokenizer is None):
        raise ValueError("the reference benchmark needs the transformers model and tokenizer")
    results: dict[str, Any] = dict.fromkeys(HEADLINE_KEYS)
    details: dict[str, Any] = {}
    for name in names:
        log(f"[bench] {name} ...", flush=True)
        measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        start = time.perf_counter()
        if name == "collect":
            out = collect.run(model, sizes, repeats=repeats, measure_rss=measure_rss)
            results["collect_speedup"] = out["speedup"]
            results["collect_memory_ratio"] = out["memory_ratio"]
            out["details"]["memory_basis"] = out["memory_basis"]
        elif name == "scoring":
            out = scoring.run(model, sizes, repeats=repeats)
            results["scoring_speedup"] = out["speedup"]
        elif name == "sweep":
            out = sweep.run(model, sizes, repeats=repeats)
            results["sweep_speedup"] = out["speedup"]
            results["sweep_max_abs_diff"] = out["max_abs_diff"]
        elif name == "overhead":
            out = overhead.run(model, hf_model, sizes, repeats=repeats)
            results["steer_overhead"] = out["overhead"]
        else:
            out = reference.run(model, hf_model, tokenizer, sizes, repeats=repeats)
            results["reference_cosine_min"] = out["cosine_min"]
        details[name] = out["details"] | {
            "wall_s": time.perf_counter() - start,
            "measured_at": measured_at,
            "load_average_at_start": load,
            "torch_threads": torch.get_num_threads(),
        }
        log(f"[bench] {name} done in {details[name]['wall_s']:.0f} s", flush=True)
    results["targets"] = check_targets(results)
    results["benchmarks"] = details
    return results


def merge_results(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus the benchmarks of ``previous`` that ``new`` did not run, targets recomputed.

    Each benchmark keeps its own ``measured_at``, load average and threads; the settings list
    which benchmarks came from the earlier run.
    """
    earlier = {
        "measured_at": previous.get("settings", {}).get("started_at"),
        "load_average_at_start": previous.get("machine", {}).get("load_average_at_start"),
        "torch_threads": previous.get("machine", {}).get("torch_threads"),
    }
    kept = {
        name: earlier | details
        for name, details in previous.get("benchmarks", {}).items()
        if name not in new["benchmarks"]
    }
    merged = dict(new)
    for key in HEADLINE_KEYS:
        if merged.get(key) is None:
            merged[key] = previous.get(key)
    merged["benchmarks"] = kept | new["benchmarks"]
    merged["targets"] = check_targets(merged)
    merged["settings"] = new["settings"] | {
        "merged": {"benchmarks": sorted(kept), "from_run": previous.get("settings", {})}
    }
    return merged


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=None, help="alternating rounds per comparison (default 3)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="results JSON (a .md twin is written beside it); with the default, the table in "
        "BENCHMARKS.md is updated too",
    )  # fmt: skip
    parser.add_argument(
        "--no-rss", action="store_true", help="skip the per-side subprocess memory measurement"
    )
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the benchmarks of an existing --out file that this run does not redo",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the options, load the models, run, and write ``--out`` and its ``.md`` twin."""
    from lens_steer.models import load_model

    args = _parse(argv)
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 3)
    names = tuple(dict.fromkeys(args.only)) if args.only else BENCHMARKS
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    start = time.perf_counter()
    model = load_model("gemma-3-270m", device="cpu")
    hf_model, tokenizer = load_hf_model() if _NEEDS_HF & set(names) else (None, None)
    _warm_up(model, hf_model)
    results = run_benchmarks(
        names, model, sizes=sizes, repeats=repeats, hf_model=hf_model, tokenizer=tokenizer,
        measure_rss=not args.no_rss,
    )  # fmt: skip
    results["machine"] = machine
    results["versions"] = library_versions()
    results["settings"] = {
        "quick": args.quick,
        "repeats": repeats,
        "benchmarks": list(names),
        "sizes": sizes.to_json(),
        "model_id": model_id(model),
        "dtype": str(model.cfg.dtype).removeprefix("torch."),
        "device": str(model.cfg.device),
        "git": git_revision(ROOT),
        "started_at": started,
        "wall_s": time.perf_counter() - start,
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if args.merge and args.out.is_file():
        results = merge_results(read_json(args.out), results)
    write_json_atomic(args.out, results)
    markdown = to_markdown(results)
    write_text_atomic(args.out.with_suffix(".md"), markdown)
    doc = doc_path(ROOT)
    if args.out.resolve() == DEFAULT_OUT and doc.is_file():
        write_text_atomic(doc, embed_in_doc(doc.read_text(encoding="utf-8"), markdown))
    print(markdown)
    return results


if __name__ == "__main__":
    main()
