"""Steering as values (:mod:`.terms`, :mod:`.compose`) and the generations they produce."""

from lens_steer.steering.compose import (
    Steering,
    apply_steering,
    single_layer_steering,
    surgical_steering,
)
from lens_steer.steering.generate import compare_generations, generate
from lens_steer.steering.terms import (
    ALPHA_MODES,
    OPERATIONS,
    AlphaMode,
    Operation,
    SteeringTerm,
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
