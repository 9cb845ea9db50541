"""Vector methods: named ways to turn a target's collected residuals into a steering vector.

A method is a plain callable ``(VectorInputs) -> ContrastVector`` registered under a name. The
study fits every method named in its settings for every target, and sweeps, controls, cosines
and the surgical search treat them alike. Two are built in:

* ``"en"``: English minus language L on parallel sentences, paired by translation group; for a
  language without parallel sentences, BLEnD's English question minus the same question in L
  (both name the country), paired by question; the provenance says which source was used.
* ``"loc"``: explicit minus implicit forms of the target's culture questions (BLEnD when the
  target has BLEnD items, else the built-in localization items), paired by item.

Register your own (a probe direction, a PCA axis, an SAE feature given as a tensor)::

    def sae_feature(inputs: VectorInputs) -> ContrastVector:
        return constant_vector(feature_tensor, inputs, name="sae-1234")

    register_vector_method("sae-1234", sae_feature)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from typing_extensions import Unpack

from lens_steer.collect import CollectOptions
from lens_steer.data.languages import ENGLISH, Target, parse_target
from lens_steer.data.records import ProbeSet
from lens_steer.geometry.prompt_sets import collect_localization, collect_parallel
from lens_steer.geometry.vectors import ContrastVector, contrast_vector
from lens_steer.residuals import ResidualSet


@dataclass(frozen=True)
class VectorInputs:
    """What a vector method may read for one target: named fit-split prompt sets.

    ``sets`` holds ``"parallel"`` (English and the target's language), and, when collected,
    ``"localization:explicit"`` / ``"localization:implicit"`` (built-in culture items) and
    ``"blend:explicit"`` / ``"blend:implicit"`` / ``"blend:english"`` (BLEnD questions of the
    target's country). Rows of the forms of one source align by item.
    """

    target: Target
    sets: Mapping[str, ResidualSet]
    split: str = "fit"
    n_bootstrap: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> ResidualSet | None:
        return self.sets.get(name)

    @property
    def layers(self) -> tuple[int, ...]:
        return next(iter(self.sets.values())).layers

    @property
    def d_model(self) -> int:
        return next(iter(self.sets.values())).d_model


VectorMethod = Callable[[VectorInputs], ContrastVector]
"""A vector method: the target's collected prompt sets in, one vector per layer out."""

_METHODS: dict[str, VectorMethod] = {}


def register_vector_method(name: str, method: VectorMethod, *, replace: bool = False) -> None:
    """Make ``method`` available to studies as ``name`` (``replace=True`` to redefine one)."""
    if not isinstance(name, str) or not name or ":" in name or "@" in name or "+" in name:
        raise ValueError(
            f"vector method name must be a non-empty string without ':@+', got {name!r}"
        )
    if not callable(method):
        raise TypeError(f"vector method {name!r} must be callable, got {type(method).__name__}")
    if name in _METHODS and not replace and _METHODS[name] is not method:
        raise ValueError(f"vector method {name!r} is already registered (pass replace=True)")
    _METHODS[name] = method


def vector_method(name: str) -> VectorMethod:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown vector method {name!r}; registered: {', '.join(_METHODS)} "
            "(add one with lens_steer.register_vector_method)"
        ) from None


def vector_methods() -> tuple[str, ...]:
    """Names of the registered vector methods."""
    return tuple(_METHODS)


def fit_vectors(inputs: VectorInputs, methods: Sequence[str]) -> dict[str, ContrastVector]:
    """Run each named method on one target's inputs; provenance gains method and target."""
    out = {}
    for name in methods:
        vector = vector_method(name)(inputs)
        if not isinstance(vector, ContrastVector):
            raise TypeError(
                f"vector method {name!r} returned {type(vector).__name__}, not a ContrastVector"
            )
        if vector.layers != inputs.layers:
            raise ValueError(
                f"vector method {name!r} for {inputs.target}: layers {vector.layers} differ from "
                f"the collected layers {inputs.layers}"
            )
        provenance = {**vector.provenance, "method": name, "target": inputs.target.key}
        out[name] = replace(vector, provenance=provenance)
    return out


def _pair_by(
    a: ResidualSet, b: ResidualSet, key: str, what: str
) -> tuple[ResidualSet, ResidualSet]:
    """Rows of a and b matched on ``key`` ("ids" or "groups"), in sorted key order."""
    keys_a, keys_b = getattr(a, key), getattr(b, key)
    if not keys_a or not keys_b:
        raise ValueError(f"{what}: the residual sets carry no {key} to pair prompts by")
    for keys in (keys_a, keys_b):
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: duplicate {key} in one of the two sets")
    common = sorted(set(keys_a) & set(keys_b))
    if not common:
        raise ValueError(f"{what}: the two sets share no {key}")
    return (
        a.select([keys_a.index(k) for k in common]),
        b.select([keys_b.index(k) for k in common]),
    )


def paired_vector(
    towards: ResidualSet,
    away: ResidualSet,
    inputs: VectorInputs,
    *,
    key: str,
    name: str,
    source: str,
) -> ContrastVector:
    """``mean(towards) - mean(away)`` over rows paired on ``key``, with the inputs' bootstrap."""
    a, b = _pair_by(towards, away, key, f"{name} vector for {inputs.target}")
    vector = contrast_vector(
        a, b, n_bootstrap=inputs.n_bootstrap, seed=inputs.seed, paired=True, kind=name,
        lang=inputs.target.lang, split=inputs.split, name=f"{name}-{inputs.target.key}",
    )  # fmt: skip
    return replace(vector, provenance={**vector.provenance, "source": source})


def en_method(inputs: VectorInputs) -> ContrastVector:
    """English minus L: parallel sentences when L has them, else BLEnD's question pairs."""
    lang = inputs.target.lang
    parallel = inputs.get("parallel")
    if parallel is not None and lang in parallel.langs and ENGLISH in parallel.langs:
        return paired_vector(
            parallel.where_lang(ENGLISH), parallel.where_lang(lang), inputs, key="groups",
            name="en", source="parallel sentences",
        )  # fmt: skip
    english, local = inputs.get("blend:english"), inputs.get("blend:explicit")
    if english is not None and local is not None:
        return paired_vector(
            english, local, inputs, key="ids", name="en",
            source="BLEnD question pairs (English question - explicit question in L)",
        )  # fmt: skip
    raise ValueError(
        f"en vector for {inputs.target}: no parallel sentences in {lang!r} and no BLEnD "
        "questions of the target; add parallel sentences or BLEnD data for it"
    )


def loc_method(inputs: VectorInputs) -> ContrastVector:
    """Explicit minus implicit culture questions (BLEnD first, else built-in items)."""
    for prefix, source in (("blend", "BLEnD questions"), ("localization", "built-in items")):
        explicit, implicit = inputs.get(f"{prefix}:explicit"), inputs.get(f"{prefix}:implicit")
        if explicit is not None and implicit is not None:
            return paired_vector(explicit, implicit, inputs, key="ids", name="loc", source=source)
    raise ValueError(
        f"loc vector for {inputs.target}: no explicit/implicit culture items in the fit split"
    )


def constant_vector(
    directions: Float[Tensor, "layer d_model"] | Mapping[int, Tensor],
    inputs: VectorInputs,
    *,
    name: str,
) -> ContrastVector:
    """A user-given direction per layer (a probe, PCA or SAE direction) as a ContrastVector.

    Layers missing from a mapping get a zero vector (nothing is added there).
    """
    layers = inputs.layers
    if isinstance(directions, Mapping):
        rows = [
            directions.get(layer, torch.zeros(inputs.d_model)).float().reshape(-1)
            for layer in layers
        ]
        tensor = torch.stack(rows)
    else:
        tensor = directions.float()
    if tuple(tensor.shape) != (len(layers), inputs.d_model):
        raise ValueError(
            f"{name}: directions of shape {tuple(tensor.shape)}, expected "
            f"{(len(layers), inputs.d_model)} (layers {layers[0]}..{layers[-1]})"
        )
    provenance = {"kind": name, "name": name, "lang": inputs.target.lang, "source": "given"}
    return ContrastVector(tensor.clone(), layers, None, provenance)


register_vector_method("en", en_method)
register_vector_method("loc", loc_method)


def en_vectors(
    model: HookedTransformer | None,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str = "fit",
    n_bootstrap: int = 0,
    seed: int = 0,
    parallel: ResidualSet | None = None,
    **options: Unpack[CollectOptions],
) -> dict[str, ContrastVector]:
    """EN vectors per language from the probe set's parallel sentences (the ``"en"`` method).

    Args:
        model: the model (may be ``None`` when ``parallel`` is given).
        probe_set: supplies the parallel sentences.
        langs: the LOC languages.
        split: the fit split (keep the eval split for evaluation).
        n_bootstrap, seed: as in :func:`lens_steer.geometry.contrast_vector`.
        parallel: residuals already collected with ``collect_parallel`` (English and ``langs``).
        **options: collection options, as in ``collect_parallel``.

    Example:
        >>> vectors = en_vectors(model, load_probe_set(), ["ko", "zh"], n_bootstrap=200)  # doctest: +SKIP
        >>> vectors["ko"].provenance["kind"]  # doctest: +SKIP
        'en'
    """
    if parallel is None:
        if model is None:
            raise ValueError("en_vectors needs a model or collected parallel residuals")
        parallel = collect_parallel(model, probe_set, [ENGLISH, *langs], split=split, **options)
    return {
        lang: en_method(
            VectorInputs(parse_target(lang), {"parallel": parallel}, split, n_bootstrap, seed)
        )
        for lang in langs
    }


def loc_vectors(
    model: HookedTransformer | None,
    probe_set: ProbeSet,
    langs: Sequence[str],
    *,
    split: str = "fit",
    n_bootstrap: int = 0,
    seed: int = 0,
    localization: Mapping[str, ResidualSet] | None = None,
    **options: Unpack[CollectOptions],
) -> dict[str, ContrastVector]:
    """LOC vectors per language from the built-in localization items (the ``"loc"`` method).

    Args:
        localization: ``{"explicit": ..., "implicit": ...}`` from ``collect_localization``.
        Others: as in :func:`en_vectors`.
    """
    if localization is None:
        if model is None:
            raise ValueError("loc_vectors needs a model or collected localization residuals")
        localization = collect_localization(model, probe_set, langs, split=split, **options)
    missing = [form for form in ("explicit", "implicit") if form not in localization]
    if missing:
        raise ValueError(f"loc_vectors: localization residuals lack the form(s) {missing}")
    out = {}
    for lang in langs:
        sets = {
            f"localization:{form}": localization[form].where_lang(lang)
            for form in ("explicit", "implicit")
        }
        out[lang] = loc_method(VectorInputs(parse_target(lang), sets, split, n_bootstrap, seed))
    return out
