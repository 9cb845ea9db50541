"""Cosines between per-layer vectors: raw and standardized, with bootstrap intervals and a null band.

Why standardized: in Gemma-style models a few residual dimensions carry most of the norm
("massive activations"), so raw cosines between mean-difference vectors mostly compare those
dimensions. Dividing each dimension by the residual's standard deviation at that layer gives
every dimension its typical scale before the angle is taken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from scipy.stats import beta
from torch import Tensor

from lens_steer._tensors import check_finite
from lens_steer.geometry.vectors import ContrastVector
from lens_steer.residuals import ResidualSet

IntervalMethod = Literal["basic", "percentile"]
Scale = ResidualSet | Float[Tensor, "layer d_model"]


def null_band(d_model: int, *, level: float | None = None) -> float:
    """Half-width of the band holding cosines of two independent random directions.

    The cosine of two independent uniform directions in ``d`` dimensions has mean 0 and
    standard deviation ``1/sqrt(d)``; ``(1 + cos) / 2`` follows Beta((d-1)/2, (d-1)/2).

    Args:
        d_model: the dimension ``d``.
        level: ``None`` for the conventional ``2/sqrt(d)`` (about 95%), or a two-sided coverage
            (e.g. 0.99) for the exact quantile of the Beta law.

    Example:
        >>> round(null_band(640), 4)
        0.0791
    """
    if d_model < 2:
        raise ValueError(f"null_band needs d_model >= 2, got {d_model}")
    if level is None:
        return 2.0 / math.sqrt(d_model)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    shape = (d_model - 1) / 2.0
    return float(2.0 * beta.ppf(0.5 + level / 2.0, shape, shape) - 1.0)


def cosine(
    u: Float[Tensor, "*batch d_model"], v: Float[Tensor, "*batch d_model"]
) -> Float[Tensor, "*batch"]:
    """Cosine along the last axis (float64 inside); ``ValueError`` on zero or NaN vectors."""
    if u.shape[-1] != v.shape[-1]:
        raise ValueError(f"cosine: d_model differs ({u.shape[-1]} vs {v.shape[-1]})")
    check_finite(u, "cosine: first vector")
    check_finite(v, "cosine: second vector")
    u64, v64 = u.double(), v.double()
    norms = u64.norm(dim=-1) * v64.norm(dim=-1)
    if bool((norms == 0).any()):
        raise ValueError("cosine: a vector is zero, its direction is undefined")
    return ((u64 * v64).sum(dim=-1) / norms).float()


def residual_scale(
    scale: Scale, layers: Sequence[int], d_model: int
) -> Float[Tensor, "layer d_model"]:
    """Per-dimension residual std at ``layers``, from a ResidualSet or a ``[layer, d_model]`` tensor.

    Dimensions with no spread are given a tiny positive std so that division stays finite.
    """
    if isinstance(scale, ResidualSet):
        missing = [layer for layer in layers if layer not in scale.layers]
        if missing:
            raise ValueError(f"standardization set lacks layer(s) {missing}; it has {scale.layers}")
        std = scale.std()[[scale.layer_index(layer) for layer in layers]]
    else:
        std = scale
    if tuple(std.shape) != (len(layers), d_model):
        raise ValueError(f"scale has shape {tuple(std.shape)}, expected {(len(layers), d_model)}")
    check_finite(std, "residual scale")
    floor = torch.finfo(torch.float32).eps * std.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    return std.abs().clamp_min(floor)


@dataclass(frozen=True)
class LayerCosines:
    """cos(u, v) per layer, raw and standardized, with bootstrap percentile intervals."""

    layers: tuple[int, ...]
    raw: Float[Tensor, " layer"]
    standardized: Float[Tensor, " layer"] | None
    raw_ci: Float[Tensor, "2 layer"] | None
    standardized_ci: Float[Tensor, "2 layer"] | None
    null_band: float
    level: float
    interval: str
    n_bootstrap: int


def _as_vectors(
    x: ContrastVector | Tensor, name: str
) -> tuple[Tensor, Tensor | None, tuple[int, ...] | None]:
    if isinstance(x, ContrastVector):
        return x.vectors, x.bootstrap, x.layers
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"cosine_by_layer: {name} must be [layer, d_model], got {tuple(x.shape)}")
    return x, None, None


def bootstrap_interval(
    samples: Float[Tensor, "sample layer"],
    estimate: Float[Tensor, " layer"],
    *,
    level: float = 0.95,
    method: IntervalMethod = "basic",
) -> Float[Tensor, "2 layer"]:
    """Bootstrap interval of a cosine per layer: "basic" (default) or "percentile".

    Noise pulls a cosine of two estimated vectors towards 0, and resampling adds the same pull
    again: the samples of a large cosine sit below the estimate, which itself sits below the
    truth. The basic interval ``[2 est - q_hi, 2 est - q_lo]`` (clipped to [-1, 1]) reflects
    that shift back and keeps its coverage; the percentile interval ``[q_lo, q_hi]`` does not
    for large cosines. Near 0, where perpendicularity is judged, the two agree.

    Args:
        samples: cosine per bootstrap sample and layer.
        estimate: the cosine on the full data, per layer.
        level: two-sided coverage.
        method: ``"basic"`` or ``"percentile"``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in ("basic", "percentile"):
        raise ValueError(f"interval method must be 'basic' or 'percentile', got {method!r}")
    tail = (1.0 - level) / 2.0
    probs = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
    low, high = torch.quantile(samples.double(), probs, dim=0)
    if method == "percentile":
        return torch.stack([low, high]).float()
    centre = 2.0 * estimate.double()
    return torch.stack([centre - high, centre - low]).clamp(-1.0, 1.0).float()


def cosine_by_layer(
    u: ContrastVector | Float[Tensor, "layer d_model"],
    v: ContrastVector | Float[Tensor, "layer d_model"],
    *,
    scale: Scale | None = None,
    layers: Sequence[int] | None = None,
    level: float = 0.95,
    interval: IntervalMethod = "basic",
    null_level: float | None = None,
) -> LayerCosines:
    """Cosine of two per-layer vectors at every layer, raw and (with ``scale``) standardized.

    The interval pairs bootstrap sample i of ``u`` with sample i of ``v`` (both must have been
    bootstrapped, e.g. ``contrast_vector(..., n_bootstrap=200)``); the standardization scale is
    held fixed across samples. Samples of u and v are treated as independent, which holds when
    they were fitted on disjoint prompt sets (EN: parallel sentences, LOC: localization items).
    Resampling noise pulls cosines towards 0; the default basic interval accounts for that.

    Args:
        u, v: ContrastVectors or ``[layer, d_model]`` tensors read at the same layers.
        scale: residual std per layer and dimension (a ResidualSet to estimate it from, or a
            tensor); ``None`` skips the standardized cosine.
        layers: layer labels for tensor inputs (default ``0..n-1``).
        level: coverage of the bootstrap interval.
        interval: ``"basic"`` (default) or ``"percentile"``; see :func:`bootstrap_interval`.
        null_level: see :func:`null_band` (``None``: ``2/sqrt(d)``).

    Example:
        >>> result = cosine_by_layer(en["ko"], loc["ko"], scale=parallel_residuals)  # doctest: +SKIP
        >>> result.standardized.shape  # doctest: +SKIP
        torch.Size([18])
    """
    u_vec, u_boot, u_layers = _as_vectors(u, "u")
    v_vec, v_boot, v_layers = _as_vectors(v, "v")
    if u_layers is not None and v_layers is not None and u_layers != v_layers:
        raise ValueError(f"mismatched vectors: layers {u_layers} vs {v_layers}")
    if u_vec.shape != v_vec.shape:
        raise ValueError(f"mismatched vectors: shapes {tuple(u_vec.shape)} vs {tuple(v_vec.shape)}")
    found = u_layers or v_layers
    layer_labels = tuple(layers) if layers is not None else found or tuple(range(u_vec.shape[0]))
    if found is not None and layers is not None and tuple(layers) != found:
        raise ValueError(f"layers {tuple(layers)} disagree with the vectors' layers {found}")
    if len(layer_labels) != u_vec.shape[0]:
        raise ValueError(f"{len(layer_labels)} layer labels for {u_vec.shape[0]} vectors")

    std = residual_scale(scale, layer_labels, u_vec.shape[1]) if scale is not None else None
    raw = cosine(u_vec, v_vec)
    standardized = cosine(u_vec / std, v_vec / std) if std is not None else None
    raw_ci = standardized_ci = None
    n_bootstrap = 0
    if u_boot is not None and v_boot is not None:
        n_bootstrap = min(u_boot.shape[0], v_boot.shape[0])
        u_s, v_s = u_boot[:n_bootstrap], v_boot[:n_bootstrap]
        raw_ci = bootstrap_interval(cosine(u_s, v_s), raw, level=level, method=interval)
        if std is not None and standardized is not None:
            standardized_ci = bootstrap_interval(
                cosine(u_s / std, v_s / std), standardized, level=level, method=interval
            )
    return LayerCosines(
        layers=layer_labels,
        raw=raw,
        standardized=standardized,
        raw_ci=raw_ci,
        standardized_ci=standardized_ci,
        null_band=null_band(u_vec.shape[1], level=null_level),
        level=level,
        interval=interval,
        n_bootstrap=n_bootstrap,
    )


def _number(x: Tensor | None, index: Any) -> float | None:
    return None if x is None else round(float(x[index]), 6)


def perpendicularity_table(
    en: Mapping[str, ContrastVector],
    loc: Mapping[str, ContrastVector],
    *,
    scale: Scale | Mapping[str, Scale] | None = None,
    level: float = 0.95,
    interval: IntervalMethod = "basic",
    null_level: float | None = None,
) -> list[dict[str, Any]]:
    """cos(EN, LOC) per language and layer as JSON-ready rows.

    Each row: ``lang, layer, cos_raw, ci_low, ci_high`` (interval of the raw cosine),
    ``cos_std, std_ci_low, std_ci_high`` (standardized; ``None`` without ``scale``),
    ``null_band``, ``level``, ``n_bootstrap`` and the vectors' model_id, hook_name, position
    and split.

    Args:
        en, loc: vectors per language (from :func:`en_vectors`, :func:`loc_vectors`).
        scale: one standardization scale for all languages or one per language.
        level, interval, null_level: as in :func:`cosine_by_layer`.
    """
    common = [lang for lang in en if lang in loc]
    if not common:
        raise ValueError(
            f"no language has both an EN and a LOC vector (EN: {list(en)}, LOC: {list(loc)})"
        )
    rows = []
    for lang in common:
        lang_scale = scale.get(lang) if isinstance(scale, Mapping) else scale
        result = cosine_by_layer(
            en[lang],
            loc[lang],
            scale=lang_scale,
            level=level,
            interval=interval,
            null_level=null_level,
        )
        source = en[lang].provenance
        for slot, layer in enumerate(result.layers):
            rows.append(
                {
                    "lang": lang,
                    "layer": layer,
                    "cos_raw": _number(result.raw, slot),
                    "ci_low": _number(result.raw_ci, (0, slot)),
                    "ci_high": _number(result.raw_ci, (1, slot)),
                    "cos_std": _number(result.standardized, slot),
                    "std_ci_low": _number(result.standardized_ci, (0, slot)),
                    "std_ci_high": _number(result.standardized_ci, (1, slot)),
                    "null_band": round(result.null_band, 6),
                    "level": level,
                    "interval": interval,
                    "n_bootstrap": result.n_bootstrap,
                    "model_id": source.get("model_id", ""),
                    "hook_name": source.get("hook_name", ""),
                    "position": source.get("position", ""),
                    "split": source.get("split", ""),
                }
            )
    return rows
