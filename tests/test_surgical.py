"""Surgical Steering: the grid is scored and chosen on dev, only the choices are scored on eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import parse_target
from lens_steer.data.targets import TargetItems, target_items
from lens_steer.evaluate.points import UNSTEERED, ScoringSettings
from lens_steer.evaluate.surgical import (
    CRITERIA,
    SurgicalSearch,
    SurgicalSettings,
    axis_value,
    criterion_of,
    harmonic_mean,
    pareto_frontier,
    random_surgical,
    sum_gain,
    surgical_search,
)
from lens_steer.steering import surgical_steering

pytestmark = pytest.mark.usefixtures("one_thread")

SCORING = ScoringSettings(
    metrics=("transfer", "localization"), calibrations=("sum",), n_bootstrap=100
)


@dataclass
class Fixed:
    vectors: torch.Tensor
    provenance: dict[str, Any] = field(default_factory=dict)

    def at_layer(self, layer: int) -> torch.Tensor:
        return self.vectors[layer]


def fixed(seed: int, norm: float = 60.0) -> Fixed:
    vectors = torch.randn(4, 32, generator=torch.Generator().manual_seed(seed))
    return Fixed(vectors / vectors.norm(dim=1, keepdim=True) * norm, {"kind": f"seed{seed}"})


# --- pure parts ---------------------------------------------------------------------------------


def test_pareto_frontier_keeps_the_undominated_points_by_x():
    assert pareto_frontier([(0.5, 0.5), (0.6, 0.4), (0.4, 0.4), (0.5, 0.5), (0.2, 0.9)]) == [
        4,
        0,
        1,
    ]
    assert pareto_frontier([(0.1, 0.1), (0.9, 0.9), (0.5, 0.5)]) == [1]
    assert pareto_frontier([(0.3, 0.3)]) == [0]
    assert pareto_frontier([]) == []


def test_built_in_criteria_by_hand():
    base = {"transfer": 0.5, "localization": 0.5}
    assert sum_gain({"transfer": 0.7, "localization": 0.2}, base) == pytest.approx(-0.1)
    assert harmonic_mean({"transfer": 0.5, "localization": 1.0}, base) == pytest.approx(2 / 3)
    assert harmonic_mean({"transfer": 0.0, "localization": 1.0}, base) == 0.0
    assert set(CRITERIA) == {"sum_gain", "harmonic_mean"}
    mine = lambda values, base: 0.0  # noqa: E731
    assert criterion_of(mine) is mine and criterion_of("sum_gain") is sum_gain
    with pytest.raises(ValueError, match="unknown criterion 'best'; built in: sum_gain"):
        criterion_of("best")


def test_the_random_surgical_control_has_each_terms_norm_at_each_terms_layer():
    steering = surgical_steering(torch.ones(32), 1, 2.0, -torch.ones(32) * 3, 3, 0.5)
    control = random_surgical(steering, seed=0, name="random:x#0")
    assert [t.layer for t in control.terms] == [1, 3]
    for term, original in zip(control.terms, steering.terms, strict=True):
        assert term.effective_norm() == pytest.approx(original.effective_norm(), rel=1e-5)
        cosine = torch.nn.functional.cosine_similarity(term.vector, original.vector, dim=0)
        assert abs(float(cosine)) < 0.9  # a random direction, not the vector itself
    assert torch.equal(
        control.terms[0].vector,
        random_surgical(steering, seed=0, name="random:x#0").terms[0].vector,
    )


# --- a search on the fixture language -------------------------------------------------------------

SETTINGS = SurgicalSettings(
    transfer_layers=(1, 2),
    local_layers=(2, 3),
    transfer_alphas=(1.0,),
    local_alphas=(0.5, 1.0),
    axes=("transfer", "localization"),
    n_controls=2,
    seed=3,
)


@pytest.fixture(scope="module")
def items(tiny_language):
    return target_items(load_jsonl(tiny_language), parse_target("zz"))


@pytest.fixture(scope="module")
def search(tiny_model, items) -> SurgicalSearch:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return surgical_search(
            tiny_model,
            items,
            {"en": fixed(0), "loc": fixed(1)},
            SETTINGS,
            SCORING,
            show_progress=False,
        )
    finally:
        torch.set_num_threads(threads)


def test_the_grid_respects_the_layer_order_and_includes_single_layer_points(search):
    surgical = sorted(key for key in search.dev.points if "+" in key)
    assert surgical == sorted(
        f"en@{lt}:1+loc@{ll}:{a:g}" for lt in (1, 2) for ll in (2, 3) if lt < ll for a in (0.5, 1.0)
    )
    singles = sorted(k for k in search.dev.points if "+" not in k and k != UNSTEERED)
    assert singles == ["en@1:1", "en@2:1", "loc@2:0.5", "loc@2:1", "loc@3:0.5", "loc@3:1"]
    assert search.settings["n_grid_points"] == 6 and search.settings["n_single_points"] == 6
    steering = search.dev["en@1:1+loc@3:0.5"].steering
    assert [(t["name"], t["layer"], t["alpha"]) for t in steering["terms"]] == [
        ("en", 1, 1.0),
        ("loc", 3, 0.5),
    ]


def test_choices_are_made_on_dev_and_scored_on_eval(search):
    assert search.dev.split == "dev" and search.eval.split == "eval"

    def dev_values(key):
        return {
            axis: axis_value(search.dev[key].scores[axis]) for axis in ("transfer", "localization")
        }

    base = dev_values(UNSTEERED)
    assert search.settings["dev_unsteered"] == base
    surgical = [key for key in search.dev.points if "+" in key]
    best = max(surgical, key=lambda key: sum_gain(dev_values(key), base))
    assert search.best == best
    coords = [tuple(dev_values(key).values()) for key in surgical]
    assert list(search.frontier) == [surgical[i] for i in pareto_frontier(coords)]
    for method in ("en", "loc"):
        singles = [k for k in search.dev.points if k.startswith(f"{method}@") and "+" not in k]
        assert search.best_single[method] == max(
            singles, key=lambda k: sum_gain(dev_values(k), base)
        )
    chosen = {*search.frontier, search.best, *search.best_single.values()}
    controls = {f"random:{search.best}#{i}" for i in range(2)}
    assert search.controls == {search.best: tuple(sorted(controls))}
    assert set(search.eval.points) == {UNSTEERED, *chosen, *controls}  # nothing else on eval


def test_the_eval_controls_are_random_surgical_steerings_of_the_best_point(search):
    best = search.eval[search.best].steering["terms"]
    for name in search.controls[search.best]:
        terms = search.eval[name].steering["terms"]
        assert [t["layer"] for t in terms] == [t["layer"] for t in best]
        for term, original in zip(terms, best, strict=True):
            assert term["effective_norm"] == pytest.approx(original["effective_norm"], rel=1e-5)
            assert term["provenance"]["control_of"] == name


def test_a_user_criterion_callable_is_used(tiny_model, items, search):
    seen = []

    def lowest_transfer(values, base):
        seen.append(dict(values))
        return -values["transfer"] - 1e-3 * values["localization"]

    settings = SurgicalSettings(**{**SETTINGS.to_json(), "criterion": lowest_transfer})
    mine = surgical_search(
        tiny_model,
        items,
        {"en": fixed(0), "loc": fixed(1)},
        settings,
        SCORING,
        show_progress=False,
    )
    surgical = [key for key in mine.dev.points if "+" in key]
    values = {
        k: {a: axis_value(mine.dev[k].scores[a]) for a in ("transfer", "localization")}
        for k in surgical
    }
    assert mine.best == max(surgical, key=lambda k: lowest_transfer(values[k], {}))
    on_dev = [
        {a: axis_value(p.scores[a]) for a in ("transfer", "localization")}
        for p in mine.dev.points.values()
    ]
    assert len(seen) >= len(surgical) and all(v in on_dev for v in seen)  # dev values only
    assert mine.settings["criterion"] == "callable"
    assert mine.dev[UNSTEERED].rows == search.dev[UNSTEERED].rows  # same dev scores as before


def test_the_choice_follows_the_dev_items_and_eval_stays(tiny_model, choice_metric, planted):
    """Flip the dev items' answers: the chosen sign of the planted vector flips, eval is unchanged."""
    direction = planted.direction(tiny_model) * 400.0
    loc = Fixed(torch.stack([torch.zeros(32)] * 3 + [direction]))
    vectors = {"en": Fixed(torch.zeros(4, 32)), "loc": loc}
    eval_items = planted.items(start=12, count=12)
    settings = SurgicalSettings(
        transfer_layers=(1,),
        local_layers=(3,),
        transfer_alphas=(1.0,),
        local_alphas=(-1.0, 1.0),
        axes=(None, "choice"),
        n_controls=1,
    )
    searches = {}
    for flip in (False, True):
        name = choice_metric(
            "choice", {"dev": planted.items(flip=flip, count=12), "eval": eval_items}
        )
        scoring = ScoringSettings(metrics=(name,), calibrations=("sum",), n_bootstrap=100)
        searches[flip] = surgical_search(
            tiny_model,
            TargetItems(parse_target("ko")),
            vectors,
            settings,
            scoring,
            show_progress=False,
        )
    assert searches[False].best == "en@1:1+loc@3:1"
    assert searches[True].best == "en@1:1+loc@3:-1"
    assert searches[False].best_single["loc"] == "loc@3:1"
    assert searches[True].best_single["loc"] == "loc@3:-1"
    # The dev scores moved with the items; eval was scored on the same items both times.
    dev = {flip: s.dev[s.best].scores["choice"].value for flip, s in searches.items()}
    assert dev[False] > 0.75 and dev[True] > 0.75
    assert searches[False].eval[UNSTEERED].rows == searches[True].eval[UNSTEERED].rows
    assert searches[False].axes == (None, "choice")


@pytest.mark.parametrize(
    ("changes", "vectors", "message"),
    [
        ({"axes": (None, None)}, None, "at least one axis metric"),
        ({"axes": ("transfer", "gap_closure")}, None, r"axes \['gap_closure'\] are not among"),
        ({}, {"en": fixed(0)}, "needs a 'loc' vector"),
        ({"alpha_mode": "relative"}, None, "needs reference_norms"),
        ({"transfer_layers": (3,), "local_layers": (1,)}, None, "the surgical grid is empty"),
    ],
)
def test_bad_searches_are_refused_before_scoring(tiny_model, items, changes, vectors, message):
    settings = SurgicalSettings(**{**SETTINGS.to_json(), **changes})
    with pytest.raises(ValueError, match=message):
        surgical_search(
            tiny_model, items, vectors or {"en": fixed(0), "loc": fixed(1)}, settings, SCORING
        )


def test_an_axis_that_dev_cannot_measure_is_left_out_and_none_at_all_is_an_error(tiny_model, items):
    settings = SurgicalSettings(**{**SETTINGS.to_json(), "axes": ("transfer", "gap_closure")})
    scoring = ScoringSettings(
        metrics=("transfer", "gap_closure"), calibrations=("sum",), n_bootstrap=100
    )
    vectors = {"en": fixed(0), "loc": fixed(1)}
    search = surgical_search(tiny_model, items, vectors, settings, scoring, show_progress=False)
    assert "gap_closure" not in search.dev["unsteered"].scores
    assert len(search.frontier) == 1  # one measured axis: the frontier is its maximum
    only_missing = SurgicalSettings(**{**SETTINGS.to_json(), "axes": (None, "gap_closure")})
    with pytest.raises(ValueError, match="no axis metric was measured on dev"):
        surgical_search(tiny_model, items, vectors, only_missing, scoring, show_progress=False)
