"""The BLEnD-derived localization set shipped with lens_steer (six countries, CC BY-SA 4.0).

``lens_steer/data/blend_derived/{Country}.jsonl`` holds BLEnD's questions of South Korea,
China, Spain, Indonesia, Greece and Iran with their derived implicit forms, gold local answers
with votes and the US annotators' answers, built by ``scripts/build_blend_derived.py`` from the
authors' files; the folder's README and LICENSE give the attribution and the licence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lens_steer.data.jsonl import read_records
from lens_steer.data.records import BlendItem

BLEND_DERIVED_DIR = Path(__file__).resolve().parent / "blend_derived"


def shipped_countries() -> tuple[str, ...]:
    """The countries whose derived BLEnD items ship with the package."""
    return tuple(sorted(path.stem for path in BLEND_DERIVED_DIR.glob("*.jsonl")))


def load_blend_derived(countries: Sequence[str] | None = None) -> list[BlendItem]:
    """BLEnD-derived items of the shipped countries (all, or those named).

    Example:
        >>> items = load_blend_derived(["South_Korea"])  # doctest: +SKIP
        >>> items[0].implicit  # doctest: +SKIP
        '우리나라의 유치원생들이 흔히 먹는 간식은 무엇인가요?'
    """
    available = shipped_countries()
    chosen = available if countries is None else tuple(countries)
    missing = [name for name in chosen if name not in available]
    if missing:
        raise ValueError(
            f"no shipped BLEnD-derived items for {missing}; shipped: {', '.join(available)} "
            "(point --data at your own BLEnD folder for the other countries)"
        )
    items: list[BlendItem] = []
    for name in chosen:
        records, _ = read_records(BLEND_DERIVED_DIR / f"{name}.jsonl")
        items.extend(record for record in records if isinstance(record, BlendItem))
    return items
