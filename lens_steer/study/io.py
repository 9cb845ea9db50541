"""Save and load each step's result value: JSON for numbers, safetensors and parquet for arrays.

Every function pair round-trips exactly (the tests check it), so a resumed run continues from
what an earlier run wrote as if it had computed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lens_steer._io import load_tensor_bundle, read_json, save_tensor_bundle, write_json_atomic
from lens_steer.evaluate.points import PointResult, PointSet
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.surgical import SurgicalSearch
from lens_steer.evaluate.sweep import LayerSweep, SweepPoint
from lens_steer.evaluate.tables import item_table, read_items, rows_from_table, write_items
from lens_steer.geometry.mixing import LayerMixing
from lens_steer.geometry.pca import LayerPCA
from lens_steer.geometry.vectors import ContrastVector
from lens_steer.residuals import ResidualSet
from lens_steer.study.steps import Collected, Geometry, Vectors

_PCA = "lens_steer.LayerPCA/1"
_MIXING = "lens_steer.LayerMixing/1"


def save_point_set(points: PointSet, stem: Path) -> list[Path]:
    """``{stem}.json`` (scores, steerings, settings) and ``{stem}.parquet`` (per-item rows)."""
    table = write_items(item_table([points]), stem.with_suffix(".parquet"))
    meta = write_json_atomic(
        stem.with_suffix(".json"),
        {
            "target": points.target,
            "split": points.split,
            "unmeasured": points.unmeasured,
            "settings": points.settings,
            "points": {key: point.to_json() for key, point in points.points.items()},
        },
    )
    return [meta, table]


def load_point_set(stem: Path) -> PointSet:
    meta = read_json(stem.with_suffix(".json"))
    rows = rows_from_table(read_items(stem.with_suffix(".parquet")), meta["target"], meta["split"])
    points = {
        key: PointResult(
            key,
            obj["steering"],
            rows.get(key, {}),
            {name: Score.from_json(score) for name, score in obj["scores"].items()},
        )
        for key, obj in meta["points"].items()
    }
    return PointSet(meta["target"], meta["split"], points, meta["unmeasured"], meta["settings"])


def save_sweep(sweep: LayerSweep, stem: Path) -> list[Path]:
    files = save_point_set(sweep.points, Path(f"{stem}__points"))
    files.append(
        write_json_atomic(
            stem.with_suffix(".json"),
            {
                "target": sweep.target,
                "split": sweep.split,
                "settings": sweep.settings,
                "grid": [point.to_json() for point in sweep.grid],
            },
        )
    )
    return files


def load_sweep(stem: Path) -> LayerSweep:
    meta = read_json(stem.with_suffix(".json"))
    points = load_point_set(Path(f"{stem}__points"))
    grid = tuple(SweepPoint.from_json(p) for p in meta["grid"])
    return LayerSweep(meta["target"], meta["split"], points, grid, meta["settings"])


def save_search(search: SurgicalSearch, stem: Path) -> list[Path]:
    files = save_point_set(search.dev, Path(f"{stem}__dev"))
    files += save_point_set(search.eval, Path(f"{stem}__eval"))
    files.append(
        write_json_atomic(
            stem.with_suffix(".json"),
            {
                "target": search.target,
                "frontier": list(search.frontier),
                "best": search.best,
                "best_single": search.best_single,
                "controls": {k: list(v) for k, v in search.controls.items()},
                "settings": search.settings,
            },
        )
    )
    return files


def load_search(stem: Path) -> SurgicalSearch:
    meta = read_json(stem.with_suffix(".json"))
    return SurgicalSearch(
        meta["target"],
        load_point_set(Path(f"{stem}__dev")),
        load_point_set(Path(f"{stem}__eval")),
        tuple(meta["frontier"]),
        meta["best"],
        dict(meta["best_single"]),
        {k: tuple(v) for k, v in meta["controls"].items()},
        meta["settings"],
    )


def save_collected(collected: Collected, folder: Path) -> list[Path]:
    files: list[Path] = []
    if collected.parallel is not None:
        files += collected.parallel.save(folder / "parallel").values()
    index: dict[str, dict[str, str]] = {}
    for target, sets in collected.target_sets.items():
        for name, residuals in sets.items():
            stem = f"{target.replace(':', '-')}__{name.replace(':', '-')}"
            files += residuals.save(folder / stem).values()
            index.setdefault(target, {})[name] = stem
    files.append(
        write_json_atomic(
            folder / "collected.json",
            {
                "parallel": collected.parallel is not None,
                "sets": index,
                "reference_norms": collected.reference_norms,
            },
        )
    )
    return list(files)


def load_collected(folder: Path) -> Collected:
    meta = read_json(folder / "collected.json")
    parallel = ResidualSet.load(folder / "parallel") if meta["parallel"] else None
    sets = {
        target: {name: ResidualSet.load(folder / stem) for name, stem in by_name.items()}
        for target, by_name in meta["sets"].items()
    }
    return Collected(parallel, sets, meta["reference_norms"])


def save_vectors(vectors: Vectors, folder: Path) -> list[Path]:
    files: list[Path] = []
    index: dict[str, dict[str, str]] = {}
    for target, by_method in vectors.items():
        for method, vector in by_method.items():
            stem = f"{target.replace(':', '-')}__{method}"
            files += vector.save(folder / stem).values()
            index.setdefault(target, {})[method] = stem
    files.append(write_json_atomic(folder / "vectors.json", index))
    return files


def load_vectors(folder: Path) -> Vectors:
    index = read_json(folder / "vectors.json")
    return {
        target: {method: ContrastVector.load(folder / stem) for method, stem in by_method.items()}
        for target, by_method in index.items()
    }


def _arrays_to_json(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
    return out


def _arrays_from_json(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: np.asarray(value, dtype=float) if isinstance(value, list) and key != "pair" else value
        for key, value in values.items()
    }


def save_geometry(geometry: Geometry, folder: Path) -> list[Path]:
    files: list[Path] = []
    for index, pca in enumerate(geometry.pca):
        tensors = {
            "coords": pca.coords,
            "ratio": pca.explained_variance_ratio,
            "components": pca.components,
        }
        meta = {
            "format": _PCA, "layers": list(pca.layers), "ids": list(pca.ids),
            "langs": list(pca.langs), "groups": list(pca.groups),
            "standardized": pca.standardized, "provenance": pca.provenance,
        }  # fmt: skip
        files += save_tensor_bundle(folder / f"pca_{index}", tensors, meta).values()
    for index, mixing in enumerate(geometry.mixing):
        tensors = {name: torch.as_tensor(values) for name, values in mixing.scores.items()}
        meta = {
            "format": _MIXING, "layers": list(mixing.layers), "groups": list(mixing.groups),
            "standardized": mixing.standardized, "settings": mixing.settings,
        }  # fmt: skip
        files += save_tensor_bundle(folder / f"mixing_{index}", tensors, meta).values()
    files.append(
        write_json_atomic(
            folder / "geometry.json",
            {
                "n_pca": len(geometry.pca),
                "n_mixing": len(geometry.mixing),
                "cosines": {k: _arrays_to_json(v) for k, v in geometry.cosines.items()},
                "positive_control": None
                if geometry.positive_control is None
                else _arrays_to_json(geometry.positive_control),
                "null_band": geometry.null_band,
                "settings": geometry.settings,
            },
        )
    )
    return files


def load_geometry(folder: Path) -> Geometry:
    meta = read_json(folder / "geometry.json")
    pcas = []
    for index in range(meta["n_pca"]):
        tensors, info = load_tensor_bundle(folder / f"pca_{index}", expected_format=_PCA)
        pcas.append(
            LayerPCA(
                tensors["coords"],
                tensors["ratio"],
                tensors["components"],
                tuple(info["layers"]),
                tuple(info["ids"]),
                tuple(info["langs"]),
                tuple(info["groups"]),
                info["standardized"],
                info["provenance"],
            )  # fmt: skip
        )
    mixings = []
    for index in range(meta["n_mixing"]):
        tensors, info = load_tensor_bundle(folder / f"mixing_{index}", expected_format=_MIXING)
        mixings.append(
            LayerMixing(
                tuple(info["layers"]),
                tuple(info["groups"]),
                {name: t.numpy() for name, t in tensors.items()},
                info["standardized"],
                info["settings"],
            )  # fmt: skip
        )
    positive = meta["positive_control"]
    return Geometry(
        tuple(pcas),
        tuple(mixings),
        {k: _arrays_from_json(v) for k, v in meta["cosines"].items()},
        None if positive is None else _arrays_from_json(positive),
        meta["null_band"],
        meta["settings"],
    )
