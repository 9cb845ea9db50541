"""Layer sweeps: grid keys, random-direction controls, doses and resumable checkpoints (tiny model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import parse_target
from lens_steer.data.targets import target_items
from lens_steer.evaluate import engine
from lens_steer.evaluate.points import UNSTEERED, ScoringSettings, evaluate_points
from lens_steer.evaluate.summary import summarize_sweep
from lens_steer.evaluate.sweep import (
    LayerSweep,
    SweepSettings,
    control_key,
    layer_sweep,
    point_key,
    random_direction,
)
from lens_steer.steering import single_layer_steering

pytestmark = pytest.mark.usefixtures("one_thread")

SCORING = ScoringSettings(
    metrics=("transfer", "localization"), calibrations=("sum",), n_bootstrap=100, batch_size=8
)
NORMS = [180.0, 250.0, 325.0, 375.0]  # about the tiny model's mean residual norm per layer


@dataclass
class Fixed:
    """Per-layer vectors with a provenance: what a sweep needs of a ContrastVector."""

    vectors: torch.Tensor
    provenance: dict[str, Any] = field(default_factory=dict)

    def at_layer(self, layer: int) -> torch.Tensor:
        return self.vectors[layer]


def fixed(seed: int, norm: float = 40.0) -> Fixed:
    vectors = torch.randn(4, 32, generator=torch.Generator().manual_seed(seed))
    return Fixed(vectors / vectors.norm(dim=1, keepdim=True) * norm, {"kind": f"seed{seed}"})


@pytest.fixture(scope="module")
def items(tiny_language):
    return target_items(load_jsonl(tiny_language), parse_target("zz"))


@pytest.fixture(scope="module")
def kl_prompts(items):
    return [item.text for item in items.of("parallel", "eval")]


@pytest.fixture(scope="module")
def sweep(tiny_model, items, kl_prompts) -> LayerSweep:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = SweepSettings(
            layers=(1, 3), alphas=(0.5, 1.0), n_controls=2, control_alphas=(1.0,), seed=5
        )
        vectors = {"en": fixed(0), "loc": fixed(1), "zero": Fixed(torch.zeros(4, 32))}
        return layer_sweep(
            tiny_model,
            items,
            vectors,
            settings,
            SCORING,
            reference_norms=NORMS,
            kl_prompts=kl_prompts,
            show_progress=False,
        )
    finally:
        torch.set_num_threads(threads)


def test_grid_has_every_method_layer_and_alpha(sweep):
    expected = [
        point_key(m, layer, a)
        for m in ("en", "loc", "zero")
        for layer in (1, 3)
        for a in (0.5, 1.0)
    ]
    assert [p.key for p in sweep.grid] == expected
    assert expected[0] == "en@1:0.5" and expected[1] == "en@1:1"
    assert sweep.methods == ("en", "loc", "zero")
    assert sweep.layers == (1, 3) and sweep.alphas == (0.5, 1.0)
    assert [p.layer for p in sweep.curve("loc", 1.0)] == [1, 3]
    with pytest.raises(KeyError, match="no sweep points for method 'en' and alpha 2"):
        sweep.curve("en", 2.0)
    assert sweep.target == "zz:Testland" and sweep.split == "eval"


def test_controls_run_at_the_configured_alphas_only(sweep):
    for point in sweep.grid:
        if point.alpha == 1.0:
            assert point.controls == tuple(
                control_key(point.method, point.layer, 1.0, i) for i in range(2)
            )
        else:
            assert point.controls == ()
    controls = [key for key in sweep.points.points if key.startswith("random:")]
    assert len(controls) == 3 * 2 * 2  # methods x layers x controls, at alpha 1 only
    assert control_key("en", 3, 1.0, 1) == "random:en@3:1#1"
    assert set(sweep.points.points) == {UNSTEERED, *(p.key for p in sweep.grid), *controls}
    assert SweepSettings(layers=(1,), n_controls=0).controlled(1.0) is False
    assert SweepSettings(layers=(1,), alphas=(1.0, 2.0)).controlled(2.0) is True  # default: all


def test_doses_record_the_added_norm_and_its_ratio(sweep):
    vectors = {"en": fixed(0).vectors, "loc": fixed(1).vectors, "zero": torch.zeros(4, 32)}
    for point in sweep.grid:
        norm = float(vectors[point.method][point.layer].double().norm())
        assert point.added_norm == pytest.approx(point.alpha * norm, rel=1e-6)
        if point.method != "zero":
            assert point.norm_ratio == pytest.approx(point.added_norm / NORMS[point.layer])
        for name in point.controls:  # a control adds a random direction of the same norm
            (term,) = sweep.points[name].steering["terms"]
            assert term["effective_norm"] == pytest.approx(point.added_norm, rel=1e-5)
            assert term["layer"] == point.layer


def test_next_token_kl_is_recorded_non_negative_and_zero_for_the_zero_vector(sweep):
    for point in sweep.grid:
        assert point.kl is not None and point.kl >= 0.0
        if point.method == "zero":
            assert point.kl == pytest.approx(0.0, abs=1e-6)
        else:
            assert point.kl > 1e-6
        if point.controls:
            assert point.control_kl is not None and point.control_kl >= 0.0
        else:
            assert point.control_kl is None
    assert sweep.settings["kl_prompts"] == 3


def test_next_token_kl_against_a_hand_computation(tiny_model, kl_prompts, sweep):
    point = next(p for p in sweep.grid if p.key == "en@1:1")
    steering = single_layer_steering(fixed(0).vectors[1], 1, 1.0)
    values = []
    for text in kl_prompts:
        tokens = tiny_model.to_tokens(text)
        with torch.no_grad():
            clean = torch.log_softmax(tiny_model(tokens)[0, -1].double(), -1)
            with steering.apply(tiny_model):
                steered = torch.log_softmax(tiny_model(tokens)[0, -1].double(), -1)
        values.append(float((clean.exp() * (clean - steered)).sum()))
    assert point.kl == pytest.approx(float(np.mean(values)), rel=1e-3, abs=1e-6)


def test_a_control_equals_steering_with_its_random_vector(tiny_model, items, sweep):
    point = next(p for p in sweep.grid if p.key == "loc@3:1")
    name = point.controls[1]
    vector = random_direction(32, point.added_norm, seed=5, name=name)
    plain = evaluate_points(
        tiny_model,
        items,
        "eval",
        {"mine": single_layer_steering(vector, 3, 1.0)},
        SCORING,
        show_progress=False,
    )
    for variant, rows in sweep.points[name].rows.items():
        mine = plain["mine"].rows[variant]
        assert [r.item for r in rows] == [r.item for r in mine]
        # The same engine path, so the same numbers, not merely close ones.
        np.testing.assert_array_equal([r.margin for r in rows], [r.margin for r in mine])
        np.testing.assert_array_equal([r.outcome for r in rows], [r.outcome for r in mine])


def test_controls_are_seeded_and_distinct():
    a = random_direction(32, 3.0, seed=0, name="random:en@1:1#0")
    assert torch.equal(a, random_direction(32, 3.0, seed=0, name="random:en@1:1#0"))
    assert float(a.norm()) == pytest.approx(3.0, rel=1e-6)
    for other in (
        random_direction(32, 3.0, seed=1, name="random:en@1:1#0"),
        random_direction(32, 3.0, seed=0, name="random:en@1:1#1"),
    ):
        assert not torch.allclose(a, other)


def test_relative_alphas_add_a_fraction_of_the_residual_norm(tiny_model, items):
    settings = SweepSettings(layers=(2,), alphas=(0.1,), alpha_mode="relative", n_controls=0)
    result = layer_sweep(
        tiny_model,
        items,
        {"en": fixed(0)},
        settings,
        SCORING,
        reference_norms=NORMS,
        show_progress=False,
    )
    (point,) = result.grid
    assert point.added_norm == pytest.approx(0.1 * NORMS[2], rel=1e-5)
    assert point.norm_ratio == pytest.approx(0.1, rel=1e-5) and point.kl is None
    assert "fraction of the mean residual norm" in result.settings["alpha_units"]
    with pytest.raises(ValueError, match="alpha_mode='relative' needs reference_norms"):
        layer_sweep(tiny_model, items, {"en": fixed(0)}, settings, SCORING)


@pytest.mark.parametrize(
    ("settings", "vectors", "message"),
    [
        (SweepSettings(layers=(1, 4)), {"en": fixed(0)}, r"\[4\] out of range .* 0\.\.3"),
        (SweepSettings(layers=()), {"en": fixed(0)}, "none out of range"),
        (SweepSettings(layers=(1,), alphas=()), {"en": fixed(0)}, "no alphas"),
        (SweepSettings(layers=(1,)), {}, "no vectors"),
    ],
)
def test_bad_sweeps_are_refused_before_scoring(tiny_model, items, settings, vectors, message):
    with pytest.raises(ValueError, match=message):
        layer_sweep(tiny_model, items, vectors, settings, SCORING)


def test_summary_reports_effects_and_net_of_controls(sweep):
    summary = summarize_sweep(sweep, ["transfer", "localization"], n_bootstrap=200)
    assert [p["key"] for p in summary["points"]] == [p.key for p in sweep.grid]
    controlled = next(p for p in summary["points"] if p["key"] == "en@3:1")
    entry = controlled["metrics"]["localization"]
    assert set(entry) >= {"score", "vs_unsteered", "control", "net_of_control", "control_scores"}
    assert len(entry["control_scores"]) == 2 and entry["vs_unsteered"]["n"] == 8
    uncontrolled = next(p for p in summary["points"] if p["key"] == "en@3:0.5")
    assert "net_of_control" not in uncontrolled["metrics"]["localization"]
    assert summary["settings"]["alpha_units"].startswith("fitted vector")


# --- checkpoints: a killed sweep resumes ------------------------------------------------------


def count_steered_chunks(monkeypatch, die_at: int | None = None) -> dict[str, int]:
    """Count the engine's steered chunks (more than one steering); optionally die at one."""
    real = engine._fast_chunk
    calls = {"n": 0}

    def chunk(model, prompts, settings):
        if len(settings) > 1:
            calls["n"] += 1
            if calls["n"] == die_at:
                raise KeyboardInterrupt("simulated kill in the middle of the sweep")
        return real(model, prompts, settings)

    monkeypatch.setattr(engine, "_fast_chunk", chunk)
    return calls


def test_a_killed_sweep_resumes_from_its_checkpoint(tiny_model, items, tmp_path, monkeypatch):
    settings = SweepSettings(layers=(1, 2), alphas=(1.0,), n_controls=1)
    vectors = {"en": fixed(0), "loc": fixed(1)}
    small = ScoringSettings(
        metrics=SCORING.metrics, calibrations=("sum",), n_bootstrap=100, batch_size=4
    )
    reference = layer_sweep(tiny_model, items, vectors, settings, small, show_progress=False)

    checkpoint = tmp_path / "sweep.ckpt.jsonl"
    calls = count_steered_chunks(monkeypatch, die_at=3)
    with pytest.raises(KeyboardInterrupt):
        layer_sweep(
            tiny_model, items, vectors, settings, small, checkpoint=checkpoint, show_progress=False
        )
    finished = checkpoint.read_text().splitlines()
    assert len(finished) == 1 + 2  # the header and the two chunks before the kill

    # Resume with another batch size: accepted (results are per request), finished requests
    # are read back instead of scored again.
    calls = count_steered_chunks(monkeypatch)
    larger = ScoringSettings(**{**small.to_json(), "batch_size": 16})
    resumed = layer_sweep(
        tiny_model, items, vectors, settings, larger, checkpoint=checkpoint, show_progress=False
    )
    n_requests = sum(1 for r in resumed.points[UNSTEERED].rows["transfer"] if r.included)
    n_requests += len(items.of("localization", "eval")) + 2  # and the two neutral requests
    assert calls["n"] == -(-(n_requests - 2 * 4) // 16)  # only the unfinished requests
    assert checkpoint.read_text().splitlines()[:3] == finished
    for key, point in reference.points.points.items():
        for variant, rows in point.rows.items():
            np.testing.assert_allclose(
                [r.margin for r in resumed.points[key].rows[variant]],
                [r.margin for r in rows],
                atol=1e-5,
                equal_nan=True,
            )

    calls = count_steered_chunks(monkeypatch)  # a finished checkpoint: nothing is scored again
    layer_sweep(
        tiny_model, items, vectors, settings, larger, checkpoint=checkpoint, show_progress=False
    )
    assert calls["n"] == 0


def test_a_checkpoint_of_other_settings_is_refused(tiny_model, items, tmp_path):
    checkpoint = tmp_path / "sweep.ckpt.jsonl"
    settings = SweepSettings(layers=(1,), alphas=(1.0,), n_controls=0)
    layer_sweep(
        tiny_model,
        items,
        {"en": fixed(0)},
        settings,
        SCORING,
        checkpoint=checkpoint,
        show_progress=False,
    )
    with pytest.raises(ValueError, match=r"different settings \(steerings\)"):
        layer_sweep(
            tiny_model,
            items,
            {"en": fixed(1)},
            settings,
            SCORING,
            checkpoint=checkpoint,
            show_progress=False,
        )
