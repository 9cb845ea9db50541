"""SteeringTerm and Steering: settings as values, edits against hand computations, the strength
chosen at use (``apply(model, multiplier=...)``), and a save/load that checks itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lens_steer.hooks import resid_hook_name
from lens_steer.steering import (
    Steering,
    SteeringTerm,
    apply_steering,
    single_layer_steering,
    surgical_steering,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

D_MODEL = 32
PROMPT = "The capital of our country is"
LOGITS = {"atol": 1e-5, "rtol": 0}  # hooked forward vs start_at_layer restarts: float32 rounding


def _vector(seed: int, width: int = D_MODEL) -> torch.Tensor:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed))


def _no_hooks(model) -> bool:
    return all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return tiny_model.to_tokens(PROMPT)


def _manual(model, tokens, edits: dict[int, object]):
    """Logits with ``edits[layer](resid_post)`` applied block by block, via start/stop_at_layer."""
    resid, at = None, 0
    for layer in sorted(edits):
        if resid is None:
            resid = model(tokens, stop_at_layer=layer + 1)
        else:
            resid = model(resid, start_at_layer=at, stop_at_layer=layer + 1)
        resid, at = edits[layer](resid), layer + 1
    return model(resid, start_at_layer=at)


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm()


# ---------------------------------------------------------------- effective vectors and settings


def test_relative_alpha_adds_a_vector_of_alpha_times_reference_norm_along_v():
    vector = _vector(0)
    term = single_layer_steering(vector, 2, 0.25, alpha_mode="relative", reference_norm=40.0).terms[
        0
    ]
    added = term.effective_vector()
    assert added.norm().item() == pytest.approx(0.25 * 40.0, rel=1e-6)
    assert term.effective_norm() == pytest.approx(10.0, rel=1e-6)
    torch.testing.assert_close(added, vector * (10.0 / vector.norm()), atol=1e-6, rtol=0)


def test_raw_alpha_adds_alpha_times_v_and_records_an_optional_reference_norm():
    vector = _vector(1)
    steering = single_layer_steering(vector, 1, -3.0, reference_norm=7.0)
    assert steering.terms[0].alpha_mode == "raw"  # the default: alpha in units of the vector
    assert torch.equal(steering.terms[0].effective_vector(), -3.0 * vector)
    assert steering.to_json()["terms"][0]["reference_norm"] == 7.0


def test_reference_norm_and_alpha_may_be_one_element_tensors():
    term = single_layer_steering(
        _vector(2), 0, torch.tensor(0.5), alpha_mode="relative", reference_norm=torch.tensor([5.0])
    ).terms[0]
    assert term.reference_norm == 5.0 and isinstance(term.reference_norm, float)
    assert term.alpha == 0.5 and isinstance(term.alpha, float)


def test_a_term_copies_its_vector_so_later_changes_of_the_tensor_do_not_leak_in():
    vector = _vector(3)
    term = single_layer_steering(vector, 0, 1.0).terms[0]
    vector.mul_(100.0)
    assert torch.equal(term.vector, _vector(3))


def test_to_json_records_every_setting_of_every_term():
    steering = surgical_steering(
        _vector(3), 1, 0.5, _vector(4), 3, 2.0, alpha_mode="relative",
        en_reference_norm=4.0, loc_reference_norm=8.0,
        en_provenance={"lang": "ko", "split": "fit", "layers": (1, 2)},
    )  # fmt: skip
    settings = steering.to_json()
    assert settings["label"] == "en@1 a=0.5 (relative) + loc@3 a=2 (relative)"
    en, loc = settings["terms"]
    assert en == {
        "name": "en", "operation": "add", "layer": 1, "point": "resid_post",
        "hook_name": "blocks.1.hook_resid_post", "positions": "all", "alpha": 0.5,
        "alpha_mode": "relative", "reference_norm": 4.0,
        "vector_norm": pytest.approx(_vector(3).norm().item(), rel=1e-6),
        "effective_norm": pytest.approx(2.0, rel=1e-6), "d_model": D_MODEL, "dtype": "float32",
        "vector_digest": en["vector_digest"], "settings_digest": en["settings_digest"],
        "provenance": {"lang": "ko", "split": "fit", "layers": [1, 2]},
    }  # fmt: skip
    assert len(en["vector_digest"]) == len(en["settings_digest"]) == 32
    assert en["vector_digest"] != loc["vector_digest"]
    assert (loc["name"], loc["layer"], loc["effective_norm"]) == ("loc", 3, pytest.approx(16.0))
    json.dumps(settings, allow_nan=False)


def test_describe_and_repr_say_what_each_term_does():
    steering = Steering(
        (
            SteeringTerm(2, _vector(5), 1.5, name="en"),
            SteeringTerm(3, _vector(6), 0.5, name="loc", operation="scale"),
            SteeringTerm(3, _vector(7), 1.0, name="lang", operation="project_out"),
        )
    )
    assert repr(steering) == "Steering(en@2 a=1.5 (raw) + loc@3 scale 0.5 + lang@3 project_out)"
    assert Steering(()).describe() == "none" and Steering(()).is_null
    assert SteeringTerm(1, _vector(8), 1.0, operation="scale").is_identity
    assert not SteeringTerm(1, _vector(8), 1.0).is_identity


# ---------------------------------------------------------------- forward passes vs hand edits


def test_zero_vector_with_alpha_zero_gives_unchanged_logits(tiny_model, tokens):
    clean = tiny_model(tokens)
    zero = Steering(tuple(SteeringTerm(layer, torch.zeros(D_MODEL), 0.0) for layer in range(4)))
    assert zero.is_null
    with zero.apply(tiny_model) as steered:
        assert torch.equal(steered(tokens), clean)
    zero_alpha = surgical_steering(_vector(8), 0, 0.0, _vector(9), 3, 0.0)
    with apply_steering(tiny_model, zero_alpha) as steered:
        assert torch.equal(steered(tokens), clean)
    assert _no_hooks(tiny_model)


def test_surgical_steering_equals_sequential_manual_edits_of_the_effective_vectors(
    tiny_model, tokens
):
    steering = surgical_steering(
        _vector(10), 1, 0.8, _vector(11), 2, 1.5, alpha_mode="relative",
        en_reference_norm=6.0, loc_reference_norm=9.0,
    )  # fmt: skip
    en, loc = (term.effective_vector() for term in steering.terms)
    with apply_steering(tiny_model, steering) as steered:
        logits = steered(tokens)
    manual = _manual(tiny_model, tokens, {1: lambda r: r + en, 2: lambda r: r + loc})
    torch.testing.assert_close(logits, manual, **LOGITS)
    assert not torch.allclose(logits, tiny_model(tokens), atol=1e-3)


def test_equal_transfer_and_local_layers_add_both_vectors_at_one_point(tiny_model, tokens):
    en, loc = _vector(12), _vector(13)
    both = surgical_steering(en, 2, 1.0, loc, 2, 2.0)
    summed = single_layer_steering(en + 2.0 * loc, 2, 1.0)
    with apply_steering(tiny_model, both) as steered:
        first = steered(tokens)
    with apply_steering(tiny_model, summed) as steered:
        second = steered(tokens)
    torch.testing.assert_close(first, second, **LOGITS)


@pytest.mark.parametrize("factor", [3.0, 0.0, -1.0])
def test_scale_operation_equals_scaling_the_component_by_hand(tiny_model, tokens, factor):
    direction = _vector(14) * 7.0  # any norm: the term normalises it
    steering = single_layer_steering(direction, 2, factor, operation="scale", name="d")
    unit = _unit(direction)

    def scale(resid):
        component = (resid @ unit).unsqueeze(-1)
        return resid - component * unit + factor * component * unit

    with steering.apply(tiny_model) as steered:
        logits = steered(tokens)
    torch.testing.assert_close(logits, _manual(tiny_model, tokens, {2: scale}), **LOGITS)


def test_project_out_equals_removing_the_component_by_hand_and_scale_zero(tiny_model, tokens):
    direction = _vector(15)
    steering = single_layer_steering(direction, 1, 1.0, operation="project_out")
    unit = _unit(direction)
    names = [resid_hook_name(1)]
    with steering.apply(tiny_model) as steered:
        logits, cache = steered.run_with_cache(tokens, names_filter=names)
    assert float((cache[names[0]] @ unit).abs().max()) < 1e-5  # nothing left along it
    manual = _manual(tiny_model, tokens, {1: lambda r: r - (r @ unit).unsqueeze(-1) * unit})
    torch.testing.assert_close(logits, manual, **LOGITS)
    with single_layer_steering(direction, 1, 0.0, operation="scale").apply(tiny_model) as steered:
        torch.testing.assert_close(steered(tokens), logits, atol=1e-6, rtol=0)


def test_terms_at_one_layer_apply_in_order(tiny_model, tokens):
    """Add then project out: nothing of the added vector survives along the direction."""
    vector = _vector(16)
    steering = Steering(
        (SteeringTerm(1, vector, 2.0), SteeringTerm(1, vector, 1.0, operation="project_out"))
    )
    unit = _unit(vector)

    def add_then_remove(resid):
        resid = resid + 2.0 * vector
        return resid - (resid @ unit).unsqueeze(-1) * unit

    with steering.apply(tiny_model) as steered:
        logits = steered(tokens)
    torch.testing.assert_close(logits, _manual(tiny_model, tokens, {1: add_then_remove}), **LOGITS)


# ---------------------------------------------------------------- the strength chosen at use


def test_apply_with_a_multiplier_equals_apply_steering_with_scaled_alphas(tiny_model, tokens):
    en, loc, direction = _vector(17), _vector(18), _vector(19)
    steering = Steering(
        (
            SteeringTerm(0, en, 0.4, name="en"),
            SteeringTerm(2, loc, 0.3, "relative", 5.0, name="loc"),
            SteeringTerm(3, direction, 0.5, name="d", operation="scale"),
        )
    )
    by_hand = Steering(
        (
            SteeringTerm(0, en, 0.4 * 2.5, name="en"),
            SteeringTerm(2, loc, 0.3 * 2.5, "relative", 5.0, name="loc"),
            SteeringTerm(3, direction, 0.5, name="d", operation="scale"),  # not an add: unscaled
        )
    )
    with steering.apply(tiny_model, multiplier=2.5) as steered:
        multiplied = steered(tokens)
    assert _no_hooks(tiny_model)
    with apply_steering(tiny_model, by_hand) as steered:
        expected = steered(tokens)
    torch.testing.assert_close(multiplied, expected, atol=1e-6, rtol=0)
    with steering.apply(tiny_model) as steered:
        assert not torch.allclose(steered(tokens), expected, atol=1e-3)
    assert steering.scaled(2.5).terms[1].effective_norm() == pytest.approx(0.75 * 5.0, rel=1e-6)


def test_multiplier_zero_gives_the_clean_logits_for_add_terms(tiny_model, tokens):
    steering = surgical_steering(_vector(20), 1, 2.0, _vector(21), 3, 1.0)
    with steering.apply(tiny_model, multiplier=0.0) as steered:
        assert torch.equal(steered(tokens), tiny_model(tokens))
    with pytest.raises(ValueError, match="multiplier must be finite"):
        with steering.apply(tiny_model, multiplier=float("inf")):
            pass


# ---------------------------------------------------------------- hooks come off


def test_hooks_are_removed_after_an_exception_inside_apply(tiny_model, tokens):
    clean = tiny_model(tokens)
    steering = surgical_steering(_vector(22), 1, 5.0, _vector(23), 2, 5.0)
    with pytest.raises(KeyError, match="inside"):
        with steering.apply(tiny_model, multiplier=2.0) as steered:
            assert len(steered.hook_dict[resid_hook_name(1)]._forward_hooks) == 1
            steered(tokens)
            raise KeyError("inside")
    assert _no_hooks(tiny_model)
    assert torch.equal(tiny_model(tokens), clean)


def test_apply_steering_none_attaches_nothing(tiny_model):
    with apply_steering(tiny_model, None) as model:
        assert _no_hooks(model)


def test_validate_names_the_term_layer_and_width_at_fault(tiny_model):
    narrow = single_layer_steering(_vector(24, width=16), 2, 1.0, name="loc")
    with pytest.raises(ValueError, match=r"'loc' at layer 2: vector has width 16 .* d_model 32"):
        with narrow.apply(tiny_model):
            pass
    deep = single_layer_steering(_vector(25), 7, 1.0, name="en")
    with pytest.raises(ValueError, match=r"'en': layer 7 is out of range .*n_layers=4"):
        with apply_steering(tiny_model, deep):
            pass
    assert _no_hooks(tiny_model)


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": float("nan")}, ValueError, "alpha must be finite"),
        ({"alpha": float("inf")}, ValueError, "alpha must be finite"),
        ({"alpha": "big"}, TypeError, "alpha must be a number"),
        ({"reference_norm": None}, ValueError, "needs reference_norm"),
        ({"reference_norm": 0.0}, ValueError, "reference_norm must be > 0"),
        ({"vector": torch.zeros(D_MODEL)}, ValueError, "zero vector cannot be scaled"),
        ({"vector": torch.ones(2, D_MODEL)}, ValueError, "1-D"),
        ({"vector": torch.full((D_MODEL,), float("nan"))}, ValueError, "NaN or inf"),
        ({"vector": torch.ones(D_MODEL, dtype=torch.long)}, ValueError, "floating point"),
        ({"vector": torch.ones(D_MODEL, device="meta")}, ValueError, "meta device"),
        ({"layer": -1}, ValueError, "layer must be an int >= 0"),
        ({"layer": "1"}, ValueError, "layer must be an int >= 0"),
        ({"alpha_mode": "percent"}, ValueError, "alpha_mode"),
        ({"positions": "middle"}, ValueError, "positions must be one of"),
        ({"point": "resid_middle"}, ValueError, "point must be one of"),
        ({"operation": "rotate"}, ValueError, "operation must be one of"),
        ({"operation": "scale"}, ValueError, "'scale' takes alpha_mode 'raw'"),
        ({"provenance": {"when": object()}}, ValueError, "not JSON-serialisable"),
        ({"name": ""}, ValueError, "name must be a non-empty string"),
    ],
)
def test_bad_term_settings_raise_errors_naming_the_term(kwargs, error, match):
    settings = {
        "layer": 1, "vector": _vector(26), "alpha": 1.0, "alpha_mode": "relative",
        "reference_norm": 5.0, "name": "en",
    }  # fmt: skip
    with pytest.raises(error, match=match) as info:
        SteeringTerm(**{**settings, **kwargs})
    if "name" not in kwargs and error is ValueError:
        assert "'en'" in str(info.value)


def test_operations_refuse_settings_that_mean_nothing():
    with pytest.raises(ValueError, match="'x' at layer 1: project_out removes the whole"):
        SteeringTerm(1, _vector(27), 0.5, name="x", operation="project_out")
    with pytest.raises(ValueError, match="'x' at layer 1: a zero vector has no direction to scale"):
        SteeringTerm(1, torch.zeros(D_MODEL), 2.0, name="x", operation="scale")
    with pytest.raises(ValueError, match="only 'add' terms add a fixed vector"):
        SteeringTerm(1, _vector(27), 2.0, operation="scale").effective_vector()


def test_mixed_widths_non_terms_and_missing_prompt_length_are_refused():
    with pytest.raises(ValueError, match="different widths"):
        surgical_steering(_vector(28), 1, 1.0, _vector(29, width=16), 2, 1.0)
    with pytest.raises(TypeError, match=r"Steering.terms\[0\] is a dict"):
        Steering(({"layer": 1},))  # type: ignore[arg-type]
    steering = single_layer_steering(_vector(30), 1, 1.0, positions="prompt", name="en")
    with pytest.raises(ValueError, match="'en' at layer 1 steers positions='prompt' and needs"):
        steering.fwd_hooks()


# ---------------------------------------------------------------- save and load


def _saved(tmp_path: Path) -> tuple[Steering, Path]:
    steering = Steering(
        (
            SteeringTerm(1, _vector(31), 0.25, name="en", provenance={"lang": "ko"}),
            SteeringTerm(2, _vector(32), 0.5, "relative", 8.0, name="loc"),
        ),
        label="surgical",
    )
    steering.save(tmp_path / "steering")
    return steering, tmp_path / "steering.json"


def test_save_then_load_round_trips_vectors_and_settings_exactly(tmp_path: Path):
    steering = Steering(
        (
            SteeringTerm(1, _vector(33), 0.3, name="en", positions="generated",
                         provenance={"model_id": "tiny-random", "n_a": 12}),
            SteeringTerm(2, _vector(34).double(), 1.7, name="loc"),
            SteeringTerm(2, _vector(35), 0.5, name="s", operation="scale"),
            SteeringTerm(3, _vector(36), 1.0, name="p", operation="project_out"),
        )
    )  # fmt: skip
    paths = steering.save(tmp_path / "all")
    assert paths["metadata"].name == "all.json" and paths["tensors"].name == "all.safetensors"
    loaded = Steering.load(tmp_path / "all")
    assert loaded.to_json() == steering.to_json()
    assert loaded.label == steering.label
    for before, after in zip(steering.terms, loaded.terms, strict=True):
        assert torch.equal(before.vector, after.vector)
        assert before.vector.dtype == after.vector.dtype
        assert before.operation == after.operation


def test_empty_steering_round_trips_and_is_null(tmp_path: Path):
    Steering(terms=(), label="plain").save(tmp_path / "plain.json")
    loaded = Steering.load(tmp_path / "plain.json")
    assert loaded.terms == () and loaded.label == "plain" and loaded.is_null


def test_load_refuses_a_json_whose_terms_field_was_deleted(tmp_path: Path):
    _, path = _saved(tmp_path)
    meta = json.loads(path.read_text())
    del meta["terms"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="field 'terms' must be a list of term objects") as info:
        Steering.load(tmp_path / "steering")
    assert str(path.resolve()) in str(info.value)


def test_load_refuses_reversed_terms_naming_the_first_term_that_disagrees(tmp_path: Path):
    _, path = _saved(tmp_path)
    meta = json.loads(path.read_text())
    meta["terms"].reverse()
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"term 0 \('loc'\): its tensor term_0 is not the vector"):
        Steering.load(tmp_path / "steering")


def test_load_refuses_an_alpha_edited_by_hand(tmp_path: Path):
    _, path = _saved(tmp_path)
    text = path.read_text()
    assert '"alpha": 0.25' in text
    path.write_text(text.replace('"alpha": 0.25', '"alpha": 5.0'))
    with pytest.raises(
        ValueError, match=r"term 0 \('en'\): its settings .* edited by hand"
    ) as info:
        Steering.load(tmp_path / "steering")
    assert str(path.resolve()) in str(info.value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.__setitem__("layer", 3), r"term 0 \('en'\): its settings"),
        (lambda t: t.__setitem__("operation", "scale"), r"term 0 \('en'\): its settings"),
        (lambda t: t.__setitem__("positions", "prompt"), r"term 0 \('en'\): its settings"),
        (lambda t: t["provenance"].__setitem__("lang", "zh"), r"term 0 \('en'\): its settings"),
        (
            lambda t: t.__setitem__("layer", "abc"),
            r"term 0 \('en'\): field 'layer' must be an integer",
        ),
        (lambda t: t.pop("alpha"), r"term 0 \('en'\): field 'alpha' missing"),
        (lambda t: t.__setitem__("alpha", "big"), r"term 0 \('en'\): .*alpha must be a number"),
    ],
)
def test_load_refuses_other_edits_naming_the_term(tmp_path: Path, edit, match):
    _, path = _saved(tmp_path)
    meta = json.loads(path.read_text())
    edit(meta["terms"][0])
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match):
        Steering.load(tmp_path / "steering")


def test_load_refuses_a_json_that_is_a_list(tmp_path: Path):
    _, path = _saved(tmp_path)
    path.write_text(json.dumps(json.loads(path.read_text())["terms"]))
    with pytest.raises(ValueError, match="expected a JSON object, got list") as info:
        Steering.load(tmp_path / "steering")
    assert str(path.resolve()) in str(info.value)


def test_load_refuses_tensors_of_another_steering_and_a_dropped_term(tmp_path: Path):
    _saved(tmp_path)
    other = surgical_steering(_vector(40), 1, 0.25, _vector(41), 2, 0.5)
    other.save(tmp_path / "other")
    (tmp_path / "steering.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(ValueError, match="fingerprints differ"):
        Steering.load(tmp_path / "steering")
    _, path = _saved(tmp_path)
    meta = json.loads(path.read_text())
    meta["terms"] = meta["terms"][:1]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"lists 1 term\(s\) but the tensors file holds 2"):
        Steering.load(tmp_path / "steering")


def test_load_names_a_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.safetensors"):
        Steering.load(tmp_path / "nothing")
