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
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
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
    prepare_batches,
    token_logprobs,
)
from lens_steer.evaluate.shared import (
    PromptState,
    SharedBatch,
    SharedPrompt,
    assemble_shared,
    shared_prompt_chunks,
)
from lens_steer.models import model_id

if TYPE_CHECKING:
    from lens_steer.steering import Steering

Method = Literal["fast", "naive"]

_MAX_TILED_PROMPTS = 64
"""Prompt rows per tiled forward (steerings of one layer stacked along the batch)."""
Additions = tuple[tuple[int, Tensor], ...]
"""A steering as ``((layer, summed vector added at its resid_post), ...)``, layers ascending."""

_Emit = Callable[[list[str], PromptState], None]


def steering_additions(model: HookedTransformer, steering: Steering | None) -> Additions:
    """The steering as per-layer additions at resid_post, for the fast path.

    The fast path restarts from ``resid_post`` and adds at every position, so it accepts only
    terms with ``point="resid_post"`` and ``positions="all"``; others are refused (use
    ``method="naive"`` for them).
    """
    if steering is None or steering.is_null:
        return ()
    steering.validate(model)
    summed: dict[int, Tensor] = {}
    for term in steering.terms:
        if term.point != "resid_post" or term.positions != "all":
            raise ValueError(
                f"Steering {steering.label!r}: the fast path needs point='resid_post' and "
                f"positions='all' (term {term.name!r} at layer {term.layer} has point="
                f"{term.point!r}, positions={term.positions!r}); use method='naive'"
            )
        vector = term.effective_vector().to(model.W_U.device, model.W_U.dtype)
        summed[term.layer] = summed[term.layer] + vector if term.layer in summed else vector
    return tuple(sorted(summed.items(), key=lambda pair: pair[0]))


def _digest(vector: Tensor) -> str:
    return hashlib.sha256(vector.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _add(state: PromptState, vector: Tensor) -> PromptState:
    """Add a steering vector at every position of both parts (``positions="all"``)."""
    prompts, options = state
    return prompts + vector, None if options is None else options + vector


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
    group: list[tuple[str, Additions]],
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
        by_vector: dict[str, list[tuple[str, Additions]]] = defaultdict(list)
        vectors: dict[str, Tensor] = {}
        for key, rest in pending:
            if rest[0][0] == next_layer:
                digest = _digest(rest[0][1])
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


def _fast_chunk(
    model: HookedTransformer, chunk: Sequence[SharedPrompt], settings: Mapping[str, Additions]
) -> dict[str, list[float]]:
    """Every steering's option log-probs for one chunk of prompts (chunk order)."""
    batch = SharedBatch.build(model, chunk)
    clean = batch.clean_states(model, [adds[0][0] for adds in settings.values() if adds])
    finished: list[tuple[list[str], Tensor]] = []

    def emit(keys: list[str], final: PromptState) -> None:
        finished.append((keys, batch.picked(final)))

    _descend(model, batch, None, -1, list(settings.items()), emit, clean)
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
    batch_size: int,
    method: Method,
) -> dict[str, Any]:
    def describe(steering: Steering | None) -> Any:
        if steering is None:
            return None
        vectors = [_digest(term.effective_vector()) for term in steering.terms]
        return {"steering": steering.to_json(), "vectors": vectors}

    return {
        "model_id": model_id(model),
        "model_shape": [model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab],
        "requests": [[r.id, r.prompt, list(r.options)] for r in requests],
        "steerings": {key: describe(steering) for key, steering in steerings.items()},
        "batch_size": batch_size,
        "method": method,
        "units": "prompt chunks" if method == "fast" else "prompt+option batches",
    }


def score_steerings(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
    *,
    method: Method = "fast",
    batch_size: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> dict[str, list[OptionScores]]:
    """Option log-probs of every request under every steering.

    Args:
        model: the model.
        requests: prompts with their options.
        steerings: ``{key: steering}``; ``None`` (or a null steering) is the plain model.
        method: ``"fast"`` (prompts shared by their options, cached clean residuals, restart
            per steering, logits at continuation positions only) or ``"naive"`` (one full
            hooked forward per steering).
        batch_size: prompts per chunk (fast) or prompt+option sequences per batch (naive).
        checkpoint: optional JSONL file; finished chunks/batches are recorded there and
            skipped when the call is repeated with the same settings (others are refused).
        show_progress: show a tqdm bar over batches.

    Returns:
        ``{key: [OptionScores per request]}``.

    Example:
        >>> out = score_steerings(model, requests, {"plain": None, "en@6": steering})  # doctest: +SKIP
        >>> out["en@6"][0].logprobs  # doctest: +SKIP
        (-1.2, -3.4)
    """
    if method not in ("fast", "naive"):
        raise ValueError(f"method must be 'fast' or 'naive', got {method!r}")
    if not steerings:
        raise ValueError("score_steerings got no steerings")
    settings = {key: steering_additions(model, steering) for key, steering in steerings.items()}
    if method == "naive":  # validate the same way, even though hooks do the work
        for steering in steerings.values():
            if steering is not None:
                steering.validate(model)
    units: Sequence[Any] = (
        shared_prompt_chunks(model, requests, batch_size=batch_size)
        if method == "fast"
        else prepare_batches(model, requests, batch_size=batch_size)
    )
    done: dict[int, Any] = {}
    if checkpoint is not None:
        done = open_checkpoint(
            checkpoint, _checkpoint_settings(model, requests, steerings, batch_size, method)
        )
    per_unit: list[dict[str, list[float]]] = []
    with torch.inference_mode():
        for index, unit in enumerate(
            tqdm(units, desc=f"{method} scoring x{len(steerings)}", disable=not show_progress)
        ):
            if index in done:
                per_unit.append(done[index])
                continue
            if method == "fast":
                values = _fast_chunk(model, unit, settings)
            else:
                values = _naive_batch(model, unit, steerings)
            if checkpoint is not None:
                append_unit(checkpoint, index, values)
            per_unit.append(values)
    assemble = assemble_shared if method == "fast" else assemble_scores
    return {
        key: assemble(requests, units, [values[key] for values in per_unit]) for key in steerings
    }
