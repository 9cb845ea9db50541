"""Layer sweep: ``layer_sweep`` against the naive loop of full ``run_with_hooks`` forwards.

One language's eval-split items are scored unsteered and under EN-steering at every layer and
three relative alphas. The naive side runs, for every steering and batch, one full hooked forward
with full logits (the steering's own ``fwd_hooks``). Ours is ``lens_steer.evaluate.sweep.
layer_sweep`` (each prompt run once for its options, one clean forward per chunk of prompts,
each steering restarts from the cached residuals of its layer, logits at the continuation
positions only), which also builds the per-item rows of the two metrics (``transfer_mc``,
``localization``; summed log-probabilities, no controls, no KL) and their aggregates.

Agreement is checked twice: the log-probs of ``score_steerings(method="fast")`` (the engine
under ``layer_sweep``) against the naive ones (``max_abs_diff``), and every sweep point's
transfer and localization value against the same scores computed from the naive log-probs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from transformer_lens import HookedTransformer

from bench._config import FULL, Sizes
from bench._data import bench_probe_set, plane_requests, plane_selection
from bench._timing import alternate, time_once
from bench.scoring import logprob_comparison, max_abs_diff, naive_batch_logprobs
from lens_steer.data.languages import parse_target
from lens_steer.data.records import ENGLISH, LocalizationItem, TransferItem
from lens_steer.data.targets import TargetItems
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.metrics import option_margin
from lens_steer.evaluate.points import ScoringSettings
from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    assemble_scores,
    prepare_batches,
)
from lens_steer.evaluate.sweep import LayerSweep, SweepSettings, layer_sweep
from lens_steer.geometry import ContrastVector, collect_parallel, en_vectors
from lens_steer.steering import Steering, single_layer_steering


@dataclass(frozen=True)
class SweepSetup:
    """What both sides of the sweep share: items, the EN vector and the reference norms."""

    transfer: list[TransferItem]
    localization: list[LocalizationItem]
    vector: ContrastVector
    norms: Tensor
    layers: list[int]
    alphas: tuple[float, ...]
    source: dict[str, Any]


def sweep_setup(model: HookedTransformer, sizes: Sizes) -> SweepSetup:
    """Fit the EN vector of ``sizes.lang`` on the fit split and pick the eval items."""
    probe, source = bench_probe_set(sizes)
    parallel = collect_parallel(
        model, probe, [ENGLISH, sizes.lang], split="fit", batch_size=sizes.batch_size,
        show_progress=False,
    )  # fmt: skip
    vector = en_vectors(None, probe, [sizes.lang], split="fit", parallel=parallel)[sizes.lang]
    transfer, localization = plane_selection(
        probe, sizes.lang, sizes.sweep_transfer, sizes.sweep_localization, split="eval"
    )
    layers = list(range(0, model.cfg.n_layers, sizes.sweep_layer_stride))
    norms = parallel.mean_norm()  # collected at every layer: slot == layer
    return SweepSetup(transfer, localization, vector, norms, layers, sizes.alphas, source)


def sweep_steerings(setup: SweepSetup) -> dict[str, Steering | None]:
    """The unsteered model and one EN-steering per layer and alpha (as ``layer_sweep`` builds)."""
    steerings: dict[str, Steering | None] = {"unsteered": None}
    for layer in setup.layers:
        for alpha in setup.alphas:
            steerings[f"en@{layer}:{alpha:g}"] = single_layer_steering(
                setup.vector.at_layer(layer), layer, alpha, alpha_mode="relative",
                reference_norm=float(setup.norms[layer]), name="en",
            )  # fmt: skip
    return steerings


def naive_sweep(
    model: HookedTransformer,
    requests: Sequence[ScoringRequest],
    steerings: Mapping[str, Steering | None],
    *,
    batch_size: int,
) -> dict[str, list[OptionScores]]:
    """Every steering the naive way: a full hooked forward with full logits per batch."""
    batches = prepare_batches(model, requests, batch_size=batch_size)
    out = {}
    for key, steering in steerings.items():
        hooks = [] if steering is None else steering.fwd_hooks()
        values = [naive_batch_logprobs(model, batch, hooks) for batch in batches]
        out[key] = assemble_scores(requests, batches, values)
    return out


def score_mismatches(
    sweep: LayerSweep, setup: SweepSetup, naive: Mapping[str, Sequence[OptionScores]]
) -> list[str]:
    """Sweep points whose transfer or localization value differs from the naive log-probs'."""
    n_transfer = len(setup.transfer)
    answers = [item.answer for item in setup.transfer]
    wrong = []
    for key, scores in naive.items():
        transfer = [
            option_margin(s.values(), a)[2]
            for s, a in zip(scores[:n_transfer], answers, strict=True)
        ]
        local = [option_margin(s.values(), 0)[2] for s in scores[n_transfer:]]
        point = sweep.points[key].scores
        expected = (sum(transfer) / len(transfer), sum(local) / len(local))
        if expected != (point["transfer_mc"].value, point["localization"].value):
            wrong.append(key)
    return wrong


def run(model: HookedTransformer, sizes: Sizes = FULL, *, repeats: int = 3) -> dict[str, Any]:
    """Time both sides (alternating) and check they agree.

    Returns:
        ``{"speedup", "max_abs_diff", "details"}``.
    """
    setup = sweep_setup(model, sizes)
    requests = plane_requests(setup.transfer, setup.localization)
    steerings = sweep_steerings(setup)
    batch_size = sizes.batch_size
    english = [i for i in bench_probe_set(sizes)[0].transfer if i.lang == ENGLISH]
    items = TargetItems(
        parse_target(sizes.lang),
        transfer=tuple(setup.transfer) + tuple(english),
        localization=tuple(setup.localization),
    )
    sweep_settings = SweepSettings(
        layers=tuple(setup.layers), alphas=setup.alphas, alpha_mode="relative", n_controls=0
    )
    scoring = ScoringSettings(
        metrics=("transfer_mc", "localization"), calibrations=("sum",), n_bootstrap=200,
        batch_size=batch_size,
    )  # fmt: skip

    def ours() -> LayerSweep:
        return layer_sweep(
            model, items, {"en": setup.vector}, sweep_settings, scoring, split="eval",
            reference_norms=setup.norms, show_progress=False,
        )  # fmt: skip

    timed = alternate(
        {
            "naive": lambda: naive_sweep(model, requests, steerings, batch_size=batch_size),
            "ours": ours,
        },
        repeats,
    )
    engine = time_once(
        lambda: score_steerings(
            model,
            requests,
            steerings,
            method="fast",
            batch_size=batch_size,
            show_progress=False,
        )
    )
    naive = timed["naive"].last
    diff = max(max_abs_diff(naive[key], engine.last[key]) for key in steerings)
    mismatches = score_mismatches(timed["ours"].last, setup, naive)
    start_layers = [None if s is None else s.terms[0].layer for s in steerings.values()]
    out = logprob_comparison(
        model, requests, timed, diff, batch_size=batch_size, start_layers=start_layers
    )
    out["details"] |= {
        "engine_fast_once": engine.to_json(),
        "lang": sizes.lang,
        "split": "eval",
        "layers": setup.layers,
        "alphas": list(setup.alphas),
        "alpha_mode": "relative",
        "n_steerings": len(steerings),
        "n_transfer": len(setup.transfer),
        "n_localization": len(setup.localization),
        "vector": setup.vector.provenance,
        "score_mismatches": mismatches,
        "data": setup.source,
    }
    return out
