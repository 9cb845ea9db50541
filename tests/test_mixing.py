"""Language mixing per layer: retrieval and silhouette against numpy/scikit-learn, per-group
scores that reproduce them, bootstrap draws shared by all layers, and a planted structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from lens_steer.geometry import (
    language_silhouette,
    measure_mixing,
    mixing_by_layer,
    translation_retrieval,
)
from lens_steer.residuals import ResidualSet

LANGS = ("en", "ko", "zh")


def _set(acts, langs, groups=()) -> ResidualSet:
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n = acts.shape[0]
    return ResidualSet(
        acts, tuple(range(acts.shape[1])), tuple(f"p{i}" for i in range(n)), tuple(langs),
        "blocks.{layer}.hook_resid_post", "last", "toy", tuple(groups),
    )  # fmt: skip


def _copies(n_groups=12, d_model=10, layers=2, offset=0.0, seed=0) -> ResidualSet:
    """Every language is the same set of sentence vectors (plus an optional per-language shift)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n_groups, layers, d_model, generator=generator)
    shifts = offset * torch.randn(len(LANGS), 1, 1, d_model, generator=generator)
    return _set(
        torch.cat([base + shift for shift in shifts]),
        [lang for lang in LANGS for _ in range(n_groups)],
        [f"g{g}" for _ in LANGS for g in range(n_groups)],
    )


def _planted(n_groups=12, d_model=10, seed=0) -> ResidualSet:
    """Layers 0 and 2: each language far from the others. Layer 1: translations coincide."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n_groups, 3, d_model, generator=generator)
    noise = 0.05 * torch.randn(len(LANGS), n_groups, 3, d_model, generator=generator)
    shift = torch.zeros(len(LANGS), 1, 3, d_model)
    shift[:, :, 0] = 6.0 * torch.randn(len(LANGS), 1, d_model, generator=generator)
    shift[:, :, 2] = 3.0 * torch.randn(len(LANGS), 1, d_model, generator=generator)
    return _set(
        torch.cat(list(base + noise + shift)),
        [lang for lang in LANGS for _ in range(n_groups)],
        [f"g{g}" for _ in LANGS for g in range(n_groups)],
    )


def _numpy_retrieval(residuals: ResidualSet, layer: int) -> dict[tuple[str, str], float]:
    """Nearest neighbour by cosine of globally centred residuals, among the other language."""
    x = residuals.at_layer(layer).double().numpy()
    x = x - x.mean(axis=0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    langs, groups = np.asarray(residuals.langs), np.asarray(residuals.groups)
    out = {}
    for source in LANGS:
        for target in LANGS:
            if source == target:
                continue
            src, tgt = np.flatnonzero(langs == source), np.flatnonzero(langs == target)
            hits = [groups[tgt[np.argmax(x[tgt] @ x[row])]] == groups[row] for row in src]
            out[(source, target)] = float(np.mean(hits))
    return out


# ---------------------------------------------------------------- retrieval and silhouette


def test_retrieval_equals_a_direct_nearest_neighbour_search():
    residuals = _copies(offset=0.3, seed=4)
    noisy = _set(
        residuals.acts + 0.8 * torch.randn(residuals.acts.shape, generator=torch.Generator().manual_seed(9)),
        residuals.langs, residuals.groups,
    )  # fmt: skip
    for layer in (0, 1):
        pairs = translation_retrieval(noisy, layer)
        assert pairs == pytest.approx(_numpy_retrieval(noisy, layer))
    assert 0.2 < np.mean(list(pairs.values())) < 0.95  # neither trivial nor chance


def test_retrieval_accuracy_is_one_when_every_language_is_an_identical_copy():
    pairs = translation_retrieval(_copies(), 0)
    assert set(pairs) == {(a, b) for a in LANGS for b in LANGS if a != b}
    assert all(value == 1.0 for value in pairs.values())


def test_retrieval_is_near_chance_for_unrelated_languages_and_language_centring_removes_offsets():
    unrelated = _set(
        torch.randn(60, 1, 32, generator=torch.Generator().manual_seed(3)),
        ["en"] * 30 + ["ko"] * 30,
        [f"g{g}" for _ in range(2) for g in range(30)],
    )
    assert np.mean(list(translation_retrieval(unrelated, 0).values())) < 0.25
    shifted = _copies(offset=5.0)
    assert min(translation_retrieval(shifted, 0, center="language").values()) == 1.0
    with pytest.raises(ValueError, match="needs residuals with groups"):
        translation_retrieval(_set(torch.randn(4, 1, 3), ["en", "en", "ko", "ko"]), 0)
    with pytest.raises(ValueError, match="center must be"):
        translation_retrieval(shifted, 0, center="median")  # type: ignore[arg-type]


def test_silhouette_matches_sklearn_and_separates_shifted_languages():
    residuals = _copies(offset=20.0)
    x = residuals.at_layer(1).double().numpy()
    expected = silhouette_score(x - x.mean(0), np.asarray(residuals.langs), metric="cosine")
    assert language_silhouette(residuals, 1) == pytest.approx(expected, abs=1e-9)
    assert language_silhouette(residuals, 1) > 0.8
    assert language_silhouette(_copies(), 1) < 0.0  # identical copies: no language structure
    euclidean = silhouette_score(x - x.mean(0), np.asarray(residuals.langs))
    assert language_silhouette(residuals, 1, metric="euclidean") == pytest.approx(euclidean)
    with pytest.raises(ValueError, match="silhouette needs 2"):
        language_silhouette(_set(torch.randn(4, 1, 3), ["en"] * 4), 0)


# ---------------------------------------------------------------- per-group scores


@pytest.fixture(scope="module")
def planted():
    residuals = _planted()
    return residuals, measure_mixing(residuals, show_progress=False)


def test_per_group_scores_reproduce_retrieval_and_silhouette_means(planted):
    residuals, mixing = planted
    assert mixing.groups == tuple(f"g{g}" for g in range(12))
    assert {name: s.shape for name, s in mixing.scores.items()} == {
        "retrieval": (12, 3),
        "silhouette": (12, 3),
        "probe": (12, 3),
    }
    for slot, layer in enumerate(mixing.layers):
        retrieval = np.mean(list(translation_retrieval(residuals, layer).values()))
        assert mixing.value("retrieval")[slot] == pytest.approx(retrieval, abs=1e-12)
        silhouette = language_silhouette(residuals, layer)
        assert mixing.value("silhouette")[slot] == pytest.approx(silhouette, abs=1e-12)
        assert set(np.unique(mixing.scores["probe"][:, slot])) <= {0.0, 1 / 3, 2 / 3, 1.0}


def test_a_planted_structure_gives_the_expected_ordering_of_layers(planted):
    """Languages are separated at layers 0 and 2 and mixed at layer 1: every score says so."""
    _, mixing = planted
    retrieval, silhouette, probe = (
        mixing.value(name) for name in ("retrieval", "silhouette", "probe")
    )
    assert retrieval[1] == 1.0 and retrieval[1] > max(retrieval[0], retrieval[2])
    assert silhouette[1] < 0.1 < 0.5 < min(silhouette[0], silhouette[2])
    assert probe[0] == probe[2] == 1.0 and probe[1] < 0.6
    rows = mixing.rows(n_bootstrap=300, seed=1)
    assert rows[1]["silhouette_ci"][1] < min(
        rows[0]["silhouette_ci"][0], rows[2]["silhouette_ci"][0]
    )


def test_bootstrap_draws_are_the_same_groups_at_every_layer(planted):
    _, mixing = planted
    samples = mixing.samples("silhouette", n_bootstrap=50, seed=3)
    per_group = mixing.scores["silhouette"]
    draws = np.random.default_rng(3).integers(0, 12, size=(50, 12))
    np.testing.assert_allclose(samples, per_group[draws].mean(axis=1), rtol=1e-12)
    # Paired: the difference of two layers' samples is the resampled mean of per-group differences.
    np.testing.assert_allclose(
        samples[:, 1] - samples[:, 0], (per_group[:, 1] - per_group[:, 0])[draws].mean(axis=1),
        rtol=1e-9, atol=1e-12,
    )  # fmt: skip
    assert not np.allclose(samples, mixing.samples("silhouette", n_bootstrap=50, seed=4))


def test_rows_are_json_ready_with_percentile_intervals_over_groups(planted):
    residuals, mixing = planted
    rows = mixing.rows(n_bootstrap=200, seed=2, confidence=0.9)
    json.dumps(rows, allow_nan=False)
    assert [row["layer"] for row in rows] == [0, 1, 2]
    samples = mixing.samples("retrieval", n_bootstrap=200, seed=2)
    low, high = np.percentile(samples[:, 0], [5, 95])
    assert rows[0]["retrieval_ci"] == [pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6)]
    assert rows[0]["retrieval"] == pytest.approx(mixing.value("retrieval")[0], abs=1e-6)
    assert rows[2]["n_groups"] == 12 and rows[2]["n_langs"] == 3 and rows[2]["n_prompts"] == 36
    assert (rows[0]["model_id"], rows[0]["center"], rows[0]["standardized"]) == (
        "toy",
        "global",
        False,
    )
    assert (rows[0]["n_bootstrap"], rows[0]["seed"], rows[0]["confidence"]) == (200, 2, 0.9)
    # A layer's row does not depend on which other layers were measured (same group draws).
    alone = mixing_by_layer(residuals, layers=[1], n_bootstrap=200, seed=0, show_progress=False)
    assert alone == [mixing.rows(n_bootstrap=200, seed=0)[1]]


def test_mixing_refuses_sets_it_cannot_measure():
    with pytest.raises(ValueError, match="needs residuals with groups"):
        measure_mixing(_set(torch.randn(4, 1, 3), ["en", "en", "ko", "ko"]), show_progress=False)
    with pytest.raises(ValueError, match=r"at least 2 languages, got \['en'\]"):
        measure_mixing(_set(torch.randn(4, 1, 3), ["en"] * 4, ["a", "b"] * 2), show_progress=False)
    with pytest.raises(ValueError, match="at least 2 sentence groups, got 1"):
        measure_mixing(_set(torch.randn(4, 1, 3), ["en", "ko"] * 2, ["a"] * 4), show_progress=False)
    with pytest.raises(KeyError, match="layer 7 was not collected"):
        measure_mixing(_copies(), layers=[7], show_progress=False)
