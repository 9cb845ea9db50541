"""Per-item tables: parquet round trip equals the rows, CSV has one row per (point, item, metric)."""

from __future__ import annotations

import csv
import math

import pytest

from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.points import UNSTEERED, PointResult, PointSet
from lens_steer.evaluate.tables import (
    COLUMNS,
    item_table,
    read_items,
    rows_from_table,
    write_csv,
    write_items,
)

NAN = math.nan


def rows(prefix: str, shift: float) -> tuple[ItemScore, ...]:
    return (
        ItemScore(f"{prefix}1", 1.0 + shift, 0.5, 1.0, 2.0, True, 1.0),
        ItemScore(f"{prefix}2", -0.25 + shift, NAN, 0.0, NAN, True, NAN),
        ItemScore(f"{prefix}3", NAN, NAN, NAN, -1.0, False, 0.0),  # excluded: not scored
    )


def point_set(target: str, split: str, keys=(UNSTEERED, "en@1:1")) -> PointSet:
    points = {
        key: PointResult(
            key,
            None,
            {
                "transfer": rows("f", index),
                "transfer:per_token": rows("f", -index),
                "localization": rows("l", 2 * index)[:2],
            },
            {},
        )
        for index, key in enumerate(keys)
    }
    return PointSet(target, split, points)


SETS = [
    point_set("zz:Testland", "eval"),
    point_set("zz:Testland", "dev", (UNSTEERED,)),
    point_set("ko:South_Korea", "eval"),
]


def same(a: ItemScore, b: ItemScore) -> bool:
    """Field by field, NaN equal to NaN."""
    for name in (
        "item",
        "margin",
        "margin_max",
        "outcome",
        "reference",
        "included",
        "reference_outcome",
    ):
        x, y = getattr(a, name), getattr(b, name)
        if not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
            return False
    return True


def test_the_table_has_one_row_per_target_split_point_metric_and_item():
    table = item_table(SETS)
    assert table.column_names == list(COLUMNS)
    expected = sum(len(r) for s in SETS for p in s.points.values() for r in p.rows.values())
    assert table.num_rows == expected == 2 * 8 + 8 + 2 * 8  # 8 rows per point
    columns = [table.column(c).to_pylist() for c in ("target", "split", "point", "metric", "item")]
    keys = list(zip(*columns, strict=True))
    assert len(set(keys)) == len(keys)


def test_a_point_in_two_sets_of_the_same_target_and_split_is_kept_once():
    sweep = point_set("zz:Testland", "eval", (UNSTEERED, "en@1:1"))
    search = point_set("zz:Testland", "eval", (UNSTEERED, "en@1:1+loc@3:1"))
    table = item_table([sweep, search])
    assert table.num_rows == 3 * 8  # unsteered once, en@1:1, en@1:1+loc@3:1
    assert table.column("point").to_pylist().count(UNSTEERED) == 8


def test_parquet_round_trip_gives_back_every_row(tmp_path):
    path = write_items(item_table(SETS), tmp_path / "items.parquet")
    table = read_items(path)
    for points in SETS:
        back = rows_from_table(table, points.target, points.split)
        assert set(back) == set(points.points)
        for key, point in points.points.items():
            assert set(back[key]) == set(point.rows)
            for variant, original in point.rows.items():
                assert len(back[key][variant]) == len(original)
                assert all(same(a, b) for a, b in zip(back[key][variant], original, strict=True))


def test_csv_export_has_one_row_per_point_item_and_metric(tmp_path):
    table = item_table(SETS)
    path = write_csv(table, tmp_path / "items.csv")
    with path.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == table.num_rows
    assert set(lines[0]) == set(COLUMNS)
    keys = {(r["target"], r["split"], r["point"], r["metric"], r["item"]) for r in lines}
    assert len(keys) == len(lines)
    first = next(
        r
        for r in lines
        if r["point"] == "en@1:1"
        and r["metric"] == "transfer"
        and r["item"] == "f1"
        and r["target"] == "zz:Testland"
    )
    assert float(first["margin"]) == 2.0 and first["included"] == "true"
    excluded = next(r for r in lines if r["item"] == "f3")
    assert excluded["margin"] == "" and excluded["included"] == "false"  # NaN: an empty cell


def test_unreadable_tables_name_the_file(tmp_path):
    bad = tmp_path / "items.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ValueError, match=f"{bad.resolve()}: not a readable parquet file"):
        read_items(bad)
    partial = write_items(item_table(SETS).drop_columns(["margin"]), tmp_path / "partial.parquet")
    with pytest.raises(ValueError, match=r"column\(s\) \['margin'\] missing"):
        read_items(partial)
