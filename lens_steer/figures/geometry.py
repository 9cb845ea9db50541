"""Figures of the residual-stream geometry: PCA per layer, perpendicularity, language mixing.

Each function returns a ``plotly.graph_objects.Figure``; save it with
:func:`lens_steer.figures.save_figure` (offline HTML + PNG/SVG/PDF). The PCA has a layer slider
in HTML and a small-multiples grid of layers for the static images; perpendicularity and mixing
read JSON-ready rows, so they can be redrawn from a results file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lens_steer.data.languages import languages
from lens_steer.geometry.pca import LayerPCA

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
# PCA with a layer slider.
# --------------------------------------------------------------------------------------------


def _axis_titles(pcas: Sequence[LayerPCA], slot: int) -> dict[str, str]:
    titles = {}
    for panel, pca in enumerate(pcas):
        suffix = "" if panel == 0 else str(panel + 1)
        ratio = pca.explained_variance_ratio[slot]
        titles[f"xaxis{suffix}.title.text"] = f"PC1 ({100 * float(ratio[0]):.1f}% var)"
        titles[f"yaxis{suffix}.title.text"] = f"PC2 ({100 * float(ratio[1]):.1f}% var)"
    return titles


def pca_figure(
    pcas: LayerPCA | Sequence[LayerPCA],
    *,
    initial_layer: int | None = None,
    title: str | None = None,
    width: int = 1200,
    height: int = 620,
) -> go.Figure:
    """PC1/PC2 scatter per layer, one colour per language, a slider to move through layers.

    Several PCAs of the same prompts (e.g. raw and standardized residuals) become side-by-side
    panels driven by the same slider.

    Args:
        pcas: from :func:`lens_steer.geometry.pca_by_layer` (at least 2 components).
        initial_layer: layer shown first (and in the PNG); the middle layer by default.
        title: figure title; a caption-ready one is built when ``None``.
        width, height: figure size in pixels.

    Example:
        >>> fig = pca_figure([pca_by_layer(res), pca_by_layer(res, standardize=True)])  # doctest: +SKIP
        >>> save_figure(fig, "figures/pca")  # doctest: +SKIP
    """
    pcas = [pcas] if isinstance(pcas, LayerPCA) else list(pcas)
    if not pcas:
        raise ValueError("pca_figure: no PCA given")
    layers = pcas[0].layers
    for pca in pcas:
        if pca.layers != layers or pca.langs != pcas[0].langs:
            raise ValueError("pca_figure: panels must share layers and prompts")
        if pca.coords.shape[-1] < 2:
            raise ValueError("pca_figure needs at least 2 principal components")
    initial_layer = layers[len(layers) // 2] if initial_layer is None else initial_layer
    if initial_layer not in layers:
        raise ValueError(f"initial_layer {initial_layer} not among the PCA layers {layers}")
    start = layers.index(initial_layer)
    langs = list(dict.fromkeys(pcas[0].langs))
    colors = language_colors(langs)
    subtitles = [
        "standardized residuals (unit std per dimension)" if pca.standardized else "raw residuals"
        for pca in pcas
    ]
    fig = make_subplots(rows=1, cols=len(pcas), subplot_titles=subtitles, horizontal_spacing=0.08)

    owner = []  # the layer slot of each trace, in order
    for slot, layer in enumerate(layers):
        for panel, pca in enumerate(pcas):
            for lang in langs:
                rows = [i for i, value in enumerate(pca.langs) if value == lang]
                labels = [
                    f"{pca.ids[i]}<br>group {pca.groups[i]}" if pca.groups else pca.ids[i]
                    for i in rows
                ]
                fig.add_trace(
                    go.Scatter(
                        x=pca.coords[slot, rows, 0].tolist(),
                        y=pca.coords[slot, rows, 1].tolist(),
                        mode="markers",
                        name=lang,
                        legendgroup=lang,
                        showlegend=panel == 0,
                        marker={"color": colors[lang], "size": 7, "opacity": 0.8},
                        text=labels,
                        hovertemplate=f"layer {layer} · {lang}<br>%{{text}}<extra></extra>",
                        visible=slot == start,
                    ),
                    row=1,
                    col=panel + 1,
                )
                owner.append(slot)

    steps = [
        {
            "method": "update",
            "label": str(layer),
            "args": [{"visible": [s == slot for s in owner]}, _axis_titles(pcas, slot)],
        }
        for slot, layer in enumerate(layers)
    ]
    n_prompts = len(pcas[0].ids)
    fig.update_layout(
        title=title
        or (
            f"Residual stream (blocks.L.hook_resid_post) projected on its first two principal "
            f"components per layer<br><sup>{_source(pcas[0].provenance)}; {n_prompts} parallel "
            f"sentences in {len(langs)} languages; move the slider to change layer</sup>"
        ),
        sliders=[
            {
                "active": start,
                "currentvalue": {"prefix": "layer "},
                "pad": {"t": 50},
                "steps": steps,
            }
        ],
        legend_title_text="language",
        width=width,
        height=height,
        template="plotly_white",
    )
    fig.update_layout(_axis_titles(pcas, start))
    return fig


def pca_grid_figure(
    pcas: LayerPCA | Sequence[LayerPCA],
    *,
    layers: Sequence[int] | None = None,
    width: int = 1400,
    height: int | None = None,
) -> go.Figure:
    """Small multiples of the PCA: one panel per chosen layer (rows: raw, standardized).

    The static counterpart of :func:`pca_figure`'s slider: a printed page cannot slide.
    """
    pcas = [pcas] if isinstance(pcas, LayerPCA) else list(pcas)
    all_layers = pcas[0].layers
    chosen = (
        list(layers) if layers is not None else list(all_layers[:: max(1, len(all_layers) // 6)])
    )
    langs = list(dict.fromkeys(pcas[0].langs))
    colors = language_colors(langs)
    titles = [
        f"layer {layer} ({'std' if pca.standardized else 'raw'})"
        for pca in pcas
        for layer in chosen
    ]
    fig = make_subplots(rows=len(pcas), cols=len(chosen), subplot_titles=titles)
    for row, pca in enumerate(pcas, start=1):
        for col, layer in enumerate(chosen, start=1):
            slot = pca.layers.index(layer)
            for lang in langs:
                rows = [i for i, value in enumerate(pca.langs) if value == lang]
                fig.add_trace(
                    go.Scatter(
                        x=pca.coords[slot, rows, 0].tolist(), y=pca.coords[slot, rows, 1].tolist(),
                        mode="markers", name=lang, legendgroup=lang,
                        showlegend=row == 1 and col == 1,
                        marker={"color": colors[lang], "size": 4, "opacity": 0.7},
                    ),
                    row=row, col=col,
                )  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(
        title=(
            "PC1/PC2 of the residual stream at chosen layers (one colour per language)"
            f"<br><sup>{_source(pcas[0].provenance)}; {len(pcas[0].ids)} parallel sentences; "
            "top row raw residuals, bottom row standardized</sup>"
        ),
        width=width,
        height=height or 280 * len(pcas) + 140,
        template="plotly_white",
        legend_title_text="language",
    )
    return fig


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
