"""The ``lens-steer`` command line: arguments to settings, clean errors, report and export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lens_steer import cli
from lens_steer.report import render_report
from lens_steer.study import QUICK, StudySettings

pytestmark = pytest.mark.filterwarnings("ignore:target zz:UserWarning")  # small fixture splits


def settings_of(*argv: str) -> StudySettings:
    full = ["run", "--out", "runs/x", *argv]
    return cli.settings_from_args(cli.build_parser().parse_args(full), full)


@pytest.fixture(autouse=True)
def no_model_load(monkeypatch):
    import lens_steer.study.run as run_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(run_module, "load_model", refuse)


def test_every_option_maps_to_its_setting():
    settings = settings_of(
        "--targets",
        "zz",
        "es:Mexico",
        "--data",
        "a.jsonl",
        "--data",
        "blend/",
        "--no-builtin",
        "--model",
        "gemma-3-270m",
        "--metrics",
        "transfer",
        "localization",
        "--axes",
        "transfer",
        "localization",
        "--calibrations",
        "sum",
        "pmi",
        "--vector-methods",
        "en",
        "--layers",
        "0",
        "2",
        "--alphas",
        "0.5",
        "1",
        "--alpha-mode",
        "relative",
        "--n-controls",
        "1",
        "--control-alphas",
        "1",
        "--transfer-layers",
        "1",
        "--transfer-alphas",
        "2",
        "--local-layers",
        "3",
        "--local-alphas",
        "0.25",
        "--criterion",
        "harmonic_mean",
        "--position",
        "mean",
        "--limit",
        "10",
        "--fit-limit",
        "20",
        "--seed",
        "3",
        "--n-bootstrap",
        "300",
        "--equivalence-margin",
        "0.2",
        "--noninferiority-margin",
        "0.5",
        "--device",
        "cpu",
        "--batch-size",
        "4",
    )
    assert settings == StudySettings(
        model="gemma-3-270m",
        targets=("zz", "es:Mexico"),
        data=(str(Path("a.jsonl").resolve()), str(Path("blend/").resolve())),
        builtin=False,
        metrics=("transfer", "localization"),
        axes=("transfer", "localization"),
        calibrations=("sum", "pmi"),
        vector_methods=("en",),
        layers=(0, 2),
        alphas=(0.5, 1.0),
        alpha_mode="relative",
        n_controls=1,
        control_alphas=(1.0,),
        transfer_layers=(1,),
        transfer_alphas=(2.0,),
        local_layers=(3,),
        local_alphas=(0.25,),
        criterion="harmonic_mean",
        position="mean",
        limit=10,
        fit_limit=20,
        seed=3,
        n_bootstrap=300,
        equivalence_margin=0.2,
        noninferiority_margin=0.5,
        device="cpu",
        batch_size=4,
    )


def test_defaults_are_the_study_settings_defaults():
    assert settings_of() == StudySettings()
    assert settings_of("--langs", "ko", "zh").targets == ("ko", "zh")
    assert settings_of("--data", "one.jsonl").data == (str(Path("one.jsonl").resolve()),)
    assert settings_of("--data", "one.jsonl").builtin is True


def test_targets_and_langs_together_are_refused():
    with pytest.raises(ValueError, match="give --targets or --langs, not both"):
        settings_of("--targets", "ko", "--langs", "zh")


def test_quick_fills_only_what_is_not_given():
    settings = settings_of("--quick", "--limit", "30", "--alphas=2", "--langs", "ko")
    assert settings.limit == 30 and settings.alphas == (2.0,)  # given: kept (also --opt=value)
    for name, value in QUICK.items():
        if name not in ("limit", "alphas"):
            assert getattr(settings, name) == value, name
    assert settings_of("--limit", "30").layers == ()  # without --quick nothing is filled


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--targets", "en"], "English cannot be a target"),
        (["--alphas", "inf"], "--alphas: inf is not a finite number"),
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (["--position", "foo"], "--position must be 'last', 'mean' or an integer index"),
        (["--limit", "1"], "--limit must be an integer >= 8, got 1"),
        (["--targets", "ko:Mexico"], "Korean countries: North_Korea, South_Korea"),
        (["--targets", "xx"], "unknown language code 'xx'"),
        (["--device", "tpu"], "device 'tpu' is not supported"),
        (["--data", "/no/such/file.jsonl"], "--data /no/such/file.jsonl does not exist"),
        (["--targets", "ko", "--langs", "zh"], "give --targets or --langs, not both"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("lens-steer: error: ") and message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_an_unparseable_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--out", "x", "--seed", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: invalid int value: 'three'" in err and "Traceback" not in err


def test_every_subcommand_has_help(capsys):
    for command in ("run", "report", "export", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "--out" in capsys.readouterr().out or command == "demo"


def test_a_folder_that_is_not_a_run_is_refused_by_report_and_export(tmp_path, capsys):
    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    assert "is not a lens_steer run folder (no config.json)" in capsys.readouterr().err
    assert cli.main(["export", "--csv", "--out", str(tmp_path)]) == 2
    assert "items.parquet not found: finish the run first" in capsys.readouterr().err


@pytest.mark.usefixtures("html_figures")
def test_report_re_renders_the_report_and_every_figure(tiny_run_copy, capsys):
    report = tiny_run_copy / "report.md"
    report.unlink()
    for figure in (tiny_run_copy / "figures").glob("*.html"):
        figure.unlink()
    assert cli.main(["report", "--out", str(tiny_run_copy)]) == 0
    results = json.loads((tiny_run_copy / "results.json").read_text())
    assert report.read_text() == render_report(results, tiny_run_copy)
    names = {path.stem for path in (tiny_run_copy / "figures").glob("*.html")}
    assert names == {"pca", "mixing", "perpendicularity", "sweep_zz-Testland", "plane_zz-Testland"}
    assert "5 figure files written" in capsys.readouterr().out


def test_export_writes_one_csv_row_per_point_item_and_metric(tiny_run_copy, capsys):
    assert cli.main(["export", "--csv", "--out", str(tiny_run_copy)]) == 0
    assert "items.csv" in capsys.readouterr().out
    with (tiny_run_copy / "items.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(tiny_run_copy / "items.parquet")
    assert len(rows) == table.num_rows
    keys = {(r["target"], r["split"], r["point"], r["metric"], r["item"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["metric"] for r in rows} == {
        "transfer",
        "transfer:per_token",
        "localization",
        "localization:per_token",
    }
