"""Metrics as plug-ins: a metric turns a target's items into scoring requests and per-item rows.

A metric is one function ``(TargetItems, split) -> MetricTask`` plus one registration
(:func:`register_metric`). The task lists the requests to score under every intervention (and,
optionally, references scored once unsteered, and neutral-prompt requests for PMI calibration)
and a ``rows`` callable that turns the option log-probs into one :class:`ItemScore` per item.
Every table, figure, effect and verdict reads metrics by name, so a new metric appears
everywhere without touching them.

Per item, a metric gives a continuous *margin* in nats (e.g. log p(right) − log Σ p(others))
and, where it has one, a binary *outcome* (right option strictly best). Each is computed under
three calibrations of the option scores:

* ``sum``: summed continuation log-probability (the primary one);
* ``per_token``: mean log-probability per token (removes the length advantage of short answers);
* ``pmi``: summed log-probability minus that of the same option after a neutral prompt (the
  language's answer cue alone), which removes each answer's prior frequency.

The built-in metrics are in :mod:`lens_steer.evaluate.builtin_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from lens_steer.data.records import Split
from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest

Calibration = Literal["sum", "per_token", "pmi"]
CALIBRATIONS: tuple[Calibration, ...] = ("sum", "per_token", "pmi")
Aggregate = Literal["share", "gap", "gain"]
NAN = float("nan")


@dataclass(frozen=True)
class ItemScore:
    """One item under one intervention for one metric and calibration: the unit of truth.

    Attributes:
        item: the item id.
        margin: log-odds margin of the right option against the others (logsumexp), nats.
        margin_max: margin against the best other option.
        outcome: 1.0 when the right option scores strictly above every other, 0.0 otherwise,
            NaN for metrics without a binary outcome.
        reference: the metric's reference value (the English margin for transfer, the
            explicit-prompt margin for localization and gap closure), NaN when none.
        included: whether the item counts in the aggregate (e.g. known in English).
        reference_outcome: the outcome of the reference prompt (English answer right,
            explicit prompt localized), NaN when none.
    """

    item: str
    margin: float
    margin_max: float = NAN
    outcome: float = NAN
    reference: float = NAN
    included: bool = True
    reference_outcome: float = NAN

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScoredTask:
    """Option scores of a task's requests (steered), references (unsteered) and neutral ones."""

    requests: Sequence[OptionScores]
    reference: Sequence[OptionScores] = ()
    neutral: Sequence[OptionScores] = ()


RowsFn = Callable[[ScoredTask, Calibration], list[ItemScore]]


@dataclass(frozen=True)
class MetricTask:
    """What one metric needs scored for one target and split, and how to read the scores.

    Attributes:
        requests: scored under every intervention.
        rows: ``(scored, calibration) -> [ItemScore]`` (one per item).
        reference: scored once, unsteered (English versions, explicit forms).
        neutral: scored under every intervention, for PMI (prompts without content).
        calibrations: the calibrations this metric supports.
        keep: optional filter from the reference scores: which requests to score at all (the
            others get ``included=False`` rows), e.g. facts unknown in English.
        description: what the aggregate means.
    """

    requests: tuple[ScoringRequest, ...]
    rows: RowsFn
    reference: tuple[ScoringRequest, ...] = ()
    neutral: tuple[ScoringRequest, ...] = ()
    calibrations: tuple[Calibration, ...] = CALIBRATIONS
    keep: Callable[[Sequence[OptionScores]], list[bool]] | None = None
    description: str = ""


MetricBuilder = Callable[[TargetItems, Split], MetricTask]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its builder, the plane axis it belongs to, how it aggregates."""

    name: str
    build: MetricBuilder
    axis: str
    aggregate: Aggregate = "share"
    needs: tuple[str, ...] = ()
    description: str = ""


_METRICS: dict[str, MetricSpec] = {}


def register_metric(
    name: str,
    build: MetricBuilder,
    *,
    axis: str,
    aggregate: Aggregate = "share",
    needs: Sequence[str] = (),
    description: str = "",
    replace: bool = False,
) -> MetricSpec:
    """Register a metric under ``name``.

    Args:
        name: the metric's name in results, tables and figures (no ``:``).
        build: ``(TargetItems, split) -> MetricTask``; raise :class:`NoItems` when the target
            has no items for it (the study then reports the metric as not measured).
        axis: the plane axis it measures (``"transfer"`` or ``"localization"``, or your own).
        aggregate: ``"share"`` (mean outcome with a Wilson interval), ``"gain"`` (mean per-item
            margin change against the unsteered model, nats, bootstrap interval) or ``"gap"`` (share of
            the reference gap closed: ratio of sums against the unsteered model).
        needs: item kinds it reads (documentation for "what was not measured").
        description: one line for reports.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"metric name must be a non-empty string without ':', got {name!r}")
    if aggregate not in ("share", "gap", "gain"):
        raise ValueError(f"aggregate must be 'share', 'gap' or 'gain', got {aggregate!r}")
    if name in _METRICS and not replace and _METRICS[name].build is not build:
        raise ValueError(f"metric {name!r} is already registered (pass replace=True)")
    spec = MetricSpec(name, build, axis, aggregate, tuple(needs), description)
    _METRICS[name] = spec
    return spec


def metric(name: str) -> MetricSpec:
    """The registered metric (a name with a ``:calibration`` suffix gives its base metric)."""
    base = name.split(":", 1)[0]
    try:
        return _METRICS[base]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; registered: {', '.join(_METRICS)} "
            "(add one with lens_steer.register_metric)"
        ) from None


def metrics() -> tuple[str, ...]:
    """Names of the registered metrics."""
    return tuple(_METRICS)


def variant_name(name: str, calibration: Calibration) -> str:
    """``transfer`` for the summed score, ``transfer:per_token`` / ``transfer:pmi`` otherwise."""
    return name if calibration == "sum" else f"{name}:{calibration}"


def split_variant(key: str) -> tuple[str, Calibration]:
    base, _, calibration = key.partition(":")
    return base, (calibration or "sum")  # type: ignore[return-value]


class NoItems(ValueError):
    """The target has no items for this metric in this split (the metric is not measured)."""


# ---------------------------------------------------------------------------------------------
# Margins from option scores.
# ---------------------------------------------------------------------------------------------


def calibrated(
    scores: OptionScores, calibration: Calibration, neutral: Sequence[float] | None = None
) -> np.ndarray:
    """The options' scores under a calibration (``neutral``: their log-probs after a neutral prompt)."""
    if calibration == "per_token":
        return scores.values(normalize=True)
    values = scores.values()
    if calibration == "pmi":
        if neutral is None:
            raise ValueError(f"{scores.id}: PMI calibration needs the neutral scores")
        return values - np.asarray(neutral, dtype=np.float64)
    return values


def option_margin(values: np.ndarray, right: int) -> tuple[float, float, float]:
    """``(margin vs logsumexp of others, margin vs best other, strict-win outcome)``."""
    others = np.delete(values, right)
    if others.size == 0:
        return NAN, NAN, 1.0
    lse = float(np.logaddexp.reduce(others))
    best = float(others.max())
    return float(values[right] - lse), float(values[right] - best), float(values[right] > best)
