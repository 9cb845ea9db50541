"""The JSONL schema of probe records: turn one parsed line into a typed record, or say why not.

One record per line, a JSON object whose ``kind`` names its type:

* ``{"kind": "transfer", "id", "group", "lang", "split", "topic", "question", "options", "answer"}``
* ``{"kind": "localization", "id", "group", "lang", "split", "topic", "implicit", "explicit",
  "local_answer", "us_answer", "english_implicit", "english_explicit", "english_local_answer",
  "english_us_answer"}``
* ``{"kind": "parallel", "id", "group", "lang", "split", "text"}``
* ``{"kind": "fact", "id", "group", "lang", "split", "topic", "prompt", "answer",
  "distractors"}`` (transfer v2: a cloze prompt, its answer and at least 3 distractors)
* ``{"kind": "blend", "id", "lang", "split", "country", "topic", "explicit", "implicit",
  "english", "english_implicit", "answers", "us_answers"}`` (a BLEnD question; each answer is
  ``{"text", "english", "votes", "aliases", "english_aliases"}``; ``english_implicit`` may be "")
* ``{"kind": "meta", "version": "1.0"}`` (optional; gives ``ProbeSet.version``); it may also
  declare new languages and countries: ``"languages": [{"code", "name", "script",
  "space_separated", "question_cue", "answer_cue", "our_country", "our_region",
  "default_country"}]``, ``"countries": [{"name", "english_name", "lang", "region", "blend"}]``
  (see :mod:`lens_steer.data.languages`)

Every field is required and no other field is allowed, so a misspelt key is an error rather
than a silently missing value. Every error names the source, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

from lens_steer.data.languages import (
    Country,
    Language,
    country_from_json,
    is_known_language,
    language_from_json,
)
from lens_steer.data.records import (
    SPLITS,
    BlendAnswer,
    BlendItem,
    FactItem,
    LocalizationItem,
    ParallelItem,
    Split,
    TransferItem,
)

ProbeRecord = TransferItem | LocalizationItem | ParallelItem | FactItem | BlendItem

RECORD_TYPES: dict[str, type] = {
    "transfer": TransferItem,
    "localization": LocalizationItem,
    "parallel": ParallelItem,
    "fact": FactItem,
    "blend": BlendItem,
}
META_FIELDS = ("kind", "version")
META_OPTIONAL = ("languages", "countries")
MIN_OPTIONS = 2
MIN_DISTRACTORS = 3
ANSWER_FIELDS = ("text", "english", "votes", "aliases", "english_aliases")


class RecordError(ValueError):
    """A record that breaks the schema; the message names source, line and field."""

    def __init__(self, source: str, line: int, message: str, field: str | None = None):
        self.source = source
        self.line = line
        self.field = field
        where = f"{source} line {line}"
        super().__init__(f"{where}: field {field!r}: {message}" if field else f"{where}: {message}")


def _text(obj: dict[str, Any], name: str, source: str, line: int) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise RecordError(source, line, f"expected a string, got {type(value).__name__}", name)
    if not value.strip():
        raise RecordError(source, line, "empty text", name)
    if value != value.strip():
        # A prompt ending in a space would be tokenized differently from the continuation
        # " answer" the templates append; refuse it instead of scoring the wrong text.
        raise RecordError(source, line, "leading or trailing whitespace", name)
    return value


def _lang(obj: dict[str, Any], source: str, line: int) -> str:
    lang = _text(obj, "lang", source, line)
    if not is_known_language(lang):
        raise RecordError(
            source,
            line,
            f"unknown language code {lang!r}; declare it in a meta record "
            '({"kind": "meta", "version": ..., "languages": [...]}) or use a registered one',
            "lang",
        )
    return lang


def _split(obj: dict[str, Any], source: str, line: int) -> Split:
    split = _text(obj, "split", source, line)
    if split not in SPLITS:
        raise RecordError(
            source, line, f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", "split"
        )
    return cast(Split, split)


def _options(obj: dict[str, Any], source: str, line: int) -> tuple[str, ...]:
    value = obj["options"]
    if not isinstance(value, list) or len(value) < MIN_OPTIONS:
        raise RecordError(
            source, line, f"expected a list of at least {MIN_OPTIONS} strings", "options"
        )
    options = []
    for position, option in enumerate(value):
        if not isinstance(option, str) or not option.strip() or option != option.strip():
            raise RecordError(
                source,
                line,
                f"option {position} must be a non-empty string without outer whitespace",
                "options",
            )
        options.append(option)
    if len(set(options)) != len(options):
        raise RecordError(source, line, "options must be distinct", "options")
    return tuple(options)


def _answer(obj: dict[str, Any], n_options: int, source: str, line: int) -> int:
    value = obj["answer"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(source, line, f"expected an integer, got {value!r}", "answer")
    if not 0 <= value < n_options:
        raise RecordError(
            source, line, f"index {value} out of range for {n_options} options", "answer"
        )
    return value


@dataclass(frozen=True)
class MetaRecord:
    """A ``meta`` line: the data version and any languages and countries it declares."""

    version: str
    languages: tuple[Language, ...] = ()
    countries: tuple[Country, ...] = ()


def _check_keys(
    obj: dict[str, Any],
    expected: tuple[str, ...],
    source: str,
    line: int,
    optional: tuple[str, ...] = (),
) -> None:
    for name in expected:
        if name not in obj:
            raise RecordError(source, line, "missing", name)
    for name in obj:
        if name not in expected and name not in optional:
            raise RecordError(source, line, f"unknown field; expected {', '.join(expected)}", name)


def record_fields(kind: str) -> tuple[str, ...]:
    """The JSONL keys of a record kind, ``kind`` first."""
    return ("kind", *(f.name for f in fields(RECORD_TYPES[kind])))


def parse_meta(obj: dict[str, Any], *, source: str, line: int) -> MetaRecord:
    """Validate a ``meta`` line (version, declared languages and countries)."""
    _check_keys(obj, META_FIELDS, source, line, META_OPTIONAL)
    declared: dict[str, list[Any]] = {}
    for name in META_OPTIONAL:
        value = obj.get(name, [])
        if not isinstance(value, list):
            raise RecordError(source, line, "expected a list of objects", name)
        declared[name] = value
    try:
        langs = tuple(
            language_from_json(entry, f"{source} line {line} languages[{index}]")
            for index, entry in enumerate(declared["languages"])
        )
        found = tuple(
            country_from_json(entry, f"{source} line {line} countries[{index}]")
            for index, entry in enumerate(declared["countries"])
        )
    except ValueError as err:
        raise RecordError(source, line, str(err).split(": ", 1)[-1], "languages") from None
    return MetaRecord(_text(obj, "version", source, line), langs, found)


def parse_record(obj: Any, *, source: str, line: int) -> ProbeRecord | MetaRecord:
    """Validate one parsed JSONL line and build its record.

    Returns the record, or a :class:`MetaRecord` for a ``meta`` line. The record's language
    must be registered (declare new ones in a meta line, which :func:`read_records` registers
    before it validates the other lines).

    Example:
        >>> parse_record({"kind": "parallel", "id": "par-001-en", "group": "par-001",
        ...     "lang": "en", "split": "fit", "text": "The sun is up."}, source="x.jsonl", line=1)
        ParallelItem(id='par-001-en', group='par-001', lang='en', split='fit', text='The sun is up.')
    """
    if not isinstance(obj, dict):
        raise RecordError(source, line, f"expected a JSON object, got {type(obj).__name__}")
    if "kind" not in obj:
        raise RecordError(source, line, "missing", "kind")
    kind = obj["kind"]
    if kind == "meta":
        return parse_meta(obj, source=source, line=line)
    if kind not in RECORD_TYPES:
        known = ", ".join([*RECORD_TYPES, "meta"])
        raise RecordError(source, line, f"unknown kind {kind!r}; expected one of {known}", "kind")
    _check_keys(obj, record_fields(kind), source, line)
    record_id = _text(obj, "id", source, line)
    if kind == "blend":
        return _blend_item(obj, record_id, source, line)
    group = _text(obj, "group", source, line)
    lang = _lang(obj, source, line)
    split = _split(obj, source, line)
    if kind == "parallel":
        return ParallelItem(record_id, group, lang, split, text=_text(obj, "text", source, line))
    if kind == "fact":
        return _fact_item(obj, record_id, group, lang, split, source, line)
    if kind == "transfer":
        options = _options(obj, source, line)
        return TransferItem(
            record_id,
            group,
            lang,
            split,
            topic=_text(obj, "topic", source, line),
            question=_text(obj, "question", source, line),
            options=options,
            answer=_answer(obj, len(options), source, line),
        )
    texts = {name: _text(obj, name, source, line) for name in record_fields(kind)[5:]}
    for first, second in (
        ("local_answer", "us_answer"),
        ("english_local_answer", "english_us_answer"),
        ("implicit", "explicit"),
        ("english_implicit", "english_explicit"),
    ):
        if texts[first] == texts[second]:
            raise RecordError(source, line, f"must differ from {first!r}", second)
    return LocalizationItem(record_id, group, lang, split, **texts)


def _fact_item(
    obj: dict[str, Any], record_id: str, group: str, lang: str, split: Split, source: str, line: int
) -> FactItem:
    prompt = _text(obj, "prompt", source, line)
    answer = _text(obj, "answer", source, line)
    value = obj["distractors"]
    if not isinstance(value, list) or len(value) < MIN_DISTRACTORS:
        raise RecordError(
            source, line, f"expected a list of at least {MIN_DISTRACTORS} strings", "distractors"
        )
    options = _options({"options": [answer, *value]}, source, line)
    return FactItem(
        record_id,
        group,
        lang,
        split,
        topic=_text(obj, "topic", source, line),
        prompt=prompt,
        answer=answer,
        distractors=options[1:],
    )


def _blend_answers(
    obj: dict[str, Any], name: str, source: str, line: int
) -> tuple[BlendAnswer, ...]:
    value = obj[name]
    if not isinstance(value, list):
        raise RecordError(source, line, "expected a list of answer objects", name)
    answers = []
    for position, entry in enumerate(value):
        where = f"{name}[{position}]"
        if not isinstance(entry, dict) or set(entry) != set(ANSWER_FIELDS):
            raise RecordError(
                source,
                line,
                f"each answer needs exactly the keys {', '.join(ANSWER_FIELDS)}",
                where,
            )
        votes = entry["votes"]
        if isinstance(votes, bool) or not isinstance(votes, int) or votes < 0:
            raise RecordError(
                source, line, f"votes must be a non-negative integer, got {votes!r}", where
            )
        texts = [entry["text"], entry["english"], *entry["aliases"], *entry["english_aliases"]]
        if not all(isinstance(text, str) for text in texts) or not entry["text"].strip():
            raise RecordError(source, line, "answer texts must be strings, text non-empty", where)
        answers.append(
            BlendAnswer(
                entry["text"],
                entry["english"],
                votes,
                tuple(entry["aliases"]),
                tuple(entry["english_aliases"]),
            )
        )
    return tuple(answers)


def _blend_item(obj: dict[str, Any], record_id: str, source: str, line: int) -> BlendItem:
    english_implicit = obj["english_implicit"]
    if not isinstance(english_implicit, str):
        raise RecordError(source, line, "expected a string", "english_implicit")
    answers = _blend_answers(obj, "answers", source, line)
    if not answers:
        raise RecordError(source, line, "a BLEnD item needs at least one gold answer", "answers")
    return BlendItem(
        id=record_id,
        lang=_lang(obj, source, line),
        split=_split(obj, source, line),
        country=_text(obj, "country", source, line),
        topic=_text(obj, "topic", source, line),
        explicit=_text(obj, "explicit", source, line),
        implicit=_text(obj, "implicit", source, line),
        english=_text(obj, "english", source, line),
        answers=answers,
        us_answers=_blend_answers(obj, "us_answers", source, line),
        english_implicit=english_implicit,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, BlendAnswer):
        return {name: _plain(getattr(value, name)) for name in ANSWER_FIELDS}
    if isinstance(value, tuple | list):
        return [_plain(entry) for entry in value]
    return value


def record_to_dict(record: ProbeRecord) -> dict[str, Any]:
    """The JSONL object of a record (``kind`` first, tuples as lists)."""
    kind = next(name for name, cls in RECORD_TYPES.items() if isinstance(record, cls))
    row: dict[str, Any] = {"kind": kind}
    for name in record_fields(kind)[1:]:
        row[name] = _plain(getattr(record, name))
    return row
