"""Steering as values (:mod:`.terms`) and the generations they produce (:mod:`.generate`)."""

from lens_steer.steering.generate import compare_generations, generate
from lens_steer.steering.terms import (
    ALPHA_MODES,
    OPERATIONS,
    AlphaMode,
    Operation,
    Steering,
    SteeringTerm,
    apply_steering,
    single_layer_steering,
    surgical_steering,
)

__all__ = [
    "ALPHA_MODES",
    "OPERATIONS",
    "AlphaMode",
    "Operation",
    "Steering",
    "SteeringTerm",
    "apply_steering",
    "compare_generations",
    "generate",
    "single_layer_steering",
    "surgical_steering",
]
