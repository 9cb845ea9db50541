"""Study settings: every bad setting is refused before the model loads, and nothing is written.

Each case is one fault from the project's issues. Every test runs the real entry point,
``run_study(settings, out)``, with model loading replaced by a failure, and checks that the
error names the setting and that the ``--out`` folder was never created.
"""

from __future__ import annotations

import math

import pytest
import torch

from lens_steer.study import StudySettings, run_study, validate_settings
from lens_steer.study.settings import (
    MIN_ITEMS,
    QUICK,
    RUNTIME_ONLY,
    default_surgical_layers,
    quick,
    validate_layers,
)

pytestmark = pytest.mark.filterwarnings("ignore:target zz:UserWarning")  # small fixture splits


@pytest.fixture(autouse=True)
def no_model_load(monkeypatch):
    """Loading a model in these tests is itself the failure."""
    import lens_steer.study.run as run_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(run_module, "load_model", refuse)


@pytest.fixture
def base(tiny_study_settings):
    """Valid settings of the fixture-language study with the embedded model's name."""
    return lambda **changes: tiny_study_settings(**{"model": "gemma-3-270m", **changes})


def refused(settings: StudySettings, out, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run_study(settings, out, show_progress=False, log=lambda message: None)
    assert not out.exists(), "a refused run must leave nothing on disk"


def test_the_base_settings_are_valid(base):
    assert [t.key for t in validate_settings(base())] == ["zz:Testland"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"alphas": (math.inf,)}, r"--alphas: inf is not a finite number"),
        ({"alphas": (1.0, math.nan)}, r"--alphas: nan is not a finite number"),
        ({"transfer_alphas": ()}, r"--transfer-alphas needs at least one number"),
        ({"seed": -1}, r"--seed must be an integer >= 0, got -1"),
        ({"position": "foo"}, r"--position must be 'last', 'mean' or an integer index, got 'foo'"),
        ({"limit": 1}, rf"--limit must be an integer >= {MIN_ITEMS}, got 1"),
        ({"fit_limit": 2}, r"--fit-limit must be an integer >= 4, got 2"),
        ({"n_bootstrap": 10}, r"--n-bootstrap must be an integer >= 100, got 10"),
        ({"batch_size": 0}, r"--batch-size must be an integer >= 1, got 0"),
        ({"layers": (-1,)}, r"--layers: -1 is not a layer index"),
        ({"axes": ("transfer", "gap_closure")}, r"--axes must name two of the study's metrics"),
        ({"calibrations": ("pmi", "sum")}, r"--calibrations must start with 'sum'"),
        ({"metrics": ("transfer", "nope")}, r"unknown metric 'nope'"),
        ({"vector_methods": ("en", "pca")}, r"unknown vector method 'pca'"),
        ({"control_alphas": (2.0,)}, r"--control-alphas \[2.0\] are not among --alphas"),
        ({"criterion": "best"}, r"--criterion must be one of \['sum_gain', 'harmonic_mean'\]"),
        ({"alpha_mode": "percent"}, r"--alpha-mode must be 'raw' or 'relative'"),
        ({"equivalence_margin": 0.0}, r"--equivalence-margin: 0.0 must be > 0"),
        ({"targets": ()}, r"give at least one target"),
        ({"targets": ("zz", "zz:Testland")}, r"a target is given twice"),
        ({"model": " "}, r"--model is empty"),
        ({"model": "no-such-model-xyz"}, r"Unknown model 'no-such-model-xyz'"),
        ({"device": "tpu"}, r"device 'tpu' is not supported; use cpu, cuda, cuda:N or mps"),
    ],
)
def test_bad_settings_are_refused_before_the_model_loads(base, tmp_path, changes, match):
    refused(base(**changes), tmp_path / "out", ValueError, match)


def test_cuda_on_a_machine_without_it_is_refused(base, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refused(
        base(device="cuda"),
        tmp_path / "out",
        ValueError,
        r"device 'cuda': CUDA is not available on this machine; use cpu",
    )


def test_an_unknown_target_language_lists_the_known_ones(base, tmp_path):
    refused(
        base(targets=("xx",)),
        tmp_path / "out",
        ValueError,
        r"unknown language code 'xx'; known: en, ko, .*zz.*register_language",
    )


def test_a_country_of_another_language_names_the_languages_countries(base, tmp_path):
    refused(
        base(targets=("ko:Mexico",)),
        tmp_path / "out",
        ValueError,
        r"Mexico is a Spanish-language country .* Korean countries: North_Korea, South_Korea",
    )


def test_english_cannot_be_a_target_and_the_reason_is_given(base, tmp_path):
    refused(
        base(targets=("zz", "en")),
        tmp_path / "out",
        ValueError,
        r"\['en:US'\]: English cannot be a target \(the EN vector is English minus the "
        r"target language, which is zero for English\)",
    )


def test_a_missing_data_file_names_its_full_path(base, tmp_path):
    missing = tmp_path / "nowhere" / "items.jsonl"
    refused(
        base(data=(str(missing),)),
        tmp_path / "out",
        FileNotFoundError,
        rf"--data {missing} does not exist; give a BLEnD folder or a JSONL file",
    )


def test_a_folder_that_is_not_blend_is_refused(base, tmp_path):
    folder = tmp_path / "my_data"
    folder.mkdir()
    (folder / "notes.txt").write_text("not BLEnD")
    refused(
        base(data=(str(folder),)),
        tmp_path / "out",
        ValueError,
        rf"--data {folder} is a folder without BLEnD's annotations/ and questions/",
    )


def test_no_builtin_needs_a_data_source(base, tmp_path):
    refused(base(data=()), tmp_path / "out", ValueError, "--no-builtin needs at least one --data")


def test_layers_the_model_does_not_have_are_refused_before_writing(
    tiny_study_settings, tiny_model, tmp_path
):
    out = tmp_path / "out"
    with pytest.raises(
        ValueError, match=r"--local-layers \[4\] out of range: the model has layers 0\.\.3"
    ):
        run_study(
            tiny_study_settings(local_layers=(2, 4)),
            out,
            model=tiny_model,
            show_progress=False,
            log=lambda m: None,
        )
    assert not out.exists()
    with pytest.raises(ValueError, match=r"--layers \[18\] out of range"):
        validate_layers(tiny_study_settings(layers=(0, 18)), 4)


def test_settings_json_round_trip_and_identity():
    settings = StudySettings(targets=("es:Mexico",), alphas=(0.5, 2.0), limit=24, device="cpu")
    restored = StudySettings.from_json(settings.to_json())
    assert restored == settings and isinstance(restored.alphas, tuple)
    identity = settings.identity()
    assert RUNTIME_ONLY == {"device", "batch_size"} and not RUNTIME_ONLY & set(identity)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['colour'\]"):
        StudySettings.from_json({**settings.to_json(), "colour": "red"})


def test_quick_fills_only_what_was_not_given():
    settings = quick(StudySettings(limit=40), given={"limit"})
    assert settings.limit == 40
    assert settings.layers == QUICK["layers"] and settings.n_controls == QUICK["n_controls"]


def test_default_surgical_layers_are_the_middle_and_last_thirds():
    assert default_surgical_layers(18) == ((6, 8, 10), (12, 14, 16))
    assert default_surgical_layers(4) == ((1,), (2,))
