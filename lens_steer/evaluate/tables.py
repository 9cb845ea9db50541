"""Per-item rows as a columnar table: one row per (target, split, point, metric, item).

The unit of truth of every result: aggregates, paired effects, controls and verdicts are all
computed from these rows and can be recomputed from the saved file (parquet through pyarrow;
``lens-steer export --csv`` writes the same table as CSV).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from lens_steer._io import _atomic
from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.points import PointSet

COLUMNS: dict[str, pa.DataType] = {
    "target": pa.string(),
    "split": pa.string(),
    "point": pa.string(),
    "metric": pa.string(),
    "item": pa.string(),
    "margin": pa.float64(),
    "margin_max": pa.float64(),
    "outcome": pa.float64(),
    "reference": pa.float64(),
    "reference_outcome": pa.float64(),
    "included": pa.bool_(),
}
_ITEM_FIELDS = ("margin", "margin_max", "outcome", "reference", "reference_outcome", "included")


def item_table(point_sets: Iterable[PointSet]) -> pa.Table:
    """Every row of every point of the given point sets, as one table.

    A point key names its steering, so a point scored in two sets of the same target and split
    (the unsteered model, or a single-layer point of both a sweep and a surgical search) is the
    same point: its rows are kept once (from the first set), and (target, split, point, metric,
    item) identifies a row.
    """
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    seen: set[tuple[str, str, str, str]] = set()
    for points in point_sets:
        for key, point in points.points.items():
            for variant, rows in point.rows.items():
                if (points.target, points.split, key, variant) in seen:
                    continue
                seen.add((points.target, points.split, key, variant))
                for row in rows:
                    columns["target"].append(points.target)
                    columns["split"].append(points.split)
                    columns["point"].append(key)
                    columns["metric"].append(variant)
                    columns["item"].append(row.item)
                    for name in _ITEM_FIELDS:
                        columns[name].append(getattr(row, name))
    # from_pandas: NaN becomes null, an empty cell in CSV rather than the text "nan"
    return pa.table(
        {
            name: pa.array(values, COLUMNS[name], from_pandas=True)
            for name, values in columns.items()
        }
    )


def write_items(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write the table as parquet, atomically."""
    return _atomic(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_items(path: str | os.PathLike[str]) -> pa.Table:
    """Read a table written by :func:`write_items` (errors name the file)."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ValueError(f"{path.resolve()}: not a readable parquet file ({err})") from None
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"{path.resolve()}: column(s) {missing} missing")
    return table


def write_csv(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """The same table as CSV (one row per point, item and metric), atomically."""
    return _atomic(Path(path), lambda tmp: pa_csv.write_csv(table, tmp))


def rows_from_table(
    table: pa.Table, target: str, split: str
) -> dict[str, dict[str, tuple[ItemScore, ...]]]:
    """``{point: {metric: rows}}`` of one target and split, in file order."""
    out: dict[str, dict[str, list[ItemScore]]] = {}
    data = table.to_pydict()
    for index in range(table.num_rows):
        if data["target"][index] != target or data["split"][index] != split:
            continue
        row = ItemScore(
            data["item"][index],
            margin=_nan(data["margin"][index]),
            margin_max=_nan(data["margin_max"][index]),
            outcome=_nan(data["outcome"][index]),
            reference=_nan(data["reference"][index]),
            included=bool(data["included"][index]),
            reference_outcome=_nan(data["reference_outcome"][index]),
        )
        out.setdefault(data["point"][index], {}).setdefault(data["metric"][index], []).append(row)
    return {point: {m: tuple(r) for m, r in metrics.items()} for point, metrics in out.items()}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
