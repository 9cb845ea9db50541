"""Collect the residual stream of many prompts at chosen layers, one vector per prompt and layer.

Only what is asked is kept: a hook on each needed ``blocks.{layer}.hook_resid_post`` reduces the
activation to the read position inside the forward pass, the pass stops after the last needed
layer, and the unembedding is never computed. Memory is O(prompts x layers x d_model).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from lens_steer._io import load_tensors, read_json, save_tensors_atomic, write_json_atomic
from lens_steer.models import model_id as _model_id
from lens_steer.tokens import PaddingSide, TokenBatch, encode, pad_id, pad_sequences

ReadPosition = Literal["last", "mean"] | int
ResidPoint = Literal["resid_pre", "resid_mid", "resid_post"]

_FORMAT = "lens_steer.ResidualSet/1"


class CollectOptions(TypedDict, total=False):
    """Keyword options of :func:`collect_residuals` that callers pass through unchanged."""

    layers: Sequence[int] | None
    position: ReadPosition
    batch_size: int
    point: ResidPoint
    show_progress: bool


# --------------------------------------------------------------------------------------------
# Saving tensors with a JSON sidecar (shared by every value that holds tensors).
# --------------------------------------------------------------------------------------------


def _stem(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path


def save_tensor_bundle(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], metadata: dict[str, Any]
) -> dict[str, Path]:
    """Write ``{stem}.safetensors`` and the ``{stem}.json`` sidecar, each atomically.

    The tensors are written first and the sidecar last; both carry the same fingerprint of the
    tensor bytes, so a sidecar that belongs to other tensors (an interrupted overwrite) is
    detected on load.
    """
    stem = _stem(path)
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    fingerprint = _fingerprint(plain)
    paths = {"tensors": stem.with_suffix(".safetensors"), "metadata": stem.with_suffix(".json")}
    save_tensors_atomic(paths["tensors"], plain, metadata={"fingerprint": fingerprint})
    write_json_atomic(paths["metadata"], {**metadata, "fingerprint": fingerprint})
    return paths


def load_tensor_bundle(
    path: str | os.PathLike[str], *, expected_format: str
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read what :func:`save_tensor_bundle` wrote; check the format tag and the fingerprint."""
    stem = _stem(path)
    tensor_path, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for needed in (tensor_path, meta_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found (saved values are a .safetensors + .json pair)"
            )
    try:
        metadata = read_json(meta_path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
    if metadata.get("format") != expected_format:
        raise ValueError(
            f"{meta_path}: format {metadata.get('format')!r}, expected {expected_format!r}"
        )
    tensors = load_tensors(tensor_path)
    if _fingerprint(tensors) != metadata.get("fingerprint"):
        raise ValueError(f"{meta_path} does not describe {tensor_path} (fingerprints differ)")
    return tensors, metadata


def _fingerprint(tensors: dict[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# The value.
# --------------------------------------------------------------------------------------------


def check_finite(tensor: Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the first bad index when ``tensor`` has NaN/inf."""
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{what} has {int(bad.sum())} NaN/inf value(s); first at index {first}")


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


# --------------------------------------------------------------------------------------------
# Collection.
# --------------------------------------------------------------------------------------------


def _check_position(position: ReadPosition) -> str:
    if isinstance(position, bool) or not (
        isinstance(position, int) or position in ("last", "mean")
    ):
        raise ValueError(f"position must be 'last', 'mean' or an int index, got {position!r}")
    return str(position)


def _read_weights(
    batch: TokenBatch, position: ReadPosition, has_bos: bool, ids: Sequence[str]
) -> Float[Tensor, "batch pos"]:
    """Per-row weights over positions that reduce ``[batch, pos, d]`` to the read position."""
    n_rows, width = batch.tokens.shape
    lengths = batch.lengths.to(batch.tokens.device)
    start = width - lengths if batch.padding_side == "left" else torch.zeros_like(lengths)
    weights = torch.zeros((n_rows, width), dtype=torch.float32, device=batch.tokens.device)
    rows = torch.arange(n_rows, device=batch.tokens.device)
    if position == "mean":
        # BOS is an attention sink with a norm many times the others: leave it out of the mean.
        mask = batch.attention_mask.to(torch.float32).clone()
        if has_bos:
            mask[rows, start] = 0.0
        counts = mask.sum(dim=1, keepdim=True)
        if bool((counts == 0).any()):
            empty = [ids[int(i)] for i in (counts.flatten() == 0).nonzero().flatten()]
            raise ValueError(f"position='mean': prompt(s) {empty} have no token besides BOS")
        return mask / counts
    if position == "last":
        offsets = lengths - 1
    else:
        index = int(position)
        offsets = lengths + index if index < 0 else torch.full_like(lengths, index)
        outside = ((offsets < 0) | (offsets >= lengths)).nonzero().flatten()
        if outside.numel():
            row = int(outside[0])
            raise ValueError(
                f"position={index} is outside prompt {ids[row]!r}, which has "
                f"{int(lengths[row])} tokens (BOS included)"
            )
    weights[rows, start + offsets] = 1.0
    return weights


def collect_residuals(
    model: HookedTransformer,
    prompts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    position: ReadPosition = "last",
    batch_size: int = 16,
    ids: Sequence[str] | None = None,
    langs: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    point: ResidPoint = "resid_post",
    padding_side: PaddingSide = "left",
    show_progress: bool = True,
) -> ResidualSet:
    """Collect each prompt's residual stream at the read position, at every chosen layer.

    Prompts are sorted by token length into batches (less padding), run with an attention mask,
    and returned in the order given. A prompt's result does not depend on its batch.

    Args:
        model: a ``HookedTransformer`` with a tokenizer.
        prompts: the texts (BOS is prepended when the model expects it).
        layers: layers to read, ``0..n_layers-1``; all when ``None``.
        position: ``"last"`` (last real token), ``"mean"`` (mean over the real tokens except
            BOS, whose huge norm would dominate), or an index into the real tokens where 0 is
            BOS and negatives count from the end (``-2`` = the token before the last).
        batch_size: prompts per forward pass.
        ids: one id per prompt (default ``"0", "1", ...``).
        langs: one language code per prompt (default ``""``).
        groups: optional group per prompt (e.g. the parallel group of a translation).
        point: ``"resid_post"`` (default), ``"resid_pre"`` or ``"resid_mid"``.
        padding_side: ``"left"`` (default) or ``"right"``; results are the same.
        show_progress: show a tqdm bar over batches.

    Example:
        >>> res = collect_residuals(model, ["우리나라의 수도는", "The capital is"], layers=[3, 9])  # doctest: +SKIP
        >>> res.acts.shape  # doctest: +SKIP
        torch.Size([2, 2, 640])
    """
    if isinstance(prompts, str):
        raise TypeError("collect_residuals takes a list of prompts, not one string")
    if len(prompts) == 0:
        raise ValueError("collect_residuals: the prompt list is empty")
    n_layers = model.cfg.n_layers
    layers = tuple(range(n_layers)) if layers is None else tuple(int(layer) for layer in layers)
    if not layers:
        raise ValueError("collect_residuals: no layers asked for")
    outside = [layer for layer in layers if not 0 <= layer < n_layers]
    if outside:
        raise ValueError(f"layer(s) {outside} outside [0, {n_layers}) for {_model_id(model)}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"duplicate layers in {layers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if point not in ("resid_pre", "resid_mid", "resid_post"):
        raise ValueError(f"point must be resid_pre, resid_mid or resid_post, got {point!r}")
    position_name = _check_position(position)
    ids = tuple(str(i) for i in range(len(prompts))) if ids is None else tuple(ids)
    langs = ("",) * len(prompts) if langs is None else tuple(langs)
    for name, values in (("ids", ids), ("langs", langs), ("groups", groups)):
        if values is not None and len(values) != len(prompts):
            raise ValueError(f"{name} has {len(values)} entries for {len(prompts)} prompts")
    empty = [ids[i] for i, text in enumerate(prompts) if not text]
    if empty:
        raise ValueError(f"empty prompt(s): {empty}")

    has_bos = bool(model.cfg.default_prepend_bos)
    sequences = [encode(model, text) for text in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(sequences[i]))
    acts = torch.empty((len(prompts), len(layers), model.cfg.d_model), dtype=torch.float32)
    slot_of = {layer: slot for slot, layer in enumerate(layers)}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    device = torch.device(model.cfg.device or "cpu")
    with torch.inference_mode():
        for rows in tqdm(batches, desc="collect residuals", disable=not show_progress):
            batch = pad_sequences(
                [sequences[i] for i in rows], pad_token_id=pad_id(model), padding_side=padding_side
            ).to(device)
            weights = _read_weights(batch, position, has_bos, [ids[i] for i in rows])
            index = torch.tensor(rows)
            hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
                (f"blocks.{layer}.hook_{point}", _reduce_hook(acts, index, slot_of[layer], weights))
                for layer in layers
            ]
            with model.hooks(fwd_hooks=hooks):
                model(
                    batch.tokens, attention_mask=batch.attention_mask, stop_at_layer=max(layers) + 1
                )

    return ResidualSet(
        acts=acts,
        layers=layers,
        ids=ids,
        langs=langs,
        hook_name=f"blocks.{{layer}}.hook_{point}",
        position=position_name,
        model_id=_model_id(model),
        groups=tuple(groups) if groups is not None else (),
    )


def _reduce_hook(
    out: Float[Tensor, "prompt layer d_model"],
    rows: Int[Tensor, " batch"],
    slot: int,
    weights: Float[Tensor, "batch pos"],
):
    """A hook that writes the weighted sum over positions of its activation into ``out``."""

    def hook(activation: Float[Tensor, "batch pos d_model"], hook) -> None:
        # Zero the unread positions first: padded positions must not leak in, even as NaN.
        kept = activation.masked_fill((weights == 0)[..., None], 0.0)
        reduced = torch.einsum("bp,bpd->bd", weights.to(activation.dtype), kept)
        out[rows, slot] = reduced.to("cpu", torch.float32)

    return hook
