"""Surgical Steering search: a grid over ``(l_T, a_T, l_L, a_L)`` on dev, the frontier on eval.

Every grid point adds ``a_T * v_EN`` at layer ``l_T`` and ``a_L * v_LOC`` at layer ``l_L``
(``l_T < l_L`` by default) and is scored on the DEV split. The Pareto frontier (maximize transfer
and localization) of the two-layer points is taken on dev, then re-scored on the EVAL split with
bootstrap intervals, so the reported numbers are not the ones the choice was made on.

The same grid's single-layer candidates (EN alone at each ``(l_T, a_T)``, LOC alone at each
``(l_L, a_L)``) are scored alongside, and the best of each kind is picked on dev by the same
criterion and re-scored on eval: the fair single-layer baselines for the frontier.

Criteria for ``best`` (on dev):

* ``"sum_gain"`` (default): ``(transfer - transfer_0) + (localization - localization_0)``,
  the gains over the unsteered model; a point that trades one score for the same amount of
  the other gains nothing.
* ``"harmonic_mean"``: ``2 t l / (t + l)``, which rewards balance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from transformer_lens import HookedTransformer

from lens_steer.data.records import LocalizationItem, Split, TransferItem
from lens_steer.evaluate.engine import Method, score_steerings
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.sweep import (
    LayerVectors,
    ReferenceNorms,
    reference_norm,
    vector_provenance,
)
from lens_steer.models import model_id
from lens_steer.steering import AlphaMode, Steering, single_layer_steering, surgical_steering

Criterion = Literal["sum_gain", "harmonic_mean"]
PointKind = Literal["surgical", "en", "loc"]


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (maximizing both coordinates), by x.

    ``a`` dominates ``b`` when it is at least as good in both and better in one. Of several
    identical points only the first is kept.

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


def _point_key(
    transfer_layer: int | None, transfer_alpha: float, local_layer: int | None, local_alpha: float
) -> str:
    parts = []
    if transfer_layer is not None:
        parts.append(f"en@{transfer_layer}:{transfer_alpha:g}")
    if local_layer is not None:
        parts.append(f"loc@{local_layer}:{local_alpha:g}")
    return "+".join(parts)


def criterion_value(
    transfer: float, localization: float, baseline: tuple[float, float], criterion: Criterion
) -> float:
    """The value ``best`` maximizes (see the module docstring)."""
    if criterion == "sum_gain":
        return (transfer - baseline[0]) + (localization - baseline[1])
    if criterion == "harmonic_mean":
        total = transfer + localization
        return 0.0 if total == 0 else 2 * transfer * localization / total
    raise ValueError(f"Unknown criterion {criterion!r}; expected 'sum_gain' or 'harmonic_mean'")


@dataclass(frozen=True)
class SurgicalPoint:
    """One grid point with its scores (on the split named in the scores' settings)."""

    kind: PointKind
    transfer_layer: int | None
    transfer_alpha: float
    local_layer: int | None
    local_alpha: float
    transfer: Score
    localization: Score
    steering: dict[str, Any]

    @property
    def key(self) -> str:
        """``"en@6:0.5+loc@12:1"``: which vector at which layer and alpha."""
        return _point_key(
            self.transfer_layer, self.transfer_alpha, self.local_layer, self.local_alpha
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "transfer_layer": self.transfer_layer,
            "transfer_alpha": self.transfer_alpha,
            "local_layer": self.local_layer,
            "local_alpha": self.local_alpha,
            "transfer": self.transfer.to_json(),
            "localization": self.localization.to_json(),
            "steering": self.steering,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SurgicalPoint:
        return cls(
            kind=obj["kind"],
            transfer_layer=obj["transfer_layer"],
            transfer_alpha=float(obj["transfer_alpha"]),
            local_layer=obj["local_layer"],
            local_alpha=float(obj["local_alpha"]),
            transfer=Score.from_json(obj["transfer"]),
            localization=Score.from_json(obj["localization"]),
            steering=obj["steering"],
        )


def _pair_json(pair: tuple[Score, Score]) -> dict[str, Any]:
    return {"transfer": pair[0].to_json(), "localization": pair[1].to_json()}


def _pair_from_json(obj: Mapping[str, Any]) -> tuple[Score, Score]:
    return Score.from_json(obj["transfer"]), Score.from_json(obj["localization"])


@dataclass(frozen=True)
class SurgicalSearch:
    """The grid on dev, its surgical frontier and the chosen points re-scored on eval."""

    lang: str
    dev_points: tuple[SurgicalPoint, ...]
    dev_unsteered: tuple[Score, Score]
    frontier: tuple[SurgicalPoint, ...]
    best: SurgicalPoint
    best_single: dict[str, SurgicalPoint]
    eval_unsteered: tuple[Score, Score]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "settings": self.settings,
            "dev_unsteered": _pair_json(self.dev_unsteered),
            "eval_unsteered": _pair_json(self.eval_unsteered),
            "dev_points": [point.to_json() for point in self.dev_points],
            "frontier": [point.to_json() for point in self.frontier],
            "best": self.best.to_json(),
            "best_single": {kind: point.to_json() for kind, point in self.best_single.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SurgicalSearch:
        return cls(
            lang=obj["lang"],
            dev_points=tuple(SurgicalPoint.from_json(p) for p in obj["dev_points"]),
            dev_unsteered=_pair_from_json(obj["dev_unsteered"]),
            frontier=tuple(SurgicalPoint.from_json(p) for p in obj["frontier"]),
            best=SurgicalPoint.from_json(obj["best"]),
            best_single={k: SurgicalPoint.from_json(p) for k, p in obj["best_single"].items()},
            eval_unsteered=_pair_from_json(obj["eval_unsteered"]),
            settings=obj.get("settings", {}),
        )


@dataclass(frozen=True)
class _Candidate:
    kind: PointKind
    transfer_layer: int | None
    transfer_alpha: float
    local_layer: int | None
    local_alpha: float
    steering: Steering

    @property
    def key(self) -> str:
        return _point_key(
            self.transfer_layer, self.transfer_alpha, self.local_layer, self.local_alpha
        )


def _candidates(
    en: LayerVectors,
    loc: LayerVectors,
    transfer_layers: Sequence[int],
    transfer_alphas: Sequence[float],
    local_layers: Sequence[int],
    local_alphas: Sequence[float],
    *,
    alpha_mode: AlphaMode,
    norms: ReferenceNorms | None,
    require_order: bool,
    include_single: bool,
) -> list[_Candidate]:
    en_prov, loc_prov = vector_provenance(en), vector_provenance(loc)
    out = []
    for lt in transfer_layers:
        for at in transfer_alphas:
            for ll in local_layers:
                if require_order and not lt < ll:
                    continue
                for al in local_alphas:
                    steering = surgical_steering(
                        en.at_layer(lt), lt, at, loc.at_layer(ll), ll, al, alpha_mode=alpha_mode,
                        en_reference_norm=reference_norm(norms, lt),
                        loc_reference_norm=reference_norm(norms, ll),
                        en_provenance=en_prov, loc_provenance=loc_prov,
                    )  # fmt: skip
                    out.append(_Candidate("surgical", lt, float(at), ll, float(al), steering))
    if include_single:
        for name, layers, alphas, vectors, prov in (
            ("en", transfer_layers, transfer_alphas, en, en_prov),
            ("loc", local_layers, local_alphas, loc, loc_prov),
        ):
            for layer in layers:
                for alpha in alphas:
                    steering = single_layer_steering(
                        vectors.at_layer(layer), layer, alpha, alpha_mode=alpha_mode,
                        reference_norm=reference_norm(norms, layer), name=name, provenance=prov,
                    )  # fmt: skip
                    if name == "en":
                        cand = _Candidate("en", layer, float(alpha), None, 0.0, steering)
                    else:
                        cand = _Candidate("loc", None, 0.0, layer, float(alpha), steering)
                    out.append(cand)
    if not out:
        raise ValueError(
            "The surgical grid is empty (with require_order, every transfer layer must be "
            "below some local layer)"
        )
    return out


def _score_candidates(
    model: HookedTransformer,
    items: PlaneItems,
    candidates: Sequence[_Candidate],
    *,
    settings: dict[str, Any],
    method: Method,
    batch_size: int,
    checkpoint: str | os.PathLike[str] | None,
    normalize: bool,
    n_bootstrap: int,
    seed: int,
    show_progress: bool,
) -> tuple[list[SurgicalPoint], tuple[Score, Score]]:
    steerings: dict[str, Steering | None] = {"unsteered": None}
    steerings.update({str(i): cand.steering for i, cand in enumerate(candidates)})
    scored = score_steerings(
        model, items.requests, steerings, method=method, batch_size=batch_size,
        checkpoint=checkpoint, show_progress=show_progress,
    )  # fmt: skip

    def pair(key: str, steering: Steering | None) -> tuple[Score, Score]:
        full = {**settings, "steering": None if steering is None else steering.to_json()}
        return items.scores(
            scored[key], settings=full, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed
        )

    points = []
    for index, cand in enumerate(candidates):
        transfer, localization = pair(str(index), cand.steering)
        points.append(
            SurgicalPoint(
                cand.kind,
                cand.transfer_layer,
                cand.transfer_alpha,
                cand.local_layer,
                cand.local_alpha,
                transfer,
                localization,
                cand.steering.to_json(),
            )  # fmt: skip
        )
    return points, pair("unsteered", None)


def surgical_search(
    model: HookedTransformer,
    transfer_items: Sequence[TransferItem],
    localization_items: Sequence[LocalizationItem],
    en_vector: LayerVectors,
    loc_vector: LayerVectors,
    *,
    transfer_layers: Sequence[int],
    transfer_alphas: Sequence[float],
    local_layers: Sequence[int],
    local_alphas: Sequence[float],
    alpha_mode: AlphaMode = "relative",
    reference_norms: ReferenceNorms | None = None,
    require_order: bool = True,
    include_single: bool = True,
    criterion: Criterion = "sum_gain",
    dev_split: Split = "dev",
    eval_split: Split = "eval",
    normalize: bool = False,
    method: Method = "fast",
    batch_size: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> SurgicalSearch:
    """Grid-search Surgical Steering on dev; report its Pareto frontier and best point on eval.

    Args:
        model: the model.
        transfer_items, localization_items: items of one language, both splits.
        en_vector, loc_vector: per-layer EN and LOC vectors of that language.
        transfer_layers, transfer_alphas: where and how much of ``v_EN`` to add.
        local_layers, local_alphas: where and how much of ``v_LOC`` to add.
        alpha_mode, reference_norms: as in :func:`layer_sweep`.
        require_order: keep only ``l_T < l_L`` (the study's ordering).
        include_single: also score EN-only and LOC-only points, the single-layer baselines.
        criterion: how ``best`` is chosen on dev (``"sum_gain"`` or ``"harmonic_mean"``).
        dev_split, eval_split: where points are chosen and where they are reported.
        checkpoint: JSONL file for the dev grid (the costly part).
        Others: as in :func:`layer_sweep`.

    Example:
        >>> search = surgical_search(model, probe.transfer, probe.localization, en["ko"],
        ...     loc["ko"], transfer_layers=[5, 7], transfer_alphas=[0.5], local_layers=[12, 15],
        ...     local_alphas=[0.5, 1.0], reference_norms=norms)  # doctest: +SKIP
        >>> search.best.key  # doctest: +SKIP
        'en@7:0.5+loc@15:1'
    """
    if alpha_mode == "relative" and reference_norms is None:
        raise ValueError(
            "alpha_mode='relative' needs reference_norms (mean residual norm per layer)"
        )
    criterion_value(0.0, 0.0, (0.0, 0.0), criterion)  # validate early
    candidates = _candidates(
        en_vector, loc_vector, transfer_layers, transfer_alphas, local_layers, local_alphas,
        alpha_mode=alpha_mode, norms=reference_norms, require_order=require_order,
        include_single=include_single,
    )  # fmt: skip
    dev = PlaneItems.build(transfer_items, localization_items, split=dev_split)
    test = PlaneItems.build(transfer_items, localization_items, split=eval_split)
    base = {"model_id": model_id(model), "alpha_mode": alpha_mode, "method": method}

    def score(
        items: PlaneItems, chosen: Sequence[_Candidate], path: Any
    ) -> tuple[list[SurgicalPoint], tuple[Score, Score]]:
        return _score_candidates(
            model, items, chosen, settings=base, method=method, batch_size=batch_size,
            checkpoint=path, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed,
            show_progress=show_progress,
        )  # fmt: skip

    dev_points, dev_unsteered = score(dev, candidates, checkpoint)
    baseline = (dev_unsteered[0].value, dev_unsteered[1].value)

    def value(point: SurgicalPoint) -> float:
        return criterion_value(point.transfer.value, point.localization.value, baseline, criterion)

    surgical = [p for p in dev_points if p.kind == "surgical"]
    frontier_dev = [
        surgical[i]
        for i in pareto_frontier([(p.transfer.value, p.localization.value) for p in surgical])
    ]
    chosen = {"best": max(surgical, key=value)}  # max keeps the first of equal values
    if include_single:
        for kind in ("en", "loc"):
            chosen[kind] = max((p for p in dev_points if p.kind == kind), key=value)
    # Re-score the frontier and the chosen points on eval (one engine call).
    wanted = {p.key: p for p in [*frontier_dev, *chosen.values()]}
    index = {cand.key: cand for cand in candidates}
    eval_points, eval_unsteered = score(test, [index[key] for key in wanted], None)
    by_key = {p.key: p for p in eval_points}
    settings = {
        **base,
        "lang": dev.lang,
        "dev": dev.describe(),
        "eval": test.describe(),
        "transfer_layers": list(transfer_layers),
        "transfer_alphas": [float(a) for a in transfer_alphas],
        "local_layers": list(local_layers),
        "local_alphas": [float(a) for a in local_alphas],
        "require_order": require_order,
        "include_single": include_single,
        "criterion": criterion,
        "n_grid_points": len(candidates),
        "normalize": normalize,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "en_vector": vector_provenance(en_vector),
        "loc_vector": vector_provenance(loc_vector),
    }
    return SurgicalSearch(
        lang=dev.lang,
        dev_points=tuple(dev_points),
        dev_unsteered=dev_unsteered,
        frontier=tuple(by_key[p.key] for p in frontier_dev),
        best=by_key[chosen["best"].key],
        best_single={kind: by_key[chosen[kind].key] for kind in ("en", "loc") if kind in chosen},
        eval_unsteered=eval_unsteered,
        settings=settings,
    )
