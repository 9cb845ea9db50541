"""lens_steer.steering: settings values, their round trip, and steered forward passes/generation."""

from __future__ import annotations

import json

import pytest
import torch

from lens_steer.hooks import resid_hook_name
from lens_steer.steering import (
    Steering,
    SteeringTerm,
    apply_steering,
    compare_generations,
    generate,
    single_layer_steering,
    surgical_steering,
)
from lens_steer.tokens import tokenize_batch

D_MODEL = 32
PROMPTS = ["The capital of our country is", "Water boils"]


def _vector(seed: int, width: int = D_MODEL) -> torch.Tensor:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return tiny_model.to_tokens(PROMPTS[0])


def test_relative_alpha_adds_a_vector_of_alpha_times_reference_norm_along_v():
    vector = _vector(0)
    term = single_layer_steering(vector, 2, 0.25, reference_norm=40.0).terms[0]
    added = term.effective_vector()
    assert added.norm().item() == pytest.approx(0.25 * 40.0, rel=1e-6)
    assert term.effective_norm() == pytest.approx(10.0, rel=1e-6)
    torch.testing.assert_close(added, vector * (10.0 / vector.norm()), atol=1e-6, rtol=0)


def test_raw_alpha_adds_alpha_times_v_and_records_an_optional_reference_norm():
    vector = _vector(1)
    steering = single_layer_steering(vector, 1, -3.0, alpha_mode="raw", reference_norm=7.0)
    assert torch.equal(steering.terms[0].effective_vector(), -3.0 * vector)
    assert steering.to_json()["terms"][0]["reference_norm"] == 7.0


def test_reference_norm_may_be_a_one_element_tensor():
    term = single_layer_steering(_vector(2), 0, 1.0, reference_norm=torch.tensor([5.0])).terms[0]
    assert term.reference_norm == 5.0 and isinstance(term.reference_norm, float)


def test_to_json_records_every_setting_of_every_term():
    steering = surgical_steering(
        _vector(3),
        1,
        0.5,
        _vector(4),
        3,
        2.0,
        en_reference_norm=4.0,
        loc_reference_norm=8.0,
        en_provenance={"lang": "ko", "split": "fit", "layers": (1, 2)},
    )
    settings = steering.to_json()
    assert settings["label"] == "surgical en@L1 a=0.5 + loc@L3 a=2 (relative)"
    en, loc = settings["terms"]
    assert en == {
        "name": "en",
        "layer": 1,
        "point": "resid_post",
        "hook_name": "blocks.1.hook_resid_post",
        "positions": "all",
        "alpha": 0.5,
        "alpha_mode": "relative",
        "reference_norm": 4.0,
        "vector_norm": pytest.approx(_vector(3).norm().item(), rel=1e-6),
        "effective_norm": pytest.approx(2.0, rel=1e-6),
        "d_model": D_MODEL,
        "dtype": "float32",
        "provenance": {"lang": "ko", "split": "fit", "layers": [1, 2]},
    }
    assert (loc["name"], loc["layer"], loc["effective_norm"]) == ("loc", 3, pytest.approx(16.0))
    json.dumps(settings, allow_nan=False)


def test_save_then_load_round_trips_vectors_and_settings_exactly(tmp_path):
    steering = surgical_steering(
        _vector(5),
        1,
        0.3,
        _vector(6).to(torch.float64),
        2,
        1.7,
        alpha_mode="raw",
        loc_provenance={"model_id": "tiny-random", "n_a": 12},
        positions="generated",
    )
    paths = steering.save(tmp_path / "surgical")
    assert paths["metadata"].name == "surgical.json"
    loaded = Steering.load(tmp_path / "surgical")
    assert loaded.to_json() == steering.to_json()
    for before, after in zip(steering.terms, loaded.terms, strict=True):
        assert torch.equal(before.vector, after.vector)
        assert before.vector.dtype == after.vector.dtype
        assert torch.equal(before.effective_vector(), after.effective_vector())


def test_empty_steering_round_trips_and_is_null(tmp_path):
    Steering(terms=(), label="plain").save(tmp_path / "plain.json")
    loaded = Steering.load(tmp_path / "plain.json")
    assert loaded.terms == () and loaded.label == "plain" and loaded.is_null


def test_load_errors_name_the_missing_file_or_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        Steering.load(tmp_path / "nothing")
    single_layer_steering(_vector(7), 0, 1.0, alpha_mode="raw").save(tmp_path / "one")
    meta_path = tmp_path / "one.json"
    meta = json.loads(meta_path.read_text())
    del meta["terms"][0]["alpha"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"one\.json: term 0 lacks 'alpha'"):
        Steering.load(tmp_path / "one")


def test_zero_alpha_steering_is_null_and_gives_clean_logits(tiny_model, tokens):
    steering = surgical_steering(
        _vector(8), 0, 0.0, _vector(9), 3, 0.0, en_reference_norm=3.0, loc_reference_norm=3.0
    )
    assert steering.is_null
    clean = tiny_model(tokens)
    with apply_steering(tiny_model, steering) as steered:
        assert torch.equal(steered(tokens), clean)


def test_surgical_steering_equals_sequential_manual_edits_of_the_effective_vectors(
    tiny_model, tokens
):
    steering = surgical_steering(
        _vector(10), 1, 0.8, _vector(11), 2, 1.5, en_reference_norm=6.0, loc_reference_norm=9.0
    )
    en, loc = (term.effective_vector() for term in steering.terms)
    with apply_steering(tiny_model, steering) as steered:
        logits = steered(tokens)
    resid = tiny_model(tokens, stop_at_layer=2) + en
    resid = tiny_model(resid, start_at_layer=2, stop_at_layer=3) + loc
    manual = tiny_model(resid, start_at_layer=3)
    torch.testing.assert_close(logits, manual, atol=1e-5, rtol=0)
    assert not steering.is_null


def test_equal_transfer_and_local_layers_add_both_vectors_at_one_point(tiny_model, tokens):
    en, loc = _vector(12), _vector(13)
    both = surgical_steering(en, 2, 1.0, loc, 2, 2.0, alpha_mode="raw")
    summed = single_layer_steering(en + 2.0 * loc, 2, 1.0, alpha_mode="raw")
    with apply_steering(tiny_model, both) as steered:
        first = steered(tokens)
    with apply_steering(tiny_model, summed) as steered:
        second = steered(tokens)
    torch.testing.assert_close(first, second, atol=1e-5, rtol=0)


def test_apply_steering_detaches_hooks_after_an_exception(tiny_model, tokens):
    clean = tiny_model(tokens)
    steering = single_layer_steering(_vector(14), 1, 5.0, alpha_mode="raw")
    with pytest.raises(KeyError):
        with apply_steering(tiny_model, steering):
            raise KeyError("inside")
    assert len(tiny_model.hook_dict[resid_hook_name(1)]._forward_hooks) == 0
    assert torch.equal(tiny_model(tokens), clean)


def test_apply_steering_none_attaches_nothing(tiny_model, tokens):
    with apply_steering(tiny_model, None) as model:
        assert all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())


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
    return model.tokenizer.decode(new, skip_special_tokens=True), prompt_length


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_generate_matches_a_greedy_loop_without_kv_cache(tiny_model, positions):
    steering = single_layer_steering(_vector(15), 1, 1.5, reference_norm=8.0, positions=positions)
    effective = steering.terms[0].effective_vector()
    prompt = PROMPTS[0]
    length = len(tokenize_batch(tiny_model, [prompt]).tokens[0])
    start = 0 if positions == "all" else length
    expected, _ = _greedy_reference(tiny_model, prompt, effective, 1, 5, from_position=start)
    assert generate(tiny_model, [prompt], steering, max_new_tokens=5) == [expected]
    assert generate(tiny_model, [prompt], None, max_new_tokens=5) != [expected]


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_batched_left_padded_generate_equals_one_prompt_at_a_time(tiny_model, positions):
    steering = single_layer_steering(_vector(16), 2, 1.0, reference_norm=8.0, positions=positions)
    batched = generate(tiny_model, PROMPTS, steering, max_new_tokens=6)
    alone = [generate(tiny_model, [prompt], steering, max_new_tokens=6)[0] for prompt in PROMPTS]
    assert batched == alone
    assert generate(tiny_model, PROMPTS, steering, max_new_tokens=6, batch_size=1) == alone


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
    steering = single_layer_steering(_vector(17), 1, 2.0, reference_norm=8.0)
    rows = compare_generations(
        tiny_model, PROMPTS, {"plain": None, "en": steering}, max_new_tokens=4
    )
    assert [row["prompt"] for row in rows] == PROMPTS
    assert [row["plain"] for row in rows] == generate(tiny_model, PROMPTS, max_new_tokens=4)
    assert [row["en"] for row in rows] == generate(tiny_model, PROMPTS, steering, max_new_tokens=4)
    with pytest.raises(ValueError, match="'prompt' is the prompt column"):
        compare_generations(tiny_model, PROMPTS, {"prompt": None})


def test_validate_names_the_layer_and_widths_at_fault(tiny_model, tokens):
    narrow = single_layer_steering(_vector(18, width=16), 2, 1.0, alpha_mode="raw", name="loc")
    with pytest.raises(ValueError, match=r"'loc' at layer 2: vector has width 16 .* d_model 32"):
        with apply_steering(tiny_model, narrow):
            pass
    deep = single_layer_steering(_vector(19), 7, 1.0, alpha_mode="raw")
    with pytest.raises(ValueError, match=r"layer 7 is out of range .*n_layers=4"):
        generate(tiny_model, PROMPTS, deep)
    assert all(len(hp._forward_hooks) == 0 for hp in tiny_model.hook_dict.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": float("nan")}, ValueError, "alpha must be finite"),
        ({"alpha": float("inf")}, ValueError, "alpha must be finite"),
        ({"alpha": "big"}, TypeError, "alpha must be a number"),
        ({"reference_norm": None}, ValueError, "needs reference_norm"),
        ({"reference_norm": 0.0}, ValueError, "reference_norm must be > 0"),
        ({"vector": torch.zeros(D_MODEL)}, ValueError, "zero vector"),
        ({"vector": torch.ones(2, D_MODEL)}, ValueError, "1-D"),
        ({"vector": torch.full((D_MODEL,), float("nan"))}, ValueError, "NaN or inf"),
        ({"layer": -1}, ValueError, "layer must be an int >= 0"),
        ({"alpha_mode": "percent"}, ValueError, "alpha_mode"),
        ({"positions": "middle"}, ValueError, "positions must be one of"),
        ({"point": "resid_middle"}, ValueError, "point must be one of"),
        ({"provenance": {"when": object()}}, ValueError, "not JSON-serialisable"),
        ({"name": ""}, ValueError, "name must be a non-empty string"),
    ],
)
def test_bad_term_settings_raise_clear_errors(kwargs, error, match):
    settings = {
        "layer": 1,
        "vector": _vector(20),
        "alpha": 1.0,
        "alpha_mode": "relative",
        "reference_norm": 5.0,
        "name": "en",
    }
    with pytest.raises(error, match=match):
        SteeringTerm(**{**settings, **kwargs})


def test_mixed_widths_and_missing_prompt_length_are_refused():
    with pytest.raises(ValueError, match="different widths"):
        surgical_steering(_vector(21), 1, 1.0, _vector(22, width=16), 2, 1.0, alpha_mode="raw")
    steering = single_layer_steering(_vector(23), 1, 1.0, alpha_mode="raw", positions="prompt")
    with pytest.raises(ValueError, match="positions='prompt' and needs prompt_length"):
        steering.fwd_hooks()


def test_generate_refuses_a_single_string_and_empty_prompts(tiny_model):
    with pytest.raises(TypeError, match="list of prompts"):
        generate(tiny_model, "Water boils")
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_model, [])


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
        steering = single_layer_steering(en_minus_ko, layer, alpha, reference_norm=reference)
        return generate(gemma, REAL_PROMPTS, steering, max_new_tokens=4, show_progress=False)

    plain = generate(gemma, REAL_PROMPTS, None, max_new_tokens=4, show_progress=False)
    assert all(text.strip() for text in plain)
    assert steered(0.0) == plain
    strong = steered(2.0)
    assert all(a != b for a, b in zip(strong, plain, strict=True)), (strong, plain)
    alone = [generate(gemma, [p], max_new_tokens=4, show_progress=False)[0] for p in REAL_PROMPTS]
    assert alone == plain
