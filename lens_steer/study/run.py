"""Run the whole study: collect → vectors → geometry → sweeps → surgical → plane → findings.

:func:`run_study` is the one orchestration. In memory (``out=None``) it calls the steps of
:mod:`lens_steer.study.steps` in order and returns a :class:`StudyResults`. With a run folder it
is a thin loop over the same steps: a finished step is loaded instead of recomputed, a new one is
computed, saved atomically with its figures, and marked done last; sweeps and the surgical grid
also checkpoint every prompt chunk, so a killed run resumes inside them. Everything that can be
checked without the model (settings, data files, targets, split sizes) is checked before the
model loads, and nothing is written until it passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformer_lens import HookedTransformer

from lens_steer._io import read_json, write_json_atomic, write_text_atomic
from lens_steer.evaluate.plane import Plane, build_plane
from lens_steer.evaluate.summary import summarize_sweep
from lens_steer.evaluate.tables import item_table, write_items
from lens_steer.figures import (
    mixing_figure,
    pca_figure,
    pca_grid_figure,
    perpendicularity_figure,
    plane_figure,
    save_figure,
    sweep_figure,
)
from lens_steer.models import load_model, peek_n_layers
from lens_steer.stats.findings import Finding
from lens_steer.study import io, steps
from lens_steer.study.data import StudyData, load_study_data
from lens_steer.study.findings import study_findings
from lens_steer.study.results import StudyResults, build_results, mixing_rows, perpendicularity_rows
from lens_steer.study.settings import RUNTIME_ONLY, StudySettings, validate_layers
from lens_steer.study.store import RunFolder, open_run_folder, prepare_run_folder, run_lock

STEPS: tuple[str, ...] = (
    "collect", "vectors", "geometry", "sweep", "surgical", "plane", "findings", "report",
)  # fmt: skip
SPLITS = ("dev", "eval")


class _Model:
    """The model, loaded on first use (a fully finished run folder never loads it)."""

    def __init__(self, settings: StudySettings, model: HookedTransformer | None) -> None:
        self.settings, self.model = settings, model

    def get(self) -> HookedTransformer:
        if self.model is None:
            self.model = load_model(self.settings.model, device=self.settings.device)
            validate_layers(self.settings, self.model.cfg.n_layers)
        return self.model

    def n_layers(self) -> int:
        if self.model is not None:
            return int(self.model.cfg.n_layers)
        peeked = peek_n_layers(self.settings.model)
        return peeked if peeked is not None else int(self.get().cfg.n_layers)


def _figure(stem: Path, fig: Any, **options: Any) -> list[Path]:
    """Save a figure; the files written (a failed image is a warning, not in the list)."""
    return list(save_figure(fig, stem, **options).values())


def geometry_figures(geometry: steps.Geometry, settings: StudySettings, folder: Path) -> list[Path]:
    """pca (slider in HTML, small multiples as images), mixing and perpendicularity."""
    files: list[Path] = []
    if geometry.pca:
        files += _figure(
            folder / "pca", pca_figure(geometry.pca), static=pca_grid_figure(geometry.pca)
        )
    if geometry.mixing:
        rows = mixing_rows(geometry, settings.n_bootstrap, settings.seed)
        files += _figure(folder / "mixing", mixing_figure(rows))
    rows = perpendicularity_rows(geometry)
    if rows:
        fig = perpendicularity_figure(rows, margin=settings.equivalence_margin)
        files += _figure(folder / "perpendicularity", fig)
    return files


def sweep_figures(
    target: str,
    sweep: steps.LayerSweep,
    axes: Sequence[str | None],
    settings: StudySettings,
    folder: Path,
) -> list[Path]:
    summary = summarize_sweep(
        sweep, [a for a in axes if a], n_bootstrap=settings.n_bootstrap, seed=settings.seed
    )
    return _figure(folder / f"sweep_{target.replace(':', '-')}", sweep_figure(summary, axes))


def plane_figures(target: str, plane: Plane, folder: Path) -> list[Path]:
    return _figure(folder / f"plane_{target.replace(':', '-')}", plane_figure(plane))


class _Runner:
    """The loop over steps: compute (or load) each, save, draw, mark done."""

    def __init__(
        self,
        settings: StudySettings,
        data: StudyData,
        model: _Model,
        run: RunFolder | None,
        show_progress: bool,
        log: Callable[[str], None],
    ) -> None:
        self.settings, self.data, self.model, self.run = settings, data, model, run
        self.show_progress, self.log = show_progress, log
        self.results = StudyResults(settings, data)

    def step(
        self,
        name: str,
        compute: Callable[[], Any],
        save: Callable[[Any, Path], list[Path]],
        load: Callable[[Path], Any],
        draw: Callable[[Any, Path], list[Path]] | None = None,
    ) -> Any:
        if self.run is not None and self.run.is_done(name):
            self.log(f"[lens-steer] {name}: already done, loaded")
            self.results.timings[name] = self.run.done_summary(name).get("seconds", 0.0)
            return load(self.run.step_dir(name))
        start = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - start
        self.results.timings[name] = round(seconds, 2)
        if self.run is not None:
            files = save(value, self.run.step_dir(name))
            if draw is not None:
                files += draw(value, self.run.figures)
            self.run.mark_done(name, {"seconds": round(seconds, 2)}, files)
        self.log(f"[lens-steer] {name}: done in {seconds:.1f}s")
        return value

    def checkpoint(self, name: str) -> Path | None:
        return None if self.run is None else self.run.step_dir(name) / f"{name}.ckpt.jsonl"

    def go(self) -> StudyResults:
        s, data, r = self.settings, self.data, self.results
        progress = self.show_progress
        r.collected = self.step(
            "collect",
            lambda: steps.collect(self.model.get(), data, s, show_progress=progress),
            io.save_collected, io.load_collected,
        )  # fmt: skip
        r.vectors = self.step(
            "vectors",
            lambda: steps.vectors(r.collected, data, s),  # type: ignore[arg-type]
            io.save_vectors,
            io.load_vectors,
        )
        r.geometry = self.step(
            "geometry",
            lambda: steps.geometry(r.collected, r.vectors, s, show_progress=progress),  # type: ignore[arg-type]
            io.save_geometry, io.load_geometry,
            lambda value, folder: geometry_figures(value, s, folder),
        )  # fmt: skip
        r.sweeps = self.step(
            "sweep", self._sweeps, self._save_sweeps, self._load_sweeps, self._draw_sweeps
        )
        r.searches = self.step("surgical", self._searches, self._save_searches, self._load_searches)
        r.planes = self.step(
            "plane",
            lambda: {key: build_plane(search) for key, search in r.searches.items()},
            lambda planes, folder: [
                write_json_atomic(folder / "planes.json", {k: p.to_json() for k, p in planes.items()})
            ],
            lambda folder: {
                k: Plane.from_json(v) for k, v in read_json(folder / "planes.json").items()
            },
            lambda planes, folder: [f for k, p in planes.items() for f in plane_figures(k, p, folder)],
        )  # fmt: skip
        r.findings = self.step(
            "findings", self._findings,
            lambda found, folder: [
                write_json_atomic(folder / "findings.json", [f.to_json() for f in found])
            ],
            lambda folder: [Finding(**f) for f in read_json(folder / "findings.json")],
        )  # fmt: skip
        if self.run is not None:
            self._report()
        return r

    # ------------------------------------------------------------------------- steps
    def _sweeps(self) -> dict[str, dict[str, steps.LayerSweep]]:
        out: dict[str, dict[str, steps.LayerSweep]] = {}
        for key in self.data.items:
            out[key] = {}
            for split in SPLITS:
                ckpt = (
                    None
                    if self.run is None
                    else self.run.step_dir("sweep") / f"{key.replace(':', '-')}_{split}.ckpt.jsonl"
                )
                out[key][split] = steps.sweep(
                    self.model.get(), self.data, self.results.vectors[key], self.results.collected,  # type: ignore[arg-type]
                    self.settings, key, split, checkpoint=ckpt, show_progress=self.show_progress,
                )  # fmt: skip
        return out

    def _save_sweeps(
        self, sweeps: dict[str, dict[str, steps.LayerSweep]], folder: Path
    ) -> list[Path]:
        return [f for key, by in sweeps.items() for split, sw in by.items()
                for f in io.save_sweep(sw, folder / f"{key.replace(':', '-')}_{split}")]  # fmt: skip

    def _load_sweeps(self, folder: Path) -> dict[str, dict[str, steps.LayerSweep]]:
        return {key: {split: io.load_sweep(folder / f"{key.replace(':', '-')}_{split}") for split in SPLITS}
                for key in self.data.items}  # fmt: skip

    def _draw_sweeps(
        self, sweeps: dict[str, dict[str, steps.LayerSweep]], folder: Path
    ) -> list[Path]:
        return [f for key, by in sweeps.items()
                for f in sweep_figures(key, by["eval"], self.data.axes[key], self.settings, folder)]  # fmt: skip

    def _searches(self) -> dict[str, steps.SurgicalSearch]:
        out = {}
        for key in self.data.items:
            ckpt = (
                None
                if self.run is None
                else self.run.step_dir("surgical") / f"{key.replace(':', '-')}.ckpt.jsonl"
            )
            out[key] = steps.surgical(
                self.model.get(), self.data, self.results.vectors[key], self.results.collected,  # type: ignore[arg-type]
                self.settings, key, checkpoint=ckpt, show_progress=self.show_progress,
            )  # fmt: skip
        return out

    def _save_searches(self, searches: dict[str, steps.SurgicalSearch], folder: Path) -> list[Path]:
        return [
            f
            for key, s in searches.items()
            for f in io.save_search(s, folder / key.replace(":", "-"))
        ]

    def _load_searches(self, folder: Path) -> dict[str, steps.SurgicalSearch]:
        return {key: io.load_search(folder / key.replace(":", "-")) for key in self.data.items}

    def _findings(self) -> list[Finding]:
        r = self.results
        sizes = {
            key: int(next(iter(v.values())).provenance.get("n_a", 0)) if v else 0
            for key, v in r.vectors.items()
        }
        return study_findings(
            r.sweeps, r.searches, r.geometry, self.data.axes, self.model.n_layers(), sizes,  # type: ignore[arg-type]
            self.settings,
        )  # fmt: skip

    def _report(self) -> None:
        from lens_steer.report import render_report

        assert self.run is not None
        start = time.perf_counter()
        config = read_json(self.run.root / "config.json")
        results = build_results(self.results, config)
        root = self.run.root
        sets = [
            ps for by in self.results.sweeps.values() for sw in by.values() for ps in (sw.points,)
        ]
        sets += [
            ps for search in self.results.searches.values() for ps in (search.dev, search.eval)
        ]
        write_items(item_table(sets), root / "items.parquet")
        write_json_atomic(root / "results.json", results)
        write_text_atomic(root / "report.md", render_report(results, root))
        self.run.mark_done("report", {"seconds": round(time.perf_counter() - start, 2)},
                           [root / "results.json", root / "report.md", root / "items.parquet"])  # fmt: skip
        self.log(f"[lens-steer] report: {root / 'report.md'}")


def run_study(
    settings: StudySettings,
    out: str | Path | None = None,
    *,
    model: HookedTransformer | None = None,
    force: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> StudyResults:
    """Run every step of the study, in memory or into a resumable run folder.

    Args:
        settings: the study's settings (see :class:`StudySettings`).
        out: run folder (created; reused to resume); ``None`` keeps everything in memory.
        model: an already loaded model (else ``settings.model`` is loaded when first needed).
        force: replace the results of a run folder made with other settings (only a folder
            lens_steer made; only the files it wrote).
        show_progress: tqdm bars.
        log: where step messages go.

    Example:
        >>> results = run_study(StudySettings(targets=("ko",), limit=8), "runs/ko")  # doctest: +SKIP
        >>> [f.verdict for f in results.findings]  # doctest: +SKIP
    """
    data = load_study_data(settings, model_given=model is not None)  # checked before loading
    holder = _Model(settings, model)
    if model is not None:
        validate_layers(settings, model.cfg.n_layers)
    else:
        peeked = peek_n_layers(settings.model)
        if peeked is not None:
            validate_layers(settings, peeked)
    if out is None:
        return _Runner(settings, data, holder, None, show_progress, log).go()
    root = Path(out)
    prepare_run_folder(root, settings.to_json(), set(RUNTIME_ONLY), force=force)
    with run_lock(root, log):
        run = open_run_folder(
            root, settings.to_json(), set(RUNTIME_ONLY), force=force,
            extra_config={"data": data.describe()},
        )  # fmt: skip
        return _Runner(settings, data, holder, run, show_progress, log).go()


def redraw_figures(out: str | Path, settings: StudySettings) -> list[Path]:
    """Re-render every figure of a finished run folder from its saved results (no model)."""
    run = RunFolder(Path(out))
    # No model is loaded here, so its source is not checked (a run made with a passed model).
    data = load_study_data(settings, model_given=True)
    files: list[Path] = []
    if run.is_done("geometry") or (run.root / "steps" / "geometry" / "geometry.json").is_file():
        files += geometry_figures(io.load_geometry(run.step_dir("geometry")), settings, run.figures)
    for key in data.items:
        stem = run.step_dir("sweep") / f"{key.replace(':', '-')}_eval"
        if stem.with_suffix(".json").is_file():
            files += sweep_figures(key, io.load_sweep(stem), data.axes[key], settings, run.figures)
    planes = run.root / "steps" / "plane" / "planes.json"
    if planes.is_file():
        for key, obj in read_json(planes).items():
            files += plane_figures(key, Plane.from_json(obj), run.figures)
    return files
