"""The study pipeline and the ``lens-steer`` CLI, end to end on the real model."""

from __future__ import annotations

import json
import shutil

import pytest

from lens_steer import cli
from lens_steer.data import limit_probe_set
from lens_steer.pipeline import StudySettings, validate_settings

QUICK = [
    "--langs", "ko",
    "--limit", "3",
    "--layers", "4", "10",
    "--alphas", "0.5",
    "--transfer-layers", "6",
    "--transfer-alphas", "0.5",
    "--local-layers", "12",
    "--local-alphas", "0.5",
    "--n-bootstrap", "50",
    "--batch-size", "4",
    "--device", "cpu",
    "--quiet",
]  # fmt: skip
FIGURES = ["pca", "perpendicularity", "mixing", "sweep_ko", "plane_ko"]


# ------------------------------------------------------------------ fast: validation


def test_limit_keeps_whole_groups_per_split():
    from lens_steer.data import load_probe_set

    probe = limit_probe_set(load_probe_set(langs=["en", "ko"]), 2)
    for items in (probe.parallel, probe.transfer):
        for split in ("fit", "dev", "eval"):
            groups = {item.group for item in items if item.split == split}
            assert len(groups) <= 2
            for group in groups:  # every language of a kept group is kept
                assert {i.lang for i in items if i.group == group} == {"en", "ko"}
    counts: dict[tuple[str, str], int] = {}
    for item in probe.localization:
        counts[item.lang, item.split] = counts.get((item.lang, item.split), 0) + 1
    assert counts and max(counts.values()) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (StudySettings(langs=("ko", "xx")), r"Unknown language\(s\) \['xx'\]"),
        (StudySettings(langs=("en",)), r"Unknown language\(s\) \['en'\]"),
        (StudySettings(data="/no/such/data.jsonl"), r"--data /no/such/data\.jsonl does not exist"),
        (StudySettings(limit=0), r"--limit must be >= 1"),
        (StudySettings(alphas=()), r"--alphas must be non-empty"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        validate_settings(settings)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--langs", "ko", "xx"], "Unknown language(s) ['xx']"),
        (["--data", "/no/such/file.jsonl"], "--data /no/such/file.jsonl does not exist"),
    ],
)
def test_cli_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_quick_fills_only_the_settings_not_given():
    argv = ["run", "--quick", "--langs", "ko", "--local-alphas", "2.0", "--out", "x"]
    args = cli.build_parser().parse_args(argv)
    cli._apply_quick(args, argv)
    settings = cli.settings_from_args(args)
    assert settings.limit == 12 and settings.layers == tuple(range(0, 18, 2))
    assert settings.alphas == (0.5, 1.0) and settings.transfer_alphas == (0.25,)
    assert settings.local_alphas == (2.0,)  # given on the command line: kept


def test_every_subcommand_has_help(capsys):
    for command in ["run", "collect", "vectors", "pca", "perpendicularity", "sweep", "surgical",
                    "plane", "report", "demo"]:  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--model" in text
        if command != "demo":
            assert "--out" in text and "--limit" in text and "default" in text


# ------------------------------------------------------------------ slow: the real model


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One uninterrupted quick run of the whole study (the reference for the resume test)."""
    out = tmp_path_factory.mktemp("study") / "run"
    assert cli.main(["run", "--out", str(out), *QUICK]) == 0
    return out


@pytest.mark.slow
def test_run_writes_every_file_of_the_contract(quick_run):
    out = quick_run
    for name in ("config.json", "results.json", "report.md"):
        assert (out / name).is_file()
    assert (out / "figures" / "plotly.min.js").stat().st_size > 1_000_000
    for figure in FIGURES:
        html = (out / "figures" / f"{figure}.html").read_text()
        assert 'src="plotly.min.js"' in html and '"data":' in html
        assert (out / "figures" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert len(results["perpendicularity"]["ko"]) == 18
    assert all(-1 <= c <= 1 for c in results["perpendicularity"]["ko"])
    assert 0 < results["null_band"] < 0.2
    sweep = results["sweeps"]["ko"]
    for kind in ("en", "loc"):
        assert sweep[kind]["layers"] == [4, 10]
        assert sweep[kind]["alpha"] == 0.5
        assert len(sweep[kind]["transfer"]) == len(sweep[kind]["localization"]) == 2
    labels = [point["label"] for point in results["plane"]["ko"]]
    assert {"unsteered", "english_query", "explicit"} <= set(labels)
    for point in results["plane"]["ko"]:
        assert point["transfer_ci"][0] <= point["transfer"] <= point["transfer_ci"][1]
        assert point["localization_ci"][0] <= point["localization"] <= point["localization_ci"][1]
    assert set(results["surgical"]["ko"]) >= {"best", "frontier"}
    assert set(results["peaks"]["ko"]) >= {"en_transfer_layer", "loc_localization_layer"}
    assert results["peaks"]["ko"]["en_transfer_layer"] in (4, 10)
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["langs"] == ["ko"] and config["settings"]["limit"] == 3
    assert config["versions"]["transformer-lens"].startswith("3.")
    report = (out / "report.md").read_text()
    for figure in FIGURES:
        assert f"figures/{figure}.png" in report


@pytest.mark.slow
def test_run_on_a_blend_folder_scores_blend_localization_items(blend_root, tmp_path):
    out = tmp_path / "blend-run"
    argv = ["run", "--out", str(out), "--data", str(blend_root), *QUICK]
    argv[argv.index("--layers") + 1 : argv.index("--alphas")] = ["10"]
    assert cli.main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["data"] == str(blend_root)
    results = json.loads((out / "results.json").read_text())
    assert results["sweeps"]["ko"]["en"]["layers"] == [10]
    unsteered = next(p for p in results["plane"]["ko"] if p["label"] == "unsteered")
    # Three BLEnD eval items: the share is a multiple of 1/3 with an interval around it.
    assert unsteered["localization"] * 3 == pytest.approx(round(unsteered["localization"] * 3))
    assert unsteered["localization_ci"][0] <= unsteered["localization"]


@pytest.mark.slow
def test_second_run_skips_every_step(quick_run, capsys):
    before = (quick_run / "results.json").read_text()
    assert cli.main(["run", "--out", str(quick_run), *QUICK]) == 0
    err = capsys.readouterr().err
    assert err.count("already done, skipped") == 8
    assert (quick_run / "results.json").read_text() == before


@pytest.mark.slow
def test_different_settings_are_refused_and_nothing_changes(quick_run, capsys):
    before = (quick_run / "config.json").read_text()
    argv = ["run", "--out", str(quick_run), *QUICK[:-1], "--seed", "7", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "seed" in err and "--force" in err
    assert (quick_run / "config.json").read_text() == before


@pytest.mark.slow
def test_layers_out_of_range_exit_nonzero_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--langs", "ko", "--layers", "3", "18", "--device", "cpu"]
    assert cli.main(argv) == 2
    assert "--layers [18] out of range: the model has layers 0..17" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_killed_sweep_resumes_to_identical_results(quick_run, tmp_path, monkeypatch):
    from lens_steer.evaluate import engine

    out = tmp_path / "run"
    # Reuse every finished step but the sweep, which is redone (killed, then resumed).
    shutil.copytree(quick_run, out)
    shutil.rmtree(out / "steps" / "sweep")
    reference_sweep = (quick_run / "steps" / "sweep" / "sweep_ko.json").read_text()

    real_chunk = engine._fast_chunk
    calls = {"n": 0}

    def dying_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill in the middle of the sweep")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(engine, "_fast_chunk", dying_chunk)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["run", "--out", str(out), *QUICK])
    checkpoint = out / "steps" / "sweep" / "sweep_ko.ckpt.jsonl"
    survived = checkpoint.read_text().splitlines()
    assert len(survived) == 2  # the header and the prompt chunk finished before the kill
    assert not (out / "steps" / "sweep" / "_done.json").exists()

    monkeypatch.setattr(engine, "_fast_chunk", real_chunk)
    assert cli.main(["run", "--out", str(out), *QUICK]) == 0
    assert (out / "steps" / "sweep" / "sweep_ko.json").read_text() == reference_sweep
    resumed = checkpoint.read_text().splitlines()
    reference = (quick_run / "steps" / "sweep" / "sweep_ko.ckpt.jsonl").read_text().splitlines()
    assert len(resumed) == len(reference) > 2
    assert resumed[:2] == survived  # reused, not recomputed
