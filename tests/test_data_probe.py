"""The built-in probe set: schema, parallelism, splits, scripts, and a baseline on Gemma 3 270M."""

from __future__ import annotations

import collections
import re
import unicodedata

import pytest
import torch

from lens_steer.data import (
    LOC_LANGUAGES,
    PROBE_LANGUAGES,
    SPLITS,
    load_probe_set,
    localization_continuations,
    localization_prompt,
    option_continuation,
    transfer_prompt,
)
from lens_steer.data.probe import PROBE_DIR, PROBE_FILES

PROBES = load_probe_set()
DATA_CARD = PROBE_DIR / "DATA_CARD.md"
VERSION = "2.0"
# facts.jsonl (transfer v2) is written elsewhere and may not be there yet; the others must be.
OPTIONAL_FILES = ("facts.jsonl",)


def present_probe_files() -> list[str]:
    return [
        name for name in PROBE_FILES if name not in OPTIONAL_FILES or (PROBE_DIR / name).is_file()
    ]


# Letters of each language must come from one Unicode script (the start of the character name).
SCRIPTS = {
    "en": ("LATIN",),
    "es": ("LATIN",),
    "id": ("LATIN",),
    "ko": ("HANGUL",),
    "zh": ("CJK UNIFIED IDEOGRAPH",),
    "el": ("GREEK",),
    "fa": ("ARABIC",),
}
# Arabic letters that Persian writes differently (ی ک), and alef maksura.
ARABIC_NOT_PERSIAN = {"\u064a": "ي (use ی)", "\u0643": "ك (use ک)", "\u0649": "ى (use ی)"}
# A sample of traditional-only characters: simplified Chinese text must not contain them.
TRADITIONAL_ONLY = set(
    "們國說華語學這時會對為過個來覺間發見長門東車馬鳥魚龍號電話書畫體買賣讀寫聽開關樂醫藥氣漢歲鐘錢飯麵雞鴨熱愛應該還進連選邊變點黨當總經濟業產實現"
)
COUNTRY_NAMES = {
    "ko": ("한국", "대한민국"),
    "zh": ("中国",),
    "es": ("España",),
    "id": ("Indonesia",),
    "el": ("Ελλάδ",),
    "fa": ("ایران",),
}
OUR_COUNTRY = {
    "ko": "우리나라",
    "zh": "我们国家",
    "es": "nuestro país",
    "id": "negara kita",
    "el": "μας",
    "fa": "کشور ما",
}
ENGLISH_COUNTRY = {
    "ko": "South Korea",
    "zh": "China",
    "es": "Spain",
    "id": "Indonesia",
    "el": "Greece",
    "fa": "Iran",
}


def script_problems(text: str, lang: str) -> list[str]:
    """Characters of ``text`` that do not belong in ``lang``'s script (empty when clean)."""
    problems = []
    for char in text:
        category = unicodedata.category(char)
        name = unicodedata.name(char, "?")
        if category[0] in "LM":
            if not name.startswith(SCRIPTS[lang]):
                problems.append(f"{char!r} ({name})")
        elif category == "Nd":
            persian_digit = name.startswith("EXTENDED ARABIC-INDIC DIGIT")
            if (lang == "fa") != persian_digit:
                problems.append(f"digit {char!r} ({name})")
        elif category == "Cf" and not (lang == "fa" and char == "\u200c"):
            problems.append(f"format character {name}")
        if lang == "fa" and char in ARABIC_NOT_PERSIAN:
            problems.append(ARABIC_NOT_PERSIAN[char])
        if lang == "zh" and char in TRADITIONAL_ONLY:
            problems.append(f"traditional character {char!r}")
        if lang in ("zh", "fa") and char in "?,;":
            problems.append(f"ASCII punctuation {char!r} in {lang}")
    return problems


def has_letter_of_script(text: str, lang: str) -> bool:
    return any(
        unicodedata.category(c)[0] == "L" and unicodedata.name(c, "").startswith(SCRIPTS[lang])
        for c in text
    )


def _texts(lang_of_item: str, item) -> list[tuple[str, str, str]]:
    """(field, text, expected language) of every text in a record."""
    if hasattr(item, "question"):
        return [("question", item.question, lang_of_item)] + [
            (f"options[{i}]", option, lang_of_item) for i, option in enumerate(item.options)
        ]
    if hasattr(item, "text"):
        return [("text", item.text, lang_of_item)]
    return [
        ("implicit", item.implicit, lang_of_item),
        ("explicit", item.explicit, lang_of_item),
        ("local_answer", item.local_answer, lang_of_item),
        ("us_answer", item.us_answer, lang_of_item),
        ("english_implicit", item.english_implicit, "en"),
        ("english_explicit", item.english_explicit, "en"),
        ("english_local_answer", item.english_local_answer, "en"),
        ("english_us_answer", item.english_us_answer, "en"),
    ]


# --- the script checker itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "bad"),
    [
        ("우리나라의 수도는", "ko", 0),
        ("우리나라의 KBS", "ko", 3),
        ("我们国家的首都是北京。", "zh", 0),
        ("我們國家", "zh", 2),
        ("首都是?", "zh", 1),
        ("Η πρωτεύουσα της χώρας μας", "el", 0),
        ("Νίκola Τέσλα", "el", 3),
        ("پایتخت کشور ما", "fa", 0),
        ("پايتخت", "fa", 1),
        ("۷ ضرب در 8", "fa", 1),
        ("¿Cuál es la capital?", "es", 0),
        ("Ibu kota", "id", 0),
        ("Пушкин", "en", 6),
    ],
)
def test_script_checker_flags_foreign_characters(text, lang, bad):
    assert len(script_problems(text, lang)) == bad


# --- schema and structure -------------------------------------------------------------------


def test_probe_set_has_the_promised_size():
    assert PROBES.version == VERSION
    assert PROBES.langs == PROBE_LANGUAGES
    groups = {item.group for item in PROBES.transfer}
    assert len(groups) >= 60
    assert len({item.group for item in PROBES.parallel}) >= 100
    per_lang = collections.Counter(item.lang for item in PROBES.localization)
    assert set(per_lang) == set(LOC_LANGUAGES)
    # 2.0 dropped 25 flawed items and added 15 (DATA_CARD.md): 39-41 per language.
    assert min(per_lang.values()) >= 39


def test_every_file_opens_with_the_same_version_line_and_the_data_card_names_it():
    for name in present_probe_files():
        first = (PROBE_DIR / name).read_text(encoding="utf-8").splitlines()[0]
        assert first == f'{{"kind": "meta", "version": "{VERSION}"}}'
    assert f"version {PROBES.version}" in DATA_CARD.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["transfer", "parallel"])
def test_every_group_has_all_seven_languages_and_one_split(kind):
    by_group = collections.defaultdict(list)
    for item in getattr(PROBES, kind):
        by_group[item.group].append(item)
    for group, items in by_group.items():
        assert sorted(item.lang for item in items) == sorted(PROBE_LANGUAGES), group
        assert len({item.split for item in items}) == 1, group
        for item in items:
            assert item.id == f"{group}-{item.lang}"


def test_transfer_groups_share_answer_topic_and_four_options():
    by_group = collections.defaultdict(list)
    for item in PROBES.transfer:
        by_group[item.group].append(item)
    for group, items in by_group.items():
        assert len({item.answer for item in items}) == 1, group
        assert len({item.topic for item in items}) == 1, group
        assert all(len(item.options) == 4 for item in items), group


def test_correct_option_position_varies():
    positions = collections.Counter(item.answer for item in PROBES.transfer if item.lang == "en")
    assert set(positions) == {0, 1, 2, 3}
    assert min(positions.values()) >= 10


def test_options_are_distinct_and_short():
    for item in PROBES.transfer:
        assert len(set(item.options)) == 4, item.id
        for option in item.options:
            if item.lang == "zh":
                assert len(option) <= 7, (item.id, option)
            else:
                assert len(option.split()) <= 3, (item.id, option)


def test_no_option_continuation_extends_another():
    """Under summed log-probs "100" beats "1000" by construction; no such pairs in an item."""
    for item in PROBES.transfer:
        continuations = [option_continuation(option, item.lang) for option in item.options]
        for first in continuations:
            for second in continuations:
                assert first == second or not second.startswith(first), (item.id, first, second)


def test_ids_are_unique_and_follow_the_naming_scheme():
    ids = [item.id for item in (*PROBES.transfer, *PROBES.localization, *PROBES.parallel)]
    assert len(ids) == len(set(ids))
    patterns = {
        "transfer": r"tr-\d{3}-(en|ko|zh|es|id|el|fa)",
        "parallel": r"par-\d{3}-(en|ko|zh|es|id|el|fa)",
        "localization": r"loc-(ko|zh|es|id|el|fa)-\d{3}",
    }
    for kind, pattern in patterns.items():
        for item in getattr(PROBES, kind):
            assert re.fullmatch(pattern, item.id), item.id


def test_splits_are_disjoint_and_close_to_the_planned_shares():
    for kind in ("transfer", "localization", "parallel"):
        items = getattr(PROBES, kind)
        by_split = {split: {item.id for item in items if item.split == split} for split in SPLITS}
        assert not by_split["fit"] & by_split["eval"]
        assert not by_split["fit"] & by_split["dev"]
        assert not by_split["dev"] & by_split["eval"]
        assert sum(len(ids) for ids in by_split.values()) == len(items)
    for lang in LOC_LANGUAGES:
        items = [item for item in PROBES.localization if item.lang == lang]
        shares = {s: sum(item.split == s for item in items) / len(items) for s in SPLITS}
        assert shares["fit"] == pytest.approx(0.5, abs=0.05), lang
        assert shares["dev"] == pytest.approx(0.2, abs=0.05), lang
    transfer = [item for item in PROBES.transfer if item.lang == "en"]
    assert (
        0
        < sum(item.split == "fit" for item in transfer)
        < sum(item.split == "eval" for item in transfer)
    )


def test_every_text_is_in_its_language_script():
    for item in (*PROBES.transfer, *PROBES.localization, *PROBES.parallel):
        for field, text, lang in _texts(item.lang, item):
            assert not script_problems(text, lang), (
                item.id,
                field,
                text,
                script_problems(text, lang),
            )
            if not field.startswith(
                ("options", "local_answer", "us_answer", "english_local", "english_us")
            ):
                assert has_letter_of_script(text, lang), (item.id, field, text)


def test_localization_implicit_hides_the_country_and_explicit_names_it():
    for item in PROBES.localization:
        names = COUNTRY_NAMES[item.lang]
        assert OUR_COUNTRY[item.lang] in item.implicit, item.id
        assert not any(name in item.implicit for name in names), item.id
        assert any(name in item.explicit for name in names), item.id
        assert "our country" in item.english_implicit, item.id
        assert ENGLISH_COUNTRY[item.lang] not in item.english_implicit, item.id
        assert item.english_explicit == item.english_implicit.replace(
            "our country", ENGLISH_COUNTRY[item.lang]
        )


def test_local_and_us_continuations_differ_and_neither_extends_the_other():
    """A prefix pair would make the longer answer lose by construction under summed log-probs."""
    for item in PROBES.localization:
        for form in ("implicit", "english_implicit"):
            local, us = localization_continuations(item, form)
            assert local != us, item.id
            assert not local.startswith(us) and not us.startswith(local), (item.id, form, local, us)


def test_localization_topics_are_unique_within_a_language():
    for lang in LOC_LANGUAGES:
        topics = [item.topic for item in PROBES.localization if item.lang == lang]
        assert len(topics) == len(set(topics)), lang
        assert all(item.group == f"loc-{item.topic}" for item in PROBES.localization)


def test_load_probe_set_keeps_english_for_transfer_and_parallel():
    korean = load_probe_set(["ko"])
    assert {item.lang for item in korean.transfer} == {"en", "ko"}
    assert {item.lang for item in korean.parallel} == {"en", "ko"}
    assert {item.lang for item in korean.localization} == {"ko"}
    alone = load_probe_set("ko", include_english=False)
    assert {item.lang for item in alone.transfer} == {"ko"}
    assert len(alone.localization) == len(korean.localization)


def test_load_probe_set_filters_by_split():
    evaluation = load_probe_set(split="eval")
    assert {
        item.split
        for item in (*evaluation.transfer, *evaluation.localization, *evaluation.parallel)
    } == {"eval"}
    two = load_probe_set(["zh", "fa"], split=["fit", "dev"])
    assert {item.split for item in two.localization} == {"fit", "dev"}
    assert len(two.localization) + len(
        load_probe_set(["zh", "fa"], split="eval").localization
    ) == sum(item.lang in ("zh", "fa") for item in PROBES.localization)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"langs": ["ko", "ja"]},
            r"Unknown language\(s\) \['ja'\]; the probe set has en, ko, zh, es, id, el, fa",
        ),
        ({"split": "test"}, r"Unknown split\(s\) \['test'\]; the probe set has fit, dev, eval"),
        ({"langs": []}, r"Empty language\(s\) selection"),
    ],
)
def test_load_probe_set_rejects_unknown_selections(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_probe_set(**kwargs)


def test_corrupted_builtin_file_is_reported_with_file_and_line(tmp_path, monkeypatch):
    import lens_steer.data.probe as probe

    for name in present_probe_files():
        (tmp_path / name).write_text(
            (PROBE_DIR / name).read_text(encoding="utf-8"), encoding="utf-8"
        )
    lines = (tmp_path / "parallel.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace('"lang": "ko"', '"lang": "kr"')
    (tmp_path / "parallel.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(probe, "PROBE_DIR", tmp_path)
    with pytest.raises(
        ValueError, match=r"parallel\.jsonl line 3: field 'lang': unknown language code 'kr'"
    ):
        probe.load_probe_set()


def test_data_card_counts_match_the_files():
    card = DATA_CARD.read_text(encoding="utf-8")
    for lang in LOC_LANGUAGES:
        items = [item for item in PROBES.localization if item.lang == lang]
        counts = [sum(item.split == split for item in items) for split in SPLITS]
        row = f"| {lang} | {len(items)} | {counts[0]} | {counts[1]} | {counts[2]} |"
        assert row in card, row


# --- baseline on the real model ---------------------------------------------------------------
#
# A self-contained scorer (the evaluate module is written elsewhere): the prompt and the
# continuation are encoded separately with lens_steer.tokens.encode and concatenated; a forward
# pass stops at the last block and only the continuation positions are unembedded (the
# 262k-token unembedding is most of the cost); the option score is the summed log-probability
# of its tokens. Floors are the values measured on the eval split minus 0.1 (see DATA_CARD.md).

# Measured on the eval split (probe set 2.0): localization ko 1.000 zh 0.500 es 0.818 id 0.786
# el 0.846 fa 0.667; transfer en 0.611 ko 0.278 zh 0.333 es 0.444 id 0.444 el 0.250 fa 0.278.
LOCALIZATION_FLOORS = {"ko": 0.9, "zh": 0.4, "es": 0.7, "id": 0.65, "el": 0.7, "fa": 0.55}
TRANSFER_FLOORS = {"en": 0.5, "ko": 0.15, "zh": 0.2, "es": 0.3, "id": 0.3, "el": 0.1, "fa": 0.15}


def continuation_logprobs(model, pairs: list[tuple[str, str]], batch_size: int = 48) -> list[float]:
    """Summed log-probability of each continuation after its prompt."""
    from lens_steer.tokens import encode, pad_id, pad_sequences

    sequences, spans = [], []
    for prompt, continuation in pairs:
        prompt_ids = encode(model, prompt)
        continuation_ids = encode(model, continuation, prepend_bos=False)
        sequences.append(prompt_ids + continuation_ids)
        spans.append((len(prompt_ids), len(continuation_ids)))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = pad_sequences(
            [sequences[i] for i in rows], pad_token_id=pad_id(model), padding_side="right"
        )
        # (batch row, position predicting the token, target token, sequence) of every scored token
        picks = [
            (row, prompt_len - 1 + k, sequences[index][prompt_len + k], index)
            for row, index in enumerate(rows)
            for prompt_len, cont_len in [spans[index]]
            for k in range(cont_len)
        ]
        batch_rows, positions, targets, owners = (
            list(column) for column in zip(*picks, strict=True)
        )
        with torch.inference_mode():
            # Right padding: causal attention never looks right, so the scored positions need no
            # attention mask (and TransformerLens' masked path is about twice as slow on CPU).
            resid = model(batch.tokens, stop_at_layer=model.cfg.n_layers)
            scored = resid[torch.tensor(batch_rows), torch.tensor(positions)]
            hidden = model.ln_final(scored[None])[0]
            logprobs = (hidden @ model.W_U + model.b_U).log_softmax(-1)
            picked = logprobs[torch.arange(len(targets)), torch.tensor(targets)]
        for value, index in zip(picked.tolist(), owners, strict=True):
            scores[index] += value
    return scores


@pytest.mark.slow
def test_continuation_scorer_matches_a_full_forward(gemma):
    prompt, continuation = "우리나라의 수도는", " 서울"
    from lens_steer.tokens import encode

    ids = encode(gemma, prompt) + encode(gemma, continuation, prepend_bos=False)
    with torch.inference_mode():
        logits = gemma(torch.tensor([ids]))[0]
    n_prompt = len(encode(gemma, prompt))
    reference = sum(
        logits[pos - 1].log_softmax(-1)[ids[pos]].item() for pos in range(n_prompt, len(ids))
    )
    assert continuation_logprobs(gemma, [(prompt, continuation)])[0] == pytest.approx(
        reference, abs=1e-3
    )


@pytest.mark.slow
def test_continuation_scorer_is_the_same_batched_and_one_at_a_time(gemma):
    pairs = [
        ("우리나라의 수도는", " 서울"),
        ("Question: What is the capital of France?\nAnswer:", " Paris"),
        ("我们国家的货币是", "人民币"),
        ("واحد پول کشور ما", " ریال"),
    ]
    batched = continuation_logprobs(gemma, pairs)
    alone = [continuation_logprobs(gemma, [pair])[0] for pair in pairs]
    assert batched == pytest.approx(alone, abs=1e-3)


@pytest.mark.slow
def test_baseline_localization_and_transfer_on_gemma_eval_split(gemma):
    evaluation = load_probe_set(split="eval")
    pairs = []
    for item in evaluation.localization:
        prompt = localization_prompt(item, "implicit")
        pairs.extend(
            (prompt, continuation) for continuation in localization_continuations(item, "implicit")
        )
    for item in evaluation.transfer:
        prompt = transfer_prompt(item)
        pairs.extend((prompt, option_continuation(option, item.lang)) for option in item.options)
    scores = iter(continuation_logprobs(gemma, pairs))

    local_wins = collections.defaultdict(list)
    for item in evaluation.localization:
        local, us = next(scores), next(scores)
        local_wins[item.lang].append(local > us)
    correct = collections.defaultdict(list)
    for item in evaluation.transfer:
        option_scores = [next(scores) for _ in item.options]
        correct[item.lang].append(max(range(4), key=option_scores.__getitem__) == item.answer)

    localization = {lang: sum(v) / len(v) for lang, v in local_wins.items()}
    transfer = {lang: sum(v) / len(v) for lang, v in correct.items()}
    print("localization (implicit, eval):", {k: round(v, 3) for k, v in localization.items()})
    print("transfer accuracy (eval):", {k: round(v, 3) for k, v in transfer.items()})
    for lang, floor in LOCALIZATION_FLOORS.items():
        assert localization[lang] >= floor, (lang, localization[lang])
    for lang, floor in TRANSFER_FLOORS.items():
        assert transfer[lang] >= floor, (lang, transfer[lang])
