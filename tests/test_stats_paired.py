"""Paired effects against scipy (wilcoxon, binomtest) and hand computations."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from lens_steer.stats import (
    PairedEffect,
    bootstrap_mean_interval,
    detectable_effect,
    difference_of_effects,
    effect_of_differences,
    mcnemar_p,
    paired_effect,
    wilcoxon_p,
)


def _planted(shift: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    before = rng.normal(-1.0, 2.0, size=n)  # item difficulty varies; it cancels in pairs
    return before + shift + rng.normal(0.0, 1.0, size=n), before


def test_no_change_gives_exactly_zero_with_p_one():
    before = np.random.default_rng(0).normal(size=20)
    effect = paired_effect(before, before, after_outcome=before > 0, before_outcome=before > 0)
    assert (effect.mean_delta, effect.ci_low, effect.ci_high) == (0.0, 0.0, 0.0)
    assert (effect.median_delta, effect.sd_delta, effect.detectable_effect) == (0.0, 0.0, 0.0)
    assert effect.wilcoxon_p == 1.0
    assert (effect.gains, effect.losses, effect.mcnemar_p) == (0, 0, 1.0)
    assert effect.delta_accuracy == 0.0 and not effect.excludes_zero


def test_planted_half_nat_shift_is_found():
    after, before = _planted(0.5, 80, seed=11)
    effect = paired_effect(after, before)
    assert effect.n == 80
    assert effect.wilcoxon_p < 0.01
    assert effect.ci_low > 0 and effect.excludes_zero
    assert effect.mean_delta == pytest.approx(np.mean(after - before), abs=1e-12)
    assert effect.ci_low < effect.mean_delta < effect.ci_high


def test_pure_noise_false_positive_rate_is_near_alpha():
    reps = 200
    ci_hits = p_hits = 0
    for seed in range(reps):
        after, before = _planted(0.0, 80, seed=seed)
        effect = paired_effect(after, before, n_bootstrap=1000, seed=seed)
        ci_hits += effect.excludes_zero
        p_hits += effect.wilcoxon_p < 0.05
    # Expected 0.05 (10 of 200); binomial sd about 0.015.
    assert 0.01 <= ci_hits / reps <= 0.10
    assert 0.01 <= p_hits / reps <= 0.10


def test_statistics_match_scipy_and_numpy():
    after, before = _planted(0.2, 35, seed=3)
    diff = after - before
    effect = paired_effect(after, before, n_bootstrap=700, seed=5, confidence=0.9)
    assert effect.wilcoxon_p == pytest.approx(stats.wilcoxon(diff).pvalue, rel=1e-12)
    assert effect.median_delta == pytest.approx(np.median(diff))
    assert effect.sd_delta == pytest.approx(np.std(diff, ddof=1))
    expected = bootstrap_mean_interval(diff, n_bootstrap=700, seed=5, confidence=0.9)
    assert (effect.ci_low, effect.ci_high) == pytest.approx(expected, abs=1e-12)
    assert (effect.confidence, effect.n_bootstrap, effect.seed) == (0.9, 700, 5)


def test_wilcoxon_by_hand():
    # All five differences positive: the exact two-sided p is 2 / 2**5.
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(0.0625)
    assert wilcoxon_p([-1.0, -2.0, -3.0, -4.0, -5.0]) == pytest.approx(0.0625)
    assert wilcoxon_p([0.0, 0.0]) == 1.0


def test_mcnemar_by_hand_and_against_binomtest():
    # 8 gains and 2 losses: p = 2 * P(X <= 2 | n=10, 1/2) = 2 * (1 + 10 + 45) / 1024.
    assert mcnemar_p(8, 2) == pytest.approx(112 / 1024)
    assert mcnemar_p(2, 8) == pytest.approx(112 / 1024)
    assert mcnemar_p(15, 4) == pytest.approx(stats.binomtest(15, 19).pvalue)
    assert mcnemar_p(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_outcomes_give_accuracies_gains_losses_and_mcnemar():
    # 8 gains, 2 losses, 10 right both times, 5 wrong both times.
    before = np.array([0] * 8 + [1] * 2 + [1] * 10 + [0] * 5)
    after = np.array([1] * 8 + [0] * 2 + [1] * 10 + [0] * 5)
    margins = np.linspace(-1.0, 1.0, 25)
    effect = paired_effect(margins + 0.1, margins, after_outcome=after, before_outcome=before)
    assert (effect.gains, effect.losses) == (8, 2)
    assert effect.mcnemar_p == pytest.approx(112 / 1024)
    assert effect.accuracy_before == pytest.approx(12 / 25)
    assert effect.accuracy_after == pytest.approx(18 / 25)
    assert effect.delta_accuracy == pytest.approx(6 / 25)
    assert effect.delta_accuracy_ci_low < 6 / 25 < effect.delta_accuracy_ci_high


def test_fractional_outcomes_give_accuracy_change_without_mcnemar():
    effect = paired_effect(
        [1.0, 2.0, 3.0],
        [0.0, 0.0, 0.0],
        after_outcome=[1, 1, 0],
        before_outcome=[0.5, 0.25, 0.0],
    )
    assert effect.delta_accuracy == pytest.approx((2 - 0.75) / 3)
    assert effect.gains is None and effect.mcnemar_p is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"after_outcome": [1, 0, 1]},
        {"after_outcome": [1, 0], "before_outcome": [1, 0]},
        {"after_outcome": [2, 0, 1], "before_outcome": [1, 0, 1]},
    ],
)
def test_paired_effect_rejects_inconsistent_outcomes(kwargs):
    with pytest.raises(ValueError):
        paired_effect([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], **kwargs)


def test_paired_effect_rejects_unpaired_or_empty_margins():
    with pytest.raises(ValueError):
        paired_effect([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        paired_effect([], [])
    with pytest.raises(ValueError):
        paired_effect([1.0, np.nan], [0.0, 0.0])


def test_single_item_is_handled_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        effect = paired_effect([0.7], [0.2])
    assert effect.mean_delta == pytest.approx(0.5)
    assert (effect.ci_low, effect.ci_high) == pytest.approx((0.5, 0.5))
    assert effect.wilcoxon_p == 1.0  # one item cannot be significant
    assert math.isnan(effect.sd_delta) and math.isnan(effect.detectable_effect)
    assert effect.to_json()["detectable_effect"] is None


def test_detectable_effect_field_matches_the_closed_form():
    after, before = _planted(0.3, 40, seed=2)
    effect = paired_effect(after, before, confidence=0.9)
    sd = np.std(after - before, ddof=1)
    expected = (stats.t.ppf(0.95, 39) + stats.t.ppf(0.8, 39)) * sd / math.sqrt(40)
    assert effect.detectable_effect == pytest.approx(expected, rel=1e-12)
    assert effect.detectable_effect == pytest.approx(detectable_effect(sd, 40, alpha=0.1))


def test_difference_of_effects_is_the_paired_effect_of_the_two_deltas():
    rng = np.random.default_rng(8)
    delta_a, delta_b = rng.normal(0.5, 1.0, 30), rng.normal(0.0, 1.0, 30)
    difference = difference_of_effects(delta_a, delta_b, seed=2)
    assert difference == paired_effect(delta_a, delta_b, seed=2)
    assert difference == effect_of_differences(delta_a - delta_b, seed=2)


def test_to_json_is_plain_and_round_trips():
    before = np.array([0, 1, 0, 1, 0])
    effect = paired_effect(
        np.arange(5.0), np.zeros(5), after_outcome=[1, 1, 1, 1, 0], before_outcome=before
    )
    obj = effect.to_json()
    text = json.dumps(obj, allow_nan=False)
    assert all(type(value) in (int, float, str, type(None)) for value in obj.values())
    assert PairedEffect.from_json(json.loads(text)) == effect
    single = paired_effect([1.0], [0.0])
    restored = PairedEffect.from_json(json.loads(json.dumps(single.to_json())))
    assert math.isnan(restored.sd_delta) and restored.mean_delta == 1.0
