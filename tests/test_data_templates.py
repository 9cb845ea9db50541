"""Prompt templates: the exact text the model reads and the continuations scored after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lens_steer.data
from lens_steer.data import (
    BlendAnswer,
    BlendItem,
    LocalizationItem,
    ParallelItem,
    TransferItem,
    blend_continuations,
    blend_prompt,
    localization_continuations,
    localization_prompt,
    option_continuation,
    parallel_prompt,
    transfer_prompt,
)
from lens_steer.data.templates import qa_prompt

KO_LOC = LocalizationItem(
    id="loc-ko-001",
    group="loc-currency",
    lang="ko",
    split="fit",
    topic="currency",
    implicit="우리나라의 화폐 단위는",
    explicit="한국의 화폐 단위는",
    local_answer="원",
    us_answer="달러",
    english_implicit="The currency of our country is the",
    english_explicit="The currency of South Korea is the",
    english_local_answer="won",
    english_us_answer="dollar",
)
ZH_LOC = LocalizationItem(
    "loc-zh-001",
    "loc-currency",
    "zh",
    "eval",
    "currency",
    "我们国家的货币是",
    "中国的货币是",
    "人民币",
    "美元",
    "The currency of our country is the",
    "The currency of China is the",
    "yuan",
    "dollar",
)
KO_BLEND = BlendItem(
    id="Al-en-06",
    lang="ko",
    split="fit",
    country="South_Korea",
    topic="Food",
    explicit="대한민국 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?",
    implicit="우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?",
    english="What is a common school cafeteria food in South Korea?",
    answers=(
        BlendAnswer("밥", "rice", 3),
        BlendAnswer("김치", "kimchi", 4),
        BlendAnswer("쌀밥", "rice", 3),
        BlendAnswer("국", "soup", 1),
    ),
)


def test_transfer_prompt_is_a_question_answer_frame_per_language():
    english = TransferItem(
        "tr-1-en", "tr-1", "en", "eval", "chemistry", "What is 7 times 8?", ("54", "56"), 1
    )
    chinese = TransferItem(
        "tr-1-zh", "tr-1", "zh", "eval", "chemistry", "7乘以8等于多少？", ("54", "56"), 1
    )
    persian = TransferItem(
        "tr-1-fa", "tr-1", "fa", "eval", "chemistry", "۷ ضرب در ۸ چند می‌شود؟", ("۵۴", "۵۶"), 1
    )
    assert transfer_prompt(english) == "Question: What is 7 times 8?\nAnswer:"
    assert transfer_prompt(chinese) == "问题：7乘以8等于多少？\n答案："
    assert transfer_prompt(persian) == "پرسش: ۷ ضرب در ۸ چند می‌شود؟\nپاسخ:"


def test_option_continuation_adds_a_space_except_in_chinese():
    assert option_continuation("Au", "en") == " Au"
    assert option_continuation("서울", "ko") == " 서울"
    assert option_continuation("人民币", "zh") == "人民币"
    assert option_continuation(" tar ", "fa") == " tar"
    with pytest.raises(ValueError, match="Empty option"):
        option_continuation("  ", "en")


def test_localization_forms_pick_the_right_text_and_language():
    assert localization_prompt(KO_LOC, "implicit") == "우리나라의 화폐 단위는"
    assert localization_prompt(KO_LOC, "explicit") == "한국의 화폐 단위는"
    assert localization_prompt(KO_LOC, "english_implicit") == "The currency of our country is the"
    assert localization_prompt(KO_LOC, "english_explicit") == "The currency of South Korea is the"
    assert localization_continuations(KO_LOC, "implicit") == (" 원", " 달러")
    assert localization_continuations(KO_LOC, "explicit") == (" 원", " 달러")
    assert localization_continuations(KO_LOC, "english_implicit") == (" won", " dollar")
    assert localization_continuations(ZH_LOC, "implicit") == ("人民币", "美元")
    assert localization_continuations(ZH_LOC, "english_explicit") == (" yuan", " dollar")


def test_unknown_forms_are_rejected_with_the_item_id():
    with pytest.raises(ValueError, match=r"loc-ko-001: unknown localization form 'us'"):
        localization_prompt(KO_LOC, "us")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Al-en-06: unknown BLEnD form 'local'"):
        blend_prompt(KO_BLEND, "local")  # type: ignore[arg-type]


def test_blend_prompt_frames_each_form_in_its_language():
    assert (
        blend_prompt(KO_BLEND, "implicit")
        == "질문: 우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?\n답:"
    )
    assert blend_prompt(KO_BLEND, "explicit").startswith("질문: 대한민국 학교")
    assert blend_prompt(KO_BLEND, "english") == (
        "Question: What is a common school cafeteria food in South Korea?\nAnswer:"
    )


def test_blend_continuations_are_most_voted_first_and_deduplicated():
    assert blend_continuations(KO_BLEND, "implicit") == [" 김치", " 밥", " 쌀밥", " 국"]
    assert blend_continuations(KO_BLEND, "english") == [" kimchi", " rice", " soup"]


def test_parallel_prompt_is_the_sentence():
    assert (
        parallel_prompt(ParallelItem("par-1-el", "par-1", "el", "fit", "Το νερό βράζει."))
        == "Το νερό βράζει."
    )


def test_qa_prompt_knows_every_blend_language_and_rejects_others():
    registry = json.loads((Path(lens_steer.data.__file__).parent / "languages.json").read_text())
    assert {lang["code"] for lang in registry["languages"]} == {
        "en",
        "ko",
        "zh",
        "es",
        "id",
        "el",
        "fa",
        "ar",
        "am",
        "as",
        "az",
        "ha",
        "su",
    }
    with pytest.raises(ValueError, match=r"unknown language code .ja.; known: en, ko"):
        qa_prompt("質問", "ja")
