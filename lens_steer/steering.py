"""Steering settings as values: which vector goes at which layer with which alpha.

A :class:`Steering` is a tuple of :class:`SteeringTerm` additions applied together in one forward
pass. Single-layer EN- or LOC-steering is one term; Surgical Steering is two,
``{l_T: alpha_T * v_EN, l_L: alpha_L * v_LOC}``. Alpha is either raw (the added vector is
``alpha * v``) or relative (the added vector has norm ``alpha`` times the mean residual norm at
that layer, which makes alphas comparable across layers whose residual norms differ by 200x).

A steering saves as ``{stem}.json`` (settings) + ``{stem}.safetensors`` (vectors) and loads back
exactly. :func:`apply_steering` attaches it for a ``with`` block; :func:`generate` and
:func:`compare_generations` read steered text side by side.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.utilities.tokenize_utils import get_attention_mask

from lens_steer.cache import load_tensor_bundle, save_tensor_bundle
from lens_steer.hooks import (
    POSITION_NAMES,
    RESIDUAL_POINTS,
    HookFn,
    PositionName,
    add_vector_hook,
    check_hook_point,
    resid_hook_name,
    steering_hooks,
)
from lens_steer.models import model_id
from lens_steer.tokens import tokenize_batch

AlphaMode = Literal["raw", "relative"]
ALPHA_MODES = ("raw", "relative")
_FORMAT = "lens_steer.Steering/1"


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
    """One addition to the residual stream: ``effective_vector()`` at ``point`` of ``layer``.

    Attributes:
        layer: block index, 0..n_layers-1.
        vector: the direction ``[d_model]`` (for example a ContrastVector row).
        alpha: its scale, raw or relative (see ``alpha_mode``).
        alpha_mode: ``"raw"``: add ``alpha * vector``; ``"relative"``: add a vector of norm
            ``alpha * reference_norm`` along ``vector``.
        reference_norm: mean residual norm at that layer (``ResidualSet.mean_norm()``); required
            for ``"relative"``, recorded when given for ``"raw"``.
        name: what the vector is (``"en"``, ``"loc"``, ...).
        point: the residual point in the block (``resid_post`` by default).
        positions: ``"all"``, ``"prompt"`` or ``"generated"``.
        provenance: where the vector came from (model id, hook, split, language, ...); JSON.
    """

    layer: int
    vector: Float[Tensor, " d_model"]
    alpha: float
    alpha_mode: AlphaMode
    reference_norm: float | None
    name: str
    point: str = "resid_post"
    positions: PositionName = "all"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"SteeringTerm {self.name!r} at layer {self.layer}"
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise ValueError(f"{where}: layer must be an int >= 0")
        if not isinstance(self.vector, Tensor) or self.vector.ndim != 1:
            shape = tuple(self.vector.shape) if isinstance(self.vector, Tensor) else self.vector
            raise ValueError(f"{where}: vector must be a 1-D tensor [d_model], got {shape!r}")
        if not self.vector.is_floating_point() or not bool(torch.isfinite(self.vector).all()):
            raise ValueError(f"{where}: vector must be floating point with no NaN or inf")
        object.__setattr__(self, "alpha", _finite_float(self.alpha, f"{where}: alpha"))
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(
                f"{where}: alpha_mode must be 'raw' or 'relative', got {self.alpha_mode!r}"
            )
        if self.reference_norm is not None:
            norm = _finite_float(self.reference_norm, f"{where}: reference_norm")
            if norm <= 0:
                raise ValueError(f"{where}: reference_norm must be > 0, got {norm}")
            object.__setattr__(self, "reference_norm", norm)
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

    def effective_vector(self) -> Float[Tensor, " d_model"]:
        """The vector actually added: ``alpha * v`` (raw) or ``alpha * ref * v / |v|`` (relative)."""
        if self.alpha_mode == "raw":
            return self.alpha * self.vector
        assert self.reference_norm is not None
        scale = self.alpha * self.reference_norm / float(self.vector.double().norm())
        return scale * self.vector

    def effective_norm(self) -> float:
        """L2 norm of :meth:`effective_vector`."""
        return float(self.effective_vector().double().norm())

    def to_json(self) -> dict[str, Any]:
        """The settings (no tensors) with the vector's and the added vector's norms."""
        return {
            "name": self.name,
            "layer": self.layer,
            "point": self.point,
            "hook_name": self.hook_name,
            "positions": self.positions,
            "alpha": self.alpha,
            "alpha_mode": self.alpha_mode,
            "reference_norm": self.reference_norm,
            "vector_norm": float(self.vector.double().norm()),
            "effective_norm": self.effective_norm(),
            "d_model": self.d_model,
            "dtype": str(self.vector.dtype).removeprefix("torch."),
            "provenance": self.provenance,
        }


@dataclass(frozen=True, eq=False)
class Steering:
    """A set of residual additions applied together; no terms means the unsteered model.

    Example:
        >>> steering = single_layer_steering(torch.ones(4), layer=2, alpha=1.0, alpha_mode="raw")
        >>> steering.fwd_hooks()[0][0]
        'blocks.2.hook_resid_post'
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

    @property
    def is_null(self) -> bool:
        """True when nothing is added (no terms, or every alpha is 0)."""
        return all(term.alpha == 0.0 for term in self.terms)

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

    def fwd_hooks(self, prompt_length: int | None = None) -> list[tuple[str, HookFn]]:
        """Fresh ``(hook_name, hook)`` pairs, one per term.

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
            hook = add_vector_hook(
                term.effective_vector(), positions=term.positions, prompt_length=prompt_length
            )
            hooks.append((term.hook_name, hook))
        return hooks

    def to_json(self) -> dict[str, Any]:
        """The settings of every term (no tensors), for results files."""
        return {"label": self.label, "terms": [term.to_json() for term in self.terms]}

    def save(self, path_stem: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``{stem}.json`` (settings) and ``{stem}.safetensors`` (vectors), atomically."""
        tensors = {f"term_{index}": term.vector for index, term in enumerate(self.terms)}
        if not tensors:  # safetensors files cannot be empty of tensors
            tensors = {"_empty": torch.zeros(0)}
        return save_tensor_bundle(path_stem, tensors, {"format": _FORMAT, **self.to_json()})

    @classmethod
    def load(cls, path_stem: str | os.PathLike[str]) -> Steering:
        """Load what :meth:`save` wrote; errors name the file and the field at fault."""
        tensors, meta = load_tensor_bundle(path_stem, expected_format=_FORMAT)
        where = Path(path_stem).with_suffix(".json")
        terms = []
        for index, entry in enumerate(meta.get("terms", [])):
            key = f"term_{index}"
            try:
                terms.append(
                    SteeringTerm(
                        layer=int(entry["layer"]),
                        vector=tensors[key],
                        alpha=float(entry["alpha"]),
                        alpha_mode=entry["alpha_mode"],
                        reference_norm=entry["reference_norm"],
                        name=entry["name"],
                        point=entry["point"],
                        positions=entry["positions"],
                        provenance=entry["provenance"],
                    )
                )
            except KeyError as err:
                raise ValueError(f"{where}: term {index} lacks {err}") from err
        return cls(terms=tuple(terms), label=str(meta.get("label", "")))


def single_layer_steering(
    vector: Float[Tensor, " d_model"],
    layer: int,
    alpha: float,
    *,
    alpha_mode: AlphaMode = "relative",
    reference_norm: float | None = None,
    name: str = "en",
    provenance: Mapping[str, Any] | None = None,
    point: str = "resid_post",
    positions: PositionName = "all",
) -> Steering:
    """One vector at one layer: EN-steering (``name="en"``) or LOC-steering (``name="loc"``).

    Example:
        >>> s = single_layer_steering(torch.ones(4), 3, 0.5, reference_norm=10.0)
        >>> round(s.terms[0].effective_norm(), 6)
        5.0
    """
    provenance = dict(provenance or {})
    term = SteeringTerm(
        layer, vector, alpha, alpha_mode, reference_norm, name, point, positions, provenance
    )
    return Steering(terms=(term,), label=f"{name}@L{layer} a={alpha:g} ({alpha_mode})")


def surgical_steering(
    en_vector: Float[Tensor, " d_model"],
    transfer_layer: int,
    transfer_alpha: float,
    loc_vector: Float[Tensor, " d_model"],
    local_layer: int,
    local_alpha: float,
    *,
    alpha_mode: AlphaMode = "relative",
    en_reference_norm: float | None = None,
    loc_reference_norm: float | None = None,
    en_provenance: Mapping[str, Any] | None = None,
    loc_provenance: Mapping[str, Any] | None = None,
    point: str = "resid_post",
    positions: PositionName = "all",
) -> Steering:
    """Surgical Steering: the EN vector at the transfer layer and the LOC vector at the local layer.

    The study puts the transfer layer (middle) below the local layer (deep), but any order is
    accepted, and equal layers simply add both vectors at the same point: a grid search should
    be free to find out.

    Example:
        >>> s = surgical_steering(torch.ones(4), 6, 2.0, -torch.ones(4), 12, 1.0, alpha_mode="raw")
        >>> [(t.name, t.layer) for t in s.terms]
        [('en', 6), ('loc', 12)]
    """
    terms = tuple(
        single_layer_steering(
            vector,
            layer,
            alpha,
            alpha_mode=alpha_mode,
            reference_norm=reference_norm,
            name=name,
            provenance=provenance,
            point=point,
            positions=positions,
        ).terms[0]
        for name, vector, layer, alpha, reference_norm, provenance in (
            ("en", en_vector, transfer_layer, transfer_alpha, en_reference_norm, en_provenance),
            ("loc", loc_vector, local_layer, local_alpha, loc_reference_norm, loc_provenance),
        )
    )
    label = (
        f"surgical en@L{transfer_layer} a={transfer_alpha:g} + "
        f"loc@L{local_layer} a={local_alpha:g} ({alpha_mode})"
    )
    return Steering(terms=terms, label=label)


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


def _decode_new_tokens(model: HookedTransformer, new_tokens: Tensor) -> list[str]:
    """Decode each row's generated tokens up to (not including) its first EOS."""
    assert model.tokenizer is not None
    eos = model.tokenizer.eos_token_id
    texts = []
    for row in new_tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(str(model.tokenizer.decode(row, skip_special_tokens=True)))
    return texts


@torch.inference_mode()
def _generate_batch(
    model: HookedTransformer,
    prompts: Sequence[str],
    steering: Steering | None,
    *,
    max_new_tokens: int,
    do_sample: bool,
) -> list[str]:
    batch = tokenize_batch(model, prompts, padding_side="left")
    assert model.tokenizer is not None
    # model.generate rebuilds the mask from pad ids; make sure it sees the one we padded with.
    rebuilt = get_attention_mask(
        model.tokenizer, batch.tokens, model.cfg.default_prepend_bos, padding_side="left"
    )
    if not torch.equal(rebuilt.to(batch.attention_mask.device), batch.attention_mask):
        raise ValueError(
            "A prompt starts with the pad token; model.generate would mask it out: "
            f"{list(prompts)!r}"
        )
    width = batch.tokens.shape[1]
    with apply_steering(model, steering, prompt_length=width) as steered:
        out = steered.generate(
            batch.tokens,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            stop_at_eos=True,
            use_past_kv_cache=True,
            padding_side="left",
            return_type="tokens",
            verbose=False,
        )
    assert isinstance(out, Tensor)
    return _decode_new_tokens(model, out[:, width:])


def generate(
    model: HookedTransformer,
    prompts: Sequence[str],
    steering: Steering | None = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[str]:
    """Generate continuations (new text only) with a steering attached, batched and left-padded.

    Uses ``model.generate`` with the KV cache; the steering's hooks count positions themselves,
    so ``"generated"`` terms steer each new token. Greedy by default; with ``do_sample`` the
    global torch RNG is seeded with ``seed`` inside a fork, so the caller's RNG is untouched.

    Args:
        model: the model.
        prompts: texts (BOS is added by lens_steer's tokenizer wrapper).
        steering: what to add, or ``None`` for the plain model.
        max_new_tokens: tokens to generate per prompt (generation stops early at EOS).
        do_sample: sample instead of greedy decoding.
        seed: RNG seed for sampling.
        batch_size: prompts per ``model.generate`` call.
        show_progress: show a tqdm bar over batches.

    Example:
        >>> generate(model, ["우리나라의 수도는"], steering, max_new_tokens=5)  # doctest: +SKIP
        [' 서울이다.']
    """
    if isinstance(prompts, str):
        raise TypeError("generate takes a list of prompts, not one string")
    if not prompts:
        raise ValueError("generate got no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if steering is not None:
        steering.validate(model)
    starts = range(0, len(prompts), batch_size)
    texts: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(starts, desc="generate", disable=not show_progress or len(starts) == 1):
            chunk = list(prompts[start : start + batch_size])
            texts += _generate_batch(
                model, chunk, steering, max_new_tokens=max_new_tokens, do_sample=do_sample
            )
    return texts


def compare_generations(
    model: HookedTransformer,
    prompts: Sequence[str],
    steerings: Mapping[str, Steering | None],
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[dict[str, str]]:
    """Generations under several steerings, one row per prompt, for side-by-side reading.

    Args:
        model: the model.
        prompts: texts to continue.
        steerings: ``{label: steering}``; ``None`` is the plain model.
        max_new_tokens, do_sample, seed, batch_size, show_progress: as in :func:`generate`.

    Returns:
        Rows ``{"prompt": text, label: continuation, ...}`` in the order of ``prompts``.

    Example:
        >>> rows = compare_generations(model, ["우리나라의 수도는"], {"plain": None, "en": s})  # doctest: +SKIP
        >>> sorted(rows[0])  # doctest: +SKIP
        ['en', 'plain', 'prompt']
    """
    if not steerings:
        raise ValueError("compare_generations got no steerings")
    if "prompt" in steerings:
        raise ValueError("'prompt' is the prompt column; give the steering another label")
    rows: list[dict[str, str]] = [{"prompt": prompt} for prompt in prompts]
    for label, steering in steerings.items():
        texts = generate(
            model,
            prompts,
            steering,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            seed=seed,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        for row, text in zip(rows, texts, strict=True):
            row[label] = text
    return rows
