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
:func:`next_token_kl` uses the same machinery for the KL divergence of the next-token
distribution on neutral prompts, the damage report of a dose.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from lens_steer.evaluate.checkpoint import append_unit, open_checkpoint
from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringBatch,
    ScoringRequest,
    assemble_scores,
    final_logits,
    prepare_batches,
    token_logprobs,
)
from lens_steer.evaluate.shared import (
    PromptState,
    SharedBatch,
    SharedPrompt,
    shared_prompt_chunks,
    split_request,
)
from lens_steer.models import model_id
from lens_steer.tokens import encode, pad_id

if TYPE_CHECKING:
    from lens_steer.steering import Steering

Method = Literal["auto", "fast", "naive"]

_MAX_TILED_PROMPTS = 64
"""Prompt rows per tiled forward (steerings of one layer stacked along the batch)."""


@dataclass(frozen=True)
class LayerEdit:
    """What a steering does to ``resid_post`` of one layer: adds and direction scalings, in order.

    Consecutive additions are summed into one vector; ``key`` identifies the edit, so
    steerings that make the same edit at the same layer share the forward up to there.
    """

    steps: tuple[tuple[str, Tensor, float], ...]
    key: str

    def __call__(self, x: Tensor) -> Tensor:
        for op, vector, factor in self.steps:
            if op == "add":
                x = x + vector
            else:  # scale the component along the unit vector
                x = x + (factor - 1.0) * (x @ vector).unsqueeze(-1) * vector
        return x


Edits = tuple[tuple[int, LayerEdit], ...]
"""A steering as ``((layer, edit of its resid_post), ...)``, layers ascending."""

_Emit = Callable[[list[str], PromptState], None]


def fast_path_problem(steering: Steering | None) -> str | None:
    """Why the fast path cannot score this steering (``None`` when it can)."""
    if steering is None:
        return None
    for term in steering.terms:
        if term.point != "resid_post" or term.positions != "all":
            return (
                f"term {term.name!r} at layer {term.layer} has point={term.point!r}, "
                f"positions={term.positions!r} (the fast path restarts from resid_post and "
                "edits every position)"
            )
    return None


def steering_edits(model: HookedTransformer, steering: Steering | None) -> Edits:
    """The steering as per-layer edits of resid_post, for the fast path."""
    if steering is None or steering.is_null:
        return ()
    steering.validate(model)
    problem = fast_path_problem(steering)
    if problem is not None:
        raise ValueError(f"Steering {steering.label!r}: {problem}; use method='naive' or 'auto'")
    device, dtype = model.W_U.device, model.W_U.dtype
    by_layer: dict[int, list[tuple[str, Tensor, float]]] = defaultdict(list)
    for term in steering.terms:
        steps = by_layer[term.layer]
        if term.operation == "add":
            vector = term.effective_vector().to(device, dtype)
            if steps and steps[-1][0] == "add":
                steps[-1] = ("add", steps[-1][1] + vector, 1.0)
            else:
                steps.append(("add", vector, 1.0))
        else:
            unit = (term.vector.double() / term.vector.double().norm()).to(device, dtype)
            factor = 0.0 if term.operation == "project_out" else term.alpha
            steps.append(("scale", unit, factor))
    edits = []
    for layer in sorted(by_layer):
        frozen = tuple(by_layer[layer])
        key = hashlib.sha256(
            b"".join(
                op.encode() + repr(factor).encode() + _bytes(vector)
                for op, vector, factor in frozen
            )
        ).hexdigest()[:16]
        edits.append((layer, LayerEdit(frozen, key)))
    return tuple(edits)


def _bytes(vector: Tensor) -> bytes:
    return vector.detach().cpu().contiguous().numpy().tobytes()


def _add(state: PromptState, edit: LayerEdit) -> PromptState:
    """Apply a layer's edit at every position of both parts (``positions="all"``)."""
    prompts, options = state
    return edit(prompts), None if options is None else edit(options)


def _advance(
    model: HookedTransformer,
    batch: SharedBatch,
    state: PromptState | None,
    layer: int,
    target: int,
    clean: Mapping[int, PromptState] | None,
) -> PromptState:
    """``resid_post`` of block ``target`` from ``resid_post`` of block ``layer``.

    At the root (nothing added yet) the clean run has cached it; below, the blocks run.
    """
    if clean is not None:
        return clean[target]
    assert state is not None
    return batch.run(model, state, layer + 1, target + 1)


def _descend(
    model: HookedTransformer,
    batch: SharedBatch,
    state: PromptState | None,
    layer: int,
    group: list[tuple[str, Edits]],
    emit: _Emit,
    clean: Mapping[int, PromptState] | None = None,
) -> None:
    """Finish every steering of ``group`` from ``state`` (resid_post of ``layer``, edits applied).

    ``group`` holds each steering's remaining additions (all at layers above ``layer``).
    Steerings with nothing left share one forward to the end; the others share the forward up
    to their next addition, then split by vector. The root call (``clean`` given, ``layer``
    -1) reads the clean residuals from the cache instead of running blocks.
    """
    last = model.cfg.n_layers - 1
    finished = [key for key, rest in group if not rest]
    if finished:
        emit(finished, _advance(model, batch, state, layer, last, clean))
    pending = [(key, rest) for key, rest in group if rest]
    current, at = state, layer
    for next_layer in sorted({rest[0][0] for _, rest in pending}):
        current = _advance(model, batch, current, at, next_layer, clean)
        at = next_layer
        by_vector: dict[str, list[tuple[str, Edits]]] = defaultdict(list)
        vectors: dict[str, LayerEdit] = {}
        for key, rest in pending:
            if rest[0][0] == next_layer:
                digest = rest[0][1].key
                vectors[digest] = rest[0][1]
                by_vector[digest].append((key, rest[1:]))
        # Vectors after which every steering is done run to the end together, tiled.
        ending = [d for d, sub in by_vector.items() if all(not rest for _, rest in sub)]
        tile = max(1, _MAX_TILED_PROMPTS // len(batch))
        for first in range(0, len(ending), tile):
            digests = ending[first : first + tile]
            states = [_add(current, vectors[digest]) for digest in digests]
            finals = batch.run_tiled(model, states, next_layer + 1, last + 1)
            for digest, final in zip(digests, finals, strict=True):
                emit([key for key, _ in by_vector[digest]], final)
        for digest, subgroup in by_vector.items():
            if digest not in ending:
                _descend(model, batch, _add(current, vectors[digest]), next_layer, subgroup, emit)


def _finals(
    model: HookedTransformer, batch: SharedBatch, settings: Mapping[str, Edits]
) -> list[tuple[list[str], Tensor]]:
    """Every steering's picked final residuals for one chunk: ``[(keys, rows), ...]``."""
    clean = batch.clean_states(model, [edits[0][0] for edits in settings.values() if edits])
    finished: list[tuple[list[str], Tensor]] = []

    def emit(keys: list[str], final: PromptState) -> None:
        finished.append((keys, batch.picked(final)))

    _descend(model, batch, None, -1, list(settings.items()), emit, clean)
    return finished


def _fast_chunk(
    model: HookedTransformer, chunk: Sequence[SharedPrompt], settings: Mapping[str, Edits]
) -> dict[str, list[float]]:
    """Every steering's option log-probs for one chunk of prompts (chunk order)."""
    batch = SharedBatch.build(model, chunk)
    finished = _finals(model, batch, settings)
    # One unembedding for every steering's picked rows: W_U (671 MB for Gemma 3 270M) is read
    # once per few hundred rows instead of once per steering.
    rows = torch.cat([picked for _, picked in finished])
    values = token_logprobs(model, rows, batch.targets.repeat(len(finished)))
    out: dict[str, list[float]] = {}
    for (keys, _), token_values in zip(finished, values.split(len(batch.targets)), strict=True):
        summed = batch.sum_options(token_values)
        for key in keys:
            out[key] = summed
    return out


def _naive_batch(
    model: HookedTransformer, batch: ScoringBatch, steerings: Mapping[str, Steering | None]
) -> dict[str, list[float]]:
    """One full forward with full logits per steering, hooks attached the ordinary way."""
    out = {}
    for key, steering in steerings.items():
        hooks: list[Any] = [] if steering is None else list(steering.fwd_hooks())
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


def _split_by_path(
    steerings: Mapping[str, Steering | None], method: Method
) -> tuple[dict[str, Steering | None], dict[str, Steering | None]]:
    if method == "naive":
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
    fast, naive = _split_by_path(steerings, method)
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


def next_token_kl(
    model: HookedTransformer,
    prompts: Sequence[str],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int = 16,
    show_progress: bool = False,
) -> dict[str, list[float]]:
    """KL(unsteered || steered) of the next-token distribution after each prompt, per steering.

    The cost report of a dose: steering that moves the next-token distribution of neutral
    text far is damage, whatever it does to the options being scored. Uses the fast path
    (steerings it cannot restart are refused).

    Example:
        >>> next_token_kl(model, ["The weather is"], {"en@6": steering})["en@6"]  # doctest: +SKIP
        [0.031]
    """
    if not prompts:
        raise ValueError("next_token_kl got no prompts")
    settings = {key: steering_edits(model, steering) for key, steering in steerings.items()}
    dummy = [pad_id(model)]  # one placeholder continuation: picked() is then the last position
    items = [SharedPrompt(i, encode(model, text), [dummy]) for i, text in enumerate(prompts)]
    items.sort(key=lambda item: (-len(item.prompt), item.index))
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    out: dict[str, list[float]] = {key: [0.0] * len(prompts) for key in steerings}
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc="next-token KL", disable=not show_progress):
            batch = SharedBatch.build(model, chunk)
            clean = batch.clean_states(model, [])[model.cfg.n_layers - 1]
            reference = torch.log_softmax(final_logits(model, batch.picked(clean)).float(), -1)
            for keys, rows in _finals(model, batch, settings):
                steered = torch.log_softmax(final_logits(model, rows).float(), -1)
                kl = (reference.exp() * (reference - steered)).sum(-1).clamp_min(0.0)
                for key in keys:
                    for item, value in zip(chunk, kl.tolist(), strict=True):
                        out[key][item.index] = float(value)
    return out
