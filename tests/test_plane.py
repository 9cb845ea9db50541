"""The transfer-localization plane: reference points from per-item references, chosen points, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.plane import Plane, build_plane, reference_score
from lens_steer.evaluate.points import UNSTEERED, PointResult, PointSet
from lens_steer.evaluate.scores import share_score
from lens_steer.evaluate.surgical import SurgicalSearch
from lens_steer.stats.intervals import proportion_interval

AXES = ("transfer", "localization")

# Unsteered eval rows: transfer facts with their English reference outcome (2 of 5 unknown in
# English: excluded, still with a reference outcome); localization items with the explicit one.
TRANSFER = [
    ItemScore("f1", 1.0, outcome=1.0, reference=2.0, reference_outcome=1.0),
    ItemScore("f2", -1.0, outcome=0.0, reference=0.5, reference_outcome=1.0),
    ItemScore("f3", 0.5, outcome=1.0, reference=1.0, reference_outcome=1.0),
    ItemScore("f4", math.nan, included=False, reference=-1.0, reference_outcome=0.0),
    ItemScore("f5", math.nan, included=False, reference=-2.0, reference_outcome=0.0),
]
LOCALIZATION = [
    ItemScore(f"l{i}", m, outcome=float(m > 0), reference=r, reference_outcome=float(r > 0))
    for i, (m, r) in enumerate([(-1.0, 2.0), (0.5, 1.0), (-2.0, -0.5), (1.0, 3.0), (-0.2, 0.4)])
]


def shifted(rows, by: float) -> tuple[ItemScore, ...]:
    return tuple(
        ItemScore(
            r.item,
            r.margin + by,
            outcome=float(r.margin + by > 0) if r.included else r.outcome,
            reference=r.reference,
            included=r.included,
            reference_outcome=r.reference_outcome,
        )
        for r in rows
    )


def result(key: str, transfer_by: float, local_by: float) -> PointResult:
    rows = {
        "transfer": shifted(TRANSFER, transfer_by),
        "localization": shifted(LOCALIZATION, local_by),
    }
    scores = {name: share_score(value, name, n_bootstrap=100) for name, value in rows.items()}
    steering = None if key == UNSTEERED else {"label": key, "terms": []}
    return PointResult(key, steering, rows, scores)


def search(best: str = "en@1:1+loc@3:1") -> SurgicalSearch:
    keys = {
        UNSTEERED: (0.0, 0.0),
        "en@1:1": (1.5, -0.5),
        "loc@3:1": (0.0, 1.5),
        "en@1:1+loc@3:1": (1.5, 1.0),
        "en@2:1+loc@3:1": (2.5, 0.1),
        "en@1:1+loc@3:0.5": (0.2, 0.2),
        "random:en@1:1+loc@3:1#0": (0.1, -0.1),
        "random:en@1:1+loc@3:1#1": (-0.1, 0.0),
    }
    points = {key: result(key, *shift) for key, shift in keys.items()}
    eval_set = PointSet("zz:Testland", "eval", points)
    dev_set = PointSet("zz:Testland", "dev", {UNSTEERED: points[UNSTEERED]})
    controls = ("random:en@1:1+loc@3:1#0", "random:en@1:1+loc@3:1#1")
    return SurgicalSearch(
        "zz:Testland",
        dev_set,
        eval_set,
        ("en@2:1+loc@3:1", "en@1:1+loc@3:1"),
        best,
        {"en": "en@1:1", "loc": "loc@3:1"},
        {best: controls},
        {"axes": list(AXES), "criterion": "sum_gain"},
    )


def test_reference_points_read_each_items_reference_unsteered():
    plane = build_plane(search())
    unsteered, explicit, english = (
        plane.point(n) for n in ("unsteered", "explicit", "english_query")
    )
    assert [p.group for p in (unsteered, explicit, english)] == ["reference"] * 3
    assert unsteered.x.value == pytest.approx(2 / 3) and unsteered.y.value == pytest.approx(2 / 5)
    # explicit prompting: the culture is named; transfer questions name none, so x is unsteered's.
    assert explicit.x == unsteered.x
    assert explicit.y.value == pytest.approx(4 / 5)  # explicit references localized: 4 of 5
    assert explicit.y.n == 5
    assert (explicit.y.ci_low, explicit.y.ci_high) == pytest.approx(proportion_interval(4, 5))
    # the English query: facts answered right in English, over every fact with a reference.
    assert english.x.value == pytest.approx(3 / 5) and english.x.n == 5
    assert english.y is None
    assert english.key is None and explicit.key is None


def test_chosen_points_and_controls_are_labelled_by_group():
    plane = build_plane(search())
    assert [p.label for p in plane.group("single")] == ["best_en", "best_loc"]
    assert [p.label for p in plane.group("surgical")] == ["surgical_1", "surgical_2 (best)"]
    assert [p.key for p in plane.group("control")] == [
        "random:en@1:1+loc@3:1#0",
        "random:en@1:1+loc@3:1#1",
    ]
    best = plane.point("surgical_2 (best)")
    assert best.x.value == pytest.approx(1.0) and best.y.value == pytest.approx(
        np.mean([float(r.margin + 1.0 > 0) for r in LOCALIZATION])
    )
    assert best.steering == {"label": "en@1:1+loc@3:1", "terms": []}
    assert plane.settings == {
        "split": "eval",
        "chosen_on": "dev",
        "criterion": "sum_gain",
        "axes": list(AXES),
    }
    with pytest.raises(KeyError, match="no plane point 'nope'"):
        plane.point("nope")


def test_a_best_point_off_the_frontier_is_added():
    plane = build_plane(search(best="en@1:1+loc@3:0.5"))
    labels = [p.label for p in plane.group("surgical")]
    assert labels == ["surgical_1", "surgical_2", "surgical_best"]
    assert plane.point("surgical_best").key == "en@1:1+loc@3:0.5"


def test_gap_metrics_reference_closes_its_own_gap_by_definition():
    rows = [ItemScore("a", -3.0, reference=-1.0), ItemScore("b", -2.0, reference=math.nan)]
    score = reference_score(rows, "gap_closure", "explicit prompt")
    assert (score.value, score.ci_low, score.ci_high, score.n) == (1.0, 1.0, 1.0, 1)
    assert score.settings["by_definition"] is True
    assert reference_score([ItemScore("a", 1.0)], "localization", "explicit prompt") is None


def test_plane_json_round_trip():
    plane = build_plane(search())
    restored = Plane.from_json(json.loads(json.dumps(plane.to_json(), allow_nan=False)))
    assert restored.target == plane.target and restored.axes == plane.axes
    assert [p.label for p in restored.points] == [p.label for p in plane.points]
    for ours, theirs in zip(plane.points, restored.points, strict=True):
        for axis in ("x", "y"):
            a, b = getattr(ours, axis), getattr(theirs, axis)
            assert (a is None) == (b is None)
            if a is not None:
                assert (a.value, a.ci_low, a.ci_high, a.n) == (b.value, b.ci_low, b.ci_high, b.n)
    assert restored.settings == plane.settings
