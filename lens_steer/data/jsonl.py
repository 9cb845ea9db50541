"""Read and write probe records as JSONL (the built-in files and user data share one schema).

See :mod:`lens_steer.data.schema` for the record format. Blank lines are allowed; anything else
that is not a valid record stops loading with an error naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lens_steer._io import write_jsonl_atomic
from lens_steer.data.languages import register_country, register_language
from lens_steer.data.records import (
    BlendItem,
    FactItem,
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    TransferItem,
)
from lens_steer.data.schema import (
    MetaRecord,
    ProbeRecord,
    RecordError,
    parse_meta,
    parse_record,
    record_to_dict,
)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"field {key!r}: duplicate key")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def _parse_json(text: str, *, source: str, line: int) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as error:
        raise RecordError(
            source, line, f"invalid JSON ({error.msg} at column {error.colno})"
        ) from None
    except ValueError as error:
        raise RecordError(source, line, f"invalid JSON ({error})") from None


def parse_line(text: str, *, source: str, line: int) -> ProbeRecord | MetaRecord:
    """Parse one JSONL line (not blank) into a record or a meta record."""
    return parse_record(_parse_json(text, source=source, line=line), source=source, line=line)


def _register_declared(meta: MetaRecord, source: str, line: int) -> None:
    try:
        for lang in meta.languages:
            register_language(lang, source=f"{source} line {line}")
        for info in meta.countries:
            register_country(info, source=f"{source} line {line}")
    except ValueError as err:
        raise RecordError(source, line, str(err), "languages") from None


def _json_lines(path: str | Path) -> tuple[str, list[tuple[int, Any]]]:
    """The file's full path and its non-blank lines, parsed as JSON, with their line numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Probe data file not found: {path.resolve()}")
    source = str(path.resolve())
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{source}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    # Split on "\n" only: str.splitlines would also break inside texts holding U+2028 etc.
    lines = [
        (number, _parse_json(text, source=source, line=number))
        for number, text in enumerate(content.split("\n"), start=1)
        if text.strip()
    ]
    return source, lines


def _register_meta(lines: list[tuple[int, Any]], source: str) -> str:
    """Validate the meta lines, register what they declare, and return the file's version."""
    version, version_line = "", 0
    for number, obj in lines:
        if isinstance(obj, dict) and obj.get("kind") == "meta":
            meta = parse_meta(obj, source=source, line=number)
            if version and meta.version != version:
                raise RecordError(
                    source,
                    number,
                    f"{meta.version!r} disagrees with line {version_line}",
                    "version",
                )
            version, version_line = meta.version, number
            _register_declared(meta, source, number)
    return version


def declare_languages(path: str | Path) -> str:
    """Register the languages and countries a JSONL file's meta records declare; its version.

    Lets a study parse a target such as ``"zz"`` whose language only a ``--data`` file
    declares, before the file's records are loaded.
    """
    source, lines = _json_lines(path)
    return _register_meta(lines, source)


def read_records(path: str | Path) -> tuple[list[ProbeRecord], str]:
    """All records of a JSONL file, in file order, and its version ("" without a meta line).

    Meta lines are read first: the languages and countries they declare are registered (see
    :mod:`lens_steer.data.languages`) before the other lines are validated. Errors name the
    file by its full path, the line and the field.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line breaks the schema, two records share an id, or meta lines disagree.
    """
    source, lines = _json_lines(path)
    version = _register_meta(lines, source)
    records: list[ProbeRecord] = []
    first_line: dict[str, int] = {}
    for number, obj in lines:
        parsed = parse_record(obj, source=source, line=number)
        if isinstance(parsed, MetaRecord):
            continue
        if parsed.id in first_line:
            raise RecordError(
                source,
                number,
                f"duplicate id {parsed.id!r} (first on line {first_line[parsed.id]})",
                "id",
            )
        first_line[parsed.id] = number
        records.append(parsed)
    return records, version


def probe_set_from_records(records: Iterable[ProbeRecord], version: str = "") -> ProbeSet:
    """Sort records by kind into a ``ProbeSet``, keeping their order."""
    transfer: list[TransferItem] = []
    localization: list[LocalizationItem] = []
    parallel: list[ParallelItem] = []
    facts: list[FactItem] = []
    blend: list[BlendItem] = []
    for record in records:
        if isinstance(record, TransferItem):
            transfer.append(record)
        elif isinstance(record, LocalizationItem):
            localization.append(record)
        elif isinstance(record, FactItem):
            facts.append(record)
        elif isinstance(record, BlendItem):
            blend.append(record)
        else:
            parallel.append(record)
    return ProbeSet(
        transfer=transfer,
        localization=localization,
        parallel=parallel,
        version=version,
        facts=facts,
        blend=blend,
    )


def load_jsonl(path: str | Path) -> ProbeSet:
    """Load user probe data from a JSONL file in the built-in schema.

    One JSON object per line with a ``kind`` of ``transfer``, ``localization``, ``parallel`` or
    ``meta`` (see :mod:`lens_steer.data.schema`); kinds may be mixed in one file.

    Args:
        path: the JSONL file.

    Example:
        >>> probes = load_jsonl("my_probes.jsonl")  # doctest: +SKIP
        >>> probes.localization[0].implicit  # doctest: +SKIP
        '우리나라의 화폐 단위는'
    """
    records, version = read_records(path)
    return probe_set_from_records(records, version)


def write_jsonl(probe_set: ProbeSet, path: str | Path) -> Path:
    """Write a ``ProbeSet`` as JSONL (atomically) that ``load_jsonl`` reads back identically."""
    rows: list[dict[str, Any]] = []
    if probe_set.version:
        rows.append({"kind": "meta", "version": probe_set.version})
    records: list[ProbeRecord] = [
        *probe_set.transfer,
        *probe_set.localization,
        *probe_set.parallel,
        *probe_set.facts,
        *probe_set.blend,
    ]
    rows.extend(record_to_dict(record) for record in records)
    return write_jsonl_atomic(path, rows)
