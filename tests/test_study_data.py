"""Study data: sources merged and checked before the model loads; faults name file, line, field."""

from __future__ import annotations

import json
import warnings

import pytest

from lens_steer.study import run_study
from lens_steer.study.data import load_study_data, resolve_axes
from lens_steer.study.settings import MIN_ITEMS


@pytest.fixture(autouse=True)
def no_model_load(monkeypatch):
    import lens_steer.study.run as run_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the data were checked")

    monkeypatch.setattr(run_module, "load_model", refuse)


@pytest.fixture
def base(tiny_study_settings):
    return lambda **changes: tiny_study_settings(**{"model": "gemma-3-270m", **changes})


def refused(settings, out, error, match) -> None:
    with pytest.raises(error, match=match):
        run_study(settings, out, show_progress=False, log=lambda message: None)
    assert not out.exists(), "a refused run must leave nothing on disk"


def quiet_load(settings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_study_data(settings)
    return data, [str(w.message) for w in caught]


def test_the_fixture_language_loads_with_its_sources_and_counts(base, tiny_language):
    data, notes = quiet_load(base())
    assert [t.key for t in data.targets] == ["zz:Testland"]
    described = data.describe()
    assert described["sources"] == [f"JSONL {tiny_language.resolve()}"]
    assert described["version"] == "tiny-1"
    target = described["targets"]["zz:Testland"]
    assert target["counts"]["facts"] == {"fit": 0, "dev": 11, "eval": 11}
    assert target["counts"]["localization"] == {"fit": 10, "dev": 8, "eval": 8}
    assert target["not_measured"] == {} and target["axes"] == ["transfer", "localization"]
    # Below 30 items per split a metric is measured, with a warning about its intervals.
    assert any("'localization' has only 8 localization items in eval" in n for n in notes)
    assert described["warnings"] == notes


def test_a_bad_line_names_the_full_path_the_line_and_the_field(
    base, tiny_language_variant, tmp_path
):
    def broken(record):
        if record.get("id") == "fact-03-zz":
            record["split"] = "test"
        return True

    path = tiny_language_variant(keep=broken, name="broken.jsonl")
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), start=1) if '"fact-03-zz"' in text
    )
    refused(
        base(data=(str(path),)),
        tmp_path / "out",
        ValueError,
        rf"{path.resolve()} line {line}: field 'split': unknown split 'test'",
    )


def test_invalid_json_names_the_line(base, tiny_language, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(tiny_language.read_text() + '{"kind": "fact", "id": \n')
    n_lines = len(path.read_text().splitlines())
    refused(
        base(data=(str(path),)),
        tmp_path / "out",
        ValueError,
        rf"{path.resolve()} line {n_lines}: invalid JSON",
    )


def test_duplicate_ids_across_sources_are_refused(
    base, tiny_language, tiny_language_variant, tmp_path
):
    second = tiny_language_variant(keep=lambda r: r.get("id") == "par-00-zz", name="more.jsonl")
    refused(
        base(data=(str(tiny_language), str(second))),
        tmp_path / "out",
        ValueError,
        r"parallel item id 'par-00-zz' appears twice .* rename it, or pass --no-builtin",
    )


def test_a_blend_folder_without_the_target_country_file_is_refused(base, tmp_path):
    folder = tmp_path / "blend"
    (folder / "annotations").mkdir(parents=True)
    (folder / "questions").mkdir()
    (folder / "annotations" / "Spain_data.json").write_text("{}")
    expected = folder.resolve() / "annotations" / "South_Korea_data.json"
    refused(
        base(targets=("ko",), builtin=True, data=(str(folder),)),
        tmp_path / "out",
        FileNotFoundError,
        rf"BLEnD folder has no file for any target country \(expected {expected}\)",
    )


def test_an_axis_metric_with_too_few_items_is_an_error(base, tiny_language_variant, tmp_path):
    few = tiny_language_variant(
        keep=lambda r: (
            not (r["kind"] == "localization" and r["split"] == "dev" and int(r["id"][-2:]) > 12)
        )
    )
    refused(
        base(data=(str(few),)),
        tmp_path / "out",
        ValueError,
        rf"axis metric 'localization': only 2 in dev localization item\(s\); at least "
        rf"{MIN_ITEMS} per scored split",
    )


def test_a_non_axis_metric_with_too_few_items_is_left_unmeasured_with_the_reason(
    base, tiny_language_variant
):
    questions = [
        {
            "kind": "transfer",
            "id": f"mc-{i}-{lang}",
            "group": f"mc-{i}",
            "lang": lang,
            "split": split,
            "topic": "chem",
            "question": "Gold is?",
            "options": ["Au", "Ag"],
            "answer": 0,
        }
        for i, split in enumerate(["dev", "dev", "eval"])
        for lang in ("en", "zz")
    ]
    path = tiny_language_variant(extra=questions)
    data, notes = quiet_load(
        base(data=(str(path),), metrics=("transfer", "localization", "transfer_mc"))
    )
    reason = data.not_measured["zz:Testland"]["transfer_mc"]
    assert reason.startswith("only 2 in dev, 1 in eval transfer item(s); at least 8")
    assert any("'transfer_mc' not measured" in n for n in notes)
    assert data.axes["zz:Testland"] == ("transfer", "localization")


def test_a_target_without_transfer_data_keeps_the_localization_axis(base, tiny_language_variant):
    path = tiny_language_variant(keep=lambda r: r["kind"] != "fact")
    data, notes = quiet_load(base(data=(str(path),)))
    assert data.axes["zz:Testland"] == (None, "localization")
    why = data.describe()["targets"]["zz:Testland"]["not_measured"]["transfer"]
    assert why == "no facts items in 'zz' for Testland (add them with --data to measure it)"
    assert any("axis 'transfer' cannot be measured" in n and "left out" in n for n in notes)


def test_an_axis_falls_back_to_a_measurable_metric_of_the_same_kind():
    unmeasured = {"transfer": "no facts"}
    assert resolve_axes(
        ["transfer", "localization"], ["transfer", "transfer_mc", "localization"], unmeasured
    ) == ("transfer_mc", "localization")
    assert resolve_axes(
        ["transfer", "localization"],
        ["transfer", "localization"],
        {"transfer": "x", "localization": "y"},
    ) == (None, None)


def test_a_target_with_no_axis_at_all_is_an_error(base, tiny_language_variant, tmp_path):
    path = tiny_language_variant(keep=lambda r: r["kind"] == "parallel")
    refused(
        base(data=(str(path),)),
        tmp_path / "out",
        ValueError,
        r"no fit-split culture items for the LOC vector",
    )
    refused(
        base(data=(str(path),), vector_methods=("en",)),
        tmp_path / "out",
        ValueError,
        r"neither axis of the plane can be measured",
    )


def test_a_target_without_parallel_sentences_has_no_en_vector(
    base, tiny_language_variant, tmp_path
):
    path = tiny_language_variant(keep=lambda r: r["kind"] != "parallel")
    refused(
        base(data=(str(path),)),
        tmp_path / "out",
        ValueError,
        r"zz:Testland: no source for the EN vector",
    )


def test_limit_is_a_seeded_sample_of_the_scored_splits(base):
    data, _ = quiet_load(base(limit=8, seed=1))
    counts = data.items["zz:Testland"].counts()
    assert counts["facts"] == {"fit": 0, "dev": 8, "eval": 8}
    assert counts["localization"] == {"fit": 10, "dev": 8, "eval": 8}  # fit left whole
    other, _ = quiet_load(base(limit=8, seed=2))
    assert {f.id for f in data.probe.facts} != {f.id for f in other.probe.facts}


def test_built_in_and_user_items_add_up(base, tiny_language):
    data, _ = quiet_load(base(builtin=True, targets=("zz", "ko")))
    assert data.describe()["sources"][0].startswith("built-in probe set")
    assert {t.key for t in data.targets} == {"zz:Testland", "ko:South_Korea"}
    assert data.items["ko:South_Korea"].counts()["blend"]["eval"] > 0  # shipped BLEnD items
    assert data.items["zz:Testland"].counts()["facts"]["dev"] == 11
    assert "tiny-1" in data.probe.version
    assert json.dumps(data.describe())  # plain JSON
