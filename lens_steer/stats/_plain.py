"""Plain JSON values from the numbers the statistics produce (NaN and infinities become None)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists.

    JSON has no NaN or infinity, so a non-finite float becomes ``None``: an undefined statistic
    (a p-value of zero items, an unbounded detectable effect) reads as missing, not as a number.

    Example:
        >>> plain({"p": np.float64(0.5), "ci": np.array([0.1, np.nan]), "n": np.int64(3)})
        {'p': 0.5, 'ci': [0.1, None], 'n': 3}
    """
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
