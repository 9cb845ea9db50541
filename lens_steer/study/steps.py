"""The study's steps, each a plain function: inputs in, a result value out, no files.

collect → vectors → geometry → sweeps → surgical search → plane → findings. :func:`run_study`
(:mod:`lens_steer.study.run`) calls them in order, in memory or into a resumable run folder;
the notebook and ``analyses/`` call the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformer_lens import HookedTransformer

from lens_steer.data.languages import ENGLISH
from lens_steer.data.records import ProbeSet
from lens_steer.data.templates import blend_prompt, parallel_prompt
from lens_steer.evaluate.points import ScoringSettings
from lens_steer.evaluate.surgical import SurgicalSearch, SurgicalSettings, surgical_search
from lens_steer.evaluate.sweep import LayerSweep, SweepSettings, layer_sweep
from lens_steer.geometry.cosine import cosine, null_band, residual_scale
from lens_steer.geometry.methods import VectorInputs, fit_vectors
from lens_steer.geometry.mixing import LayerMixing, measure_mixing
from lens_steer.geometry.pca import LayerPCA, pca_by_layer
from lens_steer.geometry.prompt_sets import collect_blend, collect_localization, collect_parallel
from lens_steer.geometry.vectors import ContrastVector
from lens_steer.residuals import ResidualSet
from lens_steer.stats.equivalence import null_quantile, sign_flip_null
from lens_steer.study.data import StudyData
from lens_steer.study.settings import StudySettings, default_surgical_layers

Vectors = dict[str, dict[str, ContrastVector]]
"""``{target key: {method: vector}}``."""


@dataclass(frozen=True)
class Collected:
    """Residuals at every layer: parallel sentences (all splits) and each target's culture items.

    ``target_sets[target]`` holds the fit-split prompt sets its vector methods read
    (``"blend:explicit"``, ``"blend:implicit"``, ``"blend:english"``, or
    ``"localization:explicit"`` / ``"localization:implicit"``); ``reference_norms[target]`` is
    the mean residual norm per layer of the target language's fit-split prompts.
    """

    parallel: ResidualSet | None
    target_sets: dict[str, dict[str, ResidualSet]]
    reference_norms: dict[str, list[float]]

    def __repr__(self) -> str:
        sets = {key: sorted(value) for key, value in self.target_sets.items()}
        return f"Collected(parallel={self.parallel!r}, target sets={sets})"


def _collect_options(settings: StudySettings, show_progress: bool) -> dict[str, Any]:
    position: Any = settings.position
    if position not in ("last", "mean"):
        position = int(position)
    return {
        "position": position,
        "batch_size": settings.batch_size,
        "show_progress": show_progress,
    }


def collect(
    model: HookedTransformer,
    data: StudyData,
    settings: StudySettings,
    *,
    show_progress: bool = True,
) -> Collected:
    """Collect parallel sentences (English + target languages, all splits) and culture items."""
    options = _collect_options(settings, show_progress)
    langs = [ENGLISH, *dict.fromkeys(t.lang for t in data.targets)]
    with_parallel = [lang for lang in langs if any(p.lang == lang for p in data.probe.parallel)]
    parallel = (
        collect_parallel(model, data.probe, with_parallel, split=None, **options)
        if len(with_parallel) > 1
        else None
    )
    target_sets: dict[str, dict[str, ResidualSet]] = {}
    norms: dict[str, list[float]] = {}
    for target in data.targets:
        items = data.items[target.key]
        sets: dict[str, ResidualSet] = {}
        blend = items.of("blend", "fit")
        needs_english = parallel is None or target.lang not in parallel.langs
        if blend:
            forms: tuple[Any, ...] = (
                ("explicit", "implicit", "english") if needs_english else ("explicit", "implicit")
            )
            sets.update(
                {
                    f"blend:{form}": r
                    for form, r in collect_blend(model, blend, forms=forms, **options).items()
                }  # type: ignore[arg-type]
            )
        elif items.of("localization", "fit"):
            probe = ProbeSet([], list(items.localization), [])
            sets.update(
                {
                    f"localization:{form}": r
                    for form, r in collect_localization(
                        model, probe, [target.lang], split="fit", **options
                    ).items()
                }
            )
        target_sets[target.key] = sets
        if parallel is not None and target.lang in parallel.langs:
            own = fit_split(parallel, data).where_lang(target.lang)
            norms[target.key] = own.mean_norm().tolist()
        else:
            implicit = next(v for k, v in sets.items() if k.endswith(":implicit"))
            norms[target.key] = implicit.mean_norm().tolist()
    return Collected(parallel, target_sets, norms)


def fit_split(parallel: ResidualSet, data: StudyData) -> ResidualSet:
    """The fit-split rows of the parallel residuals."""
    splits = {item.id: item.split for item in data.probe.parallel}
    return parallel.select(
        [i for i, item_id in enumerate(parallel.ids) if splits[item_id] == "fit"]
    )


def vectors(collected: Collected, data: StudyData, settings: StudySettings) -> Vectors:
    """Every vector method of the study for every target, fitted on the fit split."""
    parallel_fit = None if collected.parallel is None else fit_split(collected.parallel, data)
    out: Vectors = {}
    for target in data.targets:
        sets = dict(collected.target_sets[target.key])
        if parallel_fit is not None:
            sets["parallel"] = parallel_fit
        inputs = VectorInputs(target, sets, "fit", settings.vector_bootstrap, settings.seed)
        out[target.key] = fit_vectors(inputs, settings.vector_methods)
    return out


@dataclass(frozen=True)
class Geometry:
    """PCA and mixing of the parallel sentences; cosines between each target's vectors.

    ``cosines[target]`` holds per-layer arrays: ``raw``/``std`` estimates, their bootstrap
    samples ``[draw, layer]``, the sign-flip null quantile and the pairs compared.
    ``positive_control`` holds the cosine of two targets' EN vectors (the same kind of vector in
    two languages: a cosine the test must detect) with its samples, when there are two targets.
    """

    pca: tuple[LayerPCA, ...]
    mixing: tuple[LayerMixing, ...]
    cosines: dict[str, dict[str, Any]]
    positive_control: dict[str, Any] | None
    null_band: float
    settings: dict[str, Any] = field(default_factory=dict)


def _scale(collected: Collected, target: str) -> np.ndarray | None:
    sets = list(collected.target_sets[target].values())
    if collected.parallel is not None:
        sets.append(collected.parallel)
    stacked = ResidualSet.concat(sets) if len(sets) > 1 else sets[0]
    return residual_scale(stacked, stacked.layers, stacked.d_model).numpy()


def _cosine_samples(u: ContrastVector, v: ContrastVector, scale: np.ndarray | None) -> np.ndarray:
    if u.bootstrap is None or v.bootstrap is None:
        return np.zeros((0, len(u.layers)))
    n = min(u.bootstrap.shape[0], v.bootstrap.shape[0])
    ub, vb = u.bootstrap[:n], v.bootstrap[:n]
    if scale is not None:
        import torch

        s = torch.as_tensor(scale)
        ub, vb = ub / s, vb / s
    return cosine(ub, vb).numpy()


def _pair_cosines(
    u: ContrastVector, v: ContrastVector, scale: np.ndarray | None, n_flips: int, seed: int
) -> dict[str, Any]:
    import torch

    s = torch.as_tensor(scale) if scale is not None else torch.ones(u.d_model)
    out: dict[str, Any] = {
        "raw": cosine(u.vectors, v.vectors).numpy(),
        "std": cosine(u.vectors / s, v.vectors / s).numpy(),
        "raw_samples": _cosine_samples(u, v, None),
        "std_samples": _cosine_samples(u, v, scale),
    }
    if v.differences is not None and n_flips > 0:
        diffs = v.differences.numpy()
        out["raw_null"] = null_quantile(
            sign_flip_null(diffs, u.vectors.numpy(), n_flips=n_flips, seed=seed)
        )
        out["std_null"] = null_quantile(
            sign_flip_null(diffs, u.vectors.numpy(), scale=scale, n_flips=n_flips, seed=seed)
        )
    return out


def geometry(
    collected: Collected,
    vectors_by_target: Vectors,
    settings: StudySettings,
    *,
    n_flips: int = 200,
    show_progress: bool = True,
) -> Geometry:
    """PCA, mixing (with per-group scores for intervals) and cosine tests of the vectors."""
    pcas: tuple[LayerPCA, ...] = ()
    mixings: tuple[LayerMixing, ...] = ()
    if collected.parallel is not None:
        pcas = tuple(
            pca_by_layer(collected.parallel, standardize=std, show_progress=False)
            for std in (False, True)
        )
        mixings = tuple(
            measure_mixing(
                collected.parallel,
                standardize=std,
                seed=settings.seed,
                show_progress=show_progress,
            )  # fmt: skip
            for std in (False, True)
        )
    cosines = {}
    for key, by_method in vectors_by_target.items():
        if "en" in by_method and "loc" in by_method:
            scale = _scale(collected, key)
            cosines[key] = _pair_cosines(
                by_method["en"], by_method["loc"], scale, n_flips, settings.seed
            )
    positive = None
    ens = [(key, v["en"]) for key, v in vectors_by_target.items() if "en" in v]
    if len(ens) >= 2:
        (key_a, en_a), (key_b, en_b) = ens[:2]
        scale = _scale(collected, key_a)
        positive = {
            "pair": [key_a, key_b],
            **{k: v for k, v in _pair_cosines(en_a, en_b, scale, 0, 0).items() if "null" not in k},
        }
    d_model = next(iter(next(iter(vectors_by_target.values())).values())).d_model
    return Geometry(
        pcas,
        mixings,
        cosines,
        positive,
        null_band(d_model),
        {"n_flips": n_flips, "vector_bootstrap": settings.vector_bootstrap, "seed": settings.seed},
    )


def scoring_settings(settings: StudySettings) -> ScoringSettings:
    return ScoringSettings(
        metrics=settings.metrics,
        calibrations=settings.calibrations,  # type: ignore[arg-type]
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )


def kl_prompts(data: StudyData, target_key: str, count: int) -> list[str]:
    """Neutral texts of the target language for the next-token KL of each dose."""
    items = data.items[target_key]
    sentences = sorted(items.of("parallel", "eval"), key=lambda item: item.id)
    if sentences:
        return [parallel_prompt(item) for item in sentences[:count]]
    questions = sorted(items.of("blend", "eval"), key=lambda item: item.id)
    return [blend_prompt(item, "implicit") for item in questions[:count]]


def sweep(
    model: HookedTransformer,
    data: StudyData,
    vectors_for_target: Mapping[str, ContrastVector],
    collected: Collected,
    settings: StudySettings,
    target_key: str,
    split: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> LayerSweep:
    """Every vector method of one target at every layer and alpha, with controls, on one split."""
    n_layers = model.cfg.n_layers
    sweep_settings = SweepSettings(
        layers=settings.layers or tuple(range(n_layers)),
        alphas=settings.alphas,
        alpha_mode=settings.alpha_mode,  # type: ignore[arg-type]
        n_controls=settings.n_controls,
        control_alphas=settings.control_alphas or None,
        seed=settings.seed,
    )
    return layer_sweep(
        model, data.items[target_key], vectors_for_target, sweep_settings,
        scoring_settings(settings), split=split,  # type: ignore[arg-type]
        reference_norms=collected.reference_norms[target_key],
        kl_prompts=kl_prompts(data, target_key, settings.kl_prompts), checkpoint=checkpoint,
        show_progress=show_progress,
    )  # fmt: skip


def surgical(
    model: HookedTransformer,
    data: StudyData,
    vectors_for_target: Mapping[str, ContrastVector],
    collected: Collected,
    settings: StudySettings,
    target_key: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> SurgicalSearch:
    """The surgical grid of one target on dev; frontier, best points and controls on eval."""
    transfer_default, local_default = default_surgical_layers(model.cfg.n_layers)
    surgical_settings = SurgicalSettings(
        transfer_layers=settings.transfer_layers or transfer_default,
        local_layers=settings.local_layers or local_default,
        transfer_alphas=settings.transfer_alphas,
        local_alphas=settings.local_alphas,
        axes=data.axes[target_key],
        criterion=settings.criterion,
        alpha_mode=settings.alpha_mode,  # type: ignore[arg-type]
        n_controls=max(1, settings.n_controls),
        seed=settings.seed,
    )
    return surgical_search(
        model, data.items[target_key], vectors_for_target, surgical_settings,
        scoring_settings(settings), reference_norms=collected.reference_norms[target_key],
        checkpoint=checkpoint, show_progress=show_progress,
    )  # fmt: skip
