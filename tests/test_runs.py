"""Run folders: settings recorded once, mismatches refused, --force, done markers."""

from __future__ import annotations

import json

import pytest

from lens_steer.runs import SettingsMismatchError, check_settings, open_run_folder

SETTINGS = {
    "model": "gemma-3-270m",
    "langs": ["ko", "id"],
    "layers": None,
    "seed": 0,
    "device": "cpu",
}


def test_new_folder_records_settings_and_versions(tmp_path):
    run = open_run_folder(tmp_path / "run", SETTINGS)
    config = json.loads((run.root / "config.json").read_text())
    assert config["settings"] == SETTINGS
    assert config["versions"]["torch"] != "not installed"
    assert "transformer-lens" in config["versions"]


def test_reopening_with_same_settings_keeps_steps(tmp_path):
    run = open_run_folder(tmp_path / "run", SETTINGS)
    run.mark_done("collect", {"n": 3})
    again = open_run_folder(tmp_path / "run", {**SETTINGS, "langs": ("ko", "id"), "device": "cuda"})
    assert again.is_done("collect") and again.done_summary("collect")["n"] == 3
    assert not again.is_done("sweep")


def test_different_settings_are_refused_without_writing(tmp_path):
    run = open_run_folder(tmp_path / "run", SETTINGS)
    before = (run.root / "config.json").read_text()
    with pytest.raises(SettingsMismatchError, match=r"seed: folder has 0, now 1.*--force"):
        open_run_folder(tmp_path / "run", {**SETTINGS, "seed": 1})
    assert (run.root / "config.json").read_text() == before
    assert check_settings(tmp_path / "run", {**SETTINGS, "seed": 1, "langs": ["ko"]}) == [
        "langs",
        "seed",
    ]


def test_force_clears_the_old_run(tmp_path):
    run = open_run_folder(tmp_path / "run", SETTINGS)
    run.mark_done("collect")
    (run.root / "results.json").write_text("{}")
    forced = open_run_folder(tmp_path / "run", {**SETTINGS, "seed": 1}, force=True)
    assert not forced.is_done("collect")
    assert not (forced.root / "results.json").exists()
    assert forced.read_settings()["seed"] == 1


def test_out_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        open_run_folder(path, SETTINGS)
