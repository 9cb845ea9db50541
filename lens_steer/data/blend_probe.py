"""BLEnD as the study's localization set: real annotated questions beside the built-in sets.

A BLEnD item becomes a :class:`LocalizationItem` when both of its answers can be written in the
local language: the local answer is the country's most-voted gold answer, and the US-default
answer is the US annotators' most-voted answer *as this country's annotators spelled it* (one of
their own answers whose English form matches it). Items where the two agree, or where no local
annotator gave the US answer, are skipped with the reason, so the localization share compares
two answers in the same language and script. The prompts are BLEnD's questions in the
question/answer frame (implicit: "our country", explicit: the country named, and the English
forms). Transfer questions and parallel sentences have no BLEnD counterpart: they stay the
built-in ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lens_steer.data.blend import load_blend
from lens_steer.data.records import BlendItem, LocalizationItem, ProbeSet
from lens_steer.data.templates import qa_prompt

# The BLEnD country whose questions are in each LOC language of the built-in set.
BLEND_COUNTRY_OF_LANGUAGE: dict[str, str] = {
    "ko": "South_Korea",
    "zh": "China",
    "es": "Spain",
    "id": "Indonesia",
    "el": "Greece",
    "fa": "Iran",
}


@dataclass(frozen=True)
class BlendLocalization:
    """The localization items made from one BLEnD country, and why the others were left out."""

    country: str
    lang: str
    items: tuple[LocalizationItem, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def is_blend_root(path: str | Path) -> bool:
    """Does ``path`` look like a BLEnD folder (``annotations/`` and ``questions/``)?"""
    path = Path(path)
    return (path / "annotations").is_dir() and (path / "questions").is_dir()


def blend_localization_item(item: BlendItem) -> LocalizationItem | str:
    """The item as a LocalizationItem, or the reason it cannot be one."""
    if not item.english_implicit:
        return "no implicit form of the English question"
    if not item.us_answers:
        return "no US answer"
    us = item.us_answers[0]
    us_forms = {form.strip().lower() for form in (*us.english_aliases, us.english) if form}
    local = item.answers[0]
    if local.english.strip().lower() in us_forms:
        return "the local and US answers agree"
    us_local = next((a for a in item.answers[1:] if a.english.strip().lower() in us_forms), None)
    if us_local is None:
        return "no local annotator gave the US answer"
    return LocalizationItem(
        id=f"blend-{item.country}-{item.id}",
        group=f"blend-{item.id}",
        lang=item.lang,
        split=item.split,
        topic=item.topic,
        implicit=qa_prompt(item.implicit, item.lang),
        explicit=qa_prompt(item.explicit, item.lang),
        local_answer=local.text,
        us_answer=us_local.text,
        english_implicit=qa_prompt(item.english_implicit, "en"),
        english_explicit=qa_prompt(item.english, "en"),
        english_local_answer=local.english,
        english_us_answer=us.english,
    )


def blend_localization(root: str | Path, lang: str) -> BlendLocalization:
    """Localization items of the BLEnD country of ``lang`` (see the module docstring)."""
    if lang not in BLEND_COUNTRY_OF_LANGUAGE:
        raise ValueError(
            f"No BLEnD country for language {lang!r}; BLEnD is used for "
            f"{', '.join(BLEND_COUNTRY_OF_LANGUAGE)}"
        )
    blend = load_blend(root, BLEND_COUNTRY_OF_LANGUAGE[lang])
    items: list[LocalizationItem] = []
    skipped = dict(blend.skipped)
    for item in blend:
        made = blend_localization_item(item)
        if isinstance(made, str):
            skipped[item.id] = made
        else:
            items.append(made)
    return BlendLocalization(blend.country, lang, tuple(items), skipped)


def blend_probe_set(root: str | Path, langs: Sequence[str], builtin: ProbeSet) -> ProbeSet:
    """``builtin`` with its localization items replaced by BLEnD's for the LOC ``langs``.

    Raises:
        ValueError: a language without a BLEnD country, or one left with no usable item.
    """
    localization: list[LocalizationItem] = []
    for lang in langs:
        made = blend_localization(root, lang)
        if not made.items:
            raise ValueError(
                f"{root}: no usable BLEnD localization item for {lang} ({made.country}); "
                f"{len(made.skipped)} skipped"
            )
        localization.extend(made.items)
    return replace(
        builtin, localization=localization, version=f"{builtin.version}+blend:{Path(root).name}"
    )
