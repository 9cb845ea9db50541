"""Figures of the residual-stream geometry: PCA per layer (slider), perpendicularity, mixing.

Each function returns a ``plotly.graph_objects.Figure``; save it with
:func:`lens_steer.figures.save_figure` (offline HTML + PNG). The perpendicularity and mixing
figures read the JSON-ready rows of :func:`lens_steer.geometry.perpendicularity_table` and
:func:`lens_steer.geometry.mixing_by_layer`, so they can be redrawn from a results file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lens_steer.data.records import PROBE_LANGUAGES
from lens_steer.geometry.pca import LayerPCA
from lens_steer.geometry.study import GeometryStudy

_PALETTE = qualitative.Plotly + qualitative.D3


def language_colors(langs: Sequence[str]) -> dict[str, str]:
    """A fixed colour per language: the probe languages always get the same ones."""
    order = list(PROBE_LANGUAGES) + sorted(set(langs) - set(PROBE_LANGUAGES))
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


# --------------------------------------------------------------------------------------------
# Perpendicularity: cos(EN, LOC) per layer and language.
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
    showlegend: bool,
    group: str,
) -> None:
    """A shaded band between ``low`` and ``high`` (two traces: the upper edge, then the fill)."""
    common = {"mode": "lines", "line": {"width": 0}, "legendgroup": group, "hoverinfo": "skip"}
    fig.add_trace(go.Scatter(x=x, y=high, name=name, showlegend=False, **common), row=1, col=col)
    fig.add_trace(
        go.Scatter(
            x=x, y=low, name=name, fill="tonexty", fillcolor=color, showlegend=showlegend, **common
        ),
        row=1,
        col=col,
    )


def perpendicularity_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    width: int = 1200,
    height: int = 560,
) -> go.Figure:
    """cos(EN vector, LOC vector) against layer, one line per language, with the null band.

    Two panels: raw cosine and standardized cosine (when the rows have ``cos_std``). Shaded
    around each line: its bootstrap interval; grey around 0: cosines of random directions.

    Args:
        rows: from :func:`lens_steer.geometry.perpendicularity_table`.
        title: figure title; a caption-ready one is built when ``None``.
        width, height: figure size in pixels.
    """
    if not rows:
        raise ValueError("perpendicularity_figure: no rows")
    panels = [("cos_raw", "ci_low", "ci_high", "raw cosine")]
    if all(row.get("cos_std") is not None for row in rows):
        panels.append(
            ("cos_std", "std_ci_low", "std_ci_high", "standardized cosine (per-dimension std)")
        )
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p[3] for p in panels], shared_yaxes=True
    )
    langs = list(dict.fromkeys(row["lang"] for row in rows))
    colors = language_colors(langs)
    layers = sorted({int(row["layer"]) for row in rows})
    band = float(rows[0]["null_band"])
    for col, (value, low, high, _) in enumerate(panels, start=1):
        _band(
            fig, layers, [-band] * len(layers), [band] * len(layers),
            name=f"null band ±{band:.3f} (random directions)", color="rgba(128,128,128,0.25)",
            col=col, showlegend=col == 1, group="null",
        )  # fmt: skip
        for lang in langs:
            mine = sorted((r for r in rows if r["lang"] == lang), key=lambda r: r["layer"])
            x = [int(r["layer"]) for r in mine]
            if all(r.get(low) is not None for r in mine):
                _band(
                    fig, x, [r[low] for r in mine], [r[high] for r in mine],
                    name=f"{lang} {100 * float(mine[0].get('level', 0.95)):.0f}% bootstrap CI",
                    color=_transparent(colors[lang], 0.18), col=col, showlegend=False, group=lang,
                )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=x, y=[r[value] for r in mine], mode="lines+markers", name=lang,
                    legendgroup=lang, showlegend=col == 1, line={"color": colors[lang], "width": 2},
                    hovertemplate=f"{lang} · layer %{{x}}<br>cos %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        fig.update_xaxes(
            title_text="layer (blocks.L.hook_resid_post)", dtick=1,
            range=[layers[0] - 0.5, layers[-1] + 0.5], row=1, col=col,
        )  # fmt: skip
    fig.update_yaxes(title_text="cos(EN vector, LOC vector)", range=[-1, 1], row=1, col=1)
    first = rows[0]
    fig.update_layout(
        title=title
        or (
            "Are the EN and LOC steering vectors perpendicular? cos(EN, LOC) per layer"
            f"<br><sup>{_source(first)}; fit split '{first.get('split', '')}'; shaded: "
            f"{first.get('interval', 'bootstrap')} bootstrap interval over prompts "
            f"(n={first.get('n_bootstrap', 0)}) and the ±2/√d band of random directions</sup>"
        ),
        legend_title_text="language",
        width=width,
        height=height,
        template="plotly_white",
    )
    return fig


# --------------------------------------------------------------------------------------------
# Mixing: translation retrieval and language silhouette per layer.
# --------------------------------------------------------------------------------------------


def mixing_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    width: int = 1000,
    height: int = 700,
) -> go.Figure:
    """Translation-retrieval accuracy and language silhouette against layer.

    High retrieval and low silhouette mean the languages mix (a sentence sits next to its
    translations); rows computed on raw and on standardized residuals become separate lines.

    Args:
        rows: from :func:`lens_steer.geometry.mixing_by_layer` (one or several runs).
        title: figure title; a caption-ready one is built when ``None``.
        width, height: figure size in pixels.
    """
    if not rows:
        raise ValueError("mixing_figure: no rows")
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
        subplot_titles=(
            "translation retrieval: nearest neighbour in another language is the translation",
            "language silhouette (1: separate clusters per language, ≤0: mixed)",
        ),
    )  # fmt: skip
    variants = list(dict.fromkeys(bool(row.get("standardized")) for row in rows))
    styles = {False: ("raw residuals", "#1f77b4"), True: ("standardized residuals", "#d62728")}
    for standardized in variants:
        label, color = styles[standardized]
        mine = sorted(
            (r for r in rows if bool(r.get("standardized")) == standardized),
            key=lambda r: r["layer"],
        )
        x = [int(r["layer"]) for r in mine]
        for row_index, key in ((1, "retrieval_accuracy"), (2, "silhouette")):
            fig.add_trace(
                go.Scatter(
                    x=x, y=[r[key] for r in mine], mode="lines+markers", name=label,
                    legendgroup=label, showlegend=row_index == 1, line={"color": color, "width": 2},
                    hovertemplate=f"{label} · layer %{{x}}<br>{key} %{{y:.3f}}<extra></extra>",
                ),
                row=row_index, col=1,
            )  # fmt: skip
    chance = {int(r["layer"]): r["retrieval_chance"] for r in rows}
    fig.add_trace(
        go.Scatter(
            x=sorted(chance), y=[chance[layer] for layer in sorted(chance)],
            mode="lines", name="chance retrieval", line={"color": "grey", "dash": "dash"},
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="silhouette (cosine)", range=[-1, 1], row=2, col=1)
    layers = sorted(chance)
    fig.update_xaxes(dtick=1, range=[layers[0] - 0.5, layers[-1] + 0.5])
    fig.update_xaxes(title_text="layer (blocks.L.hook_resid_post)", row=2, col=1)
    first = rows[0]
    fig.update_layout(
        title=title
        or (
            "Where do languages mix? Translation retrieval and language separation per layer"
            f"<br><sup>{_source(first)}; {first.get('n_prompts', '?')} parallel sentences in "
            f"{first.get('n_langs', '?')} languages; cosine on globally centred residuals</sup>"
        ),
        width=width,
        height=height,
        template="plotly_white",
    )
    return fig


def geometry_figures(study: GeometryStudy) -> dict[str, go.Figure]:
    """The three geometry figures of a :func:`lens_steer.geometry.geometry_study` run.

    Example:
        >>> for name, fig in geometry_figures(study).items():  # doctest: +SKIP
        ...     save_figure(fig, f"figures/{name}")
    """
    return {
        "pca": pca_figure(study.pca),
        "perpendicularity": perpendicularity_figure(study.perpendicularity),
        "mixing": mixing_figure(study.mixing),
    }
