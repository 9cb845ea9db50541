"""Confidence intervals: proportions that do not collapse at 0 or 1, and the item bootstrap.

Why not the normal interval: with 12 of 12 items right, ``p ± 1.96·sqrt(p(1-p)/n)`` is the
single point 1.0. Wilson and Clopper–Pearson intervals keep their width at the boundaries.

The bootstrap resamples *items* with replacement. When several per-item arrays are given they
are resampled with the same indices (a paired bootstrap): item ``i`` of every array stays
together. Draws come from ``numpy.random.default_rng(seed)`` as
``rng.integers(0, n, size=(n_bootstrap, n))``, the draws ``scipy.stats.bootstrap`` makes, so
the same seed gives the same resamples in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike
from scipy.stats import binomtest, norm

ProportionMethod = Literal["wilson", "clopper_pearson"]
IntervalMethod = Literal["percentile", "bca"]
Statistic = Callable[..., np.ndarray]
"""Maps per-item arrays stacked as ``[draw, item, ...]`` to one value per draw ``[draw]``."""

_SCIPY_PROPORTION = {"wilson": "wilson", "clopper_pearson": "exact"}
_JACKKNIFE_CHUNK = 256


def proportion_interval(
    successes: int,
    n: int,
    *,
    confidence: float = 0.95,
    method: ProportionMethod = "wilson",
) -> tuple[float, float]:
    """Two-sided interval of a binomial proportion (Wilson score or Clopper–Pearson exact).

    Args:
        successes: items counted as a success.
        n: items in all.
        confidence: coverage of the interval.
        method: ``"wilson"`` (score interval, near nominal coverage) or ``"clopper_pearson"``
            (exact, at least nominal coverage, wider).

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside ``[0, n]``.

    Example:
        >>> low, high = proportion_interval(12, 12, method="clopper_pearson")
        >>> round(low, 4), high
        (0.7354, 1.0)
    """
    _check_confidence(confidence)
    if n < 1:
        raise ValueError(f"a proportion needs at least one item, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    if method not in _SCIPY_PROPORTION:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(_SCIPY_PROPORTION)}")
    ci = binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=confidence, method=_SCIPY_PROPORTION[method]
    )
    return float(ci.low), float(ci.high)


@dataclass(frozen=True, eq=False)
class BootstrapDistribution:
    """A statistic, its values over item resamples and its leave-one-item-out values.

    One resampling serves every interval asked of it (several confidences, percentile or BCa).
    """

    estimate: float
    samples: Float[np.ndarray, " draw"]
    jackknife: Float[np.ndarray, " item"]

    def interval(
        self, confidence: float = 0.95, method: IntervalMethod = "percentile"
    ) -> tuple[float, float]:
        """Two-sided bootstrap interval: plain percentiles, or BCa (Efron & Tibshirani §14.3).

        BCa shifts the percentiles by the bias ``z0`` (share of draws below the estimate, ties
        counted half) and the acceleration ``a`` (skewness of the jackknife values), as
        ``scipy.stats.bootstrap`` does. Constant samples give a zero-width interval.

        Example:
            >>> dist = bootstrap_distribution(lambda v: v.mean(axis=1), [1.0, 2.0, 3.0, 6.0])
            >>> low, high = dist.interval(0.9, "bca")
            >>> bool(low < dist.estimate < high)
            True
        """
        _check_confidence(confidence)
        tail = (1 - confidence) / 2
        if np.ptp(self.samples) == 0:
            return float(self.samples[0]), float(self.samples[0])
        if method == "percentile":
            levels = np.array([tail, 1 - tail])
        elif method == "bca":
            levels = self._bca_levels(tail)
        else:
            raise ValueError(f"unknown interval method {method!r}; expected percentile or bca")
        low, high = np.quantile(self.samples, levels)
        return float(low), float(high)

    def _bca_levels(self, tail: float) -> np.ndarray:
        draws = len(self.samples)
        below = np.count_nonzero(self.samples < self.estimate)
        at_or_below = np.count_nonzero(self.samples <= self.estimate)
        # Keep z0 finite when every draw lies on one side of the estimate.
        share = np.clip((below + at_or_below) / (2 * draws), 0.5 / draws, 1 - 0.5 / draws)
        z0 = norm.ppf(share)
        spread = self.jackknife.mean() - self.jackknife
        denominator = np.sum(spread**2) ** 1.5
        defined = denominator > 0 and np.isfinite(denominator)
        accel = np.sum(spread**3) / (6 * denominator) if defined else 0.0
        z = z0 + norm.ppf([tail, 1 - tail])
        return np.asarray(norm.cdf(z0 + z / (1 - accel * z)))


def bootstrap_distribution(
    statistic: Statistic,
    *per_item: ArrayLike,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> BootstrapDistribution:
    """Resample items (the first axis of every array, with shared indices) and apply a statistic.

    Args:
        statistic: maps arrays ``[draw, item, ...]`` to ``[draw]``; it sees one array per
            ``per_item`` argument, in order.
        *per_item: one or more arrays with the same number of items on axis 0.
        n_bootstrap: number of resamples (at least 1).
        seed: seed of ``numpy.random.default_rng``.

    Example:
        >>> mean = lambda values: values.mean(axis=1)
        >>> dist = bootstrap_distribution(mean, [0.0, 1.0, 1.0, 1.0], n_bootstrap=500)
        >>> dist.estimate, dist.samples.shape
        (0.75, (500,))
    """
    columns = _items(per_item)
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_bootstrap, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(statistic(*(column[None] for column in columns))[0])
        samples = np.asarray(statistic(*(column[draws] for column in columns)), np.float64)
        jackknife = _jackknife(statistic, columns)
    if not (np.isfinite(estimate) and np.isfinite(samples).all()):
        raise ValueError(f"the statistic is not finite on some resample (estimate {estimate})")
    return BootstrapDistribution(estimate, samples, jackknife)


def bootstrap_mean_interval(
    values: Float[ArrayLike, " item"],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap interval of the mean of per-item values (zero width for constant values).

    Example:
        >>> bootstrap_mean_interval([0.5, 0.5, 0.5])
        (0.5, 0.5)
    """
    return bootstrap_mean(values, n_bootstrap=n_bootstrap, seed=seed).interval(confidence, method)


def bootstrap_mean(
    values: Float[ArrayLike, " item"], *, n_bootstrap: int = 2000, seed: int = 0
) -> BootstrapDistribution:
    """Bootstrap distribution of the mean of per-item values.

    Example:
        >>> bootstrap_mean([1.0, 2.0, 3.0], n_bootstrap=100).estimate
        2.0
    """
    return bootstrap_distribution(_mean_of_items, values, n_bootstrap=n_bootstrap, seed=seed)


def bootstrap_ratio_interval(
    numerators: Float[ArrayLike, " item"],
    denominators: Float[ArrayLike, " item"],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap interval of ``sum(numerators) / sum(denominators)``, items resampled in pairs.

    This is gap closure, ``sum(gain) / sum(gap)``: items weigh by their denominator. The
    denominators should be positive (a resample whose denominators sum to 0 is an error).

    Example:
        >>> bootstrap_ratio_interval([1.0, 2.0], [2.0, 4.0])
        (0.5, 0.5)
    """
    dist = bootstrap_distribution(
        _ratio_of_sums, numerators, denominators, n_bootstrap=n_bootstrap, seed=seed
    )
    return dist.interval(confidence, method)


def _mean_of_items(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=1)


def _ratio_of_sums(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    return numerators.sum(axis=1) / denominators.sum(axis=1)


def _items(per_item: tuple[ArrayLike, ...]) -> list[np.ndarray]:
    if not per_item:
        raise ValueError("bootstrap needs at least one per-item array")
    columns = [np.asarray(column, dtype=np.float64) for column in per_item]
    lengths = {column.shape[0] if column.ndim else 0 for column in columns}
    if len(lengths) != 1:
        raise ValueError(f"per-item arrays differ in length: {sorted(lengths)}")
    if lengths == {0}:
        raise ValueError("bootstrap needs at least one item")
    for column in columns:
        if not np.isfinite(column).all():
            raise ValueError("per-item values must be finite (found NaN or inf)")
    return columns


def _jackknife(statistic: Statistic, columns: list[np.ndarray]) -> np.ndarray:
    """Leave-one-item-out values of the statistic (for BCa's acceleration), in chunks."""
    n = len(columns[0])
    if n == 1:
        return np.array([float(statistic(*(column[None] for column in columns))[0])])
    kept = np.arange(n - 1)
    values = []
    for start in range(0, n, _JACKKNIFE_CHUNK):
        left_out = np.arange(start, min(start + _JACKKNIFE_CHUNK, n))
        rows = kept[None, :] + (kept[None, :] >= left_out[:, None])
        values.append(np.asarray(statistic(*(column[rows] for column in columns)), np.float64))
    return np.concatenate(values)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
