"""Checks on tensors shared by the values that hold them."""

from __future__ import annotations

import torch
from torch import Tensor


def check_finite(tensor: Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the first bad index when ``tensor`` has NaN/inf."""
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{what} has {int(bad.sum())} NaN/inf value(s); first at index {first}")
