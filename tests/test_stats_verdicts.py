"""Verdict rules on synthetic data with planted effects, flat noise and contrary effects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lens_steer.stats import (
    BANDS,
    band_means,
    band_peak_verdict,
    difference_of_effects,
    equivalence_verdict,
    ordering_verdict,
    superiority_noninferiority_verdict,
)

N_LAYERS = 18


def _per_item_effects(profile: np.ndarray, n: int = 80, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-item effects ``[item, layer]`` around a per-layer profile, averaged within bands."""
    rng = np.random.default_rng(seed)
    item_scale = rng.normal(1.0, 0.3, size=(n, 1))  # items respond with different strengths
    effects = item_scale * profile + rng.normal(0.0, 1.0, size=(n, N_LAYERS))
    return {band: values for band, values in band_means(effects).items()}


def _peak(center: int, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((np.arange(N_LAYERS) - center) / 2.0) ** 2)


def _band_peak(effects, predicted="middle"):
    return band_peak_verdict(effects, predicted, finding_id="peak", claim="mid-depth peak")


def test_planted_mid_layer_peak_is_supported():
    effects = _per_item_effects(_peak(8))
    finding = _band_peak(effects)
    assert finding.verdict == "supported"
    expected = min(
        np.mean(effects["middle"] - effects["early"]), np.mean(effects["middle"] - effects["late"])
    )
    assert finding.estimate == pytest.approx(expected)
    assert 0 < finding.ci_low < finding.estimate < finding.ci_high
    assert finding.n == 80 and finding.confidence == 0.95
    assert set(finding.details["comparisons"]) == {"early", "late"}


def test_flat_noise_is_inconclusive_and_states_the_detectable_effect():
    finding = _band_peak(_per_item_effects(np.zeros(N_LAYERS), seed=1))
    assert finding.verdict == "inconclusive"
    # Band means of 6 layers of unit noise: differences have sd about sqrt(2/6) = 0.58.
    expected = 2.8 * np.sqrt(2 / 6) / np.sqrt(80)
    assert finding.detectable_effect == pytest.approx(expected, rel=0.25)
    assert finding.to_json()["detectable_effect"] > 0


def test_planted_late_peak_refutes_a_middle_prediction():
    finding = _band_peak(_per_item_effects(_peak(15), seed=2))
    assert finding.verdict == "refuted"
    assert finding.details["smallest"] == "late"
    assert finding.ci_high < 0


def test_band_peak_comparisons_are_paired_differences_of_effects():
    effects = _per_item_effects(_peak(8), seed=3)
    finding = band_peak_verdict(
        effects, "middle", finding_id="p", claim="c", others=["late"], seed=4, n_bootstrap=500
    )
    reference = difference_of_effects(effects["middle"], effects["late"], seed=4, n_bootstrap=500)
    assert finding.details["comparisons"]["late"] == reference.to_json()
    assert (finding.estimate, finding.ci_low, finding.ci_high) == pytest.approx(
        (reference.mean_delta, reference.ci_low, reference.ci_high)
    )
    json.dumps(finding.to_json(), allow_nan=False)


def test_band_peak_rejects_an_unknown_band():
    with pytest.raises(ValueError):
        band_peak_verdict({"early": np.ones(3)}, "middle", finding_id="p", claim="c")


def _mixing_draws(profile: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return profile + rng.normal(0.0, noise, size=(1000, N_LAYERS))


def _ordering(draws, **kwargs):
    return ordering_verdict(draws, finding_id="mix", claim="most mixed mid-depth", n=40, **kwargs)


def test_mixing_peaking_mid_depth_is_supported():
    draws = _mixing_draws(0.2 + _peak(9, 0.5), noise=0.05)
    finding = _ordering(draws)
    assert finding.verdict == "supported"
    assert finding.n == 40 and finding.ci_low > 0


def test_flat_mixing_is_inconclusive_with_its_detectable_effect():
    finding = _ordering(_mixing_draws(np.full(N_LAYERS, 0.3), noise=0.05, seed=1))
    assert finding.verdict == "inconclusive"
    # Band means of 6 independent layers: sd of a difference 0.05 * sqrt(2/6).
    assert finding.detectable_effect == pytest.approx(2.8016 * 0.05 * np.sqrt(2 / 6), rel=0.1)


def test_mixing_peaking_early_refutes():
    finding = _ordering(_mixing_draws(0.2 + _peak(1, 0.5), noise=0.05, seed=2))
    assert finding.verdict == "refuted"
    assert finding.details["smallest"] == "early"


def test_lower_is_more_mixed_flips_the_direction():
    draws = _mixing_draws(1.0 - _peak(9, 0.5), noise=0.05, seed=3)
    assert _ordering(draws).verdict == "refuted"
    assert _ordering(draws, higher_is_more=False).verdict == "supported"


def test_ordering_estimate_comes_from_the_full_data_estimates():
    draws = _mixing_draws(0.2 + _peak(9, 0.5), noise=0.05, seed=4)
    estimates = np.full(N_LAYERS, 0.2)
    estimates[6:12] = 0.5
    finding = _ordering(draws, estimates=estimates)
    assert finding.estimate == pytest.approx(0.3)


def _cosine_draws(center: np.ndarray, spread: float, seed: int) -> np.ndarray:
    return center + np.random.default_rng(seed).normal(0.0, spread, size=(1000, center.size))


def _perpendicular(estimates, draws, margin=0.1, **kwargs):
    return equivalence_verdict(
        estimates, draws, margin, finding_id="perp", claim="EN perpendicular to LOC", n=36, **kwargs
    )


def test_small_cosines_at_every_layer_are_supported():
    center = np.full(6, 0.01)
    finding = _perpendicular(center, _cosine_draws(center, 0.02, seed=0))
    assert finding.verdict == "supported"
    assert finding.confidence == pytest.approx(0.9)
    assert -0.1 < finding.ci_low and finding.ci_high < 0.1
    assert 0 < finding.detectable_effect < 0.1
    assert len(finding.details["layers"]) == 6


def test_one_clearly_aligned_layer_refutes_perpendicularity():
    center = np.full(6, 0.01)
    center[4] = 0.4
    finding = _perpendicular(center, _cosine_draws(center, 0.02, seed=1))
    assert finding.verdict == "refuted"
    assert finding.details["reported_layer"] == 4
    assert finding.estimate == pytest.approx(0.4)


def test_noisy_cosines_are_inconclusive_with_the_margin_they_could_establish():
    center = np.zeros(6)
    finding = _perpendicular(center, _cosine_draws(center, 0.1, seed=2))
    assert finding.verdict == "inconclusive"
    # 90% interval half-width about 1.645 * 0.1: no margin below that could be established.
    assert finding.detectable_effect == pytest.approx(0.17, abs=0.03)
    assert finding.detectable_effect > finding.margin


def test_undetected_positive_control_turns_support_into_inconclusive():
    center = np.full(6, 0.01)
    draws = _cosine_draws(center, 0.02, seed=3)
    control = np.full(6, 0.6)
    detected = _perpendicular(
        center, draws, positive_control=(control, _cosine_draws(control, 0.05, seed=4))
    )
    assert detected.verdict == "supported"
    assert detected.details["positive_control"]["detected_everywhere"] is True
    weak = control.copy()
    weak[0] = 0.05  # at layer 0 the test cannot see the known-large cosine
    missed = _perpendicular(center, draws, positive_control=(weak, _cosine_draws(weak, 0.05, 5)))
    assert missed.verdict == "inconclusive"
    assert missed.details["positive_control"]["detected"][0] is False


def test_per_layer_margins_are_used_layer_by_layer():
    center = np.array([0.0, 0.15])
    draws = _cosine_draws(center, 0.01, seed=6)
    assert _perpendicular(center, draws, margin=0.1).verdict == "refuted"
    finding = _perpendicular(center, draws, margin=np.array([0.05, 0.2]))
    assert finding.verdict == "supported"
    assert finding.margin == 0.2 and finding.details["reported_layer"] == 1


def _superiority(delta_a, delta_b, margin=0.1):
    return superiority_noninferiority_verdict(
        delta_a,
        delta_b,
        margin=margin,
        finding_id="surgical",
        claim="better localization at no transfer cost",
        axis_names=("localization", "transfer"),
    )


def _deltas(mean: float, sd: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, size=n)


def test_better_on_one_axis_and_not_worse_on_the_other_is_supported():
    finding = _superiority(_deltas(0.5, 0.5, 60, 0), _deltas(0.0, 0.1, 80, 1))
    assert finding.verdict == "supported"
    assert finding.details["better_axis"] == "localization"
    assert finding.n == 60 and finding.margin == 0.1
    other = finding.details["axes"]["transfer"]
    assert other["ci_low"] > -0.1 and other["ci_high"] > 0


def test_the_better_axis_can_be_either():
    finding = _superiority(_deltas(0.0, 0.1, 60, 2), _deltas(0.5, 0.5, 80, 3))
    assert finding.verdict == "supported"
    assert finding.details["better_axis"] == "transfer" and finding.n == 80


def test_a_large_loss_on_one_axis_refutes():
    finding = _superiority(_deltas(0.5, 0.5, 60, 4), _deltas(-0.5, 0.3, 80, 5))
    assert finding.verdict == "refuted"


def test_worse_on_both_axes_refutes():
    finding = _superiority(_deltas(-0.06, 0.05, 60, 6), _deltas(-0.06, 0.05, 80, 7))
    assert finding.details["axes"]["localization"]["ci_low"] > -0.1  # not beyond the margin
    assert finding.verdict == "refuted"


def test_noisy_deltas_are_inconclusive_with_a_detectable_effect():
    finding = _superiority(_deltas(0.0, 1.0, 30, 8), _deltas(0.0, 1.0, 30, 9), margin=0.5)
    assert finding.verdict == "inconclusive"
    assert finding.detectable_effect == pytest.approx(
        max(axis["detectable_effect"] for axis in finding.details["axes"].values())
    )
    assert 0.3 < finding.detectable_effect < 0.8


def test_superiority_rejects_a_non_positive_margin():
    with pytest.raises(ValueError):
        _superiority(np.ones(3), np.ones(3), margin=0.0)


def test_every_band_is_reported_in_order():
    assert BANDS == ("early", "middle", "late")
