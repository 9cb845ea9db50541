"""Scoring on the transfer–localization plane: option log-probs, scores with intervals, sweeps.

Modules, in the order a study uses them: ``scoring`` (continuation log-probs), ``scores``
(transfer, localization, gap closure with bootstrap intervals), ``engine`` (many steerings at
once, fast), ``sweep`` (layer sweeps), ``surgical`` (grid search and Pareto frontier), ``plane``
(the points of the plane), ``study`` (all of it, top to bottom).
"""

from lens_steer.evaluate.engine import score_steerings, steering_additions
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.plane import Plane, PlanePoint, plane_points, reference_points
from lens_steer.evaluate.scores import (
    Score,
    bootstrap_interval,
    gap_closure,
    gap_closure_from_logprobs,
    localization_requests,
    localization_score,
    localization_share,
    transfer_accuracy,
    transfer_requests,
    transfer_score,
)
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest, score_options
from lens_steer.evaluate.study import SteeringStudy, dominance, steering_study
from lens_steer.evaluate.surgical import (
    SurgicalPoint,
    SurgicalSearch,
    criterion_value,
    pareto_frontier,
    surgical_search,
)
from lens_steer.evaluate.sweep import LayerSweep, SweepPoint, layer_sweep

__all__ = [
    "LayerSweep",
    "OptionScores",
    "Plane",
    "PlaneItems",
    "PlanePoint",
    "Score",
    "SteeringStudy",
    "ScoringRequest",
    "SurgicalPoint",
    "SurgicalSearch",
    "SweepPoint",
    "bootstrap_interval",
    "criterion_value",
    "dominance",
    "gap_closure",
    "gap_closure_from_logprobs",
    "layer_sweep",
    "localization_requests",
    "localization_score",
    "localization_share",
    "pareto_frontier",
    "plane_points",
    "reference_points",
    "score_options",
    "score_steerings",
    "steering_additions",
    "steering_study",
    "surgical_search",
    "transfer_accuracy",
    "transfer_requests",
    "transfer_score",
]
