"""Per-layer PCA of residuals across languages (scikit-learn), raw or standardized.

How mixed the languages are at each layer is measured in :mod:`lens_steer.geometry.mixing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits
from torch import Tensor
from tqdm.auto import tqdm

from lens_steer.residuals import ResidualSet

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
