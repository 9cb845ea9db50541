"""Option scoring by continuation log-probability, against a naive one-sequence-at-a-time reference."""

from __future__ import annotations

import pytest
import torch

from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    prepare_batches,
    score_options,
)
from lens_steer.tokens import encode

REQUESTS = [
    ScoringRequest("The capital of our country is", (" Seoul", " Washington D.C.", " X"), "cap"),
    ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴"), "ko"),
    ScoringRequest("我们国家的首都是", ("北京", "华盛顿特区", "东京"), "zh"),
    ScoringRequest("Water boils at", (" one hundred degrees",), "water"),
]


def naive_option_logprobs(model, request: ScoringRequest) -> list[float]:
    """Full logits of each prompt+option sequence alone, log_softmax, summed over the option."""
    prompt = encode(model, request.prompt)
    values = []
    for option in request.options:
        cont = encode(model, option, prepend_bos=False)
        tokens = torch.tensor([prompt + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(tokens).float(), dim=-1)[0]
        total = sum(logprobs[len(prompt) + j - 1, token].item() for j, token in enumerate(cont))
        values.append(total)
    return values


@pytest.mark.parametrize("share_prompts", [True, False])
def test_scores_equal_naive_full_forward_per_sequence(tiny_model, share_prompts):
    scores = score_options(
        tiny_model, REQUESTS, batch_size=3, show_progress=False, share_prompts=share_prompts
    )
    for request, score in zip(REQUESTS, scores, strict=True):
        assert score.id == request.id
        torch.testing.assert_close(
            torch.tensor(score.logprobs),
            torch.tensor(naive_option_logprobs(tiny_model, request)),
            atol=1e-4,
            rtol=0,
        )


@pytest.mark.parametrize("share_prompts", [True, False])
def test_scores_do_not_depend_on_batch_size(tiny_model, share_prompts):
    one = score_options(
        tiny_model, REQUESTS, batch_size=1, show_progress=False, share_prompts=share_prompts
    )
    many = score_options(
        tiny_model, REQUESTS, batch_size=64, show_progress=False, share_prompts=share_prompts
    )
    for a, b in zip(one, many, strict=True):
        assert a.n_tokens == b.n_tokens
        torch.testing.assert_close(
            torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4, rtol=0
        )


def test_token_counts_and_length_normalisation(tiny_model):
    (score,) = score_options(tiny_model, REQUESTS[:1], show_progress=False)
    expected = tuple(len(encode(tiny_model, o, prepend_bos=False)) for o in REQUESTS[0].options)
    assert score.n_tokens == expected
    assert score.values(normalize=True).tolist() == pytest.approx(
        [lp / n for lp, n in zip(score.logprobs, expected, strict=True)]
    )


def test_prompt_tokens_are_shared_exactly_by_all_options(tiny_model):
    batches = prepare_batches(tiny_model, REQUESTS[:2], batch_size=16)
    prompt = encode(tiny_model, REQUESTS[0].prompt)
    (batch,) = batches
    for row, (request_index, option_index) in enumerate(batch.rows):
        if request_index != 0:
            continue
        real = batch.tokens.tokens[row][batch.tokens.attention_mask[row].bool()].tolist()
        cont = encode(tiny_model, REQUESTS[0].options[option_index], prepend_bos=False)
        assert real == prompt + cont
        assert batch.n_continuation[row] == len(cont)


def test_batches_are_sorted_longest_first_and_left_padded(tiny_model):
    batches = prepare_batches(tiny_model, REQUESTS, batch_size=2)
    lengths = [int(n) for batch in batches for n in batch.tokens.lengths]
    assert lengths == sorted(lengths, reverse=True)
    for batch in batches:
        assert batch.tokens.attention_mask[:, -1].all()


def test_forward_hooks_are_applied_and_then_removed(tiny_model):
    def zero_resid(resid, hook):
        return torch.zeros_like(resid)

    hook_name = f"blocks.{tiny_model.cfg.n_layers - 1}.hook_resid_post"
    (hooked,) = score_options(
        tiny_model, REQUESTS[:1], fwd_hooks=[(hook_name, zero_resid)], show_progress=False
    )
    # A zero final residual gives uniform logits: each token has log-prob -log(d_vocab).
    uniform = -torch.log(torch.tensor(float(tiny_model.cfg.d_vocab)))
    expected = [float(uniform) * n for n in hooked.n_tokens]
    assert list(hooked.logprobs) == pytest.approx(expected, abs=1e-4)
    assert not any(hp.fwd_hooks for hp in tiny_model.hook_dict.values())
    (clean,) = score_options(tiny_model, REQUESTS[:1], show_progress=False)
    assert clean.logprobs != hooked.logprobs


def test_shared_prompts_equal_concatenated_sequences_under_a_position_independent_hook(
    tiny_model,
):
    direction = torch.randn(tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(3))

    def add_everywhere(resid, hook):
        return resid + 2.0 * direction

    hooks = [("blocks.1.hook_resid_post", add_everywhere)]
    shared = score_options(
        tiny_model, REQUESTS, fwd_hooks=hooks, share_prompts=True, show_progress=False
    )
    whole = score_options(
        tiny_model, REQUESTS, fwd_hooks=hooks, share_prompts=False, show_progress=False
    )
    clean = score_options(tiny_model, REQUESTS, show_progress=False)
    for a, b, c in zip(shared, whole, clean, strict=True):
        assert a.n_tokens == b.n_tokens
        torch.testing.assert_close(
            torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4, rtol=0
        )
        assert max(abs(x - y) for x, y in zip(a.logprobs, c.logprobs, strict=True)) > 1e-3
    assert not any(hp.fwd_hooks for hp in tiny_model.hook_dict.values())


def test_option_that_tokenizes_to_nothing_names_item_and_option(tiny_model):
    bad = ScoringRequest("Water boils at", (" degrees", ""), "water-7")
    with pytest.raises(ValueError, match=r"water-7: option 1 \(''\) tokenizes to nothing"):
        score_options(tiny_model, [bad], show_progress=False)


def test_empty_inputs_are_refused(tiny_model):
    with pytest.raises(ValueError, match="No scoring requests"):
        score_options(tiny_model, [], show_progress=False)
    with pytest.raises(ValueError, match="item-x: no options"):
        score_options(tiny_model, [ScoringRequest("Hi", (), "item-x")], show_progress=False)
    with pytest.raises(ValueError, match="item-y: empty prompt"):
        score_options(tiny_model, [ScoringRequest("", (" a",), "item-y")], show_progress=False)


def test_option_scores_values():
    score = OptionScores("a", (-2.0, -6.0), (1, 3))
    assert score.values().tolist() == [-2.0, -6.0]
    assert score.values(normalize=True).tolist() == [-2.0, -2.0]


@pytest.mark.slow
@pytest.mark.parametrize("share_prompts", [True, False])
def test_scores_equal_naive_on_gemma_in_three_languages(gemma, share_prompts):
    requests = [
        ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴", " 워싱턴 D.C."), "ko"),
        ScoringRequest("我们国家的货币是", ("人民币", "美元"), "zh"),
        ScoringRequest(
            "Question: What is the chemical symbol of gold?\nAnswer:", (" Au", " Ag", " Fe"), "en"
        ),
    ]
    scores = score_options(
        gemma, requests, batch_size=8, show_progress=False, share_prompts=share_prompts
    )
    assert max(n for score in scores for n in score.n_tokens) > 1  # multi-token options too
    for request, score in zip(requests, scores, strict=True):
        torch.testing.assert_close(
            torch.tensor(score.logprobs),
            torch.tensor(naive_option_logprobs(gemma, request)),
            atol=1e-4,
            rtol=0,
        )
    assert scores[0].values().argmax() == 0  # the embedded model localizes "our country" in Korean
