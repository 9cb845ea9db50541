"""The study, step by step, into a run folder: collect → vectors → pca → perpendicularity →
sweep → surgical → plane → report.

Each step reads what earlier steps wrote, writes its own files atomically under
``steps/{step}/`` and marks itself done last, so ``run_study`` on an existing folder skips
finished steps; the sweep and surgical steps also checkpoint every prompt chunk, so a killed run
resumes inside them. The CLI and the notebook call these functions; nothing here is specific to
the shell.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from transformer_lens import HookedTransformer

from lens_steer._io import read_json, write_json_atomic
from lens_steer.cache import ResidualSet
from lens_steer.data import limit_probe_set, load_probe_set
from lens_steer.data.blend_probe import blend_probe_set, is_blend_root
from lens_steer.data.records import ENGLISH, LOC_LANGUAGES, ProbeSet
from lens_steer.models import DEFAULT_MODEL, load_model
from lens_steer.runs import RunFolder, open_run_folder

STEPS: tuple[str, ...] = (
    "collect",
    "vectors",
    "pca",
    "perpendicularity",
    "sweep",
    "surgical",
    "plane",
    "report",
)


@dataclass(frozen=True)
class StudySettings:
    """Every setting of a study run; recorded in ``config.json`` and beside every number.

    ``alphas`` are relative to the mean residual norm at the steered layer unless
    ``alpha_mode="raw"``. ``layers`` are the sweep layers (all when empty); residuals are always
    collected at every layer. ``limit`` keeps the first N items per set and split (quick runs).
    """

    model: str = DEFAULT_MODEL
    langs: tuple[str, ...] = ("ko", "id")
    data: str = "builtin"
    layers: tuple[int, ...] = ()
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0)
    alpha_mode: str = "relative"
    transfer_layers: tuple[int, ...] = ()
    transfer_alphas: tuple[float, ...] = (0.25, 0.5)
    local_layers: tuple[int, ...] = ()
    local_alphas: tuple[float, ...] = (0.5, 1.0)
    criterion: str = "sum_gain"
    position: str = "last"
    limit: int | None = None
    seed: int = 0
    n_bootstrap: int = 1000
    vector_bootstrap: int = 200
    device: str | None = None
    batch_size: int = 16

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validate_settings(settings: StudySettings) -> None:
    """Refuse bad settings before anything is loaded or written."""
    unknown = [lang for lang in settings.langs if lang not in LOC_LANGUAGES]
    if unknown:
        raise ValueError(
            f"Unknown language(s) {unknown}; the LOC languages are {list(LOC_LANGUAGES)}"
        )
    if not settings.langs:
        raise ValueError("Give at least one LOC language (--langs)")
    if settings.data != "builtin" and not Path(settings.data).exists():
        raise FileNotFoundError(
            f"--data {settings.data} does not exist; give 'builtin', a BLEnD folder or a JSONL file"
        )
    if Path(settings.data).is_dir() and not is_blend_root(settings.data):
        raise ValueError(
            f"--data {settings.data} is a folder without BLEnD's annotations/ and questions/"
        )
    if settings.limit is not None and settings.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {settings.limit}")
    if settings.alpha_mode not in ("relative", "raw"):
        raise ValueError(f"alpha_mode must be 'relative' or 'raw', got {settings.alpha_mode!r}")
    for name in ("alphas", "transfer_alphas", "local_alphas"):
        values = getattr(settings, name)
        if not values or any(value != value for value in values):
            raise ValueError(f"--{name.replace('_', '-')} must be non-empty numbers, got {values}")
    if settings.n_bootstrap < 1 or settings.vector_bootstrap < 0:
        raise ValueError("n_bootstrap must be >= 1 and vector_bootstrap >= 0")


def validate_layers(settings: StudySettings, n_layers: int) -> None:
    """Layers must exist in the model: name the bad ones and the valid range."""
    for name in ("layers", "transfer_layers", "local_layers"):
        bad = [layer for layer in getattr(settings, name) if not 0 <= layer < n_layers]
        if bad:
            raise ValueError(
                f"--{name.replace('_', '-')} {bad} out of range: the model has layers 0..{n_layers - 1}"
            )


def load_study_data(settings: StudySettings) -> ProbeSet:
    """The probe set of the study, restricted to the languages and cut to ``limit``.

    ``settings.data`` is ``"builtin"``, a BLEnD folder (its localization items replace the
    built-in ones; see :mod:`lens_steer.data.blend_probe`) or a user JSONL file.
    """
    langs = [ENGLISH, *settings.langs]
    if settings.data == "builtin":
        probe_set = load_probe_set(langs=langs)
    elif is_blend_root(settings.data):
        probe_set = blend_probe_set(settings.data, settings.langs, load_probe_set(langs=langs))
    else:
        from lens_steer.data import load_jsonl

        loaded = load_jsonl(settings.data)
        probe_set = replace(
            loaded,
            transfer=[item for item in loaded.transfer if item.lang in langs],
            localization=[item for item in loaded.localization if item.lang in langs],
            parallel=[item for item in loaded.parallel if item.lang in langs],
        )
        missing = [
            lang
            for lang in settings.langs
            if not any(item.lang == lang for item in probe_set.localization)
        ]
        if missing:
            raise ValueError(f"{settings.data}: no localization items for language(s) {missing}")
    return limit_probe_set(probe_set, settings.limit)


@dataclass
class Study:
    """A study run in progress: its folder, settings, and lazily loaded model and data."""

    run: RunFolder
    settings: StudySettings
    show_progress: bool = True
    _model: HookedTransformer | None = None
    _probe: ProbeSet | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> HookedTransformer:
        if self._model is None:
            self._model = load_model(self.settings.model, device=self.settings.device)
        return self._model

    @property
    def probe(self) -> ProbeSet:
        if self._probe is None:
            self._probe = load_study_data(self.settings)
        return self._probe

    def dir(self, step: str) -> Path:
        path = self.run.step_dir(step)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _residuals(self, name: str) -> ResidualSet:
        return ResidualSet.load(self.run.step_dir("collect") / name)

    # ------------------------------------------------------------------------------------
    # steps
    # ------------------------------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        """Residuals at every layer: parallel sentences (English + LOC) and localization forms."""
        from lens_steer.geometry import collect_localization, collect_parallel

        options: dict[str, Any] = {
            "position": self.settings.position,
            "batch_size": self.settings.batch_size,
            "show_progress": self.show_progress,
        }
        folder = self.dir("collect")
        parallel = collect_parallel(
            self.model, self.probe, [ENGLISH, *self.settings.langs], split="fit", **options
        )
        parallel.save(folder / "parallel")
        localization = collect_localization(
            self.model, self.probe, list(self.settings.langs), split="fit", **options
        )
        for form, residuals in localization.items():
            residuals.save(folder / f"localization_{form}")
        return {
            "n_parallel": parallel.n_prompts,
            "n_localization": {form: r.n_prompts for form, r in localization.items()},
            "layers": list(parallel.layers),
            "model_id": parallel.model_id,
        }

    def vectors(self) -> dict[str, Any]:
        """EN (English − L, parallel) and LOC (explicit − implicit) vectors per language."""
        from lens_steer.geometry import en_vectors, loc_vectors

        langs = list(self.settings.langs)
        parallel = self._residuals("parallel")
        localization = {
            form: self._residuals(f"localization_{form}") for form in ("explicit", "implicit")
        }
        n_bootstrap = self.settings.vector_bootstrap
        en = en_vectors(
            None,
            self.probe,
            langs,
            parallel=parallel,
            split="fit",
            n_bootstrap=n_bootstrap,
            seed=self.settings.seed,
        )
        loc = loc_vectors(
            None,
            self.probe,
            langs,
            localization=localization,
            split="fit",
            n_bootstrap=n_bootstrap,
            seed=self.settings.seed + 1,
        )
        folder = self.dir("vectors")
        for kind, vectors in (("en", en), ("loc", loc)):
            for lang, vector in vectors.items():
                vector.save(folder / f"{kind}_{lang}")
        norms = {lang: parallel.where_lang(lang).mean_norm().tolist() for lang in langs}
        write_json_atomic(folder / "reference_norms.json", norms)
        return {"langs": langs, "n_bootstrap": self.settings.vector_bootstrap}

    def load_vectors(self, kind: str) -> dict[str, Any]:
        from lens_steer.geometry import ContrastVector

        folder = self.run.step_dir("vectors")
        return {
            lang: ContrastVector.load(folder / f"{kind}_{lang}") for lang in self.settings.langs
        }

    def reference_norms(self) -> dict[str, list[float]]:
        return dict(read_json(self.run.step_dir("vectors") / "reference_norms.json"))

    def pca(self) -> dict[str, Any]:
        """Per-layer PCA and mixing scores of the parallel sentences, with their figures."""
        from lens_steer.figures import save_figure
        from lens_steer.figures.geometry import mixing_figure, pca_figure
        from lens_steer.geometry import mixing_by_layer, pca_by_layer

        parallel = self._residuals("parallel")
        pcas = [
            pca_by_layer(parallel, standardize=standardized, show_progress=False)
            for standardized in (False, True)
        ]
        mixing = [
            row
            for standardized in (False, True)
            for row in mixing_by_layer(parallel, standardize=standardized, show_progress=False)
        ]
        explained = [
            {
                "standardized": pca.standardized,
                "layer": layer,
                "ratio": [float(x) for x in pca.explained_variance_ratio[slot]],
            }
            for pca in pcas
            for slot, layer in enumerate(pca.layers)
        ]
        write_json_atomic(
            self.dir("pca") / "pca.json", {"explained_variance": explained, "mixing": mixing}
        )
        save_figure(pca_figure(pcas), self.run.figures / "pca")
        save_figure(mixing_figure(mixing), self.run.figures / "mixing")
        return {"n_prompts": parallel.n_prompts}

    def perpendicularity(self) -> dict[str, Any]:
        """cos(EN, LOC) per language and layer, raw and standardized, against the null band."""
        from lens_steer.figures import save_figure
        from lens_steer.figures.geometry import perpendicularity_figure
        from lens_steer.geometry import null_band, perpendicularity_table

        scale = ResidualSet.concat(
            [
                self._residuals("parallel"),
                self._residuals("localization_explicit"),
                self._residuals("localization_implicit"),
            ]
        )
        rows = perpendicularity_table(
            self.load_vectors("en"), self.load_vectors("loc"), scale=scale
        )
        band = null_band(int(scale.acts.shape[-1]))
        write_json_atomic(
            self.dir("perpendicularity") / "perpendicularity.json",
            {"null_band": band, "rows": rows},
        )
        save_figure(perpendicularity_figure(rows), self.run.figures / "perpendicularity")
        return {"null_band": band}

    def _layers(self, chosen: Sequence[int], default: Sequence[int]) -> list[int]:
        return list(chosen) if chosen else list(default)

    def _lang_items(self, lang: str) -> tuple[list[Any], list[Any], list[Any]]:
        transfer = [item for item in self.probe.transfer if item.lang == lang]
        local = [item for item in self.probe.localization if item.lang == lang]
        english = [item for item in self.probe.transfer if item.lang == ENGLISH]
        return transfer, local, english

    def sweep(self) -> dict[str, Any]:
        """Single-layer EN- and LOC-steering at every layer and alpha, on the eval split."""
        from lens_steer.evaluate.sweep import layer_sweep
        from lens_steer.figures import save_figure
        from lens_steer.figures.steering import sweep_figure

        en, loc, norms = self.load_vectors("en"), self.load_vectors("loc"), self.reference_norms()
        layers = self._layers(self.settings.layers, range(self.model.cfg.n_layers))
        folder = self.dir("sweep")
        for lang in self.settings.langs:
            if (folder / f"sweep_{lang}.json").is_file():
                continue
            transfer, local, _ = self._lang_items(lang)
            sweep = layer_sweep(
                self.model,
                transfer,
                local,
                {"en": en[lang], "loc": loc[lang]},
                layers=layers,
                alphas=self.settings.alphas,
                alpha_mode=self.settings.alpha_mode,  # type: ignore[arg-type]
                reference_norms=norms[lang],
                split="eval",
                batch_size=self.settings.batch_size,
                checkpoint=folder / f"sweep_{lang}.ckpt.jsonl",
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                show_progress=self.show_progress,
            )
            write_json_atomic(folder / f"sweep_{lang}.json", sweep.to_json())
            save_figure(sweep_figure(sweep), self.run.figures / f"sweep_{lang}")
        return {"layers": layers, "alphas": list(self.settings.alphas)}

    def load_sweep(self, lang: str) -> Any:
        from lens_steer.evaluate.sweep import LayerSweep

        return LayerSweep.from_json(read_json(self.run.step_dir("sweep") / f"sweep_{lang}.json"))

    def surgical(self) -> dict[str, Any]:
        """Grid over (l_T, α_T, l_L, α_L) on dev; Pareto frontier and best point on eval."""
        from lens_steer.evaluate.surgical import surgical_search

        en, loc, norms = self.load_vectors("en"), self.load_vectors("loc"), self.reference_norms()
        n_layers = self.model.cfg.n_layers
        third = max(1, n_layers // 3)
        transfer_layers = self._layers(self.settings.transfer_layers, range(third, 2 * third, 2))
        local_layers = self._layers(self.settings.local_layers, range(2 * third, n_layers, 2))
        folder = self.dir("surgical")
        for lang in self.settings.langs:
            if (folder / f"surgical_{lang}.json").is_file():
                continue
            transfer, local, _ = self._lang_items(lang)
            search = surgical_search(
                self.model,
                transfer,
                local,
                en[lang],
                loc[lang],
                transfer_layers=transfer_layers,
                transfer_alphas=self.settings.transfer_alphas,
                local_layers=local_layers,
                local_alphas=self.settings.local_alphas,
                alpha_mode=self.settings.alpha_mode,  # type: ignore[arg-type]
                reference_norms=norms[lang],
                criterion=self.settings.criterion,  # type: ignore[arg-type]
                batch_size=self.settings.batch_size,
                checkpoint=folder / f"surgical_{lang}.ckpt.jsonl",
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                show_progress=self.show_progress,
            )
            write_json_atomic(folder / f"surgical_{lang}.json", search.to_json())
        return {"transfer_layers": transfer_layers, "local_layers": local_layers}

    def load_search(self, lang: str) -> Any:
        from lens_steer.evaluate.surgical import SurgicalSearch

        path = self.run.step_dir("surgical") / f"surgical_{lang}.json"
        return SurgicalSearch.from_json(read_json(path))

    def plane(self) -> dict[str, Any]:
        """Reference points, best single-layer points and the surgical frontier, on eval."""
        from lens_steer.evaluate.plane import plane_points
        from lens_steer.figures import save_figure
        from lens_steer.figures.steering import plane_figure

        folder = self.dir("plane")
        for lang in self.settings.langs:
            if (folder / f"plane_{lang}.json").is_file():
                continue
            transfer, local, english = self._lang_items(lang)
            plane = plane_points(
                self.model,
                transfer,
                local,
                english,
                self.load_search(lang),
                split="eval",
                batch_size=self.settings.batch_size,
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                show_progress=self.show_progress,
            )
            write_json_atomic(folder / f"plane_{lang}.json", plane.to_json())
            save_figure(plane_figure(plane), self.run.figures / f"plane_{lang}")
        return {"langs": list(self.settings.langs)}

    def load_plane(self, lang: str) -> Any:
        from lens_steer.evaluate.plane import Plane

        return Plane.from_json(read_json(self.run.step_dir("plane") / f"plane_{lang}.json"))

    def report(self) -> dict[str, Any]:
        """``results.json`` (the contract other tools read) and ``report.md``."""
        from lens_steer.report import build_results, render_report

        results = build_results(self)
        write_json_atomic(self.run.root / "results.json", results)
        from lens_steer._io import write_text_atomic

        write_text_atomic(self.run.root / "report.md", render_report(results, self.run))
        return {"langs": list(self.settings.langs)}


StepFn = Callable[[Study], dict[str, Any]]
_STEP_FUNCTIONS: dict[str, StepFn] = {
    "collect": Study.collect,
    "vectors": Study.vectors,
    "pca": Study.pca,
    "perpendicularity": Study.perpendicularity,
    "sweep": Study.sweep,
    "surgical": Study.surgical,
    "plane": Study.plane,
    "report": Study.report,
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "collect": (),
    "vectors": ("collect",),
    "pca": ("collect",),
    "perpendicularity": ("vectors",),
    "sweep": ("vectors",),
    "surgical": ("vectors",),
    "plane": ("surgical",),
    "report": ("pca", "perpendicularity", "sweep", "surgical", "plane"),
}


def open_study(
    out: str | Path,
    settings: StudySettings,
    *,
    force: bool = False,
    show_progress: bool = True,
    model: HookedTransformer | None = None,
) -> Study:
    """Validate settings, then create or reopen the run folder (refused if settings differ)."""
    validate_settings(settings)
    explicit_layers = settings.layers or settings.transfer_layers or settings.local_layers
    if model is None and explicit_layers:
        # Check the layers against the model before the folder is created: nothing is written
        # for a run that cannot work.
        model = load_model(settings.model, device=settings.device)
    if model is not None:
        validate_layers(settings, model.cfg.n_layers)
    run = open_run_folder(out, settings.to_json(), force=force)
    study = Study(run, settings, show_progress=show_progress)
    study._model = model
    return study


def run_step(study: Study, step: str, *, redo: bool = False) -> bool:
    """Run one step unless done (or ``redo``); returns whether it ran.

    Raises:
        ValueError: unknown step, or a step whose inputs are not there yet.
    """
    if step not in _STEP_FUNCTIONS:
        raise ValueError(f"Unknown step {step!r}; steps are {list(STEPS)}")
    if study.run.is_done(step) and not redo:
        return False
    missing = [need for need in _NEEDS[step] if not study.run.is_done(need)]
    if missing:
        raise ValueError(
            f"Step {step!r} needs {missing} first (run them, or `lens-steer run` for all)"
        )
    if step in ("sweep", "surgical", "plane") and redo:
        for path in study.run.step_dir(step).glob(f"{step}_*.json"):
            path.unlink()
    if study._model is not None or step in ("collect", "sweep", "surgical", "plane"):
        validate_layers(study.settings, study.model.cfg.n_layers)
    start = time.perf_counter()
    summary = _STEP_FUNCTIONS[step](study)
    seconds = time.perf_counter() - start
    study.timings[step] = seconds
    study.run.mark_done(step, {**summary, "seconds": round(seconds, 2)})
    return True


def run_study(
    out: str | Path,
    settings: StudySettings,
    *,
    steps: Sequence[str] = STEPS,
    force: bool = False,
    show_progress: bool = True,
    model: HookedTransformer | None = None,
    log: Callable[[str], None] = print,
) -> Study:
    """Run the study's steps in order into ``out``; finished steps are skipped.

    Example:
        >>> study = run_study("runs/quick", StudySettings(langs=("ko",), limit=4))  # doctest: +SKIP
        >>> (study.run.root / "report.md").exists()  # doctest: +SKIP
        True
    """
    study = open_study(out, settings, force=force, show_progress=show_progress, model=model)
    for step in steps:
        ran = run_step(study, step)
        if ran:
            log(f"[lens-steer] {step}: done in {study.timings[step]:.1f}s")
        else:
            log(f"[lens-steer] {step}: already done, skipped")
    return study
