"""geometry: contrast vectors, EN/LOC vectors, cosines and null band, PCA and mixing scores."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from lens_steer.cache import ResidualSet, collect_residuals
from lens_steer.data import limit_probe_set
from lens_steer.data.records import LocalizationItem, ParallelItem, ProbeSet
from lens_steer.geometry import (
    ContrastVector,
    collect_localization,
    collect_parallel,
    contrast_vector,
    cosine,
    cosine_by_layer,
    en_vectors,
    geometry_study,
    language_silhouette,
    loc_vectors,
    measure_cost,
    mixing_by_layer,
    null_band,
    pca_by_layer,
    perpendicularity_table,
    translation_retrieval,
)

HOOK = "blocks.{layer}.hook_resid_post"


def _set(
    acts, langs=None, groups=(), ids=None, layers=None, position="last", model="toy"
) -> ResidualSet:
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n = acts.shape[0]
    return ResidualSet(
        acts=acts,
        layers=tuple(layers or range(acts.shape[1])),
        ids=tuple(ids or (f"p{i}" for i in range(n))),
        langs=tuple(langs or ("xx",) * n),
        hook_name=HOOK,
        position=position,
        model_id=model,
        groups=tuple(groups),
    )


# ---------------------------------------------------------------- contrast_vector


def test_contrast_vector_is_the_mean_difference_by_hand():
    a = _set([[[1.0, 2.0], [0.0, 4.0]], [[3.0, 0.0], [2.0, 2.0]]])  # 2 prompts, 2 layers, d=2
    b = _set([[[0.0, 1.0], [1.0, 1.0]], [[2.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 4.0]]])
    vector = contrast_vector(a, b, kind="custom", lang="xx", split="fit", name="toy")
    # layer 0: mean(a) = (2, 1), mean(b) = (1, 1); layer 1: mean(a) = (1, 3), mean(b) = (1, 2)
    torch.testing.assert_close(vector.vectors, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert vector.bootstrap is None
    assert vector.provenance == {
        "model_id": "toy", "hook_name": HOOK, "position": "last", "kind": "custom", "lang": "xx",
        "split": "fit", "n_a": 2, "n_b": 3, "paired": False, "n_bootstrap": 0, "seed": 0, "name": "toy",
    }  # fmt: skip
    torch.testing.assert_close(vector.at_layer(1), torch.tensor([0.0, 1.0]))


def test_paired_bootstrap_samples_are_means_of_resampled_differences():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(7, 2, 5, generator=gen), torch.randn(7, 2, 5, generator=gen)
    vector = contrast_vector(_set(a), _set(b), n_bootstrap=4, seed=11, paired=True)
    draws = torch.randint(7, (4, 7), generator=torch.Generator().manual_seed(11))
    for sample in range(4):
        rows = [int(i) for i in draws[sample]]
        expected = sum(a[i] - b[i] for i in rows) / 7
        torch.testing.assert_close(vector.bootstrap[sample], expected, rtol=1e-5, atol=1e-6)


def test_bootstrap_spread_matches_the_standard_error():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 1, 8, generator=gen) * 2.0, torch.randn(300, 1, 8, generator=gen)
    vector = contrast_vector(_set(a), _set(b), n_bootstrap=2000, seed=1)
    expected_se = math.sqrt(4.0 / 200 + 1.0 / 300)
    spread = vector.bootstrap.std(dim=0)
    assert torch.allclose(spread, torch.full_like(spread, expected_se), rtol=0.12)
    torch.testing.assert_close(vector.bootstrap.mean(dim=0), vector.vectors, atol=0.01, rtol=0)


def test_pairing_removes_shared_item_noise_from_the_bootstrap():
    gen = torch.Generator().manual_seed(0)
    item = torch.randn(50, 1, 4, generator=gen) * 10.0  # large per-item effect shared by both forms
    a, b = item + 1.0 + 0.1 * torch.randn(50, 1, 4, generator=gen), item
    paired = contrast_vector(_set(a), _set(b), n_bootstrap=300, paired=True)
    unpaired = contrast_vector(_set(a), _set(b), n_bootstrap=300, paired=False)
    assert float(paired.bootstrap.std(dim=0).max()) < 0.05
    assert float(unpaired.bootstrap.std(dim=0).min()) > 1.0


def test_bootstrap_is_reproducible_from_its_seed():
    a, b = _set(torch.randn(6, 2, 3)), _set(torch.randn(5, 2, 3))
    first = contrast_vector(a, b, n_bootstrap=5, seed=4)
    assert torch.equal(first.bootstrap, contrast_vector(a, b, n_bootstrap=5, seed=4).bootstrap)
    assert not torch.equal(first.bootstrap, contrast_vector(a, b, n_bootstrap=5, seed=5).bootstrap)


@pytest.mark.parametrize(
    ("b", "message"),
    [
        (_set(torch.zeros(2, 2, 5)), "d_model 4 vs 5"),
        (_set(torch.zeros(2, 2, 4), layers=(0, 2)), r"layers \(0, 1\) vs \(0, 2\)"),
        (_set(torch.zeros(2, 2, 4), position="mean"), "position 'last' vs 'mean'"),
        (_set(torch.zeros(2, 2, 4), model="other"), "model_id 'toy' vs 'other'"),
    ],
)
def test_contrast_vector_refuses_mismatched_sets(b, message):
    with pytest.raises(ValueError, match=f"mismatched ResidualSets: {message}"):
        contrast_vector(_set(torch.zeros(2, 2, 4)), b)


def test_paired_contrast_needs_aligned_sets_of_equal_size():
    a = _set(torch.zeros(2, 1, 3), groups=("g1", "g2"))
    with pytest.raises(ValueError, match="paired sets differ in size: 2 vs 3"):
        contrast_vector(a, _set(torch.zeros(3, 1, 3)), paired=True)
    with pytest.raises(ValueError, match="row 0 has group 'g1' in a and 'g2' in b"):
        contrast_vector(a, _set(torch.zeros(2, 1, 3), groups=("g2", "g1")), paired=True)
    with pytest.raises(ValueError, match="empty set"):
        contrast_vector(a.select([]), a)


def test_contrast_vector_save_load_round_trip(tmp_path: Path):
    vector = contrast_vector(
        _set(torch.randn(5, 3, 4)), _set(torch.randn(4, 3, 4)), n_bootstrap=6, kind="loc", lang="ko"
    )
    vector.save(tmp_path / "v")
    back = ContrastVector.load(tmp_path / "v.json")
    assert torch.equal(back.vectors, vector.vectors) and torch.equal(
        back.bootstrap, vector.bootstrap
    )
    assert back.layers == vector.layers and back.provenance == vector.provenance
    plain = contrast_vector(_set(torch.randn(2, 3, 4)), _set(torch.randn(2, 3, 4)))
    plain.save(tmp_path / "w")
    assert ContrastVector.load(tmp_path / "w").bootstrap is None


# ---------------------------------------------------------------- EN / LOC vectors from a probe set


def _probe_set() -> ProbeSet:
    texts = {
        "en": ["The sun rises.", "Water is wet.", "Cats sleep a lot.", "Held out."],
        "ko": ["해가 뜬다.", "물은 젖었다.", "고양이는 많이 잔다.", "평가용."],
    }
    parallel = [
        ParallelItem(f"par-{g}-{lang}", f"par-{g}", lang, "eval" if g == 3 else "fit", text)
        for lang, rows in texts.items()
        for g, text in enumerate(rows)
    ]
    parallel.append(ParallelItem("par-9-en", "par-9", "en", "fit", "Only in English."))
    localization = [
        LocalizationItem(
            f"loc-{i}-ko",
            f"loc-{i}",
            "ko",
            "fit",
            "currency",
            implicit,
            explicit,
            "원",
            "달러",
            "In our country",
            "In Korea",
            "won",
            "dollar",
        )  # fmt: skip
        for i, (implicit, explicit) in enumerate(
            [("우리나라의 화폐는", "한국의 화폐는"), ("우리나라의 수도는", "한국의 수도는")]
        )
    ]
    return ProbeSet(transfer=[], localization=localization, parallel=parallel, version="test")


def test_en_vectors_pair_english_and_language_by_group_on_the_fit_split(tiny_model):
    probe = _probe_set()
    vectors = en_vectors(tiny_model, probe, ["ko"], n_bootstrap=3, show_progress=False)
    english = collect_residuals(
        tiny_model, ["The sun rises.", "Water is wet.", "Cats sleep a lot."], show_progress=False
    )
    korean = collect_residuals(
        tiny_model, ["해가 뜬다.", "물은 젖었다.", "고양이는 많이 잔다."], show_progress=False
    )
    expected = english.acts.mean(dim=0) - korean.acts.mean(dim=0)
    torch.testing.assert_close(vectors["ko"].vectors, expected, rtol=1e-4, atol=1e-4)
    provenance = vectors["ko"].provenance
    assert (provenance["kind"], provenance["lang"], provenance["split"]) == ("en", "ko", "fit")
    assert (provenance["n_a"], provenance["n_b"], provenance["paired"]) == (3, 3, True)
    assert provenance["model_id"] == "tiny-random" and provenance["position"] == "last"


def test_loc_vectors_are_explicit_minus_implicit_paired_by_item(tiny_model):
    probe = _probe_set()
    collected = collect_localization(tiny_model, probe, ["ko"], show_progress=False)
    assert collected["explicit"].ids == collected["implicit"].ids == ("loc-0-ko", "loc-1-ko")
    vectors = loc_vectors(None, probe, ["ko"], localization=collected)
    explicit = collect_residuals(
        tiny_model, ["한국의 화폐는", "한국의 수도는"], show_progress=False
    )
    implicit = collect_residuals(
        tiny_model, ["우리나라의 화폐는", "우리나라의 수도는"], show_progress=False
    )
    expected = explicit.acts.mean(dim=0) - implicit.acts.mean(dim=0)
    torch.testing.assert_close(vectors["ko"].vectors, expected, rtol=1e-4, atol=1e-4)
    assert vectors["ko"].provenance["kind"] == "loc"


def test_en_vectors_reuse_collected_parallel_residuals(tiny_model):
    probe = _probe_set()
    parallel = collect_parallel(tiny_model, probe, ["en", "ko"], layers=[1, 2], show_progress=False)
    assert parallel.langs.count("en") == 4  # par-0..2 and par-9 of the fit split
    vectors = en_vectors(None, probe, ["ko"], parallel=parallel)
    assert vectors["ko"].layers == (1, 2)
    assert vectors["ko"].provenance["n_a"] == 3  # par-9 has no Korean translation


def test_missing_language_or_model_is_a_clear_error(tiny_model):
    probe = _probe_set()
    with pytest.raises(
        ValueError, match=r"no parallel items in language\(s\) \['fa'\] for split 'fit'"
    ):
        en_vectors(tiny_model, probe, ["fa"], show_progress=False)
    with pytest.raises(ValueError, match=r"no localization items in language\(s\) \['zh'\]"):
        loc_vectors(tiny_model, probe, ["zh"], show_progress=False)
    with pytest.raises(ValueError, match="needs a model"):
        en_vectors(None, probe, ["ko"])


# ---------------------------------------------------------------- cosines and the null band


def test_cosines_of_orthogonal_parallel_and_opposite_vectors():
    u = torch.tensor([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, 2.0, 3.0]])
    v = torch.tensor([[0.0, 5.0, 0.0], [6.0, 8.0, 0.0], [-2.0, -4.0, -6.0]])
    result = cosine_by_layer(u, v, layers=[2, 5, 9])
    torch.testing.assert_close(result.raw, torch.tensor([0.0, 1.0, -1.0]))
    assert result.layers == (2, 5, 9)
    assert result.standardized is None and result.raw_ci is None
    assert result.null_band == pytest.approx(2 / math.sqrt(3))


def test_standardized_cosine_divides_each_dimension_by_the_residual_std():
    # Dimension 0 is "massive": std 100 over prompts, where the others have std 1.
    gen = torch.Generator().manual_seed(0)
    residuals = torch.randn(4000, 1, 3, generator=gen) * torch.tensor([100.0, 1.0, 1.0])
    scale = _set(residuals)
    u, v = torch.tensor([[100.0, 1.0, 0.0]]), torch.tensor([[100.0, 0.0, 1.0]])
    result = cosine_by_layer(u, v, scale=scale)
    std = residuals[:, 0].std(dim=0)
    u_s, v_s = u[0] / std, v[0] / std
    expected = float(u_s @ v_s / (u_s.norm() * v_s.norm()))
    assert float(result.raw[0]) == pytest.approx(10000 / (10000 + 1), abs=1e-6)
    assert float(result.standardized[0]) == pytest.approx(expected, abs=1e-6)
    assert float(result.standardized[0]) == pytest.approx(0.5, abs=0.02)


def _sample_cosines(u: ContrastVector, v: ContrastVector, slot: int) -> np.ndarray:
    a, b = u.bootstrap[:, slot].double(), v.bootstrap[:, slot].double()
    return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).numpy()


def _noisy_pair(n_bootstrap=400):
    gen = torch.Generator().manual_seed(2)
    a, b, c, d = (torch.randn(30, 2, 16, generator=gen) for _ in range(4))
    shared = torch.randn(2, 16, generator=gen)  # a common direction, estimated from disjoint sets
    u = contrast_vector(_set(a + shared), _set(b), n_bootstrap=n_bootstrap, seed=1)
    v = contrast_vector(_set(c + shared), _set(d), n_bootstrap=n_bootstrap, seed=2)
    return u, v


def test_percentile_interval_is_the_percentiles_of_sample_cosines():
    u, v = _noisy_pair()
    result = cosine_by_layer(u, v, level=0.9, interval="percentile")
    for slot in range(2):
        low, high = np.percentile(_sample_cosines(u, v, slot), [5, 95])
        assert float(result.raw_ci[0, slot]) == pytest.approx(low, abs=1e-5)
        assert float(result.raw_ci[1, slot]) == pytest.approx(high, abs=1e-5)
    assert result.n_bootstrap == 400 and result.interval == "percentile"


def test_basic_interval_reflects_the_percentiles_around_the_estimate():
    u, v = _noisy_pair()
    result = cosine_by_layer(u, v, level=0.9)
    assert result.interval == "basic"
    for slot in range(2):
        low, high = np.percentile(_sample_cosines(u, v, slot), [5, 95])
        estimate = float(result.raw[slot])
        assert float(result.raw_ci[0, slot]) == pytest.approx(
            max(-1.0, 2 * estimate - high), abs=1e-5
        )
        assert float(result.raw_ci[1, slot]) == pytest.approx(
            min(1.0, 2 * estimate - low), abs=1e-5
        )


def test_basic_interval_covers_the_true_cosine_where_the_percentile_interval_fails():
    """Repeated experiments with a known true cosine of 0.6: count how often each interval holds it."""
    gen = torch.Generator().manual_seed(0)
    d_model = 16
    u_true = torch.nn.functional.normalize(torch.randn(1, d_model, generator=gen), dim=-1)
    w = torch.randn(1, d_model, generator=gen)
    w = torch.nn.functional.normalize(w - (w * u_true).sum() * u_true, dim=-1)
    v_true = 0.6 * u_true + 0.8 * w
    covered = {"basic": 0, "percentile": 0}
    for rep in range(100):
        a, b, c, d = (torch.randn(30, 1, d_model, generator=gen) for _ in range(4))
        u = contrast_vector(_set(a + 2 * u_true), _set(b), n_bootstrap=200, seed=2 * rep)
        v = contrast_vector(_set(c + 2 * v_true), _set(d), n_bootstrap=200, seed=2 * rep + 1)
        for method in covered:
            low, high = cosine_by_layer(u, v, level=0.9, interval=method).raw_ci[:, 0]
            covered[method] += int(low <= 0.6 <= high)
    assert covered["basic"] >= 70  # measured 80 of 100 at a nominal 90
    assert covered["basic"] >= covered["percentile"] + 15  # measured 52


def test_null_band_matches_a_simulation_of_random_directions():
    gen = torch.Generator().manual_seed(0)
    for d_model in (640, 16):
        u, v = (
            torch.randn(20000, d_model, generator=gen),
            torch.randn(20000, d_model, generator=gen),
        )
        cos = (cosine(u, v)).numpy()
        assert cos.std() == pytest.approx(1 / math.sqrt(d_model), rel=0.03)
        for level in (0.9, 0.95, 0.99):
            assert null_band(d_model, level=level) == pytest.approx(
                np.quantile(np.abs(cos), level), rel=0.04
            )
        inside = np.mean(np.abs(cos) < null_band(d_model))
        assert inside == pytest.approx(0.954, abs=0.012 if d_model == 640 else 0.03)
    assert null_band(640) == pytest.approx(0.0790569, abs=1e-6)


def test_cosine_refuses_nan_zero_and_mismatched_vectors():
    with pytest.raises(ValueError, match="NaN"):
        cosine_by_layer(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="vector is zero"):
        cosine(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="mismatched vectors"):
        cosine_by_layer(torch.ones(2, 4), torch.ones(2, 5))
    u = contrast_vector(_set(torch.randn(3, 2, 4)), _set(torch.randn(3, 2, 4)))
    v = contrast_vector(
        _set(torch.randn(3, 2, 4), layers=(0, 5)), _set(torch.randn(3, 2, 4), layers=(0, 5))
    )
    with pytest.raises(ValueError, match=r"layers \(0, 1\) vs \(0, 5\)"):
        cosine_by_layer(u, v)
    with pytest.raises(ValueError, match=r"lacks layer\(s\) \[1\]"):
        cosine_by_layer(u, u, scale=_set(torch.randn(5, 1, 4)))


def test_perpendicularity_table_rows_are_json_ready_and_match_cosine_by_layer():
    gen = torch.Generator().manual_seed(5)
    en, loc = {}, {}
    for lang in ("ko", "zh"):
        en[lang] = contrast_vector(
            _set(torch.randn(9, 3, 8, generator=gen) + 1),
            _set(torch.randn(9, 3, 8, generator=gen)),
            n_bootstrap=50,
            lang=lang,
            split="fit",
        )
        loc[lang] = contrast_vector(
            _set(torch.randn(9, 3, 8, generator=gen) - 1),
            _set(torch.randn(9, 3, 8, generator=gen)),
            n_bootstrap=50,
            lang=lang,
        )
    scale = _set(torch.randn(40, 3, 8, generator=gen))
    rows = perpendicularity_table(en, loc, scale=scale)
    json.dumps(rows, allow_nan=False)
    assert [(row["lang"], row["layer"]) for row in rows] == [
        (lang, layer) for lang in ("ko", "zh") for layer in range(3)
    ]
    direct = cosine_by_layer(en["zh"], loc["zh"], scale=scale)
    row = rows[4]
    assert row["cos_raw"] == pytest.approx(float(direct.raw[1]), abs=1e-6)
    assert row["cos_std"] == pytest.approx(float(direct.standardized[1]), abs=1e-6)
    assert row["std_ci_low"] == pytest.approx(float(direct.standardized_ci[0, 1]), abs=1e-6)
    assert row["ci_low"] <= row["cos_raw"] <= row["ci_high"]
    assert row["null_band"] == pytest.approx(2 / math.sqrt(8), abs=1e-6)
    assert (row["model_id"], row["split"], row["n_bootstrap"]) == ("toy", "fit", 50)
    with pytest.raises(ValueError, match="no language has both"):
        perpendicularity_table(en, {"fa": loc["ko"]})


# ---------------------------------------------------------------- PCA and mixing


def _copies(
    n_groups=12, langs=("en", "ko", "zh"), d_model=10, layers=2, offset=0.0, seed=0
) -> ResidualSet:
    """Every language is the same set of sentence vectors (plus an optional per-language shift)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n_groups, layers, d_model, generator=gen)
    shifts = offset * torch.randn(len(langs), 1, 1, d_model, generator=gen)
    acts = torch.cat([base + shift for shift in shifts])
    return _set(
        acts,
        langs=[lang for lang in langs for _ in range(n_groups)],
        groups=[f"g{g}" for _ in langs for g in range(n_groups)],
    )


def test_pca_explained_variance_and_coordinates_match_sklearn():
    residuals = _set(
        torch.randn(30, 3, 6, generator=torch.Generator().manual_seed(1)) * torch.arange(1, 7)
    )
    result = pca_by_layer(residuals, n_components=2, show_progress=False)
    for slot, layer in enumerate(residuals.layers):
        reference = PCA(n_components=2).fit(residuals.at_layer(layer).double().numpy())
        np.testing.assert_allclose(
            result.explained_variance_ratio[slot].numpy(),
            reference.explained_variance_ratio_,
            rtol=1e-5,
        )
        coords = reference.transform(residuals.at_layer(layer).double().numpy())
        np.testing.assert_allclose(
            np.abs(result.coords[slot].numpy()), np.abs(coords), rtol=1e-4, atol=1e-4
        )
    assert result.coords.shape == (3, 30, 2)


def test_standardized_pca_matches_sklearn_on_scaled_data_and_signs_are_aligned():
    gen = torch.Generator().manual_seed(2)
    acts = torch.randn(40, 4, 5, generator=gen) * torch.tensor([1000.0, 1, 1, 1, 1])
    acts[:, :, 1] += acts[:, :, 2]  # correlated dimensions, so standardized PC1 is not trivial
    result = pca_by_layer(_set(acts), standardize=True, show_progress=False)
    for layer in range(4):
        x = acts[:, layer].double().numpy()
        reference = PCA(n_components=2).fit((x - x.mean(0)) / x.std(0))
        np.testing.assert_allclose(
            result.explained_variance_ratio[layer].numpy(),
            reference.explained_variance_ratio_,
            rtol=1e-5,
        )
    dots = (result.components[1:] * result.components[:-1]).sum(dim=-1)
    assert bool((dots >= 0).all())
    assert result.standardized and result.provenance["model_id"] == "toy"


def test_retrieval_accuracy_is_one_when_every_language_is_an_identical_copy():
    residuals = _copies()
    pairs = translation_retrieval(residuals, 0)
    assert set(pairs) == {(a, b) for a in ("en", "ko", "zh") for b in ("en", "ko", "zh") if a != b}
    assert all(value == 1.0 for value in pairs.values())


def test_retrieval_is_near_chance_for_unrelated_languages_and_per_language_centring_removes_offsets():
    unrelated = _set(
        torch.randn(60, 1, 32, generator=torch.Generator().manual_seed(3)),
        langs=["en"] * 30 + ["ko"] * 30,
        groups=[f"g{g}" for _ in range(2) for g in range(30)],
    )
    assert np.mean(list(translation_retrieval(unrelated, 0).values())) < 0.25
    shifted = _copies(offset=5.0)
    assert min(translation_retrieval(shifted, 0, center="language").values()) == 1.0
    with pytest.raises(ValueError, match="needs residuals with groups"):
        translation_retrieval(_set(torch.randn(4, 1, 3), langs=["en", "en", "ko", "ko"]), 0)


def test_silhouette_matches_sklearn_and_separates_shifted_languages():
    residuals = _copies(offset=20.0)
    x = residuals.at_layer(1).double().numpy()
    expected = silhouette_score(x - x.mean(0), np.asarray(residuals.langs), metric="cosine")
    assert language_silhouette(residuals, 1) == pytest.approx(expected, abs=1e-9)
    assert language_silhouette(residuals, 1) > 0.8
    assert language_silhouette(_copies(), 1) < 0.0  # identical copies: no language structure
    with pytest.raises(ValueError, match="silhouette needs 2"):
        language_silhouette(_set(torch.randn(4, 1, 3), langs=["en"] * 4), 0)


def test_mixing_by_layer_rows_record_scores_chance_and_settings():
    rows = mixing_by_layer(_copies(n_groups=10), show_progress=False)
    json.dumps(rows, allow_nan=False)
    assert [row["layer"] for row in rows] == [0, 1]
    assert rows[0]["retrieval_accuracy"] == 1.0 and rows[0]["retrieval_chance"] == pytest.approx(
        0.1
    )
    assert rows[0]["silhouette"] == pytest.approx(
        language_silhouette(_copies(n_groups=10), 0), abs=1e-6
    )
    assert (rows[0]["n_langs"], rows[0]["n_prompts"], rows[0]["model_id"]) == (3, 30, "toy")
    with pytest.raises(KeyError, match="layer 7 was not collected"):
        mixing_by_layer(_copies(), layers=[7], show_progress=False)


# ---------------------------------------------------------------- the whole geometry step


def _study_probe_set() -> ProbeSet:
    sentences = {
        "en": [
            "The sun rises.",
            "Water is wet.",
            "Cats sleep.",
            "Rain falls.",
            "Birds sing.",
            "Trees grow.",
        ],
        "ko": [
            "해가 뜬다.",
            "물은 젖었다.",
            "고양이는 잔다.",
            "비가 온다.",
            "새가 노래한다.",
            "나무가 자란다.",
        ],
        "zh": ["太阳升起。", "水是湿的。", "猫在睡觉。", "下雨了。", "鸟在唱歌。", "树在生长。"],
    }
    parallel = [
        ParallelItem(f"par-{g}-{lang}", f"par-{g}", lang, "fit", text)
        for lang, rows in sentences.items()
        for g, text in enumerate(rows)
    ]
    prompts = {
        "ko": [
            ("우리나라의 화폐는", "한국의 화폐는"),
            ("우리나라의 수도는", "한국의 수도는"),
            ("우리나라 음식은", "한국 음식은"),
        ],
        "zh": [
            ("我们国家的货币是", "中国的货币是"),
            ("我们国家的首都是", "中国的首都是"),
            ("我们国家的食物是", "中国的食物是"),
        ],
    }
    localization = [
        LocalizationItem(
            f"loc-{i}-{lang}",
            f"loc-{i}",
            lang,
            "fit",
            "topic",
            implicit,
            explicit,
            "a",
            "b",
            "In our country",
            "In X",
            "a",
            "b",
        )
        for lang, rows in prompts.items()
        for i, (implicit, explicit) in enumerate(rows)
    ]
    return ProbeSet(transfer=[], localization=localization, parallel=parallel, version="study-test")


def test_geometry_study_reuses_one_collection_and_reports_every_number(tiny_model):
    probe = _study_probe_set()
    study = geometry_study(tiny_model, probe, ["ko", "zh"], n_bootstrap=20, show_progress=False)
    # The vectors fitted on the shared collection equal those fitted from scratch.
    fresh = en_vectors(tiny_model, probe, ["zh"], show_progress=False)
    torch.testing.assert_close(study.en["zh"].vectors, fresh["zh"].vectors, rtol=1e-4, atol=1e-4)
    fresh_loc = loc_vectors(tiny_model, probe, ["ko"], show_progress=False)
    torch.testing.assert_close(
        study.loc["ko"].vectors, fresh_loc["ko"].vectors, rtol=1e-4, atol=1e-4
    )
    assert (
        study.loc["ko"].provenance["seed"] != study.en["ko"].provenance["seed"]
    )  # independent resamples

    assert [(r["lang"], r["layer"]) for r in study.perpendicularity] == [
        (lang, layer) for lang in ("ko", "zh") for layer in range(4)
    ]
    assert len(study.mixing) == 8 and {r["standardized"] for r in study.mixing} == {False, True}
    assert [pca.standardized for pca in study.pca] == [False, True]
    results = study.to_json()
    json.dumps(results, allow_nan=False)
    summary = results["summary"]
    raw = [r["cos_raw"] for r in study.perpendicularity]
    assert summary["cos_raw_range"] == [min(raw), max(raw)]
    layer0 = [r["cos_std"] for r in study.perpendicularity if r["layer"] == 0]
    assert summary["cosine_range_by_layer"][0]["std_max"] == max(layer0)
    assert (
        results["settings"]["langs"] == ["en", "ko", "zh"]
        and results["settings"]["n_bootstrap"] == 20
    )
    assert results["costs"]["collect_parallel"]["n_prompts"] == 18
    assert results["costs"]["collect_localization"]["n_prompts"] == 12
    assert results["costs"]["collect_parallel"]["seconds"] > 0


def test_limit_probe_set_keeps_whole_translation_groups():
    probe = _study_probe_set()
    moved = [
        replace(item, split="eval") if item.group == "par-0" else item for item in probe.parallel
    ]
    limited = limit_probe_set(replace(probe, parallel=moved), 2)
    kept = sorted({(item.split, item.group) for item in limited.parallel})
    assert kept == [("eval", "par-0"), ("fit", "par-1"), ("fit", "par-2")]  # per split
    assert len(limited.parallel) == 9  # each kept group in all three languages
    ids = sorted(item.id for item in limited.localization)
    assert ids == ["loc-0-ko", "loc-0-zh", "loc-1-ko", "loc-1-zh"]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        limit_probe_set(_study_probe_set(), 0)


def test_measure_cost_sees_the_peak_memory_of_its_block():
    with measure_cost(python_heap=True) as cost:
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        time.sleep(0.5)  # ten sampling intervals with the GIL free: the sampler must see it
        del block
    assert cost["peak_rss_mb"] - cost["rss_before_mb"] > 200
    assert cost["python_peak_mb"] > 200  # numpy buffers are traced by tracemalloc
    assert cost["seconds"] >= 0 and cost["process_max_rss_mb"] >= cost["peak_rss_mb"] - 1
