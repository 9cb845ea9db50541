"""Score answer options by their continuation log-probability, computing logits only where needed.

A scoring request is a prompt and its candidate continuations. Prompt and continuation are
tokenized separately (prompt with BOS, continuation without) and concatenated, so every option
of an item shares the prompt's tokens exactly (the lm-eval-harness convention). All options of
all requests are sorted by length and run in left-padded batches with an attention mask, to the
final residual only: the 262k-token unembedding is applied at the continuation positions alone,
with a plain matmul (``model.unembed`` copies ``W_U.T`` on every call; SPEC §7).

These batches are the naive reference path of :func:`lens_steer.evaluate.engine.score_steerings`
(one full hooked forward per steering), which the tests and benchmarks hold the fast path to;
:mod:`lens_steer.evaluate.shared` runs each prompt once for all of its options instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer.tokens import TokenBatch, encode, pad_id, pad_sequences

_UNEMBED_CHUNK = 256  # continuation rows per unembedding matmul (262k logits each)


@dataclass(frozen=True)
class ScoringRequest:
    """One item to score: a prompt and the continuation strings of its options."""

    prompt: str
    options: tuple[str, ...]
    id: str = ""


@dataclass(frozen=True)
class OptionScores:
    """Summed continuation log-probabilities (natural log) of one request's options."""

    id: str
    logprobs: tuple[float, ...]
    n_tokens: tuple[int, ...]

    def values(self, normalize: bool = False) -> np.ndarray:
        """The options' scores: summed log-prob, or mean per token when ``normalize``."""
        summed = np.asarray(self.logprobs, dtype=np.float64)
        if not normalize:
            return summed
        return summed / np.asarray(self.n_tokens, dtype=np.float64)


@dataclass(frozen=True)
class ScoringBatch:
    """Left-padded prompt+option sequences and where their continuation tokens sit.

    ``rows[r] = (request index, option index)``. The flat ``score_*`` tensors list every
    continuation token of the batch: the row it belongs to, the position whose logits predict
    it, and its id.
    """

    tokens: TokenBatch
    rows: tuple[tuple[int, int], ...]
    n_continuation: tuple[int, ...]
    score_row: Int[Tensor, " token"]
    score_pos: Int[Tensor, " token"]
    score_target: Int[Tensor, " token"]


def encode_request(
    model: HookedTransformer, request: ScoringRequest, index: int
) -> list[tuple[list[int], int]]:
    name = request.id or f"request {index}"
    if not request.prompt:
        raise ValueError(f"{name}: empty prompt")
    if not request.options:
        raise ValueError(f"{name}: no options to score")
    prompt_ids = encode(model, request.prompt)
    encoded = []
    for option_index, option in enumerate(request.options):
        continuation = encode(model, option, prepend_bos=False)
        if not continuation:
            raise ValueError(
                f"{name}: option {option_index} ({option!r}) tokenizes to nothing; "
                "an option needs at least one token to be scored"
            )
        ids = prompt_ids + continuation
        if len(ids) > model.cfg.n_ctx:
            raise ValueError(
                f"{name}: option {option_index} needs {len(ids)} tokens, more than the model's "
                f"context of {model.cfg.n_ctx}"
            )
        encoded.append((ids, len(continuation)))
    return encoded


def prepare_batches(
    model: HookedTransformer, requests: Sequence[ScoringRequest], *, batch_size: int = 16
) -> list[ScoringBatch]:
    """Tokenize every option of every request and group them, longest first, into batches.

    Args:
        model: supplies the tokenizer, BOS convention and device.
        requests: prompts with their options.
        batch_size: sequences per batch.

    Example:
        >>> batches = prepare_batches(model, [ScoringRequest("2+2=", (" 4", " 5"))])  # doctest: +SKIP
        >>> batches[0].rows  # doctest: +SKIP
        ((0, 0), (0, 1))
    """
    if not requests:
        raise ValueError("No scoring requests given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sequences: list[tuple[int, int, list[int], int]] = []
    for request_index, request in enumerate(requests):
        for option_index, (ids, n_cont) in enumerate(encode_request(model, request, request_index)):
            sequences.append((request_index, option_index, ids, n_cont))
    # Longest first: similar lengths share a batch (little padding) and the peak comes early.
    sequences.sort(key=lambda seq: (-len(seq[2]), seq[0], seq[1]))
    padding = pad_id(model)
    device = model.W_U.device
    batches = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        tokens = pad_sequences([seq[2] for seq in chunk], pad_token_id=padding).to(device)
        width = tokens.tokens.shape[1]
        score_row, score_pos, score_target = [], [], []
        for row, (_, _, ids, n_cont) in enumerate(chunk):
            # Left padding: the sequence ends at width-1; logits at p predict the token at p+1.
            first = width - n_cont
            for pos in range(first, width):
                score_row.append(row)
                score_pos.append(pos - 1)
                score_target.append(ids[pos - width + len(ids)])

        batches.append(
            ScoringBatch(
                tokens=tokens,
                rows=tuple((seq[0], seq[1]) for seq in chunk),
                n_continuation=tuple(seq[3] for seq in chunk),
                score_row=torch.tensor(score_row, dtype=torch.long, device=device),
                score_pos=torch.tensor(score_pos, dtype=torch.long, device=device),
                score_target=torch.tensor(score_target, dtype=torch.long, device=device),
            )
        )
    return batches


def final_logits(
    model: HookedTransformer, resid: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_vocab"]:
    """Logits from final residuals: ``ln_final``, plain ``@ W_U + b_U``, output softcap."""
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    logits = resid @ model.W_U + model.b_U
    cap = model.cfg.output_logits_soft_cap
    if cap is not None and cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def token_logprobs(
    model: HookedTransformer,
    resid: Float[Tensor, "row d_model"],
    targets: Int[Tensor, " token"],
    index: Int[Tensor, " token"] | None = None,
) -> Float[Tensor, " token"]:
    """Log-probability of ``targets[i]`` under the logits of final residual ``resid[index[i]]``.

    ``index`` lets several targets share one row (every option of a prompt predicts its first
    token from the prompt's last position): each row is unembedded once. Without it, row ``i``
    predicts ``targets[i]``. The unembedding runs in chunks of rows so that at most a few
    hundred 262k-wide logit rows exist at once.
    """
    if index is None:
        index = torch.arange(len(targets), device=targets.device)
    out = torch.empty(len(targets), dtype=torch.float32, device=targets.device)
    for start in range(0, resid.shape[0], _UNEMBED_CHUNK):
        # log_softmax, not logits - logsumexp: on CPU it is about 8x faster over 262k columns
        logprobs = torch.log_softmax(
            final_logits(model, resid[start : start + _UNEMBED_CHUNK]).float(), -1
        )
        chosen = ((index >= start) & (index < start + _UNEMBED_CHUNK)).nonzero().flatten()
        local = index[chosen] - start
        out[chosen] = logprobs[local, targets[chosen]]
    return out


def assemble_scores(
    requests: Sequence[ScoringRequest],
    batches: Sequence[ScoringBatch],
    batch_logprobs: Iterable[Sequence[float]],
) -> list[OptionScores]:
    """Put per-batch row log-probs back into request order as :class:`OptionScores`."""
    logprobs = [[0.0] * len(request.options) for request in requests]
    n_tokens = [[0] * len(request.options) for request in requests]
    for batch, values in zip(batches, batch_logprobs, strict=True):
        for (request_index, option_index), n_cont, value in zip(
            batch.rows, batch.n_continuation, values, strict=True
        ):
            logprobs[request_index][option_index] = float(value)
            n_tokens[request_index][option_index] = n_cont
    return [
        OptionScores(request.id, tuple(values), tuple(counts))
        for request, values, counts in zip(requests, logprobs, n_tokens, strict=True)
    ]
