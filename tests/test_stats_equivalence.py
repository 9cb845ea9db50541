"""TOST by interval inclusion and the sign-flip null of a fitted cosine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lens_steer.stats import equivalence_test, null_quantile, sign_flip_null


def test_intervals_are_percentiles_of_the_samples():
    samples = np.random.default_rng(0).normal(0.02, 0.03, size=2000)
    result = equivalence_test(0.02, samples, 0.1, alpha=0.05)
    assert (result.tost_low, result.tost_high) == pytest.approx(
        tuple(np.percentile(samples, [5, 95]))
    )
    assert (result.ci_low, result.ci_high) == pytest.approx(
        tuple(np.percentile(samples, [2.5, 97.5]))
    )
    assert result.equivalent and not result.different
    assert result.smallest_margin == pytest.approx(max(-result.tost_low, result.tost_high))


def test_an_estimate_far_from_zero_is_different_not_equivalent():
    samples = np.random.default_rng(1).normal(0.5, 0.05, size=2000)
    result = equivalence_test(0.5, samples, 0.1)
    assert result.different and not result.equivalent
    negative = equivalence_test(-0.5, -samples, 0.1)
    assert negative.different and not negative.equivalent


def test_a_wide_interval_is_neither():
    samples = np.random.default_rng(2).normal(0.0, 0.2, size=2000)
    result = equivalence_test(0.0, samples, 0.1)
    assert not result.equivalent and not result.different


def test_tost_uses_the_one_minus_two_alpha_interval():
    # Samples 0..100: the 90% interval is [5, 95], the 95% interval [2.5, 97.5].
    samples = np.arange(101.0)
    assert equivalence_test(50.0, samples - 50, 45.5).equivalent
    assert not equivalence_test(50.0, samples - 50, 44.5).equivalent
    assert equivalence_test(50.0, samples, 2.5).different
    assert not equivalence_test(50.0, samples - 0.1, 2.5).different
    assert equivalence_test(-50.0, -samples, 2.5).different


@pytest.mark.parametrize("margin", [0.0, -0.1])
def test_margin_must_be_positive(margin):
    with pytest.raises(ValueError):
        equivalence_test(0.0, [0.0, 0.1], margin)


def test_to_json_is_plain():
    obj = equivalence_test(0.0, [0.0, 0.01, -0.01], 0.1).to_json()
    assert json.loads(json.dumps(obj))["equivalent"] is True


def _aligned_differences(n_items: int, n_layers: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(n_layers, d))
    noise = rng.normal(size=(n_items, n_layers, d))
    return rng, direction + noise, direction


def _fitted_cosine(differences: np.ndarray, reference: np.ndarray) -> np.ndarray:
    fitted = differences.mean(axis=0)
    dots = (fitted * reference).sum(axis=-1)
    return dots / (np.linalg.norm(fitted, axis=-1) * np.linalg.norm(reference, axis=-1))


def test_the_true_direction_lies_far_outside_the_null():
    _, differences, direction = _aligned_differences(40, 3, 64, seed=0)
    null = sign_flip_null(differences, direction, n_flips=300, seed=1)
    observed = _fitted_cosine(differences, direction)
    assert null.shape == (300, 3)
    assert (observed > 0.9).all()
    assert (observed > 2 * null_quantile(null, 0.99)).all()


def test_uncentered_flips_keep_part_of_the_signal_in_the_null():
    _, differences, direction = _aligned_differences(40, 3, 64, seed=0)
    centered = null_quantile(sign_flip_null(differences, direction, seed=1))
    classic = null_quantile(sign_flip_null(differences, direction, seed=1, center=False))
    # Noise alone gives |cos| of order 1/sqrt(d); the classic null also carries the signal.
    assert (centered < 0.4).all() and (classic > 0.7).all()


def test_an_unrelated_reference_lies_inside_the_null():
    rng, differences, _ = _aligned_differences(40, 20, 64, seed=2)
    unrelated = rng.normal(size=(20, 64))
    null = sign_flip_null(differences, unrelated, n_flips=300, seed=3)
    observed = _fitted_cosine(differences, unrelated)
    # Each layer falls inside its 95% band with probability about 0.95.
    assert np.mean(np.abs(observed) < null_quantile(null, 0.95)) >= 0.8


def test_null_spread_of_isotropic_noise_is_one_over_sqrt_d():
    rng = np.random.default_rng(4)
    d = 256
    null = sign_flip_null(rng.normal(size=(300, 2, d)), rng.normal(size=(2, d)), n_flips=1000)
    assert np.abs(null.mean(axis=0)).max() < 0.01
    # Conditional on 300 noise vectors the spread varies by about 1/sqrt(600) = 4%.
    np.testing.assert_allclose(null.std(axis=0), 1 / np.sqrt(d), rtol=0.15)


def test_null_matches_a_hand_loop_over_flips():
    rng = np.random.default_rng(5)
    differences, reference = rng.normal(size=(7, 2, 5)), rng.normal(size=(2, 5))
    null = sign_flip_null(differences, reference, n_flips=20, seed=6)
    differences = differences - differences.mean(axis=0)
    signs = np.random.default_rng(6).integers(0, 2, size=(20, 7)) * 2.0 - 1.0
    for flip in range(20):
        fitted = (signs[flip][:, None, None] * differences).mean(axis=0)
        np.testing.assert_allclose(null[flip], _fitted_cosine(fitted[None], reference), atol=1e-12)


def test_scale_standardizes_both_vectors_before_the_cosine():
    rng = np.random.default_rng(7)
    differences, reference = rng.normal(size=(9, 2, 6)), rng.normal(size=(2, 6))
    scale = rng.uniform(0.1, 10.0, size=(2, 6))
    scaled = sign_flip_null(differences, reference, scale=scale, seed=8)
    by_hand = sign_flip_null(differences / scale, reference / scale, seed=8)
    np.testing.assert_allclose(scaled, by_hand, atol=1e-12)
    assert not np.allclose(scaled, sign_flip_null(differences, reference, seed=8))


def test_zero_vectors_give_cosine_zero_not_nan():
    null = sign_flip_null(np.ones((2, 1, 3)), np.ones((1, 3)), n_flips=50, center=False)
    assert np.isfinite(null).all()
    assert set(np.round(np.unique(null), 12)) <= {-1.0, 0.0, 1.0}
    assert (null == 0).any()
    assert (sign_flip_null(np.ones((2, 1, 3)), np.ones((1, 3))) == 0).all()  # centered: no noise


def test_sign_flip_null_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        sign_flip_null(np.ones((4, 2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError):
        sign_flip_null(np.ones((4, 2, 3)), np.ones((2, 3)), scale=np.zeros((2, 3)))


def test_null_quantile_is_the_quantile_of_absolute_cosines():
    null = np.random.default_rng(9).normal(0.0, 0.1, size=(500, 4))
    np.testing.assert_allclose(null_quantile(null, 0.9), np.quantile(np.abs(null), 0.9, axis=0))
    with pytest.raises(ValueError):
        null_quantile(null, 1.0)
