"""Surgical Steering search: a grid over ``(l_T, a_T, l_L, a_L)`` chosen on dev, reported on eval.

Every grid point adds ``a_T * v_T`` at layer ``l_T`` and ``a_L * v_L`` at layer ``l_L`` (by
default v_T = EN at middle layers, v_L = LOC at late ones, ``l_T < l_L``) and is scored on the
DEV split, together with the single-layer candidates (each vector alone at each of its grid
layers and alphas). On dev: the Pareto frontier of the two-layer points (maximizing the two
axis metrics), the best two-layer point and the best single-layer point of each vector by the
criterion. Only those are re-scored on EVAL, with a random surgical control for the best point
(random directions of the same norms at the same two layers), so the reported numbers are not
the ones the choice was made on.

Points are compared in nats: each axis contributes its score's mean per-item margin (the
log-odds margin of a share metric, the gain of a gain metric), so two axes in different units
(an accuracy and a log-probability) add up meaningfully. A criterion is a callable ``(point
values, unsteered values) -> float`` over those; ``"sum_gain"`` (gains over the unsteered model,
summed) and ``"harmonic_mean"`` are built in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from transformer_lens import HookedTransformer

from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.points import UNSTEERED, PointSet, ScoringSettings, evaluate_points
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.sweep import (
    LayerVectors,
    ReferenceNorms,
    point_key,
    random_direction,
    reference_norm,
    vector_provenance,
)
from lens_steer.steering import AlphaMode, Steering, SteeringTerm, surgical_steering

Criterion = Callable[[Mapping[str, float], Mapping[str, float]], float]


def sum_gain(values: Mapping[str, float], base: Mapping[str, float]) -> float:
    """Gains over the unsteered model, summed over the axes."""
    return sum(values[axis] - base[axis] for axis in values)


def harmonic_mean(values: Mapping[str, float], base: Mapping[str, float]) -> float:
    """Harmonic mean of the axis values (rewards balance)."""
    numbers = list(values.values())
    if any(v <= 0 for v in numbers):
        return 0.0
    return len(numbers) / sum(1.0 / v for v in numbers)


CRITERIA: dict[str, Criterion] = {"sum_gain": sum_gain, "harmonic_mean": harmonic_mean}


def axis_value(score: Score) -> float:
    """What a point contributes on an axis when points are compared: its mean margin (nats)."""
    return score.margin if score.margin is not None else score.value


def criterion_of(criterion: str | Criterion) -> Criterion:
    if callable(criterion):
        return criterion
    try:
        return CRITERIA[criterion]
    except KeyError:
        raise ValueError(
            f"unknown criterion {criterion!r}; built in: {', '.join(CRITERIA)} (or a callable)"
        ) from None


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (maximizing both coordinates), by x.

    Example:
        >>> pareto_frontier([(0.5, 0.5), (0.6, 0.4), (0.4, 0.4), (0.5, 0.5), (0.2, 0.9)])
        [4, 0, 1]
    """
    keep = []
    for index, (x, y) in enumerate(points):
        dominated = any(
            (ox >= x and oy >= y and (ox > x or oy > y)) or ((ox, oy) == (x, y) and other < index)
            for other, (ox, oy) in enumerate(points)
            if other != index
        )
        if not dominated:
            keep.append(index)
    return sorted(keep, key=lambda index: (points[index][0], -points[index][1]))


@dataclass(frozen=True)
class SurgicalSettings:
    """The grid, the two axes it is judged on, the criterion and the controls."""

    transfer_layers: tuple[int, ...]
    local_layers: tuple[int, ...]
    transfer_alphas: tuple[float, ...] = (0.5, 1.0)
    local_alphas: tuple[float, ...] = (0.5, 1.0)
    transfer_method: str = "en"
    local_method: str = "loc"
    axes: tuple[str | None, str | None] = ("transfer", "gold_logprob")
    criterion: str = "sum_gain"
    alpha_mode: AlphaMode = "raw"
    require_order: bool = True
    include_single: bool = True
    n_controls: int = 3
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SurgicalSearch:
    """The dev grid, what was chosen on it, and the chosen points (with controls) on eval."""

    target: str
    dev: PointSet
    eval: PointSet
    frontier: tuple[str, ...]
    best: str
    best_single: dict[str, str]
    controls: dict[str, tuple[str, ...]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def axes(self) -> tuple[str | None, str | None]:
        return tuple(self.settings["axes"])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"SurgicalSearch({self.target}: {len(self.dev.points) - 1} dev points, "
            f"best {self.best}, frontier {list(self.frontier)})"
        )


def _candidates(
    vectors: Mapping[str, LayerVectors], settings: SurgicalSettings, norms: ReferenceNorms | None
) -> dict[str, Steering]:
    en, loc = vectors[settings.transfer_method], vectors[settings.local_method]
    en_prov, loc_prov = vector_provenance(en), vector_provenance(loc)
    names = (settings.transfer_method, settings.local_method)
    out: dict[str, Steering] = {}
    for lt in settings.transfer_layers:
        for at in settings.transfer_alphas:
            for ll in settings.local_layers:
                if settings.require_order and not lt < ll:
                    continue
                for al in settings.local_alphas:
                    key = f"{point_key(names[0], lt, at)}+{point_key(names[1], ll, al)}"
                    out[key] = surgical_steering(
                        en.at_layer(lt), lt, at, loc.at_layer(ll), ll, al,
                        alpha_mode=settings.alpha_mode,
                        en_reference_norm=reference_norm(norms, lt),
                        loc_reference_norm=reference_norm(norms, ll),
                        en_provenance=en_prov, loc_provenance=loc_prov, names=names,
                    )  # fmt: skip
    if not out:
        raise ValueError(
            "the surgical grid is empty (with require_order every transfer layer must be below "
            "some local layer)"
        )
    if settings.include_single:
        for name, source, layers, alphas in (
            (names[0], en, settings.transfer_layers, settings.transfer_alphas),
            (names[1], loc, settings.local_layers, settings.local_alphas),
        ):
            prov = vector_provenance(source)
            for layer in layers:
                for alpha in alphas:
                    term = SteeringTerm(
                        layer, source.at_layer(layer), alpha, settings.alpha_mode,
                        reference_norm(norms, layer), name, provenance=prov,
                    )  # fmt: skip
                    out[point_key(name, layer, alpha)] = Steering((term,))
    return out


def random_surgical(steering: Steering, *, seed: int, name: str) -> Steering:
    """Random directions with each term's added norm at each term's layer (the control)."""
    terms = tuple(
        SteeringTerm(
            term.layer,
            random_direction(term.d_model, term.effective_norm(), seed=seed, name=f"{name}/{i}"),
            1.0,
            name=f"random:{term.name}",
            provenance={"control_of": name},
        )
        for i, term in enumerate(steering.terms)
    )
    return Steering(terms)


def surgical_search(
    model: HookedTransformer,
    items: TargetItems,
    vectors: Mapping[str, LayerVectors],
    settings: SurgicalSettings,
    scoring: ScoringSettings,
    *,
    reference_norms: ReferenceNorms | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> SurgicalSearch:
    """Grid-search Surgical Steering on dev; re-score its frontier and chosen points on eval.

    Args:
        model: the model.
        items: the target's items (dev and eval splits are used).
        vectors: per-layer vectors by method; the two named in ``settings`` are combined.
        settings: grid, axes, criterion, controls (see :class:`SurgicalSettings`).
        scoring: metrics and intervals; the two axis metrics must be among its metrics.
        reference_norms: mean residual norm per layer (relative alphas only).
        checkpoint: JSONL file for the dev grid (the costly part).
        show_progress: tqdm bars.

    Example:
        >>> search = surgical_search(model, items, {"en": en, "loc": loc},
        ...     SurgicalSettings(transfer_layers=(6, 8), local_layers=(12, 14)), scoring)  # doctest: +SKIP
        >>> search.best  # doctest: +SKIP
        'en@8:1+loc@14:0.5'
    """
    active = [axis for axis in settings.axes if axis]
    missing = [axis for axis in active if axis not in scoring.metrics]
    if not active:
        raise ValueError("surgical search needs at least one axis metric")
    if missing:
        raise ValueError(
            f"surgical axes {missing} are not among the scored metrics {scoring.metrics}"
        )
    for method in (settings.transfer_method, settings.local_method):
        if method not in vectors:
            raise ValueError(f"surgical search needs a {method!r} vector; have {list(vectors)}")
    if settings.alpha_mode == "relative" and reference_norms is None:
        raise ValueError("alpha_mode='relative' needs reference_norms")
    choose = criterion_of(settings.criterion)
    candidates = _candidates(vectors, settings, reference_norms)
    dev = evaluate_points(
        model, items, "dev", candidates, scoring, checkpoint=checkpoint,
        show_progress=show_progress,
    )  # fmt: skip
    measured = [axis for axis in active if axis in dev[UNSTEERED].scores]
    if not measured:
        raise ValueError(
            f"{items.target.key}: no axis metric was measured on dev: "
            + "; ".join(f"{a}: {dev.unmeasured.get(a, 'no items')}" for a in active)
        )
    active = measured

    def values(key: str) -> dict[str, float]:
        return {axis: axis_value(dev[key].scores[axis]) for axis in active}

    base = values(UNSTEERED)
    surgical = [key for key in candidates if "+" in key]
    if len(active) == 2:
        coords = [tuple(values(key).values()) for key in surgical]
        frontier = tuple(surgical[i] for i in pareto_frontier(coords))  # type: ignore[arg-type]
    else:  # one measured axis: the frontier is its maximum
        top = max(values(key)[active[0]] for key in surgical)
        frontier = tuple(key for key in surgical if values(key)[active[0]] == top)[:1]
    best = max(surgical, key=lambda key: choose(values(key), base))
    best_single = {}
    if settings.include_single:
        for method in (settings.transfer_method, settings.local_method):
            singles = [k for k in candidates if "+" not in k and k.startswith(f"{method}@")]
            best_single[method] = max(singles, key=lambda key: choose(values(key), base))
    chosen = dict.fromkeys([*frontier, best, *best_single.values()])
    to_score: dict[str, Steering] = {key: candidates[key] for key in chosen}
    controls = {}
    keys = []
    for index in range(settings.n_controls):
        name = f"random:{best}#{index}"
        to_score[name] = random_surgical(candidates[best], seed=settings.seed, name=name)
        keys.append(name)
    controls[best] = tuple(keys)
    test = evaluate_points(model, items, "eval", to_score, scoring, show_progress=show_progress)
    recorded = {
        **settings.to_json(),
        "criterion": settings.criterion if isinstance(settings.criterion, str) else "callable",
        "n_grid_points": len(surgical),
        "n_single_points": len(candidates) - len(surgical),
        "vectors": {name: vector_provenance(v) for name, v in vectors.items()},
        "scoring": scoring.to_json(),
        "dev_unsteered": base,
    }
    return SurgicalSearch(
        items.target.key, dev, test, frontier, best, best_single, controls, recorded
    )
