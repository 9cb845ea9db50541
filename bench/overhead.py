"""Steering overhead: a surgical steered forward against the plain forwards of the same model.

Three sides run the same left-padded batch with its attention mask, full logits each:

* ``hooked``: the unhooked ``HookedTransformer`` forward;
* ``steered``: the same forward inside ``apply_steering`` with a surgical steering (two hooks:
  one vector at a middle layer, one at a deeper layer, ``resid_post``, every position);
* ``hf``: the transformers forward of the same weights (when the HF model is given).

The vectors are seeded random directions: what is added does not change the cost of adding it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformer_lens import HookedTransformer

from bench._config import FULL, Sizes
from bench._data import bench_probe_set, parallel_selection
from bench._timing import alternate, speedup, timings_json
from lens_steer.data.templates import parallel_prompt
from lens_steer.steering import Steering, apply_steering, surgical_steering
from lens_steer.tokens import TokenBatch, tokenize_batch

SEED = 0


def bench_steering(model: HookedTransformer) -> Steering:
    """A surgical steering at layers n/3 and 2n/3 with seeded random unit vectors (raw alpha 8)."""
    generator = torch.Generator().manual_seed(SEED)
    en, loc = torch.randn((2, model.cfg.d_model), generator=generator)
    third = model.cfg.n_layers // 3
    return surgical_steering(
        en / en.norm(), third, 8.0, loc / loc.norm(), 2 * third, 8.0, alpha_mode="raw"
    )


def bench_batch(model: HookedTransformer, sizes: Sizes) -> tuple[TokenBatch, dict[str, Any]]:
    """``sizes.overhead_prompts`` parallel sentences, languages mixed, as one padded batch."""
    probe, source = bench_probe_set(sizes)
    per_lang = math.ceil(sizes.overhead_prompts / len(sizes.langs))
    items = parallel_selection(probe, sizes.langs, per_lang)[: sizes.overhead_prompts]
    return tokenize_batch(model, [parallel_prompt(item) for item in items]), source


def _hooks_attached(model: HookedTransformer) -> int:
    return sum(len(point.fwd_hooks) for point in model.hook_dict.values())


def run(
    model: HookedTransformer,
    hf_model: Any | None = None,
    sizes: Sizes = FULL,
    *,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time the sides (alternating) and check the steering changes the logits and is removed.

    Returns:
        ``{"overhead", "details"}``; ``overhead`` is the median over rounds of steered / hooked.
    """
    batch, source = bench_batch(model, sizes)
    steering = bench_steering(model)
    tokens, mask = batch.tokens, batch.attention_mask

    @torch.inference_mode()
    def hooked() -> torch.Tensor:
        return model(tokens, attention_mask=mask)

    @torch.inference_mode()
    def steered() -> torch.Tensor:
        with apply_steering(model, steering) as steered_model:
            return steered_model(tokens, attention_mask=mask)

    sides = {"hooked": hooked, "steered": steered}
    if hf_model is not None:

        @torch.inference_mode()
        def hf() -> torch.Tensor:
            return hf_model(input_ids=tokens, attention_mask=mask).logits

        sides["hf"] = hf
    rounds = max(repeats, sizes.overhead_min_repeats)
    timed = alternate(sides, rounds)
    plain_last = timed["hooked"].last[:, -1]
    details: dict[str, Any] = timings_json(timed, ("steered", "hooked")) | {
        "batch": list(tokens.shape),
        "steering": steering.to_json() | {"vectors": f"random unit vectors, seed {SEED}"},
        "steered_max_logit_change": float((timed["steered"].last[:, -1] - plain_last).abs().max()),
        "hooks_left_attached": _hooks_attached(model),
        "data": source,
    }
    if "hf" in timed:
        details["hf_vs_hooked_max_abs_logit_diff_last_token"] = float(
            (timed["hf"].last[:, -1].float() - plain_last).abs().max()
        )
        details["hooked_over_hf"] = speedup(timed["hooked"], timed["hf"])
        details["steered_over_hf"] = speedup(timed["steered"], timed["hf"])
    return {"overhead": speedup(timed["steered"], timed["hooked"]), "details": details}
