"""Geometry figures: the plotly objects (traces, slider, titles) and the saved HTML/PNG files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from lens_steer.cache import ResidualSet
from lens_steer.figures import save_figure
from lens_steer.figures.geometry import mixing_figure, pca_figure, perpendicularity_figure
from lens_steer.geometry import (
    contrast_vector,
    mixing_by_layer,
    pca_by_layer,
    perpendicularity_table,
)

LANGS = ("en", "ko", "zh")
LAYERS = (0, 3, 5, 7)


def _parallel(n_groups: int = 8, d_model: int = 12) -> ResidualSet:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(n_groups, len(LAYERS), d_model, generator=gen)
    acts = torch.cat(
        [base + 0.5 * torch.randn(1, len(LAYERS), d_model, generator=gen) for _ in LANGS]
    )
    return ResidualSet(
        acts=acts,
        layers=LAYERS,
        ids=tuple(f"par-{g}-{lang}" for lang in LANGS for g in range(n_groups)),
        langs=tuple(lang for lang in LANGS for _ in range(n_groups)),
        hook_name="blocks.{layer}.hook_resid_post",
        position="last",
        model_id="toy-model",
        groups=tuple(f"par-{g}" for _ in LANGS for g in range(n_groups)),
    )


def _perpendicularity_rows() -> list[dict]:
    parallel = _parallel()
    gen = torch.Generator().manual_seed(1)

    def vector(lang: str):
        a = parallel.select(torch.randperm(parallel.n_prompts, generator=gen)[:10])
        b = parallel.select(torch.randperm(parallel.n_prompts, generator=gen)[:10])
        return contrast_vector(a, b, n_bootstrap=30, lang=lang, split="fit")

    en = {lang: vector(lang) for lang in ("ko", "zh")}
    loc = {lang: vector(lang) for lang in ("ko", "zh")}
    return perpendicularity_table(en, loc, scale=parallel)


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pca_figure_has_one_trace_per_layer_language_and_panel_and_a_slider_step_per_layer():
    parallel = _parallel()
    raw = pca_by_layer(parallel, show_progress=False)
    standardized = pca_by_layer(parallel, standardize=True, show_progress=False)
    fig = pca_figure([raw, standardized], initial_layer=5)
    assert len(fig.data) == len(LAYERS) * 2 * len(LANGS)
    assert [trace.name for trace in fig.data[: 2 * len(LANGS)]] == list(LANGS) * 2
    slider = fig.layout.sliders[0]
    assert [step.label for step in slider.steps] == [str(layer) for layer in LAYERS]
    assert slider.active == LAYERS.index(5)
    for slot, step in enumerate(slider.steps):
        visible = step.args[0]["visible"]
        shown = [trace for trace, on in zip(fig.data, visible, strict=True) if on]
        assert len(shown) == 2 * len(LANGS)
        assert all(f"layer {LAYERS[slot]} " in trace.hovertemplate for trace in shown)
        ratio = standardized.explained_variance_ratio[slot, 0]
        assert step.args[1]["xaxis2.title.text"] == f"PC1 ({100 * float(ratio):.1f}% var)"
    visible_now = [trace for trace in fig.data if trace.visible]
    assert all("layer 5 " in trace.hovertemplate for trace in visible_now)
    first = visible_now[0]
    en_rows = [i for i, lang in enumerate(parallel.langs) if lang == "en"]
    assert first.name == "en"
    assert list(first.x) == pytest.approx(raw.coords[LAYERS.index(5), en_rows, 0].tolist())
    assert fig.layout.xaxis.title.text.startswith("PC1 (") and "toy-model" in fig.layout.title.text
    assert sum(trace.showlegend for trace in visible_now) == len(
        LANGS
    )  # one legend entry per language


def test_pca_figure_refuses_an_unknown_initial_layer():
    with pytest.raises(ValueError, match="initial_layer 4 not among"):
        pca_figure(pca_by_layer(_parallel(), show_progress=False), initial_layer=4)


def test_perpendicularity_figure_has_a_line_per_language_in_raw_and_standardized_panels():
    rows = _perpendicularity_rows()
    fig = perpendicularity_figure(rows)
    lines = [trace for trace in fig.data if trace.mode == "lines+markers"]
    assert [trace.name for trace in lines] == ["ko", "zh", "ko", "zh"]
    assert {trace.xaxis for trace in lines} == {"x", "x2"}
    ko_std = lines[2]
    assert list(ko_std.y) == [row["cos_std"] for row in rows if row["lang"] == "ko"]
    assert list(ko_std.x) == list(LAYERS)
    null = [trace for trace in fig.data if trace.name.startswith("null band")]
    assert len(null) == 4 and max(null[0].y) == pytest.approx(rows[0]["null_band"])
    ci = [trace for trace in fig.data if "bootstrap CI" in trace.name]
    assert len(ci) == 8  # upper and lower edge per language and panel
    assert list(fig.layout.yaxis.range) == [-1, 1]
    assert fig.layout.annotations[1].text.startswith("standardized cosine")


def test_perpendicularity_figure_without_standardized_cosines_has_one_panel():
    rows = [{**row, "cos_std": None} for row in _perpendicularity_rows()]
    fig = perpendicularity_figure(rows)
    assert {trace.xaxis for trace in fig.data} == {"x"}


def test_mixing_figure_plots_retrieval_and_silhouette_for_raw_and_standardized():
    parallel = _parallel()
    rows = mixing_by_layer(parallel, show_progress=False) + mixing_by_layer(
        parallel, standardize=True, show_progress=False
    )
    fig = mixing_figure(rows)
    names = [(trace.name, trace.yaxis) for trace in fig.data]
    assert names == [
        ("raw residuals", "y"), ("raw residuals", "y2"),
        ("standardized residuals", "y"), ("standardized residuals", "y2"),
        ("chance retrieval", "y"),
    ]  # fmt: skip
    assert list(fig.data[1].y) == [row["silhouette"] for row in rows[: len(LAYERS)]]
    assert list(fig.data[4].y) == pytest.approx([1 / 8] * len(LAYERS))
    assert fig.layout.yaxis2.title.text == "silhouette (cosine)"


def test_figures_save_offline_html_and_png_of_the_expected_size(tmp_path: Path):
    parallel = _parallel()
    figures = {
        "pca": pca_figure(pca_by_layer(parallel, show_progress=False), width=640, height=400),
        "perpendicularity": perpendicularity_figure(
            _perpendicularity_rows(), width=700, height=380
        ),
        "mixing": mixing_figure(
            mixing_by_layer(parallel, show_progress=False), width=500, height=420
        ),
    }
    for name, fig in figures.items():
        paths = save_figure(fig, tmp_path / name)
        html = paths["html"].read_text()
        assert 'src="plotly.min.js"' in html and "https://cdn" not in html
        assert len(html) < 1_000_000  # plotly.js is beside the page, not in it
        assert _png_size(paths["png"]) == (fig.layout.width, fig.layout.height)
    bundle = (tmp_path / "plotly.min.js").read_text()
    assert "plotly.js v" in bundle and len(bundle) > 1_000_000
    inline = save_figure(figures["mixing"], tmp_path / "alone" / "mixing", png=False)
    assert set(inline) == {"html"}
    inline = save_figure(figures["mixing"], tmp_path / "inline", png=False, plotlyjs="inline")
    assert "plotly.js v" in inline["html"].read_text()
