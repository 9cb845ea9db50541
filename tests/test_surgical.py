"""Surgical grid search: Pareto frontier on hand cases, dev choice, eval re-scoring."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_scores import LOCALIZATION, TRANSFER
from test_sweep import random_vectors

from lens_steer.data import limit_probe_set
from lens_steer.data.records import ParallelItem, ProbeSet, TransferItem
from lens_steer.evaluate.plane import Plane, PlanePoint, plane_points
from lens_steer.evaluate.scores import Score, localization_score, transfer_score
from lens_steer.evaluate.study import dominance, steering_study
from lens_steer.evaluate.surgical import (
    SurgicalSearch,
    criterion_value,
    pareto_frontier,
    surgical_search,
)
from lens_steer.steering import surgical_steering
from lens_steer.tokens import encode


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(0.5, 0.5)], [0]),
        ([(0.1, 0.9), (0.9, 0.1), (0.5, 0.5), (0.4, 0.4)], [0, 2, 1]),
        ([(0.5, 0.5), (0.5, 0.5), (0.5, 0.6)], [2]),  # equal x: the higher y dominates
        ([(0.3, 0.3), (0.3, 0.3)], [0]),  # duplicates: the first is kept
        ([(0.2, 0.2), (0.4, 0.4), (0.6, 0.6)], [2]),  # a chain: only the top survives
        ([(0.6, 0.2), (0.6, 0.2), (0.2, 0.6), (0.5, 0.1)], [2, 0]),
    ],
)
def test_pareto_frontier_hand_cases(points, expected):
    assert pareto_frontier(points) == expected


def test_criterion_values_by_hand():
    assert criterion_value(0.7, 0.4, (0.5, 0.5), "sum_gain") == pytest.approx(0.1)
    assert criterion_value(0.6, 0.3, (0.0, 0.0), "harmonic_mean") == pytest.approx(0.4)
    assert criterion_value(0.0, 0.0, (0.0, 0.0), "harmonic_mean") == 0.0
    with pytest.raises(ValueError, match="Unknown criterion 'max'"):
        criterion_value(0.1, 0.1, (0, 0), "max")  # type: ignore[arg-type]


KO_TRANSFER = [item for item in TRANSFER if item.lang == "ko"]
ITEMS_T = [replace(item, split="eval") for item in KO_TRANSFER] + [
    replace(item, id=item.id + "-dev", split="dev") for item in KO_TRANSFER
]
ITEMS_L = list(LOCALIZATION) + [
    replace(item, id=item.id + "-dev", split="dev") for item in LOCALIZATION
]
NORMS = [10.0, 20.0, 30.0, 40.0]


@pytest.fixture(scope="module")
def search(tiny_model) -> SurgicalSearch:
    return surgical_search(
        tiny_model, ITEMS_T, ITEMS_L, random_vectors(tiny_model, 1, "en"),
        random_vectors(tiny_model, 2, "loc"), transfer_layers=[0, 1, 2], transfer_alphas=[0.5, 2.0],
        local_layers=[1, 3], local_alphas=[1.0, 3.0], reference_norms=NORMS, n_bootstrap=50,
        show_progress=False,
    )  # fmt: skip


def test_grid_respects_layer_order_and_includes_single_layer_baselines(search):
    surgical = [p for p in search.dev_points if p.kind == "surgical"]
    # (l_T, l_L) pairs with l_T < l_L: (0,1) (0,3) (1,3) (2,3) -> 4 pairs x 2 x 2 alphas.
    assert len(surgical) == 16
    assert all(p.transfer_layer < p.local_layer for p in surgical)
    assert sum(p.kind == "en" for p in search.dev_points) == 3 * 2
    assert sum(p.kind == "loc" for p in search.dev_points) == 2 * 2
    assert all(p.transfer.settings["split"] == "dev" for p in search.dev_points)


def test_frontier_is_the_dev_pareto_set_rescored_on_eval(search):
    dev = {p.key: p for p in search.dev_points if p.kind == "surgical"}
    frontier_keys = [p.key for p in search.frontier]
    for key in frontier_keys:  # nothing on dev dominates a frontier point
        t, loc = dev[key].transfer.value, dev[key].localization.value
        assert not any(
            o.transfer.value >= t and o.localization.value >= loc
            and (o.transfer.value > t or o.localization.value > loc)
            for o in dev.values()
        )  # fmt: skip
    for key, point in dev.items():  # everything else is dominated or a duplicate
        if key not in frontier_keys:
            assert any(
                dev[f].transfer.value >= point.transfer.value
                and dev[f].localization.value >= point.localization.value
                for f in frontier_keys
            )
    assert all(p.transfer.settings["split"] == "eval" for p in search.frontier)


def test_eval_scores_equal_the_hooked_scoring_path(search, tiny_model):
    point = search.best
    en, loc = random_vectors(tiny_model, 1, "en"), random_vectors(tiny_model, 2, "loc")
    steering = surgical_steering(
        en.at_layer(point.transfer_layer), point.transfer_layer, point.transfer_alpha,
        loc.at_layer(point.local_layer), point.local_layer, point.local_alpha,
        en_reference_norm=NORMS[point.transfer_layer], loc_reference_norm=NORMS[point.local_layer],
    )  # fmt: skip
    t = transfer_score(tiny_model, ITEMS_T, steering, n_bootstrap=50, show_progress=False)
    loc_score = localization_score(
        tiny_model, ITEMS_L, steering, n_bootstrap=50, show_progress=False
    )
    assert (point.transfer.value, point.localization.value) == (t.value, loc_score.value)
    assert (point.transfer.ci_low, point.transfer.ci_high) == (t.ci_low, t.ci_high)


def test_best_maximizes_the_sum_of_gains_on_dev(search):
    base = (search.dev_unsteered[0].value, search.dev_unsteered[1].value)

    def gain(p):
        return p.transfer.value - base[0] + p.localization.value - base[1]

    dev = [p for p in search.dev_points if p.kind == "surgical"]
    best_dev = next(p for p in dev if p.key == search.best.key)
    assert gain(best_dev) == max(gain(p) for p in dev)
    for kind in ("en", "loc"):
        single = [p for p in search.dev_points if p.kind == kind]
        chosen = next(p for p in single if p.key == search.best_single[kind].key)
        assert gain(chosen) == max(gain(p) for p in single)
        assert search.best_single[kind].transfer.settings["split"] == "eval"


def test_search_round_trips_through_json(search):
    assert SurgicalSearch.from_json(json.loads(json.dumps(search.to_json()))) == search


def test_empty_grid_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="surgical grid is empty"):
        surgical_search(
            tiny_model, ITEMS_T, ITEMS_L, random_vectors(tiny_model, 1, "en"),
            random_vectors(tiny_model, 2, "loc"), transfer_layers=[3], transfer_alphas=[1.0],
            local_layers=[1], local_alphas=[1.0], reference_norms=NORMS, include_single=False,
            show_progress=False,
        )  # fmt: skip


# --- the plane (assembled from the search) -----------------------------------------------

ENGLISH = [item for item in TRANSFER if item.lang == "en"] + [
    TransferItem("t3-en", "t3", "en", "eval", "geo", "Color of the sky?", ("blue", "red"), 0)
]


@pytest.fixture(scope="module")
def plane(tiny_model, search):
    return plane_points(
        tiny_model, ITEMS_T, ITEMS_L, ENGLISH, search, n_bootstrap=50, show_progress=False
    )


def test_reference_points_equal_the_variant_scores(plane, tiny_model):
    common = {"n_bootstrap": 50, "show_progress": False}
    unsteered, english, explicit = (
        plane.point(k) for k in ("unsteered", "english_query", "explicit")
    )
    assert unsteered.transfer.value == transfer_score(tiny_model, ITEMS_T, **common).value
    assert unsteered.localization.value == localization_score(tiny_model, ITEMS_L, **common).value
    english_t = transfer_score(
        tiny_model, ITEMS_T, variant="english_query", english_items=ENGLISH, **common
    )
    assert english.transfer.value == english_t.value
    english_l = localization_score(tiny_model, ITEMS_L, variant="english_query", **common)
    assert english.localization.value == english_l.value
    explicit_l = localization_score(tiny_model, ITEMS_L, variant="explicit", **common)
    assert explicit.localization.value == explicit_l.value
    assert explicit.transfer == unsteered.transfer
    assert unsteered.steering is None and unsteered.group == "reference"


def test_plane_holds_single_layer_bests_and_the_frontier_by_transfer(plane, search):
    assert plane.point("best_en").steering == search.best_single["en"].steering
    assert plane.point("best_loc").localization == search.best_single["loc"].localization
    surgical = plane.group("surgical")
    assert len(surgical) == len(search.frontier) + (
        search.best.key not in {p.key for p in search.frontier}
    )
    xs = [
        p.transfer.value
        for p in surgical
        if p.label.startswith("surgical_") and "best" not in p.label
    ]
    assert xs == sorted(xs)
    row = plane.point("unsteered").to_json()
    assert row["transfer_ci"] == [
        row["scores"]["transfer"]["ci_low"],
        row["scores"]["transfer"]["ci_high"],
    ]
    assert Plane.from_json(json.loads(json.dumps(plane.to_json()))) == plane


def test_plane_refuses_a_search_of_another_language(tiny_model, search):
    other = [replace(item, lang="id") for item in ITEMS_T]
    with pytest.raises(ValueError, match="search is for 'ko', the items for 'id'"):
        plane_points(
            tiny_model, other, [replace(i, lang="id") for i in ITEMS_L], ENGLISH, search,
            n_bootstrap=0, show_progress=False,
        )  # fmt: skip


# --- the whole steering study (vectors -> sweep -> surgical -> plane) on the tiny model ----


def tiny_probe_set() -> ProbeSet:
    sentences = {
        "en": ["The river is long.", "I like green tea.", "The door is open.", "Birds can fly."],
        "ko": ["강은 길다.", "나는 녹차를 좋아한다.", "문이 열려 있다.", "새는 날 수 있다."],
    }
    parallel = [
        ParallelItem(f"p{g}-{lang}", f"p{g}", lang, "fit", text)
        for lang, texts in sentences.items()
        for g, text in enumerate(texts)
    ]
    transfer = [
        replace(item, id=f"{item.id}-{split}", group=f"{item.group}-{split}", split=split)
        for split in ("dev", "eval")
        for item in TRANSFER
        if item.group != "t3"
    ]
    localization = [
        replace(item, id=f"{item.id}-{split}", split=split)
        for split in ("fit", "dev", "eval")
        for item in LOCALIZATION
    ]
    return ProbeSet(transfer, localization, parallel, version="tiny")


def test_steering_study_runs_every_step_and_records_settings(tiny_model):
    probe = tiny_probe_set()
    study = steering_study(
        tiny_model, probe, ["ko"], alphas=(0.5,), transfer_layers=[1], transfer_alphas=(0.5,),
        local_layers=[2, 3], local_alphas=(1.0,), n_bootstrap=20, show_progress=False,
    )  # fmt: skip
    # Relative alphas refer to the mean last-token resid_post norm of the Korean fit sentences.
    prompts = [item.text for item in probe.parallel if item.lang == "ko"]
    expected = []
    for layer in range(tiny_model.cfg.n_layers):
        norms = []
        for prompt in prompts:
            _, cache = tiny_model.run_with_cache(torch.tensor([encode(tiny_model, prompt)]))
            norms.append(cache[f"blocks.{layer}.hook_resid_post"][0, -1].norm().item())
        expected.append(float(np.mean(norms)))
    assert study.reference_norms["ko"] == pytest.approx(expected, rel=1e-4)
    sweep = study.sweeps["ko"]
    assert len(sweep.points) == 2 * 4 and sweep.settings["split"] == "eval"
    term = sweep.curve("en", 0.5)[2].steering["terms"][0]
    assert term["effective_norm"] == pytest.approx(0.5 * expected[2], rel=1e-4)
    assert term["provenance"]["kind"] == "en" and term["provenance"]["split"] == "fit"
    assert {p.key for p in study.searches["ko"].dev_points if p.kind == "surgical"} == {
        "en@1:0.5+loc@2:1", "en@1:0.5+loc@3:1"
    }  # fmt: skip
    labels = [p.label for p in study.planes["ko"].points]
    assert labels[:5] == ["unsteered", "english_query", "explicit", "best_en", "best_loc"]
    summary = study.summary()["ko"]
    assert summary["peaks"]["en_transfer"]["layer"] == sweep.peak("en", "transfer").layer
    assert {d["point"] for d in summary["dominance"]} == {"best_en", "best_loc"}
    text = json.dumps(study.to_json(), allow_nan=False)
    assert set(study.costs) == {"fit_vectors", "sweep_ko", "surgical_ko", "plane_ko"}
    assert '"probe_version": "tiny"' in text


def test_limit_cuts_transfer_by_group_and_keeps_the_fit_split():
    probe = tiny_probe_set()
    limited = limit_probe_set(probe, 1, splits=["dev", "eval"])
    groups = {item.group for item in limited.transfer}
    assert groups == {"t1-dev", "t1-eval"}  # both languages of each kept group
    assert len(limited.transfer) == 4
    assert [i.split for i in limited.localization].count("fit") == 2
    assert [i.split for i in limited.localization].count("dev") == 1


def test_dominance_by_point_estimate_and_by_disjoint_interval():
    def point(label: str, t: float, loc: float, half: float = 0.1) -> PlanePoint:
        return PlanePoint(
            label, "surgical", Score(t, t - half, t + half, 10, "t"),
            Score(loc, loc - half, loc + half, 10, "l"),
        )  # fmt: skip

    single = point("best_en", 0.5, 0.5)
    frontier = [
        point("a", 0.6, 0.5, 0.05),
        point("b", 0.8, 0.6),
        point("c", 0.9, 0.4),
        point("d", 0.5, 0.5),
    ]
    result = dominance(single, frontier)
    assert result == {
        "point": "best_en",
        "dominated_by": ["a", "b"],
        "dominated_with_disjoint_interval_by": ["b"],
    }
