"""How every probe and BLEnD record becomes the text the model reads: one place, per language.

The study scores options by their continuation log-probability under a *base* language model, so
prompts are written as text such a model continues naturally: a question followed by an answer
cue ("Question: ...\\nAnswer:") for multiple-choice and BLEnD questions, and a cloze prefix
("The currency of our country is the") for localization items. A continuation is the option as
the next words of that text: a leading space in languages that separate words with spaces, none
in Chinese.
"""

from __future__ import annotations

from typing import Literal

from lens_steer.data.languages import language
from lens_steer.data.records import (
    BlendItem,
    FactItem,
    LocalizationItem,
    ParallelItem,
    TransferItem,
)

LocalizationForm = Literal["implicit", "explicit", "english_implicit", "english_explicit"]
BlendForm = Literal["explicit", "implicit", "english"]

LOCALIZATION_FORMS: tuple[LocalizationForm, ...] = (
    "implicit",
    "explicit",
    "english_implicit",
    "english_explicit",
)
BLEND_FORMS: tuple[BlendForm, ...] = ("explicit", "implicit", "english")


def _separator(lang: str) -> str:
    return " " if language(lang).space_separated else ""


def qa_prompt(question: str, lang: str) -> str:
    """Wrap a question in the language's "Question: ...\\nAnswer:" frame.

    The Chinese frame ends in a full-width colon and takes its answer without a space; the
    others end in ":" and take " answer".

    Example:
        >>> qa_prompt("What is the chemical symbol of gold?", "en")
        'Question: What is the chemical symbol of gold?\\nAnswer:'
    """
    info = language(lang)
    return f"{info.question_cue}{_separator(lang)}{question.strip()}\n{info.answer_cue}"


def option_continuation(option: str, lang: str) -> str:
    """The text appended after a prompt to score ``option`` as its continuation.

    Example:
        >>> option_continuation("Au", "en"), option_continuation("人民币", "zh")
        (' Au', '人民币')
    """
    option = option.strip()
    if not option:
        raise ValueError(f"Empty option for language {lang!r}")
    return _separator(lang) + option


def transfer_prompt(item: TransferItem) -> str:
    """The text the model reads before each option of a multiple-choice item.

    Example:
        >>> item = TransferItem("tr-001-en", "tr-001", "en", "eval", "chemistry",
        ...     "What is the chemical symbol of gold?", ("Au", "Ag", "Fe", "Cu"), 0)
        >>> transfer_prompt(item)
        'Question: What is the chemical symbol of gold?\\nAnswer:'
    """
    return qa_prompt(item.question, item.lang)


def fact_prompt(item: FactItem) -> str:
    """The cloze prefix of a transfer-v2 fact (its answer is the natural next words)."""
    return item.prompt.strip()


def neutral_prompt(lang: str) -> str:
    """A context-free prompt of the language (its answer cue), the reference of PMI calibration.

    Example:
        >>> neutral_prompt("ko")
        '답:'
    """
    return language(lang).answer_cue


def _localization_lang(item: LocalizationItem, form: LocalizationForm) -> str:
    if form not in LOCALIZATION_FORMS:
        raise ValueError(
            f"{item.id}: unknown localization form {form!r}; expected one of {LOCALIZATION_FORMS}"
        )
    return "en" if form.startswith("english") else item.lang


def localization_prompt(item: LocalizationItem, form: LocalizationForm) -> str:
    """The cloze prefix of a localization item in one of its four forms.

    Example:
        >>> localization_prompt(item, "implicit")  # doctest: +SKIP
        '우리나라의 화폐 단위는'
    """
    _localization_lang(item, form)
    return str(getattr(item, form)).strip()


def localization_continuations(item: LocalizationItem, form: LocalizationForm) -> tuple[str, str]:
    """``(local, us)`` continuation strings of a localization item, in the form's language.

    Example:
        >>> localization_continuations(item, "implicit")  # doctest: +SKIP
        (' 원', ' 달러')
    """
    lang = _localization_lang(item, form)
    if lang == "en":
        local, us = item.english_local_answer, item.english_us_answer
    else:
        local, us = item.local_answer, item.us_answer
    return option_continuation(local, lang), option_continuation(us, lang)


def _check_blend_form(item: BlendItem, form: BlendForm) -> None:
    if form not in BLEND_FORMS:
        raise ValueError(f"{item.id}: unknown BLEnD form {form!r}; expected one of {BLEND_FORMS}")


def blend_prompt(item: BlendItem, form: BlendForm) -> str:
    """A BLEnD question as a question-answer prompt.

    ``explicit`` names the country in its language, ``implicit`` says "our country" instead,
    ``english`` is BLEnD's parallel English question (which names the country).

    Example:
        >>> blend_prompt(item, "implicit")  # doctest: +SKIP
        '질문: 우리나라 학교 급식에서 흔히 볼 수 있는 음식은 무엇인가요?\\n답:'
    """
    _check_blend_form(item, form)
    if form == "english":
        return qa_prompt(item.english, "en")
    return qa_prompt(item.explicit if form == "explicit" else item.implicit, item.lang)


def blend_continuations(item: BlendItem, form: BlendForm) -> list[str]:
    """Gold local answers as continuation strings, most-voted first.

    For ``form="english"`` the answers' English forms are used (duplicates dropped, first kept).

    Example:
        >>> blend_continuations(item, "implicit")[:2]  # doctest: +SKIP
        [' 김치', ' 밥']
    """
    _check_blend_form(item, form)
    ranked = sorted(item.answers, key=lambda answer: -answer.votes)  # stable: file order on ties
    english = form == "english"
    lang = "en" if english else item.lang
    texts = [answer.english if english else answer.text for answer in ranked]
    continuations = [option_continuation(text, lang) for text in texts if text.strip()]
    return list(dict.fromkeys(continuations))


def parallel_prompt(item: ParallelItem) -> str:
    """The text of a parallel sentence as the model reads it (the sentence itself).

    Example:
        >>> parallel_prompt(ParallelItem("par-001-en", "par-001", "en", "fit", "The sun is up."))
        'The sun is up.'
    """
    return item.text.strip()
