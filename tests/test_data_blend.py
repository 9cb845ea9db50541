"""BLEnD loader: counts match the files, implicit questions hide the country, bad input fails clearly."""

from __future__ import annotations

import collections
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from lens_steer.data import BLEND_COUNTRIES, BlendSet, load_blend
from lens_steer.data.blend import blend_split, resolve_country
from lens_steer.data.blend_implicit import RULES, DerivationError, english_rules

# Country-name forms written independently of the loader's rules (names, demonyms, adjectives).
NAME_FORMS = {
    "South_Korea": ("대한민국", "한국", "대힌민국"),
    "China": ("中国", "中华"),
    "Spain": ("España", "español", "española", "españoles"),
    "Indonesia": ("Indonesia",),
    "Greece": ("Ελλάδα", "Ελλάδας", "Έλληνες", "ελληνικ"),
    "Iran": ("ایران", "ایرانی"),
    "US": (" US", "United States", "America"),
    "UK": (" UK", "United Kingdom", "Britain", "British"),
}
OUR_COUNTRY = {
    "South_Korea": "우리나라",
    "China": "我国",
    "Spain": "nuestro país",
    "Indonesia": "negara kita",
    "Greece": "χώρα",
    "Iran": "کشور ما",
    "US": "our country",
    "UK": "our country",
}


def _countries(root: Path) -> list[str]:
    return sorted(
        p.name.removesuffix("_data.json") for p in (root / "annotations").glob("*_data.json")
    )


def _file_counts(root: Path, country: str) -> tuple[dict, dict]:
    data = json.loads((root / "annotations" / f"{country}_data.json").read_text(encoding="utf-8"))
    with (root / "questions" / f"{country}_questions.csv").open(
        encoding="utf-8", newline=""
    ) as handle:
        rows = {row["ID"]: row for row in csv.DictReader(handle)}
    return data, rows


def test_the_shared_copy_has_the_eight_expected_countries(blend_root):
    assert _countries(blend_root) == sorted(NAME_FORMS)


def test_every_country_loads_and_counts_match_the_files(blend_root):
    for country in _countries(blend_root):
        blend = load_blend(blend_root, country)
        data, rows = _file_counts(blend_root, country)
        assert isinstance(blend, BlendSet) and blend.country == country
        assert blend.lang == BLEND_COUNTRIES[country].lang
        loaded = [item.id for item in blend]
        assert len(loaded) == len(set(loaded))
        assert set(loaded) | set(blend.skipped) == set(data), country
        assert not set(loaded) & set(blend.skipped)
        assert len(blend) + len(blend.skipped) == len(data) == len(rows)
        assert len(blend) >= 0.75 * len(data), country
        for item in blend:
            entry = data[item.id]
            assert item.topic == rows[item.id]["Topic"]
            assert item.explicit == entry["question"].strip()
            assert item.english == entry["en_question"].strip()
            assert item.lang == blend.lang and item.country == country
            file_votes = sorted((a["count"] for a in entry["annotations"]), reverse=True)
            assert [answer.votes for answer in item.answers] == file_votes
            for answer in item.answers:
                assert answer.text == answer.aliases[0]
                assert any(
                    answer.aliases == tuple(t.strip() for t in a["answers"] if t.strip())
                    for a in entry["annotations"]
                )


def test_skip_reasons_cover_missing_answers_and_undeliverable_forms(blend_root):
    for country in _countries(blend_root):
        blend = load_blend(blend_root, country)
        data, _ = _file_counts(blend_root, country)
        no_answers = {qid for qid, entry in data.items() if not entry["annotations"]}
        assert {
            qid for qid, why in blend.skipped.items() if why == "no gold answer"
        } == no_answers - {qid for qid, why in blend.skipped.items() if why == "empty question"}
    iran = load_blend(blend_root, "Iran")
    your_country = [
        qid for qid, why in iran.skipped.items() if why == "the question does not name the country"
    ]
    data, _ = _file_counts(blend_root, "Iran")
    assert sum("کشور شما" in data[qid]["question"] for qid in your_country) >= 80  # "your country"
    assert not any("ایران" in data[qid]["question"] for qid in your_country)


def test_implicit_questions_contain_no_country_name_and_say_our_country(blend_root):
    for country in _countries(blend_root):
        for item in load_blend(blend_root, country):
            for form in NAME_FORMS[country]:
                assert form not in item.implicit, (country, item.id, item.implicit)
            assert OUR_COUNTRY[country] in item.implicit, (country, item.id, item.implicit)
            assert item.implicit != item.explicit


def test_korean_particles_follow_the_new_noun(blend_root):
    korea = {item.id: item for item in load_blend(blend_root, "South_Korea")}
    changed = [
        item for item in korea.values() if re.search(r"대한민국(이|을|은|과) ", item.explicit)
    ]
    assert changed, "expected questions with a consonant-final particle after 대한민국"
    for item in changed:
        assert not re.search(r"우리나라(이|을|은|과) ", item.implicit), item.implicit
        assert re.search(r"우리나라(가|를|는|와) ", item.implicit), item.implicit


def test_school_cafeteria_item_has_kimchi_among_its_gold_answers(blend_root):
    item = next(i for i in load_blend(blend_root, "South Korea") if i.id == "Al-en-06")
    assert item.topic == "Food"
    assert item.implicit == "우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?"
    assert "김치" in [answer.text for answer in item.answers]
    assert "kimchi" in [answer.english for answer in item.answers]
    assert item.answers[0].votes >= max(answer.votes for answer in item.answers)
    assert item.english_implicit == "What is a common school cafeteria food in our country?"
    assert "pizza" in [answer.text for answer in item.us_answers]


def test_us_answers_come_from_the_us_file(blend_root):
    us = {item.id: item.answers for item in load_blend(blend_root, "US")}
    for item in load_blend(blend_root, "China"):
        if item.id in us:
            assert item.us_answers == us[item.id]
    assert all(item.us_answers == () for item in load_blend(blend_root, "US"))


def test_splits_are_a_stable_hash_of_the_id(blend_root):
    korea = load_blend(blend_root, "South_Korea")
    spain = {item.id: item.split for item in load_blend(blend_root, "Spain")}
    for item in korea:
        assert item.split == blend_split(item.id)
        if item.id in spain:
            assert spain[item.id] == item.split
    shares = collections.Counter(item.split for item in korea)
    assert shares["fit"] / len(korea) == pytest.approx(0.5, abs=0.08)
    assert shares["dev"] / len(korea) == pytest.approx(0.2, abs=0.08)
    evaluation = load_blend(blend_root, "South_Korea", split="eval")
    assert {item.id for item in evaluation} == {item.id for item in korea if item.split == "eval"}


def test_country_names_are_resolved_and_unknown_ones_listed():
    assert resolve_country("south korea").name == "South_Korea"
    assert resolve_country("Northern Nigeria").lang == "ha"
    assert len(BLEND_COUNTRIES) == 16
    assert {info.lang for info in BLEND_COUNTRIES.values()} == {
        "en",
        "zh",
        "es",
        "id",
        "su",
        "as",
        "el",
        "am",
        "ha",
        "az",
        "ko",
        "ar",
        "fa",
    }
    with pytest.raises(ValueError, match=r"Unknown BLEnD country 'Korea'; BLEnD has US, UK, China"):
        resolve_country("Korea")


def test_missing_root_and_missing_country_files_raise_file_not_found(blend_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="BLEnD root folder not found"):
        load_blend(tmp_path / "nowhere", "Spain")
    with pytest.raises(FileNotFoundError, match=r"annotations/Mexico_data\.json"):
        load_blend(blend_root, "Mexico")
    root = tmp_path / "blend"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(blend_root / "annotations" / "Spain_data.json", root / "annotations")
    with pytest.raises(FileNotFoundError, match=r"questions/Spain_questions\.csv"):
        load_blend(root, "Spain")


def _copy_country(blend_root: Path, tmp_path: Path, country: str) -> Path:
    root = tmp_path / "blend"
    for folder, suffix in (("annotations", "_data.json"), ("questions", "_questions.csv")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(blend_root / folder / f"{country}{suffix}", root / folder)
    return root


def test_corrupt_annotation_file_names_file_and_line(blend_root, tmp_path):
    root = _copy_country(blend_root, tmp_path, "Greece")
    path = root / "annotations" / "Greece_data.json"
    text = path.read_text(encoding="utf-8")
    line = text[: text.index('"en_question"')].count("\n") + 1
    path.write_text(text.replace('"en_question"', '"en_question', 1), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^Greece_data\.json line {line}: invalid JSON"):
        load_blend(root, "Greece")


def test_annotation_without_a_field_or_with_a_bad_count_is_named(blend_root, tmp_path):
    root = _copy_country(blend_root, tmp_path, "Greece")
    path = root / "annotations" / "Greece_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(data))
    del data[first]["en_question"]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(
        ValueError, match=rf"Greece_data\.json: question '{first}': field 'en_question' missing"
    ):
        load_blend(root, "Greece")
    data = json.loads((blend_root / "annotations" / "Greece_data.json").read_text(encoding="utf-8"))
    data[first]["annotations"][0]["count"] = "three"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"question '{first}': annotation 0: field 'count'"):
        load_blend(root, "Greece")


def test_question_csv_without_an_id_or_a_column_is_named(blend_root, tmp_path):
    root = _copy_country(blend_root, tmp_path, "Spain")
    path = root / "questions" / "Spain_questions.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + "".join(lines[2:]), encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"Spain_questions\.csv: no row for question id\(s\) \['Al-en-01'\]"
    ):
        load_blend(root, "Spain")
    path.write_text(lines[0].replace("Topic", "Theme") + "".join(lines[1:]), encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"Spain_questions\.csv line 1: column\(s\) \['Topic'\] missing"
    ):
        load_blend(root, "Spain")


# --- rewrite rules of the countries that are not in the shared copy (hand-made questions) -----


@pytest.mark.parametrize(
    ("country", "explicit", "implicit"),
    [
        (
            "North_Korea",
            "북한의 유치원 어린이들이 많이 먹는 간식은 무엇인가요?",
            "우리나라의 유치원 어린이들이 많이 먹는 간식은 무엇인가요?",
        ),
        (
            "North_Korea",
            "북한이 올림픽에서 가장 많은 금메달을 받은 종목은 무엇인가요?",
            "우리나라가 올림픽에서 가장 많은 금메달을 받은 종목은 무엇인가요?",
        ),
        ("South_Korea", "대한민국과 가장 가까운 나라는?", "우리나라와 가장 가까운 나라는?"),
        ("South_Korea", "대한민국으로 여행 오는 사람은?", "우리나라로 여행 오는 사람은?"),
        ("South_Korea", "김치의 나라는 대한민국이다.", "김치의 나라는 우리나라이다."),
        (
            "Mexico",
            "¿Qué desayunan los niños en México?",
            "¿Qué desayunan los niños en nuestro país?",
        ),
        (
            "Spain",
            "En España, ¿qué se come en Navidad?",
            "En nuestro país, ¿qué se come en Navidad?",
        ),
        ("Greece", "Τι τρώνε στην Ελλάδα;", "Τι τρώνε στη χώρα μας;"),
        (
            "Greece",
            "Ποια είναι η πρωτεύουσα της Ελλάδας;",
            "Ποια είναι η πρωτεύουσα της χώρας μας;",
        ),
        ("Iran", "یک غذای معمولی درایران چیست؟", "یک غذای معمولی در کشور ما چیست؟"),
        ("Algeria", "ما هو الطعام الشائع في الجزائر؟", "ما هو الطعام الشائع في بلدنا؟"),
        ("Azerbaijan", "Azərbaycanda ən məşhur yemək nədir?", "ölkəmizdə ən məşhur yemək nədir?"),
        ("Azerbaijan", "Azərbaycanın milli idmanı nədir?", "ölkəmizin milli idmanı nədir?"),
        ("Ethiopia", "በኢትዮጵያ ውስጥ የተለመደ ምግብ ምንድን ነው?", "በአገራችን ውስጥ የተለመደ ምግብ ምንድን ነው?"),
        ("Assam", "অসমত জনপ্ৰিয় খেল কি?", "আমাৰ ৰাজ্যত জনপ্ৰিয় খেল কি?"),
        (
            "Northern_Nigeria",
            "Menene abincin da ake ci a Arewacin Najeriya?",
            "Menene abincin da ake ci a yankinmu?",
        ),
        (
            "West_Java",
            "Naon kadaharan anu pang kawéntarna di Jawa Barat?",
            "Naon kadaharan anu pang kawéntarna di daérah urang?",
        ),
        ("US", "The most popular sport in the US?", "The most popular sport in our country?"),
        ("UK", "What do people eat in the UK?", "What do people eat in our country?"),
    ],
)
def test_rules_rewrite_the_country_mention(country, explicit, implicit):
    assert RULES[country].derive(explicit) == implicit


@pytest.mark.parametrize(
    ("country", "question", "reason"),
    [
        ("South_Korea", "한국식 아침 식사는 무엇인가요?", "remains"),
        ("South_Korea", "대한민국에서 한국어 말고 배우는 언어는?", "remains"),
        ("China", "中餐里最常用的香料是什么？", "remains"),
        ("Spain", "¿Qué comen los españoles?", "remains"),
        ("Spain", "¿Por qué es famosa España?", "remains"),
        ("Algeria", "تشتهر الجزائر بماذا؟", "remains"),
        ("Greece", "Τι τρώνε οι Έλληνες;", "remains"),
        ("Iran", "یک غذای معمولی مدارسایران چیست؟", "remains"),
        ("Iran", "دانشجویان ایرانی کجا درس می‌خوانند؟", "remains"),
        ("Iran", "در کشور شما مردم چه می‌خورند؟", "does not name"),
        ("Indonesia", "Apa bahasa Indonesia?", "remains"),
        ("Mexico", "¿Qué comen los mexicanos?", "remains"),
        ("US", "What do Americans eat?", "remains"),
    ],
)
def test_rules_refuse_forms_they_cannot_rewrite(country, question, reason):
    with pytest.raises(DerivationError, match=reason):
        RULES[country].derive(question)


def test_every_country_has_rules_for_both_languages():
    assert set(RULES) == set(BLEND_COUNTRIES)
    for country in BLEND_COUNTRIES:
        assert english_rules(country).phrase in ("our country", "our region")
    assert (
        english_rules("Assam").derive("What is popular in Assam?")
        == "What is popular in our region?"
    )
    assert (
        english_rules("South_Korea").derive("What is South Korea's main dish?")
        == "What is our country's main dish?"
    )
    with pytest.raises(DerivationError):
        english_rules("Greece").derive("What do Greek people eat?")
