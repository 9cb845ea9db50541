"""Option scoring: ``score_steerings`` (unsteered) against full forwards with full logits.

Both sides score the same prompt+option sequences in the same left-padded batches (from
``lens_steer.evaluate.scoring.prepare_batches``). The naive side computes the logits of every
position over the whole 262k-token vocabulary, takes ``log_softmax`` of all of them, and sums each
row's continuation tokens, which sit at the end of the row (left padding). Ours (lens_steer's one
scoring entry point, ``score_steerings`` with the steering ``None``) runs each prompt once into a
KV cache, reruns only the tokens of options longer than one token on it, and unembeds only the
continuation positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformer_lens import HookedTransformer

from bench._config import FULL, Sizes
from bench._data import bench_probe_set, plane_requests, plane_selection
from bench._flops import FlopModel, shared_scoring_ceiling, sweep_ceiling
from bench._timing import Timed, alternate, speedup, timings_json
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringBatch,
    ScoringRequest,
    assemble_scores,
    prepare_batches,
)
from lens_steer.evaluate.shared import shared_prompt_chunks

FwdHooks = Sequence[tuple[str, Callable[..., Any]]]


@torch.inference_mode()
def naive_batch_logprobs(
    model: HookedTransformer, batch: ScoringBatch, fwd_hooks: FwdHooks = ()
) -> list[float]:
    """Summed continuation log-probs of each row from one full forward with full logits."""
    tokens = batch.tokens.tokens
    logits = model.run_with_hooks(
        tokens, attention_mask=batch.tokens.attention_mask, fwd_hooks=list(fwd_hooks)
    )
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    width = tokens.shape[1]
    values = []
    for row, n_cont in enumerate(batch.n_continuation):
        # The continuation is the row's last n_cont tokens; position p predicts token p + 1.
        targets = tokens[row, width - n_cont :]
        predicted = logprobs[row, width - n_cont - 1 : width - 1]
        values.append(float(predicted.gather(-1, targets[:, None]).sum()))
    return values


def naive_scores(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int,
    fwd_hooks: FwdHooks = (),
) -> list[OptionScores]:
    """Option log-probs the naive way (full logits), in request order."""
    batches = prepare_batches(model, requests, batch_size=batch_size)
    values = [naive_batch_logprobs(model, batch, fwd_hooks) for batch in batches]
    return assemble_scores(requests, batches, values)


def max_abs_diff(a: Sequence[OptionScores], b: Sequence[OptionScores]) -> float:
    """Largest absolute difference between two scorings of the same requests."""
    return max(
        abs(x - y)
        for left, right in zip(a, b, strict=True)
        for x, y in zip(left.logprobs, right.logprobs, strict=True)
    )


def logprob_comparison(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    timed: Mapping[str, Timed],
    diff: float,
    *,
    batch_size: int,
    start_layers: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """The result of a naive-vs-ours log-prob comparison: speed-up, difference, sizes, times.

    ``start_layers`` (one per steering, ``None`` for the unsteered model) makes the FLOP
    ceiling that of a sweep; without it, that of scoring with shared prompts.
    """
    batches = prepare_batches(model, requests, batch_size=batch_size)
    chunks = shared_prompt_chunks(model, requests, batch_size=batch_size)
    flops = FlopModel.from_model(model)
    sizes = {
        "n_sequences": sum(len(batch.rows) for batch in batches),
        "n_batches": len(batches),
        "max_tokens": max(batch.tokens.tokens.shape[1] for batch in batches),
        "batch_size": batch_size,
        "max_abs_diff": diff,
        "flop_ceiling": shared_scoring_ceiling(flops, batches, chunks)
        if start_layers is None
        else sweep_ceiling(flops, batches, chunks, start_layers),
    }
    return {
        "speedup": speedup(timed["naive"], timed["ours"]),
        "max_abs_diff": diff,
        "details": timings_json(timed, ("naive", "ours")) | sizes,
    }


def bench_requests(sizes: Sizes) -> tuple[list[ScoringRequest], dict[str, Any]]:
    """Transfer and localization requests of ``sizes.lang`` (all splits), and their source."""
    probe, source = bench_probe_set(sizes)
    transfer, localization = plane_selection(
        probe, sizes.lang, sizes.scoring_transfer, sizes.scoring_localization, split=None
    )
    return plane_requests(transfer, localization), source


def run(model: HookedTransformer, sizes: Sizes = FULL, *, repeats: int = 3) -> dict[str, Any]:
    """Time both sides (alternating) and check they give the same log-probs.

    Returns:
        ``{"speedup", "max_abs_diff", "details"}``.
    """
    requests, source = bench_requests(sizes)
    batch_size = sizes.batch_size
    timed = alternate(
        {
            "naive": lambda: naive_scores(model, requests, batch_size=batch_size),
            "ours": lambda: score_steerings(
                model, requests, {"plain": None}, batch_size=batch_size, show_progress=False
            )["plain"],
        },
        repeats,
    )
    diff = max_abs_diff(timed["naive"].last, timed["ours"].last)
    out = logprob_comparison(model, requests, timed, diff, batch_size=batch_size)
    out["details"] |= {"lang": sizes.lang, "n_requests": len(requests), "data": source}
    return out
