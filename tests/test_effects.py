"""Paired effects from per-item rows: hand-computed deltas, controls, and a planted effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lens_steer.data.languages import parse_target
from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.effects import aligned, controlled_effect, net_deltas, point_effect
from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.points import (
    UNSTEERED,
    PointResult,
    PointSet,
    ScoringSettings,
    evaluate_points,
)
from lens_steer.evaluate.sweep import random_direction
from lens_steer.steering import single_layer_steering


def point(key: str, rows: list[ItemScore]) -> PointResult:
    return PointResult(key, None, {"m": tuple(rows)}, {})


def row(item: str, margin: float, outcome: float = math.nan, included: bool = True) -> ItemScore:
    return ItemScore(item, margin, outcome=outcome, included=included)


def point_set(**by_key: list[ItemScore]) -> PointSet:
    return PointSet("zz:Testland", "eval", {key: point(key, rows) for key, rows in by_key.items()})


BEFORE = [
    row("a", 0.0, 0.0),
    row("b", 1.0, 1.0),
    row("c", -1.0, 0.0),
    row("d", 2.0, 1.0),
    row("e", 5.0, 1.0, included=False),
    row("f", math.nan, math.nan),
]
AFTER = [
    row("a", 1.0, 1.0),
    row("b", 1.5, 1.0),
    row("c", 1.0, 1.0),
    row("d", 1.0, 0.0),
    row("e", 9.0, 1.0),
    row("f", 3.0, 1.0),
    row("g", 7.0, 1.0),
]


def test_aligned_keeps_items_included_and_finite_in_every_group():
    ids, margins, outcomes = aligned([AFTER, BEFORE])
    assert ids == ["a", "b", "c", "d"]  # e excluded before, f NaN before, g only after
    np.testing.assert_array_equal(margins, [[1.0, 1.5, 1.0, 1.0], [0.0, 1.0, -1.0, 2.0]])
    np.testing.assert_array_equal(outcomes, [[1, 1, 1, 0], [0, 1, 0, 1]])


def test_point_effect_is_the_mean_paired_difference_with_mcnemar():
    points = point_set(**{UNSTEERED: BEFORE, "s": AFTER})
    effect = point_effect(points, "s", "m", n_bootstrap=500)
    deltas = np.array([1.0, 0.5, 2.0, -1.0])
    assert effect.n == 4
    assert effect.mean_delta == pytest.approx(deltas.mean())
    assert effect.median_delta == pytest.approx(np.median(deltas))
    assert effect.sd_delta == pytest.approx(deltas.std(ddof=1))
    assert effect.accuracy_before == 0.5 and effect.accuracy_after == 0.75
    assert (effect.gains, effect.losses) == (2, 1)  # a, c gained; d lost
    assert effect.mcnemar_p == pytest.approx(1.0)  # two-sided binomial of 2 vs 1
    assert effect.ci_low <= effect.mean_delta <= effect.ci_high


def test_point_effect_without_outcomes_reports_margins_only():
    points = point_set(
        **{UNSTEERED: [row("a", 0.0), row("b", 1.0)], "s": [row("a", 0.5), row("b", 2.0)]}
    )
    effect = point_effect(points, "s", "m", n_bootstrap=100)
    assert effect.mean_delta == pytest.approx(0.75)
    assert effect.accuracy_before is None and effect.mcnemar_p is None


def test_point_effect_without_common_items_is_an_error():
    points = point_set(**{UNSTEERED: [row("a", 0.0)], "s": [row("b", 1.0)]})
    with pytest.raises(ValueError, match="s vs unsteered: no item scored in both for 'm'"):
        point_effect(points, "s", "m")


def test_controlled_effect_nets_the_mean_control_item_by_item():
    points = point_set(
        **{
            UNSTEERED: [row("a", 0.0, 0.0), row("b", 0.0, 0.0), row("c", 0.0, 0.0)],
            "s": [row("a", 3.0, 1.0), row("b", 2.0, 1.0), row("c", 4.0, 1.0)],
            "r0": [row("a", 1.0, 1.0), row("b", 0.0, 0.0), row("c", 2.0, 1.0)],
            "r1": [row("a", -1.0, 0.0), row("b", 2.0, 1.0), row("c", 0.0, 0.0)],
        }
    )
    effect = controlled_effect(points, "s", ["r0", "r1"], "m", n_bootstrap=300)
    assert effect.n_controls == 2
    assert effect.steered.mean_delta == pytest.approx(3.0)
    assert effect.control.mean_delta == pytest.approx(np.mean([0.0, 1.0, 1.0]))
    assert effect.net.mean_delta == pytest.approx(np.mean([3.0, 1.0, 3.0]))
    assert effect.net.accuracy_before == pytest.approx(0.5)  # the controls' mean outcome
    ids, values = net_deltas(points, "s", ["r0", "r1"], "m")
    assert ids == ["a", "b", "c"] and values.tolist() == [3.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="s: no control points"):
        controlled_effect(points, "s", [], "m")


# --- a planted effect on the tiny model --------------------------------------------------------


def test_the_answers_are_single_distinct_tokens(tiny_model, planted):
    ids = set()
    for letter in planted.RIGHT + planted.WRONG:
        (single,) = tiny_model.tokenizer(letter, add_special_tokens=False)["input_ids"]
        ids.add(single)
    assert len(ids) == 48  # distinct: a random direction moves the items independently


@pytest.mark.usefixtures("one_thread")
def test_a_planted_effect_is_found_and_a_random_direction_of_its_norm_is_not(
    tiny_model, choice_metric, planted
):
    name = choice_metric("planted_effect", {"eval": planted.items()})
    norm = 400.0  # about the residual norm at the last layer of the tiny model
    points = evaluate_points(
        tiny_model,
        TargetItems(parse_target("ko")),
        "eval",
        {
            "planted": single_layer_steering(planted.direction(tiny_model) * norm, 3, 1.0),
            "random": single_layer_steering(random_direction(32, norm, seed=0, name="r"), 3, 1.0),
        },
        ScoringSettings(metrics=(name,), calibrations=("sum",), n_bootstrap=200),
        show_progress=False,
    )
    found = point_effect(points, "planted", name, n_bootstrap=1000)
    assert found.n == 24
    assert found.wilcoxon_p < 0.01 and found.ci_low > 0 and found.mean_delta > 1.0
    assert found.gains > found.losses
    control = point_effect(points, "random", name, n_bootstrap=1000)
    assert control.wilcoxon_p > 0.05 and control.ci_low < 0 < control.ci_high
    net = controlled_effect(points, "planted", ["random"], name, n_bootstrap=1000)
    assert net.net.wilcoxon_p < 0.01 and net.net.ci_low > 0
