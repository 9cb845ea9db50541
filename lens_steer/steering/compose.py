"""A steering: several term edits applied together, saved and loaded with self-checks.

A :class:`Steering` is a tuple of :class:`~lens_steer.steering.terms.SteeringTerm` edits applied
together in one forward pass. Single-layer EN- or LOC-steering is one term; Surgical Steering is
two, ``{l_T: alpha_T * v_EN, l_L: alpha_L * v_LOC}``. It saves as ``{stem}.json`` +
``{stem}.safetensors``; the JSON records each term's settings, the digest of its own tensor and a
digest of the settings, so a JSON edited by hand or paired with other tensors is refused with the
term named. :meth:`Steering.apply` (or :func:`apply_steering`) attaches it for a ``with`` block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer._io import load_tensor_bundle, save_tensor_bundle, tensor_digest
from lens_steer.hooks import HookFn, PositionName, check_hook_point, steering_hooks
from lens_steer.models import model_id
from lens_steer.steering.terms import (
    AlphaMode,
    Operation,
    SteeringTerm,
    settings_digest,
)

_FORMAT = "lens_steer.Steering/2"


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
    if entry.get("settings_digest") != settings_digest(term.settings()):
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
