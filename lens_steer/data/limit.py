"""Cut a probe set to a seeded random sample per split, stratified by topic, groups kept whole.

Quick runs score fewer items. Taking the *first* N items of a file is a biased sample (files are
ordered by topic, so whole topics vanish); this takes a seeded random sample in which every
topic is represented as evenly as the size allows (round-robin over shuffled topics), and keeps
translation groups whole, so every language of a kept group stays.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from lens_steer.data.records import ProbeSet


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stratified_sample(
    units: Sequence[str], topics: Sequence[str], limit: int, *, seed: int, salt: str = ""
) -> list[str]:
    """``limit`` of the units, topics taken in turn (each topic's units in seeded random order).

    Example:
        >>> stratified_sample(["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], 2, seed=0)
        ['a1', 'b1']
    """
    if len(units) <= limit:
        return sorted(units)
    by_topic: dict[str, list[str]] = {}
    for unit, topic in zip(units, topics, strict=True):
        by_topic.setdefault(topic, []).append(unit)
    order = sorted(by_topic)
    _rng(seed, salt, "topics").shuffle(order)
    queues = []
    for topic in order:
        members = sorted(by_topic[topic])
        _rng(seed, salt, topic).shuffle(members)
        queues.append(members)
    chosen: list[str] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _sample_groups(
    items: Sequence[Any], limit: int, splits: Collection[str] | None, seed: int, kind: str
) -> list[Any]:
    """Whole groups (all languages) per split; other splits untouched."""
    kept: set[tuple[str, str]] = set()
    for split in sorted({item.split for item in items}):
        if splits is not None and split not in splits:
            continue
        topic_of = {item.group: getattr(item, "topic", "") for item in items if item.split == split}
        groups = sorted(topic_of)
        chosen = stratified_sample(
            groups, [topic_of[g] for g in groups], limit, seed=seed, salt=f"{kind}:{split}"
        )
        kept.update((split, group) for group in chosen)
    return [
        item
        for item in items
        if (splits is not None and item.split not in splits) or (item.split, item.group) in kept
    ]


def _sample_items(
    items: Sequence[Any], limit: int, splits: Collection[str] | None, seed: int, kind: str
) -> list[Any]:
    """Items per (language, country, split); other splits untouched."""
    strata: dict[tuple[str, str, str], list[Any]] = {}
    for item in items:
        key = (item.lang, getattr(item, "country", ""), item.split)
        strata.setdefault(key, []).append(item)
    kept: set[tuple[str, str, str, str]] = set()
    for key, members in strata.items():
        if splits is not None and key[2] not in splits:
            kept.update((*key, item.id) for item in members)
            continue
        chosen = stratified_sample(
            [item.id for item in members], [item.topic for item in members], limit,
            seed=seed, salt=f"{kind}:{':'.join(key)}",
        )  # fmt: skip
        kept.update((*key, item_id) for item_id in chosen)
    return [
        item
        for item in items
        if (item.lang, getattr(item, "country", ""), item.split, item.id) in kept
    ]


def limit_probe_set(
    probe_set: ProbeSet,
    limit: int | None,
    *,
    splits: Collection[str] | None = None,
    seed: int = 0,
) -> ProbeSet:
    """A seeded, topic-stratified sample of ``limit`` groups/items per kind and split.

    Parallel sentences, transfer questions and facts are sampled by translation group (every
    language of a kept group stays); localization and BLEnD items per language, country and
    split. Only ``splits`` are cut (``None``: all).

    Example:
        >>> from lens_steer.data import load_probe_set
        >>> small = limit_probe_set(load_probe_set(["ko"]), 2, splits=["dev", "eval"])
        >>> len({item.group for item in small.transfer if item.split == "eval"})
        2
    """
    if limit is None:
        return probe_set
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    return replace(
        probe_set,
        parallel=_sample_groups(probe_set.parallel, limit, splits, seed, "parallel"),
        transfer=_sample_groups(probe_set.transfer, limit, splits, seed, "transfer"),
        facts=_sample_groups(probe_set.facts, limit, splits, seed, "facts"),
        localization=_sample_items(probe_set.localization, limit, splits, seed, "localization"),
        blend=_sample_items(probe_set.blend, limit, splits, seed, "blend"),
    )
