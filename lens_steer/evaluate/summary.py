"""JSON-ready summaries of sweeps and searches: every point's score, paired effect and net effect.

These rows are what ``results.json``, the report and the figures read: per grid point and axis
metric, the aggregate score with its interval, the mean per-item margin change against the
unsteered model with its paired interval and Wilcoxon p (McNemar for binary outcomes), the
effect net of the random-direction controls, and the dose (added norm, KL on neutral prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lens_steer.evaluate.effects import controlled_effect, point_effect
from lens_steer.evaluate.points import UNSTEERED, PointSet
from lens_steer.evaluate.surgical import SurgicalSearch
from lens_steer.evaluate.sweep import LayerSweep


def _effects(
    points: PointSet,
    key: str,
    controls: Sequence[str],
    variant: str,
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    score = points[key].scores.get(variant)
    out: dict[str, Any] = {"score": None if score is None else score.to_json()}
    if score is None:
        return out
    if key != UNSTEERED:
        out["vs_unsteered"] = point_effect(
            points, key, variant, n_bootstrap=n_bootstrap, seed=seed
        ).to_json()
    if controls:
        controlled = controlled_effect(
            points, key, controls, variant, n_bootstrap=n_bootstrap, seed=seed
        )
        out["control"] = controlled.control.to_json()
        out["net_of_control"] = controlled.net.to_json()
        out["control_scores"] = [
            points[name].scores[variant].value
            for name in controls
            if variant in points[name].scores
        ]
    return out


def summarize_sweep(
    sweep: LayerSweep, metrics: Sequence[str], *, n_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Per grid point: dose and, per metric, score, effect vs unsteered and net of controls."""
    unsteered = sweep.points[UNSTEERED]
    rows = []
    for point in sweep.grid:
        entry: dict[str, Any] = {
            **point.to_json(),
            "metrics": {
                metric: _effects(
                    sweep.points,
                    point.key,
                    point.controls,
                    metric,
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                )  # fmt: skip
                for metric in metrics
                if metric in unsteered.scores
            },
        }
        rows.append(entry)
    return {
        "target": sweep.target,
        "split": sweep.split,
        "unsteered": {m: s.to_json() for m, s in unsteered.scores.items()},
        "unmeasured": sweep.points.unmeasured,
        "settings": sweep.settings,
        "points": rows,
    }


def summarize_search(
    search: SurgicalSearch, metrics: Sequence[str], *, n_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The chosen points on eval (with effects and controls) and the dev grid's scores."""
    chosen = {}
    for key in search.eval.points:
        if key == UNSTEERED or key.startswith("random:"):
            continue
        chosen[key] = {
            metric: _effects(
                search.eval,
                key,
                search.controls.get(key, ()),
                metric,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )  # fmt: skip
            for metric in metrics
            if metric in search.eval[UNSTEERED].scores
        }
    dev_grid = {
        key: {m: s.value for m, s in point.scores.items() if m in metrics}
        for key, point in search.dev.points.items()
    }
    return {
        "target": search.target,
        "best": search.best,
        "frontier": list(search.frontier),
        "best_single": search.best_single,
        "controls": {k: list(v) for k, v in search.controls.items()},
        "eval": chosen,
        "eval_unsteered": {m: s.to_json() for m, s in search.eval[UNSTEERED].scores.items()},
        "dev_grid": dev_grid,
        "settings": search.settings,
    }
