"""The steering part of the study in one call: vectors → layer sweeps → surgical search → plane.

Reads top to bottom: collect the fit-split residuals once (parallel sentences, localization
prompts), fit EN and LOC vectors per language, take the mean residual norm per layer of the
language's prompts as the reference for relative alphas, sweep every layer on the eval split,
search the surgical grid on dev, and assemble the plane on eval. The CLI, notebooks and
``analyses/steering.py`` call :func:`steering_study`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_lens import HookedTransformer

from lens_steer.data.records import ENGLISH, ProbeSet, Split, TransferItem
from lens_steer.evaluate.engine import Method
from lens_steer.evaluate.plane import Plane, PlanePoint, plane_points
from lens_steer.evaluate.surgical import Criterion, SurgicalSearch, surgical_search
from lens_steer.evaluate.sweep import LayerSweep, Metric, layer_sweep
from lens_steer.geometry.vectors import (
    ContrastVector,
    collect_localization,
    collect_parallel,
    en_vectors,
    loc_vectors,
)
from lens_steer.models import model_id
from lens_steer.steering import AlphaMode

METRICS: tuple[Metric, ...] = ("transfer", "localization")


@contextmanager
def _timed(costs: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        costs[name] = round(time.perf_counter() - start, 2)


def dominance(single: PlanePoint, frontier: Sequence[PlanePoint]) -> dict[str, Any]:
    """Does some frontier point beat a single-layer point, by point estimate and by interval?"""

    def beats(a: PlanePoint) -> bool:
        t, loc = (
            a.transfer.value - single.transfer.value,
            a.localization.value - single.localization.value,
        )
        return t >= 0 and loc >= 0 and (t > 0 or loc > 0)

    def separated(a: PlanePoint) -> bool:  # intervals disjoint in one score, no worse in the other
        t_up = a.transfer.ci_low > single.transfer.ci_high
        l_up = a.localization.ci_low > single.localization.ci_high
        return beats(a) and (t_up or l_up)

    return {
        "point": single.label,
        "dominated_by": [a.label for a in frontier if beats(a)],
        "dominated_with_disjoint_interval_by": [a.label for a in frontier if separated(a)],
    }


def _peak(sweep: LayerSweep, kind: str, metric: Metric) -> dict[str, Any]:
    """The best layer and alpha of one kind for one score, and the best layer per alpha."""
    peak = sweep.peak(kind, metric)
    score = peak.score(metric)
    base = sweep.unsteered_transfer if metric == "transfer" else sweep.unsteered_localization
    per_alpha = {
        f"{alpha:g}": max(sweep.curve(kind, alpha), key=lambda p: p.score(metric).value).layer
        for alpha in sweep.alphas
    }
    return {
        "layer": peak.layer,
        "alpha": peak.alpha,
        "value": score.value,
        "ci": [score.ci_low, score.ci_high],
        "unsteered": base.value,
        "per_alpha_peak_layer": per_alpha,
    }


@dataclass(frozen=True)
class SteeringStudy:
    """Sweeps, surgical searches and planes per language, with vectors, settings and timings."""

    langs: tuple[str, ...]
    sweeps: dict[str, LayerSweep]
    searches: dict[str, SurgicalSearch]
    planes: dict[str, Plane]
    reference_norms: dict[str, list[float]]
    vectors: dict[str, dict[str, ContrastVector]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Per language: where EN- and LOC-steering peak, and whether the frontier dominates."""
        out = {}
        for lang in self.langs:
            sweep, plane = self.sweeps[lang], self.planes[lang]
            peaks = {
                f"{kind}_{metric}": _peak(sweep, kind, metric)
                for kind in sweep.kinds
                for metric in METRICS
            }
            frontier = plane.group("surgical")
            out[lang] = {
                "peaks": peaks,
                "dominance": [dominance(single, frontier) for single in plane.group("single")],
                "best_surgical": self.searches[lang].best.key if lang in self.searches else None,
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "langs": list(self.langs),
            "settings": self.settings,
            "costs_seconds": self.costs,
            "summary": self.summary(),
            "reference_norms": self.reference_norms,
            "sweeps": {lang: sweep.to_json() for lang, sweep in self.sweeps.items()},
            "surgical": {lang: search.to_json() for lang, search in self.searches.items()},
            "planes": {lang: plane.to_json() for lang, plane in self.planes.items()},
        }


def steering_study(
    model: HookedTransformer,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    sweep_layers: Sequence[int] | None = None,
    alphas: Sequence[float] = (0.25, 0.5, 1.0),
    transfer_layers: Sequence[int] | None = None,
    transfer_alphas: Sequence[float] = (0.25, 0.5),
    local_layers: Sequence[int] | None = None,
    local_alphas: Sequence[float] = (0.5, 1.0),
    alpha_mode: AlphaMode = "relative",
    criterion: Criterion = "sum_gain",
    fit_split: Split = "fit",
    dev_split: Split = "dev",
    eval_split: Split = "eval",
    method: Method = "fast",
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> SteeringStudy:
    """Fit vectors, sweep layers, search surgical steering and build the plane per language.

    Args:
        model: the model.
        probe_set: the items (transfer with English versions, localization, parallel).
        langs: LOC languages.
        sweep_layers: layers of the single-layer sweeps (default: all).
        alphas: sweep alphas (relative to the mean residual norm unless ``alpha_mode="raw"``).
        transfer_layers, transfer_alphas: EN part of the surgical grid (default layers: the
            middle third of the model, every other layer).
        local_layers, local_alphas: LOC part (default layers: the last third, every other).
        criterion: how the best surgical point is chosen on dev.
        fit_split, dev_split, eval_split: vectors, choices and reported scores use disjoint
            prompts.
        checkpoint_dir: where the sweeps and the dev grids record finished batches, so an
            interrupted study resumes.
        Others: as in :func:`layer_sweep`.

    Example:
        >>> study = steering_study(model, load_probe_set(["ko", "id"]), ["ko", "id"])  # doctest: +SKIP
        >>> study.summary()["ko"]["peaks"]["en_transfer"]["layer"]  # doctest: +SKIP
        6
    """
    n_layers = model.cfg.n_layers
    third = max(1, n_layers // 3)
    transfer_layers = list(transfer_layers or range(third, 2 * third, 2))
    local_layers = list(local_layers or range(2 * third, n_layers, 2))
    costs: dict[str, float] = {}
    with _timed(costs, "fit_vectors"):
        parallel = collect_parallel(
            model, probe_set, [ENGLISH, *langs], split=fit_split, batch_size=batch_size,
            show_progress=show_progress,
        )  # fmt: skip
        localization = collect_localization(
            model, probe_set, langs, split=fit_split, batch_size=batch_size,
            show_progress=show_progress,
        )  # fmt: skip
        en = en_vectors(None, probe_set, langs, split=fit_split, parallel=parallel, seed=seed)
        loc = loc_vectors(
            None, probe_set, langs, split=fit_split, localization=localization, seed=seed
        )
    # The reference for relative alphas: mean last-token residual norm of the language's prompts.
    norms = {lang: parallel.where_lang(lang).mean_norm().tolist() for lang in langs}
    english: list[TransferItem] = [item for item in probe_set.transfer if item.lang == ENGLISH]
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)

    def checkpoint(name: str) -> Path | None:
        return None if folder is None else folder / f"{name}.jsonl"

    sweeps, searches, planes = {}, {}, {}
    for lang in langs:
        transfer = [item for item in probe_set.transfer if item.lang == lang]
        local = [item for item in probe_set.localization if item.lang == lang]
        with _timed(costs, f"sweep_{lang}"):
            sweeps[lang] = layer_sweep(
                model, transfer, local, {"en": en[lang], "loc": loc[lang]}, layers=sweep_layers,
                alphas=alphas, alpha_mode=alpha_mode, reference_norms=norms[lang],
                split=eval_split, method=method, batch_size=batch_size,
                checkpoint=checkpoint(f"sweep_{lang}"), n_bootstrap=n_bootstrap, seed=seed,
                show_progress=show_progress,
            )  # fmt: skip
        with _timed(costs, f"surgical_{lang}"):
            searches[lang] = surgical_search(
                model, transfer, local, en[lang], loc[lang], transfer_layers=transfer_layers,
                transfer_alphas=transfer_alphas, local_layers=local_layers,
                local_alphas=local_alphas, alpha_mode=alpha_mode, reference_norms=norms[lang],
                criterion=criterion, dev_split=dev_split, eval_split=eval_split, method=method,
                batch_size=batch_size, checkpoint=checkpoint(f"surgical_{lang}"),
                n_bootstrap=n_bootstrap, seed=seed, show_progress=show_progress,
            )  # fmt: skip
        with _timed(costs, f"plane_{lang}"):
            planes[lang] = plane_points(
                model, transfer, local, english, searches[lang], split=eval_split,
                batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
                show_progress=show_progress,
            )  # fmt: skip
    settings = {
        "model_id": model_id(model),
        "langs": list(langs),
        "probe_version": probe_set.version,
        "splits": {"fit": fit_split, "dev": dev_split, "eval": eval_split},
        "sweep_layers": list(sweep_layers) if sweep_layers is not None else list(range(n_layers)),
        "alphas": [float(a) for a in alphas],
        "alpha_mode": alpha_mode,
        "reference_norm": "mean L2 norm of the last-token resid_post of the language's fit-split "
        "parallel sentences, per layer",
        "surgical_grid": {
            "transfer_layers": transfer_layers,
            "transfer_alphas": [float(a) for a in transfer_alphas],
            "local_layers": local_layers,
            "local_alphas": [float(a) for a in local_alphas],
            "criterion": criterion,
        },
        "vectors": {
            lang: {"en": en[lang].provenance, "loc": loc[lang].provenance} for lang in langs
        },
        "method": method,
        "batch_size": batch_size,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
    }
    vectors = {lang: {"en": en[lang], "loc": loc[lang]} for lang in langs}
    return SteeringStudy(tuple(langs), sweeps, searches, planes, norms, vectors, settings, costs)
