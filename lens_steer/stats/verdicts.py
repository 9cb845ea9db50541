"""Pre-registered verdicts: each finding's prediction, statistic, interval, n and verdict.

Every verdict is ``supported``, ``refuted`` or ``inconclusive`` under a rule fixed before the
data are seen (SPEC §8). The rules, all on intervals at ``confidence`` (0.95 by default):

* a **directional** prediction (``X > Y`` for each comparison) is supported when every
  interval of ``X - Y`` lies above 0 (an intersection–union test: no multiplicity correction
  is needed), refuted when some interval lies below 0, inconclusive otherwise;
* an **equivalence** prediction (``|cos| < margin`` at each layer) is supported when every
  layer passes TOST, refuted when some layer's interval lies outside the band, inconclusive
  otherwise, and never supported when its positive control goes undetected;
* a **superiority / non-inferiority** prediction is described at
  :func:`superiority_noninferiority_verdict`.

An inconclusive finding states its detectable effect (80% power by default); every finding
records it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from lens_steer.stats.bands import BANDS, Band, band_means
from lens_steer.stats.equivalence import Equivalence, equivalence_test
from lens_steer.stats.findings import Finding, Verdict, directional_verdict
from lens_steer.stats.paired import PairedEffect, difference_of_effects, effect_of_differences
from lens_steer.stats.power import detectable_from_standard_error


def band_peak_verdict(
    effects_by_band: Mapping[str, Float[ArrayLike, " item"]],
    predicted: str,
    *,
    finding_id: str,
    claim: str,
    others: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
    power: float = 0.8,
) -> Finding:
    """ "The effect peaks in band ``predicted``": per-item effects compared band by band.

    For each other band, the paired bootstrap interval of ``mean(effect_predicted -
    effect_other)`` over the same items; the directional rule gives the verdict. The estimate
    is the smallest of these mean differences (with its interval); the detectable effect the
    largest of their detectable effects.

    Args:
        effects_by_band: per-item effect in each band (same items, same order), e.g. the
            per-item effect averaged over the band's layers (:func:`band_means`).
        predicted: the band predicted to carry the largest effect.
        finding_id, claim: name and wording of the finding.
        others: bands compared with; default every other key.
        confidence, n_bootstrap, seed, power: see :func:`~lens_steer.stats.paired_effect`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> effects = {band: rng.normal(size=40) for band in BANDS}
        >>> effects["middle"] = effects["middle"] + 2.0
        >>> band_peak_verdict(effects, "middle", finding_id="f1", claim="mid peak").verdict
        'supported'
    """
    if predicted not in effects_by_band:
        raise ValueError(f"predicted band {predicted!r} not among {sorted(effects_by_band)}")
    compared = [band for band in (others or effects_by_band) if band != predicted]
    if not compared:
        raise ValueError("band_peak_verdict needs at least one other band")
    comparisons = {
        other: difference_of_effects(
            effects_by_band[predicted],
            effects_by_band[other],
            n_bootstrap=n_bootstrap,
            seed=seed,
            confidence=confidence,
            power=power,
        )
        for other in compared
    }
    return _directional_finding(
        finding_id,
        claim,
        comparisons,
        prediction=f"mean per-item effect in the {predicted} band exceeds that in "
        + ", ".join(compared),
        statistic=f"smallest mean over items of effect[{predicted}] - effect[other band]",
        confidence=confidence,
        details={"predicted": predicted, "others": compared},
    )


def ordering_verdict(
    samples: Float[ArrayLike, "draw layer"],
    *,
    finding_id: str,
    claim: str,
    n: int,
    estimates: Float[ArrayLike, " layer"] | None = None,
    predicted: Band = "middle",
    higher_is_more: bool = True,
    confidence: float = 0.95,
    power: float = 0.8,
) -> Finding:
    """ "The score is most extreme in band ``predicted``" from bootstrap draws per layer.

    Each draw (e.g. the mixing score on a resample of sentence groups) is averaged within
    bands; the percentile interval over draws of ``band[predicted] - band[other]`` (sign
    reversed when ``higher_is_more`` is False) enters the directional rule. The detectable
    effect is ``(z(1 - alpha/2) + z(power)) * sd_over_draws`` (normal approximation with the
    bootstrap standard error).

    Args:
        samples: the score per bootstrap draw and layer; layers are ``0..n_layers-1``.
        finding_id, claim: name and wording of the finding.
        n: number of independent units resampled (sentence groups).
        estimates: the score on the full data per layer; default the mean over draws.
        predicted: the band predicted to be the most extreme.
        higher_is_more: True when a higher score means more of the property (more mixed).
        confidence, power: coverage of the intervals and power of the detectable effect.

    Example:
        >>> draws = np.array([[0.1, 0.9, 0.2], [0.2, 0.8, 0.1], [0.15, 0.85, 0.15]])
        >>> ordering_verdict(draws, finding_id="f2", claim="mid mixing", n=30).verdict
        'supported'
    """
    draws = np.asarray(samples, dtype=np.float64)
    if draws.ndim != 2 or draws.shape[0] < 2 or not np.isfinite(draws).all():
        raise ValueError(f"samples must be finite [draw, layer] with >= 2 draws: {draws.shape}")
    point = draws.mean(axis=0) if estimates is None else np.asarray(estimates, np.float64)
    sign = 1.0 if higher_is_more else -1.0
    by_band, point_by_band = band_means(draws), band_means(point)
    tail = (1 - confidence) / 2
    comparisons: dict[str, dict[str, float]] = {}
    for other in BANDS:
        if other == predicted:
            continue
        diff = sign * (by_band[predicted] - by_band[other])
        low, high = np.quantile(diff, [tail, 1 - tail])
        comparisons[other] = {
            "mean_delta": float(sign * (point_by_band[predicted] - point_by_band[other])),
            "ci_low": float(low),
            "ci_high": float(high),
            "standard_error": float(diff.std(ddof=1)),
            "detectable_effect": detectable_from_standard_error(
                float(diff.std(ddof=1)), alpha=1 - confidence, power=power
            ),
        }
    direction = "higher" if higher_is_more else "lower"
    return _directional_finding(
        finding_id,
        claim,
        comparisons,
        prediction=f"the score is {direction} in the {predicted} band than in each other band",
        statistic=f"smallest band-mean difference, {predicted} - other ({direction} = more)",
        confidence=confidence,
        n=n,
        details={"predicted": predicted, "higher_is_more": higher_is_more, "draws": len(draws)},
    )


def equivalence_verdict(
    estimates: Float[ArrayLike, " layer"],
    samples: Float[ArrayLike, "draw layer"],
    margin: float | Float[ArrayLike, " layer"],
    *,
    finding_id: str,
    claim: str,
    n: int,
    positive_control: tuple[Float[ArrayLike, " layer"], Float[ArrayLike, "draw layer"]]
    | None = None,
    alpha: float = 0.05,
) -> Finding:
    """ "The two vectors are perpendicular at every layer": TOST per layer against ``margin``.

    Supported when every layer is equivalent (``1 - 2·alpha`` interval inside ``±margin``),
    refuted when at some layer the ``1 - alpha`` interval lies outside the band, inconclusive
    otherwise. The positive control (a cosine known to be large, e.g. between two languages'
    English-ward vectors; its estimates and draws) is tested against the same margins: it is
    *detected* at a layer when its interval lies outside the band. A test that misses it at
    some layer cannot vouch for a small cosine, so "supported" then becomes "inconclusive".

    The reported estimate, interval (``1 - 2·alpha``) and margin are those of the layer closest
    to failing (largest ``max(|tost_low|, |tost_high|) / margin``); the detectable effect is
    the narrowest margin the data could have called equivalent at every layer.

    Args:
        estimates: the cosine on the full data per layer.
        samples: bootstrap draws of the cosine per layer.
        margin: equivalence margin, one for all layers or one per layer (e.g.
            :func:`~lens_steer.stats.null_quantile` of a sign-flip null).
        finding_id, claim: name and wording of the finding.
        n: items behind the fitted vectors.
        positive_control: ``(estimates, samples)`` of the positive control, or None.
        alpha: level of each one-sided test.

    Example:
        >>> draws = np.random.default_rng(0).normal(0.0, 0.01, size=(500, 3))
        >>> equivalence_verdict(np.zeros(3), draws, 0.1, finding_id="f3", claim="perp", n=50).verdict
        'supported'
    """
    tests = _equivalence_by_layer(estimates, samples, margin, alpha)
    ratio = [test.smallest_margin / test.margin for test in tests]
    worst = int(np.argmax(ratio))
    if any(test.different for test in tests):
        verdict: Verdict = "refuted"
    elif all(test.equivalent for test in tests):
        verdict = "supported"
    else:
        verdict = "inconclusive"
    details: dict[str, Any] = {
        "alpha": alpha,
        "reported_layer": worst,
        "layers": [test.to_json() for test in tests],
    }
    if positive_control is not None:
        controls = _equivalence_by_layer(*positive_control, margin, alpha)
        detected = [test.different for test in controls]
        details["positive_control"] = {
            "layers": [test.to_json() for test in controls],
            "detected": detected,
            "detected_everywhere": all(detected),
        }
        if verdict == "supported" and not all(detected):
            verdict = "inconclusive"
    return Finding(
        id=finding_id,
        claim=claim,
        prediction="|cosine| < margin at every layer (TOST)",
        statistic="cosine at the layer closest to the margin",
        estimate=tests[worst].estimate,
        ci_low=tests[worst].tost_low,
        ci_high=tests[worst].tost_high,
        n=n,
        verdict=verdict,
        detectable_effect=max(test.smallest_margin for test in tests),
        confidence=1 - 2 * alpha,
        margin=tests[worst].margin,
        details=details,
    )


def superiority_noninferiority_verdict(
    delta_axis_a: Float[ArrayLike, " item_a"],
    delta_axis_b: Float[ArrayLike, " item_b"],
    *,
    margin: float,
    finding_id: str,
    claim: str,
    axis_names: tuple[str, str] = ("a", "b"),
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
    power: float = 0.8,
) -> Finding:
    """ "Better on one axis and no worse than ``margin`` on the other" from paired deltas.

    Each axis has its own items; ``delta`` is the chosen point minus the comparator per item.
    Supported when one axis' interval lies above 0 and the other's lower bound is above
    ``-margin``; refuted when some axis' interval lies entirely below ``-margin`` or neither
    axis can be better (both upper bounds below 0); inconclusive otherwise. The estimate is
    the mean delta of the axis with the larger lower bound (the candidate better axis); the
    detectable effect the larger of the two axes' detectable effects.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(1.0, 1.0, 60), rng.normal(0.0, 0.2, 60)
        >>> superiority_noninferiority_verdict(a, b, margin=0.2, finding_id="f4", claim="c").verdict
        'supported'
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if len(set(axis_names)) != 2:
        raise ValueError(f"axis_names must be two distinct names, got {axis_names}")
    options: dict[str, Any] = {
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
        "power": power,
    }
    effects = {
        axis_names[0]: effect_of_differences(delta_axis_a, **options),
        axis_names[1]: effect_of_differences(delta_axis_b, **options),
    }
    better, other = sorted(axis_names, key=lambda name: effects[name].ci_low, reverse=True)
    if any(effect.ci_high < -margin for effect in effects.values()) or all(
        effect.ci_high < 0 for effect in effects.values()
    ):
        verdict: Verdict = "refuted"
    elif effects[better].ci_low > 0 and effects[other].ci_low > -margin:
        verdict = "supported"
    else:
        verdict = "inconclusive"
    return Finding(
        id=finding_id,
        claim=claim,
        prediction=f"mean delta > 0 on one axis and > -{margin} on the other",
        statistic=f"mean delta on the candidate better axis ({better})",
        estimate=effects[better].mean_delta,
        ci_low=effects[better].ci_low,
        ci_high=effects[better].ci_high,
        n=effects[better].n,
        verdict=verdict,
        detectable_effect=float(np.max([effect.detectable_effect for effect in effects.values()])),
        confidence=confidence,
        margin=margin,
        details={
            "better_axis": better,
            "other_axis": other,
            "axes": {name: effect.to_json() for name, effect in effects.items()},
        },
    )


def _directional_finding(
    finding_id: str,
    claim: str,
    comparisons: Mapping[str, PairedEffect | dict[str, float]],
    *,
    prediction: str,
    statistic: str,
    confidence: float,
    details: dict[str, Any],
    n: int | None = None,
) -> Finding:
    rows = {
        name: value.to_json() if isinstance(value, PairedEffect) else value
        for name, value in comparisons.items()
    }
    intervals = [(row["ci_low"], row["ci_high"]) for row in rows.values()]
    smallest = min(rows, key=lambda name: rows[name]["mean_delta"])
    detectable = [
        np.nan if row["detectable_effect"] is None else row["detectable_effect"]
        for row in rows.values()
    ]
    return Finding(
        id=finding_id,
        claim=claim,
        prediction=prediction,
        statistic=statistic,
        estimate=rows[smallest]["mean_delta"],
        ci_low=rows[smallest]["ci_low"],
        ci_high=rows[smallest]["ci_high"],
        n=int(rows[smallest]["n"] if n is None else n),
        verdict=directional_verdict(intervals),
        detectable_effect=float(np.max(detectable)),  # NaN when any is undefined
        confidence=confidence,
        details={**details, "smallest": smallest, "comparisons": rows},
    )


def _equivalence_by_layer(
    estimates: ArrayLike, samples: ArrayLike, margin: float | ArrayLike, alpha: float
) -> list[Equivalence]:
    point = np.atleast_1d(np.asarray(estimates, dtype=np.float64))
    draws = np.asarray(samples, dtype=np.float64)
    if draws.ndim != 2 or draws.shape[1] != point.size:
        raise ValueError(f"samples must be [draw, layer] with {point.size} layers: {draws.shape}")
    margins = np.broadcast_to(np.asarray(margin, dtype=np.float64), point.shape)
    return [
        equivalence_test(point[layer], draws[:, layer], float(margins[layer]), alpha=alpha)
        for layer in range(point.size)
    ]
