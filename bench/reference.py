"""Independent check of the EN vector against the ``steering-vectors`` library.

The same vector, English minus ``lang`` over parallel pairs read at the last token, is computed
twice: by lens_steer (``en_vectors``: ``collect_residuals`` at ``blocks.{l}.hook_resid_post`` of
the ``HookedTransformer``, paired mean difference) and by ``steering_vectors.
train_steering_vector`` on the transformers model of the same weights (forward hooks on the
decoder blocks, ``mean_aggregator``: mean of pair differences). A decoder block's output in
transformers is the residual stream after the block, i.e. ``resid_post``; both tokenizers add
BOS; steering-vectors pads with the tokenizer's padding side and moves the read index past the
padding. When ``steering-vectors`` cannot be imported, the transformers side falls back to plain
forward hooks written here (recorded in ``details["library"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from bench._config import FULL, Sizes
from bench._data import bench_probe_set, parallel_selection
from bench._timing import alternate, timings_json
from lens_steer.data.records import ENGLISH, ParallelItem, ProbeSet
from lens_steer.data.templates import parallel_prompt
from lens_steer.geometry import en_vectors

Pairs = list[tuple[str, str]]


def reference_pairs(probe: ProbeSet, sizes: Sizes) -> tuple[ProbeSet, Pairs]:
    """The first fit-split English/``lang`` parallel pairs, as a probe set and as text pairs."""
    items = parallel_selection(probe, (ENGLISH, sizes.lang), sizes.reference_pairs, split="fit")
    by_group: dict[str, dict[str, ParallelItem]] = {}
    for item in items:
        by_group.setdefault(item.group, {})[item.lang] = item
    pairs = [
        (parallel_prompt(group[ENGLISH]), parallel_prompt(group[sizes.lang]))
        for _, group in sorted(by_group.items())
    ]
    return ProbeSet([], [], items, probe.version), pairs


def library_vectors(
    hf_model: Any, tokenizer: Any, pairs: Pairs, layers: Sequence[int], *, batch_size: int
) -> dict[int, Float[Tensor, " d_model"]]:
    """Mean of (positive - negative) last-token decoder-block outputs, by ``steering-vectors``."""
    from steering_vectors import train_steering_vector

    vector = train_steering_vector(
        hf_model, tokenizer, pairs, layers=list(layers), layer_type="decoder_block",
        read_token_index=-1, batch_size=batch_size, show_progress=False,
    )  # fmt: skip
    return {int(layer): value.float() for layer, value in vector.layer_activations.items()}


@torch.inference_mode()
def hook_vectors(
    hf_model: Any, tokenizer: Any, pairs: Pairs, layers: Sequence[int], *, batch_size: int
) -> dict[int, Float[Tensor, " d_model"]]:
    """The same mean difference with plain forward hooks on the transformers decoder blocks."""
    blocks = hf_model.get_decoder().layers
    sums = {layer: torch.zeros(hf_model.config.hidden_size) for layer in layers}
    seen: dict[int, Tensor] = {}

    def reader(layer: int):
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            seen[layer] = hidden[:, -1].float()  # left padding: the last real token

        return hook

    handles = [blocks[layer].register_forward_hook(reader(layer)) for layer in layers]
    try:
        for sign, column in ((1.0, 0), (-1.0, 1)):
            texts = [pair[column] for pair in pairs]
            for start in range(0, len(texts), batch_size):
                inputs = tokenizer(
                    texts[start : start + batch_size], return_tensors="pt", padding=True,
                    padding_side="left",
                )  # fmt: skip
                hf_model(**inputs)
                for layer in layers:
                    sums[layer] += sign * seen[layer].sum(dim=0)
    finally:
        for handle in handles:
            handle.remove()
    return {layer: total / len(pairs) for layer, total in sums.items()}


def cosines(
    ours: Float[Tensor, "layer d_model"], theirs: dict[int, Tensor], layers: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Per-layer cosine and relative L2 difference ``|ours - theirs| / |theirs|`` (float64)."""
    cos, rel = [], []
    for slot, layer in enumerate(layers):
        a, b = ours[slot].double(), theirs[layer].double()
        cos.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
        rel.append(float((a - b).norm() / b.norm()))
    return cos, rel


def run(
    model: HookedTransformer,
    hf_model: Any,
    tokenizer: Any,
    sizes: Sizes = FULL,
    *,
    repeats: int = 3,
) -> dict[str, Any]:
    """Compute the EN vector both ways (alternating, timed) and compare them layer by layer.

    Returns:
        ``{"cosine_min", "details"}``.
    """
    probe, source = bench_probe_set(sizes)
    pairs_probe, pairs = reference_pairs(probe, sizes)
    layers = list(range(model.cfg.n_layers))
    try:
        import steering_vectors

        library = f"steering-vectors {getattr(steering_vectors, '__version__', '')}".strip()
        theirs_fn = library_vectors
    except ImportError as err:
        library = f"plain transformers forward hooks (steering-vectors unavailable: {err})"
        theirs_fn = hook_vectors
    batch_size = sizes.batch_size
    timed = alternate(
        {
            "lens_steer": lambda: en_vectors(
                model,
                pairs_probe,
                [sizes.lang],
                split="fit",
                layers=layers,
                batch_size=batch_size,
                show_progress=False,
            )[sizes.lang],  # fmt: skip
            "reference": lambda: theirs_fn(
                hf_model, tokenizer, pairs, layers, batch_size=batch_size
            ),
        },
        repeats,
    )
    ours = timed["lens_steer"].last
    cos, rel = cosines(ours.vectors, timed["reference"].last, layers)
    bos = tokenizer(pairs[0][0])["input_ids"][0] == tokenizer.bos_token_id
    return {
        "cosine_min": min(cos),
        "details": timings_json(timed, ("reference", "lens_steer"))
        | {
            "library": library,
            "lang": sizes.lang,
            "n_pairs": len(pairs),
            "layers": layers,
            "cosine_by_layer": cos,
            "relative_l2_diff_by_layer": rel,
            "lens_steer_hook": ours.provenance.get("hook_name"),
            "reference_hook": "decoder block output (model.layers[l]) = resid_post",
            "reference_tokenizer_adds_bos": bool(bos),
            "reference_padding_side": str(getattr(tokenizer, "padding_side", "")),
            "batch_size": batch_size,
            "data": source,
        },
    }
