"""Scoring on the transfer–localization plane: option log-probs, scores with intervals, sweeps."""

from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    score_options,
)

__all__ = ["OptionScores", "ScoringRequest", "score_options"]
