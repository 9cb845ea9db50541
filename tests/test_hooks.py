"""lens_steer.hooks against independent references: manual residual edits, hand projections and
the position counting of KV-cache generation."""

from __future__ import annotations

import pytest
import torch

from lens_steer.hooks import (
    add_vector_hook,
    multi_layer_hooks,
    project_out_hook,
    resid_hook_name,
    scale_direction_hook,
    steering_hooks,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

TEXT = "The capital of our country is Seoul."
D_MODEL = 32


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return tiny_model.to_tokens(TEXT)


@pytest.fixture(scope="module")
def vector():
    return torch.randn(D_MODEL, generator=torch.Generator().manual_seed(1))


def _edited_at(model, tokens, layer, hook, point="resid_post"):
    """The hook point's activation as the hook leaves it, and the clean one."""
    name = resid_hook_name(layer, point)
    _, clean = model.run_with_cache(tokens, names_filter=name)
    with steering_hooks(model, [(name, hook)]):
        _, steered = model.run_with_cache(tokens, names_filter=name)
    return steered[name], clean[name]


def _changed_positions(model, tokens, layer, hook) -> list[int]:
    steered, clean = _edited_at(model, tokens, layer, hook)
    return torch.nonzero((steered != clean).any(-1)[0]).flatten().tolist()


def test_resid_hook_name_formats_block_point():
    assert resid_hook_name(6) == "blocks.6.hook_resid_post"
    assert resid_hook_name(0, "resid_pre") == "blocks.0.hook_resid_pre"


def test_zero_alpha_gives_logits_identical_to_clean(tiny_model, tokens, vector):
    clean = tiny_model(tokens)
    hooks = [(resid_hook_name(layer), add_vector_hook(vector, alpha=0.0)) for layer in range(4)]
    with steering_hooks(tiny_model, hooks) as steered:
        assert torch.equal(steered(tokens), clean)


def test_add_vector_changes_nothing_before_layer_and_matches_manual_edit(
    tiny_model, tokens, vector
):
    layer, alpha = 1, 3.0
    names = [resid_hook_name(n) for n in range(4)]
    clean_logits, clean = tiny_model.run_with_cache(tokens, names_filter=names)
    with steering_hooks(tiny_model, [(names[layer], add_vector_hook(vector, alpha=alpha))]):
        steered_logits, steered = tiny_model.run_with_cache(tokens, names_filter=names)
    for earlier in range(layer):
        assert torch.equal(steered[names[earlier]], clean[names[earlier]])
    edited = clean[names[layer]] + alpha * vector
    torch.testing.assert_close(steered[names[layer]], edited, atol=1e-6, rtol=0)
    manual_logits = tiny_model(edited, start_at_layer=layer + 1)
    torch.testing.assert_close(steered_logits, manual_logits, atol=1e-5, rtol=0)
    assert not torch.allclose(steered_logits, clean_logits, atol=1e-3)


def test_two_layer_hooks_equal_sequential_manual_edits(tiny_model, tokens, vector):
    other = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(2))
    first, second = 0, 2
    with steering_hooks(tiny_model, multi_layer_hooks({second: 2 * other, first: vector})):
        steered = tiny_model(tokens)
    resid = tiny_model(tokens, stop_at_layer=first + 1) + vector
    resid = tiny_model(resid, start_at_layer=first + 1, stop_at_layer=second + 1) + 2 * other
    manual = tiny_model(resid, start_at_layer=second + 1)
    torch.testing.assert_close(steered, manual, atol=1e-5, rtol=0)


def test_hooks_are_removed_after_an_exception_inside_the_context(tiny_model, tokens, vector):
    clean = tiny_model(tokens)
    name = resid_hook_name(2)
    with pytest.raises(RuntimeError, match="boom"):
        with steering_hooks(tiny_model, [(name, add_vector_hook(vector, alpha=5.0))]):
            assert len(tiny_model.hook_dict[name]._forward_hooks) == 1
            raise RuntimeError("boom")
    assert len(tiny_model.hook_dict[name]._forward_hooks) == 0
    assert torch.equal(tiny_model(tokens), clean)


def test_hooks_are_removed_after_an_exception_raised_by_a_hook(tiny_model, tokens):
    clean = tiny_model(tokens)
    name = resid_hook_name(1)
    with pytest.raises(ValueError, match=r"blocks\.1\.hook_resid_post.*width 7.*d_model 32"):
        with steering_hooks(tiny_model, [(name, add_vector_hook(torch.ones(7)))]) as steered:
            steered(tokens)
    assert all(len(hp._forward_hooks) == 0 for hp in tiny_model.hook_dict.values())
    assert torch.equal(tiny_model(tokens), clean)


def test_prompt_positions_edit_only_positions_before_prompt_length(tiny_model, tokens, vector):
    hook = add_vector_hook(vector, alpha=2.0, positions="prompt", prompt_length=5)
    steered, clean = _edited_at(tiny_model, tokens, 1, hook)
    torch.testing.assert_close(steered[:, :5], clean[:, :5] + 2.0 * vector, atol=1e-6, rtol=0)
    assert torch.equal(steered[:, 5:], clean[:, 5:])


def test_generated_positions_edit_only_positions_from_prompt_length(tiny_model, tokens, vector):
    hook = add_vector_hook(vector, alpha=2.0, positions="generated", prompt_length=5)
    steered, clean = _edited_at(tiny_model, tokens, 1, hook)
    assert torch.equal(steered[:, :5], clean[:, :5])
    torch.testing.assert_close(steered[:, 5:], clean[:, 5:] + 2.0 * vector, atol=1e-6, rtol=0)


def test_index_positions_are_absolute_and_negative_ones_count_from_prompt_end(
    tiny_model, tokens, vector
):
    def changed(positions, prompt_length=None):
        hook = add_vector_hook(vector, positions=positions, prompt_length=prompt_length)
        return _changed_positions(tiny_model, tokens, 0, hook)

    n_pos = tokens.shape[1]
    assert changed(3) == [3]
    assert changed([0, 2, 4]) == [0, 2, 4]
    assert changed(-1) == [n_pos - 1]
    assert changed(-1, prompt_length=5) == [4]
    assert changed([-2, 7], prompt_length=5) == [3, 7]


def test_bool_mask_positions_edit_exactly_the_masked_entries(tiny_model, vector):
    batch = tiny_model.to_tokens(["The capital", "Water boils"], padding_side="left")
    mask = torch.zeros(batch.shape, dtype=torch.bool)
    mask[0, 1] = mask[1, 2] = mask[1, -1] = True
    hook = add_vector_hook(vector, positions=mask)
    steered, clean = _edited_at(tiny_model, batch, 0, hook)
    assert torch.equal((steered != clean).any(-1), mask)


def test_generate_with_kv_cache_steers_each_new_position(tiny_model, tokens, vector):
    prompt_length = tokens.shape[1]
    inner = add_vector_hook(vector, alpha=5.0, positions="generated", prompt_length=prompt_length)
    calls: list[tuple[int, list[bool]]] = []

    def recording(activation, hook):
        out = inner(activation, hook)
        calls.append((activation.shape[1], (out != activation).any(-1)[0].tolist()))
        return out

    with steering_hooks(tiny_model, [(resid_hook_name(1), recording)]):
        tiny_model.generate(
            tokens, max_new_tokens=4, do_sample=False, stop_at_eos=False, verbose=False
        )
    assert calls[0] == (prompt_length, [False] * prompt_length)
    assert calls[1:] == [(1, [True])] * 3


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_generate_with_and_without_kv_cache_agree_under_steering(
    tiny_model, tokens, vector, positions
):
    def run(use_cache: bool, alpha: float):
        hook = add_vector_hook(
            vector, alpha=alpha, positions=positions, prompt_length=tokens.shape[1]
        )
        with steering_hooks(tiny_model, [(resid_hook_name(1), hook)]):
            return tiny_model.generate(
                tokens,
                max_new_tokens=6,
                do_sample=False,
                stop_at_eos=False,
                use_past_kv_cache=use_cache,
                verbose=False,
            )

    cached, uncached = run(True, 8.0), run(False, 8.0)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, run(True, 0.0))


def test_a_new_batch_size_restarts_the_position_count(tiny_model, vector):
    hook = add_vector_hook(vector, positions="generated", prompt_length=2)
    first = torch.zeros(1, 1, D_MODEL)
    assert torch.equal(hook(first, None), first)  # first call: position 0, prompt
    assert torch.equal(hook(first, None), first)  # cached step: position 1, prompt
    assert not torch.equal(hook(first, None), first)  # cached step: position 2, generated
    wider = torch.zeros(2, 1, D_MODEL)
    assert torch.equal(hook(wider, None), wider)  # a new batch restarts at position 0


def test_project_out_removes_the_direction_and_keeps_the_orthogonal_part(tiny_model, tokens):
    direction = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(3))
    steered, clean = _edited_at(
        tiny_model, tokens, 2, project_out_hook(direction, positions=[1, 3, 4])
    )
    unit = (direction / direction.norm()).double()
    component = clean.double() @ unit
    expected = clean.double() - component.unsqueeze(-1) * unit
    chosen = [1, 3, 4]
    others = [p for p in range(tokens.shape[1]) if p not in chosen]
    scale = clean.abs().max().item()
    assert (steered[0, chosen].double() @ unit).abs().max() < 1e-6 * scale
    torch.testing.assert_close(
        steered.double()[0, chosen], expected[0, chosen], atol=1e-5 * scale, rtol=0
    )
    assert torch.equal(steered[0, others], clean[0, others])


def test_scale_direction_factor_one_is_identity_and_zero_is_project_out(tiny_model, tokens):
    direction = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(4))
    activation = tiny_model.run_with_cache(tokens, names_filter="blocks.2.hook_resid_post")[1][
        "blocks.2.hook_resid_post"
    ]
    assert torch.equal(scale_direction_hook(direction, 1.0)(activation, None), activation)
    assert torch.equal(
        scale_direction_hook(direction, 0.0)(activation, None),
        project_out_hook(direction)(activation, None),
    )
    unit = direction / direction.norm()
    tripled = scale_direction_hook(direction, 3.0)(activation, None)
    torch.testing.assert_close(tripled @ unit, 3.0 * (activation @ unit), atol=1e-4, rtol=1e-5)


def test_unknown_hook_point_error_names_the_point_and_layers(tiny_model, vector):
    with pytest.raises(ValueError, match=r"blocks\.9\.hook_resid_post.*n_layers=4"):
        with steering_hooks(tiny_model, multi_layer_hooks({9: vector})):
            pass
    assert all(len(hp._forward_hooks) == 0 for hp in tiny_model.hook_dict.values())


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda v: add_vector_hook(v, alpha=float("nan")), ValueError, "alpha must be finite"),
        (lambda v: add_vector_hook(v * float("inf")), ValueError, "NaN or inf"),
        (lambda v: add_vector_hook(v.unsqueeze(0)), ValueError, "1-D"),
        (lambda v: add_vector_hook(v, positions="middle"), ValueError, "Unknown positions"),
        (lambda v: add_vector_hook(v, positions="prompt"), ValueError, "needs prompt_length"),
        (lambda v: add_vector_hook(v, positions=[]), ValueError, "empty"),
        (lambda v: add_vector_hook(v, positions=torch.ones(2, 3)), ValueError, "bool tensor"),
        (lambda v: add_vector_hook(v, positions=1.5), TypeError, "positions must be"),
        (lambda v: add_vector_hook(v, prompt_length=0), ValueError, "prompt_length"),
        (lambda v: project_out_hook(torch.zeros_like(v)), ValueError, "zero vector"),
        (lambda v: scale_direction_hook(v, float("inf")), ValueError, "factor"),
        (lambda v: multi_layer_hooks({}), ValueError, "empty"),
        (lambda v: multi_layer_hooks({-1: v}), ValueError, "layer must be >= 0"),
        (lambda v: resid_hook_name(1, "resid_middle"), ValueError, "Unknown hook point"),
    ],
)
def test_bad_input_raises_a_clear_error(vector, build, error, match):
    with pytest.raises(error, match=match):
        build(vector)


def test_index_before_prompt_start_and_mask_batch_mismatch_raise_at_call(vector):
    activation = torch.zeros(2, 4, D_MODEL)
    with pytest.raises(IndexError, match="position index -6.*4-token prompt"):
        add_vector_hook(vector, positions=-6, prompt_length=4)(activation, None)
    mask = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="3 rows but the batch has 2"):
        add_vector_hook(vector, positions=mask)(activation, None)


def test_hooks_compose_with_run_with_hooks(tiny_model, tokens, vector):
    hooks = multi_layer_hooks({0: vector, 3: -vector}, positions=[2, -1])
    with steering_hooks(tiny_model, hooks) as steered:
        expected = steered(tokens)
    fresh = multi_layer_hooks({0: vector, 3: -vector}, positions=[2, -1])
    assert torch.equal(tiny_model.run_with_hooks(tokens, fwd_hooks=fresh), expected)
    assert not torch.equal(tiny_model(tokens), expected)


def test_bool_mask_columns_past_the_prompt_steer_cached_generation_steps(vector):
    mask = torch.tensor([[False, True, False, True], [True, False, False, False]])
    hook = add_vector_hook(vector, positions=mask)
    prompt = torch.zeros(2, 2, D_MODEL)
    assert torch.equal((hook(prompt, None) != prompt).any(-1), mask[:, :2])
    step = torch.zeros(2, 1, D_MODEL)
    touched = [(hook(step, None) != step).any(-1)[:, 0].tolist() for _ in range(3)]
    assert touched == [[False, False], [True, False], [False, False]]  # positions 2, 3, 4


# ---------------------------------------------------------------- indices outside the sequence


@pytest.mark.parametrize("positions", [100, [1, 100], [2, -1, 40]])
def test_index_past_the_end_of_the_sequence_raises_naming_hook_index_and_length(
    tiny_model, tokens, vector, positions
):
    """The defect: ``positions=len + 100`` did nothing and ``[1, len + 100]`` edited position 1 only."""
    n_pos = tokens.shape[1]
    far = max(p for p in ([positions] if isinstance(positions, int) else positions))
    hook = add_vector_hook(vector, positions=positions)
    name = resid_hook_name(1)
    with pytest.raises(
        IndexError, match=rf"blocks\.1\.hook_resid_post: position index {far} .*{n_pos}-token"
    ):
        with steering_hooks(tiny_model, [(name, hook)]) as steered:
            steered(tokens)
    assert all(len(hp._forward_hooks) == 0 for hp in tiny_model.hook_dict.values())


def test_index_one_past_the_last_position_raises_and_the_last_one_does_not(vector):
    activation = torch.zeros(1, 5, D_MODEL)
    edited = add_vector_hook(vector, positions=4)(activation, None)
    assert (edited != activation).any(-1)[0].tolist() == [False] * 4 + [True]
    with pytest.raises(IndexError, match=r"hook: position index 5 .*5-token sequence"):
        add_vector_hook(vector, positions=5)(activation, None)
    with pytest.raises(IndexError, match=r"position index 5 .*5-token"):
        project_out_hook(vector, positions=[0, 5])(activation, None)


def test_index_of_a_generated_token_is_accepted_when_the_prompt_length_is_given(
    tiny_model, tokens, vector
):
    """With ``prompt_length``, indices past the prompt address generated tokens (KV cache)."""
    prompt_length = tokens.shape[1]
    target = prompt_length + 2
    inner = add_vector_hook(vector, alpha=5.0, positions=target, prompt_length=prompt_length)
    calls: list[list[bool]] = []

    def recording(activation, hook):
        out = inner(activation, hook)
        calls.append((out != activation).any(-1)[0].tolist())
        return out

    with steering_hooks(tiny_model, [(resid_hook_name(1), recording)]):
        tiny_model.generate(
            tokens, max_new_tokens=4, do_sample=False, stop_at_eos=False, verbose=False
        )
    # The prompt step, then positions prompt_length, +1, +2 (edited): +3 is never run.
    assert calls == [[False] * prompt_length, [False], [False], [True]]
