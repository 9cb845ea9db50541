"""Aggregate scores from per-item rows: a value, its interval, n and the settings behind it.

* **share** metrics (accuracy, localization share): the mean binary outcome over the included
  items, with a Wilson interval (``interval="wilson"``, the default; it does not collapse at
  0 or 1) or Clopper–Pearson, or the percentile bootstrap of earlier versions
  (``interval="bootstrap"``, kept to reproduce old results).
* **gap** metrics (gap closure): ``gap = reference - margin_unsteered`` is what naming the
  country adds to the gold answer, ``gain = margin - margin_unsteered`` what the intervention
  adds; items whose gap is below ``min_gap`` nats have nothing to close and are skipped (counted
  in ``settings["n_skipped"]``). The score is ``sum(gain) / sum(gap)`` with a bootstrap
  interval over items.

* **gain** metrics: the mean per-item change of the margin against the unsteered model (nats),
  with a bootstrap interval over items; 0 for the unsteered model by construction.

Every score also carries the mean continuous margin with its bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from lens_steer.evaluate.metrics import ItemScore
from lens_steer.stats.intervals import (
    bootstrap_mean_interval,
    bootstrap_ratio_interval,
    proportion_interval,
)

Interval = Literal["wilson", "clopper_pearson", "bootstrap"]


@dataclass(frozen=True)
class Score:
    """A score with its bootstrap interval and the settings that produced it."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    metric: str
    settings: dict[str, Any] = field(default_factory=dict)
    margin: float | None = None
    margin_ci: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (NaN becomes None)."""
        out = asdict(self)
        out["margin_ci"] = list(self.margin_ci) if self.margin_ci is not None else None
        return _no_nan(out)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Score:
        fields = dict(obj)
        for name in ("value", "ci_low", "ci_high"):
            fields[name] = float("nan") if fields[name] is None else fields[name]
        if fields.get("margin_ci") is not None:
            fields["margin_ci"] = tuple(fields["margin_ci"])
        return cls(**fields)

    def __repr__(self) -> str:
        return (
            f"Score({self.metric}: {self.value:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}], "
            f"n={self.n})"
        )


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# Scores from option log-probs (no model): what the tests pin by hand.
# ---------------------------------------------------------------------------------------------


def bootstrap_interval(
    per_item: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over items (the interval of version 1).

    Kept so that earlier results are reproduced exactly; proportions now default to Wilson.

    Args:
        per_item: one row per item (``[item]`` or ``[item, k]``).
        statistic: maps resamples ``[sample, item, ...]`` to one value per sample ``[sample]``.
        n_bootstrap: resamples; 0 gives a zero-width interval at the point estimate.
        seed: seed of the local ``numpy.random.default_rng``.
        confidence: central mass of the interval.

    Example:
        >>> bootstrap_interval(np.array([1.0, 0.0, 1.0, 1.0]), lambda s: s.mean(axis=1))  # doctest: +SKIP
        (0.25, 1.0)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    point = float(statistic(per_item[None])[0])
    if n_bootstrap == 0:
        return point, point
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_item), size=(n_bootstrap, len(per_item)))
    samples = np.asarray(statistic(per_item[draws]), dtype=np.float64)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _mean(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1)


def _included(rows: Sequence[ItemScore]) -> list[ItemScore]:
    return [row for row in rows if row.included]


def _margin_summary(
    margins: np.ndarray, n_bootstrap: int, seed: int, confidence: float
) -> tuple[float | None, tuple[float, float] | None]:
    finite = margins[np.isfinite(margins)]
    if finite.size == 0:
        return None, None
    low, high = bootstrap_mean_interval(
        finite, n_bootstrap=max(n_bootstrap, 1), seed=seed, confidence=confidence
    )
    return float(finite.mean()), (low, high)


def share_score(
    rows: Sequence[ItemScore],
    metric: str,
    *,
    interval: Interval = "wilson",
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Mean outcome over the included items, with its interval, and the mean margin.

    Example:
        >>> rows = [ItemScore("a", 1.0, outcome=1.0), ItemScore("b", -1.0, outcome=0.0)]
        >>> share_score(rows, "transfer").value
        0.5
    """
    kept = _included(rows)
    outcomes = np.asarray([row.outcome for row in kept], dtype=np.float64)
    if outcomes.size == 0:
        raise ValueError(f"{metric}: no included items to score (settings: {settings})")
    if not np.isfinite(outcomes).all():
        raise ValueError(f"{metric}: a share needs a binary outcome for every included item")
    value = float(outcomes.mean())
    if interval == "bootstrap":
        low, high = bootstrap_interval(
            outcomes, _mean, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence
        )
    else:
        low, high = proportion_interval(
            int(outcomes.sum()), outcomes.size, confidence=confidence, method=interval
        )
    margin, margin_ci = _margin_summary(
        np.asarray([row.margin for row in kept]), n_bootstrap, seed, confidence
    )
    full = {
        **(settings or {}),
        "interval": interval,
        "n_excluded": len(rows) - len(kept),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
    }
    return Score(value, low, high, outcomes.size, metric, full, margin, margin_ci)


def gap_score(
    rows: Sequence[ItemScore],
    baseline: Sequence[ItemScore],
    metric: str,
    *,
    min_gap: float = 0.1,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Share of the reference gap closed: ``sum(margin - base) / sum(reference - base)``.

    Example:
        >>> base = [ItemScore("a", -4.0, reference=-2.0), ItemScore("b", -4.0, reference=-2.0)]
        >>> rows = [ItemScore("a", -3.0, reference=-2.0), ItemScore("b", -2.0, reference=-2.0)]
        >>> gap_score(rows, base, "gap_closure").value
        0.75
    """
    by_item = {row.item: row for row in baseline}
    missing = [row.item for row in rows if row.item not in by_item]
    if missing:
        raise ValueError(f"{metric}: no unsteered row for item(s) {missing[:5]}")
    gains, gaps = [], []
    n_skipped = 0
    for row in _included(rows):
        base = by_item[row.item]
        gap = row.reference - base.margin
        if not math.isfinite(gap) or gap < min_gap:
            n_skipped += 1
            continue
        gains.append(row.margin - base.margin)
        gaps.append(gap)
    if not gaps:
        raise ValueError(f"{metric}: no item has a reference gap >= {min_gap} nats")
    gain_a, gap_a = np.asarray(gains), np.asarray(gaps)
    value = float(gain_a.sum() / gap_a.sum())
    low, high = bootstrap_ratio_interval(
        gain_a, gap_a, n_bootstrap=max(n_bootstrap, 1), seed=seed, confidence=confidence
    )
    margin, margin_ci = _margin_summary(gain_a, n_bootstrap, seed, confidence)
    full = {
        **(settings or {}),
        "min_gap": min_gap,
        "aggregation": "ratio_of_sums",
        "n_skipped": n_skipped,
        "margin_is": "gain over the unsteered model (nats)",
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
    }
    return Score(value, low, high, gap_a.size, metric, full, margin, margin_ci)


def gain_score(
    rows: Sequence[ItemScore],
    baseline: Sequence[ItemScore],
    metric: str,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Mean per-item ``margin - baseline margin`` over the included items (nats).

    Example:
        >>> base = [ItemScore("a", -4.0), ItemScore("b", -2.0)]
        >>> gain_score([ItemScore("a", -3.0), ItemScore("b", -1.0)], base, "gold_logprob").value
        1.0
    """
    by_item = {row.item: row for row in baseline}
    gains = np.asarray(
        [
            row.margin - by_item[row.item].margin
            for row in _included(rows)
            if row.item in by_item and math.isfinite(row.margin - by_item[row.item].margin)
        ]
    )
    if gains.size == 0:
        raise ValueError(f"{metric}: no included items to score (settings: {settings})")
    low, high = bootstrap_mean_interval(
        gains, n_bootstrap=max(n_bootstrap, 1), seed=seed, confidence=confidence
    )
    full = {
        **(settings or {}),
        "aggregation": "mean gain over the unsteered model (nats)",
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
    }
    value = float(gains.mean())
    return Score(value, low, high, int(gains.size), metric, full, value, (low, high))
