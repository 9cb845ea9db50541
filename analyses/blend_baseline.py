"""Unsteered baselines of the shipped BLEnD-derived set on the embedded Gemma 3 270M.

Usage (from the repository root; a few minutes on 2 CPU cores)::

    HF_HUB_OFFLINE=1 .venv/bin/python analyses/blend_baseline.py --split eval

For each of the six shipped countries, on one split, with the study's own metrics
(:mod:`lens_steer.evaluate.builtin_metrics`) and summed log-probabilities:

* local-vs-US share: questions with both a local and a US annotators' answer, implicit and
  explicit prompt; Wilson 95 % intervals (``blend_localization``);
* the explicit-minus-implicit gap of the top-voted gold answer's log-probability (nats), mean over
  questions with a 95 % percentile bootstrap over questions (the gap ``gap_closure`` divides by).

Prints a markdown table and writes it with every setting to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

import lens_steer as ls
from lens_steer._io import write_json_atomic
from lens_steer.data.blend_derived import load_blend_derived, shipped_countries
from lens_steer.data.languages import parse_target
from lens_steer.evaluate.points import ScoringSettings, evaluate_points

METRICS = ("blend_localization", "gold_logprob")


def _wilson(successes: int, n: int) -> tuple[float, float]:
    interval = stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
    return float(interval.low), float(interval.high)


def _bootstrap_mean(values: np.ndarray, seed: int) -> tuple[float, float]:
    result = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", random_state=seed
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def country_baseline(model, country: str, split: str, seed: int) -> dict:
    """Local-vs-US shares and the gold-answer gap of one shipped country on one split."""
    target = parse_target(f"{next(item.lang for item in load_blend_derived([country]))}:{country}")
    items = ls.TargetItems(target=target, blend=tuple(load_blend_derived([country])))
    settings = ScoringSettings(metrics=METRICS, calibrations=("sum",), seed=seed)
    point = evaluate_points(model, items, split, {}, settings, show_progress=False)["unsteered"]
    share = [row for row in point.rows["blend_localization"] if row.included]
    implicit = int(sum(row.outcome for row in share))
    explicit = int(sum(row.reference_outcome for row in share))
    gaps = np.array([row.reference - row.margin for row in point.rows["gold_logprob"]])
    return {
        "target": target.key,
        "n_share": len(share),
        "implicit_share": implicit / len(share),
        "implicit_ci": _wilson(implicit, len(share)),
        "explicit_share": explicit / len(share),
        "explicit_ci": _wilson(explicit, len(share)),
        "n_gold": int(gaps.size),
        "gold_gap": float(gaps.mean()),
        "gold_gap_ci": _bootstrap_mean(gaps, seed),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="eval", choices=("fit", "dev", "eval"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("analyses/blend_baseline.json"))
    args = parser.parse_args(argv)
    model = ls.load_model()
    rows = [country_baseline(model, c, args.split, args.seed) for c in shipped_countries()]
    lines = [
        "| target | n (both answers) | local share, implicit | local share, explicit | "
        "n (gold) | gold gap explicit − implicit (nats) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['n_share']} | {r['implicit_share']:.3f} "
            f"[{r['implicit_ci'][0]:.3f}, {r['implicit_ci'][1]:.3f}] | {r['explicit_share']:.3f} "
            f"[{r['explicit_ci'][0]:.3f}, {r['explicit_ci'][1]:.3f}] | {r['n_gold']} | "
            f"{r['gold_gap']:+.3f} [{r['gold_gap_ci'][0]:+.3f}, {r['gold_gap_ci'][1]:+.3f}] |"
        )
    table = "\n".join(lines)
    print(table)
    record = {
        "model": "gemma-3-270m",
        "split": args.split,
        "seed": args.seed,
        "calibration": "sum",
        "intervals": "Wilson 95% (shares); percentile bootstrap 95%, 2000 resamples (gap)",
        "versions": {"lens_steer": ls.__version__},
        "countries": rows,
        "table": table,
    }
    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
