"""Score the same options under many steerings at once, restarting from cached clean residuals.

The naive way runs one full forward (with full logits) per steering and batch of prompt+option
sequences. The fast way works on chunks of prompts whose options share them
(:mod:`.shared`): each chunk runs once, clean, caching ``blocks.{l}.hook_resid_post`` of the
prompts and of the option tokens at the layers where some steering starts; then every steering
restarts from the clean residuals of its first layer plus its vector (``start_at_layer``)
instead of recomputing the layers below, the prompts first and the options over the prompts'
new keys, and steerings that share a prefix of additions (the same EN vector at the same layer,
say) share the forward up to where they part. Steerings that end with different vectors at
the same layer (the alphas of a sweep) finish together, stacked along the batch. Logits are
computed at continuation positions only. Both ways give the same log-probs to float precision;
the tests hold them to 1e-4.

On every restart the attention mask is passed explicitly: TransformerLens does not rebuild it
when ``start_at_layer`` is set (SPEC §7).

:func:`score_steerings` is the one scoring entry point of lens_steer: unsteered scoring is the
steering ``None``. With ``method="auto"`` (the default) steerings the fast path cannot restart
(terms at other hook points or positions) are scored the naive way, in the same call.
:func:`lens_steer.evaluate.kl.next_token_kl` uses the same machinery for the KL divergence of
the next-token distribution on neutral prompts, the damage report of a dose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from lens_steer.evaluate.checkpoint import append_unit, open_checkpoint
from lens_steer.evaluate.restart import (
    Edits,
    LayerEdit,
    fast_path_problem,
    restart_finals,
    steering_edits,
)
from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringBatch,
    ScoringRequest,
    assemble_scores,
    prepare_batches,
    token_logprobs,
)
from lens_steer.evaluate.shared import (
    SharedBatch,
    SharedPrompt,
    shared_prompt_chunks,
    split_request,
)
from lens_steer.hooks import HookFn
from lens_steer.models import model_id

if TYPE_CHECKING:
    from lens_steer.steering import Steering

Method = Literal["auto", "fast", "naive"]

__all__ = [
    "Edits",
    "LayerEdit",
    "Method",
    "fast_path_problem",
    "score_steerings",
    "steering_edits",
]


def _fast_chunk(
    model: HookedTransformer, chunk: Sequence[SharedPrompt], settings: Mapping[str, Edits]
) -> dict[str, list[float]]:
    """Every steering's option log-probs for one chunk of prompts (chunk order)."""
    batch = SharedBatch.build(model, chunk)
    finished = restart_finals(model, batch, settings)
    # One unembedding for every steering's picked rows: W_U (671 MB for Gemma 3 270M) is read
    # once per few hundred rows instead of once per steering.
    rows = torch.cat([picked for _, picked in finished])
    n_rows = finished[0][1].shape[0]
    index = torch.cat([batch.picked_index + k * n_rows for k in range(len(finished))])
    values = token_logprobs(model, rows, batch.targets.repeat(len(finished)), index)
    out: dict[str, list[float]] = {}
    for (keys, _), token_values in zip(finished, values.split(len(batch.targets)), strict=True):
        summed = batch.sum_options(token_values)
        for key in keys:
            out[key] = summed
    return out


def _naive_hooks(steering: Steering | None, batch: ScoringBatch) -> list[tuple[str, HookFn]]:
    """The steering's hooks for a batch of left-padded prompt+option rows.

    A ``"prompt"`` term edits each row's prompt tokens and a ``"generated"`` term its option
    tokens (scoring an option is generating it). Prompt lengths differ between rows, so a
    per-row mask stands in for the single ``prompt_length`` of generation.
    """
    if steering is None:
        return []
    width = batch.tokens.tokens.shape[1]
    positions = torch.arange(width, device=batch.tokens.tokens.device)
    option_start = width - torch.tensor(batch.n_continuation, device=positions.device)[:, None]
    prompt_start = width - batch.tokens.lengths.to(positions.device)[:, None]
    masks = {
        "prompt": (positions >= prompt_start) & (positions < option_start),
        "generated": positions >= option_start,
    }
    hooks = []
    for term in steering.terms:
        if term.positions == "all":
            hooks.append((term.hook_name, term.hook()))
        else:
            everywhere = replace(term, positions="all").hook()
            hooks.append((term.hook_name, _only_at(everywhere, masks[term.positions])))
    return hooks


def _only_at(hook_fn: HookFn, mask: Tensor) -> HookFn:
    """``hook_fn``'s edit where the ``[batch, pos]`` mask is set, the activation elsewhere."""

    def restricted(activation: Tensor, hook: Any) -> Tensor:
        return torch.where(mask.unsqueeze(-1), hook_fn(activation, hook), activation)

    return restricted


def _naive_batch(
    model: HookedTransformer, batch: ScoringBatch, steerings: Mapping[str, Steering | None]
) -> dict[str, list[float]]:
    """One full forward with full logits per steering, hooks attached the ordinary way."""
    out = {}
    for key, steering in steerings.items():
        hooks: list[Any] = _naive_hooks(steering, batch)
        logits = model.run_with_hooks(
            batch.tokens.tokens, attention_mask=batch.tokens.attention_mask, fwd_hooks=hooks
        )
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs[batch.score_row, batch.score_pos, batch.score_target]
        summed = torch.zeros(len(batch.rows), dtype=picked.dtype, device=picked.device).index_add_(
            0, batch.score_row, picked
        )
        out[key] = summed.tolist()
    return out


def _checkpoint_settings(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
) -> dict[str, Any]:
    """Everything that changes the numbers (batch size does not: results are per request)."""

    def describe(steering: Steering | None) -> Any:
        if steering is None:
            return None
        return {"steering": steering.to_json()}

    return {
        "model_id": model_id(model),
        "model_shape": [model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab],
        "requests": [[r.id, r.prompt, list(r.options)] for r in requests],
        "steerings": {key: describe(steering) for key, steering in steerings.items()},
        "units": "requests",
    }


def restarts(model: Any) -> bool:
    """Whether the model can restart a forward from a layer (``start_at_layer``).

    A TransformerLens ``TransformerBridge`` cannot (3.9 raises NotImplementedError): its
    steerings are scored the naive way, one full hooked forward each (about 4-6x the cost of a
    restart on Gemma 3 270M, see notes/bridge.md), with the same numbers.
    """
    return isinstance(model, HookedTransformer)


def _split_by_path(
    model: Any, steerings: Mapping[str, Steering | None], method: Method
) -> tuple[dict[str, Steering | None], dict[str, Steering | None]]:
    if method == "naive":
        return {}, dict(steerings)
    if not restarts(model):
        if method == "fast":
            raise ValueError(
                f"{type(model).__name__} cannot restart a forward from a layer "
                "(start_at_layer); use method='auto' (naive for this model) or 'naive'"
            )
        return {}, dict(steerings)
    fast = {k: s for k, s in steerings.items() if fast_path_problem(s) is None}
    naive = {k: s for k, s in steerings.items() if k not in fast}
    if naive and method == "fast":
        key = next(iter(naive))
        raise ValueError(
            f"Steering {key!r}: {fast_path_problem(naive[key])}; use method='auto' or 'naive'"
        )
    return fast, naive


def _score_fast(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int,
    checkpoint: str | os.PathLike[str] | None,
    show_progress: bool,
) -> dict[str, list[OptionScores]]:
    settings = {key: steering_edits(model, steering) for key, steering in steerings.items()}
    done: dict[int, dict[str, list[float]]] = {}
    first_unit = 0
    if checkpoint is not None:
        recorded = open_checkpoint(checkpoint, _checkpoint_settings(model, requests, steerings))
        for payload in recorded.values():
            done.update({int(index): values for index, values in payload.items()})
        first_unit = max(recorded, default=-1) + 1
    remaining = [index for index in range(len(requests)) if index not in done]
    chunks = (
        shared_prompt_chunks(model, [requests[i] for i in remaining], batch_size=batch_size)
        if remaining
        else []
    )
    n_tokens: dict[int, tuple[int, ...]] = {}
    with torch.inference_mode():
        for unit, chunk in enumerate(
            tqdm(chunks, desc=f"scoring x{len(steerings)}", disable=not show_progress)
        ):
            values = _fast_chunk(model, chunk, settings)
            finished: dict[int, dict[str, list[float]]] = {}
            at = 0
            for item in chunk:
                n = len(item.continuations)
                index = remaining[item.index]
                finished[index] = {key: values[key][at : at + n] for key in steerings}
                n_tokens[index] = tuple(len(cont) for cont in item.continuations)
                at += n
            if checkpoint is not None:
                append_unit(checkpoint, first_unit + unit, {str(i): v for i, v in finished.items()})
            done.update(finished)
    for index in range(len(requests)):
        if index not in n_tokens:  # resumed: token counts need only the tokenizer
            n_tokens[index] = tuple(
                len(c) for c in split_request(model, requests[index], index).continuations
            )
    return {
        key: [
            OptionScores(request.id, tuple(done[index][key]), n_tokens[index])
            for index, request in enumerate(requests)
        ]
        for key in steerings
    }


def _score_naive(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int,
    show_progress: bool,
) -> dict[str, list[OptionScores]]:
    for steering in steerings.values():
        if steering is not None:
            steering.validate(model)
    batches = prepare_batches(model, requests, batch_size=batch_size)
    per_batch = []
    with torch.inference_mode():
        for batch in tqdm(
            batches, desc=f"naive scoring x{len(steerings)}", disable=not show_progress
        ):
            per_batch.append(_naive_batch(model, batch, steerings))
    return {
        key: assemble_scores(requests, batches, [values[key] for values in per_batch])
        for key in steerings
    }


def score_steerings(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
    *,
    method: Method = "auto",
    batch_size: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> dict[str, list[OptionScores]]:
    """Option log-probs of every request under every steering: lens_steer's one scoring entry.

    Args:
        model: the model.
        requests: prompts with their options.
        steerings: ``{key: steering}``; ``None`` (or a null steering) is the plain model.
        method: ``"auto"`` (fast where possible, naive for steerings the fast path cannot
            restart), ``"fast"`` (prompts shared by their options, cached clean residuals,
            restart per steering, logits at continuation positions only) or ``"naive"`` (one
            full hooked forward per steering: the reference the tests and benchmarks use).
        batch_size: prompts per chunk (fast) or prompt+option sequences per batch (naive).
        checkpoint: optional JSONL file (fast path); finished requests are recorded there and
            skipped when the call is repeated with the same requests and steerings (any batch
            size); a checkpoint of other settings is refused.
        show_progress: show a tqdm bar over batches.

    Returns:
        ``{key: [OptionScores per request]}``.

    Example:
        >>> out = score_steerings(model, requests, {"plain": None, "en@6": steering})  # doctest: +SKIP
        >>> out["en@6"][0].logprobs  # doctest: +SKIP
        (-1.2, -3.4)
    """
    if method not in ("auto", "fast", "naive"):
        raise ValueError(f"method must be 'auto', 'fast' or 'naive', got {method!r}")
    if not steerings:
        raise ValueError("score_steerings got no steerings")
    if not requests:
        raise ValueError("score_steerings got no requests")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fast, naive = _split_by_path(model, steerings, method)
    if checkpoint is not None and naive:
        raise ValueError("checkpoints are kept by the fast path only; drop the checkpoint")
    out: dict[str, list[OptionScores]] = {}
    if fast:
        out.update(
            _score_fast(
                model,
                requests,
                fast,
                batch_size=batch_size,
                checkpoint=checkpoint,
                show_progress=show_progress,
            )  # fmt: skip
        )
    if naive:
        out.update(
            _score_naive(model, requests, naive, batch_size=batch_size, show_progress=show_progress)
        )
    return {key: out[key] for key in steerings}
