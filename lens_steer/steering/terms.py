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

A steering saves as ``{stem}.json`` + ``{stem}.safetensors``. The JSON records each term's
settings and the digest of its own tensor, and a digest of the settings themselves, so a JSON
edited by hand or paired with other tensors is refused with the term named.
:meth:`Steering.apply` attaches it for a ``with`` block.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer._io import load_tensor_bundle, save_tensor_bundle, tensor_digest
from lens_steer.hooks import (
    POSITION_NAMES,
    RESIDUAL_POINTS,
    HookFn,
    PositionName,
    add_vector_hook,
    check_hook_point,
    resid_hook_name,
    scale_direction_hook,
    steering_hooks,
)
from lens_steer.models import model_id

AlphaMode = Literal["raw", "relative"]
Operation = Literal["add", "scale", "project_out"]
ALPHA_MODES: tuple[AlphaMode, ...] = ("raw", "relative")
OPERATIONS: tuple[Operation, ...] = ("add", "scale", "project_out")
_FORMAT = "lens_steer.Steering/2"


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
            "settings_digest": _settings_digest(settings),
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


@dataclass(frozen=True, eq=False)
class Steering:
    """A set of residual edits applied together; no terms means the unsteered model.

    Example:
        >>> steering = single_layer_steering(torch.ones(4), layer=2, alpha=1.0)
        >>> steering.fwd_hooks()[0][0]
        'blocks.2.hook_resid_post'
        >>> steering
        Steering(vector@2 a=1 (raw))
    """

    terms: tuple[SteeringTerm, ...]
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        for index, term in enumerate(self.terms):
            if not isinstance(term, SteeringTerm):
                raise TypeError(
                    f"Steering.terms[{index}] is a {type(term).__name__}, not a SteeringTerm"
                )
        widths = {term.d_model for term in self.terms}
        if len(widths) > 1:
            listing = ", ".join(f"{t.name}@{t.layer}: {t.d_model}" for t in self.terms)
            raise ValueError(f"Steering {self.label!r}: vectors have different widths ({listing})")
        if not self.label:
            object.__setattr__(self, "label", self.describe())

    def __repr__(self) -> str:
        return f"Steering({self.describe()})"

    def describe(self) -> str:
        """The terms in words: ``en@6 a=1 (raw) + loc@12 a=0.5 (raw)``; ``none`` without terms."""
        return " + ".join(term.describe() for term in self.terms) or "none"

    @property
    def is_null(self) -> bool:
        """True when nothing is changed (no terms, or every term is the identity)."""
        return all(term.is_identity for term in self.terms)

    def validate(self, model: HookedTransformer) -> None:
        """Check layers, widths and hook points against a model; raise a ValueError naming the term."""
        n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
        for term in self.terms:
            if term.layer >= n_layers:
                raise ValueError(
                    f"Steering term {term.name!r}: layer {term.layer} is out of range for "
                    f"{model_id(model)} (n_layers={n_layers}, layers 0..{n_layers - 1})"
                )
            if term.d_model != d_model:
                raise ValueError(
                    f"Steering term {term.name!r} at layer {term.layer}: vector has width "
                    f"{term.d_model} but {model_id(model)} has d_model {d_model}"
                )
            check_hook_point(model, term.hook_name)

    def scaled(self, multiplier: float) -> Steering:
        """Every ``add`` term's alpha times ``multiplier`` (the strength chosen at use)."""
        return Steering(tuple(term.scaled(multiplier) for term in self.terms))

    def fwd_hooks(self, prompt_length: int | None = None) -> list[tuple[str, HookFn]]:
        """Fresh ``(hook_name, hook)`` pairs, one per term, in term order.

        Args:
            prompt_length: the (padded) prompt length; needed by terms whose positions are
                ``"prompt"`` or ``"generated"``.
        """
        hooks = []
        for term in self.terms:
            if term.positions != "all" and prompt_length is None:
                raise ValueError(
                    f"Steering term {term.name!r} at layer {term.layer} steers "
                    f"positions={term.positions!r} and needs prompt_length"
                )
            hooks.append((term.hook_name, term.hook(prompt_length)))
        return hooks

    @contextmanager
    def apply(
        self,
        model: HookedTransformer,
        *,
        multiplier: float = 1.0,
        prompt_length: int | None = None,
    ) -> Iterator[HookedTransformer]:
        """Attach this steering for a ``with`` block; the hooks are removed on exit, errors too.

        Args:
            model: the model to steer.
            multiplier: scales every ``add`` term's alpha (the steering-vectors convention).
            prompt_length: needed by ``"prompt"``/``"generated"`` terms.

        Example:
            >>> with steering.apply(model, multiplier=2.0):  # doctest: +SKIP
            ...     logits = model(tokens)
        """
        chosen = self if multiplier == 1.0 else self.scaled(multiplier)
        with apply_steering(model, chosen, prompt_length=prompt_length) as steered:
            yield steered

    def to_json(self) -> dict[str, Any]:
        """The settings of every term (no tensors), for results files."""
        return {"label": self.label, "terms": [term.to_json() for term in self.terms]}

    def save(self, path_stem: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``{stem}.json`` (settings, digests) and ``{stem}.safetensors``, atomically."""
        tensors = {f"term_{index}": term.vector for index, term in enumerate(self.terms)}
        if not tensors:  # safetensors files cannot be empty of tensors
            tensors = {"_empty": torch.zeros(0)}
        return save_tensor_bundle(path_stem, tensors, {"format": _FORMAT, **self.to_json()})

    @classmethod
    def load(cls, path_stem: str | os.PathLike[str]) -> Steering:
        """Load what :meth:`save` wrote, refusing any disagreement between JSON and tensors."""
        tensors, meta = load_tensor_bundle(path_stem, expected_format=_FORMAT)
        where = str(Path(path_stem).with_suffix(".json").resolve())
        entries = meta.get("terms")
        if not isinstance(entries, list):
            raise ValueError(f"{where}: field 'terms' must be a list of term objects")
        stored = sorted(name for name in tensors if name.startswith("term_"))
        if len(stored) != len(entries):
            raise ValueError(
                f"{where}: the JSON lists {len(entries)} term(s) but the tensors file holds "
                f"{len(stored)} ({', '.join(stored) or 'none'})"
            )
        terms = [_load_term(entry, index, tensors, where) for index, entry in enumerate(entries)]
        return cls(terms=tuple(terms), label=str(meta.get("label", "")))


def _load_term(entry: Any, index: int, tensors: Mapping[str, Tensor], where: str) -> SteeringTerm:
    """One term from its JSON entry and tensor; any disagreement is an error naming the term."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: terms[{index}] must be an object, got {type(entry).__name__}")
    name = entry.get("name", f"terms[{index}]")
    what = f"{where}: term {index} ({name!r})"
    vector = tensors[f"term_{index}"]
    try:
        layer = entry["layer"]
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"{what}: field 'layer' must be an integer, got {layer!r}")
        term = SteeringTerm(
            layer=layer,
            vector=vector,
            alpha=entry["alpha"],
            alpha_mode=entry["alpha_mode"],
            reference_norm=entry["reference_norm"],
            name=entry["name"],
            point=entry["point"],
            positions=entry["positions"],
            provenance=entry["provenance"],
            operation=entry.get("operation", "add"),
        )
    except KeyError as err:
        raise ValueError(f"{what}: field {err} missing") from None
    except TypeError as err:
        raise ValueError(f"{what}: {err}") from None
    if entry.get("vector_digest") != tensor_digest(vector):
        raise ValueError(
            f"{what}: its tensor term_{index} is not the vector this JSON describes (digests "
            "differ): the JSON and the .safetensors do not belong together, or terms were reordered"
        )
    if entry.get("settings_digest") != _settings_digest(term.settings()):
        raise ValueError(
            f"{what}: its settings (layer, alpha, operation, ...) differ from those it was saved "
            "with (settings digest mismatch): the JSON was edited by hand"
        )
    return term


def single_layer_steering(
    vector: Float[Tensor, " d_model"],
    layer: int,
    alpha: float,
    *,
    alpha_mode: AlphaMode = "raw",
    reference_norm: float | None = None,
    name: str = "vector",
    provenance: Mapping[str, Any] | None = None,
    point: str = "resid_post",
    positions: PositionName = "all",
    operation: Operation = "add",
) -> Steering:
    """One edit at one layer, e.g. EN-steering (``name="en"``) or LOC-steering (``name="loc"``).

    Example:
        >>> s = single_layer_steering(torch.ones(4), 3, 0.5, alpha_mode="relative", reference_norm=10.0)
        >>> round(s.terms[0].effective_norm(), 6)
        5.0
    """
    term = SteeringTerm(
        layer, vector, alpha, alpha_mode, reference_norm, name, point, positions,
        dict(provenance or {}), operation,
    )  # fmt: skip
    return Steering(terms=(term,))


def surgical_steering(
    en_vector: Float[Tensor, " d_model"],
    transfer_layer: int,
    transfer_alpha: float,
    loc_vector: Float[Tensor, " d_model"],
    local_layer: int,
    local_alpha: float,
    *,
    alpha_mode: AlphaMode = "raw",
    en_reference_norm: float | None = None,
    loc_reference_norm: float | None = None,
    en_provenance: Mapping[str, Any] | None = None,
    loc_provenance: Mapping[str, Any] | None = None,
    point: str = "resid_post",
    positions: PositionName = "all",
    names: tuple[str, str] = ("en", "loc"),
) -> Steering:
    """Surgical Steering: the EN vector at the transfer layer and the LOC vector at the local layer.

    The study puts the transfer layer (middle) below the local layer (deep), but any order is
    accepted, and equal layers simply add both vectors at the same point.

    Example:
        >>> s = surgical_steering(torch.ones(4), 6, 2.0, -torch.ones(4), 12, 1.0)
        >>> [(t.name, t.layer) for t in s.terms]
        [('en', 6), ('loc', 12)]
    """
    parts = (
        (names[0], en_vector, transfer_layer, transfer_alpha, en_reference_norm, en_provenance),
        (names[1], loc_vector, local_layer, local_alpha, loc_reference_norm, loc_provenance),
    )
    terms = tuple(
        SteeringTerm(
            layer, vector, alpha, alpha_mode, norm, name, point, positions, dict(prov or {})
        )
        for name, vector, layer, alpha, norm, prov in parts
    )
    return Steering(terms=terms)


@contextmanager
def apply_steering(
    model: HookedTransformer, steering: Steering | None, *, prompt_length: int | None = None
) -> Iterator[HookedTransformer]:
    """Attach a steering for a ``with`` block (``None``: attach nothing); always detached after.

    Example:
        >>> with apply_steering(model, steering) as steered:  # doctest: +SKIP
        ...     logits = steered(tokens)
    """
    if steering is None:
        yield model
        return
    steering.validate(model)
    with steering_hooks(model, steering.fwd_hooks(prompt_length)) as hooked:
        yield hooked
