"""Paired effects: the intervention vs no intervention on the same items, item by item.

Every effect is a mean of per-item differences (SPEC §8). Its interval is a paired bootstrap of
that mean, its test the Wilcoxon signed-rank test of the differences, and, when binary
outcomes are given, the accuracy change gets the exact McNemar test (a two-sided binomial test
of the discordant pairs). The detectable effect says how large a true mean difference the
design finds with 80% power, so an inconclusive result states what it could have seen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike
from scipy.stats import binomtest, wilcoxon

from lens_steer.stats._plain import plain
from lens_steer.stats.intervals import IntervalMethod, bootstrap_mean
from lens_steer.stats.power import detectable_effect


@dataclass(frozen=True)
class PairedEffect:
    """Mean per-item difference (after - before) with its interval, tests and power.

    The accuracy fields are None unless outcomes were given; ``gains`` (wrong -> right),
    ``losses`` (right -> wrong) and ``mcnemar_p`` are None unless both outcomes are 0/1.
    """

    n: int
    mean_delta: float
    ci_low: float
    ci_high: float
    median_delta: float
    sd_delta: float
    wilcoxon_p: float
    detectable_effect: float
    confidence: float
    n_bootstrap: int
    seed: int
    method: IntervalMethod = "percentile"
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    delta_accuracy: float | None = None
    delta_accuracy_ci_low: float | None = None
    delta_accuracy_ci_high: float | None = None
    gains: int | None = None
    losses: int | None = None
    mcnemar_p: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval of the mean difference lies strictly on one side of 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; NaN becomes None."""
        return plain(asdict(self))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PairedEffect:
        """Inverse of :meth:`to_json` (a None statistic that is always a float reads as NaN)."""
        always_float = ("mean_delta", "ci_low", "ci_high", "median_delta", "sd_delta")
        undefined = ("wilcoxon_p", "detectable_effect", *always_float)
        return cls(**{**obj, **{key: math.nan for key in undefined if obj.get(key) is None}})


def paired_effect(
    after_margin: Float[ArrayLike, " item"],
    before_margin: Float[ArrayLike, " item"],
    *,
    after_outcome: Float[ArrayLike, " item"] | None = None,
    before_outcome: Float[ArrayLike, " item"] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
    power: float = 0.8,
) -> PairedEffect:
    """Effect of an intervention on the same items: statistics of ``after - before`` per item.

    Args:
        after_margin: per-item margin with the intervention (e.g. nats of the right answer).
        before_margin: per-item margin without it, same items in the same order.
        after_outcome: optional per-item outcome with the intervention (1 correct, 0 wrong).
        before_outcome: optional per-item outcome without it; given together with
            ``after_outcome``. Fractions in [0, 1] are allowed (e.g. a mean over controls):
            then the accuracy change is reported without gains, losses and McNemar.
        n_bootstrap: item resamples of the paired bootstrap.
        seed: seed of ``numpy.random.default_rng`` (the same resamples serve margins and
            outcomes).
        confidence: coverage of the intervals; the detectable effect uses
            ``alpha = 1 - confidence``.
        method: ``"percentile"`` or ``"bca"`` bootstrap interval.
        power: power of the detectable effect.

    Example:
        >>> effect = paired_effect([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
        >>> effect.mean_delta, (effect.ci_low, effect.ci_high), effect.wilcoxon_p
        (1.0, (1.0, 1.0), 0.25)
    """
    after, before = _paired_items(after_margin, before_margin, "margins")
    effect = effect_of_differences(
        after - before,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        method=method,
        power=power,
    )
    if after_outcome is None and before_outcome is None:
        return effect
    if after_outcome is None or before_outcome is None:
        raise ValueError("give both after_outcome and before_outcome, or neither")
    won, had = _paired_items(after_outcome, before_outcome, "outcomes")
    if len(won) != effect.n:
        raise ValueError(f"{len(won)} outcomes but {effect.n} margins")
    if ((won < 0) | (won > 1) | (had < 0) | (had > 1)).any():
        raise ValueError("outcomes must lie in [0, 1] (1 = correct)")
    dist = bootstrap_mean(won - had, n_bootstrap=n_bootstrap, seed=seed)
    low, high = dist.interval(confidence, method)
    counts: dict[str, Any] = {}
    if np.isin(won, (0, 1)).all() and np.isin(had, (0, 1)).all():
        gains = int(np.count_nonzero((won == 1) & (had == 0)))
        losses = int(np.count_nonzero((won == 0) & (had == 1)))
        counts = {"gains": gains, "losses": losses, "mcnemar_p": mcnemar_p(gains, losses)}
    return replace(
        effect,
        accuracy_before=float(had.mean()),
        accuracy_after=float(won.mean()),
        delta_accuracy=dist.estimate,
        delta_accuracy_ci_low=low,
        delta_accuracy_ci_high=high,
        **counts,
    )


def difference_of_effects(
    delta_a: Float[ArrayLike, " item"],
    delta_b: Float[ArrayLike, " item"],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
    power: float = 0.8,
) -> PairedEffect:
    """Compare two effects measured on the same items: statistics of ``delta_a - delta_b``.

    Used to ask whether steering at one layer band moves the margin more than at another.

    Example:
        >>> difference_of_effects([1.0, 1.5, 2.0], [0.0, 0.5, 1.0]).mean_delta
        1.0
    """
    a, b = _paired_items(delta_a, delta_b, "effects")
    return effect_of_differences(
        a - b, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, method=method, power=power
    )


def effect_of_differences(
    differences: Float[ArrayLike, " item"],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
    power: float = 0.8,
) -> PairedEffect:
    """Mean of per-item differences with bootstrap interval, Wilcoxon p and detectable effect.

    Example:
        >>> effect_of_differences([0.0, 0.0, 0.0]).wilcoxon_p
        1.0
    """
    diff = np.asarray(differences, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError(f"differences must be a non-empty [item] array, got shape {diff.shape}")
    dist = bootstrap_mean(diff, n_bootstrap=n_bootstrap, seed=seed)
    low, high = dist.interval(confidence, method)
    sd = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    return PairedEffect(
        n=int(diff.size),
        mean_delta=dist.estimate,
        ci_low=low,
        ci_high=high,
        median_delta=float(np.median(diff)),
        sd_delta=sd,
        wilcoxon_p=wilcoxon_p(diff),
        detectable_effect=detectable_effect(sd, diff.size, alpha=1 - confidence, power=power),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
        method=method,
    )


def wilcoxon_p(differences: Float[ArrayLike, " item"]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    Zero differences are dropped (scipy's ``zero_method="wilcox"``); scipy picks the exact
    null distribution for small samples without ties and the normal one otherwise. With no
    nonzero difference there is no evidence of a shift: p = 1.

    Example:
        >>> wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0])  # 2 / 2**5
        0.0625
    """
    diff = np.asarray(differences, dtype=np.float64)
    if np.count_nonzero(diff) == 0:
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def mcnemar_p(gains: int, losses: int) -> float:
    """Exact McNemar p-value: two-sided binomial test of ``gains`` among the discordant pairs.

    Example:
        >>> mcnemar_p(8, 2)  # 2 * (1 + 10 + 45) / 2**10
        0.109375
    """
    if gains < 0 or losses < 0:
        raise ValueError(f"counts must be >= 0, got gains={gains}, losses={losses}")
    if gains + losses == 0:
        return 1.0
    return float(binomtest(gains, gains + losses, 0.5, alternative="two-sided").pvalue)


def _paired_items(after: ArrayLike, before: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(after, dtype=np.float64)
    b = np.asarray(before, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired {what} must be two [item] arrays, got {a.shape} and {b.shape}")
    return a, b
