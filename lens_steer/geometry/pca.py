"""Per-layer PCA of residuals across languages, and how mixed the languages are at each layer.

Mixing is measured two ways: translation retrieval (is a sentence's nearest neighbour among
another language's sentences its own translation?) and the silhouette of the language labels
(near 1: languages form separate clusters; near 0 or below: they overlap).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits
from torch import Tensor
from tqdm.auto import tqdm

from lens_steer.cache import ResidualSet

Center = Literal["global", "language", "none"]

# OpenBLAS threads started beside torch's OpenMP pool spin against it: on 2 cores one PCA of
# 406 x 640 took 6 s with both pools and 0.1 s with a single BLAS thread.
_ONE_BLAS_THREAD = {"limits": 1, "user_api": "blas"}


def layer_matrix(residuals: ResidualSet, layer: int, *, standardize: bool = False) -> np.ndarray:
    """The ``[prompt, d_model]`` residuals at a layer as float64, optionally standardized.

    Standardizing divides each centred dimension by its std over the prompts (a dimension with
    no spread is left centred at 0).
    """
    x = residuals.at_layer(layer).double().numpy()
    if standardize:
        std = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.ones(x.shape[1])
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return x


def _layers(residuals: ResidualSet, layers: Sequence[int] | None) -> tuple[int, ...]:
    chosen = residuals.layers if layers is None else tuple(layers)
    for layer in chosen:
        residuals.layer_index(layer)  # KeyError naming the layer when absent
    return chosen


@dataclass(frozen=True)
class LayerPCA:
    """PCA coordinates of every prompt at every layer.

    Attributes:
        coords: ``[layer, prompt, component]`` projections on the principal components.
        explained_variance_ratio: ``[layer, component]``.
        components: ``[layer, component, d_model]`` principal axes (in standardized units when
            ``standardized``).
        layers, ids, langs, groups: as in the ResidualSet.
        standardized: whether each dimension was scaled to unit std first.
        provenance: model_id, hook_name, position.
    """

    coords: Float[Tensor, "layer prompt component"]
    explained_variance_ratio: Float[Tensor, "layer component"]
    components: Float[Tensor, "layer component d_model"]
    layers: tuple[int, ...]
    ids: tuple[str, ...]
    langs: tuple[str, ...]
    groups: tuple[str, ...]
    standardized: bool
    provenance: dict[str, Any]


def pca_by_layer(
    residuals: ResidualSet,
    *,
    layers: Sequence[int] | None = None,
    n_components: int = 2,
    standardize: bool = False,
    align_signs: bool = True,
    show_progress: bool = True,
) -> LayerPCA:
    """Fit one scikit-learn PCA per layer on the residuals of all prompts (all languages).

    Args:
        residuals: e.g. parallel sentences of all languages from ``collect_parallel``.
        layers: layers to fit (default: all collected).
        n_components: number of principal components kept.
        standardize: scale each dimension to unit std first (tames massive activations).
        align_signs: flip each component so that it points the same way as at the previous
            layer (PCA signs are arbitrary; aligned signs make a layer slider readable).
        show_progress: tqdm bar over layers.

    Example:
        >>> pca = pca_by_layer(parallel_residuals, standardize=True)  # doctest: +SKIP
        >>> pca.coords.shape  # doctest: +SKIP
        torch.Size([18, 70, 2])
    """
    chosen = _layers(residuals, layers)
    if residuals.n_prompts < n_components:
        raise ValueError(
            f"PCA with {n_components} components needs at least that many prompts, got {residuals.n_prompts}"
        )
    coords: list[np.ndarray] = []
    ratios: list[np.ndarray] = []
    axes: list[np.ndarray] = []
    for layer in tqdm(chosen, desc="PCA per layer", disable=not show_progress):
        pca = PCA(n_components=n_components, svd_solver="full")
        with threadpool_limits(**_ONE_BLAS_THREAD):  # ~8 ms to enter: once per layer is fine
            projected = pca.fit_transform(layer_matrix(residuals, layer, standardize=standardize))
        components = pca.components_
        if align_signs and axes:
            flip = np.sign(np.sum(components * axes[-1], axis=1))
            flip[flip == 0] = 1.0
            components, projected = components * flip[:, None], projected * flip[None, :]
        coords.append(projected)
        ratios.append(pca.explained_variance_ratio_)
        axes.append(components)
    return LayerPCA(
        coords=torch.tensor(np.stack(coords), dtype=torch.float32),
        explained_variance_ratio=torch.tensor(np.stack(ratios), dtype=torch.float32),
        components=torch.tensor(np.stack(axes), dtype=torch.float32),
        layers=chosen,
        ids=residuals.ids,
        langs=residuals.langs,
        groups=residuals.groups,
        standardized=standardize,
        provenance={
            "model_id": residuals.model_id,
            "hook_name": residuals.hook_name,
            "position": residuals.position,
        },
    )


def _centred(x: np.ndarray, langs: Sequence[str], center: Center) -> np.ndarray:
    if center == "global":
        return x - x.mean(axis=0)
    if center == "language":
        out = x.copy()
        labels = np.asarray(langs)
        for lang in set(langs):
            out[labels == lang] -= x[labels == lang].mean(axis=0)
        return out
    if center == "none":
        return x
    raise ValueError(f"center must be 'global', 'language' or 'none', got {center!r}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def translation_retrieval(
    residuals: ResidualSet,
    layer: int,
    *,
    center: Center = "global",
    standardize: bool = False,
) -> dict[tuple[str, str], float]:
    """Translation-retrieval accuracy for every ordered pair of languages at one layer.

    For each prompt of language A whose group also occurs in language B, the nearest neighbour
    (cosine of centred residuals) among B's prompts should be its translation.

    Args:
        residuals: prompts with ``groups`` (translations share a group) and ``langs``.
        layer: the layer.
        center: subtract the mean over all prompts (``"global"``, keeps language identity),
            per language (``"language"``, removes it), or nothing.
        standardize: scale dimensions to unit std first.

    Returns:
        ``{(A, B): accuracy}`` for A != B sharing at least one group.
    """
    if not residuals.groups:
        raise ValueError(
            "translation retrieval needs residuals with groups (translations share a group)"
        )
    x = _unit_rows(
        _centred(layer_matrix(residuals, layer, standardize=standardize), residuals.langs, center)
    )
    langs = np.asarray(residuals.langs)
    groups = np.asarray(residuals.groups)
    accuracy = {}
    with threadpool_limits(**_ONE_BLAS_THREAD):
        for source, target in itertools.permutations(dict.fromkeys(residuals.langs), 2):
            src, tgt = np.flatnonzero(langs == source), np.flatnonzero(langs == target)
            src = src[np.isin(groups[src], groups[tgt])]
            if src.size == 0:
                continue
            nearest = tgt[np.argmax(x[src] @ x[tgt].T, axis=1)]
            accuracy[(source, target)] = float(np.mean(groups[nearest] == groups[src]))
    if not accuracy:
        raise ValueError("translation retrieval: no two languages share a group")
    return accuracy


def language_silhouette(
    residuals: ResidualSet,
    layer: int,
    *,
    metric: str = "cosine",
    standardize: bool = False,
) -> float:
    """Silhouette score (scikit-learn) of the language labels at one layer, on centred residuals."""
    n_langs = len(set(residuals.langs))
    if not 2 <= n_langs < residuals.n_prompts:
        raise ValueError(
            f"silhouette needs 2..n_prompts-1 languages, got {n_langs} for {residuals.n_prompts} prompts"
        )
    x = _centred(layer_matrix(residuals, layer, standardize=standardize), residuals.langs, "global")
    with threadpool_limits(**_ONE_BLAS_THREAD):
        return float(silhouette_score(x, np.asarray(residuals.langs), metric=metric))


def mixing_by_layer(
    residuals: ResidualSet,
    *,
    layers: Sequence[int] | None = None,
    center: Center = "global",
    standardize: bool = False,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per layer: mean translation-retrieval accuracy and language silhouette.

    Rows are JSON-ready: ``layer, retrieval_accuracy, retrieval_chance, silhouette, n_langs,
    n_prompts, center, standardized, model_id, hook_name, position``. Chance retrieval is
    ``1 / (number of candidates)`` averaged over language pairs.

    Example:
        >>> rows = mixing_by_layer(parallel_residuals)  # doctest: +SKIP
        >>> max(rows, key=lambda row: row["retrieval_accuracy"])["layer"]  # doctest: +SKIP
        9
    """
    chosen = _layers(residuals, layers)
    counts = {lang: residuals.langs.count(lang) for lang in dict.fromkeys(residuals.langs)}
    rows = []
    for layer in tqdm(chosen, desc="mixing per layer", disable=not show_progress):
        pairs = translation_retrieval(residuals, layer, center=center, standardize=standardize)
        rows.append(
            {
                "layer": layer,
                "retrieval_accuracy": round(float(np.mean(list(pairs.values()))), 6),
                "retrieval_chance": round(float(np.mean([1.0 / counts[b] for _, b in pairs])), 6),
                "silhouette": round(
                    language_silhouette(residuals, layer, standardize=standardize), 6
                ),
                "n_langs": len(counts),
                "n_prompts": residuals.n_prompts,
                "center": center,
                "standardized": standardize,
                "model_id": residuals.model_id,
                "hook_name": residuals.hook_name,
                "position": residuals.position,
            }
        )
    return rows
