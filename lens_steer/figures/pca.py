"""Figures of a per-layer PCA: a layer slider for HTML, a small-multiples grid for images."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_steer.figures.geometry import _source, language_colors
from lens_steer.geometry.pca import LayerPCA

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
