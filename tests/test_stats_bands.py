"""Layer bands: thirds of the model."""

from __future__ import annotations

import numpy as np
import pytest

from lens_steer.stats import BANDS, band_layers, band_means, layer_band


def test_18_layers_split_into_three_bands_of_six():
    assert band_layers(18) == {
        "early": list(range(0, 6)),
        "middle": list(range(6, 12)),
        "late": list(range(12, 18)),
    }
    assert [layer_band(layer, 18) for layer in (0, 5, 6, 11, 12, 17)] == [
        "early",
        "early",
        "middle",
        "middle",
        "late",
        "late",
    ]


@pytest.mark.parametrize(("n_layers", "sizes"), [(19, (7, 6, 6)), (20, (7, 7, 6)), (26, (9, 9, 8))])
def test_earlier_bands_take_the_extra_layers(n_layers, sizes):
    bands = band_layers(n_layers)
    assert tuple(len(bands[band]) for band in BANDS) == sizes
    # Every layer once, contiguous and in order.
    assert sum(bands.values(), []) == list(range(n_layers))


@pytest.mark.parametrize(("layer", "n_layers"), [(-1, 18), (18, 18), (0, 2)])
def test_layer_band_rejects_layers_outside_the_model(layer, n_layers):
    with pytest.raises(ValueError):
        layer_band(layer, n_layers)


def test_band_means_average_the_last_axis_within_bands():
    per_layer = np.arange(14.0).reshape(2, 7)  # bands of 7 layers: 0-2, 3-4, 5-6
    means = band_means(per_layer)
    np.testing.assert_allclose(means["early"], [1.0, 8.0])
    np.testing.assert_allclose(means["middle"], [3.5, 10.5])
    np.testing.assert_allclose(means["late"], [5.5, 12.5])
