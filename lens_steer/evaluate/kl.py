"""The damage report of a dose: KL divergence of the next-token distribution on neutral text.

A steering that moves the next-token distribution of neutral prompts far is damage, whatever it
does to the options being scored. Uses the fast restart machinery of :mod:`.restart`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from lens_steer.evaluate.restart import restart_finals, steering_edits
from lens_steer.evaluate.scoring import final_logits
from lens_steer.evaluate.shared import SharedBatch, SharedPrompt
from lens_steer.tokens import TokenBatch, encode, pad_id, tokenize_batch

if TYPE_CHECKING:
    from lens_steer.steering import Steering


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
    if not isinstance(model, HookedTransformer):  # e.g. a TransformerBridge: no restarts
        return _hooked_kl(model, prompts, steerings, batch_size=batch_size)
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
            last = batch.picked_rows(clean)  # one placeholder option: one row per prompt
            reference = torch.log_softmax(final_logits(model, last).float(), -1)
            for keys, rows in restart_finals(model, batch, settings):
                steered = torch.log_softmax(final_logits(model, rows).float(), -1)
                kl = (reference.exp() * (reference - steered)).sum(-1).clamp_min(0.0)
                for key in keys:
                    for item, value in zip(chunk, kl.tolist(), strict=True):
                        out[key][item.index] = float(value)
    return out


def _last_logprobs(model: Any, batch: TokenBatch, hooks: list) -> torch.Tensor:
    logits = model.run_with_hooks(
        batch.tokens, attention_mask=batch.attention_mask, fwd_hooks=hooks
    )
    return torch.log_softmax(logits[:, -1].float(), dim=-1)  # left padding: last column


def _hooked_kl(
    model: Any,
    prompts: Sequence[str],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int,
) -> dict[str, list[float]]:
    """The same KL from full hooked forwards (models that cannot restart from a layer)."""
    out: dict[str, list[float]] = {key: [] for key in steerings}
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenize_batch(model, list(prompts[start : start + batch_size]))
            reference = _last_logprobs(model, batch, [])
            for key, steering in steerings.items():
                hooks = [] if steering is None else steering.fwd_hooks()
                steered = _last_logprobs(model, batch, hooks)
                kl = (reference.exp() * (reference - steered)).sum(-1).clamp_min(0.0)
                out[key] += [float(value) for value in kl.tolist()]
    return out
