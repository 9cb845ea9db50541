"""Proportion intervals and the item bootstrap, against scipy and hand computations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from lens_steer.stats import (
    bootstrap_distribution,
    bootstrap_mean,
    bootstrap_mean_interval,
    bootstrap_ratio_interval,
    proportion_interval,
)

Z95 = stats.norm.ppf(0.975)


def test_clopper_pearson_of_12_of_12_does_not_collapse_at_one():
    low, high = proportion_interval(12, 12, method="clopper_pearson")
    # With k = n the exact lower bound solves p**n = alpha/2.
    assert low == pytest.approx(0.025 ** (1 / 12), abs=1e-10)
    assert round(low, 4) == 0.7354
    assert high == 1.0


def test_wilson_of_12_of_12_is_close_to_exact_and_not_a_point():
    low, high = proportion_interval(12, 12)
    assert low == pytest.approx(12 / (12 + Z95**2), abs=1e-10)  # closed form at p = 1
    assert 0.7 < low < 0.8 and high == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("method", "expected_high"),
    [("clopper_pearson", 1 - 0.025 ** (1 / 10)), ("wilson", Z95**2 / (10 + Z95**2))],
)
def test_zero_successes_give_an_interval_of_positive_width(method, expected_high):
    low, high = proportion_interval(0, 10, method=method)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(expected_high, abs=1e-10)


def test_wilson_matches_the_closed_form():
    k, n, z = 5, 10, Z95
    p = k / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    low, high = proportion_interval(k, n, method="wilson")
    assert (low, high) == pytest.approx((center - half, center + half), abs=1e-10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_clopper_pearson_matches_beta_quantiles_at_90_percent():
    k, n = 7, 20
    low, high = proportion_interval(k, n, confidence=0.9, method="clopper_pearson")
    assert low == pytest.approx(stats.beta.ppf(0.05, k, n - k + 1), abs=1e-10)
    assert high == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), abs=1e-10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"successes": 1, "n": 0},
        {"successes": 11, "n": 10},
        {"successes": -1, "n": 10},
        {"successes": 1, "n": 10, "confidence": 1.0},
        {"successes": 1, "n": 10, "method": "normal"},
    ],
)
def test_proportion_interval_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        proportion_interval(**kwargs)


SKEWED = np.random.default_rng(1).gamma(2.0, size=30)  # BCa differs from percentile
BINARY = np.array([1.0] * 7 + [0.0] * 5)  # many draws tie with the estimate (BCa's z0)


@pytest.mark.parametrize("values", [SKEWED, BINARY], ids=["skewed", "binary"])
@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_mean_interval_matches_scipy_bootstrap_with_the_same_draws(values, method, scipy_method):
    ours = bootstrap_mean_interval(values, n_bootstrap=999, seed=7, method=method)
    theirs = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=999,
        method=scipy_method,
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), rel=1e-12)


def test_bca_and_percentile_differ_on_skewed_data():
    values = np.random.default_rng(1).gamma(0.5, size=30)
    assert bootstrap_mean_interval(values, method="bca") != pytest.approx(
        bootstrap_mean_interval(values, method="percentile"), abs=1e-6
    )


def test_percentile_interval_matches_a_hand_resampling():
    values = np.array([0.3, -1.2, 2.5, 0.0, 1.1, 0.7])
    draws = np.random.default_rng(3).integers(0, 6, size=(500, 6))
    means = values[draws].mean(axis=1)
    expected = np.percentile(means, [5, 95])
    got = bootstrap_mean_interval(values, n_bootstrap=500, seed=3, confidence=0.9)
    assert got == pytest.approx(tuple(expected), abs=1e-12)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_constant_values_give_a_zero_width_interval_without_warnings(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_mean_interval([0.1] * 9, method=method) == (0.1, 0.1)
        assert bootstrap_mean_interval([-2.0], method=method) == (-2.0, -2.0)


def test_same_seed_same_interval_other_seed_other_interval():
    values = np.random.default_rng(0).normal(size=25)
    first = bootstrap_mean_interval(values, seed=4)
    assert bootstrap_mean_interval(values, seed=4) == first
    assert bootstrap_mean_interval(values, seed=5) != first


def test_ratio_interval_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(2)
    gaps = rng.uniform(0.2, 3.0, size=40)
    gains = gaps * rng.uniform(-0.2, 0.9, size=40)

    def ratio(num, den, axis=-1):
        return num.sum(axis=axis) / den.sum(axis=axis)

    for ours_method, scipy_method in (("percentile", "percentile"), ("bca", "BCa")):
        ours = bootstrap_ratio_interval(gains, gaps, n_bootstrap=800, seed=9, method=ours_method)
        theirs = stats.bootstrap(
            (gains, gaps),
            ratio,
            paired=True,
            n_resamples=800,
            method=scipy_method,
            rng=np.random.default_rng(9),
        ).confidence_interval
        assert ours == pytest.approx((theirs.low, theirs.high), rel=1e-12)


def test_ratio_of_sums_weighs_items_by_their_denominator():
    dist = bootstrap_distribution(
        lambda num, den: num.sum(axis=1) / den.sum(axis=1), [1.0, 0.0], [1.0, 3.0]
    )
    assert dist.estimate == 0.25  # not the mean of per-item ratios (0.5)


def test_ratio_interval_rejects_a_zero_denominator_sum():
    with pytest.raises(ValueError, match="not finite"):
        bootstrap_ratio_interval([1.0, 1.0], [1.0, -1.0])


def test_bootstrap_distribution_keeps_samples_and_jackknife():
    dist = bootstrap_mean([1.0, 2.0, 3.0, 6.0], n_bootstrap=50, seed=0)
    assert dist.estimate == 3.0
    assert dist.samples.shape == (50,)
    # Leave-one-out means, item by item.
    np.testing.assert_allclose(dist.jackknife, [11 / 3, 10 / 3, 3.0, 2.0], atol=1e-12)
    assert dist.interval(0.5) != dist.interval(0.9)


@pytest.mark.parametrize("values", [[], [1.0, np.nan], [np.inf]])
def test_bootstrap_rejects_empty_or_non_finite_values(values):
    with pytest.raises(ValueError):
        bootstrap_mean_interval(values)


def test_bootstrap_rejects_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ratio_interval([1.0, 2.0], [1.0])
