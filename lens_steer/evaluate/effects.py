"""Paired effects from per-item rows: a point against the unsteered model, and net of controls.

Rows of two points are matched by item id (only items included and finite in both count), so
every comparison is paired: the same items with and without the intervention. The statistics
themselves live in :mod:`lens_steer.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.points import UNSTEERED, PointSet
from lens_steer.stats.controls import ControlledEffect, net_effect
from lens_steer.stats.paired import PairedEffect, paired_effect


def aligned(
    groups: Sequence[Sequence[ItemScore]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Items included with a finite margin in every group: ids, margins and outcomes ``[group, item]``."""
    by_id = [{row.item: row for row in rows} for rows in groups]
    ids = [
        item
        for item, row in by_id[0].items()
        if all(
            item in rows and rows[item].included and math.isfinite(rows[item].margin)
            for rows in by_id
        )
    ]
    ids = [item for item in ids if row_ok(by_id[0][item])]
    margins = np.asarray([[rows[item].margin for item in ids] for rows in by_id], dtype=float)
    outcomes = np.asarray([[rows[item].outcome for item in ids] for rows in by_id], dtype=float)
    return ids, margins.reshape(len(groups), len(ids)), outcomes.reshape(len(groups), len(ids))


def row_ok(row: ItemScore) -> bool:
    return row.included and math.isfinite(row.margin)


def _outcomes(values: np.ndarray) -> np.ndarray | None:
    return values if values.size and np.isfinite(values).all() else None


def point_effect(
    points: PointSet,
    key: str,
    variant: str,
    *,
    baseline: str = UNSTEERED,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedEffect:
    """Effect of point ``key`` against ``baseline`` on the same items for one metric variant.

    Example:
        >>> point_effect(sweep.points, "en@6:1", "transfer").mean_delta  # doctest: +SKIP
        0.21
    """
    ids, margins, outcomes = aligned([points[key].rows[variant], points[baseline].rows[variant]])
    if not ids:
        raise ValueError(f"{key} vs {baseline}: no item scored in both for {variant!r}")
    after_o, before_o = _outcomes(outcomes[0]), _outcomes(outcomes[1])
    with_outcomes = after_o is not None and before_o is not None
    return paired_effect(
        margins[0], margins[1],
        after_outcome=after_o if with_outcomes else None,
        before_outcome=before_o if with_outcomes else None,
        n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
    )  # fmt: skip


def controlled_effect(
    points: PointSet,
    key: str,
    controls: Sequence[str],
    variant: str,
    *,
    baseline: str = UNSTEERED,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> ControlledEffect:
    """Effect of ``key``, of its random-direction controls, and the net of the two (paired)."""
    if not controls:
        raise ValueError(f"{key}: no control points to net against")
    groups = [points[name].rows[variant] for name in (key, baseline, *controls)]
    ids, margins, outcomes = aligned(groups)
    if not ids:
        raise ValueError(f"{key}: no item scored in the point, its controls and {baseline}")
    with_outcomes = all(_outcomes(row) is not None for row in outcomes)
    return net_effect(
        margins[0], margins[2:], margins[1],
        after_outcome=outcomes[0] if with_outcomes else None,
        control_outcomes=outcomes[2:] if with_outcomes else None,
        before_outcome=outcomes[1] if with_outcomes else None,
        n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
    )  # fmt: skip


def net_deltas(
    points: PointSet, key: str, controls: Sequence[str], variant: str
) -> tuple[list[str], np.ndarray]:
    """Per-item net effect ``margin(key) - mean_k margin(control_k)`` (ids, values)."""
    groups = [points[name].rows[variant] for name in (key, *controls)]
    ids, margins, _ = aligned(groups)
    return ids, margins[0] - margins[1:].mean(axis=0)
