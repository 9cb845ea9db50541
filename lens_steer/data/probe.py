"""The built-in probe set: English plus ko, zh, es, id, el, fa, shipped as JSONL in the package.

Three files under ``lens_steer/data/probe/`` (``transfer.jsonl``, ``localization.jsonl``,
``parallel.jsonl``), each opening with a ``meta`` line that carries the probe-set version. How
the set was written, its size and its limits are in ``DATA_CARD.md`` beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lens_steer.data.jsonl import probe_set_from_records, read_records
from lens_steer.data.records import ENGLISH, PROBE_LANGUAGES, SPLITS, ProbeSet, Split
from lens_steer.data.schema import ProbeRecord

PROBE_DIR = Path(__file__).resolve().parent / "probe"
PROBE_FILES = ("transfer.jsonl", "localization.jsonl", "parallel.jsonl", "facts.jsonl")


def _as_tuple(
    value: str | Sequence[str] | None, known: Sequence[str], what: str
) -> tuple[str, ...]:
    if value is None:
        return tuple(known)
    chosen = (value,) if isinstance(value, str) else tuple(value)
    unknown = [item for item in chosen if item not in known]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; the probe set has {', '.join(known)}")
    if not chosen:
        raise ValueError(f"Empty {what} selection")
    return chosen


def _read_builtin(folder: Path) -> tuple[list[ProbeRecord], str]:
    records: list[ProbeRecord] = []
    version = ""
    for name in PROBE_FILES:
        if not (folder / name).is_file() and name == "facts.jsonl":
            continue  # transfer v2 is being written
        file_records, file_version = read_records(folder / name)
        if not file_version:
            raise ValueError(f"{name}: no meta line with the probe-set version")
        if version and file_version != version:
            raise ValueError(f"{name}: version {file_version!r} differs from {version!r}")
        version = file_version
        records.extend(file_records)
    return records, version


def load_probe_set(
    langs: str | Sequence[str] | None = None,
    split: Split | Sequence[Split] | None = None,
    *,
    include_english: bool = True,
) -> ProbeSet:
    """Load the built-in probe set, optionally for some languages and splits only.

    English is the reference side of the EN vectors and of the transfer comparison, so English
    transfer and parallel items are kept whenever LOC languages are asked for, unless
    ``include_english=False``. Localization items carry their English forms inside each record
    and have no English rows of their own.

    Args:
        langs: language codes (``"ko"`` or ``["ko", "zh"]``); ``None`` for all seven.
        split: ``"fit"``, ``"dev"``, ``"eval"`` or several of them; ``None`` for all.
        include_english: keep English transfer/parallel items when ``langs`` omits ``"en"``.

    Example:
        >>> probes = load_probe_set(["ko"], split="eval")
        >>> sorted({item.lang for item in probes.parallel})
        ['en', 'ko']
    """
    wanted_langs = set(_as_tuple(langs, PROBE_LANGUAGES, "language(s)"))
    if langs is not None and include_english:
        wanted_langs.add(ENGLISH)
    wanted_splits = set(_as_tuple(split, SPLITS, "split(s)"))
    records, version = _read_builtin(PROBE_DIR)
    chosen = [r for r in records if r.lang in wanted_langs and r.split in wanted_splits]
    return probe_set_from_records(chosen, version)
