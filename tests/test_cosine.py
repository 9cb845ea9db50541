"""Cosines per layer, raw and standardized, against numpy; bootstrap intervals; the null band."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lens_steer.geometry import (
    ContrastVector,
    contrast_vector,
    cosine,
    cosine_by_layer,
    null_band,
    perpendicularity_table,
    residual_scale,
)
from lens_steer.geometry.cosine import bootstrap_interval
from lens_steer.residuals import ResidualSet

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only contend

HOOK = "blocks.{layer}.hook_resid_post"


def _set(acts, layers=None) -> ResidualSet:
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n = acts.shape[0]
    return ResidualSet(
        acts, tuple(layers or range(acts.shape[1])), tuple(f"p{i}" for i in range(n)),
        ("xx",) * n, HOOK, "last", "toy",
    )  # fmt: skip


def _randn(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _numpy_cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


# ---------------------------------------------------------------- cosines


def test_cosines_of_orthogonal_parallel_and_opposite_vectors():
    u = torch.tensor([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, 2.0, 3.0]])
    v = torch.tensor([[0.0, 5.0, 0.0], [6.0, 8.0, 0.0], [-2.0, -4.0, -6.0]])
    result = cosine_by_layer(u, v, layers=[2, 5, 9])
    torch.testing.assert_close(result.raw, torch.tensor([0.0, 1.0, -1.0]))
    assert result.layers == (2, 5, 9)
    assert result.standardized is None and result.raw_ci is None and result.n_bootstrap == 0
    assert result.null_band == pytest.approx(2 / math.sqrt(3))


def test_cosine_equals_numpy_in_float64_for_large_and_small_norms():
    generator = torch.Generator().manual_seed(0)
    u = _randn(5, 640, generator=generator) * torch.logspace(-3, 4, 5)[:, None]
    v = _randn(5, 640, generator=generator) + 0.3 * u / u.norm(dim=-1, keepdim=True)
    expected = _numpy_cosine(u.double().numpy(), v.double().numpy())
    np.testing.assert_allclose(cosine(u, v).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_standardized_cosine_divides_each_dimension_by_the_residual_std():
    # Dimension 0 is "massive": std 100 over prompts, where the others have std 1.
    generator = torch.Generator().manual_seed(0)
    residuals = _randn(4000, 1, 3, generator=generator) * torch.tensor([100.0, 1.0, 1.0])
    u, v = torch.tensor([[100.0, 1.0, 0.0]]), torch.tensor([[100.0, 0.0, 1.0]])
    result = cosine_by_layer(u, v, scale=_set(residuals))
    std = residuals[:, 0].double().numpy().std(axis=0, ddof=1)
    expected = _numpy_cosine(u[0].double().numpy() / std, v[0].double().numpy() / std)
    assert float(result.raw[0]) == pytest.approx(10000 / (10000 + 1), abs=1e-6)
    assert float(result.standardized[0]) == pytest.approx(float(expected), abs=1e-6)
    assert float(result.standardized[0]) == pytest.approx(0.5, abs=0.02)


def test_residual_scale_reads_the_asked_layers_and_floors_flat_dimensions():
    generator = torch.Generator().manual_seed(1)
    acts = _randn(50, 3, 4, generator=generator)
    acts[:, :, 3] = 7.0  # a dimension with no spread
    scale = residual_scale(_set(acts, layers=(2, 5, 9)), [9, 2], 4)
    expected = acts.std(dim=0)[[2, 0]]
    torch.testing.assert_close(scale[:, :3], expected[:, :3])
    assert bool((scale[:, 3] > 0).all()) and float(scale[:, 3].max()) < 1e-5
    with pytest.raises(ValueError, match=r"scale has shape \(3, 4\), expected \(2, 4\)"):
        residual_scale(torch.ones(3, 4), [0, 1], 4)


# ---------------------------------------------------------------- bootstrap intervals


def _sample_cosines(u: ContrastVector, v: ContrastVector, slot: int) -> np.ndarray:
    return _numpy_cosine(
        u.bootstrap[:, slot].double().numpy(), v.bootstrap[:, slot].double().numpy()
    )


def _noisy_pair(n_bootstrap=400):
    generator = torch.Generator().manual_seed(2)
    a, b, c, d = (_randn(30, 2, 16, generator=generator) for _ in range(4))
    shared = _randn(2, 16, generator=generator)  # a common direction, estimated from disjoint sets
    u = contrast_vector(_set(a + shared), _set(b), n_bootstrap=n_bootstrap, seed=1)
    v = contrast_vector(_set(c + shared), _set(d), n_bootstrap=n_bootstrap, seed=2)
    return u, v


def test_percentile_interval_is_the_percentiles_of_paired_sample_cosines():
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


def test_standardized_interval_uses_the_same_fixed_scale_for_every_sample():
    u, v = _noisy_pair(n_bootstrap=200)
    scale = _set(_randn(40, 2, 16, generator=torch.Generator().manual_seed(3)) * 3.0)
    result = cosine_by_layer(u, v, scale=scale, level=0.8, interval="percentile")
    std = scale.std().double().numpy()
    for slot in range(2):
        samples = _numpy_cosine(
            u.bootstrap[:, slot].double().numpy() / std[slot],
            v.bootstrap[:, slot].double().numpy() / std[slot],
        )
        low, high = np.percentile(samples, [10, 90])
        assert float(result.standardized_ci[0, slot]) == pytest.approx(low, abs=1e-5)
        assert float(result.standardized_ci[1, slot]) == pytest.approx(high, abs=1e-5)


def test_basic_interval_covers_the_true_cosine_where_the_percentile_interval_fails():
    """Repeated experiments with a known true cosine of 0.6: count how often each interval holds it."""
    generator = torch.Generator().manual_seed(0)
    d_model = 16
    u_true = torch.nn.functional.normalize(_randn(1, d_model, generator=generator), dim=-1)
    w = _randn(1, d_model, generator=generator)
    w = torch.nn.functional.normalize(w - (w * u_true).sum() * u_true, dim=-1)
    v_true = 0.6 * u_true + 0.8 * w
    covered = {"basic": 0, "percentile": 0}
    for rep in range(100):
        a, b, c, d = (_randn(30, 1, d_model, generator=generator) for _ in range(4))
        u = contrast_vector(_set(a + 2 * u_true), _set(b), n_bootstrap=200, seed=2 * rep)
        v = contrast_vector(_set(c + 2 * v_true), _set(d), n_bootstrap=200, seed=2 * rep + 1)
        for method in covered:
            low, high = cosine_by_layer(u, v, level=0.9, interval=method).raw_ci[:, 0]
            covered[method] += int(low <= 0.6 <= high)
    assert covered["basic"] >= 70  # measured 80 of 100 at a nominal 90
    assert covered["basic"] >= covered["percentile"] + 15  # measured 52


def test_bootstrap_interval_refuses_bad_settings():
    samples, estimate = torch.zeros(10, 2), torch.zeros(2)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        bootstrap_interval(samples, estimate, level=1.0)
    with pytest.raises(ValueError, match="'basic' or 'percentile'"):
        bootstrap_interval(samples, estimate, method="bca")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the null band


def test_null_band_matches_a_simulation_of_random_directions():
    generator = torch.Generator().manual_seed(0)
    for d_model in (640, 16):
        u, v = (
            _randn(20000, d_model, generator=generator),
            _randn(20000, d_model, generator=generator),
        )
        cos = cosine(u, v).numpy()
        assert cos.std() == pytest.approx(1 / math.sqrt(d_model), rel=0.03)
        for level in (0.9, 0.95, 0.99):
            assert null_band(d_model, level=level) == pytest.approx(
                np.quantile(np.abs(cos), level), rel=0.04
            )
        inside = np.mean(np.abs(cos) < null_band(d_model))
        assert inside == pytest.approx(0.954, abs=0.012 if d_model == 640 else 0.03)
    assert null_band(640) == pytest.approx(0.0790569, abs=1e-6)
    with pytest.raises(ValueError, match="d_model >= 2"):
        null_band(1)


# ---------------------------------------------------------------- refused input


def test_cosine_refuses_nan_zero_and_mismatched_vectors():
    with pytest.raises(ValueError, match="NaN"):
        cosine_by_layer(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="vector is zero"):
        cosine(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="mismatched vectors"):
        cosine_by_layer(torch.ones(2, 4), torch.ones(2, 5))
    generator = torch.Generator().manual_seed(4)
    u = contrast_vector(
        _set(_randn(3, 2, 4, generator=generator)), _set(_randn(3, 2, 4, generator=generator))
    )
    v = contrast_vector(
        _set(_randn(3, 2, 4, generator=generator), layers=(0, 5)),
        _set(_randn(3, 2, 4, generator=generator), layers=(0, 5)),
    )
    with pytest.raises(ValueError, match=r"layers \(0, 1\) vs \(0, 5\)"):
        cosine_by_layer(u, v)
    with pytest.raises(ValueError, match=r"lacks layer\(s\) \[1\]"):
        cosine_by_layer(u, u, scale=_set(_randn(5, 1, 4, generator=generator)))
    with pytest.raises(ValueError, match=r"layers \(3, 4\) disagree"):
        cosine_by_layer(u, u, layers=[3, 4])


# ---------------------------------------------------------------- the table


def test_perpendicularity_table_rows_are_json_ready_and_match_cosine_by_layer():
    generator = torch.Generator().manual_seed(5)
    en, loc = {}, {}
    for lang in ("ko", "zh"):
        en[lang] = contrast_vector(
            _set(_randn(9, 3, 8, generator=generator) + 1), _set(_randn(9, 3, 8, generator=generator)),
            n_bootstrap=50, lang=lang, split="fit",
        )  # fmt: skip
        loc[lang] = contrast_vector(
            _set(_randn(9, 3, 8, generator=generator) - 1), _set(_randn(9, 3, 8, generator=generator)),
            n_bootstrap=50, lang=lang,
        )  # fmt: skip
    scale = _set(_randn(40, 3, 8, generator=generator))
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
    assert (row["model_id"], row["split"], row["n_bootstrap"], row["interval"]) == (
        "toy", "fit", 50, "basic",
    )  # fmt: skip
    unscaled = perpendicularity_table(en, loc)
    assert all(r["cos_std"] is None and r["std_ci_low"] is None for r in unscaled)
    with pytest.raises(ValueError, match="no language has both"):
        perpendicularity_table(en, {"fa": loc["ko"]})
