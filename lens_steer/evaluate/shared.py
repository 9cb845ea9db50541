"""Score options with each prompt run once: a KV cache of the prompt, shared by its options.

An item's options share its prompt, so the prompt's tokens need to go through the blocks once,
not once per option. A chunk of prompts runs left-padded, filling a KV cache; the first
continuation token of every option is read off the prompt's last position; only the options of
two or more tokens run again, over their own tokens but the last (right-padded), on the
prompt's cache repeated once per option, with the attention mask of prompt and option
together. Token ids and rotary positions are those of the concatenated prompt+option sequence,
so the log-probs equal those of :func:`lens_steer.evaluate.scoring.prepare_batches` batches to
float precision.

:class:`SharedBatch` can also restart from a layer (``start_at_layer``) with the residuals of
both parts, which is how the fast steering sweeps in :mod:`lens_steer.evaluate.engine` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    encode_request,
    token_logprobs,
)
from lens_steer.hooks import resid_hook_name
from lens_steer.tokens import TokenBatch, pad_id, pad_sequences

PromptState = tuple[Tensor, Tensor | None]
"""Residuals of a :class:`SharedBatch` at one layer: ``(prompts, option inputs or None)``."""


@dataclass(frozen=True)
class SharedPrompt:
    """One request split for prompt sharing: its prompt ids and each option's continuation."""

    index: int
    prompt: list[int]
    continuations: list[list[int]]


def split_request(model: HookedTransformer, request: ScoringRequest, index: int) -> SharedPrompt:
    """The request's prompt ids (with BOS) and its options' continuation ids."""
    encoded = encode_request(model, request, index)
    first_ids, first_n = encoded[0]
    prompt = first_ids[: len(first_ids) - first_n]
    return SharedPrompt(index, prompt, [ids[len(ids) - n :] for ids, n in encoded])


def shared_prompt_chunks(
    model: HookedTransformer, requests: Sequence[ScoringRequest], *, batch_size: int = 16
) -> list[list[SharedPrompt]]:
    """Split every request into prompt and continuations; group prompts, longest first."""
    if not requests:
        raise ValueError("No scoring requests given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    split = [split_request(model, request, index) for index, request in enumerate(requests)]
    split.sort(key=lambda item: (-len(item.prompt), item.index))
    return [split[start : start + batch_size] for start in range(0, len(split), batch_size)]


def repeat_cache(
    cache: TransformerLensKeyValueCache, index: Int[Tensor, " row"]
) -> TransformerLensKeyValueCache:
    """A new cache whose row ``i`` is row ``index[i]`` of ``cache`` (one row per option)."""
    entries = [
        TransformerLensKeyValueCacheEntry(entry.past_keys[index], entry.past_values[index])
        for entry in cache.entries
    ]
    return TransformerLensKeyValueCache(entries, cache.previous_attention_mask[index])


def _long(values: Sequence[int], device: torch.device) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)


@dataclass(frozen=True)
class SharedBatch:
    """The tensors of one chunk of prompts and their options, and where each token is scored.

    ``first_row``/``first_target``: every option's prompt row and first continuation token
    (predicted by the prompt's last position). ``inputs``: the options of two or more tokens,
    minus their last token, right-padded; ``input_rows`` their prompt rows and ``input_mask``
    the mask of prompt and input together. ``rest_*``: every later continuation token as
    (input row, position predicting it, token id, option index).
    """

    prompts: TokenBatch
    n_options: tuple[int, ...]
    first_row: Int[Tensor, " option"]
    first_target: Int[Tensor, " option"]
    inputs: TokenBatch | None
    input_rows: Int[Tensor, " input"]
    input_mask: Int[Tensor, "input prompt_and_input"] | None
    rest_row: Int[Tensor, " token"]
    rest_pos: Int[Tensor, " token"]
    rest_target: Int[Tensor, " token"]
    rest_owner: Int[Tensor, " token"]

    @classmethod
    def build(cls, model: HookedTransformer, chunk: Sequence[SharedPrompt]) -> SharedBatch:
        device = model.W_U.device
        padding = pad_id(model)
        prompts = pad_sequences([item.prompt for item in chunk], pad_token_id=padding).to(device)
        options = [(row, cont) for row, item in enumerate(chunk) for cont in item.continuations]
        longer = [i for i, (_, cont) in enumerate(options) if len(cont) > 1]
        inputs, input_mask = None, None
        if longer:
            inputs = pad_sequences(
                [options[i][1][:-1] for i in longer], pad_token_id=padding, padding_side="right"
            ).to(device)
            rows = _long([options[i][0] for i in longer], device)
            input_mask = torch.cat([prompts.attention_mask[rows], inputs.attention_mask], dim=1)
        # Right padding: position j of an option's input predicts its continuation token j + 1.
        rest = [
            (k, j, options[i][1][j + 1], i)
            for k, i in enumerate(longer)
            for j in range(len(options[i][1]) - 1)
        ]
        return cls(
            prompts=prompts,
            n_options=tuple(len(item.continuations) for item in chunk),
            first_row=_long([row for row, _ in options], device),
            first_target=_long([cont[0] for _, cont in options], device),
            inputs=inputs,
            input_rows=_long([options[i][0] for i in longer], device),
            input_mask=input_mask,
            rest_row=_long([r[0] for r in rest], device),
            rest_pos=_long([r[1] for r in rest], device),
            rest_target=_long([r[2] for r in rest], device),
            rest_owner=_long([r[3] for r in rest], device),
        )

    def clean_states(
        self, model: HookedTransformer, layers: Sequence[int]
    ) -> dict[int, PromptState]:
        """Clean ``resid_post`` of both parts at ``layers`` (and the final one), one pass each."""
        n_layers = model.cfg.n_layers
        names = {resid_hook_name(layer): layer for layer in {*layers, n_layers - 1}}
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.W_U.device, len(self))
        _, prompt_acts = model.run_with_cache(
            self.prompts.tokens,
            attention_mask=self.prompts.attention_mask,
            past_kv_cache=cache,
            stop_at_layer=n_layers,
            names_filter=lambda name: name in names,
            return_cache_object=False,
        )
        option_acts = None
        if self.inputs is not None:
            _, option_acts = model.run_with_cache(
                self.inputs.tokens,
                attention_mask=self.inputs.attention_mask,
                past_kv_cache=repeat_cache(cache, self.input_rows),
                stop_at_layer=n_layers,
                names_filter=lambda name: name in names,
                return_cache_object=False,
            )
        return {
            layer: (prompt_acts[name], None if option_acts is None else option_acts[name])
            for name, layer in names.items()
        }

    def run(
        self, model: HookedTransformer, state: PromptState, start: int, stop: int
    ) -> PromptState:
        """Blocks ``start..stop-1``: the prompts, then the options over the prompts' new keys."""
        return self.run_tiled(model, [state], start, stop)[0]

    def run_tiled(
        self, model: HookedTransformer, states: Sequence[PromptState], start: int, stop: int
    ) -> list[PromptState]:
        """:meth:`run` for several states of this batch at once, stacked along the batch.

        Steerings that add different vectors at the same layer and nothing after it continue
        through the same blocks: one forward over ``len(states)`` copies of the batch does
        fewer, larger matmuls than one forward per steering.
        """
        if start >= stop or not states:
            return list(states)
        copies, n_prompts = len(states), len(self)
        prompts = torch.cat([state[0] for state in states]) if copies > 1 else states[0][0]
        cache = TransformerLensKeyValueCache.init_cache(
            model.cfg, model.W_U.device, copies * n_prompts
        )
        prompts = model(
            prompts,
            start_at_layer=start,
            stop_at_layer=stop,
            attention_mask=self.prompts.attention_mask.repeat(copies, 1),
            past_kv_cache=cache,
        )
        option_states = [state[1] for state in states]
        options = None
        if self.input_mask is not None and all(o is not None for o in option_states):
            rows = torch.cat([self.input_rows + copy * n_prompts for copy in range(copies)])
            options = model(
                torch.cat([o for o in option_states if o is not None]),
                start_at_layer=start,
                stop_at_layer=stop,
                attention_mask=self.input_mask.repeat(copies, 1),
                past_kv_cache=repeat_cache(cache, rows),
            )
        n_inputs = len(self.input_rows)
        return [
            (
                prompts[copy * n_prompts : (copy + 1) * n_prompts],
                None if options is None else options[copy * n_inputs : (copy + 1) * n_inputs],
            )
            for copy in range(copies)
        ]

    def picked(self, final: PromptState) -> Float[Tensor, "token d_model"]:
        """The final residuals whose logits score a continuation token, in :attr:`targets` order.

        Left padding: every prompt ends in the last column, whose logits predict each option's
        first token; the later tokens come from the option inputs.
        """
        prompts, options = final
        first = prompts[self.first_row, -1]
        if options is None or not len(self.rest_row):
            return first
        return torch.cat([first, options[self.rest_row, self.rest_pos]])

    def picked_rows(self, final: PromptState) -> Float[Tensor, "row d_model"]:
        """The distinct final residuals that predict continuation tokens (:attr:`picked_index`).

        Every option of a prompt predicts its first token from the prompt's last position: that
        row is kept once, not once per option, so it is unembedded once.
        """
        prompts, options = final
        last = prompts[:, -1]
        if options is None or not len(self.rest_row):
            return last
        return torch.cat([last, options[self.rest_row, self.rest_pos]])

    @property
    def picked_index(self) -> Int[Tensor, " token"]:
        """For each of :attr:`targets`, its row in :meth:`picked_rows`."""
        rest = torch.arange(len(self.rest_row), device=self.first_row.device) + len(self)
        if self.inputs is None:
            return self.first_row
        return torch.cat([self.first_row, rest])

    @property
    def targets(self) -> Int[Tensor, " token"]:
        """The token ids :meth:`picked` rows predict."""
        if self.inputs is None:
            return self.first_target
        return torch.cat([self.first_target, self.rest_target])

    def sum_options(self, token_values: Float[Tensor, " token"]) -> list[float]:
        """Per-token log-probs (:meth:`picked` order) summed per option (chunk order)."""
        n_first = len(self.first_target)
        totals = token_values[:n_first]
        if len(token_values) > n_first:
            totals = totals.index_add(0, self.rest_owner, token_values[n_first:])
        return [float(value) for value in totals.tolist()]

    def logprobs(self, model: HookedTransformer, final: PromptState) -> list[float]:
        """Summed continuation log-prob of every option (chunk order) from final residuals."""
        rows = self.picked_rows(final)
        return self.sum_options(token_logprobs(model, rows, self.targets, self.picked_index))

    def __len__(self) -> int:
        return len(self.n_options)


def assemble_shared(
    requests: Sequence[ScoringRequest],
    chunks: Sequence[Sequence[SharedPrompt]],
    chunk_values: Sequence[Sequence[float]],
) -> list[OptionScores]:
    """Per-chunk option log-probs (chunk order) back into request order."""
    logprobs: list[tuple[float, ...]] = [() for _ in requests]
    n_tokens: list[tuple[int, ...]] = [() for _ in requests]
    for chunk, values in zip(chunks, chunk_values, strict=True):
        at = 0
        for item in chunk:
            n = len(item.continuations)
            logprobs[item.index] = tuple(values[at : at + n])
            n_tokens[item.index] = tuple(len(cont) for cont in item.continuations)
            at += n
        if at != len(values):
            raise ValueError(f"chunk of {at} options got {len(values)} values")
    return [
        OptionScores(request.id, logprobs[index], n_tokens[index])
        for index, request in enumerate(requests)
    ]
