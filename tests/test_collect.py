"""collect_residuals against run_with_cache, and its invariances: batch size, batch companions,
left or right padding.

Tolerance. A prompt's vector may differ between batchings by float32 rounding only (padded
matmuls sum in another order). Measured: about 1e-7 of the vector's norm on the tiny model and
6e-7 on Gemma 3 270M. The tests hold every vector to a relative error of 1e-5 (max |diff| over
d_model divided by the reference vector's norm): far above rounding, far below any real bug
(left padding without a mask is off by about 1e3, SPEC §7). Because results agree to that
tolerance whatever the batching, ``batch_size`` is a runtime-only setting: it is not part of a
ResidualSet's settings nor of anything keyed on them.
"""

from __future__ import annotations

import pytest
import torch

from lens_steer.collect import collect_residuals
from lens_steer.tokens import encode

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

RELATIVE_TOLERANCE = 1e-5

# Lengths differ a lot and are not sorted, so batches pad and the length sort reorders rows.
PROMPTS = [
    "Seoul",
    "The capital of our country is Seoul.",
    "x",
    "Water boils at one hundred degrees.",
    "La moneda de nuestro",
]

GEMMA_PROMPTS = [
    "The capital of our country is",
    "우리나라의 수도는",
    "我们国家的首都是",
    "La moneda de nuestro país es el",
    "Ibu kota negara kami adalah Jakarta, dan mata uangnya adalah",
    "Η πρωτεύουσα της χώρας μας είναι η",
    "پایتخت کشور ما",
    "Water boils at one hundred degrees Celsius at sea level, which is why",
]


def _per_token(model, prompts, point="resid_post") -> list[torch.Tensor]:
    """``[layer, pos, d_model]`` of each prompt run alone and unpadded, from run_with_cache."""
    names = [f"blocks.{layer}.hook_{point}" for layer in range(model.cfg.n_layers)]
    out = []
    for text in prompts:
        tokens = torch.tensor([encode(model, text)])
        _, cache = model.run_with_cache(tokens, names_filter=names)
        out.append(torch.stack([cache[name][0] for name in names]))
    return out


def _reference(per_token: list[torch.Tensor], reduce) -> torch.Tensor:
    """``[prompt, layer, d_model]``: each prompt's ``[pos, d_model]`` reduced at every layer."""
    return torch.stack([torch.stack([reduce(layer) for layer in acts]) for acts in per_token])


@pytest.fixture
def clean(tiny_model) -> list[torch.Tensor]:
    return _per_token(tiny_model, PROMPTS)


def _assert_relative_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """max |diff| over d_model, relative to the reference vector's norm, for every prompt and layer."""
    error = (actual - expected).abs().amax(dim=-1) / expected.norm(dim=-1)
    assert float(error.max()) < RELATIVE_TOLERANCE, float(error.max())


def _hook_count(model) -> int:
    return sum(len(point._forward_hooks) for point in model.hook_dict.values())


# ---------------------------------------------------------------- values against run_with_cache


def test_last_position_equals_run_with_cache_at_every_layer(tiny_model, clean):
    res = collect_residuals(tiny_model, PROMPTS, batch_size=2, show_progress=False)
    expected = _reference(clean, lambda acts: acts[-1])
    assert res.acts.shape == (len(PROMPTS), tiny_model.cfg.n_layers, tiny_model.cfg.d_model)
    _assert_relative_close(res.acts, expected)


def test_single_prompt_batches_equal_run_with_cache_exactly(tiny_model, clean):
    res = collect_residuals(tiny_model, PROMPTS, batch_size=1, show_progress=False)
    expected = _reference(clean, lambda acts: acts[-1])
    torch.testing.assert_close(res.acts, expected, rtol=0, atol=0)


def test_mean_position_averages_real_tokens_without_bos(tiny_model, clean):
    res = collect_residuals(tiny_model, PROMPTS, position="mean", batch_size=3, show_progress=False)
    expected = _reference(clean, lambda acts: acts[1:].mean(dim=0))
    _assert_relative_close(res.acts, expected)
    with_bos = _reference(clean, lambda acts: acts.mean(dim=0))
    assert not torch.allclose(res.acts, with_bos, rtol=1e-3)  # BOS really is left out
    assert res.position == "mean"


@pytest.mark.parametrize("index", [-2, 0, 1])
def test_integer_position_indexes_real_tokens_bos_first(tiny_model, clean, index):
    keep = [i for i, text in enumerate(PROMPTS) if len(encode(tiny_model, text)) >= 3]
    prompts = [PROMPTS[i] for i in keep]
    res = collect_residuals(tiny_model, prompts, position=index, batch_size=4, show_progress=False)
    expected = _reference([clean[i] for i in keep], lambda acts: acts[index])
    _assert_relative_close(res.acts, expected)
    assert res.position == str(index)


@pytest.mark.parametrize("point", ["resid_pre", "resid_mid"])
def test_other_residual_points_equal_run_with_cache(tiny_model, point):
    res = collect_residuals(tiny_model, PROMPTS, point=point, batch_size=5, show_progress=False)
    expected = _reference(_per_token(tiny_model, PROMPTS, point), lambda acts: acts[-1])
    _assert_relative_close(res.acts, expected)
    assert res.hook_name == f"blocks.{{layer}}.hook_{point}"


# ---------------------------------------------------------------- invariances


@pytest.mark.parametrize("position", ["last", "mean"])
def test_result_does_not_depend_on_the_batch_size(tiny_model, position):
    runs = {
        size: collect_residuals(
            tiny_model, PROMPTS, position=position, batch_size=size, show_progress=False
        )
        for size in (1, 2, 5)
    }
    for size in (2, 5):
        _assert_relative_close(runs[size].acts, runs[1].acts)
        # batch_size is not a setting of the result: nothing recorded depends on it.
        assert runs[size].describe() == runs[1].describe()
        assert runs[size].ids == runs[1].ids
    assert "batch_size" not in runs[1].describe()


def test_result_does_not_depend_on_batch_companions(tiny_model):
    alone = collect_residuals(tiny_model, [PROMPTS[0]], show_progress=False)
    together = collect_residuals(tiny_model, PROMPTS, batch_size=len(PROMPTS), show_progress=False)
    _assert_relative_close(together.acts[:1], alone.acts)


@pytest.mark.parametrize("position", ["last", "mean", -2])
def test_left_and_right_padding_give_the_same_result(tiny_model, position):
    prompts = [p for p in PROMPTS if len(encode(tiny_model, p)) >= 2]
    left = collect_residuals(tiny_model, prompts, position=position, show_progress=False)
    right = collect_residuals(
        tiny_model, prompts, position=position, padding_side="right", show_progress=False
    )
    assert len({len(encode(tiny_model, p)) for p in prompts}) > 2  # the batch really pads
    _assert_relative_close(right.acts, left.acts)


# ---------------------------------------------------------------- what is run, what is kept


def test_layer_subset_keeps_the_asked_order_and_metadata(tiny_model):
    full = collect_residuals(tiny_model, PROMPTS, show_progress=False)
    part = collect_residuals(
        tiny_model, PROMPTS, layers=[3, 1], ids=list("abcde"), langs=["ko", "en", "en", "zh", "fa"],
        groups=list("ppqqr"), show_progress=False,
    )  # fmt: skip
    assert part.layers == (3, 1)
    torch.testing.assert_close(part.at_layer(3), full.acts[:, 3])
    torch.testing.assert_close(part.at_layer(1), full.acts[:, 1])
    assert part.ids == tuple("abcde") and part.groups == tuple("ppqqr")
    assert part.langs == ("ko", "en", "en", "zh", "fa")
    assert part.hook_name == "blocks.{layer}.hook_resid_post"
    assert part.model_id == "tiny-random"
    assert full.ids == ("0", "1", "2", "3", "4") and full.langs == ("",) * 5 and full.groups == ()


def test_forward_stops_after_last_needed_layer_and_never_unembeds(tiny_model, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("this module must not run")

    monkeypatch.setattr(tiny_model.blocks[2], "forward", fail)
    monkeypatch.setattr(tiny_model.unembed, "forward", fail)
    monkeypatch.setattr(tiny_model.ln_final, "forward", fail)
    res = collect_residuals(tiny_model, PROMPTS, layers=[0, 1], show_progress=False)
    assert res.acts.shape[1] == 2


def test_hooks_are_removed_after_success_and_after_an_error(tiny_model, monkeypatch):
    collect_residuals(tiny_model, PROMPTS, show_progress=False)
    assert _hook_count(tiny_model) == 0

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny_model.blocks[1], "forward", crash)
    with pytest.raises(RuntimeError, match="boom"):
        collect_residuals(tiny_model, PROMPTS, show_progress=False)
    assert _hook_count(tiny_model) == 0


def test_progress_bar_is_shown_and_can_be_silenced(tiny_model, capsys):
    collect_residuals(tiny_model, PROMPTS[:2], batch_size=1, show_progress=True)
    assert "collect residuals" in capsys.readouterr().err
    collect_residuals(tiny_model, PROMPTS[:2], batch_size=1, show_progress=False)
    assert "collect residuals" not in capsys.readouterr().err


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prompts": []}, ValueError, "empty"),
        ({"prompts": "one string"}, TypeError, "list of prompts"),
        ({"layers": [4]}, ValueError, r"layer\(s\) \[4\] outside \[0, 4\) for tiny-random"),
        ({"layers": [-1]}, ValueError, r"outside \[0, 4\)"),
        ({"layers": []}, ValueError, "no layers"),
        ({"layers": [1, 1]}, ValueError, "duplicate layers"),
        ({"ids": ["a"]}, ValueError, "ids has 1 entries for 2 prompts"),
        ({"langs": ["en", "ko", "zh"]}, ValueError, "langs has 3 entries for 2 prompts"),
        ({"groups": ["g"]}, ValueError, "groups has 1 entries for 2 prompts"),
        ({"position": "first"}, ValueError, "position must be"),
        ({"position": True}, ValueError, "position must be"),
        ({"position": 50}, ValueError, r"position=50 is outside prompt '\d', which has \d+ tokens"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"point": "attn_out"}, ValueError, "point must be"),
        ({"prompts": ["ok", ""]}, ValueError, r"empty prompt\(s\): \['1'\]"),
    ],
)
def test_bad_input_raises_a_clear_error(tiny_model, kwargs, error, message):
    args = {"prompts": ["Seoul", "The capital"], **kwargs}
    with pytest.raises(error, match=message):
        collect_residuals(tiny_model, args.pop("prompts"), show_progress=False, **args)


# ---------------------------------------------------------------- the real model


@pytest.mark.slow
def test_batched_equals_one_at_a_time_on_gemma(gemma):
    """Measured: max |diff| 1.2e-2 at layer 17 where norms reach 3.6e4, i.e. 6e-7 of the norm.

    Float32 resolution at |x| = 3e4 is about 4e-3, so differences are compared relative to the
    vector's norm (and to its layer's mean norm, the units alpha uses); at layer 0 also in
    absolute terms.
    """
    prompts = [GEMMA_PROMPTS[i] for i in (0, 1, 2, 4, 6, 7)]  # 4 scripts, 5 to 15 tokens
    for position in ("last", "mean"):
        batched = collect_residuals(
            gemma, prompts, position=position, batch_size=6, show_progress=False
        )
        single = torch.cat(
            [
                collect_residuals(gemma, [p], position=position, show_progress=False).acts
                for p in prompts
            ]
        )
        _assert_relative_close(batched.acts, single)
        diff = (batched.acts - single).abs()
        assert float(diff[:, 0].max()) < 1e-4
        layer_norm = single.norm(dim=-1).mean(dim=0)[None, :, None]
        assert float((diff / layer_norm).max()) < 1e-4


@pytest.mark.slow
def test_left_and_right_padding_give_the_same_last_token_on_gemma(gemma):
    lengths = {len(encode(gemma, p)) for p in GEMMA_PROMPTS}
    assert len(lengths) > 3  # the batch really pads
    left = collect_residuals(gemma, GEMMA_PROMPTS, batch_size=8, show_progress=False)
    right = collect_residuals(
        gemma, GEMMA_PROMPTS, batch_size=8, padding_side="right", show_progress=False
    )
    _assert_relative_close(right.acts, left.acts)
