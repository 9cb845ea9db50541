"""Layer sweep: ``layer_sweep`` against the naive loop of full ``run_with_hooks`` forwards.

One language's eval-split items are scored unsteered and under EN-steering at every layer and
three relative alphas. The naive side runs, for every steering and batch, one full hooked forward
with full logits (the steering's own ``fwd_hooks``). Ours is ``lens_steer.evaluate.sweep.
layer_sweep`` (each prompt run once for its options, one clean forward per chunk of prompts,
each steering restarts from the cached residuals of its layer, logits at the continuation
positions only), which also computes the two scores with bootstrap intervals per point.

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
from bench._data import bench_probe_set, plane_selection
from bench._timing import alternate, time_once
from bench.scoring import logprob_comparison, max_abs_diff, naive_batch_logprobs
from lens_steer.data.records import ENGLISH, LocalizationItem, TransferItem
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.items import PlaneItems
from lens_steer.evaluate.scoring import (
    OptionScores,
    ScoringRequest,
    assemble_scores,
    prepare_batches,
)
from lens_steer.evaluate.sweep import LayerSweep, layer_sweep
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
    sweep: LayerSweep, items: PlaneItems, naive: Mapping[str, Sequence[OptionScores]]
) -> list[str]:
    """Sweep points whose transfer or localization value differs from the naive log-probs'."""
    wrong = []
    for point in sweep.points:
        key = f"{point.kind}@{point.layer}:{point.alpha:g}"
        transfer, localization = items.scores(naive[key], settings={}, n_bootstrap=0)
        if (transfer.value, localization.value) != (
            point.transfer.value,
            point.localization.value,
        ):
            wrong.append(key)
    return wrong


def run(model: HookedTransformer, sizes: Sizes = FULL, *, repeats: int = 3) -> dict[str, Any]:
    """Time both sides (alternating) and check they agree.

    Returns:
        ``{"speedup", "max_abs_diff", "details"}``.
    """
    setup = sweep_setup(model, sizes)
    items = PlaneItems.build(setup.transfer, setup.localization, split="eval")
    steerings = sweep_steerings(setup)
    batch_size = sizes.batch_size

    def ours() -> LayerSweep:
        return layer_sweep(
            model, setup.transfer, setup.localization, {"en": setup.vector}, layers=setup.layers,
            alphas=setup.alphas, alpha_mode="relative", reference_norms=setup.norms,
            split="eval", batch_size=batch_size, show_progress=False,
        )  # fmt: skip

    timed = alternate(
        {
            "naive": lambda: naive_sweep(model, items.requests, steerings, batch_size=batch_size),
            "ours": ours,
        },
        repeats,
    )
    engine = time_once(
        lambda: score_steerings(
            model,
            items.requests,
            steerings,
            method="fast",
            batch_size=batch_size,
            show_progress=False,
        )
    )
    naive = timed["naive"].last
    diff = max(max_abs_diff(naive[key], engine.last[key]) for key in steerings)
    mismatches = score_mismatches(timed["ours"].last, items, naive)
    start_layers = [None if s is None else s.terms[0].layer for s in steerings.values()]
    out = logprob_comparison(
        model, items.requests, timed, diff, batch_size=batch_size, start_layers=start_layers
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
