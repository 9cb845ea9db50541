"""Layer bands: the early, middle and late thirds of a model, where predictions are placed."""

from __future__ import annotations

from typing import Literal

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

Band = Literal["early", "middle", "late"]
BANDS: tuple[Band, ...] = ("early", "middle", "late")


def layer_band(layer: int, n_layers: int) -> Band:
    """The third of the model a layer belongs to: band index ``floor(3 * layer / n_layers)``.

    With 18 layers: 0–5 early, 6–11 middle, 12–17 late. When ``n_layers`` is not a multiple
    of 3 the earlier bands take the extra layers (26 layers: 0–8, 9–17, 18–25).

    Example:
        >>> [layer_band(layer, 18) for layer in (5, 6, 11, 12)]
        ['early', 'middle', 'middle', 'late']
    """
    if n_layers < 3:
        raise ValueError(f"three layer bands need at least 3 layers, got {n_layers}")
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} outside 0..{n_layers - 1}")
    return BANDS[3 * layer // n_layers]


def band_layers(n_layers: int) -> dict[Band, list[int]]:
    """The layers of each band, in order.

    Example:
        >>> band_layers(7)
        {'early': [0, 1, 2], 'middle': [3, 4], 'late': [5, 6]}
    """
    bands: dict[Band, list[int]] = {band: [] for band in BANDS}
    for layer in range(n_layers):
        bands[layer_band(layer, n_layers)].append(layer)
    return bands


def band_means(per_layer: Float[ArrayLike, "... layer"]) -> dict[Band, np.ndarray]:
    """Mean over each band's layers of the last axis (which holds layers ``0..n_layers-1``).

    Example:
        >>> {band: float(v) for band, v in band_means(np.arange(6.0)).items()}
        {'early': 0.5, 'middle': 2.5, 'late': 4.5}
    """
    values = np.asarray(per_layer, dtype=np.float64)
    return {
        band: values[..., layers].mean(axis=-1)
        for band, layers in band_layers(values.shape[-1]).items()
    }
