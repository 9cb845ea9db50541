"""Typed records of the probe set, BLEnD and user data (the contract other modules read).

Plain frozen dataclasses: every record knows its id, language and split, so that a result can
always say which prompts produced it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, overload

from lens_steer.data.languages import ENGLISH

Split = Literal["fit", "dev", "eval"]
SPLITS: tuple[Split, ...] = ("fit", "dev", "eval")

LOC_LANGUAGES: tuple[str, ...] = ("ko", "zh", "es", "id", "el", "fa")
PROBE_LANGUAGES: tuple[str, ...] = (ENGLISH, *LOC_LANGUAGES)


@dataclass(frozen=True)
class TransferItem:
    """A culture-independent multiple-choice question in one language.

    ``group`` is shared by the parallel versions of the same question in all languages.
    """

    id: str
    group: str
    lang: str
    split: Split
    topic: str
    question: str
    options: tuple[str, ...]
    answer: int  # index into options of the correct one


@dataclass(frozen=True)
class FactItem:
    """A culture-independent fact as a cloze prompt in one language (transfer v2).

    ``prompt`` is the text right before the answer ("The capital of Canada is"); ``answer`` and
    ``distractors`` (same type: all cities, all numbers, ...) are the options, answer first when
    scored. ``group`` is shared by the translations of the same fact in every language.
    """

    id: str
    group: str
    lang: str
    split: Split
    topic: str
    prompt: str
    answer: str
    distractors: tuple[str, ...]

    @property
    def options(self) -> tuple[str, ...]:
        """The answer followed by the distractors (the order options are scored in)."""
        return (self.answer, *self.distractors)


@dataclass(frozen=True)
class LocalizationItem:
    """A culture-dependent question asked in a LOC language, implicitly and explicitly.

    ``implicit`` names no country ("in our country"); ``explicit`` names it. ``local_answer``
    is what a person of that culture answers, ``us_answer`` the English/US default, both in
    ``lang``. The ``english_*`` fields are the same item asked in English (implicit form).
    """

    id: str
    group: str
    lang: str
    split: Split
    topic: str
    implicit: str
    explicit: str
    local_answer: str
    us_answer: str
    english_implicit: str
    english_explicit: str
    english_local_answer: str
    english_us_answer: str


@dataclass(frozen=True)
class ParallelItem:
    """One neutral sentence; items sharing ``group`` are translations of each other."""

    id: str
    group: str
    lang: str
    split: Split
    text: str


@dataclass(frozen=True)
class BlendAnswer:
    """A gold BLEnD answer with its annotator vote count."""

    text: str
    english: str
    votes: int
    aliases: tuple[str, ...] = ()  # every local spelling annotators gave, ``text`` first
    english_aliases: tuple[str, ...] = ()  # every English form, ``english`` first


@dataclass(frozen=True)
class BlendItem:
    """A BLEnD question in the country's language, explicit and derived implicit forms."""

    id: str
    lang: str
    split: Split
    country: str
    topic: str
    explicit: str
    implicit: str
    english: str
    answers: tuple[BlendAnswer, ...]
    us_answers: tuple[BlendAnswer, ...] = field(default=())
    english_implicit: str = ""  # English question with "our country"; "" when not derivable


@dataclass(frozen=True)
class BlendSet:
    """The BLEnD items of one country: iterable like a list, plus what the loader skipped.

    ``skipped`` maps the ids the loader left out to the reason: the implicit form could not be
    derived safely (no country mention, or a demonym or inflection the rules do not rewrite),
    or the question has no gold answer.
    """

    country: str
    lang: str
    items: tuple[BlendItem, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[BlendItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> BlendItem: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[BlendItem, ...]: ...
    def __getitem__(self, index: int | slice) -> BlendItem | tuple[BlendItem, ...]:
        return self.items[index]


@dataclass(frozen=True)
class ProbeSet:
    """The three kinds of prompts the study needs, for a set of languages."""

    transfer: list[TransferItem]
    localization: list[LocalizationItem]
    parallel: list[ParallelItem]
    version: str = ""
    facts: list[FactItem] = field(default_factory=list)
    blend: list[BlendItem] = field(default_factory=list)

    @property
    def langs(self) -> tuple[str, ...]:
        seen = {item.lang for item in self.transfer}
        seen |= {item.lang for item in self.localization}
        seen |= {item.lang for item in self.parallel}
        seen |= {item.lang for item in self.facts}
        seen |= {item.lang for item in self.blend}
        return tuple(lang for lang in PROBE_LANGUAGES if lang in seen) + tuple(
            sorted(seen - set(PROBE_LANGUAGES))
        )
