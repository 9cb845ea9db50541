"""Study targets: (language, country) pairs, and the items each target reads."""

from __future__ import annotations

import pytest

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import Target, country, language, parse_target
from lens_steer.data.records import (
    BlendAnswer,
    BlendItem,
    FactItem,
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    TransferItem,
)
from lens_steer.data.targets import ITEM_KINDS, TargetItems, split_sizes, target_items


def fact(group: str, lang: str, split: str) -> FactItem:
    return FactItem(
        f"{group}-{lang}", group, lang, split, "geo", "Capital is", "A", ("B", "C", "D")
    )


def transfer(group: str, lang: str, split: str) -> TransferItem:
    return TransferItem(f"{group}-{lang}", group, lang, split, "chem", "Q?", ("A", "B"), 0)


def parallel(group: str, lang: str, split: str) -> ParallelItem:
    return ParallelItem(f"{group}-{lang}", group, lang, split, "Text.")


def localization(item_id: str, lang: str, split: str) -> LocalizationItem:
    return LocalizationItem(
        item_id,
        "g",
        lang,
        split,
        "food",
        "Our x",
        "Their x",
        "a",
        "b",
        "Our x",
        "Their x",
        "a",
        "b",
    )


def blend(item_id: str, lang: str, country_name: str, split: str) -> BlendItem:
    gold = (BlendAnswer("kimchi", "kimchi", 3),)
    return BlendItem(item_id, lang, split, country_name, "food", "Korea?", "Our?", "Korea?", gold)


PROBE = ProbeSet(
    transfer=[transfer("t1", lang, "eval") for lang in ("en", "ko", "zh")],
    localization=[
        localization("l1-ko", "ko", "dev"),
        localization("l2-ko", "ko", "eval"),
        localization("l1-zh", "zh", "dev"),
    ],
    parallel=[parallel(f"p{i}", lang, "fit") for i in range(3) for lang in ("en", "ko", "zh")],
    facts=[fact("f1", lang, "dev") for lang in ("en", "ko", "zh")]
    + [fact("f2", "ko", "eval"), fact("f2", "en", "eval")],
    blend=[
        blend("b1", "ko", "South_Korea", "fit"),
        blend("b2", "ko", "North_Korea", "dev"),
        blend("b3", "ko", "South_Korea", "eval"),
    ],
)


def test_a_target_has_its_language_and_english_items_only():
    items = target_items(PROBE, parse_target("ko"))
    assert items.target == Target("ko", "South_Korea")
    assert {i.lang for i in items.transfer} == {"en", "ko"}
    assert {i.lang for i in items.facts} == {"en", "ko"} and len(items.facts) == 4
    assert {i.lang for i in items.parallel} == {"en", "ko"} and len(items.parallel) == 6
    assert [i.id for i in items.localization] == ["l1-ko", "l2-ko"]
    assert [i.id for i in items.blend] == ["b1", "b3"]  # BLEnD items of its country only


def test_built_in_localization_items_belong_to_the_default_country_only():
    north = target_items(PROBE, parse_target("ko:North_Korea"))
    assert north.localization == ()  # written about South Korea, the default country
    assert [i.id for i in north.blend] == ["b2"]
    assert len(north.facts) == 4  # culture-independent items are shared


def test_of_selects_kind_split_and_language():
    items = target_items(PROBE, parse_target("ko"))
    assert [i.id for i in items.of("facts", "dev")] == ["f1-ko"]
    assert [i.id for i in items.of("facts", "eval", lang="en")] == ["f2-en"]
    assert len(items.of("parallel")) == 3  # every split, target language only
    assert set(items.english_versions("facts")) == {"f1", "f2"}
    assert items.english_versions("facts")["f2"].id == "f2-en"


def test_counts_are_per_kind_and_split_without_english():
    counts = target_items(PROBE, parse_target("ko")).counts()
    assert list(counts) == list(ITEM_KINDS)
    assert counts["facts"] == {"fit": 0, "dev": 1, "eval": 1}
    assert counts["transfer"] == {"fit": 0, "dev": 0, "eval": 1}
    assert counts["localization"] == {"fit": 0, "dev": 1, "eval": 1}
    assert counts["blend"] == {"fit": 1, "dev": 0, "eval": 1}
    assert counts["parallel"] == {"fit": 3, "dev": 0, "eval": 0}
    assert split_sizes(PROBE.facts) == {"fit": 0, "dev": 3, "eval": 2}
    assert "facts 2" in repr(target_items(PROBE, parse_target("ko")))
    assert repr(TargetItems(Target("ko", "South_Korea"))) == "TargetItems(ko:South_Korea: no items)"


def test_target_names_and_parsing():
    target = parse_target("es:Mexico")
    assert target == Target("es", "Mexico")
    assert (target.key, target.slug, str(target)) == ("es:Mexico", "es-Mexico", "es:Mexico")
    assert parse_target("ko") == Target("ko", "South_Korea")  # the language's default country
    assert (
        parse_target("ko:South Korea")
        == parse_target("ko:south_korea")
        == Target("ko", "South_Korea")
    )
    assert sorted([Target("zh", "China"), Target("es", "Spain")])[0].lang == "es"


def test_a_country_of_another_language_is_refused_with_the_right_countries():
    with pytest.raises(
        ValueError,
        match=r"Mexico is a Spanish-language country.*Korean countries: North_Korea, South_Korea",
    ):
        parse_target("ko:Mexico")
    with pytest.raises(ValueError, match=r"unknown language code 'xx'; known: en, ko"):
        parse_target("xx")
    with pytest.raises(ValueError, match="unknown country 'Atlantis'"):
        parse_target("ko:Atlantis")


def test_a_language_declared_in_a_data_file_becomes_a_target(tiny_language):
    probe = load_jsonl(tiny_language)
    assert language("zz").name == "Testish" and country("Testland").lang == "zz"
    items = target_items(probe, parse_target("zz"))
    assert items.target == Target("zz", "Testland")
    counts = items.counts()
    assert counts["facts"] == {"fit": 0, "dev": 11, "eval": 11}
    assert counts["localization"] == {"fit": 10, "dev": 8, "eval": 8}
    assert counts["parallel"] == {"fit": 10, "dev": 3, "eval": 3}
    assert len(items.english_versions("facts")) == 22
