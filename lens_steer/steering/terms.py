"""Steering settings as values: which direction is edited at which layer, how, and how much.

A :class:`Steering` is a tuple of :class:`SteeringTerm` edits applied together in one forward
pass. Single-layer EN- or LOC-steering is one term; Surgical Steering is two,
``{l_T: alpha_T * v_EN, l_L: alpha_L * v_LOC}``. A term's ``operation`` is

* ``"add"``: add ``alpha * v`` (``alpha_mode="raw"``, the default: alpha is in units of the
  fitted vector, so alpha 1 adds the whole mean difference), or a vector of norm
  ``alpha * reference_norm`` along ``v`` (``alpha_mode="relative"``: relative to the mean
  residual norm at that layer);
* ``"scale"``: multiply the activation's component along ``v`` by ``alpha``;
* ``"project_out"``: remove the component along ``v`` (alpha must be 1).

A term's :meth:`SteeringTerm.settings` carry the digest of its tensor, and
:func:`settings_digest` a digest of the settings themselves: the file format of
:mod:`lens_steer.steering.compose` refuses a term whose JSON and tensor disagree.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lens_steer._io import tensor_digest
from lens_steer.hooks import (
    POSITION_NAMES,
    RESIDUAL_POINTS,
    HookFn,
    PositionName,
    add_vector_hook,
    resid_hook_name,
    scale_direction_hook,
)

AlphaMode = Literal["raw", "relative"]
Operation = Literal["add", "scale", "project_out"]
ALPHA_MODES: tuple[AlphaMode, ...] = ("raw", "relative")
OPERATIONS: tuple[Operation, ...] = ("add", "scale", "project_out")


def _finite_float(value: Any, what: str) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.detach().item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return float(value)


def _json_provenance(provenance: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON round trip of the provenance, so what is saved is what is held."""
    try:
        return dict(json.loads(json.dumps(dict(provenance), allow_nan=False)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: provenance is not JSON-serialisable ({err})") from err


@dataclass(frozen=True, eq=False)
class SteeringTerm:
    """One edit of the residual stream along ``vector`` at ``point`` of ``layer``.

    Attributes:
        layer: block index, 0..n_layers-1.
        vector: the direction ``[d_model]`` (for example a ContrastVector row).
        alpha: the strength (see the module docstring for each operation).
        alpha_mode: ``"raw"`` (alpha in units of ``vector``) or ``"relative"`` (the added
            vector's norm is ``alpha * reference_norm``); only for ``operation="add"``.
        reference_norm: mean residual norm at that layer; required for ``"relative"``,
            recorded when given for ``"raw"``.
        name: what the vector is (``"en"``, ``"loc"``, ``"random:en#0"``, ...).
        point: the residual point in the block (``resid_post`` by default).
        positions: ``"all"``, ``"prompt"`` or ``"generated"``.
        provenance: where the vector came from (model id, hook, split, language, ...); JSON.
        operation: ``"add"`` (default), ``"scale"`` or ``"project_out"``.
    """

    layer: int
    vector: Float[Tensor, " d_model"]
    alpha: float
    alpha_mode: AlphaMode = "raw"
    reference_norm: float | None = None
    name: str = "vector"
    point: str = "resid_post"
    positions: PositionName = "all"
    provenance: dict[str, Any] = field(default_factory=dict)
    operation: Operation = "add"

    def __post_init__(self) -> None:
        where = f"SteeringTerm {self.name!r} at layer {self.layer}"
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise ValueError(f"{where}: layer must be an int >= 0, got {self.layer!r}")
        if not isinstance(self.vector, Tensor) or self.vector.ndim != 1:
            shape = tuple(self.vector.shape) if isinstance(self.vector, Tensor) else self.vector
            raise ValueError(f"{where}: vector must be a 1-D tensor [d_model], got {shape!r}")
        if self.vector.device.type == "meta":
            raise ValueError(
                f"{where}: vector is on the meta device (it has no values); load or compute it "
                "on a real device first"
            )
        if not self.vector.is_floating_point() or not bool(torch.isfinite(self.vector).all()):
            raise ValueError(f"{where}: vector must be floating point with no NaN or inf")
        object.__setattr__(self, "alpha", _finite_float(self.alpha, f"{where}: alpha"))
        if self.operation not in OPERATIONS:
            raise ValueError(
                f"{where}: operation must be one of {OPERATIONS}, got {self.operation!r}"
            )
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(
                f"{where}: alpha_mode must be 'raw' or 'relative', got {self.alpha_mode!r}"
            )
        if self.reference_norm is not None:
            norm = _finite_float(self.reference_norm, f"{where}: reference_norm")
            if norm <= 0:
                raise ValueError(f"{where}: reference_norm must be > 0, got {norm}")
            object.__setattr__(self, "reference_norm", norm)
        if self.operation != "add" and self.alpha_mode != "raw":
            raise ValueError(f"{where}: operation {self.operation!r} takes alpha_mode 'raw'")
        if self.operation == "project_out" and self.alpha != 1.0:
            raise ValueError(f"{where}: project_out removes the whole component (alpha must be 1)")
        if self.operation != "add" and not bool(self.vector.any()):
            raise ValueError(f"{where}: a zero vector has no direction to {self.operation}")
        if self.alpha_mode == "relative":
            if self.reference_norm is None:
                raise ValueError(
                    f"{where}: alpha_mode='relative' needs reference_norm (the mean residual norm "
                    "at that layer, e.g. ResidualSet.mean_norm())"
                )
            if not bool(self.vector.any()):
                raise ValueError(f"{where}: a zero vector cannot be scaled to a relative alpha")
        if self.point not in RESIDUAL_POINTS:
            raise ValueError(f"{where}: point must be one of {RESIDUAL_POINTS}, got {self.point!r}")
        if self.positions not in POSITION_NAMES:
            raise ValueError(
                f"{where}: positions must be one of {POSITION_NAMES}, got {self.positions!r}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SteeringTerm at layer {self.layer}: name must be a non-empty string")
        object.__setattr__(self, "vector", self.vector.detach().clone())
        object.__setattr__(self, "provenance", _json_provenance(self.provenance, where))

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    @property
    def hook_name(self) -> str:
        return resid_hook_name(self.layer, self.point)

    @property
    def is_identity(self) -> bool:
        """True when the term changes nothing (adds with alpha 0, or scales by 1)."""
        if self.operation == "add":
            return self.alpha == 0.0
        return self.operation == "scale" and self.alpha == 1.0

    def effective_vector(self) -> Float[Tensor, " d_model"]:
        """For ``add``: the vector actually added (``alpha * v`` or the relative rescale)."""
        if self.operation != "add":
            raise ValueError(f"term {self.name!r}: only 'add' terms add a fixed vector")
        if self.alpha_mode == "raw":
            return self.alpha * self.vector
        assert self.reference_norm is not None
        scale = self.alpha * self.reference_norm / float(self.vector.double().norm())
        return scale * self.vector

    def effective_norm(self) -> float:
        """L2 norm of the added vector (``add``), else 0."""
        if self.operation != "add":
            return 0.0
        return float(self.effective_vector().double().norm())

    def scaled(self, multiplier: float) -> SteeringTerm:
        """The same term with ``alpha * multiplier`` (``add`` terms; others are returned as is)."""
        if self.operation != "add":
            return self
        return replace(self, alpha=self.alpha * _finite_float(multiplier, "multiplier"))

    def hook(self, prompt_length: int | None = None) -> HookFn:
        """A fresh TransformerLens hook performing this edit."""
        if self.operation == "add":
            return add_vector_hook(
                self.effective_vector(), positions=self.positions, prompt_length=prompt_length
            )
        factor = 0.0 if self.operation == "project_out" else self.alpha
        return scale_direction_hook(
            self.vector, factor, positions=self.positions, prompt_length=prompt_length
        )

    def settings(self) -> dict[str, Any]:
        """The term's settings (no tensors), the digest of its tensor included."""
        return {
            "name": self.name,
            "operation": self.operation,
            "layer": self.layer,
            "point": self.point,
            "positions": self.positions,
            "alpha": self.alpha,
            "alpha_mode": self.alpha_mode,
            "reference_norm": self.reference_norm,
            "d_model": self.d_model,
            "dtype": str(self.vector.dtype).removeprefix("torch."),
            "vector_digest": tensor_digest(self.vector),
            "provenance": self.provenance,
        }

    def to_json(self) -> dict[str, Any]:
        """Settings plus the vector's and the added vector's norms, and a settings digest."""
        settings = self.settings()
        return {
            **settings,
            "hook_name": self.hook_name,
            "vector_norm": float(self.vector.double().norm()),
            "effective_norm": self.effective_norm(),
            "settings_digest": settings_digest(settings),
        }

    def describe(self) -> str:
        """``en@6 a=1 (raw)``, ``loc@12 scale 0.5``, ``x@3 project_out``."""
        if self.operation == "add":
            return f"{self.name}@{self.layer} a={self.alpha:g} ({self.alpha_mode})"
        if self.operation == "scale":
            return f"{self.name}@{self.layer} scale {self.alpha:g}"
        return f"{self.name}@{self.layer} project_out"


def _settings_digest(settings: Mapping[str, Any]) -> str:
    text = json.dumps(dict(settings), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def settings_digest(settings: Mapping[str, Any]) -> str:
    """sha256 (32 hex digits) of a term's settings as canonical JSON."""
    text = json.dumps(dict(settings), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
