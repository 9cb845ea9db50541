"""Effects net of random-direction controls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lens_steer.stats import net_effect, paired_effect


def _items(n: int = 60, seed: int = 0) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, rng.normal(0.0, 2.0, size=n)


def test_net_is_after_minus_the_mean_control_per_item():
    rng, before = _items()
    after = before + 1.0 + rng.normal(size=60)
    controls = before + rng.normal(0.3, 1.0, size=(4, 60))
    result = net_effect(after, controls, before, seed=3)
    # (after - before) - mean_k(control_k - before), computed by hand.
    per_item = (after - before) - (controls - before).mean(axis=0)
    assert result.net.mean_delta == pytest.approx(per_item.mean(), abs=1e-12)
    assert result.net == paired_effect(after, controls.mean(axis=0), seed=3)
    assert result.steered == paired_effect(after, before, seed=3)
    assert result.control == paired_effect(controls.mean(axis=0), before, seed=3)
    assert result.n_controls == 4


def test_an_effect_any_direction_produces_nets_to_nothing():
    rng, before = _items(seed=1)
    after = before + 1.0 + rng.normal(0.0, 0.3, size=60)
    controls = before + 1.0 + rng.normal(0.0, 0.3, size=(3, 60))
    result = net_effect(after, controls, before)
    assert result.steered.ci_low > 0.8 and result.steered.wilcoxon_p < 1e-6
    assert result.control.ci_low > 0.8
    assert result.net.ci_low < 0 < result.net.ci_high
    assert abs(result.net.mean_delta) < 0.1


def test_a_direction_specific_effect_survives_the_control():
    rng, before = _items(seed=2)
    after = before + 1.5 + rng.normal(0.0, 0.5, size=60)
    controls = before + 0.5 + rng.normal(0.0, 0.5, size=(3, 60))
    result = net_effect(after, controls, before)
    assert result.net.mean_delta == pytest.approx(1.0, abs=0.2)
    assert result.net.ci_low > 0.5


def test_controls_equal_to_the_steered_margins_give_exactly_zero():
    _, before = _items(n=10)
    after = before + 2.0
    result = net_effect(after, np.stack([after, after]), before)
    assert (result.net.mean_delta, result.net.ci_low, result.net.ci_high) == (0.0, 0.0, 0.0)
    assert result.net.wilcoxon_p == 1.0


def test_outcomes_with_one_control_keep_mcnemar_and_with_several_give_accuracy_only():
    before_margin = np.zeros(6)
    after_outcome = np.array([1, 1, 1, 1, 0, 0])
    before_outcome = np.array([0, 0, 0, 1, 0, 0])
    control_outcomes = np.array([[0, 0, 1, 1, 0, 0], [1, 0, 0, 1, 0, 0]])
    one = net_effect(
        np.ones(6),
        np.zeros((1, 6)),
        before_margin,
        after_outcome=after_outcome,
        control_outcomes=control_outcomes[:1],
        before_outcome=before_outcome,
    )
    assert (one.net.gains, one.net.losses) == (2, 0)
    assert one.net.delta_accuracy == pytest.approx(4 / 6 - 2 / 6)
    assert (one.steered.gains, one.steered.losses) == (3, 0)
    assert one.control.delta_accuracy == pytest.approx(2 / 6 - 1 / 6)
    two = net_effect(
        np.ones(6),
        np.zeros((2, 6)),
        before_margin,
        after_outcome=after_outcome,
        control_outcomes=control_outcomes,
        before_outcome=before_outcome,
    )
    assert two.net.mcnemar_p is None
    assert two.net.accuracy_before == pytest.approx(2 / 6)  # pooled over both controls
    assert two.net.delta_accuracy == pytest.approx(4 / 6 - 2 / 6)


def test_net_effect_rejects_misshapen_controls():
    with pytest.raises(ValueError):
        net_effect([1.0, 2.0], [1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        net_effect([1.0, 2.0], [[1.0, 2.0, 3.0]], [0.0, 0.0])
    with pytest.raises(ValueError):
        net_effect([1.0, 2.0], [[1.0, 2.0]], [0.0, 0.0], control_outcomes=[[1, 0], [0, 1]])


def test_to_json_nests_three_plain_effects():
    _, before = _items(n=8)
    obj = net_effect(before + 1.0, np.stack([before, before + 0.5]), before).to_json()
    assert set(obj) == {"steered", "control", "net", "n_controls"}
    assert json.loads(json.dumps(obj, allow_nan=False))["net"]["mean_delta"] == pytest.approx(0.75)
