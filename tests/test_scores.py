"""Transfer, localization and gap-closure scores: hand-computed values, intervals, seeds, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens_steer.data.records import BlendAnswer, BlendItem, LocalizationItem, TransferItem
from lens_steer.evaluate.scores import (
    Score,
    bootstrap_interval,
    gap_closure,
    gap_closure_from_logprobs,
    localization_requests,
    localization_score,
    localization_share,
    transfer_accuracy,
    transfer_requests,
    transfer_score,
)
from lens_steer.evaluate.scoring import OptionScores
from lens_steer.tokens import encode


def opts(*logprobs: float, n_tokens: tuple[int, ...] | None = None) -> OptionScores:
    return OptionScores("item", tuple(logprobs), n_tokens or (1,) * len(logprobs))


def test_transfer_accuracy_counts_strict_wins_and_ties_as_wrong():
    scores = [
        opts(-1.0, -2.0, -3.0),  # right (answer 0)
        opts(-2.0, -1.0, -3.0),  # wrong
        opts(-1.0, -1.0, -5.0),  # tie at the top: wrong
        opts(-4.0, -3.0, -0.5),  # right (answer 2)
    ]
    score = transfer_accuracy(scores, [0, 0, 0, 2], n_bootstrap=200)
    assert score.value == 0.5
    assert score.n == 4 and score.metric == "transfer_accuracy"
    assert score.ci_low <= score.value <= score.ci_high


def test_transfer_accuracy_length_normalised_changes_the_winner():
    # Option 0: -4 over 4 tokens (mean -1); option 1: -3 over 1 token (mean -3).
    scores = [opts(-4.0, -3.0, n_tokens=(4, 1))]
    assert transfer_accuracy(scores, [0], n_bootstrap=0).value == 0.0
    normalised = transfer_accuracy(scores, [0], normalize=True, n_bootstrap=0)
    assert normalised.value == 1.0 and normalised.settings["normalize"] is True


def test_localization_share_is_strict():
    scores = [opts(-1.0, -2.0), opts(-2.0, -1.0), opts(-1.5, -1.5), opts(-0.1, -9.0), opts(-3, -2)]
    assert localization_share(scores, n_bootstrap=0).value == pytest.approx(2 / 5)


def test_gap_closure_is_ratio_of_sums_over_items_with_a_gap():
    implicit = [-5.0, -4.0, -3.0, -2.0]
    explicit = [-1.0, -2.0, -3.05, -2.5]  # gaps 4, 2, -0.05 (skipped), -0.5 (skipped)
    steered = [-3.0, -3.5, -1.0, 0.0]
    score = gap_closure_from_logprobs(steered, implicit, explicit, min_gap=0.1, n_bootstrap=300)
    assert score.value == pytest.approx((2.0 + 0.5) / (4.0 + 2.0))
    assert score.n == 2 and score.settings["n_skipped"] == 2
    assert score.ci_low <= score.value <= score.ci_high


def test_gap_closure_with_no_gap_anywhere_is_an_error():
    with pytest.raises(ValueError, match="no item has an explicit-implicit gap"):
        gap_closure_from_logprobs([-1.0], [-1.0], [-1.0])


def test_bootstrap_interval_matches_the_normal_approximation_of_a_proportion():
    rng = np.random.default_rng(5)
    values = (rng.random(400) < 0.3).astype(float)
    low, high = bootstrap_interval(values, lambda s: s.mean(axis=1), n_bootstrap=2000, seed=1)
    p = values.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / len(values))
    assert low < p < high
    assert (high - low) == pytest.approx(2 * half, rel=0.15)


def test_same_seed_same_interval_other_seed_other_interval():
    scores = [opts(-1.0, -2.0), opts(-2.0, -1.0), opts(-1.0, -3.0)] * 5
    a = localization_share(scores, seed=3, n_bootstrap=100)
    b = localization_share(scores, seed=3, n_bootstrap=100)
    assert a == b
    draws = {localization_share(scores, seed=s, n_bootstrap=20).ci_low for s in range(8)}
    assert len(draws) > 1


def test_empty_set_is_an_error():
    with pytest.raises(ValueError, match="localization_share: no items"):
        localization_share([])


def test_score_round_trips_through_json():
    score = transfer_accuracy([opts(-1.0, -2.0)], [0], n_bootstrap=10, settings={"layer": 6})
    restored = Score.from_json(json.loads(json.dumps(score.to_json())))
    assert restored == score and restored.settings["layer"] == 6


# --- model-level, on the tiny model with hand-built records ---------------------------------

TRANSFER = [
    TransferItem("t1-ko", "t1", "ko", "eval", "chem", "금의 기호는?", ("Au", "Ag", "Fe"), 0),
    TransferItem("t2-ko", "t2", "ko", "eval", "geo", "물의 끓는점은?", ("100", "50"), 1),
    TransferItem("t3-ko", "t3", "ko", "fit", "geo", "하늘은?", ("파랑", "빨강"), 0),
    TransferItem("t1-en", "t1", "en", "eval", "chem", "Symbol of gold?", ("Au", "Ag", "Fe"), 0),
    TransferItem("t2-en", "t2", "en", "eval", "geo", "Water boils at?", ("100", "50"), 1),
]
LOCALIZATION = [
    LocalizationItem(
        "l1-ko",
        "l1",
        "ko",
        "eval",
        "capital",
        "우리나라의 수도는",
        "대한민국의 수도는",
        "서울",
        "워싱턴",
        "The capital of our country is",
        "The capital of Korea is",
        "Seoul",
        "Washington",
    ),
    LocalizationItem(
        "l2-ko",
        "l2",
        "ko",
        "eval",
        "money",
        "우리나라의 화폐는",
        "대한민국의 화폐는",
        "원",
        "달러",
        "The currency of our country is the",
        "The currency of Korea is the",
        "won",
        "dollar",
    ),
]


def reference_logprob(model, prompt: str, continuation: str) -> float:
    ids = encode(model, prompt) + encode(model, continuation, prepend_bos=False)
    start = len(encode(model, prompt))
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids]))[0].float(), dim=-1)
    return float(sum(logprobs[pos - 1, ids[pos]] for pos in range(start, len(ids))))


def test_transfer_score_equals_hand_computed_accuracy_on_the_eval_split(tiny_model):
    score = transfer_score(tiny_model, TRANSFER[:3], n_bootstrap=50, show_progress=False)
    expected = []
    for item in TRANSFER[:2]:  # t3 is in the fit split
        prompt = f"질문: {item.question}\n답:"
        values = [reference_logprob(tiny_model, prompt, " " + o) for o in item.options]
        others = [v for k, v in enumerate(values) if k != item.answer]
        expected.append(values[item.answer] > max(others))
    assert score.n == 2
    assert score.value == pytest.approx(np.mean(expected))
    assert score.settings["split"] == "eval" and score.settings["steering"] is None
    assert score.settings["model_id"] == "tiny-random"


def test_english_query_asks_the_english_item_of_each_group():
    requests, answers = transfer_requests(TRANSFER[:2], "english_query", english_items=TRANSFER)
    assert [r.id for r in requests] == ["t1-en", "t2-en"] and answers == [0, 1]
    assert requests[0].prompt == "Question: Symbol of gold?\nAnswer:"
    with pytest.raises(ValueError, match=r"No English version .*t3-ko"):
        transfer_requests(TRANSFER[2:3], "english_query", english_items=TRANSFER)


def test_localization_variants_pick_prompts_and_answers():
    explicit = localization_requests(LOCALIZATION, "explicit")
    assert explicit[0].prompt == "대한민국의 수도는" and explicit[0].options == (" 서울", " 워싱턴")
    english = localization_requests(LOCALIZATION, "english_query")
    assert english[1].prompt == "The currency of our country is the"
    assert english[1].options == (" won", " dollar")
    with pytest.raises(ValueError, match="Unknown prompt variant 'loud'"):
        localization_requests(LOCALIZATION, "loud")  # type: ignore[arg-type]


def test_localization_score_equals_hand_computed_share(tiny_model):
    score = localization_score(tiny_model, LOCALIZATION, n_bootstrap=50, show_progress=False)
    expected = [
        reference_logprob(tiny_model, item.implicit, " " + item.local_answer)
        > reference_logprob(tiny_model, item.implicit, " " + item.us_answer)
        for item in LOCALIZATION
    ]
    assert score.value == pytest.approx(np.mean(expected))
    assert score.settings["variant"] == "implicit"


def test_empty_eval_split_names_the_split(tiny_model):
    with pytest.raises(ValueError, match=r"No localization items in split 'dev'.*\['ko'\]"):
        localization_score(tiny_model, LOCALIZATION, split="dev", show_progress=False)


def test_gap_closure_of_the_plain_model_is_zero(tiny_model):
    answers = (BlendAnswer("김치", "kimchi", 3), BlendAnswer("밥", "rice", 5))
    items = [
        BlendItem(
            f"b{k}",
            "ko",
            "eval",
            "South_Korea",
            "food",
            f"한국 음식 {k}은?",
            f"우리나라 음식 {k}은?",
            f"Korean food {k}?",
            answers,
        )
        for k in range(4)
    ]
    score = gap_closure(tiny_model, items, None, min_gap=-1e9, n_bootstrap=20, show_progress=False)
    assert score.value == pytest.approx(0.0, abs=1e-6)
    assert score.settings["answer"] == "top_voted" and score.n == 4


def test_gap_closure_of_a_steering_equals_hand_computation_on_the_top_voted_answer(tiny_model):
    from lens_steer.steering import apply_steering, single_layer_steering

    answers = (BlendAnswer("김치", "kimchi", 3), BlendAnswer("밥", "rice", 5))
    items = [
        BlendItem(f"b{k}", "ko", "eval", "South_Korea", "food", f"한국의 음식 {k}?",
                  f"우리나라의 음식 {k}?", f"Korean food {k}?", answers)
        for k in range(3)
    ]  # fmt: skip
    vector = torch.randn(tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    steering = single_layer_steering(vector, 1, 3.0, alpha_mode="raw")
    score = gap_closure(
        tiny_model, items, steering, min_gap=-1e9, n_bootstrap=0, show_progress=False
    )

    def gold(question: str) -> float:
        return reference_logprob(tiny_model, f"질문: {question}\n답:", " 밥")  # 5 votes > 3

    implicit = [gold(item.implicit) for item in items]
    explicit = [gold(item.explicit) for item in items]
    with apply_steering(tiny_model, steering):
        steered = [gold(item.implicit) for item in items]
    expected = (np.sum(steered) - np.sum(implicit)) / (np.sum(explicit) - np.sum(implicit))
    assert score.value == pytest.approx(expected, abs=1e-4)
    assert score.value != pytest.approx(0.0, abs=1e-3)
    assert score.settings["steering"]["terms"][0]["layer"] == 1
