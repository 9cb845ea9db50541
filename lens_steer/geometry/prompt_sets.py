"""Collect the study's prompt sets once: parallel sentences and the paired forms of culture items.

Every set is a :class:`~lens_steer.residuals.ResidualSet` whose rows carry item ids, languages
and groups, so vectors can pair rows (English and L versions of one sentence; the explicit and
implicit forms of one question) without re-reading the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from transformer_lens import HookedTransformer
from typing_extensions import Unpack

from lens_steer.collect import CollectOptions, collect_residuals
from lens_steer.data.records import BlendItem, LocalizationItem, ParallelItem, ProbeSet
from lens_steer.data.templates import (
    BlendForm,
    LocalizationForm,
    blend_prompt,
    localization_prompt,
    parallel_prompt,
)
from lens_steer.residuals import ResidualSet

Item = TypeVar("Item", ParallelItem, LocalizationItem, BlendItem)


def _items_in(
    records: Sequence[Item], langs: Sequence[str], split: str | None, what: str
) -> list[Item]:
    """The records in ``langs`` and ``split`` (``None``: all), ordered by language then id."""
    items = [r for r in records if r.lang in langs and (split is None or r.split == split)]
    missing = [lang for lang in langs if lang not in {item.lang for item in items}]
    if missing:
        raise ValueError(f"no {what} items in language(s) {missing} for split {split!r}")
    return sorted(items, key=lambda item: (list(langs).index(item.lang), item.id))


def collect_forms(
    model: HookedTransformer,
    items: Sequence[Item],
    forms: dict[str, Callable[[Item], str]],
    *,
    group: Callable[[Item], str] = lambda item: getattr(item, "group", item.id),
    form_langs: dict[str, str] | None = None,
    **options: Unpack[CollectOptions],
) -> dict[str, ResidualSet]:
    """Residuals of every item in several prompt forms, in one collection; rows align by item.

    Args:
        model: the model.
        items: the items (row i of every form is ``items[i]``; ids are the item ids).
        forms: ``{form name: item -> prompt text}``.
        group: the group recorded for each row (default: the item's group, else its id).
        form_langs: the language of a form's prompts when it is not the item's (e.g. the
            English version of a question).
        **options: as in :func:`lens_steer.collect.collect_residuals`.
    """
    if not items:
        raise ValueError("collect_forms: no items")
    names = list(forms)
    collected = collect_residuals(
        model,
        [forms[name](item) for name in names for item in items],
        ids=[item.id for _ in names for item in items],
        langs=[(form_langs or {}).get(name, item.lang) for name in names for item in items],
        groups=[group(item) for _ in names for item in items],
        **options,
    )
    n_items = len(items)
    return {
        name: collected.select(list(range(slot * n_items, (slot + 1) * n_items)))
        for slot, name in enumerate(names)
    }


def collect_parallel(
    model: HookedTransformer,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str | None = "fit",
    **options: Unpack[CollectOptions],
) -> ResidualSet:
    """Residuals of the probe set's parallel sentences in ``langs`` (ids, langs and groups kept).

    Args:
        model: the model.
        probe_set: supplies the parallel sentences.
        langs: languages to collect (English included if wanted).
        split: ``"fit"``, ``"dev"``, ``"eval"`` or ``None`` for all splits.
        **options: ``layers``, ``position``, ``batch_size``, ``point``, ``show_progress`` as in
            :func:`lens_steer.collect.collect_residuals`.
    """
    items = _items_in(probe_set.parallel, langs, split, "parallel")
    return collect_forms(model, items, {"text": parallel_prompt}, **options)["text"]


def collect_localization(
    model: HookedTransformer,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str | None = "fit",
    forms: Sequence[LocalizationForm] = ("explicit", "implicit"),
    **options: Unpack[CollectOptions],
) -> dict[str, ResidualSet]:
    """Residuals of the built-in localization items in each form; rows align by item.

    Returns:
        ``{form: ResidualSet}``; row i of every form is the same item (ids = item ids).
    """
    items = _items_in(probe_set.localization, langs, split, "localization")
    makers = {form: (lambda item, form=form: localization_prompt(item, form)) for form in forms}
    return collect_forms(model, items, makers, **options)  # type: ignore[arg-type]


def collect_blend(
    model: HookedTransformer,
    items: Sequence[BlendItem],
    *,
    forms: Sequence[BlendForm] = ("explicit", "implicit"),
    **options: Unpack[CollectOptions],
) -> dict[str, ResidualSet]:
    """Residuals of BLEnD questions (question/answer frame) in each form; rows align by item.

    ``english`` is BLEnD's parallel English question: with ``explicit`` it gives an
    English-ward vector for languages without parallel sentences.
    """
    makers: dict[str, Any] = {
        form: (lambda item, form=form: blend_prompt(item, form)) for form in forms
    }
    return collect_forms(
        model, items, makers, group=lambda item: item.id, form_langs={"english": "en"}, **options
    )  # type: ignore[arg-type]
