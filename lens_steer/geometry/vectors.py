"""Contrast vectors: per-layer mean differences of two collected prompt sets, with a bootstrap.

EN vectors (English minus language L on parallel prompts) and LOC vectors (explicit minus
implicit prompts in L) are two uses of the generic :func:`contrast_vector` (see
:mod:`lens_steer.geometry.methods`). A :class:`ContrastVector` keeps its per-item differences
when the sets were paired, so a null can be rebuilt from sign-flipped differences.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lens_steer._io import load_tensor_bundle, save_tensor_bundle
from lens_steer._tensors import check_finite
from lens_steer.residuals import ResidualSet, check_compatible

_FORMAT = "lens_steer.ContrastVector/1"


@dataclass(frozen=True)
class ContrastVector:
    """A steering/contrast direction per layer, with bootstrap samples and where it came from.

    Attributes:
        vectors: ``[layer, d_model]`` mean of set a minus mean of set b.
        layers: the layer of each row.
        bootstrap: ``[sample, layer, d_model]`` the same difference over prompt resamples,
            or ``None`` when no bootstrap was run.
        provenance: model_id, hook_name, position, kind, lang, split, n_a, n_b, seed, ...
    """

    vectors: Float[Tensor, "layer d_model"]
    layers: tuple[int, ...]
    bootstrap: Float[Tensor, "sample layer d_model"] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    differences: Float[Tensor, "item layer d_model"] | None = None

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.layers):
            raise ValueError(
                f"ContrastVector.vectors must be [layer, d_model] with {len(self.layers)} layers, "
                f"got {tuple(self.vectors.shape)}"
            )
        for name in ("bootstrap", "differences"):
            extra = getattr(self, name)
            if extra is not None and extra.shape[1:] != self.vectors.shape:
                raise ValueError(
                    f"ContrastVector.{name} shape {tuple(extra.shape)} does not match "
                    f"vectors {tuple(self.vectors.shape)}"
                )

    def __repr__(self) -> str:
        prov = self.provenance
        what = prov.get("method") or prov.get("kind") or prov.get("name") or "contrast"
        return (
            f"ContrastVector({what}, target={prov.get('target', prov.get('lang', '?'))}, "
            f"layers {len(self.layers)} x d_model {self.d_model}, n_a={prov.get('n_a')}, "
            f"n_b={prov.get('n_b')}, split={prov.get('split', '?')}, "
            f"bootstrap={0 if self.bootstrap is None else self.bootstrap.shape[0]})"
        )

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    def at_layer(self, layer: int) -> Float[Tensor, " d_model"]:
        """The vector at one layer."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} not in this vector's layers {self.layers}")
        return self.vectors[self.layers.index(layer)]

    def norms(self) -> Float[Tensor, " layer"]:
        """L2 norm of the vector at each layer."""
        return self.vectors.norm(dim=-1)

    def save(self, path: str | os.PathLike[str]) -> dict[str, Path]:
        """Save as ``{stem}.safetensors`` (vectors, bootstrap) + ``{stem}.json`` (provenance)."""
        tensors = {"vectors": self.vectors}
        if self.bootstrap is not None:
            tensors["bootstrap"] = self.bootstrap
        if self.differences is not None:
            tensors["differences"] = self.differences
        meta = {"format": _FORMAT, "layers": list(self.layers), "provenance": self.provenance}
        return save_tensor_bundle(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ContrastVector:
        """Load what :meth:`save` wrote."""
        tensors, meta = load_tensor_bundle(path, expected_format=_FORMAT)
        return cls(
            vectors=tensors["vectors"],
            layers=tuple(int(layer) for layer in meta["layers"]),
            bootstrap=tensors.get("bootstrap"),
            provenance=dict(meta["provenance"]),
            differences=tensors.get("differences"),
        )


def _resample_means(
    acts: Float[Tensor, "prompt layer d_model"], index: Tensor
) -> Float[Tensor, "sample layer d_model"]:
    """Means over resampled prompts; ``index`` is ``[sample, n]`` drawn with replacement.

    Counting draws per prompt keeps memory at O(sample x n + sample x layer x d_model).
    """
    n_prompts = acts.shape[0]
    counts = torch.zeros((index.shape[0], n_prompts), dtype=acts.dtype)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=acts.dtype))
    return torch.einsum("sn,nld->sld", counts / index.shape[1], acts)


def _single_lang(res: ResidualSet) -> str:
    langs = set(res.langs)
    return langs.pop() if len(langs) == 1 else ""


def contrast_vector(
    a: ResidualSet,
    b: ResidualSet,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    name: str = "",
    paired: bool = False,
    kind: str = "custom",
    lang: str | None = None,
    split: str = "",
) -> ContrastVector:
    """Per-layer ``mean(a) - mean(b)`` of two collected prompt sets, with a bootstrap.

    Args:
        a: the "towards" prompts.
        b: the "away from" prompts, read at the same layers, hook, position and model.
        n_bootstrap: number of resamples (0: none).
        seed: seed of the resampling.
        name: free label stored in the provenance.
        paired: row i of ``a`` and of ``b`` are the same item in two forms; the bootstrap then
            resamples pairs (same indices in both) instead of each set independently.
        kind: the vector method's name, e.g. ``"en"``, ``"loc"`` (recorded).
        lang: language recorded in the provenance; by default b's language when unique.
        split: data split recorded in the provenance.

    Example:
        >>> v = contrast_vector(explicit_ko, implicit_ko, n_bootstrap=200, paired=True)  # doctest: +SKIP
        >>> v.at_layer(12).shape  # doctest: +SKIP
        torch.Size([640])
    """
    check_compatible(a, b)
    if a.n_prompts == 0 or b.n_prompts == 0:
        raise ValueError(
            f"contrast_vector: empty set (a has {a.n_prompts}, b has {b.n_prompts} prompts)"
        )
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if paired:
        if a.n_prompts != b.n_prompts:
            raise ValueError(f"paired sets differ in size: {a.n_prompts} vs {b.n_prompts} prompts")
        if a.groups and b.groups and a.groups != b.groups:
            row = next(i for i, (x, y) in enumerate(zip(a.groups, b.groups, strict=True)) if x != y)
            raise ValueError(
                f"paired sets are not aligned: row {row} has group {a.groups[row]!r} in a and "
                f"{b.groups[row]!r} in b"
            )
    vectors = a.acts.mean(dim=0) - b.acts.mean(dim=0)
    check_finite(vectors, "contrast vector")

    bootstrap = None
    if n_bootstrap:
        generator = torch.Generator().manual_seed(seed)
        if paired:
            index = torch.randint(a.n_prompts, (n_bootstrap, a.n_prompts), generator=generator)
            bootstrap = _resample_means(a.acts - b.acts, index)
        else:
            index_a = torch.randint(a.n_prompts, (n_bootstrap, a.n_prompts), generator=generator)
            index_b = torch.randint(b.n_prompts, (n_bootstrap, b.n_prompts), generator=generator)
            bootstrap = _resample_means(a.acts, index_a) - _resample_means(b.acts, index_b)

    provenance = {
        "model_id": a.model_id,
        "hook_name": a.hook_name,
        "position": a.position,
        "kind": kind,
        "lang": _single_lang(b) if lang is None else lang,
        "split": split,
        "n_a": a.n_prompts,
        "n_b": b.n_prompts,
        "paired": paired,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "name": name,
    }
    return ContrastVector(
        vectors=vectors,
        layers=a.layers,
        bootstrap=bootstrap,
        provenance=provenance,
        differences=(a.acts - b.acts) if paired else None,
    )
