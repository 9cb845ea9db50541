"""Cut a probe set to its first items, for quick runs, keeping translation groups whole."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TypeVar

from lens_steer.data.records import LocalizationItem, ParallelItem, ProbeSet, TransferItem

_Grouped = TypeVar("_Grouped", ParallelItem, TransferItem)


def _first_groups(
    items: Sequence[_Grouped], limit: int, splits: Collection[str] | None
) -> list[_Grouped]:
    """Items of the first ``limit`` groups (by name) of each split; other splits untouched."""
    kept: set[tuple[str, str]] = set()
    for split in {item.split for item in items}:
        if splits is None or split in splits:
            groups = sorted({item.group for item in items if item.split == split})[:limit]
            kept.update((split, group) for group in groups)
    return [
        item
        for item in items
        if (splits is not None and item.split not in splits) or (item.split, item.group) in kept
    ]


def _first_items(
    items: Sequence[LocalizationItem], limit: int, splits: Collection[str] | None
) -> list[LocalizationItem]:
    """The first ``limit`` items (by id) per language and split; other splits untouched."""
    counts: dict[tuple[str, str], int] = {}
    kept = []
    for item in sorted(items, key=lambda item: item.id):
        if splits is not None and item.split not in splits:
            kept.append(item)
            continue
        key = (item.lang, item.split)
        if counts.get(key, 0) < limit:
            kept.append(item)
            counts[key] = counts.get(key, 0) + 1
    return kept


def limit_probe_set(
    probe_set: ProbeSet, limit: int | None, *, splits: Collection[str] | None = None
) -> ProbeSet:
    """Keep the first ``limit`` parallel and transfer groups and localization items per split.

    Parallel and transfer items are cut by group (sorted by name, per split), so every
    language of a kept group stays and translations remain complete; localization items are
    cut per language and split (sorted by id). Only ``splits`` are cut (``None``: all), so a
    quick steering run can keep the whole fit split its vectors come from.

    Example:
        >>> from lens_steer.data import load_probe_set
        >>> small = limit_probe_set(load_probe_set(["ko"]), 2, splits=["dev", "eval"])
        >>> len({item.group for item in small.transfer if item.split == "eval"})
        2
    """
    if limit is None:
        return probe_set
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return replace(
        probe_set,
        parallel=_first_groups(probe_set.parallel, limit, splits),
        transfer=_first_groups(probe_set.transfer, limit, splits),
        localization=_first_items(probe_set.localization, limit, splits),
    )
