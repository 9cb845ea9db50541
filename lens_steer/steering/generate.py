"""Read what a steering does: greedy (or sampled) generations, steered and not, side by side.

Uses ``model.generate`` with the KV cache; the steering's hooks count positions themselves, so
``"generated"`` terms steer each new token (see :mod:`lens_steer.hooks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.utilities.tokenize_utils import get_attention_mask

from lens_steer.steering.compose import Steering, apply_steering
from lens_steer.tokens import tokenize_batch


def _decode_new_tokens(model: HookedTransformer, new_tokens: Tensor) -> list[str]:
    """Decode each row's generated tokens up to (not including) its first EOS."""
    assert model.tokenizer is not None
    eos = model.tokenizer.eos_token_id
    texts = []
    for row in new_tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(str(model.tokenizer.decode(row, skip_special_tokens=True)))
    return texts


@torch.inference_mode()
def _generate_batch(
    model: HookedTransformer,
    prompts: Sequence[str],
    steering: Steering | None,
    *,
    max_new_tokens: int,
    do_sample: bool,
) -> list[str]:
    batch = tokenize_batch(model, prompts, padding_side="left")
    assert model.tokenizer is not None
    # model.generate rebuilds the mask from pad ids; make sure it sees the one we padded with.
    rebuilt = get_attention_mask(
        model.tokenizer, batch.tokens, model.cfg.default_prepend_bos, padding_side="left"
    )
    if not torch.equal(rebuilt.to(batch.attention_mask.device), batch.attention_mask):
        raise ValueError(
            "A prompt starts with the pad token; model.generate would mask it out: "
            f"{list(prompts)!r}"
        )
    width = batch.tokens.shape[1]
    options: dict[str, Any] = {"use_past_kv_cache": True}
    if not isinstance(model, HookedTransformer):
        # TransformerBridge (TransformerLens 3.9): its KV cache is not read by attention under
        # transformers 5 (notes/bridge.md), so every step runs the whole sequence, masked.
        options = {"use_past_kv_cache": False, "attention_mask": batch.attention_mask}
    with apply_steering(model, steering, prompt_length=width) as steered:
        out = steered.generate(
            batch.tokens,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            stop_at_eos=True,
            padding_side="left",
            return_type="tokens",
            verbose=False,
            **options,
        )
    assert isinstance(out, Tensor)
    return _decode_new_tokens(model, out[:, width:])


def generate(
    model: HookedTransformer,
    prompts: Sequence[str],
    steering: Steering | None = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[str]:
    """Generate continuations (new text only) with a steering attached, batched and left-padded.

    Uses ``model.generate`` with the KV cache; the steering's hooks count positions themselves,
    so ``"generated"`` terms steer each new token. Greedy by default; with ``do_sample`` the
    global torch RNG is seeded with ``seed`` inside a fork, so the caller's RNG is untouched.

    Args:
        model: the model.
        prompts: texts (BOS is added by lens_steer's tokenizer wrapper).
        steering: what to add, or ``None`` for the plain model.
        max_new_tokens: tokens to generate per prompt (generation stops early at EOS).
        do_sample: sample instead of greedy decoding.
        seed: RNG seed for sampling.
        batch_size: prompts per ``model.generate`` call.
        show_progress: show a tqdm bar over batches.

    Example:
        >>> generate(model, ["우리나라의 수도는"], steering, max_new_tokens=5)  # doctest: +SKIP
        [' 서울이다.']
    """
    if isinstance(prompts, str):
        raise TypeError("generate takes a list of prompts, not one string")
    if not prompts:
        raise ValueError("generate got no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if steering is not None:
        steering.validate(model)
    starts = range(0, len(prompts), batch_size)
    texts: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(starts, desc="generate", disable=not show_progress or len(starts) == 1):
            chunk = list(prompts[start : start + batch_size])
            texts += _generate_batch(
                model, chunk, steering, max_new_tokens=max_new_tokens, do_sample=do_sample
            )
    return texts


def compare_generations(
    model: HookedTransformer,
    prompts: Sequence[str],
    steerings: Mapping[str, Steering | None],
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[dict[str, str]]:
    """Generations under several steerings, one row per prompt, for side-by-side reading.

    Args:
        model: the model.
        prompts: texts to continue.
        steerings: ``{label: steering}``; ``None`` is the plain model.
        max_new_tokens, do_sample, seed, batch_size, show_progress: as in :func:`generate`.

    Returns:
        Rows ``{"prompt": text, label: continuation, ...}`` in the order of ``prompts``.

    Example:
        >>> rows = compare_generations(model, ["우리나라의 수도는"], {"plain": None, "en": s})  # doctest: +SKIP
        >>> sorted(rows[0])  # doctest: +SKIP
        ['en', 'plain', 'prompt']
    """
    if not steerings:
        raise ValueError("compare_generations got no steerings")
    if "prompt" in steerings:
        raise ValueError("'prompt' is the prompt column; give the steering another label")
    rows: list[dict[str, str]] = [{"prompt": prompt} for prompt in prompts]
    for label, steering in steerings.items():
        texts = generate(
            model,
            prompts,
            steering,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            seed=seed,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        for row, text in zip(rows, texts, strict=True):
            row[label] = text
    return rows
