#!/usr/bin/env python
"""Build the BLEnD-derived localization set shipped in ``lens_steer/data/blend_derived/``.

BLEnD (Myung et al., NeurIPS 2024 Datasets and Benchmarks; CC BY-SA 4.0) is read with the
package's own loader, :func:`lens_steer.data.load_blend`, which derives the implicit ("our
country") form of each question, keeps the gold local answers with their vote counts, the
English question and its implicit form, and the US annotators' answers to the same question.
Only the six countries whose language is a LOC language of the study are built; the US file is
read as an answer source only (the loader reads it), and no other country's items are written.

Output, one file per country plus a report of what was left out:

* ``{Country}.jsonl``: a ``{"kind": "meta", "version": "blend-derived-1.0"}`` line, then one
  ``{"kind": "blend", ...}`` record per kept question, ordered by question id;
* ``skipped.json``: per country, the kept counts per split, the skipped count per reason, and
  every skipped question id with its reason.

The output is a function of the BLEnD files alone (sorted ids, fixed key order, no timestamps),
so rebuilding from the same copy reproduces every file byte for byte. Each file is written to a
temporary file in the output folder and renamed into place.

Usage (from the repository root)::

    .venv/bin/python scripts/build_blend_derived.py            # ../shared/data/blend
    .venv/bin/python scripts/build_blend_derived.py --root BLEnD/data --out derived
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO_ROOT / ".." / "shared" / "data" / "blend"
DEFAULT_OUT = REPO_ROOT / "lens_steer" / "data" / "blend_derived"
VERSION = "blend-derived-1.0"
# The six BLEnD countries whose language is a LOC language of the study, in the study's order
# (ko, zh, es, id, el, fa). Nothing else may be shipped.
COUNTRIES = ("South_Korea", "China", "Spain", "Indonesia", "Greece", "Iran")
SPLITS = ("fit", "dev", "eval")
SKIPPED_FILE = "skipped.json"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def country_lines(root: Path, country: str) -> tuple[list[str], dict[str, Any]]:
    """The JSONL lines of one country and its report (counts, skipped ids with reasons)."""
    from lens_steer.data import load_blend
    from lens_steer.data.schema import record_to_dict

    blend = load_blend(root, country)
    items = sorted(blend.items, key=lambda item: item.id)
    if len({item.id for item in items}) != len(items):
        raise ValueError(f"{country}: duplicate question ids in the BLEnD files")
    foreign = {item.country for item in items} - {country}
    if foreign:
        raise ValueError(f"{country}: the loader returned items of {sorted(foreign)}")
    lines = [json.dumps({"kind": "meta", "version": VERSION}, ensure_ascii=False)]
    lines += [json.dumps(record_to_dict(item), ensure_ascii=False) for item in items]
    splits = collections.Counter(item.split for item in items)
    reasons = collections.Counter(blend.skipped.values())
    report = {
        "lang": blend.lang,
        "kept": len(items),
        "kept_per_split": {split: splits[split] for split in SPLITS},
        "skipped": len(blend.skipped),
        "skipped_per_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "skipped_ids": dict(sorted(blend.skipped.items())),
    }
    return lines, report


def build(root: str | Path, out: str | Path) -> dict[str, Any]:
    """Build every country's file and ``skipped.json`` into ``out``; return the report."""
    root, out = Path(root), Path(out)
    if not (root / "annotations").is_dir() or not (root / "questions").is_dir():
        raise FileNotFoundError(
            f"Not a BLEnD folder (needs annotations/ and questions/): {root.resolve()}"
        )
    texts: dict[str, str] = {}
    report: dict[str, Any] = {
        "version": VERSION,
        "source": "BLEnD (Myung et al., NeurIPS 2024), CC BY-SA 4.0; see README.md",
        "countries": {},
    }
    for country in COUNTRIES:  # build everything first: a failure leaves the folder untouched
        lines, country_report = country_lines(root, country)
        texts[f"{country}.jsonl"] = "\n".join(lines) + "\n"
        report["countries"][country] = country_report
    texts[SKIPPED_FILE] = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    for name, text in texts.items():
        _atomic_write(out / name, text)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help="BLEnD folder with annotations/ and questions/ (default: ../shared/data/blend)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default: lens_steer/data/blend_derived)",
    )
    args = parser.parse_args(argv)
    try:
        report = build(args.root, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for country, entry in report["countries"].items():
        per_split = " ".join(f"{split} {entry['kept_per_split'][split]}" for split in SPLITS)
        print(
            f"{country} ({entry['lang']}): {entry['kept']} kept ({per_split}), "
            f"{entry['skipped']} skipped"
        )
    print(f"wrote {len(report['countries'])} files and {SKIPPED_FILE} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
