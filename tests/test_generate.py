"""Steered generation: KV-cache generate against a greedy loop of full forwards, batching,
sampling seeds, side-by-side comparisons, and the real model."""

from __future__ import annotations

import pytest
import torch

from lens_steer.hooks import resid_hook_name
from lens_steer.steering import compare_generations, generate, single_layer_steering
from lens_steer.tokens import tokenize_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

D_MODEL = 32
PROMPTS = ["The capital of our country is", "Water boils"]


def _vector(seed: int, width: int = D_MODEL) -> torch.Tensor:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed))


def _steering(seed: int, layer: int, alpha: float, positions: str = "all"):
    return single_layer_steering(
        _vector(seed), layer, alpha, alpha_mode="relative", reference_norm=8.0,
        positions=positions,  # type: ignore[arg-type]
    )  # fmt: skip


def _greedy_reference(model, prompt, effective, layer, max_new_tokens, from_position=0):
    """Greedy decoding with full forward passes (no KV cache) and a hand-written hook."""
    tokens = tokenize_batch(model, [prompt]).tokens
    prompt_length = tokens.shape[1]

    def add(activation, hook):
        activation = activation.clone()
        activation[:, from_position:] += effective
        return activation

    for _ in range(max_new_tokens):
        logits = model.run_with_hooks(tokens, fwd_hooks=[(resid_hook_name(layer), add)])
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    new = tokens[0, prompt_length:].tolist()
    eos = model.tokenizer.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    return model.tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_generate_matches_a_greedy_loop_without_kv_cache(tiny_model, positions):
    steering = _steering(15, 1, 1.5, positions)
    effective = steering.terms[0].effective_vector()
    prompt = PROMPTS[0]
    length = len(tokenize_batch(tiny_model, [prompt]).tokens[0])
    start = 0 if positions == "all" else length
    expected = _greedy_reference(tiny_model, prompt, effective, 1, 5, from_position=start)
    assert generate(tiny_model, [prompt], steering, max_new_tokens=5, show_progress=False) == [
        expected
    ]
    plain = generate(tiny_model, [prompt], None, max_new_tokens=5, show_progress=False)
    assert plain == [_greedy_reference(tiny_model, prompt, torch.zeros(D_MODEL), 1, 5)]
    assert plain != [expected]


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_batched_left_padded_generate_equals_one_prompt_at_a_time(tiny_model, positions):
    steering = _steering(16, 2, 1.0, positions)
    batched = generate(tiny_model, PROMPTS, steering, max_new_tokens=6, show_progress=False)
    alone = [
        generate(tiny_model, [prompt], steering, max_new_tokens=6, show_progress=False)[0]
        for prompt in PROMPTS
    ]
    assert batched == alone
    assert (
        generate(tiny_model, PROMPTS, steering, max_new_tokens=6, batch_size=1, show_progress=False)
        == alone
    )


def test_sampling_is_reproducible_by_seed_and_leaves_the_global_rng_alone(tiny_model):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = generate(tiny_model, PROMPTS, None, max_new_tokens=8, do_sample=True, seed=4)
    assert torch.equal(torch.rand(1), expected_next)
    again = generate(tiny_model, PROMPTS, None, max_new_tokens=8, do_sample=True, seed=4)
    other = generate(tiny_model, PROMPTS, None, max_new_tokens=8, do_sample=True, seed=5)
    assert first == again
    assert first != other


def test_compare_generations_puts_each_label_beside_its_prompt(tiny_model):
    steering = _steering(17, 1, 2.0)
    rows = compare_generations(
        tiny_model, PROMPTS, {"plain": None, "en": steering}, max_new_tokens=4, show_progress=False
    )
    assert [row["prompt"] for row in rows] == PROMPTS
    assert [row["plain"] for row in rows] == generate(
        tiny_model, PROMPTS, max_new_tokens=4, show_progress=False
    )
    assert [row["en"] for row in rows] == generate(
        tiny_model, PROMPTS, steering, max_new_tokens=4, show_progress=False
    )
    with pytest.raises(ValueError, match="'prompt' is the prompt column"):
        compare_generations(tiny_model, PROMPTS, {"prompt": None})
    with pytest.raises(ValueError, match="no steerings"):
        compare_generations(tiny_model, PROMPTS, {})


def test_generate_refuses_bad_input_before_touching_the_model(tiny_model):
    with pytest.raises(TypeError, match="list of prompts"):
        generate(tiny_model, "Water boils")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_model, [])
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(tiny_model, PROMPTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        generate(tiny_model, PROMPTS, batch_size=0)
    deep = single_layer_steering(_vector(19), 7, 1.0)
    with pytest.raises(ValueError, match=r"layer 7 is out of range .*n_layers=4"):
        generate(tiny_model, PROMPTS, deep)
    assert all(len(hp._forward_hooks) == 0 for hp in tiny_model.hook_dict.values())


# --------------------------------------------------------------------------------------------
# The real model (slow): steering visibly changes Gemma's generations; alpha 0 does not.
# --------------------------------------------------------------------------------------------

REAL_PROMPTS = ["우리나라의 수도는", "The capital of our country is"]


@pytest.mark.slow
def test_real_model_generate_changes_with_large_alpha_and_not_with_zero(gemma):
    layer = 6
    with torch.no_grad():
        last = [
            gemma(tokenize_batch(gemma, [prompt]).tokens, stop_at_layer=layer + 1)[0, -1]
            for prompt in REAL_PROMPTS
        ]
    en_minus_ko = last[1] - last[0]
    reference = torch.stack(last).norm(dim=-1).mean()

    def steered(alpha: float) -> list[str]:
        steering = single_layer_steering(
            en_minus_ko, layer, alpha, alpha_mode="relative", reference_norm=reference
        )
        return generate(gemma, REAL_PROMPTS, steering, max_new_tokens=4, show_progress=False)

    plain = generate(gemma, REAL_PROMPTS, None, max_new_tokens=4, show_progress=False)
    assert all(text.strip() for text in plain)
    assert steered(0.0) == plain
    strong = steered(2.0)
    assert all(a != b for a, b in zip(strong, plain, strict=True)), (strong, plain)
    alone = [generate(gemma, [p], max_new_tokens=4, show_progress=False)[0] for p in REAL_PROMPTS]
    assert alone == plain
