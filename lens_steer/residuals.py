"""The residual stream of many prompts at several layers, as a value that knows where it was read.

:class:`ResidualSet` holds ``[prompt, layer, d_model]`` activations with the ids, languages and
translation groups of the prompts, the hook and read position, and the model; it saves as
safetensors + JSON and loads back exactly. :mod:`lens_steer.collect` fills one from a model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lens_steer._io import load_tensor_bundle, save_tensor_bundle
from lens_steer._tensors import check_finite

ReadPosition = Literal["last", "mean"] | int
"""Where a prompt's residual is read: its last token, the mean over its tokens, or an index."""

_FORMAT = "lens_steer.ResidualSet/1"


@dataclass(frozen=True)
class ResidualSet:
    """Residual-stream vectors of many prompts at several layers, with where they were read.

    Attributes:
        acts: ``[prompt, layer, d_model]`` float32 on CPU.
        layers: the layer of each slot of ``acts``'s second axis.
        ids: one id per prompt.
        langs: one language code per prompt (``""`` when unknown).
        hook_name: the hook template, e.g. ``"blocks.{layer}.hook_resid_post"``.
        position: the read position, ``"last"``, ``"mean"`` or an index such as ``"-2"``.
        model_id: the model that produced them.
        groups: optional group of each prompt (items sharing a group are translations or
            variants of each other); ``()`` when unknown.
    """

    acts: Float[Tensor, "prompt layer d_model"]
    layers: tuple[int, ...]
    ids: tuple[str, ...]
    langs: tuple[str, ...]
    hook_name: str
    position: str
    model_id: str
    groups: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.acts.ndim != 3:
            raise ValueError(
                f"ResidualSet.acts must be [prompt, layer, d_model], got {tuple(self.acts.shape)}"
            )
        n_prompts, n_layers, _ = self.acts.shape
        if len(self.layers) != n_layers:
            raise ValueError(
                f"ResidualSet: {len(self.layers)} layers for an acts layer axis of {n_layers}"
            )
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"ResidualSet: duplicate layers in {self.layers}")
        for name in ("ids", "langs") + (("groups",) if self.groups else ()):
            if len(getattr(self, name)) != n_prompts:
                raise ValueError(
                    f"ResidualSet.{name} has {len(getattr(self, name))} entries for {n_prompts} prompts"
                )
        check_finite(self.acts, f"ResidualSet.acts ({self.model_id}, {self.hook_name})")

    def __repr__(self) -> str:
        langs = ",".join(dict.fromkeys(self.langs)) or "-"
        return (
            f"ResidualSet({self.n_prompts} prompts [{langs}] x layers {_layer_span(self.layers)} "
            f"x d_model {self.d_model}, {self.hook_name}, position={self.position}, "
            f"model={self.model_id})"
        )

    @property
    def n_prompts(self) -> int:
        return int(self.acts.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[2])

    def layer_index(self, layer: int) -> int:
        """Slot of ``layer`` on the layer axis of ``acts``."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(
                f"layer {layer} was not collected; collected layers: {self.layers}"
            ) from None

    def at_layer(self, layer: int) -> Float[Tensor, "prompt d_model"]:
        """The ``[prompt, d_model]`` residuals at one layer."""
        return self.acts[:, self.layer_index(layer)]

    def select(
        self, mask_or_indices: Bool[Tensor, " prompt"] | Sequence[int] | Sequence[bool] | Tensor
    ) -> ResidualSet:
        """A new set with the chosen prompts (a boolean mask, or indices in the wanted order)."""
        index = torch.as_tensor(mask_or_indices)
        if index.dtype == torch.bool:
            if index.shape != (self.n_prompts,):
                raise ValueError(
                    f"select: mask of shape {tuple(index.shape)} for {self.n_prompts} prompts"
                )
            index = index.nonzero().flatten()
        if index.numel() and (
            int(index.max()) >= self.n_prompts or int(index.min()) < -self.n_prompts
        ):
            raise IndexError(f"select: index out of range for {self.n_prompts} prompts")
        rows = [int(i) for i in index.flatten()]
        return replace(
            self,
            acts=self.acts[index.long()],
            ids=tuple(self.ids[i] for i in rows),
            langs=tuple(self.langs[i] for i in rows),
            groups=tuple(self.groups[i] for i in rows) if self.groups else (),
        )

    def where_lang(self, lang: str) -> ResidualSet:
        """The prompts of one language (``ValueError`` when there are none)."""
        rows = [i for i, value in enumerate(self.langs) if value == lang]
        if not rows:
            raise ValueError(
                f"no prompts in language {lang!r}; languages present: {sorted(set(self.langs))}"
            )
        return self.select(rows)

    def mean_norm(self) -> Float[Tensor, " layer"]:
        """Mean L2 norm of the residual per layer (sets alpha relative to the residual size)."""
        return self.acts.norm(dim=-1).mean(dim=0)

    def std(self) -> Float[Tensor, "layer d_model"]:
        """Per-dimension standard deviation over prompts, per layer (for standardized geometry)."""
        if self.n_prompts < 2:
            raise ValueError("ResidualSet.std needs at least 2 prompts")
        return self.acts.std(dim=0)

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings (no tensors): model, hook, position, layers, size."""
        return {
            "model_id": self.model_id,
            "hook_name": self.hook_name,
            "position": self.position,
            "layers": list(self.layers),
            "n_prompts": self.n_prompts,
            "d_model": self.d_model,
        }

    def save(self, path: str | os.PathLike[str]) -> dict[str, Path]:
        """Save as ``{stem}.safetensors`` (acts) and ``{stem}.json`` (everything else)."""
        metadata = {
            "format": _FORMAT,
            **self.describe(),
            "ids": list(self.ids),
            "langs": list(self.langs),
            "groups": list(self.groups),
        }
        return save_tensor_bundle(path, {"acts": self.acts}, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ResidualSet:
        """Load what :meth:`save` wrote."""
        tensors, meta = load_tensor_bundle(path, expected_format=_FORMAT)
        return cls(
            acts=tensors["acts"],
            layers=tuple(int(layer) for layer in meta["layers"]),
            ids=tuple(meta["ids"]),
            langs=tuple(meta["langs"]),
            hook_name=meta["hook_name"],
            position=meta["position"],
            model_id=meta["model_id"],
            groups=tuple(meta.get("groups", ())),
        )

    @staticmethod
    def concat(sets: Sequence[ResidualSet]) -> ResidualSet:
        """Stack the prompts of several sets read at the same layers, hook and position."""
        if not sets:
            raise ValueError("concat: no ResidualSets given")
        first = sets[0]
        for other in sets[1:]:
            check_compatible(first, other)
        keep_groups = all(s.groups for s in sets)
        return replace(
            first,
            acts=torch.cat([s.acts for s in sets]),
            ids=tuple(i for s in sets for i in s.ids),
            langs=tuple(lang for s in sets for lang in s.langs),
            groups=tuple(g for s in sets for g in s.groups) if keep_groups else (),
        )


def check_compatible(a: ResidualSet, b: ResidualSet) -> None:
    """Raise ``ValueError`` unless two sets share model, hook, position, layers and d_model."""
    for name in ("model_id", "hook_name", "position", "layers", "d_model"):
        if getattr(a, name) != getattr(b, name):
            raise ValueError(
                f"mismatched ResidualSets: {name} {getattr(a, name)!r} vs {getattr(b, name)!r}"
            )


def _layer_span(layers: Sequence[int]) -> str:
    if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(str(layer) for layer in layers)
