"""The whole study on the real Gemma 3 270M through the command line (small sizes), and targets.

One run of two targets that share a language (es:Spain from the shipped BLEnD-derived set,
es:Mexico from a synthetic BLEnD-format folder that has no built-in counterpart) covers the run
folder contract, the findings table, figures in every format, resuming, and the any-country
path; bad targets fail before the model loads and leave nothing on disk.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lens_steer import cli

SMALL = [
    "--limit", "8", "--fit-limit", "16", "--layers", "3", "9", "15", "--alphas", "1",
    "--control-alphas", "1", "--n-controls", "1", "--transfer-layers", "9",
    "--local-layers", "15", "--transfer-alphas", "1", "--local-alphas", "1",
    "--metrics", "transfer", "gold_logprob", "--calibrations", "sum", "per_token",
    "--n-bootstrap", "200", "--quiet",
]  # fmt: skip


def _write_mexico(root: Path) -> Path:
    """The synthetic Mexico folder, written by its generator (nothing BLEnD-shaped is committed)."""
    script = Path(__file__).parent / "fixtures" / "blend_mexico" / "make_fixture.py"
    spec = importlib.util.spec_from_file_location("make_mexico_fixture", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_fixture(root)


@pytest.fixture(scope="module")
def mexico(tmp_path_factory) -> Path:
    return _write_mexico(tmp_path_factory.mktemp("blend") / "blend_mexico")


@pytest.fixture(scope="module")
def spanish_run(tmp_path_factory, mexico):
    out = tmp_path_factory.mktemp("study") / "run"
    argv = ["run", "--out", str(out), "--targets", "es:Spain", "es:Mexico", "--data", str(mexico)]
    assert cli.main([*argv, *SMALL]) == 0
    return out


@pytest.mark.slow
def test_run_writes_the_contract_with_findings_first(spanish_run):
    out = spanish_run
    for name in ("config.json", "results.json", "report.md", "items.parquet", ".lens_steer_run"):
        assert (out / name).is_file(), name
    assert not (out / ".lock").exists()
    results = json.loads((out / "results.json").read_text())
    assert list(results)[:2] == ["format", "findings"]
    ids = {f["id"].split(":")[0] for f in results["findings"]}
    assert {"1-en", "1-loc", "2", "3", "4"} <= ids
    for finding in results["findings"]:
        assert finding["verdict"] in {"supported", "refuted", "inconclusive"}
        assert finding["n"] > 0 and finding["ci_low"] <= finding["ci_high"]
    assert set(results["data"]["targets"]) == {"es:Spain", "es:Mexico"}
    mexico = results["data"]["targets"]["es:Mexico"]
    assert mexico["counts"]["blend"]["eval"] == 8 and mexico["counts"]["localization"]["eval"] == 0
    assert results["targets"]["es:Mexico"]["vectors"]["loc"]["source"] == "BLEnD questions"
    assert results["targets"]["es:Mexico"]["vectors"]["en"]["source"] == "parallel sentences"
    report = (out / "report.md").read_text()
    assert report.index("## Findings") < report.index("## es:Spain")
    for stem in ("pca", "mixing", "perpendicularity", "sweep_es-Spain", "plane_es-Mexico"):
        for suffix in ("html", "png", "svg", "pdf"):
            assert (out / "figures" / f"{stem}.{suffix}").stat().st_size > 1000, (stem, suffix)


@pytest.mark.slow
def test_sweep_points_carry_effects_controls_and_doses(spanish_run):
    results = json.loads((spanish_run / "results.json").read_text())
    sweep = results["sweeps"]["es:Spain"]["eval"]
    point = next(p for p in sweep["points"] if p["method"] == "en" and p["layer"] == 9)
    assert point["added_norm"] > 0 and point["kl"] >= 0 and point["control_kl"] >= 0
    entry = point["metrics"]["transfer"]
    assert entry["vs_unsteered"]["n"] == entry["net_of_control"]["n"] > 0
    assert len(entry["control_scores"]) == 1
    peaks = results["peaks"]["es:Spain"]
    assert peaks["en"]["chosen_on_dev"].startswith("en@") and peaks["en"]["eval_n"] > 0


@pytest.mark.slow
def test_second_run_loads_every_step(spanish_run, mexico, capsys):
    argv = ["run", "--out", str(spanish_run), "--targets", "es:Spain", "es:Mexico"]
    assert cli.main([*argv, "--data", str(mexico), *SMALL]) == 0
    messages = capsys.readouterr().err
    for step in ("collect", "vectors", "geometry", "sweep", "surgical", "plane", "findings"):
        assert f"{step}: already done" in messages


@pytest.mark.slow
@pytest.mark.parametrize(
    "targets, message",
    [
        (["en:US"], "English cannot be a target"),
        (["ko:Mexico"], "South_Korea"),
        (["es:Atlantis"], "unknown country 'Atlantis'"),
        (["xx"], "unknown language code 'xx'"),
    ],
)
def test_bad_targets_fail_before_the_model_loads_and_leave_nothing(
    tmp_path, capsys, targets, message
):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), "--targets", *targets, *SMALL]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_a_blend_folder_without_the_target_country_is_named(tmp_path, capsys, blend_root):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--targets", "es:Mexico", "--data", str(blend_root)]
    assert cli.main([*argv, "--no-builtin", *SMALL]) == 2
    assert "Mexico_data.json" in capsys.readouterr().err
    assert not out.exists()
