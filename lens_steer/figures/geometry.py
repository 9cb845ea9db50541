"""Figures of the residual-stream geometry: perpendicularity and language mixing per layer.

Each function returns a ``plotly.graph_objects.Figure``; save it with
:func:`lens_steer.figures.save_figure` (offline HTML + PNG/SVG/PDF). Both read JSON-ready rows,
so they can be redrawn from a results file. The PCA figures are in :mod:`.pca`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lens_steer.data.languages import languages

_PALETTE = qualitative.Plotly + qualitative.D3


def language_colors(langs: Sequence[str]) -> dict[str, str]:
    """A fixed colour per language: registered languages always get the same ones."""
    known = [lang.code for lang in languages()]
    order = known + sorted(set(langs) - set(known))
    return {lang: _PALETTE[order.index(lang) % len(_PALETTE)] for lang in langs}


def _transparent(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _source(provenance: Mapping[str, Any]) -> str:
    return f"{provenance.get('model_id', '?')}, {provenance.get('position', '?')} token"


# --------------------------------------------------------------------------------------------
# Perpendicularity: cos(EN, LOC) per layer and target, against the sign-flip null.
# --------------------------------------------------------------------------------------------


def _band(
    fig: go.Figure,
    x: list[int],
    low: list[float],
    high: list[float],
    *,
    name: str,
    color: str,
    col: int,
    row: int = 1,
    showlegend: bool,
    group: str,
) -> None:
    """A shaded band between ``low`` and ``high`` (two traces: the upper edge, then the fill)."""
    common = {"mode": "lines", "line": {"width": 0}, "legendgroup": group, "hoverinfo": "skip"}
    fig.add_trace(go.Scatter(x=x, y=high, name=name, showlegend=False, **common), row=row, col=col)
    fig.add_trace(
        go.Scatter(
            x=x, y=low, name=name, fill="tonexty", fillcolor=color, showlegend=showlegend, **common
        ),
        row=row,
        col=col,
    )


def perpendicularity_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    margin: float | None = None,
    title: str | None = None,
    width: int = 1300,
    height: int = 560,
) -> go.Figure:
    """cos(EN, LOC) against layer per target (raw and standardized), with its nulls and control.

    Shaded around each line: the 95% bootstrap interval; dotted: the 95% quantile of the
    sign-flip null (LOC rebuilt from item differences with random signs); dashed: the
    equivalence margin; grey: the positive control (cosine of two targets' EN vectors).

    Args:
        rows: JSON rows (``target, layer, space, cos, ci_low, ci_high, null_q95``), and rows
            with ``target == "positive control"`` for the control.
        margin: the equivalence margin to draw.
    """
    if not rows:
        raise ValueError("perpendicularity_figure: no rows")
    spaces = [s for s in ("raw", "standardized") if any(r["space"] == s for r in rows)]
    fig = make_subplots(
        rows=1, cols=len(spaces), shared_yaxes=True,
        subplot_titles=[f"{space} residual space" for space in spaces],
    )  # fmt: skip
    targets = list(dict.fromkeys(r["target"] for r in rows if r["target"] != "positive control"))
    colors = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(targets)}
    layers = sorted({int(r["layer"]) for r in rows})
    for col, space in enumerate(spaces, start=1):
        if margin is not None:
            for sign in (-1, 1):
                fig.add_trace(
                    go.Scatter(
                        x=[layers[0], layers[-1]], y=[sign * margin] * 2, mode="lines",
                        name=f"equivalence margin ±{margin:g}", legendgroup="margin",
                        showlegend=col == 1 and sign == 1, line={"color": "black", "dash": "dash"},
                    ),
                    row=1, col=col,
                )  # fmt: skip
        control = sorted(
            (r for r in rows if r["target"] == "positive control" and r["space"] == space),
            key=lambda r: r["layer"],
        )
        if control:
            fig.add_trace(
                go.Scatter(
                    x=[r["layer"] for r in control], y=[r["cos"] for r in control],
                    mode="lines", name=f"positive control: cos(EN, EN) {control[0].get('pair', '')}",
                    legendgroup="control", showlegend=col == 1,
                    line={"color": "grey", "width": 2},
                ),
                row=1, col=col,
            )  # fmt: skip
        for target in targets:
            mine = sorted(
                (r for r in rows if r["target"] == target and r["space"] == space),
                key=lambda r: r["layer"],
            )
            x = [int(r["layer"]) for r in mine]
            color = colors[target]
            if all(r.get("ci_low") is not None for r in mine):
                _band(
                    fig, x, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine],
                    name=f"{target} 95% CI", color=_transparent(color, 0.18), col=col,
                    showlegend=False, group=target,
                )  # fmt: skip
            if all(r.get("null_q95") is not None for r in mine):
                for sign in (-1, 1):
                    fig.add_trace(
                        go.Scatter(
                            x=x, y=[sign * r["null_q95"] for r in mine], mode="lines",
                            name=f"{target} sign-flip null (95%)", legendgroup=f"{target}-null",
                            showlegend=col == 1 and sign == 1,
                            line={"color": color, "dash": "dot", "width": 1},
                        ),
                        row=1, col=col,
                    )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=x, y=[r["cos"] for r in mine], mode="lines+markers", name=target,
                    legendgroup=target, showlegend=col == 1, line={"color": color, "width": 2},
                    hovertemplate=f"{target} · layer %{{x}}<br>cos %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        fig.update_xaxes(
            title_text="layer (blocks.L.hook_resid_post)", dtick=1,
            range=[layers[0] - 0.5, layers[-1] + 0.5], row=1, col=col,
        )  # fmt: skip
    fig.update_yaxes(title_text="cos(EN vector, LOC vector)", range=[-1, 1], row=1, col=1)
    fig.update_layout(
        title=title
        or (
            "Are the EN and LOC steering vectors perpendicular? cos(EN, LOC) per layer"
            "<br><sup>vectors fitted on the fit split; shaded: 95% bootstrap interval over "
            "items; dotted: sign-flip null; grey: EN vectors of two targets</sup>"
        ),
        width=width,
        height=height,
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        margin={"b": 150},
    )
    return fig


# --------------------------------------------------------------------------------------------
# Mixing: retrieval, silhouette and the language-ID probe per layer, with intervals.
# --------------------------------------------------------------------------------------------

_MIXING_PANELS = (
    ("retrieval", "translation retrieval (higher: mixed)", [0, 1.02]),
    ("silhouette", "language silhouette (lower: mixed)", [-1, 1]),
    ("probe", "language-ID probe accuracy (lower: mixed)", [0, 1.02]),
)


def mixing_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    width: int = 1000,
    height: int = 900,
) -> go.Figure:
    """Retrieval, silhouette and probe accuracy against layer, raw and standardized, with CIs.

    Args:
        rows: from :meth:`lens_steer.geometry.LayerMixing.rows` (raw and/or standardized).
    """
    if not rows:
        raise ValueError("mixing_figure: no rows")
    fig = make_subplots(
        rows=len(_MIXING_PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.07,
        subplot_titles=[title for _, title, _ in _MIXING_PANELS],
    )  # fmt: skip
    styles = {False: ("raw residuals", "#1f77b4"), True: ("standardized residuals", "#d62728")}
    for standardized in dict.fromkeys(bool(r.get("standardized")) for r in rows):
        label, color = styles[standardized]
        mine = sorted(
            (r for r in rows if bool(r.get("standardized")) == standardized),
            key=lambda r: r["layer"],
        )
        x = [int(r["layer"]) for r in mine]
        for index, (key, _, _) in enumerate(_MIXING_PANELS, start=1):
            if key not in mine[0]:
                continue
            _band(
                fig, x, [r[f"{key}_ci"][0] for r in mine], [r[f"{key}_ci"][1] for r in mine],
                name=f"{label} 95% CI", color=_transparent(color, 0.18), col=1, row=index,
                showlegend=False, group=label,
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=x, y=[r[key] for r in mine], mode="lines+markers", name=label,
                    legendgroup=label, showlegend=index == 1, line={"color": color, "width": 2},
                    hovertemplate=f"{label} · layer %{{x}}<br>{key} %{{y:.3f}}<extra></extra>",
                ),
                row=index, col=1,
            )  # fmt: skip
    for index, (_, _, y_range) in enumerate(_MIXING_PANELS, start=1):
        fig.update_yaxes(range=y_range, row=index, col=1)
    layers = sorted({int(r["layer"]) for r in rows})
    fig.update_xaxes(dtick=1, range=[layers[0] - 0.5, layers[-1] + 0.5])
    fig.update_xaxes(title_text="layer (blocks.L.hook_resid_post)", row=len(_MIXING_PANELS), col=1)
    first = rows[0]
    fig.update_layout(
        title=title
        or (
            "Where do languages mix? Three measures per layer, 95% intervals over sentence groups"
            f"<br><sup>{_source(first)}; {first.get('n_groups', '?')} sentence groups in "
            f"{first.get('n_langs', '?')} languages</sup>"
        ),
        width=width,
        height=height,
        template="plotly_white",
    )
    return fig
