"""Figures of steering results: per-layer sweep curves and the transfer–localization plane.

Every point carries its bootstrap interval as an error bar; titles say the model, language,
split and item counts so a saved PNG can go into a paper or report as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_steer.evaluate.plane import Plane, PlanePoint
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.sweep import LayerSweep
from lens_steer.figures._export import save_figure

TRANSFER_TITLE = "transfer score (accuracy, LOC-language MC)"
LOCALIZATION_TITLE = "localization score (share local > US)"
_KIND_TITLES = {"en": "EN-steering", "loc": "LOC-steering"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_REFERENCE_STYLE = {
    "unsteered": ("circle", "#444444"),
    "english_query": ("square", "#1f77b4"),
    "explicit": ("diamond", "#2ca02c"),
}


def _error(scores: Sequence[Score]) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": [s.ci_high - s.value for s in scores],
        "arrayminus": [s.value - s.ci_low for s in scores],
        "thickness": 1,
        "width": 2,
    }


def _alpha_label(sweep: LayerSweep, alpha: float) -> str:
    mode = sweep.settings.get("alpha_mode", "relative")
    return f"α = {alpha:g}" + (" × mean ‖resid‖" if mode == "relative" else " (raw)")


def sweep_figure(sweep: LayerSweep) -> go.Figure:
    """Transfer and localization against the steered layer, one line per alpha.

    Rows are the vector kinds (EN-steering, LOC-steering), columns the two scores; the dashed
    line is the unsteered model, error bars are bootstrap intervals.

    Example:
        >>> fig = sweep_figure(sweep)  # doctest: +SKIP
        >>> save_figure(fig, "figures/sweep_ko")  # doctest: +SKIP
    """
    kinds = sweep.kinds
    titles = [
        f"{_KIND_TITLES.get(kind, kind)}: {metric}"
        for kind in kinds
        for metric in ("transfer", "localization")
    ]
    fig = make_subplots(
        rows=len(kinds), cols=2, subplot_titles=titles, shared_xaxes=True,
        vertical_spacing=0.12, horizontal_spacing=0.09,
    )  # fmt: skip
    baselines = (sweep.unsteered_transfer, sweep.unsteered_localization)
    for row, kind in enumerate(kinds, start=1):
        for col, metric in enumerate(("transfer", "localization"), start=1):
            for index, alpha in enumerate(sweep.alphas):
                curve = [p for p in sweep.points if p.kind == kind and p.alpha == alpha]
                if not curve:
                    continue
                curve.sort(key=lambda p: p.layer)
                scores = [p.score(metric) for p in curve]  # type: ignore[arg-type]
                fig.add_trace(
                    go.Scatter(
                        x=[p.layer for p in curve], y=[s.value for s in scores],
                        error_y=_error(scores), mode="lines+markers",
                        name=_alpha_label(sweep, alpha), legendgroup=f"alpha{alpha}",
                        showlegend=row == 1 and col == 1,
                        line={"color": _PALETTE[index % len(_PALETTE)]},
                        hovertemplate="layer %{x}<br>%{y:.3f}<extra>" + f"{kind} α={alpha:g}</extra>",
                    ),
                    row=row, col=col,
                )  # fmt: skip
            base = baselines[col - 1]
            layers = sorted({p.layer for p in sweep.points})
            fig.add_trace(
                go.Scatter(
                    x=[layers[0], layers[-1]], y=[base.value, base.value], mode="lines",
                    name="unsteered", legendgroup="unsteered", showlegend=row == 1 and col == 1,
                    line={"color": "#444444", "dash": "dash"},
                ),
                row=row, col=col,
            )  # fmt: skip
            fig.update_yaxes(
                title_text=TRANSFER_TITLE if metric == "transfer" else LOCALIZATION_TITLE,
                range=[-0.05, 1.05], row=row, col=col,
            )  # fmt: skip
            fig.update_xaxes(
                title_text="steered layer (resid_post)",
                tickmode="linear",
                dtick=1,
                row=row,
                col=col,
            )
    settings = sweep.settings
    fig.update_layout(
        title=(
            f"Layer sweep, {sweep.lang}: {settings.get('model_id', '')}, split "
            f"{settings.get('split')} (n = {settings.get('n_transfer')} MC, "
            f"{settings.get('n_localization')} localization items), 95% bootstrap CIs"
        ),
        width=1200, height=420 * len(kinds) + 160, template="plotly_white",
        legend={
            "title": {"text": "steering scale"}, "orientation": "h",
            "yanchor": "top", "y": -0.08, "x": 0,
        },
        margin={"b": 110},
    )  # fmt: skip
    return fig


def _plane_trace(points: Sequence[PlanePoint], **style) -> go.Scatter:
    return go.Scatter(
        x=[p.transfer.value for p in points],
        y=[p.localization.value for p in points],
        error_x=_error([p.transfer for p in points]),
        error_y=_error([p.localization for p in points]),
        text=[p.label for p in points],
        hovertemplate="%{text}<br>transfer %{x:.3f}<br>localization %{y:.3f}<extra></extra>",
        **style,
    )


def _steering_label(point: PlanePoint) -> str:
    if not point.steering:
        return point.label
    terms = point.steering.get("terms", [])
    return " + ".join(f"{t['name']}@L{t['layer']} α={t['alpha']:g}" for t in terms) or point.label


def plane_figure(plane: Plane) -> go.Figure:
    """The transfer–localization plane of one language with every point's interval.

    Reference points (unsteered, English query, explicit prompt), the best single-layer EN and
    LOC points, and the surgical frontier as a line.

    Example:
        >>> save_figure(plane_figure(plane), "figures/plane_ko")  # doctest: +SKIP
    """
    fig = go.Figure()
    for point in plane.group("reference"):
        symbol, color = _REFERENCE_STYLE.get(point.label, ("circle", "#444444"))
        fig.add_trace(
            _plane_trace(
                [point], mode="markers", name=point.label.replace("_", " "),
                marker={"symbol": symbol, "size": 12, "color": color},
            )
        )  # fmt: skip
    for point in plane.group("single"):
        color = "#ff7f0e" if point.label.endswith("en") else "#9467bd"
        fig.add_trace(
            _plane_trace(
                [point], mode="markers", name=f"{point.label.replace('_', ' ')}: {_steering_label(point)}",
                marker={"symbol": "triangle-up", "size": 12, "color": color},
            )
        )  # fmt: skip
    surgical = sorted(plane.group("surgical"), key=lambda p: p.transfer.value)
    if surgical:
        fig.add_trace(
            _plane_trace(
                surgical, mode="lines+markers", name="surgical frontier (chosen on dev)",
                marker={"symbol": "star", "size": 13, "color": "#d62728"},
                line={"color": "#d62728"},
                customdata=[_steering_label(p) for p in surgical],
            )
        )  # fmt: skip
        fig.data[
            -1
        ].hovertemplate = (
            "%{text}: %{customdata}<br>transfer %{x:.3f}<br>localization %{y:.3f}<extra></extra>"
        )
    settings = plane.settings
    fig.update_layout(
        title=(
            f"Transfer–localization plane, {plane.lang}: {settings.get('model_id', '')}, "
            f"split {settings.get('split')}, 95% bootstrap CIs"
        ),
        xaxis={"title": {"text": TRANSFER_TITLE}, "range": [-0.05, 1.05]},
        yaxis={"title": {"text": LOCALIZATION_TITLE}, "range": [-0.05, 1.05]},
        width=1000, height=750, template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
    )  # fmt: skip
    return fig


def save_steering_figures(
    sweeps: Sequence[LayerSweep], planes: Sequence[Plane], out_dir: str | Path, *, png: bool = True
) -> dict[str, dict[str, Path]]:
    """Write ``sweep_{lang}`` and ``plane_{lang}`` (HTML + PNG) into ``out_dir``."""
    out = Path(out_dir)
    written = {}
    for sweep in sweeps:
        written[f"sweep_{sweep.lang}"] = save_figure(
            sweep_figure(sweep), out / f"sweep_{sweep.lang}", png=png
        )
    for plane in planes:
        written[f"plane_{plane.lang}"] = save_figure(
            plane_figure(plane), out / f"plane_{plane.lang}", png=png
        )
    return written
