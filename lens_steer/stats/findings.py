"""A finding: a pre-registered prediction with its statistic, interval, n and verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lens_steer.stats._plain import plain

Verdict = Literal["supported", "refuted", "inconclusive"]


@dataclass(frozen=True)
class Finding:
    """One pre-registered finding: what was predicted, what was measured, and the verdict.

    ``estimate`` with ``ci_low``/``ci_high`` (coverage ``confidence``) is the statistic the
    verdict turns on; ``detectable_effect`` is the effect the design detects with 80% power
    (for equivalence: the narrowest margin the data could have established); ``details``
    holds every comparison behind the verdict.
    """

    id: str
    claim: str
    prediction: str
    statistic: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    verdict: Verdict
    detectable_effect: float
    confidence: float
    margin: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; NaN becomes None."""
        return plain(asdict(self))


def directional_verdict(intervals: Sequence[tuple[float, float]]) -> Verdict:
    """Verdict on "each difference is positive" from the differences' intervals.

    Example:
        >>> directional_verdict([(0.1, 0.5), (-0.2, 0.3)])
        'inconclusive'
    """
    if not intervals:
        raise ValueError("a directional verdict needs at least one comparison")
    if all(low > 0 for low, _ in intervals):
        return "supported"
    if any(high < 0 for _, high in intervals):
        return "refuted"
    return "inconclusive"
