"""Layer sweeps: EN- and LOC-steering at every layer and a few alphas, scored on the plane.

For each vector kind (``"en"``, ``"loc"``, or any other name), layer and alpha, the vector is
added at ``blocks.{layer}.hook_resid_post`` at every position and all transfer and localization
items are scored. Alpha is relative by default: the added vector's norm is alpha times the mean
residual norm at that layer (``reference_norms``), which keeps alphas comparable across layers
whose norms differ by two orders of magnitude. All settings run through
:func:`lens_steer.evaluate.engine.score_steerings` (one clean forward per batch, restarts from the
cached residual), with an optional resumable checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer.data.records import LocalizationItem, Split, TransferItem
from lens_steer.evaluate.engine import Method, score_steerings
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.scores import Score
from lens_steer.models import model_id
from lens_steer.steering import AlphaMode, Steering, single_layer_steering

Metric = Literal["transfer", "localization"]


class LayerVectors(Protocol):
    """Anything with a vector per layer, such as :class:`lens_steer.geometry.ContrastVector`."""

    def at_layer(self, layer: int) -> Float[Tensor, " d_model"]: ...


ReferenceNorms = Mapping[int, float] | Float[Tensor, " layer"] | Sequence[float]


def reference_norm(norms: ReferenceNorms | None, layer: int) -> float | None:
    """The mean residual norm at ``layer`` (a mapping by layer, or a sequence indexed by layer)."""
    if norms is None:
        return None
    try:
        return float(norms[layer])
    except (KeyError, IndexError):
        raise ValueError(f"reference_norms has no entry for layer {layer}") from None


def vector_provenance(vectors: LayerVectors) -> dict[str, Any]:
    """The vector's provenance when it has one (ContrastVector), else an empty dict."""
    return dict(getattr(vectors, "provenance", {}) or {})


@dataclass(frozen=True)
class SweepPoint:
    """Transfer and localization under one single-layer steering."""

    kind: str
    layer: int
    alpha: float
    transfer: Score
    localization: Score
    steering: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "alpha": self.alpha,
            "transfer": self.transfer.to_json(),
            "localization": self.localization.to_json(),
            "steering": self.steering,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SweepPoint:
        return cls(
            kind=obj["kind"],
            layer=int(obj["layer"]),
            alpha=float(obj["alpha"]),
            transfer=Score.from_json(obj["transfer"]),
            localization=Score.from_json(obj["localization"]),
            steering=obj["steering"],
        )

    def score(self, metric: Metric) -> Score:
        return self.transfer if metric == "transfer" else self.localization


@dataclass(frozen=True)
class LayerSweep:
    """All sweep points of one language, with the unsteered scores as the reference."""

    lang: str
    points: tuple[SweepPoint, ...]
    unsteered_transfer: Score
    unsteered_localization: Score
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(point.kind for point in self.points))

    @property
    def alphas(self) -> tuple[float, ...]:
        return tuple(sorted({point.alpha for point in self.points}))

    def curve(self, kind: str, alpha: float) -> list[SweepPoint]:
        """The points of one kind and alpha, by layer."""
        chosen = [p for p in self.points if p.kind == kind and p.alpha == alpha]
        if not chosen:
            raise KeyError(f"No sweep points for kind {kind!r} and alpha {alpha}")
        return sorted(chosen, key=lambda p: p.layer)

    def peak(self, kind: str, metric: Metric) -> SweepPoint:
        """The point of ``kind`` with the highest ``metric`` (first by layer, alpha on ties)."""
        chosen = sorted(
            (p for p in self.points if p.kind == kind), key=lambda p: (p.layer, p.alpha)
        )
        if not chosen:
            raise KeyError(f"No sweep points for kind {kind!r}")
        return max(chosen, key=lambda p: p.score(metric).value)

    def to_json(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "settings": self.settings,
            "unsteered": {
                "transfer": self.unsteered_transfer.to_json(),
                "localization": self.unsteered_localization.to_json(),
            },
            "points": [point.to_json() for point in self.points],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LayerSweep:
        return cls(
            lang=obj["lang"],
            points=tuple(SweepPoint.from_json(p) for p in obj["points"]),
            unsteered_transfer=Score.from_json(obj["unsteered"]["transfer"]),
            unsteered_localization=Score.from_json(obj["unsteered"]["localization"]),
            settings=obj.get("settings", {}),
        )


def _check_layers(model: HookedTransformer, layers: Sequence[int]) -> list[int]:
    n_layers = model.cfg.n_layers
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"Layers {bad} out of range for {model_id(model)} (0..{n_layers - 1})")
    if not layers:
        raise ValueError("No layers to sweep")
    return list(layers)


def layer_sweep(
    model: HookedTransformer,
    transfer_items: Sequence[TransferItem],
    localization_items: Sequence[LocalizationItem],
    vectors: Mapping[str, LayerVectors],
    *,
    layers: Sequence[int] | None = None,
    alphas: Sequence[float] = (0.25, 0.5, 1.0),
    alpha_mode: AlphaMode = "relative",
    reference_norms: ReferenceNorms | None = None,
    split: Split | None = "eval",
    normalize: bool = False,
    method: Method = "fast",
    batch_size: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> LayerSweep:
    """Transfer and localization of one language under single-layer steering, per layer and alpha.

    Args:
        model: the model.
        transfer_items, localization_items: items of one language (filtered to ``split``).
        vectors: ``{kind: per-layer vectors}``, e.g. ``{"en": en["ko"], "loc": loc["ko"]}``.
        layers: layers to steer (default: all).
        alphas: scales; relative to the mean residual norm unless ``alpha_mode="raw"``.
        alpha_mode: ``"relative"`` (needs ``reference_norms``) or ``"raw"``.
        reference_norms: mean residual norm per layer, e.g. ``ResidualSet.mean_norm()``.
        split: the split to score.
        normalize: score options by mean log-prob per token.
        method: ``"fast"`` or ``"naive"`` (see :func:`score_steerings`).
        batch_size: sequences per batch.
        checkpoint: JSONL file to resume from / record to.
        n_bootstrap, seed: bootstrap interval settings.
        show_progress: show a tqdm bar.

    Example:
        >>> sweep = layer_sweep(model, probe.transfer, probe.localization,
        ...     {"en": en["ko"], "loc": loc["ko"]}, reference_norms=norms)  # doctest: +SKIP
        >>> sweep.peak("en", "transfer").layer  # doctest: +SKIP
        7
    """
    layers = _check_layers(model, range(model.cfg.n_layers) if layers is None else layers)
    if not alphas:
        raise ValueError("No alphas to sweep")
    if not vectors:
        raise ValueError("No vectors to sweep (give e.g. {'en': ..., 'loc': ...})")
    if alpha_mode == "relative" and reference_norms is None:
        raise ValueError(
            "alpha_mode='relative' needs reference_norms (mean residual norm per layer, e.g. "
            "collect_residuals(...).mean_norm())"
        )
    items = PlaneItems.build(transfer_items, localization_items, split=split)
    steerings: dict[str, Steering | None] = {"unsteered": None}
    where: dict[str, tuple[str, int, float]] = {}
    for kind, source in vectors.items():
        provenance = vector_provenance(source)
        for layer in layers:
            for alpha in alphas:
                key = f"{kind}@{layer}:{alpha:g}"
                steerings[key] = single_layer_steering(
                    source.at_layer(layer), layer, alpha, alpha_mode=alpha_mode,
                    reference_norm=reference_norm(reference_norms, layer), name=kind,
                    provenance=provenance,
                )  # fmt: skip
                where[key] = (kind, layer, float(alpha))
    scored = score_steerings(
        model, items.requests, steerings, method=method, batch_size=batch_size,
        checkpoint=checkpoint, show_progress=show_progress,
    )  # fmt: skip
    base = {"model_id": model_id(model), "alpha_mode": alpha_mode, "method": method}

    def plane(key: str, steering: Steering | None) -> tuple[Score, Score]:
        settings = {**base, "steering": None if steering is None else steering.to_json()}
        return items.scores(
            scored[key], settings=settings, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed
        )

    unsteered = plane("unsteered", None)
    points = []
    for key, (kind, layer, alpha) in where.items():
        steering = steerings[key]
        assert steering is not None
        transfer, localization = plane(key, steering)
        points.append(SweepPoint(kind, layer, alpha, transfer, localization, steering.to_json()))
    settings = {
        **base,
        **items.describe(),
        "layers": layers,
        "alphas": [float(alpha) for alpha in alphas],
        "kinds": list(vectors),
        "vectors": {kind: vector_provenance(source) for kind, source in vectors.items()},
        "normalize": normalize,
        "batch_size": batch_size,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
    }
    return LayerSweep(items.lang, tuple(points), unsteered[0], unsteered[1], settings)
