"""BLEnD questions as the study's localization set (``--data <BLEnD folder>``)."""

from __future__ import annotations

import pytest

from lens_steer.data import BlendAnswer, BlendItem, load_blend
from lens_steer.data.blend_probe import blend_localization_item, is_blend_root
from lens_steer.study import StudySettings, load_study_data, validate_settings


def _item(answers: list[tuple[str, str, int]], us: tuple[str, str]) -> BlendItem:
    return BlendItem(
        id="Al-en-06",
        lang="ko",
        split="eval",
        country="South_Korea",
        topic="Food",
        explicit="대한민국 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?",
        implicit="우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?",
        english="What is a common school cafeteria food in South Korea?",
        answers=tuple(BlendAnswer(text, english, votes) for text, english, votes in answers),
        us_answers=(BlendAnswer(us[0], us[1], 3, english_aliases=(us[1], "pizzas")),),
        english_implicit="What is a common school cafeteria food in our country?",
    )


def test_the_us_answer_is_taken_as_the_local_annotators_spelled_it():
    made = blend_localization_item(
        _item([("김치", "kimchi", 4), ("피자", "Pizza", 1)], ("pizza", "pizza"))
    )
    assert not isinstance(made, str)
    assert (made.local_answer, made.us_answer) == ("김치", "피자")
    assert (made.english_local_answer, made.english_us_answer) == ("kimchi", "pizza")
    assert made.implicit == "질문: 우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?\n답:"
    assert made.explicit.startswith("질문: 대한민국 ")
    assert made.english_implicit.endswith("in our country?\nAnswer:")
    assert (made.id, made.group, made.split) == (
        "blend-South_Korea-Al-en-06",
        "blend-Al-en-06",
        "eval",
    )


def test_an_english_alias_of_the_us_answer_also_matches():
    made = blend_localization_item(
        _item([("김치", "kimchi", 4), ("피자들", "pizzas", 1)], ("pizza", "pizza"))
    )
    assert not isinstance(made, str) and made.us_answer == "피자들"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([("피자", "pizza", 4), ("김치", "kimchi", 1)], "the local and US answers agree"),
        ([("김치", "kimchi", 4), ("밥", "rice", 2)], "no local annotator gave the US answer"),
    ],
)
def test_items_without_two_distinct_local_answers_are_skipped_with_the_reason(answers, reason):
    assert blend_localization_item(_item(answers, ("pizza", "pizza"))) == reason


def test_shared_blend_copy_gives_localization_items_in_the_local_script(blend_root):
    korean = load_blend(blend_root, "South_Korea")
    made = [blend_localization_item(item) for item in korean]
    items = [item for item in made if not isinstance(item, str)]
    assert len(items) >= 30
    assert {item.split for item in items} == {"fit", "dev", "eval"}
    for item in items:
        assert item.local_answer != item.us_answer
        hangul = any("\uac00" <= ch <= "\ud7a3" for ch in item.us_answer)
        assert hangul or set(item.us_answer) <= set("0123456789:.")  # never Latin letters
        assert item.implicit.startswith("질문: ") and "우리나라" in item.implicit
    assert "no local annotator gave the US answer" in set(m for m in made if isinstance(m, str))
    assert len(korean) + len(korean.skipped) == 500  # every question is accounted for


def test_a_missing_country_file_is_named(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "questions").mkdir()
    assert is_blend_root(tmp_path) and not is_blend_root(tmp_path / "annotations")
    with pytest.raises(FileNotFoundError, match="South_Korea_data.json"):
        load_blend(tmp_path, "South_Korea")


def test_the_study_reads_a_blend_folder_as_data(blend_root, tmp_path):
    settings = StudySettings(targets=("ko",), data=(str(blend_root),), limit=8)
    data = load_study_data(settings)
    blend = data.items["ko:South_Korea"].blend
    assert blend and {item.country for item in blend} == {"South_Korea"}
    counts = [sum(i.split == split for i in blend) for split in ("dev", "eval")]
    assert counts == [8, 8]
    assert any(str(blend_root.resolve()) in source for source in data.sources)
    with pytest.raises(ValueError, match="without BLEnD's annotations/ and questions/"):
        validate_settings(StudySettings(targets=("ko",), data=(str(tmp_path),)))
