"""Points of the transfer–localization plane of one target, on the eval split.

The plane's axes are two metrics (by default ``transfer`` and ``gap_closure``). Its points:

* references, with no steering: ``unsteered`` (the question asked in L, implicitly);
  ``explicit`` (the culture named: the localization axis read from each item's explicit-prompt
  reference; transfer questions name no culture, so x is the unsteered one); ``english_query``
  (the transfer facts asked in English: the transfer axis from each item's English reference;
  the localization axis is not defined for it);
* the best single-layer point of each vector, the surgical frontier and the best surgical point,
  all chosen on dev by :func:`lens_steer.evaluate.surgical.surgical_search`;
* the random surgical control of the best point (same layers and norms, random directions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lens_steer.evaluate.metrics import ItemScore, metric
from lens_steer.evaluate.points import UNSTEERED, PointResult
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.surgical import SurgicalSearch
from lens_steer.stats.intervals import bootstrap_mean_interval, proportion_interval

PointGroup = Literal["reference", "single", "surgical", "control"]


@dataclass(frozen=True)
class PlanePoint:
    """A labelled point with its two axis scores (None where undefined) and its steering."""

    label: str
    group: PointGroup
    key: str | None
    x: Score | None
    y: Score | None
    steering: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "group": self.group,
            "key": self.key,
            "x": None if self.x is None else self.x.to_json(),
            "y": None if self.y is None else self.y.to_json(),
            "steering": self.steering,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PlanePoint:
        return cls(
            label=obj["label"],
            group=obj["group"],
            key=obj.get("key"),
            x=None if obj["x"] is None else Score.from_json(obj["x"]),
            y=None if obj["y"] is None else Score.from_json(obj["y"]),
            steering=obj.get("steering"),
        )


@dataclass(frozen=True)
class Plane:
    """All points of one target's plane and the metrics on its axes."""

    target: str
    axes: tuple[str | None, str | None]
    points: tuple[PlanePoint, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def point(self, label: str) -> PlanePoint:
        for point in self.points:
            if point.label == label:
                return point
        raise KeyError(f"no plane point {label!r}; have {[p.label for p in self.points]}")

    def group(self, group: PointGroup) -> list[PlanePoint]:
        return [point for point in self.points if point.group == group]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "axes": list(self.axes),
            "settings": self.settings,
            "points": [point.to_json() for point in self.points],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Plane:
        return cls(
            target=obj["target"],
            axes=tuple(obj["axes"]),  # type: ignore[arg-type]
            points=tuple(PlanePoint.from_json(p) for p in obj["points"]),
            settings=obj.get("settings", {}),
        )

    def __repr__(self) -> str:
        return f"Plane({self.target}: {self.axes[0]} x {self.axes[1]}, {len(self.points)} points)"


def reference_score(rows: Sequence[ItemScore], variant: str, what: str) -> Score | None:
    """The metric read from each item's reference prompt (English or explicit), unsteered.

    Share metrics: the share of reference outcomes (Wilson interval) over every item with one.
    Gap metrics: 1 by definition (the reference closes its own gap).
    """
    spec = metric(variant)
    if spec.aggregate == "gain":
        gains = np.asarray([row.reference - row.margin for row in rows], dtype=float)
        gains = gains[np.isfinite(gains)]
        if gains.size == 0:
            return None
        low, high = bootstrap_mean_interval(gains, n_bootstrap=1000, seed=0)
        return Score(
            float(gains.mean()), low, high, int(gains.size), variant,
            {"reference": what, "aggregation": "mean gain over unsteered (nats)"},
        )  # fmt: skip
    if spec.aggregate == "gap":
        n = sum(1 for row in rows if math.isfinite(row.reference))
        return Score(1.0, 1.0, 1.0, n, variant, {"reference": what, "by_definition": True})
    outcomes = np.asarray([row.reference_outcome for row in rows], dtype=float)
    outcomes = outcomes[np.isfinite(outcomes)]
    if outcomes.size == 0:
        return None
    low, high = proportion_interval(int(outcomes.sum()), outcomes.size)
    return Score(
        float(outcomes.mean()), low, high, int(outcomes.size), variant,
        {"reference": what, "interval": "wilson", "items": "all items with a reference"},
    )  # fmt: skip


def _scores(
    point: PointResult, axes: tuple[str | None, str | None]
) -> tuple[Score | None, Score | None]:
    x, y = axes
    return (point.scores.get(x) if x else None, point.scores.get(y) if y else None)


def build_plane(search: SurgicalSearch) -> Plane:
    """The plane of one target from its surgical search (all points on eval).

    Example:
        >>> plane = build_plane(search)  # doctest: +SKIP
        >>> plane.point("unsteered").x.value  # doctest: +SKIP
        0.41
    """
    axes = search.axes
    points = search.eval.points
    base = points[UNSTEERED]
    x_axis, y_axis = axes
    explicit_y = (
        reference_score(base.rows[y_axis], y_axis, "explicit prompt")
        if y_axis in base.rows
        else None
    )
    english_x = (
        reference_score(base.rows[x_axis], x_axis, "English query") if x_axis in base.rows else None
    )
    x0, y0 = _scores(base, axes)
    plane = [
        PlanePoint("unsteered", "reference", UNSTEERED, x0, y0),
        PlanePoint("explicit", "reference", None, x0, explicit_y),
        PlanePoint("english_query", "reference", None, english_x, None),
    ]
    for method, key in search.best_single.items():
        plane.append(
            PlanePoint(
                f"best_{method}", "single", key, *_scores(points[key], axes), points[key].steering
            )
        )
    for index, key in enumerate(search.frontier, start=1):
        label = f"surgical_{index}" + (" (best)" if key == search.best else "")
        plane.append(
            PlanePoint(label, "surgical", key, *_scores(points[key], axes), points[key].steering)
        )
    if search.best not in search.frontier:
        point = points[search.best]
        plane.append(
            PlanePoint(
                "surgical_best", "surgical", search.best, *_scores(point, axes), point.steering
            )
        )
    for index, key in enumerate(search.controls.get(search.best, ())):
        point = points[key]
        plane.append(
            PlanePoint(
                f"random_surgical_{index}", "control", key, *_scores(point, axes), point.steering
            )
        )
    settings = {
        "split": "eval",
        "chosen_on": "dev",
        "criterion": search.settings.get("criterion"),
        "axes": list(axes),
    }
    return Plane(search.target, axes, tuple(plane), settings)
