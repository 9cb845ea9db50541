"""Detectable effects: how large a true effect a design finds, so a null result says what it missed."""

from __future__ import annotations

import math
from typing import Literal

from scipy.stats import norm, t

Approximation = Literal["t", "normal"]


def detectable_effect(
    sd: float,
    n: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    approximation: Approximation = "t",
) -> float:
    """Smallest true mean difference a two-sided paired test finds with the given power.

    ``(q(1 - alpha/2) + q(power)) * sd / sqrt(n)``, with ``q`` the quantile of Student's t with
    ``n - 1`` degrees of freedom (``approximation="t"``, the default: it ignores the
    noncentrality of the t law, slightly optimistic) or of the standard normal. NaN when
    ``n < 2`` (no spread can be estimated).

    Example:
        >>> round(detectable_effect(1.0, 100, approximation="normal"), 4)  # 2.8016 / 10
        0.2802
    """
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return detectable_from_standard_error(
        sd / math.sqrt(n),
        alpha=alpha,
        power=power,
        df=n - 1 if approximation == "t" else None,
    )


def detectable_from_standard_error(
    standard_error: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    df: float | None = None,
) -> float:
    """``(q(1 - alpha/2) + q(power)) * standard_error``; ``q`` normal, or t with ``df``.

    Example:
        >>> round(detectable_from_standard_error(0.1), 4)
        0.2802
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    law = norm if df is None else t(df)
    return float((law.ppf(1 - alpha / 2) + law.ppf(power)) * standard_error)
