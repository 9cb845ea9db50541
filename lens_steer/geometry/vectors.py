"""Contrast vectors: per-layer mean differences of two collected prompt sets, with a bootstrap.

EN vectors (English minus language L on parallel prompts) and LOC vectors (explicit minus
implicit prompts in L) are two uses of the generic :func:`contrast_vector`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from typing_extensions import Unpack

from lens_steer.cache import (
    CollectOptions,
    ResidualSet,
    check_compatible,
    check_finite,
    collect_residuals,
    load_tensor_bundle,
    save_tensor_bundle,
)
from lens_steer.data.records import ENGLISH, LocalizationItem, ParallelItem, ProbeSet
from lens_steer.data.templates import LocalizationForm, localization_prompt, parallel_prompt

VectorKind = Literal["en", "loc", "custom"]
Item = TypeVar("Item", ParallelItem, LocalizationItem)
_FORMAT = "lens_steer.ContrastVector/1"


@dataclass(frozen=True)
class ContrastVector:
    """A steering/contrast direction per layer, with bootstrap samples and where it came from.

    Attributes:
        vectors: ``[layer, d_model]`` mean of set a minus mean of set b.
        layers: the layer of each row.
        bootstrap: ``[sample, layer, d_model]`` the same difference over prompt resamples,
            or ``None`` when no bootstrap was run.
        provenance: model_id, hook_name, position, kind, lang, split, n_a, n_b, seed, ...
    """

    vectors: Float[Tensor, "layer d_model"]
    layers: tuple[int, ...]
    bootstrap: Float[Tensor, "sample layer d_model"] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.layers):
            raise ValueError(
                f"ContrastVector.vectors must be [layer, d_model] with {len(self.layers)} layers, "
                f"got {tuple(self.vectors.shape)}"
            )
        if self.bootstrap is not None and self.bootstrap.shape[1:] != self.vectors.shape:
            raise ValueError(
                f"ContrastVector.bootstrap shape {tuple(self.bootstrap.shape)} does not match "
                f"vectors {tuple(self.vectors.shape)}"
            )

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    def at_layer(self, layer: int) -> Float[Tensor, " d_model"]:
        """The vector at one layer."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} not in this vector's layers {self.layers}")
        return self.vectors[self.layers.index(layer)]

    def norms(self) -> Float[Tensor, " layer"]:
        """L2 norm of the vector at each layer."""
        return self.vectors.norm(dim=-1)

    def save(self, path: str | os.PathLike[str]) -> dict[str, Path]:
        """Save as ``{stem}.safetensors`` (vectors, bootstrap) + ``{stem}.json`` (provenance)."""
        tensors = {"vectors": self.vectors}
        if self.bootstrap is not None:
            tensors["bootstrap"] = self.bootstrap
        meta = {"format": _FORMAT, "layers": list(self.layers), "provenance": self.provenance}
        return save_tensor_bundle(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ContrastVector:
        """Load what :meth:`save` wrote."""
        tensors, meta = load_tensor_bundle(path, expected_format=_FORMAT)
        return cls(
            vectors=tensors["vectors"],
            layers=tuple(int(layer) for layer in meta["layers"]),
            bootstrap=tensors.get("bootstrap"),
            provenance=dict(meta["provenance"]),
        )


def _resample_means(
    acts: Float[Tensor, "prompt layer d_model"], index: Tensor
) -> Float[Tensor, "sample layer d_model"]:
    """Means over resampled prompts; ``index`` is ``[sample, n]`` drawn with replacement.

    Counting draws per prompt keeps memory at O(sample x n + sample x layer x d_model).
    """
    n_prompts = acts.shape[0]
    counts = torch.zeros((index.shape[0], n_prompts), dtype=acts.dtype)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=acts.dtype))
    return torch.einsum("sn,nld->sld", counts / index.shape[1], acts)


def _single_lang(res: ResidualSet) -> str:
    langs = set(res.langs)
    return langs.pop() if len(langs) == 1 else ""


def contrast_vector(
    a: ResidualSet,
    b: ResidualSet,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    name: str = "",
    paired: bool = False,
    kind: VectorKind = "custom",
    lang: str | None = None,
    split: str = "",
) -> ContrastVector:
    """Per-layer ``mean(a) - mean(b)`` of two collected prompt sets, with a bootstrap.

    Args:
        a: the "towards" prompts.
        b: the "away from" prompts, read at the same layers, hook, position and model.
        n_bootstrap: number of resamples (0: none).
        seed: seed of the resampling.
        name: free label stored in the provenance.
        paired: row i of ``a`` and of ``b`` are the same item in two forms; the bootstrap then
            resamples pairs (same indices in both) instead of each set independently.
        kind: ``"en"``, ``"loc"`` or ``"custom"`` (recorded).
        lang: language recorded in the provenance; by default b's language when unique.
        split: data split recorded in the provenance.

    Example:
        >>> v = contrast_vector(explicit_ko, implicit_ko, n_bootstrap=200, paired=True)  # doctest: +SKIP
        >>> v.at_layer(12).shape  # doctest: +SKIP
        torch.Size([640])
    """
    check_compatible(a, b)
    if a.n_prompts == 0 or b.n_prompts == 0:
        raise ValueError(
            f"contrast_vector: empty set (a has {a.n_prompts}, b has {b.n_prompts} prompts)"
        )
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if paired:
        if a.n_prompts != b.n_prompts:
            raise ValueError(f"paired sets differ in size: {a.n_prompts} vs {b.n_prompts} prompts")
        if a.groups and b.groups and a.groups != b.groups:
            row = next(i for i, (x, y) in enumerate(zip(a.groups, b.groups, strict=True)) if x != y)
            raise ValueError(
                f"paired sets are not aligned: row {row} has group {a.groups[row]!r} in a and "
                f"{b.groups[row]!r} in b"
            )
    vectors = a.acts.mean(dim=0) - b.acts.mean(dim=0)
    check_finite(vectors, "contrast vector")

    bootstrap = None
    if n_bootstrap:
        generator = torch.Generator().manual_seed(seed)
        if paired:
            index = torch.randint(a.n_prompts, (n_bootstrap, a.n_prompts), generator=generator)
            bootstrap = _resample_means(a.acts - b.acts, index)
        else:
            index_a = torch.randint(a.n_prompts, (n_bootstrap, a.n_prompts), generator=generator)
            index_b = torch.randint(b.n_prompts, (n_bootstrap, b.n_prompts), generator=generator)
            bootstrap = _resample_means(a.acts, index_a) - _resample_means(b.acts, index_b)

    provenance = {
        "model_id": a.model_id,
        "hook_name": a.hook_name,
        "position": a.position,
        "kind": kind,
        "lang": _single_lang(b) if lang is None else lang,
        "split": split,
        "n_a": a.n_prompts,
        "n_b": b.n_prompts,
        "paired": paired,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "name": name,
    }
    return ContrastVector(
        vectors=vectors, layers=a.layers, bootstrap=bootstrap, provenance=provenance
    )


# --------------------------------------------------------------------------------------------
# Collecting the probe set's prompt sets once, and the EN / LOC vectors built from them.
# --------------------------------------------------------------------------------------------


def _items_in(
    records: Sequence[Item], langs: Sequence[str], split: str | None, what: str
) -> list[Item]:
    """The records in ``langs`` and ``split`` (``None``: all), ordered by language then id."""
    items = [r for r in records if r.lang in langs and (split is None or r.split == split)]
    missing = [lang for lang in langs if lang not in {item.lang for item in items}]
    if missing:
        raise ValueError(f"no {what} items in language(s) {missing} for split {split!r}")
    return sorted(items, key=lambda item: (list(langs).index(item.lang), item.id))


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
            :func:`lens_steer.cache.collect_residuals`.
    """
    items = _items_in(probe_set.parallel, langs, split, "parallel")
    return collect_residuals(
        model,
        [parallel_prompt(item) for item in items],
        ids=[item.id for item in items],
        langs=[item.lang for item in items],
        groups=[item.group for item in items],
        **options,
    )


def collect_localization(
    model: HookedTransformer,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str | None = "fit",
    forms: Sequence[LocalizationForm] = ("explicit", "implicit"),
    **options: Unpack[CollectOptions],
) -> dict[str, ResidualSet]:
    """Residuals of the localization items in each form, in one collection; rows align by item.

    Args:
        forms: which prompt forms (see ``lens_steer.data.templates.localization_prompt``).
        Others: as in :func:`collect_parallel`.

    Returns:
        ``{form: ResidualSet}``; row i of every form is the same item (ids = item ids).
    """
    items = _items_in(probe_set.localization, langs, split, "localization")
    collected = collect_residuals(
        model,
        [localization_prompt(item, form) for form in forms for item in items],
        ids=[item.id for _ in forms for item in items],
        langs=[item.lang for _ in forms for item in items],
        groups=[item.group for _ in forms for item in items],
        **options,
    )
    n_items = len(items)
    return {
        form: collected.select(list(range(slot * n_items, (slot + 1) * n_items)))
        for slot, form in enumerate(forms)
    }


def _pair_by(
    a: ResidualSet, b: ResidualSet, key: str, what: str
) -> tuple[ResidualSet, ResidualSet]:
    """Rows of a and b matched on ``key`` ("ids" or "groups"), in sorted key order."""
    keys_a, keys_b = getattr(a, key), getattr(b, key)
    if not keys_a or not keys_b:
        raise ValueError(f"{what}: the residual sets carry no {key} to pair prompts by")
    for keys, lang in ((keys_a, _single_lang(a)), (keys_b, _single_lang(b))):
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: duplicate {key} in language {lang!r}")
    common = sorted(set(keys_a) & set(keys_b))
    if not common:
        raise ValueError(
            f"{what}: no {key} shared by languages {_single_lang(a)!r} and {_single_lang(b)!r}"
        )
    return (
        a.select([keys_a.index(k) for k in common]),
        b.select([keys_b.index(k) for k in common]),
    )


def _paired_vectors(
    pairs: Mapping[str, tuple[ResidualSet, ResidualSet]],
    key: str,
    kind: VectorKind,
    *,
    split: str,
    n_bootstrap: int,
    seed: int,
) -> dict[str, ContrastVector]:
    """One paired contrast vector per language from its (towards, away) residual sets."""
    vectors = {}
    for lang, (towards, away) in pairs.items():
        a, b = _pair_by(towards, away, key, f"{kind.upper()} vector for {lang!r}")
        vectors[lang] = contrast_vector(
            a, b, n_bootstrap=n_bootstrap, seed=seed, paired=True, kind=kind, lang=lang,
            split=split, name=f"{kind}-{lang}",
        )  # fmt: skip
    return vectors


def en_vectors(
    model: HookedTransformer | None,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str = "fit",
    n_bootstrap: int = 0,
    seed: int = 0,
    parallel: ResidualSet | None = None,
    **options: Unpack[CollectOptions],
) -> dict[str, ContrastVector]:
    """EN vectors per language: English minus L on parallel sentences, paired by group.

    Args:
        model: the model (may be ``None`` when ``parallel`` is given).
        probe_set: supplies the parallel sentences.
        langs: the LOC languages.
        split: the fit split (keep the eval split for evaluation).
        n_bootstrap, seed: as in :func:`contrast_vector`.
        parallel: residuals already collected with :func:`collect_parallel` (English and every
            language in ``langs``), to avoid collecting the same prompts twice.
        **options: collection options, as in :func:`collect_parallel`.

    Example:
        >>> vectors = en_vectors(model, load_probe_set(), ["ko", "zh"], n_bootstrap=200)  # doctest: +SKIP
        >>> vectors["ko"].provenance["kind"]  # doctest: +SKIP
        'en'
    """
    if parallel is None:
        if model is None:
            raise ValueError("en_vectors needs a model or collected parallel residuals")
        parallel = collect_parallel(model, probe_set, [ENGLISH, *langs], split=split, **options)
    english = parallel.where_lang(ENGLISH)
    pairs = {lang: (english, parallel.where_lang(lang)) for lang in langs}
    return _paired_vectors(pairs, "groups", "en", split=split, n_bootstrap=n_bootstrap, seed=seed)


def loc_vectors(
    model: HookedTransformer | None,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str = "fit",
    n_bootstrap: int = 0,
    seed: int = 0,
    localization: Mapping[str, ResidualSet] | None = None,
    **options: Unpack[CollectOptions],
) -> dict[str, ContrastVector]:
    """LOC vectors per language: explicit minus implicit localization prompts, paired by item.

    Args:
        localization: ``{"explicit": ..., "implicit": ...}`` from :func:`collect_localization`,
            to reuse residuals already collected.
        Others: as in :func:`en_vectors`.

    Example:
        >>> vectors = loc_vectors(model, load_probe_set(), ["ko"], n_bootstrap=200)  # doctest: +SKIP
        >>> vectors["ko"].provenance["kind"]  # doctest: +SKIP
        'loc'
    """
    if localization is None:
        if model is None:
            raise ValueError("loc_vectors needs a model or collected localization residuals")
        localization = collect_localization(model, probe_set, langs, split=split, **options)
    missing = [form for form in ("explicit", "implicit") if form not in localization]
    if missing:
        raise ValueError(f"loc_vectors: localization residuals lack the form(s) {missing}")
    explicit, implicit = localization["explicit"], localization["implicit"]
    pairs = {lang: (explicit.where_lang(lang), implicit.where_lang(lang)) for lang in langs}
    return _paired_vectors(pairs, "ids", "loc", split=split, n_bootstrap=n_bootstrap, seed=seed)
