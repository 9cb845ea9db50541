"""Turn texts into padded token batches the same way everywhere in lens_steer.

Every module that runs the model tokenizes through here, so BOS handling and padding are
decided once: BOS is prepended when the model expects it, and batches are left-padded with an
attention mask by default (the last real token is then at position -1 for every row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

PaddingSide = Literal["left", "right"]


@dataclass(frozen=True)
class TokenBatch:
    """Padded token ids, their attention mask, and each row's real length."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    padding_side: PaddingSide

    def last_index(self) -> Int[Tensor, " batch"]:
        """Position of each row's last real token."""
        if self.padding_side == "left":
            return torch.full_like(self.lengths, self.tokens.shape[1] - 1)
        return self.lengths - 1

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.tokens.to(device),
            self.attention_mask.to(device),
            self.lengths.to(device),
            self.padding_side,
        )


def _tokenizer(model: HookedTransformer):
    if model.tokenizer is None:
        raise ValueError("The model has no tokenizer; load it with lens_steer.load_model")
    return model.tokenizer


def encode(model: HookedTransformer, text: str, *, prepend_bos: bool | None = None) -> list[int]:
    """Token ids of one text, with BOS first when the model expects it (``cfg.default_prepend_bos``).

    Special tokens are never added by the tokenizer itself, so the result does not depend on
    the tokenizer's ``add_bos_token`` setting.
    """
    tokenizer = _tokenizer(model)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    if bos:
        if tokenizer.bos_token_id is None:
            raise ValueError(f"{model.cfg.model_name}: tokenizer has no BOS token")
        ids = [int(tokenizer.bos_token_id)] + ids
    return ids


def pad_id(model: HookedTransformer) -> int:
    tokenizer = _tokenizer(model)
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def pad_sequences(
    sequences: Sequence[Sequence[int]], *, pad_token_id: int, padding_side: PaddingSide = "left"
) -> TokenBatch:
    """Pad token-id lists into one batch with an attention mask."""
    if not sequences:
        raise ValueError("Cannot pad an empty list of sequences")
    if any(len(seq) == 0 for seq in sequences):
        raise ValueError("Cannot pad an empty token sequence")
    width = max(len(seq) for seq in sequences)
    tokens = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids = torch.as_tensor(list(seq), dtype=torch.long)
        if padding_side == "left":
            tokens[row, width - len(seq) :] = ids
            mask[row, width - len(seq) :] = 1
        else:
            tokens[row, : len(seq)] = ids
            mask[row, : len(seq)] = 1
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    return TokenBatch(tokens, mask, lengths, padding_side)


def tokenize_batch(
    model: HookedTransformer,
    texts: Sequence[str],
    *,
    padding_side: PaddingSide = "left",
    prepend_bos: bool | None = None,
) -> TokenBatch:
    """Tokenize texts into one padded batch on the model's device.

    Example:
        >>> batch = tokenize_batch(model, ["Hello", "우리나라의 수도는"])  # doctest: +SKIP
        >>> batch.tokens.shape[0]  # doctest: +SKIP
        2
    """
    if isinstance(texts, str):
        raise TypeError("tokenize_batch takes a list of texts, not one string")
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        raise ValueError(f"Empty text at position(s) {empty}")
    sequences = [encode(model, text, prepend_bos=prepend_bos) for text in texts]
    batch = pad_sequences(sequences, pad_token_id=pad_id(model), padding_side=padding_side)
    return batch.to(model.cfg.device or "cpu")


def str_tokens(model: HookedTransformer, text: str) -> list[str]:
    """The text's tokens as strings (BOS included when the model adds it).

    ``HookedTransformer.to_str_tokens(str)`` crashes for tokenizers whose ``name_or_path``
    contains "gemma" (TransformerLens 3.9); this goes through token ids instead.
    """
    ids = encode(model, text)
    return list(
        _tokenizer(model).batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    )
