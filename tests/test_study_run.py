"""The whole study end to end on the tiny model and the fixture language ``zz`` (declared in its file).

The run folder of :func:`tiny_run` (conftest) is made once per session; tests that change a
folder work on a copy.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.languages import parse_target
from lens_steer.data.targets import target_items
from lens_steer.evaluate.metrics import (
    ItemScore,
    MetricTask,
    NoItems,
    calibrated,
    option_margin,
    register_metric,
)
from lens_steer.evaluate.scoring import ScoringRequest
from lens_steer.geometry.methods import constant_vector, register_vector_method
from lens_steer.study import STEPS, build_results, run_study
from lens_steer.study.store import MARKER

pytestmark = pytest.mark.filterwarnings("ignore:target zz:UserWarning")  # small fixture splits

VERDICTS = {"supported", "refuted", "inconclusive"}


def run(settings, out, model):
    logs: list[str] = []
    results = run_study(settings, out, model=model, show_progress=False, log=logs.append)
    return results, logs


def without_timings(results: dict) -> dict:
    return {key: value for key, value in results.items() if key != "timings"}


@pytest.fixture(scope="module")
def results(tiny_run) -> dict:
    return json.loads((tiny_run / "results.json").read_text())


def test_the_run_folder_holds_every_file_of_the_contract(tiny_run):
    for name in (MARKER, "config.json", "results.json", "report.md", "items.parquet"):
        assert (tiny_run / name).is_file(), name
    for figure in ("pca", "mixing", "perpendicularity", "sweep_zz-Testland", "plane_zz-Testland"):
        assert (tiny_run / "figures" / f"{figure}.html").is_file(), figure
    for step in STEPS:
        assert (tiny_run / "steps" / step / "_done.json").is_file(), step
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["settings"]["targets"] == ["zz"] and config["data"]["version"] == "tiny-1"
    assert not (tiny_run / ".lock").exists()


def test_results_put_the_findings_first_with_a_verdict_each(results):
    assert [key for key in results if key != "format"][0] == "findings"
    assert results["format"] == "lens_steer.results/2"
    ids = [finding["id"] for finding in results["findings"]]
    assert ids == ["1-en:zz:Testland", "1-loc:zz:Testland", "2:zz:Testland", "3", "4:zz:Testland"]
    for finding in results["findings"]:
        assert finding["verdict"] in VERDICTS
        assert finding["n"] > 0 and finding["ci_low"] <= finding["estimate"] <= finding["ci_high"]


def test_results_hold_per_target_items_and_every_part(results):
    target = results["data"]["targets"]["zz:Testland"]
    assert target["counts"]["facts"] == {"fit": 0, "dev": 11, "eval": 11}
    assert target["counts"]["localization"] == {"fit": 10, "dev": 8, "eval": 8}
    assert target["counts"]["parallel"] == {"fit": 10, "dev": 3, "eval": 3}
    assert target["axes"] == ["transfer", "localization"] and target["not_measured"] == {}
    vectors = results["targets"]["zz:Testland"]["vectors"]
    assert set(vectors) == {"en", "loc"} and vectors["en"]["n_a"] == 10
    sweep = results["sweeps"]["zz:Testland"]["eval"]
    keys = [point["key"] for point in sweep["points"]]
    assert keys == [f"{m}@{layer}:1" for m in ("en", "loc") for layer in range(4)]
    for point in sweep["points"]:
        assert len(point["controls"]) == 2 and point["kl"] >= 0 and point["added_norm"] > 0
        assert set(point["metrics"]) == {"transfer", "localization"}
    assert set(results["peaks"]["zz:Testland"]) == {"en", "loc"}
    plane = results["plane"]["zz:Testland"]
    assert [p["label"] for p in plane["points"]][:3] == ["unsteered", "explicit", "english_query"]
    assert results["surgical"]["zz:Testland"]["best"] in results["surgical"]["zz:Testland"]["eval"]
    assert results["geometry"]["perpendicularity"] and results["geometry"]["mixing"]


def test_items_parquet_holds_every_row_of_every_scored_point(tiny_run, results):
    table = pq.read_table(tiny_run / "items.parquet")
    data = table.to_pydict()
    sets = {(t, s) for t, s in zip(data["target"], data["split"], strict=True)}
    assert sets == {("zz:Testland", "dev"), ("zz:Testland", "eval")}
    sweep_eval = [p["key"] for p in results["sweeps"]["zz:Testland"]["eval"]["points"]]
    points = set(data["point"])
    assert {"unsteered", *sweep_eval} <= points
    assert any(p.startswith("random:") for p in points)
    keys = list(zip(data["split"], data["point"], data["metric"], data["item"], strict=True))
    assert len(keys) == len(set(keys))  # a point of both the sweep and the search: once
    assert {m for m in data["metric"]} == {
        "transfer",
        "transfer:per_token",
        "localization",
        "localization:per_token",
    }


@pytest.mark.usefixtures("one_thread", "html_figures")
def test_a_rerun_loads_every_step_and_reproduces_the_results(
    tiny_run_copy, tiny_study_settings, tiny_model, results
):
    _, logs = run(tiny_study_settings(), tiny_run_copy, tiny_model)
    for step in STEPS[:-1]:
        assert f"[lens-steer] {step}: already done, loaded" in logs
    again = json.loads((tiny_run_copy / "results.json").read_text())
    assert without_timings(again) == without_timings(results)


@pytest.mark.usefixtures("one_thread")
def test_in_memory_and_folder_runs_give_the_same_results(
    tiny_run, tiny_study_settings, tiny_model, results
):
    memory, _ = run(tiny_study_settings(), None, tiny_model)
    built = json.loads(json.dumps(build_results(memory, results["config"])))
    assert without_timings(built) == without_timings(results)
    assert [f.verdict for f in memory.findings] == [f["verdict"] for f in results["findings"]]


def fixed_directions(inputs):
    generator = torch.Generator().manual_seed(11)
    directions = torch.randn(len(inputs.layers), inputs.d_model, generator=generator) * 5.0
    return constant_vector(directions, inputs, name="fixed")


def english_localization(items, split):
    """A user metric: the localization items asked in English (local vs US answer)."""
    chosen = items.of("localization", split)
    if not chosen:
        raise NoItems(f"{items.target.key}: no localization items in {split}")
    requests = tuple(
        ScoringRequest(
            item.english_implicit,
            (" " + item.english_local_answer, " " + item.english_us_answer),
            item.id,
        )
        for item in chosen
    )

    def rows(scored, calibration):
        return [
            ItemScore(request.id, *option_margin(calibrated(scores, calibration), 0))
            for request, scores in zip(requests, scored.requests, strict=True)
        ]

    return MetricTask(requests, rows, calibrations=("sum", "per_token"))


@pytest.mark.usefixtures("one_thread", "html_figures")
def test_a_user_vector_method_and_a_user_metric_run_through_the_study(
    tiny_study_settings, tiny_model, tmp_path
):
    register_vector_method("fixed", fixed_directions, replace=True)
    register_metric(
        "english_localization",
        english_localization,
        axis="localization",
        needs=("localization",),
        replace=True,
    )
    settings = tiny_study_settings(
        vector_methods=("en", "loc", "fixed"),
        layers=(1, 3),
        metrics=("transfer", "localization", "english_localization"),
    )
    run(settings, tmp_path / "run", tiny_model)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    vector = results["targets"]["zz:Testland"]["vectors"]["fixed"]
    assert vector["source"] == "given" and vector["method"] == "fixed"
    expected = torch.randn(4, 32, generator=torch.Generator().manual_seed(11)) * 5.0
    assert vector["norms"] == pytest.approx(expected.norm(dim=1).tolist(), abs=1e-3)
    sweep = results["sweeps"]["zz:Testland"]["eval"]
    fixed_points = [p for p in sweep["points"] if p["method"] == "fixed"]
    assert [p["key"] for p in fixed_points] == ["fixed@1:1", "fixed@3:1"]
    for point in fixed_points:
        entry = point["metrics"]["english_localization"]
        assert entry["score"]["n"] == 8 and "vs_unsteered" in entry and "net_of_control" in entry
        assert point["added_norm"] == pytest.approx(
            expected[point["layer"]].norm().item(), rel=1e-4
        )
    assert {"english_localization", "english_localization:per_token"} <= set(sweep["unsteered"])
    surgical = results["surgical"]["zz:Testland"]
    assert "english_localization" in surgical["eval"][surgical["best"]]
    items = pq.read_table(tmp_path / "run" / "items.parquet").to_pydict()
    assert "english_localization" in set(items["metric"])
    assert any(point.startswith("fixed@") for point in items["point"])


@pytest.mark.usefixtures("one_thread", "html_figures")
def test_a_target_without_transfer_data_runs_on_the_localization_axis(
    tiny_study_settings, tiny_model, tiny_language_variant, tmp_path
):
    data = tiny_language_variant(keep=lambda record: record["kind"] != "fact")
    run(tiny_study_settings(data=(str(data),)), tmp_path / "run", tiny_model)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    target = results["data"]["targets"]["zz:Testland"]
    assert target["axes"] == [None, "localization"]
    assert target["not_measured"]["transfer"] == (
        "no facts items in 'zz' for Testland (add them with --data to measure it)"
    )
    assert results["plane"]["zz:Testland"]["axes"] == [None, "localization"]
    unsteered = results["plane"]["zz:Testland"]["points"][0]
    assert unsteered["x"] is None and unsteered["y"]["n"] == 8
    ids = [finding["id"] for finding in results["findings"]]
    assert "1-loc:zz:Testland" in ids and "1-en:zz:Testland" not in ids
    assert "4:zz:Testland" not in ids  # surgical advantage needs both axes


def test_the_fixture_language_is_declared_only_in_its_data_file(tiny_language):
    meta = json.loads(tiny_language.read_text().splitlines()[0])
    assert meta["kind"] == "meta" and meta["languages"][0]["code"] == "zz"
    items = target_items(load_jsonl(tiny_language), parse_target("zz"))
    texts = [item.prompt for item in items.facts] + [item.implicit for item in items.localization]
    assert all(len(text) < 40 and text.isascii() for text in texts)  # fast on the byte tokenizer
