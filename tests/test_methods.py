"""Vector methods: the registry, user methods through fit_vectors, and the built-in EN and LOC
methods against mean differences computed directly (with EN's BLEnD fallback)."""

from __future__ import annotations

import pytest
import torch

from lens_steer.collect import collect_residuals
from lens_steer.data.languages import parse_target
from lens_steer.data.records import BlendAnswer, BlendItem, LocalizationItem, ParallelItem, ProbeSet
from lens_steer.data.templates import blend_prompt
from lens_steer.geometry import (
    ContrastVector,
    VectorInputs,
    collect_blend,
    collect_localization,
    collect_parallel,
    constant_vector,
    en_vectors,
    fit_vectors,
    loc_vectors,
    register_vector_method,
    vector_method,
    vector_methods,
)
from lens_steer.geometry import methods as methods_module
from lens_steer.residuals import ResidualSet

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # batched collection vs one batch: float32 rounding


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    """Methods registered by a test disappear after it."""
    monkeypatch.setattr(methods_module, "_METHODS", dict(methods_module._METHODS))


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


def _blend_items() -> list[BlendItem]:
    questions = [
        ("Wane abinci ne a Najeriya?", "Wane abinci ne a kasarmu?", "What food is in Nigeria?"),
        ("Wane wasa ne a Najeriya?", "Wane wasa ne a kasarmu?", "What sport is in Nigeria?"),
        ("Ina birni a Najeriya?", "Ina birni a kasarmu?", "Where is the city in Nigeria?"),
    ]
    return [
        BlendItem(
            f"ha-{i}",
            "ha",
            "fit",
            "Northern_Nigeria",
            "food",
            explicit,
            implicit,
            english,
            (BlendAnswer("tuwo", "tuwo", 3),),
        )  # fmt: skip
        for i, (explicit, implicit, english) in enumerate(questions)
    ]


@pytest.fixture
def parallel(tiny_model) -> ResidualSet:
    return collect_parallel(tiny_model, _probe_set(), ["en", "ko"], show_progress=False)


@pytest.fixture
def blend(tiny_model) -> dict[str, ResidualSet]:
    return collect_blend(
        tiny_model, _blend_items(), forms=("explicit", "implicit", "english"), show_progress=False
    )


def _mean_difference(model, towards: list[str], away: list[str]) -> torch.Tensor:
    a = collect_residuals(model, towards, batch_size=1, show_progress=False)
    b = collect_residuals(model, away, batch_size=1, show_progress=False)
    return a.acts.mean(dim=0) - b.acts.mean(dim=0)


# ---------------------------------------------------------------- the registry


def test_en_and_loc_are_registered_and_unknown_names_list_the_registered_ones():
    assert {"en", "loc"} <= set(vector_methods())
    with pytest.raises(ValueError, match=r"unknown vector method 'sae'; registered: en, loc"):
        vector_method("sae")


@pytest.mark.parametrize("name", ["", "en:ko", "a@b", "x+y", 3])
def test_register_refuses_names_that_results_could_not_key_on(name):
    with pytest.raises(ValueError, match="vector method name must be"):
        register_vector_method(name, lambda inputs: None)  # type: ignore[arg-type]


def test_register_refuses_a_non_callable_and_a_silent_redefinition():
    with pytest.raises(TypeError, match="'probe' must be callable"):
        register_vector_method("probe", "not a function")  # type: ignore[arg-type]

    def first(inputs):
        return constant_vector(torch.ones(len(inputs.layers), inputs.d_model), inputs, name="p")

    def second(inputs):
        return constant_vector(torch.zeros(len(inputs.layers), inputs.d_model), inputs, name="p")

    register_vector_method("probe", first)
    register_vector_method("probe", first)  # the same function again is fine
    with pytest.raises(ValueError, match="'probe' is already registered"):
        register_vector_method("probe", second)
    register_vector_method("probe", second, replace=True)
    assert vector_method("probe") is second


def test_fit_vectors_runs_a_user_registered_constant_direction(parallel):
    direction = torch.randn(
        len(parallel.layers), parallel.d_model, generator=torch.Generator().manual_seed(7)
    )
    register_vector_method(
        "fixed-random", lambda inputs: constant_vector(direction, inputs, name="fixed-random")
    )
    inputs = VectorInputs(parse_target("ko"), {"parallel": parallel}, n_bootstrap=4, seed=1)
    fitted = fit_vectors(inputs, ["en", "fixed-random"])
    assert list(fitted) == ["en", "fixed-random"]
    mine = fitted["fixed-random"]
    assert torch.equal(mine.vectors, direction) and mine.vectors is not direction
    assert mine.layers == parallel.layers and mine.bootstrap is None
    assert mine.provenance == {
        "kind": "fixed-random", "name": "fixed-random", "lang": "ko", "source": "given",
        "method": "fixed-random", "target": "ko:South_Korea",
    }  # fmt: skip
    en = fitted["en"]
    assert (en.provenance["method"], en.provenance["target"]) == ("en", "ko:South_Korea")
    assert en.bootstrap is not None and en.bootstrap.shape[0] == 4


def test_constant_vector_from_a_mapping_puts_zeros_at_missing_layers(parallel):
    inputs = VectorInputs(parse_target("ko"), {"parallel": parallel})
    direction = torch.arange(parallel.d_model, dtype=torch.float64)
    vector = constant_vector({2: direction}, inputs, name="sae-12")
    assert vector.vectors.dtype == torch.float32
    torch.testing.assert_close(vector.at_layer(2), direction.float())
    assert not vector.at_layer(0).any() and not vector.at_layer(3).any()
    with pytest.raises(
        ValueError, match=r"sae-12: directions of shape \(2, 32\), expected \(4, 32\)"
    ):
        constant_vector(torch.zeros(2, parallel.d_model), inputs, name="sae-12")


def test_fit_vectors_refuses_a_method_returning_the_wrong_thing(parallel):
    inputs = VectorInputs(parse_target("ko"), {"parallel": parallel})
    register_vector_method("tensor", lambda inputs: torch.zeros(4, 32))  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="'tensor' returned Tensor, not a ContrastVector"):
        fit_vectors(inputs, ["tensor"])
    register_vector_method("two-layers", lambda inputs: ContrastVector(torch.zeros(2, 32), (0, 1)))
    with pytest.raises(
        ValueError, match=r"'two-layers' for ko:South_Korea: layers \(0, 1\) differ"
    ):
        fit_vectors(inputs, ["two-layers"])


# ---------------------------------------------------------------- EN: parallel sentences


def test_en_vectors_pair_english_and_language_by_group_on_the_fit_split(tiny_model, parallel):
    vectors = en_vectors(tiny_model, _probe_set(), ["ko"], n_bootstrap=3, show_progress=False)
    expected = _mean_difference(
        tiny_model,
        ["The sun rises.", "Water is wet.", "Cats sleep a lot."],
        ["해가 뜬다.", "물은 젖었다.", "고양이는 많이 잔다."],
    )
    torch.testing.assert_close(vectors["ko"].vectors, expected, **TOLERANCE)
    provenance = vectors["ko"].provenance
    assert (provenance["kind"], provenance["lang"], provenance["split"]) == ("en", "ko", "fit")
    assert (provenance["n_a"], provenance["n_b"], provenance["paired"]) == (3, 3, True)
    assert provenance["source"] == "parallel sentences"
    assert provenance["model_id"] == "tiny-random" and provenance["position"] == "last"
    assert vectors["ko"].differences.shape == (3, 4, 32)  # paired: one difference per group


def test_en_vectors_reuse_collected_parallel_residuals(tiny_model, parallel):
    assert parallel.langs.count("en") == 4  # par-0..2 and par-9 of the fit split
    vectors = en_vectors(None, _probe_set(), ["ko"], parallel=parallel)
    assert vectors["ko"].provenance["n_a"] == 3  # par-9 has no Korean translation
    part = collect_parallel(
        tiny_model, _probe_set(), ["en", "ko"], layers=[1, 2], show_progress=False
    )
    assert en_vectors(None, _probe_set(), ["ko"], parallel=part)["ko"].layers == (1, 2)


def test_en_falls_back_to_blend_question_pairs_and_says_so(tiny_model, parallel, blend):
    """Hausa has no parallel sentences: EN = English question - the same question in Hausa."""
    inputs = VectorInputs(
        parse_target("ha"),
        {
            "parallel": parallel,  # English and Korean only
            "blend:english": blend["english"],
            "blend:explicit": blend["explicit"].select([2, 0, 1]),  # pairing is by id, not row
        },
    )
    vector = fit_vectors(inputs, ["en"])["en"]
    assert vector.provenance["source"] == (
        "BLEnD question pairs (English question - explicit question in L)"
    )
    assert (
        vector.provenance["lang"] == "ha" and vector.provenance["target"] == "ha:Northern_Nigeria"
    )
    items = _blend_items()
    expected = _mean_difference(
        tiny_model,
        [blend_prompt(item, "english") for item in items],
        [blend_prompt(item, "explicit") for item in items],
    )
    torch.testing.assert_close(vector.vectors, expected, **TOLERANCE)
    english = collect_residuals(
        tiny_model, [blend_prompt(items[0], "english")], show_progress=False
    )
    explicit = collect_residuals(
        tiny_model, [blend_prompt(items[0], "explicit")], show_progress=False
    )
    torch.testing.assert_close(
        vector.differences[0], english.acts[0] - explicit.acts[0], **TOLERANCE
    )  # ids sorted: ha-0 first


def test_en_without_parallel_sentences_nor_blend_is_a_clear_error(parallel):
    inputs = VectorInputs(parse_target("ha"), {"parallel": parallel})
    with pytest.raises(ValueError, match=r"en vector for ha:Northern_Nigeria: no parallel .*'ha'"):
        fit_vectors(inputs, ["en"])


# ---------------------------------------------------------------- LOC: explicit minus implicit


def test_loc_vectors_are_explicit_minus_implicit_paired_by_item(tiny_model):
    probe = _probe_set()
    collected = collect_localization(tiny_model, probe, ["ko"], show_progress=False)
    assert collected["explicit"].ids == collected["implicit"].ids == ("loc-0-ko", "loc-1-ko")
    vectors = loc_vectors(None, probe, ["ko"], localization=collected)
    expected = _mean_difference(
        tiny_model, ["한국의 화폐는", "한국의 수도는"], ["우리나라의 화폐는", "우리나라의 수도는"]
    )
    torch.testing.assert_close(vectors["ko"].vectors, expected, **TOLERANCE)
    assert vectors["ko"].provenance["kind"] == "loc"
    assert vectors["ko"].provenance["source"] == "built-in items"
    with pytest.raises(ValueError, match=r"lack the form\(s\) \['implicit'\]"):
        loc_vectors(None, probe, ["ko"], localization={"explicit": collected["explicit"]})


def test_loc_prefers_blend_questions_over_built_in_items(tiny_model, blend):
    inputs = VectorInputs(
        parse_target("ha"),
        {"blend:explicit": blend["explicit"], "blend:implicit": blend["implicit"]},
    )
    vector = fit_vectors(inputs, ["loc"])["loc"]
    assert vector.provenance["source"] == "BLEnD questions"
    torch.testing.assert_close(
        vector.vectors, blend["explicit"].acts.mean(0) - blend["implicit"].acts.mean(0),
        rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no explicit/implicit culture items"):
        fit_vectors(VectorInputs(parse_target("ha"), {"english": blend["english"]}), ["loc"])


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
    with pytest.raises(ValueError, match="needs a model"):
        loc_vectors(None, probe, ["ko"])
