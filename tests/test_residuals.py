"""ResidualSet: a value that checks itself, selects and stacks prompts, prints short, saves exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lens_steer.residuals import ResidualSet, check_compatible

HOOK = "blocks.{layer}.hook_resid_post"


def _toy_set() -> ResidualSet:
    acts = torch.arange(4 * 2 * 3, dtype=torch.float32).reshape(4, 2, 3)
    return ResidualSet(
        acts, (5, 7), ("a", "b", "c", "d"), ("en", "ko", "en", "ko"), HOOK, "last", "toy",
        ("g1", "g1", "g2", "g2"),
    )  # fmt: skip


def _big_set(n_prompts: int = 300, n_layers: int = 18, d_model: int = 640) -> ResidualSet:
    return ResidualSet(
        torch.randn(n_prompts, n_layers, d_model, generator=torch.Generator().manual_seed(0)),
        tuple(range(n_layers)),
        tuple(f"par-{i}" for i in range(n_prompts)),
        tuple(("en", "ko", "zh")[i % 3] for i in range(n_prompts)),
        HOOK,
        "mean",
        "google/gemma-3-270m",
    )


# ---------------------------------------------------------------- construction checks


def test_residual_set_rejects_nan_and_inconsistent_fields():
    acts = torch.zeros(2, 3, 4)
    acts[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf.*index \(1, 2, 0\)"):
        ResidualSet(acts, (0, 1, 2), ("a", "b"), ("en", "ko"), "h", "last", "m")
    with pytest.raises(ValueError, match="3 layers for an acts layer axis of 2"):
        ResidualSet(torch.zeros(2, 2, 4), (0, 1, 2), ("a", "b"), ("en", "ko"), "h", "last", "m")
    with pytest.raises(ValueError, match="langs has 1 entries for 2 prompts"):
        ResidualSet(torch.zeros(2, 3, 4), (0, 1, 2), ("a", "b"), ("en",), "h", "last", "m")
    with pytest.raises(ValueError, match="groups has 3 entries for 2 prompts"):
        ResidualSet(
            torch.zeros(2, 1, 4), (0,), ("a", "b"), ("en", "ko"), "h", "last", "m", ("g",) * 3
        )
    with pytest.raises(ValueError, match="duplicate layers"):
        ResidualSet(torch.zeros(2, 2, 4), (1, 1), ("a", "b"), ("en", "ko"), "h", "last", "m")
    with pytest.raises(ValueError, match=r"must be \[prompt, layer, d_model\], got \(2, 4\)"):
        ResidualSet(torch.zeros(2, 4), (0,), ("a", "b"), ("en", "ko"), "h", "last", "m")


def test_repr_is_one_short_line_without_tensor_values():
    big = _big_set()
    text = repr(big)
    assert text == (
        "ResidualSet(300 prompts [en,ko,zh] x layers 0..17 x d_model 640, "
        "blocks.{layer}.hook_resid_post, position=mean, model=google/gemma-3-270m)"
    )
    assert "tensor" not in text and "\n" not in text
    assert str(big) == text  # print() shows the same line, not 3.5 million numbers
    assert repr(_toy_set()).startswith("ResidualSet(4 prompts [en,ko] x layers 5,7 x d_model 3,")


def test_describe_is_json_settings_without_tensors():
    described = _toy_set().describe()
    assert described == {
        "model_id": "toy", "hook_name": HOOK, "position": "last", "layers": [5, 7],
        "n_prompts": 4, "d_model": 3,
    }  # fmt: skip
    json.dumps(described)


# ---------------------------------------------------------------- selecting and stacking


def test_select_where_lang_and_at_layer_pick_the_right_rows():
    res = _toy_set()
    picked = res.select([2, 0])
    assert picked.ids == ("c", "a") and picked.groups == ("g2", "g1")
    assert picked.langs == ("en", "en")
    torch.testing.assert_close(picked.acts, res.acts[[2, 0]])
    masked = res.select(torch.tensor([False, True, False, True]))
    assert masked.ids == ("b", "d")
    assert res.where_lang("ko").ids == ("b", "d")
    torch.testing.assert_close(res.at_layer(7), res.acts[:, 1])
    assert res.layer_index(7) == 1
    with pytest.raises(KeyError, match="layer 6 was not collected"):
        res.at_layer(6)
    with pytest.raises(ValueError, match="no prompts in language 'fa'"):
        res.where_lang("fa")
    with pytest.raises(IndexError, match="out of range for 4 prompts"):
        res.select([4])
    with pytest.raises(ValueError, match="mask of shape"):
        res.select(torch.tensor([True, False]))
    assert res.select([]).n_prompts == 0


def test_concat_stacks_compatible_sets_and_refuses_mismatched_ones():
    res = _toy_set()
    both = ResidualSet.concat([res, res.select([0])])
    assert both.n_prompts == 5 and both.ids[-1] == "a" and both.groups[-1] == "g1"
    torch.testing.assert_close(both.acts[4], res.acts[0])
    other = ResidualSet(torch.zeros(1, 2, 5), (5, 7), ("z",), ("en",), HOOK, "last", "toy")
    with pytest.raises(ValueError, match="mismatched ResidualSets: d_model 3 vs 5"):
        ResidualSet.concat([res, other])
    no_groups = ResidualSet(torch.zeros(1, 2, 3), (5, 7), ("z",), ("en",), HOOK, "last", "toy")
    assert ResidualSet.concat([res, no_groups]).groups == ()  # groups kept only when all have them
    with pytest.raises(ValueError, match="no ResidualSets"):
        ResidualSet.concat([])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_id", "other", "model_id 'toy' vs 'other'"),
        ("hook_name", "blocks.{layer}.hook_resid_pre", "hook_name"),
        ("position", "mean", "position 'last' vs 'mean'"),
        ("layers", (5, 8), r"layers \(5, 7\) vs \(5, 8\)"),
    ],
)
def test_check_compatible_names_the_field_that_differs(field, value, message):
    res = _toy_set()
    other = ResidualSet(**{**res.__dict__, field: value})
    with pytest.raises(ValueError, match=f"mismatched ResidualSets: {message}"):
        check_compatible(res, other)


def test_mean_norm_and_std_equal_a_hand_computation():
    res = _toy_set()
    expected_norm = torch.tensor(
        [sum(float(res.acts[p, slot].norm()) for p in range(4)) / 4 for slot in range(2)]
    )
    torch.testing.assert_close(res.mean_norm(), expected_norm, rtol=1e-6, atol=0)
    # Rows are 0..23 in steps: each column has values x, x+6, x+12, x+18 (sample std 7.746).
    torch.testing.assert_close(res.std(), torch.full((2, 3), 7.745967), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="at least 2 prompts"):
        res.select([0]).std()


# ---------------------------------------------------------------- saving and loading


def test_save_and_load_round_trip_exactly(tmp_path: Path):
    res = _big_set(n_prompts=20, n_layers=3, d_model=16)
    res = ResidualSet(**{**res.__dict__, "groups": tuple(f"g{i // 2}" for i in range(20))})
    paths = res.save(tmp_path / "sub" / "res")
    assert paths == {
        "tensors": tmp_path / "sub" / "res.safetensors",
        "metadata": tmp_path / "sub" / "res.json",
    }
    back = ResidualSet.load(tmp_path / "sub" / "res.safetensors")
    assert torch.equal(back.acts, res.acts) and back.acts.dtype == torch.float32
    for name in ("layers", "ids", "langs", "groups", "hook_name", "position", "model_id"):
        assert getattr(back, name) == getattr(res, name), name
    assert not list((tmp_path / "sub").glob("*.tmp"))  # no temporary files left behind


def test_load_detects_a_sidecar_of_other_tensors_missing_files_and_a_foreign_format(
    tmp_path: Path,
):
    res = _toy_set()
    res.save(tmp_path / "a")
    res.select([0, 1]).save(tmp_path / "b")
    (tmp_path / "a.json").write_text((tmp_path / "b.json").read_text())
    with pytest.raises(ValueError, match="does not describe"):
        ResidualSet.load(tmp_path / "a")
    (tmp_path / "b.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.json"):
        ResidualSet.load(tmp_path / "b")
    meta = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="format 'other'"):
        ResidualSet.load(tmp_path / "a")


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_load_of_a_truncated_safetensors_is_a_value_error_naming_its_full_path(tmp_path, keep):
    _big_set(n_prompts=8, n_layers=2, d_model=64).save(tmp_path / "res")
    tensors = tmp_path / "res.safetensors"
    data = tensors.read_bytes()
    tensors.write_bytes(data[: int(len(data) * keep)])  # a full disk, a killed copy
    with pytest.raises(ValueError) as info:
        ResidualSet.load(tmp_path / "res")
    assert str(tensors.resolve()) in str(info.value)
    assert "truncated" in str(info.value)
