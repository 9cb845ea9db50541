"""Collect the residual stream of many prompts at chosen layers, one vector per prompt and layer.

Only what is asked is kept: a hook on each needed ``blocks.{layer}.hook_resid_post`` reduces the
activation to the read position inside the forward pass, the pass stops after the last needed
layer, and the unembedding is never computed. Memory is O(prompts x layers x d_model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypedDict

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from lens_steer.models import model_id as _model_id
from lens_steer.residuals import ReadPosition, ResidualSet
from lens_steer.tokens import PaddingSide, TokenBatch, encode, pad_id, pad_sequences

ResidPoint = Literal["resid_pre", "resid_mid", "resid_post"]


class CollectOptions(TypedDict, total=False):
    """Keyword options of :func:`collect_residuals` that callers pass through unchanged."""

    layers: Sequence[int] | None
    position: ReadPosition
    batch_size: int
    point: ResidPoint
    show_progress: bool


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
