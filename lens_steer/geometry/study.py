"""The geometry part of the study in one call: collect once, then vectors, cosines, PCA, mixing.

Reads top to bottom: collect the parallel sentences (English + LOC languages) and the
localization prompts (explicit and implicit) at every layer, once; fit EN and LOC vectors on
them; compare the vectors per layer (raw and standardized cosine, bootstrap interval, null
band); run PCA and the mixing scores on the parallel sentences. The CLI, notebooks and
``analyses/geometry.py`` all call :func:`geometry_study`.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from lens_steer.cache import CollectOptions, ReadPosition, ResidualSet
from lens_steer.data.records import ENGLISH, ProbeSet
from lens_steer.geometry.cosine import null_band, perpendicularity_table
from lens_steer.geometry.pca import LayerPCA, mixing_by_layer, pca_by_layer
from lens_steer.geometry.vectors import (
    ContrastVector,
    collect_localization,
    collect_parallel,
    en_vectors,
    loc_vectors,
)

# --------------------------------------------------------------------------------------------
# Cost measurement.
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float | None:
    """Current resident set size in MiB (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@contextmanager
def measure_cost(
    interval_s: float = 0.05, *, python_heap: bool = False
) -> Iterator[dict[str, float | None]]:
    """Time a block and its peak memory; the yielded dict is filled when the block ends.

    Keys: ``seconds``; ``rss_before_mb`` and ``peak_rss_mb`` (resident memory sampled every
    ``interval_s`` in a thread: the peak of this block alone); ``process_max_rss_mb``
    (``getrusage``: the whole process so far, model loading included); ``cuda_peak_mb`` when
    CUDA is in use (``torch.cuda.max_memory_allocated``); ``python_peak_mb`` with
    ``python_heap=True`` (``tracemalloc``: Python-level allocations only, not torch tensors, and
    it slows a forward pass by about half, so it is off by default).
    """
    cost: dict[str, float | None] = {"rss_before_mb": _rss_mb()}
    peak = [cost["rss_before_mb"] or 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], _rss_mb() or 0.0)

    sampler = threading.Thread(target=sample, daemon=True)
    tracing = python_heap and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost["seconds"] = round(time.perf_counter() - start, 3)
        done.set()
        sampler.join()
        if tracing:
            cost["python_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
        if cuda:
            cost["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        peak[0] = max(peak[0], _rss_mb() or 0.0)
        cost["peak_rss_mb"] = round(peak[0], 1) if cost["rss_before_mb"] is not None else None
        cost["process_max_rss_mb"] = round(_max_rss_mb(), 1)
        if cost["rss_before_mb"] is not None:
            cost["rss_before_mb"] = round(cost["rss_before_mb"], 1)


# --------------------------------------------------------------------------------------------
# The study.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeometryStudy:
    """Everything the geometry step produced, plus the settings and costs behind it."""

    parallel: ResidualSet
    localization: dict[str, ResidualSet]
    en: dict[str, ContrastVector]
    loc: dict[str, ContrastVector]
    pca: tuple[LayerPCA, ...]  # raw, then standardized residuals
    perpendicularity: list[dict[str, Any]]
    mixing: list[dict[str, Any]]
    settings: dict[str, Any]
    costs: dict[str, dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """Cosine range per layer against the null band, and the layers where languages mix most."""
        by_layer: dict[int, list[dict[str, Any]]] = {}
        for row in self.perpendicularity:
            by_layer.setdefault(int(row["layer"]), []).append(row)
        cosine_range = [
            {
                "layer": layer,
                "raw_min": min(r["cos_raw"] for r in rows),
                "raw_max": max(r["cos_raw"] for r in rows),
                "std_min": min(r["cos_std"] for r in rows),
                "std_max": max(r["cos_std"] for r in rows),
                "n_langs_raw_outside_null": sum(abs(r["cos_raw"]) > r["null_band"] for r in rows),
                "n_langs_std_outside_null": sum(abs(r["cos_std"]) > r["null_band"] for r in rows),
            }
            for layer, rows in sorted(by_layer.items())
        ]
        mixing = {}
        for standardized in (False, True):
            rows = [r for r in self.mixing if r["standardized"] == standardized]
            key = "standardized" if standardized else "raw"
            mixing[key] = {
                "best_retrieval_layer": max(rows, key=lambda r: r["retrieval_accuracy"])["layer"],
                "best_retrieval_accuracy": max(r["retrieval_accuracy"] for r in rows),
                "lowest_silhouette_layer": min(rows, key=lambda r: r["silhouette"])["layer"],
                "lowest_silhouette": min(r["silhouette"] for r in rows),
            }
        raw = [r["cos_raw"] for r in self.perpendicularity]
        std = [r["cos_std"] for r in self.perpendicularity]
        return {
            "null_band": self.perpendicularity[0]["null_band"],
            "cos_raw_range": [min(raw), max(raw)],
            "cos_std_range": [min(std), max(std)],
            "cosine_range_by_layer": cosine_range,
            "mixing": mixing,
        }

    def to_json(self) -> dict[str, Any]:
        """The numbers (no tensors but small per-layer summaries), JSON-ready."""
        return {
            "settings": self.settings,
            "costs": self.costs,
            "summary": self.summary(),
            "perpendicularity": self.perpendicularity,
            "mixing": self.mixing,
            "pca_explained_variance": [
                {
                    "standardized": pca.standardized,
                    "layer": layer,
                    "ratio": [round(float(x), 6) for x in pca.explained_variance_ratio[slot]],
                }
                for pca in self.pca
                for slot, layer in enumerate(pca.layers)
            ],
            "residual_mean_norm": {
                str(layer): round(float(norm), 3)
                for layer, norm in zip(self.parallel.layers, self.parallel.mean_norm(), strict=True)
            },
            "vector_norms": {
                f"{kind}-{lang}": [round(float(n), 4) for n in vector.norms()]
                for kind, vectors in (("en", self.en), ("loc", self.loc))
                for lang, vector in vectors.items()
            },
        }

    def save_vectors(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every EN and LOC vector as ``{kind}_{lang}.safetensors/.json`` into ``folder``."""
        paths = []
        for kind, vectors in (("en", self.en), ("loc", self.loc)):
            for lang, vector in vectors.items():
                paths.append(vector.save(Path(folder) / f"{kind}_{lang}")["tensors"])
        return paths


def geometry_study(
    model: HookedTransformer,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    position: ReadPosition = "last",
    split: str = "fit",
    n_bootstrap: int = 200,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> GeometryStudy:
    """Collect, fit EN/LOC vectors, compare them per layer, and measure language mixing.

    The standardization scale (per-dimension residual std per layer) is estimated from every
    collected prompt: parallel sentences and both localization forms.

    Args:
        model: the model.
        probe_set: the prompts (e.g. ``load_probe_set()``).
        langs: the LOC languages; English parallel sentences are always added.
        layers: layers to read (all when ``None``).
        position: read position (see :func:`lens_steer.cache.collect_residuals`).
        split: the split the vectors are fitted on.
        n_bootstrap, seed: bootstrap over prompts for the cosine intervals.
        batch_size, show_progress: collection settings.

    Example:
        >>> study = geometry_study(model, load_probe_set(), ["ko", "zh"])  # doctest: +SKIP
        >>> study.summary()["cos_std_range"]  # doctest: +SKIP
    """
    langs = [lang for lang in langs if lang != ENGLISH]
    if not langs:
        raise ValueError("geometry_study needs at least one LOC language besides English")
    options: CollectOptions = {
        "layers": layers,
        "position": position,
        "batch_size": batch_size,
        "show_progress": show_progress,
    }
    costs: dict[str, dict[str, Any]] = {}
    with measure_cost() as costs["collect_parallel"]:
        parallel = collect_parallel(model, probe_set, [ENGLISH, *langs], split=split, **options)
    with measure_cost() as costs["collect_localization"]:
        localization = collect_localization(model, probe_set, langs, split=split, **options)
    costs["collect_parallel"]["n_prompts"] = parallel.n_prompts
    costs["collect_localization"]["n_prompts"] = sum(s.n_prompts for s in localization.values())

    with measure_cost() as costs["analysis"]:
        en = en_vectors(
            None,
            probe_set,
            langs,
            parallel=parallel,
            split=split,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        loc = loc_vectors(
            None, probe_set, langs, localization=localization, split=split,
            n_bootstrap=n_bootstrap, seed=seed + 1,
        )  # fmt: skip
        scale = ResidualSet.concat([parallel, *localization.values()])
        perpendicularity = perpendicularity_table(en, loc, scale=scale)
        pca = tuple(
            pca_by_layer(parallel, standardize=standardized, show_progress=False)
            for standardized in (False, True)
        )
        mixing = [
            row
            for standardized in (False, True)
            for row in mixing_by_layer(parallel, standardize=standardized, show_progress=False)
        ]

    settings = {
        "model_id": parallel.model_id,
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
        "langs": [ENGLISH, *langs],
        "layers": list(parallel.layers),
        "hook_name": parallel.hook_name,
        "position": parallel.position,
        "split": split,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "probe_version": probe_set.version,
        "null_band": null_band(model.cfg.d_model),
        "standardization": "per-dimension std over all collected prompts, per layer",
        "mixing_center": "global",
        "device": str(model.cfg.device),
    }
    return GeometryStudy(
        parallel=parallel,
        localization=localization,
        en=en,
        loc=loc,
        pca=pca,
        perpendicularity=perpendicularity,
        mixing=mixing,
        settings=settings,
        costs=costs,
    )
