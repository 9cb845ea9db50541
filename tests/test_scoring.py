"""The naive scoring batches: tokenization shared by options, left padding, where each
continuation token is read, logits from final residuals, and per-request reassembly."""

from __future__ import annotations

import pytest
import torch

from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    assemble_scores,
    encode_request,
    final_logits,
    prepare_batches,
    token_logprobs,
)
from lens_steer.tokens import encode

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

REQUESTS = [
    ScoringRequest("The capital of our country is", (" Seoul", " Washington D.C.", " X"), "cap"),
    ScoringRequest("Water boils at", (" one hundred degrees",), "water"),
    ScoringRequest("x", (" y", " zz top"), "short"),
]


def test_prompt_tokens_are_shared_exactly_by_all_options(tiny_model):
    (batch,) = prepare_batches(tiny_model, REQUESTS, batch_size=16)
    for row, (request_index, option_index) in enumerate(batch.rows):
        request = REQUESTS[request_index]
        real = batch.tokens.tokens[row][batch.tokens.attention_mask[row].bool()].tolist()
        continuation = encode(tiny_model, request.options[option_index], prepend_bos=False)
        assert real == encode(tiny_model, request.prompt) + continuation
        assert batch.n_continuation[row] == len(continuation)
    assert sorted(batch.rows) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]


def test_batches_are_sorted_longest_first_and_left_padded(tiny_model):
    batches = prepare_batches(tiny_model, REQUESTS, batch_size=2)
    assert [len(batch.rows) for batch in batches] == [2, 2, 2]
    lengths = [int(n) for batch in batches for n in batch.tokens.lengths]
    assert lengths == sorted(lengths, reverse=True)
    for batch in batches:
        assert batch.tokens.attention_mask[:, -1].all()
        assert batch.tokens.padding_side == "left"


def test_score_positions_predict_each_continuation_token(tiny_model):
    (batch,) = prepare_batches(tiny_model, REQUESTS, batch_size=16)
    width = batch.tokens.tokens.shape[1]
    for row, (request_index, option_index) in enumerate(batch.rows):
        continuation = encode(
            tiny_model, REQUESTS[request_index].options[option_index], prepend_bos=False
        )
        mine = batch.score_row == row
        positions = batch.score_pos[mine].tolist()
        assert positions == list(range(width - len(continuation) - 1, width - 1))
        assert batch.score_target[mine].tolist() == continuation
        assert batch.tokens.tokens[row, [p + 1 for p in positions]].tolist() == continuation


def test_final_logits_and_token_logprobs_equal_the_full_forward(tiny_model):
    tokens = torch.tensor([encode(tiny_model, "The capital of our country is Seoul.")])
    with torch.no_grad():
        logits, cache = tiny_model.run_with_cache(tokens, names_filter="blocks.3.hook_resid_post")
        resid = cache["blocks.3.hook_resid_post"][0]
        torch.testing.assert_close(final_logits(tiny_model, resid), logits[0], atol=1e-5, rtol=1e-5)
        targets = tokens[0, 1:]
        expected = torch.log_softmax(logits[0, :-1], dim=-1).gather(-1, targets[:, None])[:, 0]
        torch.testing.assert_close(
            token_logprobs(tiny_model, resid[:-1], targets), expected, atol=1e-5, rtol=0
        )


def test_assemble_scores_puts_batch_rows_back_in_request_order(tiny_model):
    batches = prepare_batches(tiny_model, REQUESTS, batch_size=4)
    values = [[float(10 * r + o) for r, o in batch.rows] for batch in batches]
    scores = assemble_scores(REQUESTS, batches, values)
    assert [score.id for score in scores] == ["cap", "water", "short"]
    assert [score.logprobs for score in scores] == [(0.0, 1.0, 2.0), (10.0,), (20.0, 21.0)]
    n_tokens = {
        (r, o): n
        for batch in batches
        for (r, o), n in zip(batch.rows, batch.n_continuation, strict=True)
    }
    assert scores[0].n_tokens == (n_tokens[0, 0], n_tokens[0, 1], n_tokens[0, 2])


def test_option_scores_values_sum_or_mean_per_token():
    score = OptionScores("a", (-2.0, -6.0), (1, 3))
    assert score.values().tolist() == [-2.0, -6.0]
    assert score.values(normalize=True).tolist() == [-2.0, -2.0]


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (
            ScoringRequest("Water boils at", (" degrees", ""), "water-7"),
            r"water-7: option 1 \(''\) tokenizes to nothing",
        ),
        (ScoringRequest("Hi", (), "item-x"), "item-x: no options"),
        (ScoringRequest("", (" a",), "item-y"), "item-y: empty prompt"),
        (ScoringRequest("", (" a",)), "request 0: empty prompt"),
        (
            ScoringRequest("a " * 600, (" b",), "long"),
            r"long: option 0 needs \d+ tokens, more than .* 512",
        ),
    ],
)
def test_requests_that_cannot_be_scored_name_the_item_and_option(tiny_model, request_, match):
    with pytest.raises(ValueError, match=match):
        encode_request(tiny_model, request_, 0)


def test_empty_request_list_and_bad_batch_size_are_refused(tiny_model):
    with pytest.raises(ValueError, match="No scoring requests"):
        prepare_batches(tiny_model, [])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        prepare_batches(tiny_model, REQUESTS, batch_size=0)
