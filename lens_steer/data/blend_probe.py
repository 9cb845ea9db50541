"""BLEnD questions as local-vs-US localization items (the ``blend_localization`` metric).

A BLEnD item becomes a :class:`LocalizationItem` when both of its answers can be written in the
local language: the local answer is the country's most-voted gold answer, and the US-default
answer is the US annotators' most-voted answer *as this country's annotators spelled it* (one of
their own answers whose English form matches it). Items where the two agree, or where no local
annotator gave the US answer, are skipped with the reason, so the localization share compares
two answers in the same language and script. The prompts are BLEnD's questions in the
question/answer frame (implicit: "our country", explicit: the country named, and the English
forms).
"""

from __future__ import annotations

from pathlib import Path

from lens_steer.data.records import BlendItem, LocalizationItem
from lens_steer.data.templates import qa_prompt


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
