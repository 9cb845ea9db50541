"""The targets of issue 7 and the markdown table of a results dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    """A headline number, the bound it must meet, and what it measures."""

    key: str
    op: Literal[">=", "<="]
    bound: float
    what: str

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the bound (``None`` when the benchmark did not run)."""
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound


TARGETS: tuple[Target, ...] = (
    Target("collect_speedup", ">=", 2.0, "residual collection: run_with_cache ÷ collect_residuals"),
    Target("collect_memory_ratio", ">=", 10.0, "peak activation memory: run_with_cache ÷ ours"),
    Target("scoring_speedup", ">=", 3.0, "option scoring: full logits ÷ score_options"),
    Target("sweep_speedup", ">=", 5.0, "layer sweep: run_with_hooks loop ÷ layer_sweep"),
    Target("sweep_max_abs_diff", "<=", 1e-4, "layer sweep: max |Δ log-prob| naive vs fast"),
    Target("steer_overhead", "<=", 1.10, "surgical steered forward ÷ unhooked forward"),
    Target("reference_cosine_min", ">=", 0.999, "EN vector: min cosine vs steering-vectors"),
)
HEADLINE_KEYS: tuple[str, ...] = tuple(target.key for target in TARGETS)
DOC_START = "<!-- bench:results:start (written by python -m bench) -->"
DOC_END = "<!-- bench:results:end -->"

# Which benchmark produced each headline key, and which timing sides it compares.
_SOURCES: dict[str, tuple[str, str, str]] = {
    "collect_speedup": ("collect", "naive", "ours"),
    "collect_memory_ratio": ("collect", "", ""),
    "scoring_speedup": ("scoring", "naive", "ours"),
    "sweep_speedup": ("sweep", "naive", "ours"),
    "sweep_max_abs_diff": ("sweep", "", ""),
    "steer_overhead": ("overhead", "hooked", "steered"),
    "reference_cosine_min": ("reference", "reference", "lens_steer"),
}


def check_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target: key, value, bound, whether it is met."""
    return [
        {
            "key": target.key,
            "value": results.get(target.key),
            "target": f"{target.op} {target.bound:g}",
            "met": target.met(results.get(target.key)),
            "what": target.what,
        }
        for target in TARGETS
    ]


def _number(value: Any) -> str:
    if value is None:
        return "not run"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.1e}"
        return f"{value:.4f}" if abs(value) < 2 else f"{value:.2f}"
    return str(value)


def _median(benchmarks: Mapping[str, Any], name: str, side: str) -> str:
    try:
        return f"{benchmarks[name][side]['median_s']:.2f}"
    except (KeyError, TypeError):
        return ""


def _ceiling(key: str, details: Mapping[str, Any] | None) -> str:
    """The FLOP-model bound of a speed-up (1 for the overhead: adding two vectors is free)."""
    if key == "steer_overhead":
        return "1.00"
    if details is None or not key.endswith("_speedup") or "flop_ceiling" not in details:
        return ""
    return f"{details['flop_ceiling']:.2f}"


def _size(name: str, details: Mapping[str, Any]) -> str:
    if name == "collect":
        return f"{details['n_prompts']} prompts × {details['layers']} layers"
    if name == "scoring":
        return f"{details['n_sequences']} sequences ({details['n_requests']} items)"
    if name == "sweep":
        return f"{details['n_steerings']} steerings × {details['n_sequences']} sequences"
    if name == "overhead":
        return "batch " + " × ".join(str(n) for n in details["batch"])
    if name == "reference":
        return f"{details['n_pairs']} pairs × {len(details['layers'])} layers"
    return ""


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def to_markdown(results: Mapping[str, Any]) -> str:
    """The headline table, the machine, and the per-benchmark details that explain it."""
    benchmarks = results.get("benchmarks", {})
    rows = [["metric", "value", "target", "met", "FLOP ceiling", "baseline s", "ours s", "size"]]
    for check in check_targets(results):
        name, base, ours = _SOURCES[check["key"]]
        details = benchmarks.get(name)
        met = {True: "yes", False: "**no**", None: "—"}[check["met"]]
        rows.append(
            [
                f"`{check['key']}`",
                _number(check["value"]),
                check["target"],
                met,
                _ceiling(check["key"], details),
                _median(benchmarks, name, base) if base else "",
                _median(benchmarks, name, ours) if ours else "",
                _size(name, details) if details else "",
            ]
        )
    machine, settings = results.get("machine", {}), results.get("settings", {})
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items() if v)
    lines = [
        f"Mode: {'quick' if settings.get('quick') else 'full'}, {settings.get('repeats')} "
        "alternating rounds; a ratio is the median over rounds of the two sides' per-round "
        "ratio, the seconds are each side's median. "
        f"Model {settings.get('model_id')} "
        f"({settings.get('dtype')}, {settings.get('device')}), git {settings.get('git')}, "
        f"{settings.get('started_at')}, {settings.get('wall_s', 0):.0f} s in all.",
        "",
        *_table(rows),
        "",
        f"Machine: {machine.get('cpu_model')}, {machine.get('usable_cores')} usable cores, "
        f"torch threads {machine.get('torch_threads')}, {machine.get('memory_gib')} GiB RAM, "
        f"load average at start {machine.get('load_average_at_start')}.",
        "",
        f"Versions: {versions}.",
    ]
    merged = settings.get("merged") or {}
    if merged.get("benchmarks"):
        earlier = merged.get("from_run", {})
        lines += [
            "",
            f"Merged: {', '.join(merged['benchmarks'])} from the earlier run of "
            f"{earlier.get('started_at')} (git {earlier.get('git')}, torch threads "
            f"{', '.join(str(b.get('torch_threads')) for b in benchmarks.values())} by benchmark).",
        ]
    lines += _details_markdown(benchmarks)
    return "\n".join(lines) + "\n"


def _details_markdown(benchmarks: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    collect = benchmarks.get("collect")
    if collect:
        held = collect["held_bytes"]
        lines += [
            "",
            "**Collection memory.** "
            + (
                "Peak RSS over the RSS before collecting, fresh process per side: "
                f"run_with_cache {collect['rss']['naive']['delta_mib']:.0f} MiB, "
                f"collect_residuals {collect['rss']['ours']['delta_mib']:.1f} MiB. "
                if "rss" in collect
                else f"Peak RSS not measured ({collect.get('rss_error', 'disabled')}). "
            )
            + f"Tensor bytes held at the peak: {held['naive_peak'] / 2**20:.0f} MiB "
            f"(one batch's cache and logits) vs {held['ours'] / 2**20:.1f} MiB (the output); "
            f"keeping every batch's cache would hold {held['naive_all_batches'] / 2**20:.0f} MiB. "
            f"Max relative difference of the residuals: {collect['max_relative_diff']:.1e}.",
        ]
    sweep = benchmarks.get("sweep")
    if sweep:
        lines += [
            "",
            f"**Sweep.** Layers {sweep['layers'][0]}..{sweep['layers'][-1]} "
            f"({len(sweep['layers'])}) × alphas {sweep['alphas']} ({sweep['alpha_mode']}) + "
            f"unsteered, {sweep['lang']} {sweep['split']} split; the fast engine alone took "
            f"{sweep['engine_fast_once']['median_s']:.2f} s; sweep points whose score differs "
            f"from the naive log-probs': {len(sweep['score_mismatches'])}.",
        ]
    overhead = benchmarks.get("overhead")
    if overhead and "hf" in overhead:
        lines += [
            "",
            f"**Forwards.** transformers {overhead['hf']['median_s']:.2f} s, HookedTransformer "
            f"{overhead['hooked']['median_s']:.2f} s, steered {overhead['steered']['median_s']:.2f}"
            f" s (HookedTransformer ÷ transformers {overhead['hooked_over_hf']:.2f}); last-token "
            "logits of transformers vs HookedTransformer differ by at most "
            f"{overhead['hf_vs_hooked_max_abs_logit_diff_last_token']:.1e}.",
        ]
    reference = benchmarks.get("reference")
    if reference:
        cos = " ".join(f"{c:.5f}" for c in reference["cosine_by_layer"])
        lines += [
            "",
            f"**Reference** ({reference['library']}, {reference['lang']}, "
            f"{reference['n_pairs']} pairs): cosine by layer {cos}; max relative L2 difference "
            f"{max(reference['relative_l2_diff_by_layer']):.1e}.",
        ]
    return lines


def embed_in_doc(doc: str, markdown: str) -> str:
    """``doc`` with the text between its results markers replaced by ``markdown``.

    Raises:
        ValueError: when the markers are missing or out of order.
    """
    start, end = doc.find(DOC_START), doc.find(DOC_END)
    if start < 0 or end < start:
        raise ValueError(f"the document lacks the markers {DOC_START!r} ... {DOC_END!r}")
    return doc[: start + len(DOC_START)] + "\n" + markdown.rstrip("\n") + "\n" + doc[end:]


def doc_path(root: Path) -> Path:
    """Where the benchmarks' table is embedded: ``BENCHMARKS.md`` at the repository root."""
    return root / "BENCHMARKS.md"
