"""``report.md`` of a study run: the findings first, then the key numbers and every figure.

It reads only the ``results.json`` contract (see :mod:`lens_steer.study.results`), so a report
can be re-rendered from a results file alone. Every number says its n, its interval and the
test behind it; a finding the data cannot decide is called inconclusive, with the effect the
design could have detected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(low: Any, high: Any, digits: int = 3) -> str:
    return f"[{_num(low, digits)}, {_num(high, digits)}]"


def _cell(text: Any) -> str:
    """Text for a markdown table cell: a literal ``|`` (as in ``|cosine|``) would end the cell."""
    return str(text).replace("|", "\\|")


def _finding_rows(findings: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| finding | prediction | statistic | estimate [interval] | n | verdict | detectable |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in findings:
        lines.append(
            f"| {_cell(f['id'])}: {_cell(f['claim'])} | {_cell(f['prediction'])} | "
            f"{_cell(f['statistic'])} | "
            f"{_num(f['estimate'])} {_interval(f['ci_low'], f['ci_high'])} "
            f"({100 * (f.get('confidence') or 0.95):.0f}%) | {f['n']} | **{f['verdict']}** | "
            f"{_num(f.get('detectable_effect'))} |"
        )
    return lines


def _score(score: Mapping[str, Any] | None) -> str:
    if not score:
        return "n/a"
    return f"{_num(score['value'])} {_interval(score['ci_low'], score['ci_high'])} (n={score['n']})"


def _effect(effect: Mapping[str, Any] | None) -> str:
    if not effect:
        return "n/a"
    return (
        f"{effect['mean_delta']:+.3f} {_interval(effect['ci_low'], effect['ci_high'])}, "
        f"n={effect['n']}, Wilcoxon p={_num(effect.get('wilcoxon_p'), 3)}"
    )


def _figure_links(names: Sequence[str]) -> list[str]:
    return [f"![{name}](figures/{name}.png)" for name in names]


def render_report(results: Mapping[str, Any], root: str | Path) -> str:
    """One page: verdicts, per-target effects, the plane, geometry, and links to every figure."""
    settings = results["settings"]
    versions = (results.get("config") or {}).get("versions", {})
    lines = [
        "# lens_steer study report",
        "",
        f"Model `{settings['model']}`; targets {', '.join(results['data']['targets'])}; "
        f"sources: {'; '.join(results['data']['sources'])}. Vectors fitted on the fit split; "
        "peaks, surgical points and frontiers chosen on dev; every number below on eval unless "
        f"marked dev. α in units of the fitted vector ({settings['alpha_mode']}); "
        f"{settings['n_controls']} random-direction controls at α {list(settings['control_alphas'])}; "
        f"margins are summed log-probabilities (calibration `sum`) unless a metric says "
        f"`:per_token` or `:pmi`; seed {settings['seed']}; limit {settings['limit']}. torch "
        f"{versions.get('torch')}, transformer-lens {versions.get('transformer-lens')}.",
        "",
        "## Findings (pre-registered; see lens_steer/study/findings.py)",
        "",
        *_finding_rows(results["findings"]),
        "",
        "An inconclusive verdict means the interval includes both the prediction and its "
        "opposite; *detectable* is the effect this design finds with 80% power (for "
        "perpendicularity: the narrowest margin it could establish).",
        "",
    ]
    for target, info in results["data"]["targets"].items():
        axes = info.get("axes", [None, None])
        lines += [f"## {target}", ""]
        counts = info["counts"]
        lines.append(
            "Items (fit/dev/eval): "
            + "; ".join(
                f"{kind} {c['fit']}/{c['dev']}/{c['eval']}"
                for kind, c in counts.items()
                if sum(c.values())
            )
            + "."
        )
        for name, why in info.get("not_measured", {}).items():
            lines.append(f"- not measured: `{name}`: {why}")
        vectors = results["targets"].get(target, {}).get("vectors", {})
        for method, prov in vectors.items():
            lines.append(
                f"- `{method}` vector: {prov.get('source', 'given')}, {prov.get('n_a')} pairs "
                f"({prov.get('split')} split)"
            )
        lines.append("")
        peaks = results.get("peaks", {}).get(target, {})
        if peaks:
            lines += [
                "| method | metric | chosen on dev | net effect on eval (nats) | n |",
                "| --- | --- | --- | --- | --- |",
            ]
            for method, peak in peaks.items():
                se = peak.get("eval_se")
                lines.append(
                    f"| {method} | {peak['metric']} | {peak['chosen_on_dev']} | "
                    f"{_num(peak['eval_net_effect'])} ± {_num(se)} (SE, net of {peak['net_of']}) "
                    f"| {peak['eval_n']} |"
                )
            lines.append("")
        plane = results.get("plane", {}).get(target)
        if plane:
            lines += [
                f"Plane ({axes[0]} × {axes[1]}, eval, 95% intervals):",
                "",
                "| point | steering | x | y |",
                "| --- | --- | --- | --- |",
            ]
            for point in plane["points"]:
                lines.append(
                    f"| {point['label']} | {point.get('key') or '-'} | {_score(point['x'])} | "
                    f"{_score(point['y'])} |"
                )
            lines.append("")
        surgical = results.get("surgical", {}).get(target)
        if surgical:
            best = surgical["eval"].get(surgical["best"], {})
            lines.append(
                f"Surgical best (chosen on dev): `{surgical['best']}`; effect vs unsteered on "
                "eval (mean per-item margin change, nats, 95% paired interval, n): "
                + "; ".join(
                    f"{metric} {_effect(entry.get('vs_unsteered'))}"
                    for metric, entry in best.items()
                    if metric in axes
                )
            )
            lines.append("")
        slug = target.replace(":", "-")
        lines += [*_figure_links([f"plane_{slug}", f"sweep_{slug}"]), ""]
    geometry = results.get("geometry")
    if geometry:
        lines += [
            "## Geometry",
            "",
            f"Equivalence margin ±{geometry['equivalence_margin']}; random directions in "
            f"d_model dimensions fall within ±{geometry['random_direction_band']:.3f}.",
            "",
            *_figure_links(["perpendicularity", "mixing", "pca"]),
            "",
        ]
    timings = results.get("timings", {})
    if timings:
        lines += [
            "Step timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()),
            "",
        ]
    lines.append(
        "Per-item rows of every point: `items.parquet` (`lens-steer export --csv` for CSV)."
    )
    return "\n".join(lines) + "\n"
