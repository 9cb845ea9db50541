"""The prompts the benchmarks run: the built-in probe set, or the bench's fallback set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench._config import Sizes
from bench._fallback import fallback_probe_set
from lens_steer.data.records import (
    ENGLISH,
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    Split,
    TransferItem,
)
from lens_steer.data.templates import (
    localization_continuations,
    localization_prompt,
    option_continuation,
    transfer_prompt,
)
from lens_steer.evaluate.scoring import ScoringRequest


def _problem(probe: ProbeSet, sizes: Sizes) -> str:
    """Why ``probe`` cannot serve the benchmarks ("" when it can)."""
    pool = [p for p in probe.parallel if sizes.parallel_split in (None, p.split)]
    if not common_groups(pool, sizes.langs):
        return f"no {sizes.parallel_split} parallel group is present in all of {sizes.langs}"
    if not common_groups([p for p in probe.parallel if p.split == "fit"], (ENGLISH, sizes.lang)):
        return f"no fit-split parallel pairs of en and {sizes.lang}"
    for what, items in (("transfer", probe.transfer), ("localization", probe.localization)):
        if not any(item.lang == sizes.lang and item.split == "eval" for item in items):
            return f"no eval-split {what} items in {sizes.lang}"
    return ""


def bench_probe_set(sizes: Sizes) -> tuple[ProbeSet, dict[str, Any]]:
    """The built-in probe set when it holds what the benchmarks need, else the fallback set.

    Returns:
        The probe set and a description of its source (recorded in the results).
    """
    try:
        from lens_steer.data.probe import load_probe_set

        probe = load_probe_set()
        problem = _problem(probe, sizes)
    except (ImportError, OSError, ValueError, KeyError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        fallback = fallback_probe_set()
        return fallback, {"source": "bench fallback", "version": fallback.version, "why": problem}
    return probe, {"source": "lens_steer built-in probe set", "version": probe.version}


def common_groups(items: Sequence[ParallelItem], langs: Sequence[str]) -> list[str]:
    """Parallel groups that have a sentence in every language of ``langs``, sorted."""
    by_lang: dict[str, set[str]] = {lang: set() for lang in langs}
    for item in items:
        if item.lang in by_lang:
            by_lang[item.lang].add(item.group)
    shared = set.intersection(*by_lang.values()) if by_lang else set()
    return sorted(shared)


def parallel_selection(
    probe: ProbeSet, langs: Sequence[str], per_lang: int | None, *, split: Split | None = None
) -> list[ParallelItem]:
    """The first ``per_lang`` groups (``None``: all) present in every language of ``langs``.

    Sentences are ordered by language, then group.
    """
    pool = [item for item in probe.parallel if split is None or item.split == split]
    groups = set(common_groups(pool, langs)[:per_lang])
    chosen = [item for item in pool if item.lang in langs and item.group in groups]
    order = {lang: index for index, lang in enumerate(langs)}
    return sorted(chosen, key=lambda item: (order[item.lang], item.group, item.id))


def plane_requests(
    transfer: Sequence[TransferItem], localization: Sequence[LocalizationItem]
) -> list[ScoringRequest]:
    """Transfer then localization requests (implicit prompts), as the study's metrics build them."""
    transfer_requests = [
        ScoringRequest(
            transfer_prompt(item),
            tuple(option_continuation(o, item.lang) for o in item.options),
            item.id,
        )
        for item in transfer
    ]
    local_requests = [
        ScoringRequest(
            localization_prompt(item, "implicit"),
            localization_continuations(item, "implicit"),
            item.id,
        )
        for item in localization
    ]
    return transfer_requests + local_requests


def plane_selection(
    probe: ProbeSet, lang: str, n_transfer: int, n_localization: int, *, split: Split | None
) -> tuple[list[TransferItem], list[LocalizationItem]]:
    """The first transfer and localization items of one language (and split), by id."""

    def first(items: Sequence[Any], count: int) -> list[Any]:
        kept = [i for i in items if i.lang == lang and (split is None or i.split == split)]
        return sorted(kept, key=lambda item: item.id)[:count]

    return first(probe.transfer, n_transfer), first(probe.localization, n_localization)
