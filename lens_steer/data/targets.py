"""The items of one study target: what every metric and vector method of that target reads.

A target is a (language, country) pair (:class:`~lens_steer.data.languages.Target`). Its items
are the probe set's items in its language (transfer questions, facts, parallel sentences), with
their English versions; its culture items are BLEnD's questions of its country and, for the
language's default country, the built-in localization items (written about that country).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lens_steer.data.languages import ENGLISH, Target, language
from lens_steer.data.records import (
    SPLITS,
    BlendItem,
    FactItem,
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    Split,
    TransferItem,
)

ItemKind = Literal["transfer", "facts", "localization", "blend", "parallel"]
ITEM_KINDS: tuple[ItemKind, ...] = ("transfer", "facts", "localization", "blend", "parallel")


@dataclass(frozen=True)
class TargetItems:
    """Every item of one target, English versions included where the kind has them."""

    target: Target
    transfer: tuple[TransferItem, ...] = ()
    facts: tuple[FactItem, ...] = ()
    localization: tuple[LocalizationItem, ...] = ()
    blend: tuple[BlendItem, ...] = ()
    parallel: tuple[ParallelItem, ...] = ()

    def of(self, kind: ItemKind, split: Split | None = None, *, lang: str | None = None) -> list:
        """Items of one kind in the target's language (or ``lang``), in one split (or all)."""
        wanted = self.target.lang if lang is None else lang
        return [
            item
            for item in getattr(self, kind)
            if item.lang == wanted and (split is None or item.split == split)
        ]

    def english_versions(self, kind: Literal["transfer", "facts"]) -> dict[str, Any]:
        """The English item of each group (for the English-query reference and known rates)."""
        return {item.group: item for item in getattr(self, kind) if item.lang == ENGLISH}

    def counts(self) -> dict[str, dict[str, int]]:
        """``{kind: {split: n}}`` of the target's own-language items (English not counted)."""
        return {
            kind: {split: len(self.of(kind, split)) for split in SPLITS}
            for kind in ITEM_KINDS
            if kind != "parallel" or self.target.lang != ENGLISH
        }

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{kind} {sum(c.values())}" for kind, c in self.counts().items() if sum(c.values())
        )
        return f"TargetItems({self.target.key}: {sizes or 'no items'})"


def target_items(probe: ProbeSet, target: Target) -> TargetItems:
    """Pick a target's items out of a probe set.

    Built-in localization items are written about the language's default country, so they
    belong to that target only; BLEnD items belong to their country.
    """
    own = {target.lang, ENGLISH}
    default_country = language(target.lang).default_country
    return TargetItems(
        target=target,
        transfer=tuple(item for item in probe.transfer if item.lang in own),
        facts=tuple(item for item in probe.facts if item.lang in own),
        localization=tuple(
            item
            for item in probe.localization
            if item.lang == target.lang and target.country == default_country
        ),
        blend=tuple(
            item
            for item in probe.blend
            if item.lang == target.lang and item.country == target.country
        ),
        parallel=tuple(item for item in probe.parallel if item.lang in own),
    )


def split_sizes(items: Sequence[Any]) -> dict[str, int]:
    """Items per split."""
    return {split: sum(1 for item in items if item.split == split) for split in SPLITS}
