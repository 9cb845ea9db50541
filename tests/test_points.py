"""Points: every steering and the unsteered model scored per item in one engine call (tiny model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import parse_target
from lens_steer.data.targets import target_items
from lens_steer.evaluate import points as points_module
from lens_steer.evaluate.points import (
    UNSTEERED,
    PointSet,
    ScoringSettings,
    build_tasks,
    evaluate_points,
)
from lens_steer.steering import single_layer_steering

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = ScoringSettings(
    metrics=("transfer", "localization"), calibrations=("sum", "per_token", "pmi"), n_bootstrap=100
)


@pytest.fixture(scope="module")
def items(tiny_language):
    return target_items(load_jsonl(tiny_language), parse_target("zz"))


def direction(seed: int, norm: float = 30.0) -> torch.Tensor:
    vector = torch.randn(32, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm() * norm


@pytest.fixture(scope="module")
def scored(tiny_model, items) -> PointSet:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steerings = {
            "zero@1": single_layer_steering(direction(1), 1, 0.0),
            "zero@3": single_layer_steering(direction(2), 3, 0.0),
            "push@1": single_layer_steering(direction(3), 1, 1.0),
        }
        return evaluate_points(tiny_model, items, "eval", steerings, SETTINGS, show_progress=False)
    finally:
        torch.set_num_threads(threads)


def test_every_point_has_rows_for_every_metric_variant(scored, items):
    assert set(scored.points) == {UNSTEERED, "zero@1", "zero@3", "push@1"}
    variants = {f"{m}{c}" for m in ("transfer", "localization") for c in ("", ":per_token", ":pmi")}
    assert set(scored.metrics) == variants
    n_facts = len(items.of("facts", "eval"))
    n_local = len(items.of("localization", "eval"))
    for point in scored.points.values():
        assert set(point.rows) == variants == set(point.scores)
        assert all(len(point.rows[f"transfer{c}"]) == n_facts for c in ("", ":per_token", ":pmi"))
        assert len(point.rows["localization"]) == n_local
    assert scored.target == "zz:Testland" and scored.split == "eval" and scored.unmeasured == {}
    assert scored.settings["model_id"] == "tiny-random" and scored.settings["n_bootstrap"] == 100


def test_alpha_zero_changes_no_item_of_any_metric(scored):
    base = scored[UNSTEERED].rows
    for key in ("zero@1", "zero@3"):
        for variant, rows in scored[key].rows.items():
            for row, reference in zip(rows, base[variant], strict=True):
                assert row.item == reference.item
                delta = row.margin - reference.margin
                assert delta == 0.0 or (math.isnan(row.margin) and math.isnan(reference.margin))
                assert row.outcome == reference.outcome or math.isnan(row.outcome)


def test_a_real_push_moves_margins(scored):
    moved = [
        abs(row.margin - base.margin)
        for row, base in zip(
            scored["push@1"].rows["localization"],
            scored[UNSTEERED].rows["localization"],
            strict=True,
        )
    ]
    assert max(moved) > 1e-3


def direct_logprob(model, prompt: str, continuation: str) -> float:
    """log p(continuation | prompt) from one plain forward pass, tokenized by hand."""
    tokenizer = model.tokenizer
    prompt_ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    cont_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    tokens = torch.tensor([prompt_ids + cont_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(tokens).double(), dim=-1)[0]
    return float(sum(logprobs[len(prompt_ids) - 1 + i, t] for i, t in enumerate(cont_ids)))


def test_unsteered_margins_equal_a_hand_computed_forward(tiny_model, scored, items):
    rows = {row.item: row for row in scored[UNSTEERED].rows["localization"]}
    for item in items.of("localization", "eval"):
        local = direct_logprob(tiny_model, item.implicit, " " + item.local_answer)
        us = direct_logprob(tiny_model, item.implicit, " " + item.us_answer)
        explicit = [
            direct_logprob(tiny_model, item.explicit, " " + a)
            for a in (item.local_answer, item.us_answer)
        ]
        row = rows[item.id]
        assert row.margin == pytest.approx(local - us, abs=1e-4)
        assert row.outcome == float(local > us)
        assert row.reference == pytest.approx(explicit[0] - explicit[1], abs=1e-4)


def test_english_known_filter_of_transfer_against_a_hand_computed_forward(
    tiny_model, scored, items
):
    english = items.english_versions("facts")
    for row in scored[UNSTEERED].rows["transfer"]:
        fact = next(f for f in items.facts if f.id == row.item)
        reference = english[fact.group]
        values = [direct_logprob(tiny_model, reference.prompt, " " + o) for o in reference.options]
        known = values[0] > max(values[1:])
        assert row.included == known
        assert row.reference_outcome == float(known)
        assert math.isnan(row.margin) != known  # unknown facts are not scored at all
    assert (
        0
        < sum(r.included for r in scored[UNSTEERED].rows["transfer"])
        < len(items.of("facts", "eval"))
    )  # the fixture has both kinds, so the filter is exercised


def test_steered_rows_equal_the_naive_hooked_forward(tiny_model, items, scored):
    naive = evaluate_points(
        tiny_model,
        items,
        "eval",
        {"push@1": single_layer_steering(direction(3), 1, 1.0)},
        ScoringSettings(
            metrics=SETTINGS.metrics,
            calibrations=SETTINGS.calibrations,
            n_bootstrap=100,
            method="naive",
        ),
        show_progress=False,
    )
    for variant, rows in scored["push@1"].rows.items():
        fast = np.asarray([r.margin for r in rows])
        slow = np.asarray([r.margin for r in naive["push@1"].rows[variant]])
        np.testing.assert_allclose(fast, slow, atol=1e-4, equal_nan=True)


def test_references_are_scored_once_unsteered(scored):
    for variant in ("transfer", "localization:per_token"):
        base = [r.reference for r in scored[UNSTEERED].rows[variant]]
        steered = [r.reference for r in scored["push@1"].rows[variant]]
        assert steered == base


def test_one_engine_call_scores_only_the_kept_requests(tiny_model, items, monkeypatch):
    calls = []
    real = points_module.score_steerings

    def spy(model, requests, steerings, **kwargs):
        calls.append(([r.id for r in requests], list(steerings)))
        return real(model, requests, steerings, **kwargs)

    monkeypatch.setattr(points_module, "score_steerings", spy)
    steerings = {
        "a": single_layer_steering(direction(5), 2, 1.0),
        "b": single_layer_steering(direction(6), 0, 1.0),
    }
    result = evaluate_points(tiny_model, items, "eval", steerings, SETTINGS, show_progress=False)
    (reference_ids, reference_keys), (request_ids, keys) = calls
    assert reference_keys == [UNSTEERED]  # references: once, unsteered
    assert keys == [UNSTEERED, "a", "b"]  # every steering in the same call
    known = [r.item for r in result[UNSTEERED].rows["transfer"] if r.included]
    facts = [i for i in request_ids if i.startswith("fact-")]
    assert facts == known  # unknown facts are never scored
    assert "transfer:neutral:zz" in request_ids and "localization:neutral:zz" in request_ids


def test_the_unsteered_key_is_reserved(tiny_model, items):
    steering = single_layer_steering(direction(1), 1, 1.0)
    with pytest.raises(ValueError, match="'unsteered' is reserved"):
        evaluate_points(tiny_model, items, "eval", {UNSTEERED: steering}, SETTINGS)


def test_metrics_without_items_are_reported_and_none_at_all_is_an_error(tiny_model, items):
    settings = ScoringSettings(metrics=("localization", "gap_closure"), n_bootstrap=100)
    tasks, unmeasured = build_tasks(items, "eval", settings.metrics)
    assert set(tasks) == {"localization"}
    assert "no BLEnD items with a gold answer" in unmeasured["gap_closure"]
    result = evaluate_points(tiny_model, items, "eval", {}, settings, show_progress=False)
    assert result.unmeasured == unmeasured and "gap_closure" not in result[UNSTEERED].scores
    blend_only = ScoringSettings(metrics=("gap_closure", "blend_localization"))
    with pytest.raises(ValueError, match=r"zz:Testland: no metric can be measured in split 'eval'"):
        evaluate_points(tiny_model, items, "eval", {}, blend_only)


def test_point_json_holds_scores_and_steering_not_rows(scored):
    obj = scored["push@1"].to_json()
    assert set(obj) == {"key", "steering", "scores"}
    assert obj["steering"]["terms"][0]["layer"] == 1
    assert set(obj["scores"]) == set(scored.metrics)
    assert scored[UNSTEERED].to_json()["steering"] is None
    assert obj["scores"]["transfer"]["settings"]["calibration"] == "sum"
    assert obj["scores"]["transfer:pmi"]["settings"]["calibration"] == "pmi"
