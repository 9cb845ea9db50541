"""Resumable work: a JSONL checkpoint of finished units, refused when its settings differ.

The first line is a header with a fingerprint of every setting that changes the numbers (model,
requests, steerings, batching, method). Each later line is one finished unit, appended with
flush + fsync, so a killed run loses at most the unit in flight. A torn last line (the process
died mid-write) is dropped on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_KIND = "lens_steer.checkpoint/1"


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parsed complete lines, and the byte length they span (what follows is a torn write)."""
    data = path.read_bytes()
    intact = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:intact].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from err
    return records, intact


def open_checkpoint(path: str | os.PathLike[str], settings: dict[str, Any]) -> dict[int, Any]:
    """Start or resume a checkpoint; return the payloads of the units already finished.

    Args:
        path: the JSONL file (created with its header when absent).
        settings: ``{name: JSON value}`` of everything that changes the results. A checkpoint
            written with other settings is refused with a ValueError naming the fields.
    """
    path = Path(path)
    header: dict[str, Any] = {
        "kind": _KIND,
        "fingerprint": fingerprint(settings),
        "parts": {name: fingerprint(value) for name, value in settings.items()},
    }
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        _append(path, header)
        return {}
    records, good = _read_lines(path)
    if not records or records[0].get("kind") != _KIND:
        raise ValueError(f"{path}: not a lens_steer checkpoint (no header line)")
    found = records[0]
    if found.get("fingerprint") != header["fingerprint"]:
        theirs, ours = found.get("parts", {}), header["parts"]
        differ = sorted(
            name for name in set(theirs) | set(ours) if theirs.get(name) != ours.get(name)
        )
        raise ValueError(
            f"{path}: checkpoint was written with different settings ({', '.join(differ)}); "
            "delete it or use another checkpoint path"
        )
    with open(path, "r+b") as handle:  # drop a torn last line so appends start on a fresh line
        handle.truncate(good)
    done = {}
    for record in records[1:]:
        done[int(record["unit"])] = record["payload"]
    return done


def _append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def append_unit(path: str | os.PathLike[str], unit: int, payload: Any) -> None:
    """Record one finished unit (flushed and fsynced before returning)."""
    _append(Path(path), {"unit": unit, "payload": payload})
