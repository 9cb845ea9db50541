"""Figures of steering results: effects per layer (with controls and doses) and the plane.

The sweep figure shows *effects*, not raw scores: the mean per-item change of the margin
against the unsteered model on the same items, with its paired interval, and the random-
direction control at the same dose as a shaded band, so a reader sees whether a direction does
more than any push of that size. Both figures read JSON-ready summaries, so they can be redrawn
from ``results.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_steer.evaluate.plane import Plane, PlanePoint

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_METHOD_TITLES = {"en": "EN-steering", "loc": "LOC-steering"}
_REFERENCE_STYLE = {
    "unsteered": ("circle", "#444444", "unsteered (asked in L, implicit)"),
    "explicit": ("diamond", "#2ca02c", "explicit prompt (culture named)"),
    "english_query": ("square", "#1f77b4", "English query (transfer asked in English)"),
}


def _error(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": [h - v for v, h in zip(values, highs, strict=True)],
        "arrayminus": [v - lo for v, lo in zip(values, lows, strict=True)],
        "thickness": 1,
        "width": 3,
    }


def _transparent(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def sweep_figure(summary: Mapping[str, Any], axes: Sequence[str | None]) -> go.Figure:
    """Effect of each method per layer and alpha on the two axis metrics, and the dose's KL.

    Rows: vector methods. Columns: the change of each axis metric's per-item margin against the
    unsteered model (nats, mean with 95% paired bootstrap interval), the random-direction
    control at the same layer and dose (shaded), and the next-token KL on neutral prompts.

    Args:
        summary: from :func:`lens_steer.evaluate.summary.summarize_sweep`.
        axes: the axis metrics to show (``None`` entries are skipped).
    """
    metrics = [axis for axis in axes if axis]
    points = summary["points"]
    methods = list(dict.fromkeys(p["method"] for p in points))
    alphas = sorted({p["alpha"] for p in points})
    columns = [*metrics, "kl"]
    titles = [
        f"{_METHOD_TITLES.get(m, m)}: Δ {c} margin"
        if c != "kl"
        else f"{_METHOD_TITLES.get(m, m)}: KL"
        for m in methods
        for c in columns
    ]
    fig = make_subplots(
        rows=len(methods), cols=len(columns), subplot_titles=titles, shared_xaxes=True,
        vertical_spacing=0.12, horizontal_spacing=0.07,
    )  # fmt: skip
    for row, method in enumerate(methods, start=1):
        for col, column in enumerate(columns, start=1):
            for index, alpha in enumerate(alphas):
                color = _PALETTE[index % len(_PALETTE)]
                curve = sorted(
                    (p for p in points if p["method"] == method and p["alpha"] == alpha),
                    key=lambda p: p["layer"],
                )
                x = [p["layer"] for p in curve]
                legend = row == 1 and col == 1
                if column == "kl":
                    if all(p.get("kl") is not None for p in curve):
                        fig.add_trace(
                            go.Scatter(
                                x=x, y=[p["kl"] for p in curve], mode="lines+markers",
                                name=f"α = {alpha:g}", legendgroup=f"a{alpha}", showlegend=False,
                                line={"color": color},
                            ),
                            row=row, col=col,
                        )  # fmt: skip
                    if all(p.get("control_kl") is not None for p in curve):
                        fig.add_trace(
                            go.Scatter(
                                x=x, y=[p["control_kl"] for p in curve], mode="lines",
                                name="random control", legendgroup="control", showlegend=False,
                                line={"color": color, "dash": "dot"},
                            ),
                            row=row, col=col,
                        )  # fmt: skip
                    continue
                effects = [p["metrics"].get(column, {}).get("vs_unsteered") for p in curve]
                if not all(effects):
                    continue
                controls = [p["metrics"][column].get("control") for p in curve]
                if all(controls):
                    fig.add_trace(
                        go.Scatter(
                            x=x + x[::-1],
                            y=[c["ci_high"] for c in controls] + [c["ci_low"] for c in controls][::-1],
                            fill="toself", fillcolor=_transparent(color, 0.15), mode="lines",
                            line={"width": 0}, hoverinfo="skip",
                            name="random-direction control (95% CI)", legendgroup="control",
                            showlegend=legend and index == 0,
                        ),
                        row=row, col=col,
                    )  # fmt: skip
                values = [e["mean_delta"] for e in effects]
                fig.add_trace(
                    go.Scatter(
                        x=x, y=values,
                        error_y=_error(values, [e["ci_low"] for e in effects], [e["ci_high"] for e in effects]),
                        mode="lines+markers", name=f"α = {alpha:g}", legendgroup=f"a{alpha}",
                        showlegend=legend, line={"color": color},
                        hovertemplate="layer %{x}<br>Δ %{y:.3f} nats<extra>" + f"{method} α={alpha:g}</extra>",
                    ),
                    row=row, col=col,
                )  # fmt: skip
            if column != "kl":
                fig.add_hline(y=0, line={"color": "#444444", "dash": "dash"}, row=row, col=col)
                fig.update_yaxes(title_text="Δ margin vs unsteered (nats)", row=row, col=col)
            else:
                fig.update_yaxes(title_text="KL (nats)", type="log", row=row, col=col)
            fig.update_xaxes(title_text="steered layer", dtick=1, row=row, col=col)
    settings = summary.get("settings", {})
    fig.update_layout(
        title=(
            f"Layer sweep, {summary['target']} ({summary['split']} split): per-item margin change "
            f"vs unsteered, 95% paired CIs<br><sup>{settings.get('model_id', '')}; α in units of "
            f"{settings.get('alpha_units', 'the vector')}; shaded: random directions of the same "
            "norm at the same layer</sup>"
        ),
        width=520 * len(columns), height=420 * len(methods) + 180, template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.1, "x": 0}, margin={"b": 120},
    )  # fmt: skip
    return fig


def _label(point: PlanePoint) -> str:
    if point.group == "reference":
        return _REFERENCE_STYLE.get(point.label, ("", "", point.label))[2]
    return f"{point.label.replace('_', ' ')}: {point.key}"


def plane_figure(plane: Plane) -> go.Figure:
    """The transfer–localization plane of one target with every point's 95% interval.

    Intervals are drawn translucent behind the markers; a reference with one axis only (the
    English query has no localization score) is a dashed line at its value.
    """
    fig = go.Figure()
    styles = {
        "single": ("triangle-up", "#ff7f0e"),
        "surgical": ("star", "#d62728"),
        "control": ("x", "#7f7f7f"),
    }
    x_axis, y_axis = plane.axes
    for point in plane.points:
        if point.x is None or point.y is None:
            score = point.x or point.y
            if score is None:
                continue
            symbol, color, label = _REFERENCE_STYLE.get(
                point.label, ("circle", "#444444", point.label)
            )
            line = {"color": color, "dash": "dash", "width": 1}
            if point.x is not None:
                fig.add_vline(
                    x=score.value, line=line, annotation_text=label, annotation_position="top"
                )
            else:
                fig.add_hline(y=score.value, line=line, annotation_text=label)
            continue
        if point.group == "reference":
            symbol, color, _ = _REFERENCE_STYLE.get(point.label, ("circle", "#444444", ""))
        elif point.group == "single" and point.label.endswith("loc"):
            symbol, color = "triangle-down", "#9467bd"
        else:
            symbol, color = styles[point.group]
        fig.add_trace(
            go.Scatter(
                x=[point.x.value], y=[point.y.value], mode="markers", name=_label(point),
                marker={"symbol": symbol, "size": 13, "color": color, "line": {"color": "white", "width": 1}},
                error_x={**_error([point.x.value], [point.x.ci_low], [point.x.ci_high]), "color": _transparent(color, 0.35)},
                error_y={**_error([point.y.value], [point.y.ci_low], [point.y.ci_high]), "color": _transparent(color, 0.35)},
                hovertemplate=f"{_label(point)}<br>{x_axis} %{{x:.3f}}<br>{y_axis} %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    surgical = sorted(
        (p for p in plane.group("surgical") if p.x and p.y),
        key=lambda p: p.x.value,  # type: ignore[union-attr]
    )
    if len(surgical) > 1:
        fig.add_trace(
            go.Scatter(
                x=[p.x.value for p in surgical], y=[p.y.value for p in surgical],  # type: ignore[union-attr]
                mode="lines", name="surgical frontier (chosen on dev)",
                line={"color": "#d62728", "width": 1},
            )
        )  # fmt: skip
    fig.update_layout(
        title=(
            f"Transfer–localization plane, {plane.target}: eval split, points chosen on dev, "
            "95% intervals"
        ),
        xaxis={"title": {"text": f"{x_axis}"}},
        yaxis={"title": {"text": f"{y_axis}"}},
        width=1050, height=780, template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
        margin={"b": 200},
    )  # fmt: skip
    return fig
