"""``results.json`` and ``report.md`` of a study run folder.

``results.json`` is a contract other tools read; its top-level keys are::

    perpendicularity   {lang: [cos(EN, LOC) per layer]}           (raw residual space)
    perpendicularity_standardized  {lang: [cos per layer]}        (per-dimension standardized)
    perpendicularity_ci {lang: [[low, high] per layer]}           (raw, bootstrap over prompts)
    null_band          float: |cos| of random directions in d_model dims (95%)
    sweeps   {lang: {"en"|"loc": {"layers", "alpha", "transfer", "localization", ...}}}
    plane    {lang: [{"label", "transfer", "transfer_ci", "localization", "localization_ci",
                      "steering", "group"}]}
    surgical {lang: {"best": {...}, "frontier": [...], "best_single": {...}}}
    peaks    {lang: {"en_transfer_layer", "loc_localization_layer", ...}}
    mixing   [per-layer rows], settings, versions, timings
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lens_steer._io import read_json
from lens_steer.runs import RunFolder

if TYPE_CHECKING:
    from lens_steer.pipeline import Study

FIGURES = ("pca", "perpendicularity", "mixing")


def _per_layer(rows: Sequence[Mapping[str, Any]], lang: str, key: str) -> list[Any]:
    chosen = sorted((row for row in rows if row["lang"] == lang), key=lambda row: row["layer"])
    return [row[key] for row in chosen]


def _sweep_summary(sweep: Any, kind: str, metric: str) -> dict[str, Any]:
    """The curve of one vector kind at the alpha whose peak is highest for its own metric."""
    peak = sweep.peak(kind, metric)
    curve = sweep.curve(kind, peak.alpha)
    by_alpha = {
        f"{alpha:g}": {
            "transfer": [p.transfer.value for p in sweep.curve(kind, alpha)],
            "localization": [p.localization.value for p in sweep.curve(kind, alpha)],
        }
        for alpha in sweep.alphas
    }
    return {
        "layers": [p.layer for p in curve],
        "alpha": peak.alpha,
        "alpha_mode": sweep.settings.get("alpha_mode"),
        "transfer": [p.transfer.value for p in curve],
        "transfer_ci": [[p.transfer.ci_low, p.transfer.ci_high] for p in curve],
        "localization": [p.localization.value for p in curve],
        "localization_ci": [[p.localization.ci_low, p.localization.ci_high] for p in curve],
        "peak_layer": peak.layer,
        "peak_metric": metric,
        "by_alpha": by_alpha,
        "unsteered": {
            "transfer": sweep.unsteered_transfer.value,
            "localization": sweep.unsteered_localization.value,
        },
    }


def build_results(study: Study) -> dict[str, Any]:
    """Gather every step's numbers into the results contract."""
    from lens_steer.evaluate.study import dominance

    run = study.run
    langs = list(study.settings.langs)
    perp = read_json(run.step_dir("perpendicularity") / "perpendicularity.json")
    rows = perp["rows"]
    pca = read_json(run.step_dir("pca") / "pca.json")
    results: dict[str, Any] = {
        "settings": study.settings.to_json(),
        "config": read_json(run.root / "config.json"),
        "null_band": perp["null_band"],
        "perpendicularity": {lang: _per_layer(rows, lang, "cos_raw") for lang in langs},
        "perpendicularity_standardized": {
            lang: _per_layer(rows, lang, "cos_std") for lang in langs
        },
        "perpendicularity_ci": {
            lang: [[r["ci_low"], r["ci_high"]] for r in _rows_of(rows, lang)] for lang in langs
        },
        "perpendicularity_table": rows,
        "mixing": pca["mixing"],
        "sweeps": {},
        "plane": {},
        "surgical": {},
        "peaks": {},
        "dominance": {},
        "timings": {
            step: run.done_summary(step).get("seconds")
            for step in (
                "collect",
                "vectors",
                "pca",
                "perpendicularity",
                "sweep",
                "surgical",
                "plane",
            )
            if run.is_done(step)
        },
    }
    for lang in langs:
        sweep = study.load_sweep(lang)
        search = study.load_search(lang)
        plane = study.load_plane(lang)
        results["sweeps"][lang] = {
            "en": _sweep_summary(sweep, "en", "transfer"),
            "loc": _sweep_summary(sweep, "loc", "localization"),
        }
        results["plane"][lang] = [point.to_json() for point in plane.points]
        results["surgical"][lang] = {
            "best": search.best.to_json(),
            "frontier": [point.to_json() for point in search.frontier],
            "best_single": {k: p.to_json() for k, p in search.best_single.items()},
            "criterion": search.settings.get("criterion"),
        }
        en_peak, loc_peak = sweep.peak("en", "transfer"), sweep.peak("loc", "localization")
        results["peaks"][lang] = {
            "en_transfer_layer": en_peak.layer,
            "en_transfer_alpha": en_peak.alpha,
            "en_transfer": en_peak.transfer.value,
            "loc_localization_layer": loc_peak.layer,
            "loc_localization_alpha": loc_peak.alpha,
            "loc_localization": loc_peak.localization.value,
        }
        results["dominance"][lang] = [
            dominance(single, plane.group("surgical")) for single in plane.group("single")
        ]
    return results


def _rows_of(rows: Sequence[Mapping[str, Any]], lang: str) -> list[Mapping[str, Any]]:
    return sorted((row for row in rows if row["lang"] == lang), key=lambda row: row["layer"])


def _fmt_ci(value: float, ci: Sequence[float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def render_report(results: Mapping[str, Any], run: RunFolder) -> str:
    """One page: every figure, and the key numbers with their intervals."""
    settings = results["settings"]
    langs = settings["langs"]
    versions = results["config"].get("versions", {})
    lines = [
        "# lens_steer study report",
        "",
        f"Model `{settings['model']}`, languages {', '.join(langs)}, data `{settings['data']}`, "
        f"seed {settings['seed']}, limit {settings['limit']}, alphas {settings['alphas']} "
        f"({settings['alpha_mode']} to the mean residual norm), bootstrap "
        f"{settings['n_bootstrap']} resamples. Vectors fitted on the fit split, surgical "
        "settings chosen on dev, every score below on eval. torch "
        f"{versions.get('torch')}, transformer-lens {versions.get('transformer-lens')}.",
        "",
        "## Key numbers",
        "",
        "| lang | EN-steering peak (transfer) | LOC-steering peak (localization) | "
        "cos(EN, LOC) raw range | standardized range | null band |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    band = results["null_band"]
    for lang in langs:
        peaks = results["peaks"][lang]
        raw, std = results["perpendicularity"][lang], results["perpendicularity_standardized"][lang]
        lines.append(
            f"| {lang} | layer {peaks['en_transfer_layer']} (α {peaks['en_transfer_alpha']:g}): "
            f"{peaks['en_transfer']:.3f} | layer {peaks['loc_localization_layer']} "
            f"(α {peaks['loc_localization_alpha']:g}): {peaks['loc_localization']:.3f} | "
            f"{min(raw):+.3f} … {max(raw):+.3f} | {min(std):+.3f} … {max(std):+.3f} | "
            f"±{band:.3f} |"
        )
    lines += ["", "## The transfer–localization plane (eval split, 95% bootstrap intervals)", ""]
    for lang in langs:
        lines += [
            f"### {lang}",
            "",
            "| point | transfer | localization | steering |",
            "| --- | --- | --- | --- |",
        ]
        for point in results["plane"][lang]:
            lines.append(
                f"| {point['label']} | {_fmt_ci(point['transfer'], point['transfer_ci'])} | "
                f"{_fmt_ci(point['localization'], point['localization_ci'])} | "
                f"{_steering_text(point['steering'])} |"
            )
        best = results["surgical"][lang]["best"]
        lines += [
            "",
            f"Best surgical point on dev ({results['surgical'][lang]['criterion']}): "
            f"`{best['key']}`. Frontier: "
            + ", ".join(f"`{p['key']}`" for p in results["surgical"][lang]["frontier"])
            + ".",
        ]
        for row in results["dominance"][lang]:
            lines.append(
                f"- `{row['point']}` is dominated by {len(row['dominated_by'])} frontier "
                f"point(s) by point estimate, {len(row['dominated_with_disjoint_interval_by'])} "
                "with a disjoint interval in one score."
            )
        lines += ["", f"![plane {lang}](figures/plane_{lang}.png)", ""]
        lines += [f"![sweep {lang}](figures/sweep_{lang}.png)", ""]
    lines += ["## Geometry", ""]
    for name in FIGURES:
        lines += [f"![{name}](figures/{name}.png)", ""]
    lines += [
        "Interactive versions (offline HTML): "
        + ", ".join(
            f"[{name}](figures/{name}.html)"
            for name in [*FIGURES, *(f"sweep_{lang}" for lang in langs)]
            + [f"plane_{lang}" for lang in langs]
        ),
        "",
        "Step timings (s): "
        + ", ".join(f"{step} {seconds}" for step, seconds in results["timings"].items()),
        "",
    ]
    return "\n".join(lines)


def _steering_text(steering: Mapping[str, Any] | None) -> str:
    if not steering:
        return "none"
    terms = steering.get("terms", [])
    return " + ".join(
        f"{term.get('name')}@{term.get('layer')} α={term.get('alpha'):g}" for term in terms
    )
