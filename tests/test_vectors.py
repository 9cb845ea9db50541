"""contrast_vector and ContrastVector: mean differences by hand, the (paired) bootstrap, the kept
per-item differences and the save/load round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lens_steer.geometry import ContrastVector, contrast_vector
from lens_steer.residuals import ResidualSet

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only contend

HOOK = "blocks.{layer}.hook_resid_post"


def _set(acts, groups=(), layers=None, position="last", model="toy", lang="xx") -> ResidualSet:
    acts = torch.as_tensor(acts, dtype=torch.float32)
    n = acts.shape[0]
    return ResidualSet(
        acts, tuple(layers or range(acts.shape[1])), tuple(f"p{i}" for i in range(n)),
        (lang,) * n, HOOK, position, model, tuple(groups),
    )  # fmt: skip


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the vector


def test_contrast_vector_is_the_mean_difference_by_hand():
    a = _set([[[1.0, 2.0], [0.0, 4.0]], [[3.0, 0.0], [2.0, 2.0]]])  # 2 prompts, 2 layers, d=2
    b = _set([[[0.0, 1.0], [1.0, 1.0]], [[2.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 4.0]]])
    vector = contrast_vector(a, b, kind="custom", lang="xx", split="fit", name="toy")
    # layer 0: mean(a) = (2, 1), mean(b) = (1, 1); layer 1: mean(a) = (1, 3), mean(b) = (1, 2)
    torch.testing.assert_close(vector.vectors, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert vector.bootstrap is None and vector.differences is None
    assert vector.provenance == {
        "model_id": "toy", "hook_name": HOOK, "position": "last", "kind": "custom", "lang": "xx",
        "split": "fit", "n_a": 2, "n_b": 3, "paired": False, "n_bootstrap": 0, "seed": 0, "name": "toy",
    }  # fmt: skip
    torch.testing.assert_close(vector.at_layer(1), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(vector.norms(), torch.tensor([1.0, 1.0]))
    with pytest.raises(KeyError, match=r"layer 5 not in this vector's layers \(0, 1\)"):
        vector.at_layer(5)


def test_provenance_language_defaults_to_the_away_sets_single_language():
    a, b = _set(torch.ones(2, 1, 3), lang="en"), _set(torch.zeros(2, 1, 3), lang="ko")
    assert contrast_vector(a, b).provenance["lang"] == "ko"
    mixed = ResidualSet.concat([b, _set(torch.zeros(1, 1, 3), lang="zh")])
    assert contrast_vector(a, mixed).provenance["lang"] == ""


def test_paired_vector_keeps_the_per_item_differences():
    a, b = _randn(6, 3, 4, seed=0), _randn(6, 3, 4, seed=1)
    vector = contrast_vector(_set(a), _set(b), paired=True)
    assert vector.differences is not None
    torch.testing.assert_close(vector.differences, a - b, rtol=0, atol=0)
    torch.testing.assert_close(vector.differences.mean(dim=0), vector.vectors, rtol=1e-6, atol=1e-6)
    assert vector.provenance["paired"] is True


def test_repr_is_short_and_names_the_method_target_and_sizes():
    vector = contrast_vector(_set(_randn(5, 18, 640, seed=0)), _set(_randn(5, 18, 640, seed=1)),
                             n_bootstrap=3, kind="loc", lang="ko", split="fit")  # fmt: skip
    text = repr(vector)
    assert text == (
        "ContrastVector(loc, target=ko, layers 18 x d_model 640, n_a=5, n_b=5, split=fit, "
        "bootstrap=3)"
    )


# ---------------------------------------------------------------- the bootstrap


def test_unpaired_bootstrap_samples_are_differences_of_independently_resampled_means():
    a, b = _randn(7, 2, 5, seed=3), _randn(4, 2, 5, seed=4)
    vector = contrast_vector(_set(a), _set(b), n_bootstrap=3, seed=11)
    generator = torch.Generator().manual_seed(11)
    draws_a = torch.randint(7, (3, 7), generator=generator)
    draws_b = torch.randint(4, (3, 4), generator=generator)
    for sample in range(3):
        expected = a[draws_a[sample]].mean(dim=0) - b[draws_b[sample]].mean(dim=0)
        torch.testing.assert_close(vector.bootstrap[sample], expected, rtol=1e-5, atol=1e-6)


def test_paired_bootstrap_samples_are_means_of_resampled_differences():
    a, b = _randn(7, 2, 5, seed=3), _randn(7, 2, 5, seed=4)
    vector = contrast_vector(_set(a), _set(b), n_bootstrap=4, seed=11, paired=True)
    draws = torch.randint(7, (4, 7), generator=torch.Generator().manual_seed(11))
    for sample in range(4):
        rows = [int(i) for i in draws[sample]]
        expected = sum(a[i] - b[i] for i in rows) / 7
        torch.testing.assert_close(vector.bootstrap[sample], expected, rtol=1e-5, atol=1e-6)


def test_bootstrap_spread_matches_the_standard_error():
    a, b = _randn(200, 1, 8, seed=0) * 2.0, _randn(300, 1, 8, seed=1)
    vector = contrast_vector(_set(a), _set(b), n_bootstrap=2000, seed=1)
    expected_se = math.sqrt(4.0 / 200 + 1.0 / 300)
    spread = vector.bootstrap.std(dim=0)
    assert torch.allclose(spread, torch.full_like(spread, expected_se), rtol=0.12)
    torch.testing.assert_close(vector.bootstrap.mean(dim=0), vector.vectors, atol=0.01, rtol=0)


def test_pairing_removes_shared_item_noise_from_the_bootstrap():
    item = _randn(50, 1, 4, seed=0) * 10.0  # large per-item effect shared by both forms
    a, b = item + 1.0 + 0.1 * _randn(50, 1, 4, seed=1), item
    paired = contrast_vector(_set(a), _set(b), n_bootstrap=300, paired=True)
    unpaired = contrast_vector(_set(a), _set(b), n_bootstrap=300, paired=False)
    assert float(paired.bootstrap.std(dim=0).max()) < 0.05
    assert float(unpaired.bootstrap.std(dim=0).min()) > 1.0


def test_bootstrap_is_reproducible_from_its_seed():
    a, b = _set(_randn(6, 2, 3, seed=0)), _set(_randn(5, 2, 3, seed=1))
    first = contrast_vector(a, b, n_bootstrap=5, seed=4)
    assert torch.equal(first.bootstrap, contrast_vector(a, b, n_bootstrap=5, seed=4).bootstrap)
    assert not torch.equal(first.bootstrap, contrast_vector(a, b, n_bootstrap=5, seed=5).bootstrap)


# ---------------------------------------------------------------- refused input


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
    with pytest.raises(ValueError, match="n_bootstrap must be >= 0"):
        contrast_vector(a, a, n_bootstrap=-1)


def test_contrast_vector_value_refuses_inconsistent_shapes():
    with pytest.raises(ValueError, match=r"\[layer, d_model\] with 3 layers, got \(2, 4\)"):
        ContrastVector(torch.zeros(2, 4), (0, 1, 2))
    with pytest.raises(ValueError, match=r"differences shape \(5, 2, 3\) does not match"):
        ContrastVector(torch.zeros(2, 4), (0, 1), differences=torch.zeros(5, 2, 3))
    with pytest.raises(ValueError, match="bootstrap shape"):
        ContrastVector(torch.zeros(2, 4), (0, 1), bootstrap=torch.zeros(5, 4))


# ---------------------------------------------------------------- saving and loading


def test_save_load_round_trips_vectors_bootstrap_differences_and_provenance(tmp_path: Path):
    vector = contrast_vector(
        _set(_randn(5, 3, 4, seed=0)), _set(_randn(5, 3, 4, seed=1)), n_bootstrap=6, paired=True,
        kind="loc", lang="ko", split="fit",
    )  # fmt: skip
    paths = vector.save(tmp_path / "v")
    back = ContrastVector.load(tmp_path / "v.json")
    assert torch.equal(back.vectors, vector.vectors)
    assert torch.equal(back.bootstrap, vector.bootstrap)
    assert torch.equal(back.differences, vector.differences)
    assert back.layers == vector.layers and back.provenance == vector.provenance
    assert json.loads(paths["metadata"].read_text())["layers"] == [0, 1, 2]
    plain = contrast_vector(_set(_randn(2, 3, 4, seed=2)), _set(_randn(2, 3, 4, seed=3)))
    plain.save(tmp_path / "w")
    again = ContrastVector.load(tmp_path / "w")
    assert again.bootstrap is None and again.differences is None


def test_load_refuses_a_vector_file_paired_with_another_sidecar(tmp_path: Path):
    one = contrast_vector(_set(_randn(3, 2, 4, seed=0)), _set(_randn(3, 2, 4, seed=1)))
    two = contrast_vector(_set(_randn(3, 2, 4, seed=2)), _set(_randn(3, 2, 4, seed=3)))
    one.save(tmp_path / "one")
    two.save(tmp_path / "two")
    (tmp_path / "one.safetensors").write_bytes((tmp_path / "two.safetensors").read_bytes())
    with pytest.raises(ValueError, match="fingerprints differ"):
        ContrastVector.load(tmp_path / "one")
