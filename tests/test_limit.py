"""Seeded, topic-stratified subsets (``--limit``): not the first N, groups kept whole."""

from __future__ import annotations

from collections import Counter

import pytest

from lens_steer.data.limit import limit_probe_set, stratified_sample
from lens_steer.data.records import FactItem, LocalizationItem, ParallelItem, ProbeSet

TOPICS = ("capital", "number", "color", "animal")


def facts() -> list[FactItem]:
    """Five groups per topic and split, in file order by topic (as the built-in files are)."""
    out = []
    for split in ("dev", "eval"):
        for topic in TOPICS:
            for index in range(5):
                group = f"{split}-{topic}-{index}"
                for lang in ("en", "ko"):
                    out.append(
                        FactItem(
                            f"{group}-{lang}",
                            group,
                            lang,
                            split,
                            topic,
                            "P is",
                            "A",
                            ("B", "C", "D"),
                        )
                    )
    return out


def localizations() -> list[LocalizationItem]:
    return [
        LocalizationItem(
            f"l-{lang}-{split}-{i}",
            f"g{i}",
            lang,
            split,
            TOPICS[i % 4],
            "Our x",
            "Their x",
            "a",
            "b",
            "Our x",
            "Their x",
            "a",
            "b",
        )
        for lang in ("ko", "zh")
        for split in ("fit", "dev", "eval")
        for i in range(12)
    ]


PROBE = ProbeSet(
    transfer=[],
    localization=localizations(),
    parallel=[
        ParallelItem(f"p{i}-{lang}", f"p{i}", lang, "fit", "Text.")
        for i in range(20)
        for lang in ("en", "ko")
    ],
    facts=facts(),
)


def test_stratified_sample_example_and_small_inputs():
    assert stratified_sample(["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], 2, seed=0) == [
        "a1",
        "b1",
    ]
    assert stratified_sample(["b", "a"], ["x", "y"], 5, seed=0) == ["a", "b"]  # all, sorted


def test_stratified_sample_covers_every_topic_evenly_and_is_seeded():
    units = [f"{t}{i}" for t in TOPICS for i in range(10)]
    topics = [u.rstrip("0123456789") for u in units]
    chosen = stratified_sample(units, topics, 8, seed=3)
    assert len(chosen) == 8
    assert Counter(u.rstrip("0123456789") for u in chosen) == {t: 2 for t in TOPICS}
    assert chosen == stratified_sample(units, topics, 8, seed=3)
    others = {tuple(stratified_sample(units, topics, 8, seed=s)) for s in range(6)}
    assert len(others) > 1
    first_n = sorted(units[:8])
    assert all(list(sample) != first_n for sample in others)  # never the first N of the file


def test_limit_keeps_translation_groups_whole_per_split():
    small = limit_probe_set(PROBE, 8, seed=1)
    for split in ("dev", "eval"):
        groups = {item.group for item in small.facts if item.split == split}
        assert len(groups) == 8
        assert Counter(g.split("-")[1] for g in groups) == {t: 2 for t in TOPICS}
        for group in groups:  # every language of a kept group stays
            assert {item.lang for item in small.facts if item.group == group} == {"en", "ko"}


def test_limit_samples_culture_items_per_language_country_and_split():
    small = limit_probe_set(PROBE, 8, splits=("dev", "eval"), seed=0)
    counts = Counter((item.lang, item.split) for item in small.localization)
    assert counts == {
        ("ko", "fit"): 12,
        ("zh", "fit"): 12,
        ("ko", "dev"): 8,
        ("zh", "dev"): 8,
        ("ko", "eval"): 8,
        ("zh", "eval"): 8,
    }
    assert len(small.parallel) == len(PROBE.parallel)  # the fit split is left alone


def test_limit_only_cuts_the_given_splits():
    fit_only = limit_probe_set(PROBE, 4, splits=("fit",), seed=0)
    assert len({p.group for p in fit_only.parallel}) == 4
    assert fit_only.facts == PROBE.facts and fit_only.localization != PROBE.localization
    assert Counter(i.split for i in fit_only.localization)["dev"] == 24


def test_no_limit_is_the_same_set_and_bad_limits_are_refused():
    assert limit_probe_set(PROBE, None) is PROBE
    for bad in (0, -3, True, 2.5, "8"):
        with pytest.raises(ValueError, match="limit must be an integer >= 1"):
            limit_probe_set(PROBE, bad)  # type: ignore[arg-type]


def test_seeds_give_different_subsets():
    picks = {tuple(sorted(i.id for i in limit_probe_set(PROBE, 4, seed=s).facts)) for s in range(5)}
    assert len(picks) > 1
