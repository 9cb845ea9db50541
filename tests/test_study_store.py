"""Run folders: never wipe what is not ours, one run at a time, resume where a run stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from lens_steer.evaluate import engine
from lens_steer.study import run_study
from lens_steer.study.settings import RUNTIME_ONLY
from lens_steer.study.store import (
    LOCK,
    MARKER,
    OWN_ENTRIES,
    RunFolder,
    RunLockedError,
    SettingsMismatchError,
    check_settings,
    open_run_folder,
    prepare_run_folder,
    run_lock,
)

pytestmark = pytest.mark.filterwarnings("ignore:target zz:UserWarning")  # small fixture splits

SETTINGS = {"model": "tiny", "targets": ["zz"], "seed": 0, "device": None, "batch_size": 16}
RUNTIME = set(RUNTIME_ONLY)


def run(settings, out, model, **options):
    logs: list[str] = []
    results = run_study(settings, out, model=model, show_progress=False, log=logs.append, **options)
    return results, logs


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- --force and folders that are not ours -------------------------------------------------------


def test_force_never_touches_a_folder_lens_steer_did_not_make(
    tiny_study_settings, tiny_model, tmp_path
):
    """The old defect: ``--out . --force`` wiped the working folder, ``.git`` included."""
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (work / "results.json").write_text("{}")  # a name we would write too: still not ours
    for force in (False, True):
        with pytest.raises(
            ValueError,
            match=r"is a non-empty folder that is not a lens_steer run "
            r"folder \(no \.lens_steer_run marker; it holds \.git, results\.json\)",
        ):
            run(tiny_study_settings(), work, tiny_model, force=force)
    assert (work / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (work / "results.json").read_text() == "{}"
    assert sorted(p.name for p in work.iterdir()) == [".git", "results.json"]


def test_force_on_our_run_folder_replaces_only_our_entries(tiny_run_copy):
    root = tiny_run_copy
    (root / "my_notes.txt").write_text("keep me")
    (root / "my_analysis").mkdir()
    (root / "my_analysis" / "plot.py").write_text("print(1)")
    recorded = RunFolder(root).read_settings()
    assert recorded is not None and (root / MARKER).is_file()
    folder = open_run_folder(root, {**recorded, "seed": 1}, RUNTIME, force=True)
    assert (root / "my_notes.txt").read_text() == "keep me"
    assert (root / "my_analysis" / "plot.py").read_text() == "print(1)"
    for name in ("steps", "figures", "results.json", "report.md", "items.parquet"):
        assert not (root / name).exists(), name
    assert folder.read_settings()["seed"] == 1 and (root / MARKER).is_file()
    assert set(OWN_ENTRIES) >= {MARKER, "config.json", "steps", "figures", "items.parquet"}


def test_other_settings_are_refused_without_force_and_nothing_changes(
    tiny_run_copy, tiny_study_settings, tiny_model
):
    before = (tiny_run_copy / "config.json").read_text()
    with pytest.raises(SettingsMismatchError, match=r"seed: folder has 0, now 1.*pass --force"):
        run(tiny_study_settings(seed=1), tiny_run_copy, tiny_model)
    assert (tiny_run_copy / "config.json").read_text() == before
    assert not (tiny_run_copy / LOCK).exists()


def test_runtime_only_settings_may_differ(tmp_path):
    open_run_folder(tmp_path / "run", SETTINGS, RUNTIME)
    assert (
        check_settings(tmp_path / "run", {**SETTINGS, "device": "cuda", "batch_size": 4}, RUNTIME)
        == []
    )
    assert check_settings(
        tmp_path / "run", {**SETTINGS, "seed": 2, "targets": ["ko"]}, RUNTIME
    ) == ["seed", "targets"]


def test_an_empty_folder_is_accepted_and_a_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = open_run_folder(empty, SETTINGS, RUNTIME)
    assert (empty / MARKER).is_file()
    config = json.loads((empty / "config.json").read_text())
    assert config["settings"] == SETTINGS and config["versions"]["torch"] != "not installed"
    assert not folder.is_done("collect")
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        prepare_run_folder(path, SETTINGS, RUNTIME, force=True)


def test_done_markers_list_files_relative_to_the_folder(tmp_path):
    folder = open_run_folder(tmp_path / "run", SETTINGS, RUNTIME)
    figure = folder.figures / "plane.html"
    figure.parent.mkdir()
    figure.write_text("<html>")
    folder.mark_done("plane", {"seconds": 1.5}, [figure])
    assert folder.is_done("plane")
    assert folder.done_summary("plane") == {
        "step": "plane",
        "seconds": 1.5,
        "files": ["figures/plane.html"],
    }
    figure.unlink()
    assert not folder.is_done("plane")  # a listed figure is missing: the step is not done
    (folder.step_dir("geometry") / "_done.json").write_text("{torn")
    assert not folder.is_done("geometry")


# --- the lock ------------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_folder_is_refused(tiny_run_copy, tiny_study_settings, tiny_model):
    with run_lock(tiny_run_copy, log=lambda m: None):
        holder = json.loads((tiny_run_copy / LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(
            RunLockedError,
            match=rf"is in use by another run \(process "
            rf"{os.getpid()} on {socket.gethostname()}\)",
        ):
            run(tiny_study_settings(), tiny_run_copy, tiny_model)
    assert not (tiny_run_copy / LOCK).exists()  # released when the block ends


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    pid = dead_pid()
    (tmp_path / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    logs: list[str] = []
    with run_lock(tmp_path, log=logs.append):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert logs == [f"[lens-steer] taking over the stale lock of process {pid} (no longer running)"]
    assert not (tmp_path / LOCK).exists()


def test_a_lock_held_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead_pid(), "host": "other-machine"}))
    with pytest.raises(RunLockedError, match="on other-machine"):
        with run_lock(tmp_path, log=lambda m: None):
            pass
    assert (tmp_path / LOCK).exists()


# --- resuming ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread", "html_figures")
def test_a_step_whose_figure_is_missing_is_redone(tiny_run_copy, tiny_study_settings, tiny_model):
    """A crash after a step's results but before its figures: the figure comes back."""
    figure = tiny_run_copy / "figures" / "sweep_zz-Testland.html"
    assert (
        "figures/sweep_zz-Testland.html" in RunFolder(tiny_run_copy).done_summary("sweep")["files"]
    )
    figure.unlink()
    _, logs = run(tiny_study_settings(), tiny_run_copy, tiny_model)
    assert figure.is_file()
    assert any(line.startswith("[lens-steer] sweep: done in") for line in logs)
    for step in ("collect", "vectors", "geometry", "surgical", "plane", "findings"):
        assert f"[lens-steer] {step}: already done, loaded" in logs


def count_steered_chunks(monkeypatch, die_at: int | None = None) -> dict[str, int]:
    real = engine._fast_chunk
    calls = {"n": 0}

    def chunk(model, prompts, settings):
        if len(settings) > 1:  # a sweep chunk (references are scored with one steering)
            calls["n"] += 1
            if calls["n"] == die_at:
                raise KeyboardInterrupt("simulated kill in the middle of the sweep")
        return real(model, prompts, settings)

    monkeypatch.setattr(engine, "_fast_chunk", chunk)
    return calls


@pytest.mark.usefixtures("one_thread", "html_figures")
def test_a_killed_sweep_resumes_from_its_checkpoint_with_another_batch_size(
    tiny_run, tiny_run_copy, tiny_study_settings, tiny_model, monkeypatch
):
    root = tiny_run_copy
    sweep_dir = root / "steps" / "sweep"
    for path in sweep_dir.iterdir():
        path.unlink()
    calls = count_steered_chunks(monkeypatch, die_at=3)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_study_settings(batch_size=4), root, tiny_model)
    dev_checkpoint = sweep_dir / "zz-Testland_dev.ckpt.jsonl"
    survived = dev_checkpoint.read_text().splitlines()
    assert len(survived) == 1 + 2  # the header and the two chunks finished before the kill
    assert not (sweep_dir / "_done.json").exists() and not (root / LOCK).exists()

    calls = count_steered_chunks(monkeypatch)
    _, logs = run(tiny_study_settings(batch_size=8), root, tiny_model)  # runtime-only: accepted
    assert "[lens-steer] collect: already done, loaded" in logs
    resumed = dev_checkpoint.read_text().splitlines()
    assert resumed[:3] == survived  # read back, not recomputed
    units = [json.loads(line) for line in resumed[1:]]
    n_dev = sum(len(unit["payload"]) for unit in units)
    n_eval = sum(
        len(json.loads(line)["payload"])
        for line in (sweep_dir / "zz-Testland_eval.ckpt.jsonl").read_text().splitlines()[1:]
    )
    assert calls["n"] == -(-(n_dev - 8) // 8) + -(-n_eval // 8)  # only the unfinished requests

    for split in ("dev", "eval"):
        name = f"zz-Testland_{split}__points.parquet"
        ours = pq.read_table(sweep_dir / name).to_pydict()
        reference = pq.read_table(tiny_run / "steps" / "sweep" / name).to_pydict()
        assert ours["point"] == reference["point"] and ours["item"] == reference["item"]
        as_float = [[np.nan if v is None else v for v in t["margin"]] for t in (ours, reference)]
        np.testing.assert_allclose(as_float[0], as_float[1], atol=1e-5)
