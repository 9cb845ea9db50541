"""User probe data from JSONL: schema errors name file, line and field; corruption never passes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lens_steer.data import (
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    TransferItem,
    load_jsonl,
    load_probe_set,
)
from lens_steer.data.jsonl import write_jsonl
from lens_steer.data.languages import languages

TRANSFER = {
    "kind": "transfer",
    "id": "q1-ko",
    "group": "q1",
    "lang": "ko",
    "split": "eval",
    "topic": "chemistry",
    "question": "금의 화학 기호는 무엇입니까?",
    "options": ["Au", "Ag", "Fe", "Cu"],
    "answer": 0,
}
LOCALIZATION = {
    "kind": "localization",
    "id": "loc1-ko",
    "group": "loc-currency",
    "lang": "ko",
    "split": "fit",
    "topic": "currency",
    "implicit": "우리나라의 화폐 단위는",
    "explicit": "한국의 화폐 단위는",
    "local_answer": "원",
    "us_answer": "달러",
    "english_implicit": "The currency of our country is the",
    "english_explicit": "The currency of South Korea is the",
    "english_local_answer": "won",
    "english_us_answer": "dollar",
}
PARALLEL = {
    "kind": "parallel",
    "id": "p1-en",
    "group": "p1",
    "lang": "en",
    "split": "dev",
    "text": "The sun rises in the east.",
}
VALID_ROWS = [{"kind": "meta", "version": "0.3"}, TRANSFER, LOCALIZATION, PARALLEL]


def _write(path: Path, rows: list[dict] | list[str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _changed(row: dict, **changes) -> dict:
    return {**row, **changes}


def _without(row: dict, field: str) -> dict:
    return {key: value for key, value in row.items() if key != field}


def test_load_jsonl_builds_typed_records_of_every_kind(tmp_path):
    probes = load_jsonl(_write(tmp_path / "mine.jsonl", VALID_ROWS))
    assert probes.version == "0.3"
    assert probes.transfer == [
        TransferItem(
            "q1-ko",
            "q1",
            "ko",
            "eval",
            "chemistry",
            "금의 화학 기호는 무엇입니까?",
            ("Au", "Ag", "Fe", "Cu"),
            0,
        )
    ]
    assert probes.localization == [LocalizationItem(**_without(LOCALIZATION, "kind"))]
    assert probes.parallel == [
        ParallelItem("p1-en", "p1", "en", "dev", "The sun rises in the east.")
    ]
    assert probes.langs == ("en", "ko")


def test_blank_lines_are_allowed_and_line_numbers_count_them(tmp_path):
    path = _write(
        tmp_path / "gaps.jsonl",
        ["", json.dumps(PARALLEL), "   ", json.dumps(_without(TRANSFER, "topic"))],
    )
    with pytest.raises(ValueError, match=r"/gaps\.jsonl line 4: field 'topic': missing$"):
        load_jsonl(path)


def test_builtin_probe_set_round_trips_through_write_jsonl(tmp_path):
    probes = load_probe_set()
    again = load_jsonl(write_jsonl(probes, tmp_path / "all.jsonl"))
    assert again == probes


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [json.dumps(PARALLEL), '{"kind": "parallel", "id": "p2"'],
            r"bad\.jsonl line 2: invalid JSON \(Expecting ',' delimiter at column \d+\)",
        ),
        ([_without(TRANSFER, "options")], r"bad\.jsonl line 1: field 'options': missing"),
        (
            [_changed(PARALLEL, lang="xx")],
            r"bad\.jsonl line 1: field 'lang': unknown language code 'xx'; declare it in a meta record",
        ),
        (
            [_changed(TRANSFER, options=["Au", "Ag", "Au"])],
            r"line 1: field 'options': options must be distinct",
        ),
        (
            [_changed(TRANSFER, options="Au")],
            r"line 1: field 'options': expected a list of at least 2 strings",
        ),
        (
            [_changed(TRANSFER, options=["Au", 7])],
            r"line 1: field 'options': option 1 must be a non-empty",
        ),
        (
            [_changed(TRANSFER, answer=4)],
            r"line 1: field 'answer': index 4 out of range for 4 options",
        ),
        ([_changed(TRANSFER, answer=True)], r"line 1: field 'answer': expected an integer"),
        ([_changed(TRANSFER, answer="0")], r"line 1: field 'answer': expected an integer"),
        (
            [_changed(PARALLEL, split="test")],
            r"line 1: field 'split': unknown split 'test'; expected one of fit, dev, eval",
        ),
        ([_changed(PARALLEL, text="")], r"line 1: field 'text': empty text"),
        (
            [_changed(LOCALIZATION, implicit="우리나라의 화폐 단위는 ")],
            r"line 1: field 'implicit': leading or trailing whitespace",
        ),
        (
            [_changed(LOCALIZATION, us_answer="원")],
            r"line 1: field 'us_answer': must differ from 'local_answer'",
        ),
        (
            [_changed(PARALLEL, colour="red")],
            r"line 1: field 'colour': unknown field; expected kind, id, group, lang, split, text",
        ),
        ([_changed(PARALLEL, kind="sentence")], r"line 1: field 'kind': unknown kind 'sentence'"),
        ([_without(PARALLEL, "kind")], r"line 1: field 'kind': missing"),
        (["[1, 2]"], r"bad\.jsonl line 1: expected a JSON object, got list"),
        (
            ['{"kind": "parallel", "kind": "parallel"}'],
            r"line 1: invalid JSON \(field 'kind': duplicate key\)",
        ),
        (
            [json.dumps(PARALLEL).replace('"dev"', "NaN")],
            r"line 1: invalid JSON \(NaN is not a valid JSON value\)",
        ),
        (
            [PARALLEL, TRANSFER, PARALLEL],
            r"line 3: field 'id': duplicate id 'p1-en' \(first on line 1\)",
        ),
        (
            [{"kind": "meta", "version": "1"}, {"kind": "meta", "version": "2"}],
            r"line 2: field 'version': '2' disagrees with line 1",
        ),
    ],
)
def test_bad_input_raises_an_error_naming_file_line_and_field(tmp_path, rows, message):
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        load_jsonl(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        load_jsonl(tmp_path / "nothing.jsonl")


def test_non_utf8_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(PARALLEL).replace("east", "est\u00e9").encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl: not UTF-8 text"):
        load_jsonl(path)


def test_every_supported_language_has_a_prompt_template():
    from lens_steer.data.templates import qa_prompt

    codes = [lang.code for lang in languages()]
    assert set(codes) >= {"en", "ko", "zh", "es", "id", "el", "fa"}
    for code in codes:
        assert qa_prompt("x", code).count("\n") == 1


# --- Property: random corruption of a valid file never passes silently ---------------------
#
# A corruption is one character deleted, inserted or replaced anywhere in the JSON *structure*
# of a valid file: outside string values (braces, brackets, colons, commas, whitespace, key
# names, numbers, newlines between records). Free-text values are excluded because a changed
# letter in a question is a different, equally valid question that no loader can tell apart;
# likewise a digit replaced by another digit inside a number. Every other edit must either raise
# a ValueError that names the file and the corrupted line (or the next one, when a newline was
# inserted), or be semantically harmless and load to exactly the same records.

_VALID_FILE_ROWS = [
    VALID_ROWS[0],
    TRANSFER,
    LOCALIZATION,
    PARALLEL,
    _changed(PARALLEL, id="p1-ko", lang="ko", text="해는 동쪽에서 뜬다."),
]
_VALID_TEXT = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in _VALID_FILE_ROWS)
_INSERTABLE = list('{}[]:,"\\ \n\t0123456789-.eE+abkxyz')


def _structural_positions(text: str) -> list[tuple[int, bool, bool]]:
    """(index, inside a number, insertion allowed) for every char outside string values.

    Inserting before a value's closing quote would append to the value, so it is not allowed.
    """
    positions: list[tuple[int, bool, bool]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = index + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            is_key = text[end + 1 : end + 2] == ":"
            if is_key:
                positions.extend((k, False, True) for k in range(index, end + 1))
            else:
                # The quotes of a value are structure; its content is not.
                positions.append((index, False, True))
                positions.append((end, False, False))
            index = end + 1
            continue
        positions.append((index, char.isdigit(), True))
        index += 1
    return positions


_POSITIONS = _structural_positions(_VALID_TEXT)


@st.composite
def _corruptions(draw):
    index, in_number, can_insert = draw(st.sampled_from(_POSITIONS))
    operations = ["delete", "insert", "replace"] if can_insert else ["delete", "replace"]
    operation = draw(st.sampled_from(operations))
    if operation == "delete":
        return index, _VALID_TEXT[:index] + _VALID_TEXT[index + 1 :]
    char = draw(st.sampled_from(_INSERTABLE))
    if operation == "insert":
        return index, _VALID_TEXT[:index] + char + _VALID_TEXT[index:]
    if in_number and char.isdigit():
        char = "x"  # digit-for-digit inside a number is a different valid value, not corruption
    if char == _VALID_TEXT[index]:
        char = "#"
    return index, _VALID_TEXT[:index] + char + _VALID_TEXT[index + 1 :]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(corruption=_corruptions())
def test_random_structural_corruption_never_passes_silently(tmp_path, corruption):
    index, text = corruption
    original = load_jsonl(_write_text(tmp_path / "valid.jsonl", _VALID_TEXT))
    path = _write_text(tmp_path / "corrupt.jsonl", text)
    corrupted_line = _VALID_TEXT[:index].count("\n") + 1
    try:
        result = load_jsonl(path)
    except ValueError as error:
        match = re.match(re.escape(str(path.resolve())) + r" line (\d+): ", str(error))
        assert match, f"error does not name file and line: {error}"
        assert int(match.group(1)) in (corrupted_line, corrupted_line + 1), str(error)
        return
    assert result == original, "a corrupted file loaded to different records without an error"


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_corruption_property_can_fail_on_a_lenient_loader(tmp_path):
    """The property is not vacuous: json.loads alone lets a misspelt key through silently."""
    renamed = _VALID_TEXT.replace('"topic": "chemistry"', '"topix": "chemistry"', 1)
    assert json.loads(renamed.splitlines()[1])["topix"] == "chemistry"
    with pytest.raises(ValueError, match=r"line 2: field 'topic': missing"):
        load_jsonl(_write_text(tmp_path / "renamed.jsonl", renamed))


def test_probe_set_value_is_a_plain_dataclass():
    probes = ProbeSet(transfer=[], localization=[], parallel=[])
    assert probes.langs == () and probes.version == ""
