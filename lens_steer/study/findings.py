"""The paper's four findings, pre-registered: prediction, statistic, interval, n and verdict.

The predictions and rules are fixed here, in code, before any data is read (SPEC §8); layer
bands are the early, middle and late thirds of the model (``lens_steer.stats.layer_band``).

1. **Layer specialization** (per target): EN-steering's control-net effect on the transfer axis
   is larger in the middle band than in the early and the late band; LOC-steering's
   control-net effect on the localization axis is larger in the late band than in the middle
   band. In each band the (layer, alpha) with the largest mean net effect is chosen on *dev*;
   the bands' chosen points are compared on *eval*, paired over the same items.
2. **Perpendicularity** (per target): cos(EN, LOC) of standardized vectors is within
   ``±equivalence_margin`` at every layer (TOST on the vectors' bootstrap), and the positive
   control (the EN vectors of two targets) is detected; the raw-space verdict and the
   sign-flip null quantile per layer are reported beside it.
3. **Convergence** (all languages): translation retrieval on standardized residuals is higher in
   the middle band than in the early and the late band (bootstrap over sentence groups);
   silhouette and the language-ID probe are reported beside it.
4. **Surgical steering** (per target): the dev-chosen surgical point is better than the
   dev-chosen best single-layer point on one axis and no worse than ``noninferiority_margin``
   nats on the other, paired per item on eval; its comparisons with the unsteered model and
   with the random surgical control are reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lens_steer.evaluate.effects import aligned
from lens_steer.evaluate.points import UNSTEERED, PointSet
from lens_steer.evaluate.surgical import SurgicalSearch, axis_value, criterion_of
from lens_steer.evaluate.sweep import LayerSweep, SweepPoint
from lens_steer.geometry.mixing import HIGHER_IS_MIXED
from lens_steer.stats.bands import BANDS, layer_band
from lens_steer.stats.findings import Finding
from lens_steer.stats.verdicts import (
    band_peak_verdict,
    equivalence_verdict,
    ordering_verdict,
    superiority_noninferiority_verdict,
)
from lens_steer.study.settings import StudySettings
from lens_steer.study.steps import Geometry

# method -> (the axis it should move: 0 transfer / 1 localization, predicted band, bands compared)
BAND_PREDICTIONS: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "en": (0, "middle", ("early", "late")),
    "loc": (1, "late", ("middle",)),
}


def _net_items(
    points: PointSet, point: SweepPoint, variant: str, ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Per-item net effect (margin minus the controls' mean; minus unsteered without controls)."""
    names = (point.key, *(point.controls or (UNSTEERED,)))
    groups = [points[name].rows[variant] for name in names]
    found, margins, _ = aligned(groups)
    values = margins[0] - margins[1:].mean(axis=0)
    if ids is None:
        return found, values
    index = {item: i for i, item in enumerate(found)}
    return list(ids), np.asarray([values[index[item]] for item in ids])


def _common_items(points: PointSet, chosen: Sequence[SweepPoint], variant: str) -> list[str]:
    names = [UNSTEERED, *(n for p in chosen for n in (p.key, *p.controls))]
    ids, _, _ = aligned([points[name].rows[variant] for name in names])
    return ids


def choose_band_points(
    dev: LayerSweep, method: str, variant: str, n_layers: int
) -> dict[str, SweepPoint]:
    """Per band, the controlled point of ``method`` with the largest mean net effect on dev."""
    candidates = [p for p in dev.grid if p.method == method and p.controls] or [
        p for p in dev.grid if p.method == method
    ]
    chosen: dict[str, SweepPoint] = {}
    for band in BANDS:
        in_band = [p for p in candidates if layer_band(p.layer, n_layers) == band]
        if in_band:
            chosen[band] = max(
                in_band, key=lambda p: float(np.mean(_net_items(dev.points, p, variant)[1]))
            )
    return chosen


def peak_distribution(
    test: LayerSweep, method: str, alpha: float, variant: str, *, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """Bootstrap distribution (over eval items) of the layer where the net effect peaks."""
    curve = [p for p in test.curve(method, alpha)]
    ids = _common_items(test.points, curve, variant)
    if not ids:
        return {}
    table = np.stack([_net_items(test.points, p, variant, ids)[1] for p in curve])  # [layer, item]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_bootstrap, len(ids)))
    peaks = np.argmax(table[:, draws].mean(axis=2), axis=0)
    layers = [p.layer for p in curve]
    counts = np.bincount(peaks, minlength=len(layers))
    return {
        "alpha": alpha,
        "layers": layers,
        "share": [round(float(c) / n_bootstrap, 4) for c in counts],
        "eval_peak_layer": layers[int(np.argmax(table.mean(axis=1)))],
        "n_items": len(ids),
        "n_bootstrap": n_bootstrap,
    }


def layer_specialization(
    target: str,
    sweeps: Mapping[str, LayerSweep],
    axes: tuple[str | None, str | None],
    n_layers: int,
    settings: StudySettings,
) -> list[Finding]:
    """Finding 1 for one target: one verdict per method with a predicted band."""
    findings = []
    for method, (axis, predicted, others) in BAND_PREDICTIONS.items():
        variant = axes[axis]
        measured = all(variant in sweeps[split].points[UNSTEERED].rows for split in ("dev", "eval"))
        if method not in sweeps["eval"].methods or variant is None or not measured:
            continue
        kind = "transfer" if axis == 0 else "localization"
        chosen = choose_band_points(sweeps["dev"], method, variant, n_layers)
        if predicted not in chosen or not any(band in chosen for band in others):
            continue
        bands = [band for band in (predicted, *others) if band in chosen]
        points = [chosen[band] for band in bands]
        ids = _common_items(sweeps["eval"].points, points, variant)
        effects = {
            band: _net_items(sweeps["eval"].points, chosen[band], variant, ids)[1] for band in bands
        }
        controlled = all(p.controls for p in points)
        finding = band_peak_verdict(
            effects, predicted, others=[b for b in others if b in chosen],
            finding_id=f"1-{method}:{target}",
            claim=f"{method.upper()}-steering's {'control-net ' if controlled else ''}effect on "
            f"{kind} ({variant}) peaks in the {predicted} layers ({target})",
            n_bootstrap=max(settings.n_bootstrap, 1000), seed=settings.seed,
        )  # fmt: skip
        best = max(
            chosen.values(),
            key=lambda p: float(np.mean(_net_items(sweeps["dev"].points, p, variant)[1])),
        )
        details = {
            **finding.details,
            "target": target,
            "metric": variant,
            "effect": "margin minus the mean of random-direction controls at the same layer and "
            "dose (nats)"
            if controlled
            else "margin minus unsteered (no controls were run)",
            "chosen_on_dev": {band: p.key for band, p in chosen.items()},
            "eval_mean_effect": {band: float(np.mean(v)) for band, v in effects.items()},
            "peak_distribution": peak_distribution(
                sweeps["eval"],
                method,
                best.alpha,
                variant,
                n_bootstrap=settings.n_bootstrap,
                seed=settings.seed,
            ),  # fmt: skip
        }
        findings.append(_with(finding, n=len(ids), details=details))
    return findings


def _with(finding: Finding, **changes: Any) -> Finding:
    from dataclasses import replace

    return replace(finding, **changes)


def perpendicularity(
    target: str, geometry: Geometry, n_items: int, settings: StudySettings
) -> Finding | None:
    """Finding 2 for one target (standardized space; raw space reported in the details)."""
    cos = geometry.cosines.get(target)
    if cos is None or cos["std_samples"].size == 0:
        return None
    positive = geometry.positive_control
    control = (positive["std"], positive["std_samples"]) if positive else None
    finding = equivalence_verdict(
        cos["std"], cos["std_samples"], settings.equivalence_margin,
        finding_id=f"2:{target}",
        claim=f"EN and LOC vectors are perpendicular at every layer (standardized, {target})",
        n=n_items, positive_control=control,
    )  # fmt: skip
    raw_control = (positive["raw"], positive["raw_samples"]) if positive else None
    raw = equivalence_verdict(
        cos["raw"], cos["raw_samples"], settings.equivalence_margin, finding_id=f"2-raw:{target}",
        claim="raw space", n=n_items, positive_control=raw_control,
    )  # fmt: skip
    details = {
        **finding.details,
        "target": target,
        "space": "standardized (each dimension divided by the residual std at that layer)",
        "raw_space": {
            "verdict": raw.verdict,
            "estimate": raw.estimate,
            "ci": [raw.ci_low, raw.ci_high],
        },
        "sign_flip_null_q95": {
            "standardized": _listed(cos.get("std_null")),
            "raw": _listed(cos.get("raw_null")),
        },
        "random_direction_band": geometry.null_band,
        "positive_control_pair": positive["pair"] if positive else None,
    }
    if not positive:
        details["note"] = "one target only: no positive control (cos of two targets' EN vectors)"
    return _with(finding, details=details)


def _listed(values: Any) -> list[float] | None:
    return None if values is None else [round(float(v), 4) for v in values]


def convergence(geometry: Geometry, settings: StudySettings) -> Finding | None:
    """Finding 3: languages mix most in the middle layers (retrieval, standardized residuals)."""
    if not geometry.mixing:
        return None
    by_space = {m.standardized: m for m in geometry.mixing}
    mixing = by_space.get(True, geometry.mixing[0])
    n = len(mixing.groups)
    verdicts = {}
    for name in HIGHER_IS_MIXED:
        verdicts[name] = ordering_verdict(
            mixing.samples(name, n_bootstrap=settings.n_bootstrap, seed=settings.seed),
            estimates=mixing.value(name), finding_id=f"3-{name}",
            claim=f"languages most mixed mid-depth ({name})", n=n,
            higher_is_more=HIGHER_IS_MIXED[name],
        )  # fmt: skip
    primary = verdicts["retrieval"]
    details = {
        **primary.details,
        "unit": "sentence groups (a sentence and its translations), resampled",
        "secondary": {
            name: {"verdict": f.verdict, "estimate": f.estimate, "ci": [f.ci_low, f.ci_high]}
            for name, f in verdicts.items()
            if name != "retrieval"
        },
        "per_layer_retrieval": [round(float(v), 4) for v in mixing.value("retrieval")],
    }
    return _with(
        primary,
        id="3",
        claim="languages converge in the middle layers (translation retrieval, standardized)",
        details=details,
    )


def _axis_deltas(
    points: PointSet, key: str, comparators: Sequence[str], variant: str
) -> np.ndarray:
    ids, margins, _ = aligned([points[name].rows[variant] for name in (key, *comparators)])
    return margins[0] - margins[1:].mean(axis=0) if ids else np.zeros(0)


def surgical_advantage(
    target: str, search: SurgicalSearch, settings: StudySettings
) -> Finding | None:
    """Finding 4 for one target: dev-chosen surgical point vs the best single-layer point."""
    axes = [
        axis
        for axis in search.axes
        if axis and axis in search.dev[UNSTEERED].scores and axis in search.eval[UNSTEERED].scores
    ]
    if len(axes) != 2 or not search.best_single:
        return None
    choose = criterion_of(settings.criterion)
    base = {axis: axis_value(search.dev[UNSTEERED].scores[axis]) for axis in axes}
    single = max(
        search.best_single.values(),
        key=lambda key: choose({a: axis_value(search.dev[key].scores[a]) for a in axes}, base),
    )
    points = search.eval
    deltas = [_axis_deltas(points, search.best, [single], axis) for axis in axes]
    finding = superiority_noninferiority_verdict(
        deltas[0], deltas[1], margin=settings.noninferiority_margin,
        finding_id=f"4:{target}",
        claim=f"the surgical point beats the best single-layer point on one axis without "
        f"losing more than {settings.noninferiority_margin} nats on the other ({target})",
        axis_names=(axes[0], axes[1]), n_bootstrap=max(settings.n_bootstrap, 1000),
        seed=settings.seed,
    )  # fmt: skip
    beside = {}
    for label, comparators in (
        ("vs_unsteered", [UNSTEERED]),
        ("vs_random_surgical", list(search.controls.get(search.best, ()))),
    ):
        if not comparators:
            continue
        beside[label] = {
            axis: _summary(_axis_deltas(points, search.best, comparators, axis)) for axis in axes
        }
    details = {
        **finding.details,
        "target": target,
        "surgical": search.best,
        "single": single,
        "unit": "per-item margin difference on eval (nats)",
        **beside,
    }
    return _with(finding, details=details)


def _summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"mean": float(values.mean()), "se": se, "n": int(values.size)}


def study_findings(
    sweeps: Mapping[str, Mapping[str, LayerSweep]],
    searches: Mapping[str, SurgicalSearch],
    geometry: Geometry,
    axes: Mapping[str, tuple[str | None, str | None]],
    n_layers: int,
    vector_sizes: Mapping[str, int],
    settings: StudySettings,
) -> list[Finding]:
    """Every finding of the study, in the order of the paper."""
    out: list[Finding] = []
    for target, by_split in sweeps.items():
        out += layer_specialization(target, by_split, axes[target], n_layers, settings)
    for target in sweeps:
        found = perpendicularity(target, geometry, vector_sizes.get(target, 0), settings)
        if found is not None:
            out.append(found)
    found3 = convergence(geometry, settings)
    if found3 is not None:
        out.append(found3)
    for target, search in searches.items():
        found4 = surgical_advantage(target, search, settings)
        if found4 is not None:
            out.append(found4)
    return out
