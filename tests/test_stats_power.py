"""Detectable effects against their closed form and a power simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lens_steer.stats import detectable_effect, detectable_from_standard_error


def test_normal_approximation_matches_the_closed_form():
    # z(0.975) + z(0.8) = 1.959964 + 0.841621 = 2.801585.
    assert detectable_effect(2.0, 25, approximation="normal") == pytest.approx(
        2.801585 * 2.0 / 5.0, abs=1e-6
    )


def test_t_approximation_uses_n_minus_one_degrees_of_freedom():
    expected = (stats.t.ppf(0.995, 11) + stats.t.ppf(0.9, 11)) * 1.5 / math.sqrt(12)
    assert detectable_effect(1.5, 12, alpha=0.01, power=0.9) == pytest.approx(expected)
    assert detectable_effect(1.5, 12) > detectable_effect(1.5, 12, approximation="normal")


def test_effect_of_the_detectable_size_is_found_about_80_percent_of_the_time():
    n, reps = 30, 1000
    shift = detectable_effect(1.0, n)
    rng = np.random.default_rng(0)
    data = rng.normal(shift, 1.0, size=(reps, n))
    power = np.mean(stats.ttest_1samp(data, 0.0, axis=1).pvalue < 0.05)
    assert 0.74 <= power <= 0.86


def test_undefined_spread_gives_nan_and_zero_spread_gives_zero():
    assert math.isnan(detectable_effect(1.0, 1))
    assert math.isnan(detectable_effect(math.nan, 10))
    assert detectable_effect(0.0, 10) == 0.0


def test_from_standard_error_is_the_normal_formula_by_default():
    assert detectable_from_standard_error(0.1) == pytest.approx(0.2801585, abs=1e-6)
    with pytest.raises(ValueError):
        detectable_from_standard_error(0.1, power=1.0)
