"""Probe set 2.0: the flaws found in 1.0 are gone, and no localization item leaks its answer.

Checks that every localization item must pass (see DATA_CARD.md, "Changes in 2.0"):

* the implicit prompt names neither the country, nor its people, nor its capital (in the item's
  language; the English implicit prompt likewise in English);
* neither answer is written in the prompt, and neither answer contains the country's name or
  demonym (an explicit prompt that names the country would otherwise be answered by copying);
* the local and the US answers differ, also after case folding, and neither is the other plus
  extra words (``το ποδόσφαιρο`` / ``το αμερικανικό ποδόσφαιρο``);
* the implicit and the explicit prompt end on the same word (fast check) and on the same Gemma 3
  token (slow check): the LOC vector is read at the last token, so a different last token
  (Persian ``کشور ما`` / ``ایران`` in 1.0) would make it mostly a token-identity difference.
"""

from __future__ import annotations

import collections
import re
import unicodedata

import pytest

from lens_steer.data import LOC_LANGUAGES, load_probe_set

PROBES = load_probe_set()
LOCALIZATION = {item.id: item for item in PROBES.localization}
TRANSFER = {item.id: item for item in PROBES.transfer}
VERSION = "2.0"

# Country names, demonyms (and the language named after the people) and capitals that an
# implicit prompt must not contain. Matched after case folding and removing accents, as
# substrings, so "ελλην" covers Έλληνας/Έλληνες/ελληνικά and "español" covers españoles.
COUNTRY_NAMES = {
    "ko": ("한국", "대한민국", "남한"),
    "zh": ("中国", "中华", "华夏"),
    "es": ("España",),
    "id": ("Indonesia",),
    "el": ("Ελλάδ", "Ελλάς"),
    "fa": ("ایران",),
}
DEMONYMS = {
    "ko": ("한국인", "한국 사람", "한국어"),
    "zh": ("中国人", "汉族", "汉语"),
    "es": ("español", "hispan"),
    "id": ("orang Indonesia", "bahasa Indonesia"),
    "el": ("Έλλην", "Ελληνίδ", "ελληνικ"),
    "fa": ("ایرانی", "پارسی", "فارسی"),
}
CAPITALS = {
    "ko": ("서울",),
    "zh": ("北京",),
    "es": ("Madrid",),
    "id": ("Jakarta",),
    "el": ("Αθήν", "Αθην"),
    "fa": ("تهران",),
}
ENGLISH_NAMES = {
    "ko": ("Korea",),
    "zh": ("China",),
    "es": ("Spain",),
    "id": ("Indonesia",),
    "el": ("Greece",),
    "fa": ("Iran",),
}
ENGLISH_DEMONYMS = {
    "ko": ("Korean",),
    "zh": ("Chinese",),
    "es": ("Spanish", "Spaniard"),
    "id": ("Indonesian",),
    "el": ("Greek",),
    "fa": ("Iranian", "Persian", "Farsi"),
}
ENGLISH_CAPITALS = {
    "ko": ("Seoul",),
    "zh": ("Beijing", "Peking"),
    "es": ("Madrid",),
    "id": ("Jakarta",),
    "el": ("Athens",),
    "fa": ("Tehran",),
}
ARTICLES = {
    "es": {"el", "la", "los", "las"},
    "el": {"ο", "η", "το", "οι", "τα"},
    "en": {"the", "a", "an"},
}


def fold(text: str) -> str:
    """Case-folded text without combining accents (Greek tonos, Spanish acute)."""
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


def contains(text: str, needle: str) -> bool:
    return fold(needle) in fold(text)


def words(text: str, lang: str) -> set[str]:
    return {word for word in fold(text).split() if word not in ARTICLES.get(lang, set())}


def last_word(text: str, lang: str) -> str:
    return text[-1] if lang == "zh" else text.split()[-1]


# --- the 1.0 flaws are gone -------------------------------------------------------------------

# id -> (field, the flawed text of version 1.0): the item must be dropped, or that field changed.
FLAWED_LOCALIZATION = {
    "loc-es-043": ("implicit", "Antes del euro, la moneda de nuestro país era"),
    "loc-el-039": ("implicit", "Πριν από το ευρώ, το νόμισμα της χώρας μας ήταν"),
    "loc-ko-019": ("implicit", "우리나라의 광복절은"),
    "loc-ko-029": ("implicit", "우리나라의 가장 큰 명절은"),
    "loc-ko-030": ("implicit", "우리나라의 가을 명절은"),
    "loc-zh-016": ("implicit", "我们国家的母亲河是"),
    "loc-zh-024": ("implicit", "我们国家的最高权力机关是"),
    "loc-zh-039": ("implicit", "我们国家的国球是"),
    "loc-ko-005": ("local_answer", "한국어"),
    "loc-ko-006": ("local_answer", "한글"),
    "loc-zh-004": ("local_answer", "汉语"),
    "loc-zh-005": ("local_answer", "汉字"),
    "loc-el-006": ("local_answer", "ελληνικό αλφάβητο"),
    "loc-fa-037": ("local_answer", "راست به چپ"),
    "loc-ko-028": ("us_answer", "의회"),
    "loc-fa-025": ("us_answer", "رئیس‌جمهور"),
    "loc-id-011": ("us_answer", "September"),
    "loc-zh-003": ("local_answer", "上海"),
    "loc-id-005": ("local_answer", "Indonesia"),
    "loc-id-037": ("local_answer", "Universitas Indonesia"),
    "loc-el-035": ("us_answer", "το αμερικανικό ποδόσφαιρο"),
}
# Ids dropped in 2.0: never reused.
DROPPED = {
    "loc-ko-005", "loc-ko-006", "loc-ko-014", "loc-ko-029",
    "loc-zh-003", "loc-zh-004", "loc-zh-005", "loc-zh-016", "loc-zh-039",
    "loc-es-005", "loc-es-031", "loc-es-043",
    "loc-id-005", "loc-id-011", "loc-id-037",
    "loc-el-005", "loc-el-006", "loc-el-035", "loc-el-039",
    "loc-fa-005", "loc-fa-006", "loc-fa-010", "loc-fa-025", "loc-fa-037", "loc-fa-040",
}  # fmt: skip


def test_the_probe_set_is_version_2():
    assert PROBES.version == VERSION


@pytest.mark.parametrize("item_id", sorted(FLAWED_LOCALIZATION))
def test_flawed_localization_items_are_dropped_or_changed(item_id):
    field, flawed = FLAWED_LOCALIZATION[item_id]
    item = LOCALIZATION.get(item_id)
    assert item is None or getattr(item, field) != flawed, (item_id, field, flawed)


def test_dropped_ids_stay_dropped():
    assert not DROPPED & set(LOCALIZATION)


def test_no_item_asks_for_the_language_or_script_of_its_own_prompt():
    for item in PROBES.localization:
        assert item.topic not in {"language", "script", "writing_direction"}, item.id


def test_transfer_questions_show_the_options_they_refer_to():
    """tr-020 and tr-052 said "which of these": the question now lists the four options."""
    for group in ("tr-020", "tr-052"):
        items = [item for item in PROBES.transfer if item.group == group]
        assert len(items) == 7
        for item in items:
            for option in item.options:
                assert option in item.question, (item.id, option)


def test_no_distractor_repeats_a_word_of_its_question():
    """A distractor shaped like a question word (Greek ήλιο under ο Ήλιος) wins by copying."""
    for item in PROBES.transfer:
        if item.group in ("tr-020", "tr-052"):
            continue  # the options are listed in the question on purpose
        question_words = re.findall(r"\w+", fold(item.question))
        for index, option in enumerate(item.options):
            if index == item.answer or len(option.split()) > 1:
                continue
            stem = fold(option)
            if stem.isdigit():  # a number: only a whole number counts ("8" is not in "81")
                assert not re.search(rf"(?<!\d){stem}(?!\d)", fold(item.question)), item.id
            elif item.lang == "zh":
                assert stem not in fold(item.question), (item.id, option)
            elif len(stem) >= 3:
                assert not any(word.startswith(stem) for word in question_words), (
                    item.id,
                    option,
                )
            else:
                assert stem not in question_words, (item.id, option)


def test_no_transfer_question_names_its_answer():
    """Persian tr-028 asked where "the great desert of Africa" is, with Africa as the answer."""
    for item in PROBES.transfer:
        if item.group in ("tr-020", "tr-052"):
            continue
        answer = fold(item.options[item.answer])
        question = fold(item.question)
        if item.lang == "zh":
            assert answer not in question, item.id
        else:
            assert not re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", question), item.id


# --- leakage checks over every localization item ---------------------------------------------


@pytest.mark.parametrize("lang", LOC_LANGUAGES)
def test_implicit_prompts_name_no_country_demonym_or_capital(lang):
    forbidden = (*COUNTRY_NAMES[lang], *DEMONYMS[lang], *CAPITALS[lang])
    english = (*ENGLISH_NAMES[lang], *ENGLISH_DEMONYMS[lang], *ENGLISH_CAPITALS[lang])
    for item in PROBES.localization:
        if item.lang != lang:
            continue
        leaks = [name for name in forbidden if contains(item.implicit, name)]
        assert not leaks, (item.id, item.implicit, leaks)
        leaks = [name for name in english if contains(item.english_implicit, name)]
        assert not leaks, (item.id, item.english_implicit, leaks)


def test_the_leakage_lists_cover_every_language_and_catch_the_1_0_leaks():
    for table in (COUNTRY_NAMES, DEMONYMS, CAPITALS, ENGLISH_NAMES, ENGLISH_DEMONYMS):
        assert set(table) == set(LOC_LANGUAGES)
    assert contains("Ο Ήλιος και οι Έλληνες", DEMONYMS["el"][0])
    assert contains("la cocina española", DEMONYMS["es"][0])
    assert any(contains("한국의 공용어는 한국어", name) for name in DEMONYMS["ko"])


def test_answers_are_not_written_in_the_prompt():
    for item in PROBES.localization:
        for answer in (item.local_answer, item.us_answer):
            for prompt in (item.implicit, item.explicit):
                assert not contains(prompt, answer), (item.id, answer, prompt)
        for answer in (item.english_local_answer, item.english_us_answer):
            for prompt in (item.english_implicit, item.english_explicit):
                assert not re.search(rf"\b{re.escape(fold(answer))}\b", fold(prompt)), (
                    item.id,
                    answer,
                )


def test_answers_do_not_contain_the_country_name_or_demonym():
    """An explicit prompt naming the country would be answered by copying (한국의 → 한국어)."""
    for item in PROBES.localization:
        names = (*COUNTRY_NAMES[item.lang], *DEMONYMS[item.lang])
        english = (*ENGLISH_NAMES[item.lang], *ENGLISH_DEMONYMS[item.lang])
        for answer in (item.local_answer, item.us_answer):
            assert not any(contains(answer, name) for name in names), (item.id, answer)
        for answer in (item.english_local_answer, item.english_us_answer):
            assert not any(contains(answer, name) for name in english), (item.id, answer)


def test_local_and_us_answers_differ_and_neither_is_the_other_plus_words():
    for item in PROBES.localization:
        for local, us, lang in (
            (item.local_answer, item.us_answer, item.lang),
            (item.english_local_answer, item.english_us_answer, "en"),
        ):
            assert fold(local) != fold(us), item.id
            local_words, us_words = words(local, lang), words(us, lang)
            assert not local_words <= us_words and not us_words <= local_words, (
                item.id,
                local,
                us,
            )


def test_implicit_and_explicit_prompts_end_on_the_same_word():
    """The tokenizer-free form of the last-token check below (runs in the fast suite)."""
    for item in PROBES.localization:
        assert last_word(item.implicit, item.lang) == last_word(item.explicit, item.lang), item.id
        assert last_word(item.english_implicit, "en") == last_word(item.english_explicit, "en")
        if item.lang == "fa":
            assert not item.implicit.endswith("ما"), item.id


def test_topics_shared_across_languages_keep_one_group():
    groups = collections.defaultdict(set)
    for item in PROBES.localization:
        groups[item.topic].add(item.group)
    assert all(len(names) == 1 for names in groups.values())


@pytest.mark.slow
def test_implicit_and_explicit_prompts_end_on_the_same_gemma_token():
    from transformers import AutoTokenizer

    from lens_steer.models import embedded_model_folder

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_folder())

    def last_token(text: str) -> int:
        return tokenizer(text, add_special_tokens=False)["input_ids"][-1]

    mismatched = []
    for item in PROBES.localization:
        for implicit, explicit in (
            (item.implicit, item.explicit),
            (item.english_implicit, item.english_explicit),
        ):
            if last_token(implicit) != last_token(explicit):
                mismatched.append((item.id, implicit, explicit))
    assert not mismatched, mismatched
