"""Equivalence tests (TOST by interval inclusion) and the sign-flip null of a fitted cosine.

"Two vectors are perpendicular" cannot be shown by failing to find a cosine: a noisy estimate
fails too. It is shown by an equivalence test: the cosine is within ``±margin`` of 0 when the
``1 - 2·alpha`` interval lies inside the band, which is the two one-sided tests (TOST) at level
``alpha``. The margin comes from an empirical null: the cosines a contrast vector fitted on
*no* signal (item differences with random signs) has with the other vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from lens_steer.stats._plain import plain


@dataclass(frozen=True)
class Equivalence:
    """An estimate against a margin band ``(-margin, margin)``.

    ``equivalent``: the ``1 - 2·alpha`` interval (``tost_low``, ``tost_high``) lies inside the
    band (TOST at level ``alpha``). ``different``: the ``1 - alpha`` interval (``ci_low``,
    ``ci_high``) lies entirely outside it. Neither: the data cannot tell.
    """

    estimate: float
    margin: float
    alpha: float
    tost_low: float
    tost_high: float
    ci_low: float
    ci_high: float
    equivalent: bool
    different: bool

    @property
    def smallest_margin(self) -> float:
        """The narrowest band this data could call equivalent: ``max(|tost_low|, |tost_high|)``."""
        return max(abs(self.tost_low), abs(self.tost_high))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; NaN becomes None."""
        return plain(asdict(self))


def equivalence_test(
    estimate: float,
    bootstrap_samples: Float[ArrayLike, " draw"],
    margin: float,
    *,
    alpha: float = 0.05,
) -> Equivalence:
    """TOST by interval inclusion, with percentile intervals of bootstrap samples.

    Args:
        estimate: the statistic on the full data.
        bootstrap_samples: the statistic on item resamples.
        margin: half-width of the equivalence band (> 0).
        alpha: level of each one-sided test.

    Example:
        >>> result = equivalence_test(0.01, np.linspace(-0.05, 0.05, 101), margin=0.1)
        >>> result.equivalent, result.different
        (True, False)
    """
    samples = np.asarray(bootstrap_samples, dtype=np.float64).ravel()
    if samples.size == 0 or not np.isfinite(samples).all():
        raise ValueError("bootstrap_samples must be non-empty and finite")
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    tost_low, tost_high = np.quantile(samples, [alpha, 1 - alpha])
    ci_low, ci_high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return Equivalence(
        estimate=float(estimate),
        margin=float(margin),
        alpha=alpha,
        tost_low=float(tost_low),
        tost_high=float(tost_high),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        equivalent=bool(-margin < tost_low and tost_high < margin),
        different=bool(ci_low >= margin or ci_high <= -margin),
    )


def sign_flip_null(
    item_differences: Float[ArrayLike, "item layer d_model"],
    reference: Float[ArrayLike, "layer d_model"],
    *,
    scale: Float[ArrayLike, "layer d_model"] | None = None,
    n_flips: int = 200,
    seed: int = 0,
    center: bool = True,
) -> Float[np.ndarray, "flip layer"]:
    """Cosines between ``reference`` and contrast vectors refitted with random item signs.

    A contrast vector is the mean of paired item differences. The differences are first
    centered (their mean removed, per layer) and then each item's sign is flipped at random
    (one sign per item, shared by all layers): this keeps the noise of the differences but no
    consistent direction, so these cosines are what the fitted vector would show against
    ``reference`` if it held no signal. Why center: flipping uncentered differences leaves a
    random ``±mean(signs)`` share (about ``1/sqrt(item)``) of the true direction in every
    refit, so the null would grow with the very cosine under test (a fitted vector parallel to
    ``reference`` would widen its own null). ``center=False`` gives the classic sign-flip
    permutation null of the mean instead.

    Args:
        item_differences: paired differences per item, layer and dimension.
        reference: the vector compared with, per layer.
        scale: per-layer, per-dimension standard deviation; both vectors are divided by it
            before the cosine (the standardized cosine). None: raw cosines.
        n_flips: number of random sign patterns.
        seed: seed of ``numpy.random.default_rng``.
        center: remove the mean difference before flipping (see above).

    Returns:
        ``[flip, layer]`` cosines; 0 where a vector has zero norm.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> diffs = rng.normal(size=(40, 2, 64)) + 1.0  # every item points along (1, ..., 1)
        >>> null = sign_flip_null(diffs, np.ones((2, 64)), n_flips=100)
        >>> null.shape, bool((null_quantile(null) < 0.5).all())
        ((100, 2), True)
    """
    diffs = np.asarray(item_differences, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if diffs.ndim != 3 or ref.shape != diffs.shape[1:]:
        raise ValueError(
            f"item_differences must be [item, layer, d] and reference [layer, d], "
            f"got {diffs.shape} and {ref.shape}"
        )
    if scale is not None:
        std = np.asarray(scale, dtype=np.float64)
        if std.shape != ref.shape or not (std > 0).all():
            raise ValueError(f"scale must be positive with shape {ref.shape}, got {std.shape}")
        diffs, ref = diffs / std, ref / std
    if n_flips < 1:
        raise ValueError(f"n_flips must be >= 1, got {n_flips}")
    if center:
        diffs = diffs - diffs.mean(axis=0)
    rng = np.random.default_rng(seed)
    signs = rng.integers(0, 2, size=(n_flips, diffs.shape[0])) * 2.0 - 1.0
    cosines = np.empty((n_flips, diffs.shape[1]))
    for layer in range(diffs.shape[1]):
        fitted = signs @ diffs[:, layer] / diffs.shape[0]
        cosines[:, layer] = _cosines(fitted, ref[layer])
    return cosines


def null_quantile(
    null_cosines: Float[ArrayLike, "flip layer"], level: float = 0.95
) -> Float[np.ndarray, " layer"]:
    """Per-layer ``level`` quantile of ``|cos|`` under the null: a margin for perpendicularity.

    Example:
        >>> null_quantile(np.array([[0.1], [-0.3], [0.2]]), level=0.5)
        array([0.2])
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    null = np.asarray(null_cosines, dtype=np.float64)
    if null.ndim != 2 or null.shape[0] == 0:
        raise ValueError(f"null_cosines must be a non-empty [flip, layer] array, got {null.shape}")
    return np.quantile(np.abs(null), level, axis=0)


def _cosines(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(vector)
    dots = rows @ vector
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
