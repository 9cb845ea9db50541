"""Layer sweeps: each vector method at every layer and dose, with random-direction controls.

For each vector method (``"en"``, ``"loc"``, or any registered one), layer and alpha, the
vector is added at ``blocks.{layer}.hook_resid_post`` at every position and every metric of the
target is scored per item. Alpha is in units of the fitted vector by default (``alpha_mode=
"raw"``: alpha 1 adds the whole mean difference, moving the mean L residual to the mean English
one for EN, implicit to explicit for LOC), so doses compare across layers and methods; the
relative mode (a fraction of the mean residual norm) is kept as an option.

Controls: at the alphas in ``control_alphas`` (every alpha by default), ``n_controls`` seeded
random directions with the same norm as the added vector are scored at the same layer, so
every effect can be reported net of what any push of that size does. Every dose records its
added norm (and its ratio to the residual norm) and the next-token KL divergence it causes on
neutral prompts, so a reader sees when a dose is damage rather than steering.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer.data.records import Split
from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.kl import next_token_kl
from lens_steer.evaluate.points import PointSet, ScoringSettings, evaluate_points
from lens_steer.models import model_id
from lens_steer.steering import AlphaMode, Steering, single_layer_steering


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


def point_key(method: str, layer: int, alpha: float) -> str:
    """``"en@6:1"``: which vector at which layer and alpha."""
    return f"{method}@{layer}:{alpha:g}"


def control_key(method: str, layer: int, alpha: float, index: int) -> str:
    """``"random:en@6:1#0"``: the index-th random control of a sweep point."""
    return f"random:{point_key(method, layer, alpha)}#{index}"


def random_direction(d_model: int, norm: float, *, seed: int, name: str) -> Tensor:
    """A seeded Gaussian direction of the given norm; ``name`` makes each control distinct."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
    direction = torch.randn(d_model, generator=generator, dtype=torch.float64)
    return (direction / direction.norm() * norm).float()


@dataclass(frozen=True)
class SweepSettings:
    """Where and how much to steer, and where controls run."""

    layers: tuple[int, ...]
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0)
    alpha_mode: AlphaMode = "raw"
    n_controls: int = 3
    control_alphas: tuple[float, ...] | None = None
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def controlled(self, alpha: float) -> bool:
        """Whether controls run at this alpha."""
        chosen = self.alphas if self.control_alphas is None else self.control_alphas
        return self.n_controls > 0 and alpha in chosen


@dataclass(frozen=True)
class SweepPoint:
    """One (method, layer, alpha) of a sweep: its point key, its controls and its dose."""

    method: str
    layer: int
    alpha: float
    key: str
    controls: tuple[str, ...]
    added_norm: float
    norm_ratio: float | None
    kl: float | None
    control_kl: float | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "controls": list(self.controls)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SweepPoint:
        return cls(**{**obj, "controls": tuple(obj["controls"])})


@dataclass(frozen=True)
class LayerSweep:
    """A target's sweep on one split: every point (controls and unsteered too) and the grid."""

    target: str
    split: Split
    points: PointSet
    grid: tuple[SweepPoint, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(point.method for point in self.grid))

    @property
    def alphas(self) -> tuple[float, ...]:
        return tuple(sorted({point.alpha for point in self.grid}))

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({point.layer for point in self.grid}))

    def curve(self, method: str, alpha: float) -> list[SweepPoint]:
        """The points of one method and alpha, by layer."""
        chosen = [p for p in self.grid if p.method == method and p.alpha == alpha]
        if not chosen:
            raise KeyError(f"no sweep points for method {method!r} and alpha {alpha:g}")
        return sorted(chosen, key=lambda p: p.layer)

    def value(self, key: str, variant: str) -> float:
        return self.points[key].scores[variant].value

    def __repr__(self) -> str:
        return (
            f"LayerSweep({self.target}, {self.split}: methods {list(self.methods)}, "
            f"{len(self.layers)} layers x alphas {list(self.alphas)}, "
            f"{len(self.points.points)} points)"
        )


def _sweep_steerings(
    vectors: Mapping[str, LayerVectors],
    settings: SweepSettings,
    norms: ReferenceNorms | None,
    d_model: int,
) -> tuple[dict[str, Steering], list[dict[str, Any]]]:
    steerings: dict[str, Steering] = {}
    grid = []
    for method, source in vectors.items():
        provenance = vector_provenance(source)
        for layer in settings.layers:
            for alpha in settings.alphas:
                key = point_key(method, layer, alpha)
                steering = single_layer_steering(
                    source.at_layer(layer), layer, alpha, alpha_mode=settings.alpha_mode,
                    reference_norm=reference_norm(norms, layer), name=method,
                    provenance=provenance,
                )  # fmt: skip
                steerings[key] = steering
                added = steering.terms[0].effective_norm()
                controls = []
                if settings.controlled(alpha):
                    for index in range(settings.n_controls):
                        name = control_key(method, layer, alpha, index)
                        direction = random_direction(d_model, added, seed=settings.seed, name=name)
                        steerings[name] = single_layer_steering(
                            direction, layer, 1.0, name=f"random:{method}#{index}",
                            provenance={"control_of": key, "seed": settings.seed},
                        )  # fmt: skip
                        controls.append(name)
                ref = reference_norm(norms, layer)
                grid.append(
                    {
                        "method": method, "layer": layer, "alpha": float(alpha), "key": key,
                        "controls": tuple(controls), "added_norm": added,
                        "norm_ratio": None if not ref else added / ref,
                    }
                )  # fmt: skip
    return steerings, grid


def layer_sweep(
    model: HookedTransformer,
    items: TargetItems,
    vectors: Mapping[str, LayerVectors],
    settings: SweepSettings,
    scoring: ScoringSettings,
    *,
    split: Split = "eval",
    reference_norms: ReferenceNorms | None = None,
    kl_prompts: Sequence[str] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> LayerSweep:
    """Every method at every layer and alpha (and its controls), scored on one split.

    Args:
        model: the model.
        items: the target's items.
        vectors: ``{method: per-layer vectors}``, e.g. ``{"en": en, "loc": loc}``.
        settings: layers, alphas, alpha mode and controls (see :class:`SweepSettings`).
        scoring: metrics, calibrations and intervals (see :class:`ScoringSettings`).
        split: the split to score.
        reference_norms: mean residual norm per layer: needed for ``alpha_mode="relative"``,
            and used to report each dose's norm as a fraction of the residual.
        kl_prompts: neutral texts for the next-token KL of every dose (none: no KL).
        checkpoint: JSONL file to resume from / record to.
        show_progress: tqdm bars.

    Example:
        >>> sweep = layer_sweep(model, items, {"en": en, "loc": loc},
        ...     SweepSettings(layers=(4, 8, 12)), ScoringSettings())  # doctest: +SKIP
        >>> sweep.points["en@8:1"].scores["transfer"].value  # doctest: +SKIP
        0.41
    """
    n_layers = model.cfg.n_layers
    bad = [layer for layer in settings.layers if not 0 <= layer < n_layers]
    if bad or not settings.layers:
        raise ValueError(
            f"sweep layers {list(settings.layers)}: {bad or 'none'} out of range for "
            f"{model_id(model)} (layers 0..{n_layers - 1})"
        )
    if not settings.alphas:
        raise ValueError("no alphas to sweep")
    if not vectors:
        raise ValueError("no vectors to sweep (give e.g. {'en': ..., 'loc': ...})")
    if settings.alpha_mode == "relative" and reference_norms is None:
        raise ValueError(
            "alpha_mode='relative' needs reference_norms (mean residual norm per layer)"
        )
    steerings, grid = _sweep_steerings(vectors, settings, reference_norms, model.cfg.d_model)
    points = evaluate_points(
        model, items, split, steerings, scoring, checkpoint=checkpoint,
        show_progress=show_progress,
    )  # fmt: skip
    kl: dict[str, list[float]] = {}
    if kl_prompts:
        kl = next_token_kl(model, list(kl_prompts), steerings, batch_size=scoring.batch_size)
    sweep_points = []
    for entry in grid:
        point_kl = float(np.mean(kl[entry["key"]])) if kl else None
        control_kl = (
            float(np.mean([np.mean(kl[name]) for name in entry["controls"]]))
            if kl and entry["controls"]
            else None
        )
        sweep_points.append(SweepPoint(**entry, kl=point_kl, control_kl=control_kl))
    recorded = {
        **points.settings,
        **settings.to_json(),
        "vectors": {name: vector_provenance(v) for name, v in vectors.items()},
        "kl_prompts": len(kl_prompts),
        "alpha_units": "fitted vector (alpha 1 adds the whole mean difference)"
        if settings.alpha_mode == "raw"
        else "fraction of the mean residual norm at the layer",
    }
    return LayerSweep(items.target.key, split, points, tuple(sweep_points), recorded)
