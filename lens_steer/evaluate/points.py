"""Score interventions on a target's metrics: per-item rows and aggregates for every point.

A *point* is one intervention (a steering, or none) scored on every metric of one target and
split. :func:`evaluate_points` builds each metric's task once, scores its references once
unsteered, then scores every request of every metric under every steering in one call of the
engine (:func:`lens_steer.evaluate.engine.score_steerings`), and returns the per-item rows of
each metric and calibration with their aggregate :class:`~lens_steer.evaluate.scores.Score`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from transformer_lens import HookedTransformer

from lens_steer.data.records import Split
from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.engine import Method, score_steerings
from lens_steer.evaluate.metrics import (
    Calibration,
    ItemScore,
    MetricTask,
    NoItems,
    ScoredTask,
    metric,
    split_variant,
    variant_name,
)
from lens_steer.evaluate.scores import Interval, Score, gain_score, gap_score, share_score
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest
from lens_steer.models import model_id
from lens_steer.steering import Steering

UNSTEERED = "unsteered"


@dataclass(frozen=True)
class ScoringSettings:
    """How points are scored and summarized (recorded beside every score)."""

    metrics: tuple[str, ...] = ("transfer", "gap_closure", "localization")
    calibrations: tuple[Calibration, ...] = ("sum", "per_token", "pmi")
    interval: Interval = "wilson"
    n_bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    min_gap: float = 0.1
    batch_size: int = 16
    method: Method = "auto"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PointResult:
    """One intervention's per-item rows and aggregate scores, keyed by metric variant."""

    key: str
    steering: dict[str, Any] | None
    rows: dict[str, tuple[ItemScore, ...]]
    scores: dict[str, Score]

    def to_json(self) -> dict[str, Any]:
        """Scores and steering (per-item rows are stored apart, see ``item_table``)."""
        return {
            "key": self.key,
            "steering": self.steering,
            "scores": {name: score.to_json() for name, score in self.scores.items()},
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={s.value:.3f}" for n, s in self.scores.items() if ":" not in n)
        return f"PointResult({self.key}: {shown})"


@dataclass(frozen=True)
class PointSet:
    """Points of one target and split, and the metrics that could not be measured (why)."""

    target: str
    split: Split
    points: dict[str, PointResult]
    unmeasured: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> PointResult:
        return self.points[key]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Measured metric variants (``transfer``, ``transfer:per_token``, ...)."""
        first = next(iter(self.points.values()))
        return tuple(first.scores)


def build_tasks(
    items: TargetItems, split: Split, metric_names: Sequence[str]
) -> tuple[dict[str, MetricTask], dict[str, str]]:
    """Each metric's task for this target and split; metrics without items are reported.

    Metrics registered with the same builder (``transfer`` and ``transfer_gap`` read the same
    requests and differ only in how they aggregate) share one task, scored once.
    """
    tasks: dict[str, MetricTask] = {}
    unmeasured: dict[str, str] = {}
    built: dict[int, MetricTask | NoItems] = {}
    for name in metric_names:
        build = metric(name).build
        if id(build) not in built:
            try:
                built[id(build)] = build(items, split)
            except NoItems as reason:
                built[id(build)] = reason
        task = built[id(build)]
        if isinstance(task, NoItems):
            unmeasured[name] = str(task)
        else:
            tasks[name] = task
    return tasks, unmeasured


def _flatten(
    tasks: Mapping[str, MetricTask], kept: Mapping[str, list[bool]], with_neutral: bool
) -> tuple[list[ScoringRequest], dict[str, tuple[list[int], list[int]]]]:
    """All steered requests in one list; per task: positions of its kept requests, neutrals."""
    flat: list[ScoringRequest] = []
    where: dict[str, tuple[list[int], list[int]]] = {}
    seen: dict[int, str] = {}
    for name, task in tasks.items():
        if id(task) in seen:  # a task shared by two metrics is scored once
            where[name] = where[seen[id(task)]]
            continue
        seen[id(task)] = name
        requests = [r for r, keep in zip(task.requests, kept[name], strict=True) if keep]
        neutral = list(task.neutral) if with_neutral else []
        start = len(flat)
        flat.extend(requests)
        flat.extend(neutral)
        at = start + len(requests)
        where[name] = (list(range(start, at)), list(range(at, at + len(neutral))))
    return flat, where


def score_tasks(
    model: HookedTransformer,
    tasks: Mapping[str, MetricTask],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int = 16,
    method: Method = "auto",
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    with_neutral: bool = True,
) -> dict[str, dict[str, ScoredTask]]:
    """Option scores of every task under every steering: ``{point key: {metric: ScoredTask}}``.

    References are scored once, unsteered; requests a task's ``keep`` filter drops are not
    scored at all (their slot holds ``None``); neutral-prompt requests only ``with_neutral``
    (PMI calibration needs them).
    """
    unique = {id(task): task for task in tasks.values()}
    reference_requests = [r for task in unique.values() for r in task.reference]
    reference_scores: list[OptionScores] = []
    if reference_requests:
        reference_scores = score_steerings(
            model, reference_requests, {UNSTEERED: None}, batch_size=batch_size,
            method=method, show_progress=False,
        )[UNSTEERED]  # fmt: skip
    by_task: dict[int, list[OptionScores]] = {}
    at = 0
    for task_id, task in unique.items():
        by_task[task_id] = reference_scores[at : at + len(task.reference)]
        at += len(task.reference)
    references, kept = {}, {}
    for name, task in tasks.items():
        references[name] = by_task[id(task)]
        kept[name] = task.keep(references[name]) if task.keep else [True] * len(task.requests)
    flat, where = _flatten(tasks, kept, with_neutral)
    scored = (
        score_steerings(
            model,
            flat,
            steerings,
            batch_size=batch_size,
            method=method,
            checkpoint=checkpoint,
            show_progress=show_progress,
        )  # fmt: skip
        if flat
        else {key: [] for key in steerings}
    )
    out: dict[str, dict[str, ScoredTask]] = {}
    for key in steerings:
        per_task = {}
        for name in tasks:
            positions, neutral = where[name]
            values = iter(scored[key][i] for i in positions)
            requests: list[Any] = [next(values) if keep else None for keep in kept[name]]
            per_task[name] = ScoredTask(
                requests, references[name], [scored[key][i] for i in neutral]
            )
        out[key] = per_task
    return out


def point_rows(
    tasks: Mapping[str, MetricTask],
    scored: Mapping[str, ScoredTask],
    calibrations: Sequence[Calibration],
) -> dict[str, tuple[ItemScore, ...]]:
    """Per-item rows of every metric variant (the calibrations each task supports)."""
    rows = {}
    for name, task in tasks.items():
        for calibration in calibrations:
            if calibration in task.calibrations:
                variant = variant_name(name, calibration)
                rows[variant] = tuple(task.rows(scored[name], calibration))
    return rows


def aggregate(
    rows: Mapping[str, Sequence[ItemScore]],
    baseline: Mapping[str, Sequence[ItemScore]],
    settings: ScoringSettings,
    extra: dict[str, Any] | None = None,
) -> dict[str, Score]:
    """The aggregate score of every metric variant (gap metrics against ``baseline``)."""
    scores = {}
    for variant, variant_rows in rows.items():
        base, calibration = split_variant(variant)
        spec = metric(base)
        common = {**(extra or {}), "calibration": calibration}
        if spec.aggregate == "gain":
            scores[variant] = gain_score(
                variant_rows, baseline[variant], variant, n_bootstrap=settings.n_bootstrap,
                seed=settings.seed, confidence=settings.confidence, settings=common,
            )  # fmt: skip
        elif spec.aggregate == "gap":
            scores[variant] = gap_score(
                variant_rows, baseline[variant], variant, min_gap=settings.min_gap,
                n_bootstrap=settings.n_bootstrap, seed=settings.seed,
                confidence=settings.confidence, settings=common,
            )  # fmt: skip
        else:
            scores[variant] = share_score(
                variant_rows, variant, interval=settings.interval,
                n_bootstrap=settings.n_bootstrap, seed=settings.seed,
                confidence=settings.confidence, settings=common,
            )  # fmt: skip
    return scores


def evaluate_points(
    model: HookedTransformer,
    items: TargetItems,
    split: Split,
    steerings: Mapping[str, Steering | None],
    settings: ScoringSettings,
    *,
    tasks: tuple[dict[str, MetricTask], dict[str, str]] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> PointSet:
    """Every steering (and the unsteered model) scored on every metric of one target and split.

    Args:
        model: the model.
        items: the target's items.
        split: the split scored (``"eval"`` to report, ``"dev"`` to choose).
        steerings: ``{key: steering}``; the unsteered model is added as ``"unsteered"``.
        settings: metrics, calibrations, intervals (see :class:`ScoringSettings`).
        tasks: prebuilt ``build_tasks`` output (to score several steering sets alike).
        checkpoint: JSONL file for resuming (see :func:`score_steerings`).
        show_progress: tqdm bars.

    Example:
        >>> points = evaluate_points(model, items, "eval", {"en@6": steering}, ScoringSettings())  # doctest: +SKIP
        >>> points["en@6"].scores["transfer"].value  # doctest: +SKIP
        0.41
    """
    if UNSTEERED in steerings and steerings[UNSTEERED] is not None:
        raise ValueError(f"the key {UNSTEERED!r} is reserved for the unsteered model")
    built, unmeasured = tasks if tasks is not None else build_tasks(items, split, settings.metrics)
    unmeasured = dict(unmeasured)
    if not built:
        raise ValueError(
            f"{items.target.key}: no metric can be measured in split {split!r}: "
            + "; ".join(f"{name}: {why}" for name, why in unmeasured.items())
        )
    everything: dict[str, Steering | None] = {UNSTEERED: None, **steerings}
    scored = score_tasks(
        model, built, everything, batch_size=settings.batch_size, method=settings.method,
        checkpoint=checkpoint, show_progress=show_progress,
        with_neutral="pmi" in settings.calibrations,
    )  # fmt: skip
    rows = {key: point_rows(built, scored[key], settings.calibrations) for key in everything}
    for variant in list(rows[UNSTEERED]):
        if not any(row.included for row in rows[UNSTEERED][variant]):
            # e.g. no fact of this split is known in English: nothing to count, say so
            name = variant.split(":", 1)[0]
            unmeasured[name] = (
                f"no item of split {split!r} is included (e.g. none known in English)"
            )
            for key in everything:
                rows[key] = {v: r for v, r in rows[key].items() if v.split(":", 1)[0] != name}
    if not rows[UNSTEERED]:
        raise ValueError(
            f"{items.target.key}: no metric has an item to score in split {split!r}: "
            + "; ".join(f"{name}: {why}" for name, why in unmeasured.items())
        )
    base = {"model_id": model_id(model), "target": items.target.key, "split": split}
    points = {}
    for key, steering in everything.items():
        description = None if steering is None else steering.to_json()
        scores = aggregate(rows[key], rows[UNSTEERED], settings, base)
        points[key] = PointResult(key, description, rows[key], scores)
    return PointSet(items.target.key, split, points, unmeasured, {**base, **settings.to_json()})
