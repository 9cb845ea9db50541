"""The study's results as one value, and the ``results.json`` contract built from it.

``results.json`` (format ``lens_steer.results/2``) holds, in this order: ``findings`` (the four
pre-registered verdicts), ``settings``, ``data`` (sources, items per target, kind and split,
metrics not measured and why), ``targets`` (axes, vector provenance and norms), ``geometry``
(perpendicularity rows, mixing rows with intervals, PCA variance), ``sweeps`` (per target and
split, every grid point's score, effect against unsteered and net of controls, and dose),
``peaks`` (per method: the point chosen on dev and its effect on eval), ``surgical`` (the chosen
points on eval), ``plane`` and ``timings``. Every number records the settings behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lens_steer.evaluate.plane import Plane
from lens_steer.evaluate.points import UNSTEERED
from lens_steer.evaluate.summary import summarize_search, summarize_sweep
from lens_steer.evaluate.surgical import SurgicalSearch
from lens_steer.evaluate.sweep import LayerSweep
from lens_steer.stats.findings import Finding
from lens_steer.study.data import StudyData
from lens_steer.study.findings import BAND_PREDICTIONS, _net_items
from lens_steer.study.settings import StudySettings
from lens_steer.study.steps import Collected, Geometry, Vectors

FORMAT = "lens_steer.results/2"


@dataclass
class StudyResults:
    """Everything a study run produced (in memory; a run folder holds the same on disk)."""

    settings: StudySettings
    data: StudyData
    collected: Collected | None = None
    vectors: Vectors = field(default_factory=dict)
    geometry: Geometry | None = None
    sweeps: dict[str, dict[str, LayerSweep]] = field(default_factory=dict)
    searches: dict[str, SurgicalSearch] = field(default_factory=dict)
    planes: dict[str, Plane] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{f.id}: {f.verdict}" for f in self.findings) or "none yet"
        return (
            f"StudyResults(model={self.settings.model}, targets={list(self.data.items)}, "
            f"findings: {verdicts})"
        )


def perpendicularity_rows(geometry: Geometry) -> list[dict[str, Any]]:
    """One row per target, layer and space: cosine, 95% bootstrap interval, null quantile."""
    rows = []
    sources = [(target, cos) for target, cos in geometry.cosines.items()]
    if geometry.positive_control is not None:
        sources.append(("positive control", geometry.positive_control))
    for target, cos in sources:
        for space, key in (("raw", "raw"), ("standardized", "std")):
            samples = np.asarray(cos.get(f"{key}_samples", []))
            interval = np.percentile(samples, [2.5, 97.5], axis=0) if samples.size else None
            null = cos.get(f"{key}_null")
            for layer, value in enumerate(np.asarray(cos[key]).tolist()):
                rows.append(
                    {
                        "target": target,
                        "layer": layer,
                        "space": space,
                        "cos": round(float(value), 6),
                        "ci_low": None if interval is None else round(float(interval[0][layer]), 6),
                        "ci_high": None
                        if interval is None
                        else round(float(interval[1][layer]), 6),
                        "null_q95": None if null is None else round(float(null[layer]), 6),
                        "pair": cos.get("pair"),
                        "n_bootstrap": int(samples.shape[0]) if samples.size else 0,
                    }
                )
    return rows


def mixing_rows(geometry: Geometry, n_bootstrap: int, seed: int) -> list[dict[str, Any]]:
    return [
        row for mixing in geometry.mixing for row in mixing.rows(n_bootstrap=n_bootstrap, seed=seed)
    ]


def peaks(sweeps: dict[str, LayerSweep], axes: tuple[str | None, str | None]) -> dict[str, Any]:
    """Per method: the controlled point with the largest net effect on its axis, chosen on dev,
    and its effect on eval (the numbers a reader may quote; chosen on dev, reported on eval)."""
    out: dict[str, Any] = {}
    dev, test = sweeps["dev"], sweeps["eval"]
    for method in dev.methods:
        axis = BAND_PREDICTIONS.get(method, (0, "", ()))[0]
        variant = axes[axis]
        if variant is None or any(
            variant not in sweep.points[UNSTEERED].rows for sweep in (dev, test)
        ):
            continue
        candidates = [p for p in dev.grid if p.method == method and p.controls] or [
            p for p in dev.grid if p.method == method
        ]
        best = max(candidates, key=lambda p: float(np.mean(_net_items(dev.points, p, variant)[1])))
        on_eval = next(p for p in test.grid if p.key == best.key)
        _, values = _net_items(test.points, on_eval, variant)
        se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else None
        out[method] = {
            "metric": variant,
            "chosen_on_dev": best.key,
            "layer": best.layer,
            "alpha": best.alpha,
            "dev_net_effect": float(np.mean(_net_items(dev.points, best, variant)[1])),
            "eval_net_effect": float(values.mean()) if values.size else None,
            "eval_se": se,
            "eval_n": int(values.size),
            "net_of": "random-direction controls" if best.controls else "unsteered (no controls)",
        }
    return out


def build_results(results: StudyResults, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``results.json`` contract (see the module docstring)."""
    settings = results.settings
    boot = settings.n_bootstrap
    metrics = list(settings.metrics)
    out: dict[str, Any] = {
        "format": FORMAT,
        "findings": [finding.to_json() for finding in results.findings],
        "settings": settings.to_json(),
        "config": config,
        "data": results.data.describe(),
        "targets": {
            key: {
                "axes": list(results.data.axes[key]),
                "vectors": {
                    method: {
                        **vector.provenance,
                        "norms": [round(float(n), 4) for n in vector.norms()],
                    }
                    for method, vector in results.vectors.get(key, {}).items()
                },
                "reference_norms": None
                if results.collected is None
                else results.collected.reference_norms.get(key),
            }
            for key in results.data.items
        },
        "geometry": None,
        "sweeps": {
            target: {
                split: summarize_sweep(sweep, metrics, n_bootstrap=boot, seed=settings.seed)
                for split, sweep in by_split.items()
            }
            for target, by_split in results.sweeps.items()
        },
        "peaks": {
            target: peaks(by_split, results.data.axes[target])
            for target, by_split in results.sweeps.items()
        },
        "surgical": {
            target: summarize_search(search, metrics, n_bootstrap=boot, seed=settings.seed)
            for target, search in results.searches.items()
        },
        "plane": {target: plane.to_json() for target, plane in results.planes.items()},
        "timings": results.timings,
    }
    if results.geometry is not None:
        geometry = results.geometry
        out["geometry"] = {
            "perpendicularity": perpendicularity_rows(geometry),
            "random_direction_band": geometry.null_band,
            "equivalence_margin": settings.equivalence_margin,
            "mixing": mixing_rows(geometry, boot, settings.seed),
            "pca_explained_variance": [
                {
                    "standardized": pca.standardized,
                    "layer": layer,
                    "ratio": [round(float(x), 6) for x in pca.explained_variance_ratio[slot]],
                }
                for pca in geometry.pca
                for slot, layer in enumerate(pca.layers)
            ],
            "settings": geometry.settings,
        }
    return out
