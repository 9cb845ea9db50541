"""Scoring on the transfer–localization plane.

Modules, in the order a study uses them: ``scoring`` (requests, naive reference batches),
``shared`` and ``engine`` (the one scoring entry point, fast), ``metrics`` (metrics as
plug-ins, per-item rows), ``scores`` (aggregates and intervals), ``points`` (interventions
scored on a target), ``effects`` (paired and control-net effects), ``sweep`` (layer sweeps with
controls and doses), ``surgical`` (grid on dev, frontier on eval), ``plane`` (the plane's
points) and ``tables`` (per-item rows on disk).
"""

from lens_steer.evaluate import builtin_metrics  # noqa: F401  (registers the built-in metrics)
from lens_steer.evaluate.effects import controlled_effect, point_effect
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.kl import next_token_kl
from lens_steer.evaluate.metrics import (
    CALIBRATIONS,
    ItemScore,
    MetricSpec,
    MetricTask,
    NoItems,
    ScoredTask,
    metric,
    metrics,
    option_margin,
    register_metric,
)
from lens_steer.evaluate.plane import Plane, PlanePoint, build_plane
from lens_steer.evaluate.points import (
    UNSTEERED,
    PointResult,
    PointSet,
    ScoringSettings,
    evaluate_points,
)
from lens_steer.evaluate.scores import Score, gap_score, share_score
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest
from lens_steer.evaluate.surgical import (
    CRITERIA,
    SurgicalSearch,
    SurgicalSettings,
    pareto_frontier,
    surgical_search,
)
from lens_steer.evaluate.sweep import LayerSweep, SweepPoint, SweepSettings, layer_sweep
from lens_steer.evaluate.tables import item_table, read_items, write_csv, write_items

__all__ = [
    "CALIBRATIONS",
    "CRITERIA",
    "UNSTEERED",
    "ItemScore",
    "LayerSweep",
    "MetricSpec",
    "MetricTask",
    "NoItems",
    "OptionScores",
    "Plane",
    "PlanePoint",
    "PointResult",
    "PointSet",
    "Score",
    "ScoredTask",
    "ScoringRequest",
    "ScoringSettings",
    "SurgicalSearch",
    "SurgicalSettings",
    "SweepPoint",
    "SweepSettings",
    "build_plane",
    "controlled_effect",
    "evaluate_points",
    "gap_score",
    "item_table",
    "layer_sweep",
    "metric",
    "metrics",
    "next_token_kl",
    "option_margin",
    "pareto_frontier",
    "point_effect",
    "read_items",
    "register_metric",
    "score_steerings",
    "share_score",
    "surgical_search",
    "write_csv",
    "write_items",
]
