"""Per-layer PCA against scikit-learn and numpy run directly, raw and standardized."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lens_steer.geometry import pca_by_layer
from lens_steer.geometry.pca import layer_matrix
from lens_steer.residuals import ResidualSet


def _set(acts, langs=None) -> ResidualSet:
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n = acts.shape[0]
    return ResidualSet(
        acts, tuple(range(acts.shape[1])), tuple(f"p{i}" for i in range(n)),
        tuple(langs or ("xx",) * n), "blocks.{layer}.hook_resid_post", "last", "toy",
        tuple(f"g{i % 5}" for i in range(n)),
    )  # fmt: skip


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_explained_variance_and_coordinates_match_sklearn():
    residuals = _set(_randn(30, 3, 6, seed=1) * torch.arange(1, 7))
    result = pca_by_layer(residuals, n_components=2, align_signs=False, show_progress=False)
    assert result.coords.shape == (3, 30, 2) and result.components.shape == (3, 2, 6)
    for slot, layer in enumerate(residuals.layers):
        x = residuals.at_layer(layer).double().numpy()
        reference = PCA(n_components=2).fit(x)
        np.testing.assert_allclose(
            result.explained_variance_ratio[slot].numpy(), reference.explained_variance_ratio_,
            rtol=1e-5,
        )  # fmt: skip
        # Signs of principal axes are arbitrary: compare up to one sign per component.
        signs = np.sign(np.sum(result.components[slot].numpy() * reference.components_, axis=1))
        np.testing.assert_allclose(
            result.coords[slot].numpy() * signs, reference.transform(x), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            result.components[slot].numpy() * signs[:, None], reference.components_, atol=1e-5
        )


def test_coordinates_are_projections_of_centred_residuals_on_the_components():
    residuals = _set(_randn(25, 2, 5, seed=2))
    result = pca_by_layer(residuals, n_components=3, show_progress=False)
    for slot in range(2):
        x = residuals.acts[:, slot].double().numpy()
        projected = (x - x.mean(axis=0)) @ result.components[slot].double().numpy().T
        np.testing.assert_allclose(result.coords[slot].numpy(), projected, rtol=1e-4, atol=1e-5)


def test_standardized_pca_matches_sklearn_on_scaled_data_and_signs_are_aligned():
    acts = _randn(40, 4, 5, seed=2) * torch.tensor([1000.0, 1, 1, 1, 1])
    acts[:, :, 1] += acts[:, :, 2]  # correlated dimensions, so standardized PC1 is not trivial
    result = pca_by_layer(_set(acts), standardize=True, show_progress=False)
    raw = pca_by_layer(_set(acts), show_progress=False)
    for layer in range(4):
        x = acts[:, layer].double().numpy()
        reference = PCA(n_components=2).fit((x - x.mean(0)) / x.std(0, ddof=1))
        np.testing.assert_allclose(
            result.explained_variance_ratio[layer].numpy(), reference.explained_variance_ratio_,
            rtol=1e-5,
        )  # fmt: skip
        assert float(raw.explained_variance_ratio[layer, 0]) > 0.99  # the massive dimension
    dots = (result.components[1:] * result.components[:-1]).sum(dim=-1)
    assert bool((dots >= 0).all())
    assert result.standardized and not raw.standardized
    assert result.provenance == {
        "model_id": "toy",
        "hook_name": "blocks.{layer}.hook_resid_post",
        "position": "last",
    }


def test_sign_alignment_flips_only_signs():
    acts = _randn(30, 5, 6, seed=3)
    free = pca_by_layer(_set(acts), align_signs=False, show_progress=False)
    aligned = pca_by_layer(_set(acts), show_progress=False)
    torch.testing.assert_close(aligned.coords.abs(), free.coords.abs())
    torch.testing.assert_close(aligned.explained_variance_ratio, free.explained_variance_ratio)
    dots = (aligned.components[1:] * aligned.components[:-1]).sum(dim=-1)
    assert bool((dots >= 0).all())


def test_layer_matrix_standardizes_with_sample_std_and_leaves_flat_dimensions_centred():
    acts = _randn(10, 1, 3, seed=4)
    acts[:, 0, 2] = 5.0
    x = layer_matrix(_set(acts), 0, standardize=True)
    raw = acts[:, 0].double().numpy()
    np.testing.assert_allclose(
        x[:, :2], (raw[:, :2] - raw[:, :2].mean(0)) / raw[:, :2].std(0, ddof=1)
    )
    assert np.all(x[:, 2] == 0.0)
    assert x.dtype == np.float64


def test_layer_subset_keeps_ids_langs_and_groups_and_bad_input_is_refused():
    residuals = _set(_randn(12, 4, 5, seed=5), langs=["en", "ko", "zh"] * 4)
    result = pca_by_layer(residuals, layers=[3, 1], show_progress=False)
    assert result.layers == (3, 1) and result.coords.shape == (2, 12, 2)
    assert result.langs == residuals.langs and result.ids == residuals.ids
    assert result.groups == residuals.groups
    with pytest.raises(KeyError, match="layer 7 was not collected"):
        pca_by_layer(residuals, layers=[7], show_progress=False)
    with pytest.raises(ValueError, match="needs at least that many prompts, got 2"):
        pca_by_layer(residuals.select([0, 1]), n_components=3, show_progress=False)
