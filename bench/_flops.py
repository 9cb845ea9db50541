"""The forward FLOPs each side must do: the ceiling on a speed-up that skips work.

A forward costs, per token, about ``2 x params`` multiply-adds' worth of FLOPs for each block it
runs plus ``2 x d_model x d_vocab`` for each position it unembeds (Gemma 3 270M: 11.1 MFLOP per
block, 335.5 MFLOP for the unembedding, so the unembedding is 63% of a full forward). Attention
scores (``T x d_head`` per head and token) add about 1% at these lengths and are left out, as are
norms, softmaxes and the naive side's ``log_softmax`` over the whole vocabulary: the ceilings
are what skipping layers and logits alone can buy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformer_lens import HookedTransformer

from lens_steer.evaluate.scoring import ScoringBatch
from lens_steer.evaluate.shared import SharedPrompt


@dataclass(frozen=True)
class FlopModel:
    """Per-token FLOPs of one block and of the unembedding of one position."""

    n_layers: int
    block: float
    unembed: float

    @classmethod
    def from_model(cls, model: HookedTransformer) -> FlopModel:
        """Count the weight matrices of block 0 and of ``W_U`` (2 FLOPs per weight and token)."""
        block_weights = sum(
            p.numel()
            for name, p in model.blocks[0].named_parameters()
            if "W_" in name.rsplit(".", 1)[-1]  # W_Q, _W_K (grouped-query), W_in...; no biases
        )
        return cls(model.cfg.n_layers, 2.0 * block_weights, 2.0 * model.W_U.numel())

    def forward(self, tokens: int, blocks: int, unembedded: int) -> float:
        """FLOPs of running ``blocks`` blocks over ``tokens`` tokens and unembedding ``unembedded``."""
        return tokens * blocks * self.block + unembedded * self.unembed


def _tokens(batch: ScoringBatch) -> int:
    return int(batch.tokens.tokens.numel())  # padded positions are computed too


def collect_ceiling(flops: FlopModel) -> float:
    """Full forward with logits over a forward that stops after the last block."""
    full = flops.forward(1, flops.n_layers, 1)
    return full / flops.forward(1, flops.n_layers, 0)


def _shared_work(chunk: Sequence[SharedPrompt]) -> tuple[int, int]:
    """Positions one pass over a prompt chunk computes, and the continuation tokens it unembeds.

    The chunk's left-padded prompts, then the options of two or more tokens over their tokens
    but the last (right-padded).
    """
    prompt_tokens = len(chunk) * max(len(item.prompt) for item in chunk)
    rests = [len(cont) - 1 for item in chunk for cont in item.continuations if len(cont) > 1]
    unembedded = sum(len(cont) for item in chunk for cont in item.continuations)
    return prompt_tokens + len(rests) * max(rests, default=0), unembedded


def shared_scoring_ceiling(
    flops: FlopModel, batches: Sequence[ScoringBatch], chunks: Sequence[Sequence[SharedPrompt]]
) -> float:
    """Full logits of every concatenated sequence over each prompt run once for its options."""
    naive = sum(flops.forward(_tokens(b), flops.n_layers, _tokens(b)) for b in batches)
    ours = 0.0
    for chunk in chunks:
        tokens, unembedded = _shared_work(chunk)
        ours += flops.forward(tokens, flops.n_layers, unembedded)
    return naive / ours


def sweep_ceiling(
    flops: FlopModel,
    batches: Sequence[ScoringBatch],
    chunks: Sequence[Sequence[SharedPrompt]],
    start_layers: Sequence[int | None],
) -> float:
    """A full forward per steering over one clean pass plus, per steering, the blocks above it.

    Args:
        flops: the model's FLOP counts.
        batches: the naive side's prompt+option batches.
        chunks: our side's prompt chunks (each prompt run once for its options).
        start_layers: the layer each steering adds at (``None``: the unsteered model).
    """
    naive = sum(
        len(start_layers) * flops.forward(_tokens(b), flops.n_layers, _tokens(b)) for b in batches
    )
    ours = 0.0
    for chunk in chunks:
        tokens, unembedded = _shared_work(chunk)
        ours += flops.forward(tokens, flops.n_layers, 0)  # the clean pass, cached
        for layer in start_layers:
            above = 0 if layer is None else flops.n_layers - 1 - layer
            ours += flops.forward(tokens, above, unembedded)
    return naive / ours
