"""Load BLEnD (Myung et al., NeurIPS 2024) from its published layout, with implicit questions.

A BLEnD root holds ``annotations/{Country}_data.json`` (question id -> local question, English
question and annotator answers with vote counts) and ``questions/{Country}_questions.csv`` (id,
topic, source, local question, English translation). BLEnD files are not shipped with
lens_steer: point ``load_blend`` at your own copy.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_steer.data.blend_implicit import RULES, DerivationError, english_rules
from lens_steer.data.languages import Country, countries
from lens_steer.data.records import SPLITS, BlendAnswer, BlendItem, BlendSet, Split

# The 16 countries/regions of BLEnD and the language of their questions (from the registry).
COUNTRIES: dict[str, Country] = {info.name: info for info in countries() if info.blend}

# Fractions of BLEnD ids in the fit and dev splits; the rest is eval.
SPLIT_FRACTIONS = (0.5, 0.2)
US_STEM = "US"


def resolve_country(name: str) -> Country:
    """Accept ``"South_Korea"``, ``"South Korea"`` or ``"south korea"``; list the 16 otherwise."""
    key = name.strip().replace(" ", "_").casefold()
    for stem, info in COUNTRIES.items():
        if stem.casefold() == key:
            return info
    raise ValueError(f"Unknown BLEnD country {name!r}; BLEnD has {', '.join(COUNTRIES)}")


def blend_split(question_id: str) -> Split:
    """The split of a BLEnD question id: a stable hash, the same for every country.

    Example:
        >>> blend_split("Al-en-06") in ("fit", "dev", "eval")
        True
    """
    digest = hashlib.sha256(question_id.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    fit, dev = SPLIT_FRACTIONS
    return SPLITS[0] if fraction < fit else SPLITS[1] if fraction < fit + dev else SPLITS[2]


def _annotation_path(root: Path, stem: str) -> Path:
    return root / "annotations" / f"{stem}_data.json"


def _read_annotations(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"BLEnD annotations not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} line {error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected an object of question id -> entry")
    for question_id, entry in data.items():
        for name in ("question", "en_question", "annotations"):
            if not isinstance(entry, dict) or name not in entry:
                raise ValueError(f"{path.name}: question {question_id!r}: field {name!r} missing")
    return data


def _read_topics(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"BLEnD questions not found: {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"ID", "Topic"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path.name} line 1: column(s) {sorted(missing)} missing")
        return {row["ID"]: row["Topic"] for row in reader}


def _answers(entry: Mapping[str, Any], *, source: str, question_id: str) -> tuple[BlendAnswer, ...]:
    answers = []
    for position, annotation in enumerate(entry["annotations"]):
        local = [
            a.strip() for a in annotation.get("answers", []) if isinstance(a, str) and a.strip()
        ]
        english = [
            a.strip() for a in annotation.get("en_answers", []) if isinstance(a, str) and a.strip()
        ]
        votes = annotation.get("count")
        if isinstance(votes, bool) or not isinstance(votes, int) or votes < 0:
            raise ValueError(
                f"{source}: question {question_id!r}: annotation {position}: field 'count' must "
                f"be a non-negative integer, got {votes!r}"
            )
        if not local:
            continue
        answers.append(
            BlendAnswer(
                text=local[0],
                english=english[0] if english else "",
                votes=votes,
                aliases=tuple(local),
                english_aliases=tuple(english),
            )
        )
    return tuple(sorted(answers, key=lambda answer: -answer.votes))


@dataclass(frozen=True)
class _UsAnswers:
    by_id: dict[str, tuple[BlendAnswer, ...]]


def _us_answers(root: Path, country: Country) -> _UsAnswers:
    path = _annotation_path(root, US_STEM)
    if country.name == US_STEM or not path.is_file():
        return _UsAnswers({})
    data = _read_annotations(path)
    return _UsAnswers(
        {qid: _answers(entry, source=path.name, question_id=qid) for qid, entry in data.items()}
    )


def load_blend(root: str | Path, country: str, *, split: Split | None = None) -> BlendSet:
    """Load one BLEnD country: explicit and derived implicit questions with gold answers.

    Items whose implicit form cannot be derived safely, or that have no gold answer, are
    skipped; ``BlendSet.skipped`` maps their ids to the reason. ``us_answers`` come from
    ``US_data.json`` in the same root when it is there.

    Args:
        root: the BLEnD folder holding ``annotations/`` and ``questions/``.
        country: one of the 16 (``"South_Korea"``, ``"Iran"``, ``"West Java"``...).
        split: keep only ``"fit"``, ``"dev"`` or ``"eval"`` ids (stable hash of the id).

    Example:
        >>> blend = load_blend("data/blend", "South_Korea")  # doctest: +SKIP
        >>> item = next(i for i in blend if i.id == "Al-en-06")  # doctest: +SKIP
        >>> item.implicit, item.answers[0].text  # doctest: +SKIP
        ('우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?', '김치')
    """
    root = Path(root)
    info = resolve_country(country)
    if not root.is_dir():
        raise FileNotFoundError(f"BLEnD root folder not found: {root}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    annotation_path = _annotation_path(root, info.name)
    questions_path = root / "questions" / f"{info.name}_questions.csv"
    data = _read_annotations(annotation_path)
    topics = _read_topics(questions_path)
    missing = sorted(set(data) - set(topics))
    if missing:
        raise ValueError(
            f"{questions_path.name}: no row for question id(s) {missing[:5]} of {annotation_path.name}"
        )
    us = _us_answers(root, info)
    rules = RULES[info.name]
    english = english_rules(info.name)
    items: list[BlendItem] = []
    skipped: dict[str, str] = {}
    for question_id, entry in data.items():
        item_split = blend_split(question_id)
        if split is not None and item_split != split:
            continue
        explicit = str(entry["question"]).strip()
        answers = _answers(entry, source=annotation_path.name, question_id=question_id)
        if not explicit:
            skipped[question_id] = "empty question"
            continue
        if not answers:
            skipped[question_id] = "no gold answer"
            continue
        try:
            implicit = rules.derive(explicit)
        except DerivationError as error:
            skipped[question_id] = error.reason
            continue
        english_question = str(entry["en_question"]).strip()
        try:
            english_implicit = english.derive(english_question)
        except DerivationError:
            english_implicit = ""
        items.append(
            BlendItem(
                id=question_id,
                lang=info.lang,
                split=item_split,
                country=info.name,
                topic=topics[question_id],
                explicit=explicit,
                implicit=implicit,
                english=english_question,
                answers=answers,
                us_answers=us.by_id.get(question_id, ()),
                english_implicit=english_implicit,
            )
        )
    return BlendSet(country=info.name, lang=info.lang, items=tuple(items), skipped=skipped)
