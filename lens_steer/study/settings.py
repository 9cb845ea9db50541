"""Every setting of a study run, validated before anything is loaded or written.

Settings are a frozen dataclass recorded in ``config.json`` and beside every number. Runtime-only
settings (device, batch size, progress bars) change no number and may differ when a run is
resumed; all others are part of the run's identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from lens_steer.data.blend_probe import is_blend_root
from lens_steer.data.jsonl import declare_languages
from lens_steer.data.languages import ENGLISH, Target, parse_target
from lens_steer.evaluate.metrics import CALIBRATIONS, metric
from lens_steer.evaluate.surgical import CRITERIA
from lens_steer.geometry.methods import vector_method
from lens_steer.models import DEFAULT_MODEL, check_device, check_model_source

RUNTIME_ONLY = frozenset({"device", "batch_size"})
"""Settings that change no number: a run folder made with other values is still resumable."""

MIN_ITEMS = 8
"""Below this many items in a scored split a metric's interval is not worth reporting: refused."""

WARN_ITEMS = 30
"""Below this many items a metric is measured but flagged as underpowered."""


@dataclass(frozen=True)
class StudySettings:
    """The study's settings (see the README's option table and ``lens-steer run --help``).

    ``targets`` are ``"lang"`` (its default country) or ``"lang:Country"``. ``alphas`` are in
    units of the fitted vector (``alpha_mode="raw"``: 1 adds the whole mean difference) unless
    ``alpha_mode="relative"``. Empty layer tuples mean the defaults: every layer for the sweeps,
    the middle third (every other layer) for the transfer side of the surgical grid and the
    last third for the local side. ``limit`` keeps a seeded random sample of that many items per
    kind, language and scored split (stratified by topic); ``fit_limit`` does the same for the
    fit split the vectors come from.
    """

    model: str = DEFAULT_MODEL
    targets: tuple[str, ...] = ("ko", "id")
    data: tuple[str, ...] = ()
    builtin: bool = True
    metrics: tuple[str, ...] = (
        "transfer",
        "transfer_gap",
        "transfer_mc",
        "gold_logprob",
        "gap_closure",
        "blend_localization",
        "localization",
    )
    axes: tuple[str, str] = ("transfer", "gold_logprob")
    calibrations: tuple[str, ...] = CALIBRATIONS
    vector_methods: tuple[str, ...] = ("en", "loc")
    layers: tuple[int, ...] = ()
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0)
    alpha_mode: str = "raw"
    n_controls: int = 3
    control_alphas: tuple[float, ...] = (1.0,)
    transfer_layers: tuple[int, ...] = ()
    transfer_alphas: tuple[float, ...] = (0.5, 1.0)
    local_layers: tuple[int, ...] = ()
    local_alphas: tuple[float, ...] = (0.5, 1.0)
    criterion: str = "sum_gain"
    position: str = "last"
    limit: int | None = None
    fit_limit: int | None = None
    seed: int = 0
    n_bootstrap: int = 1000
    vector_bootstrap: int = 200
    kl_prompts: int = 16
    equivalence_margin: float = 0.15
    noninferiority_margin: float = 0.25
    device: str | None = None
    batch_size: int = 16

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StudySettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}")
        converted: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in obj.items()
        }
        return cls(**converted)

    def parsed_targets(self) -> tuple[Target, ...]:
        return tuple(parse_target(text) for text in self.targets)

    def identity(self) -> dict[str, Any]:
        """The settings that define a run's numbers (runtime-only ones left out)."""
        return {k: v for k, v in self.to_json().items() if k not in RUNTIME_ONLY}


QUICK: dict[str, Any] = {
    "limit": 16,
    "fit_limit": 48,
    "layers": (0, 3, 6, 9, 12, 15),
    "alphas": (1.0,),
    "control_alphas": (1.0,),
    "n_controls": 1,
    "transfer_alphas": (1.0,),
    "local_alphas": (1.0,),
    "calibrations": ("sum", "per_token"),
    "metrics": ("transfer", "transfer_gap", "gold_logprob", "gap_closure", "localization"),
    "n_bootstrap": 500,
    "vector_bootstrap": 100,
    "kl_prompts": 8,
}
"""The README's quick run: small seeded samples, every third layer, one dose, one random control
per point (at every swept layer), sized to finish in minutes on 2 CPU cores. A smoke run of the
whole pipeline: its verdicts rest on 16 items per axis and are expected to be inconclusive."""


def quick(settings: StudySettings, given: set[str] = frozenset()) -> StudySettings:  # type: ignore[assignment]
    """``settings`` with the quick sizes for every setting not in ``given``."""
    return replace(settings, **{k: v for k, v in QUICK.items() if k not in given})


def _finite_numbers(values: tuple[float, ...], name: str, *, positive: bool = False) -> None:
    if not values:
        raise ValueError(f"--{name.replace('_', '-')} needs at least one number")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"--{name.replace('_', '-')}: {value!r} is not a finite number")
        if positive and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: {value!r} must be > 0")


def _count(value: int | None, name: str, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}"
        )


def validate_settings(settings: StudySettings, *, model_given: bool = False) -> tuple[Target, ...]:
    """Check every setting that needs no model and no data; return the parsed targets.

    ``model_given``: the caller passes a loaded model, so ``settings.model`` only names it.

    Raises:
        ValueError / FileNotFoundError naming the setting (and the path) at fault.
    """
    if not settings.targets:
        raise ValueError("give at least one target (--targets es:Mexico, or --langs ko)")
    for source in settings.data:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {path.resolve()} does not exist; give a BLEnD folder or a JSONL file"
            )
        if path.is_dir() and not is_blend_root(path):
            raise ValueError(
                f"--data {path.resolve()} is a folder without BLEnD's annotations/ and questions/"
            )
        if path.is_file():  # its meta records may declare a target's language
            declare_languages(path)
    targets = settings.parsed_targets()
    english = [t.key for t in targets if t.lang == ENGLISH]
    if english:
        raise ValueError(
            f"target(s) {english}: English cannot be a target (the EN vector is English minus "
            "the target language, which is zero for English)"
        )
    if len(set(targets)) != len(targets):
        raise ValueError(f"a target is given twice: {list(settings.targets)}")
    if not isinstance(settings.model, str) or not settings.model.strip():
        raise ValueError("--model is empty; give 'gemma-3-270m', a model name or a path")
    if not settings.builtin and not settings.data:
        raise ValueError("--no-builtin needs at least one --data source")
    for name in settings.metrics:
        metric(name)
    missing_axes = [axis for axis in settings.axes if axis not in settings.metrics]
    if len(settings.axes) != 2 or missing_axes:
        raise ValueError(
            f"--axes must name two of the study's metrics {list(settings.metrics)}, got "
            f"{list(settings.axes)}"
        )
    unknown = [c for c in settings.calibrations if c not in CALIBRATIONS]
    if unknown or not settings.calibrations or settings.calibrations[0] != "sum":
        raise ValueError(
            f"--calibrations must start with 'sum' and use {CALIBRATIONS}, got "
            f"{list(settings.calibrations)}"
        )
    for name in settings.vector_methods:
        vector_method(name)
    if settings.alpha_mode not in ("raw", "relative"):
        raise ValueError(f"--alpha-mode must be 'raw' or 'relative', got {settings.alpha_mode!r}")
    for name in ("alphas", "transfer_alphas", "local_alphas"):
        _finite_numbers(getattr(settings, name), name)
    if settings.control_alphas:
        _finite_numbers(settings.control_alphas, "control_alphas")
        missing = [a for a in settings.control_alphas if a not in settings.alphas]
        if missing:
            raise ValueError(f"--control-alphas {missing} are not among --alphas {settings.alphas}")
    for name in ("layers", "transfer_layers", "local_layers"):
        for layer in getattr(settings, name):
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise ValueError(f"--{name.replace('_', '-')}: {layer!r} is not a layer index")
    if settings.criterion not in CRITERIA:
        raise ValueError(f"--criterion must be one of {list(CRITERIA)}, got {settings.criterion!r}")
    if settings.position not in ("last", "mean"):
        try:
            int(settings.position)
        except ValueError:
            raise ValueError(
                f"--position must be 'last', 'mean' or an integer index, got {settings.position!r}"
            ) from None
    _count(settings.limit, "limit", MIN_ITEMS)
    _count(settings.fit_limit, "fit_limit", 4)
    _count(settings.seed, "seed", 0)
    _count(settings.n_bootstrap, "n_bootstrap", 100)
    _count(settings.vector_bootstrap, "vector_bootstrap", 0)
    _count(settings.n_controls, "n_controls", 0)
    _count(settings.kl_prompts, "kl_prompts", 0)
    _count(settings.batch_size, "batch_size", 1)
    _finite_numbers((settings.equivalence_margin,), "equivalence_margin", positive=True)
    _finite_numbers((settings.noninferiority_margin,), "noninferiority_margin", positive=True)
    if not model_given:
        check_model_source(settings.model)
    if settings.device is not None:
        check_device(settings.device)
    return targets


def default_surgical_layers(n_layers: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Transfer layers: the middle third, every other; local layers: the last third, every other."""
    third = max(1, n_layers // 3)
    return tuple(range(third, 2 * third, 2)), tuple(range(2 * third, n_layers, 2))


def validate_layers(settings: StudySettings, n_layers: int) -> None:
    """Layers must exist in the model: name the bad ones and the valid range."""
    for name in ("layers", "transfer_layers", "local_layers"):
        bad = [layer for layer in getattr(settings, name) if not 0 <= layer < n_layers]
        if bad:
            raise ValueError(
                f"--{name.replace('_', '-')} {bad} out of range: the model has layers "
                f"0..{n_layers - 1}"
            )
