"""Residual collection: ``collect_residuals`` against a plain ``run_with_cache`` of the same batches.

Both sides read ``blocks.{layer}.hook_resid_post`` at the last token of every prompt, at every
layer, over the same length-sorted, left-padded batches. The naive side keeps each batch's full
``ActivationCache`` (every hook) and its full logits until it has copied the residuals out, then
drops them; ours reduces inside the hooks, stops after the last layer and never unembeds.

Memory is measured two ways, both recorded:

* ``rss``: the peak resident memory of a fresh subprocess per side while it collects, minus its
  resident memory just before (the model and the interpreter excluded). This is the headline.
* ``held_bytes``: the bytes of tensors a side holds at its peak (naive: the largest batch's cache
  plus logits, plus the output; ours: the output). This ignores transient activations.

Run one side alone (what the subprocess does):
``python -m bench.collect --side ours --split fit --batch-size 16``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from bench._config import FULL, Sizes
from bench._data import bench_probe_set, parallel_selection
from bench._flops import FlopModel, collect_ceiling
from bench._timing import alternate, peak_rss, speedup, tensor_bytes, timings_json
from lens_steer.collect import collect_residuals
from lens_steer.data.templates import parallel_prompt
from lens_steer.tokens import encode, pad_id, pad_sequences

ROOT = Path(__file__).resolve().parents[1]
_RESULT_PREFIX = "BENCH_COLLECT_RESULT "


def bench_prompts(sizes: Sizes) -> tuple[list[str], list[str], dict[str, Any]]:
    """The collection's prompts and languages, and where they came from."""
    probe, source = bench_probe_set(sizes)
    items = parallel_selection(
        probe, sizes.langs, sizes.parallel_per_lang, split=sizes.parallel_split
    )
    return [parallel_prompt(item) for item in items], [item.lang for item in items], source


def length_sorted_batches(
    model: HookedTransformer, prompts: Sequence[str], batch_size: int
) -> list[list[int]]:
    """Prompt indices in batches, longest first: the batching ``collect_residuals`` uses."""
    lengths = [len(encode(model, prompt)) for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def naive_collect(
    model: HookedTransformer, prompts: Sequence[str], *, batch_size: int
) -> tuple[Float[Tensor, "prompt layer d_model"], int, int]:
    """Last-token ``resid_post`` at every layer from a full ``run_with_cache`` per batch.

    Returns:
        The residuals, the largest number of tensor bytes held at once (one batch's cache and
        logits plus the output), and the sum over batches of cache and logits bytes (what
        keeping every batch's cache would hold).
    """
    n_layers = model.cfg.n_layers
    acts = torch.empty((len(prompts), n_layers, model.cfg.d_model), dtype=torch.float32)
    peak_held, all_held = 0, 0
    for rows in length_sorted_batches(model, prompts, batch_size):
        batch = pad_sequences([encode(model, prompts[i]) for i in rows], pad_token_id=pad_id(model))
        logits, cache = model.run_with_cache(batch.tokens, attention_mask=batch.attention_mask)
        # Left padding: every row's last real token is at position -1.
        stacked = torch.stack(
            [cache[f"blocks.{layer}.hook_resid_post"][:, -1] for layer in range(n_layers)], dim=1
        )
        acts[torch.tensor(rows)] = stacked.float()
        held = tensor_bytes(cache) + tensor_bytes(logits)
        peak_held = max(peak_held, held + tensor_bytes(acts))
        all_held += held
        del logits, cache
    return acts, peak_held, all_held


def ours_collect(
    model: HookedTransformer, prompts: Sequence[str], *, batch_size: int
) -> Float[Tensor, "prompt layer d_model"]:
    """Last-token residuals at every layer through ``lens_steer.cache.collect_residuals``."""
    return collect_residuals(
        model, prompts, position="last", batch_size=batch_size, show_progress=False
    ).acts


def _max_relative_diff(a: Tensor, b: Tensor) -> float:
    """Largest per-vector relative L2 difference (residual norms span 1e2..4e4: compare relatively)."""
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-12)).max())


def measure_rss_in_subprocess(side: str, sizes: Sizes, *, timeout_s: float = 600) -> dict[str, Any]:
    """Peak-RSS delta of one side, collected in a fresh ``python -m bench.collect`` process."""
    command = [
        sys.executable, "-m", "bench.collect", "--side", side,
        "--per-lang", str(sizes.parallel_per_lang or 0), "--split", sizes.parallel_split or "all",
        "--batch-size", str(sizes.batch_size), "--threads", str(torch.get_num_threads()),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return dict(json.loads(line.removeprefix(_RESULT_PREFIX)))
    raise RuntimeError(
        f"bench.collect --side {side} exited with {done.returncode} and no result: "
        f"{done.stderr.strip()[-2000:]}"
    )


def run(
    model: HookedTransformer,
    sizes: Sizes = FULL,
    *,
    repeats: int = 3,
    measure_rss: bool = True,
) -> dict[str, Any]:
    """Time both sides (alternating), check they agree, and measure their memory.

    Returns:
        ``{"speedup", "memory_ratio", "memory_basis", "details"}``.
    """
    prompts, langs, source = bench_prompts(sizes)
    batch_size = sizes.batch_size
    timed = alternate(
        {
            "naive": lambda: naive_collect(model, prompts, batch_size=batch_size),
            "ours": lambda: ours_collect(model, prompts, batch_size=batch_size),
        },
        repeats,
    )
    naive_acts, peak_held, all_held = timed["naive"].last
    ours_acts = timed["ours"].last
    held = {
        "naive_peak": peak_held,
        "naive_all_batches": all_held,
        "ours": tensor_bytes(ours_acts),
    }
    details: dict[str, Any] = timings_json(timed, ("naive", "ours")) | {
        "n_prompts": len(prompts),
        "langs": sorted(set(langs)),
        "split": sizes.parallel_split or "all",
        "layers": model.cfg.n_layers,
        "batch_size": batch_size,
        "position": "last",
        "hook": "blocks.{layer}.hook_resid_post",
        "data": source,
        "max_relative_diff": _max_relative_diff(ours_acts, naive_acts),
        "flop_ceiling": collect_ceiling(FlopModel.from_model(model)),
        "held_bytes": held,
        "held_bytes_ratio": held["naive_peak"] / held["ours"],
    }
    memory_ratio, basis = details["held_bytes_ratio"], "held_bytes"
    if measure_rss:
        try:
            rss = {side: measure_rss_in_subprocess(side, sizes) for side in ("naive", "ours")}
            details["rss"] = rss
            memory_ratio = rss["naive"]["delta_mib"] / max(rss["ours"]["delta_mib"], 1e-3)
            basis = "rss"
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            details["rss_error"] = f"{type(err).__name__}: {err}"
    return {
        "speedup": speedup(timed["naive"], timed["ours"]),
        "memory_ratio": memory_ratio,
        "memory_basis": basis,
        "details": details,
    }


def _side_main(argv: Sequence[str] | None = None) -> None:
    """Collect with one side in this (fresh) process and print its peak-RSS delta as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.collect", description=__doc__)
    parser.add_argument("--side", choices=("naive", "ours"), required=True)
    parser.add_argument("--per-lang", type=int, default=0, help="sentences per language (0: all)")
    parser.add_argument("--split", choices=("fit", "dev", "eval", "all"), default="fit")
    parser.add_argument("--batch-size", type=int, default=FULL.batch_size)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    from lens_steer.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model("gemma-3-270m", device="cpu")
    sizes = Sizes(
        parallel_per_lang=args.per_lang or None,
        parallel_split=None if args.split == "all" else args.split,
        batch_size=args.batch_size,
    )
    prompts, _, _ = bench_prompts(sizes)
    ours_collect(model, prompts[:1], batch_size=1)  # warm up lazy initialisation, tiny batch
    collect = naive_collect if args.side == "naive" else ours_collect
    rss, _ = peak_rss(lambda: collect(model, prompts, batch_size=args.batch_size))
    result = {"side": args.side, "n_prompts": len(prompts), **rss.to_json()}
    print(_RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    _side_main()
