"""Figures: each function's traces on small synthetic inputs (count, names, values), and
save_figure's files, with a static export that fails once (retried) or twice (a warning)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest
import torch

from lens_steer.evaluate.plane import Plane, PlanePoint
from lens_steer.evaluate.scores import Score
from lens_steer.figures import (
    FigureExportWarning,
    _export,
    mixing_figure,
    pca_figure,
    pca_grid_figure,
    perpendicularity_figure,
    plane_figure,
    save_figure,
    sweep_figure,
)
from lens_steer.geometry import pca_by_layer
from lens_steer.residuals import ResidualSet

LANGS = ("en", "ko", "zh")
LAYERS = (0, 3, 5, 7)


def _parallel(n_groups: int = 8, d_model: int = 12) -> ResidualSet:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(n_groups, len(LAYERS), d_model, generator=generator)
    acts = torch.cat(
        [base + 0.5 * torch.randn(1, len(LAYERS), d_model, generator=generator) for _ in LANGS]
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


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _by_name(fig, name: str) -> list:
    return [trace for trace in fig.data if trace.name == name]


# ---------------------------------------------------------------- PCA


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
    en_rows = [i for i, lang in enumerate(parallel.langs) if lang == "en"]
    first, first_std = visible_now[0], visible_now[len(LANGS)]
    assert first.name == first_std.name == "en" and first_std.xaxis == "x2"
    assert list(first.x) == pytest.approx(raw.coords[LAYERS.index(5), en_rows, 0].tolist())
    assert list(first_std.y) == pytest.approx(
        standardized.coords[LAYERS.index(5), en_rows, 1].tolist()
    )
    assert list(first.text)[0] == "par-0-en<br>group par-0"
    assert fig.layout.xaxis.title.text.startswith("PC1 (") and "toy-model" in fig.layout.title.text
    assert sum(trace.showlegend for trace in visible_now) == len(LANGS)  # one entry per language


def test_pca_figure_refuses_an_unknown_initial_layer_and_mismatched_panels():
    raw = pca_by_layer(_parallel(), show_progress=False)
    with pytest.raises(ValueError, match="initial_layer 4 not among"):
        pca_figure(raw, initial_layer=4)
    with pytest.raises(ValueError, match="panels must share layers and prompts"):
        pca_figure([raw, pca_by_layer(_parallel(), layers=[0, 3], show_progress=False)])
    with pytest.raises(ValueError, match="no PCA given"):
        pca_figure([])


def test_pca_grid_figure_has_one_panel_per_chosen_layer_and_space():
    parallel = _parallel()
    raw = pca_by_layer(parallel, show_progress=False)
    standardized = pca_by_layer(parallel, standardize=True, show_progress=False)
    fig = pca_grid_figure([raw, standardized], layers=[0, 7])
    assert len(fig.data) == 2 * 2 * len(LANGS)
    assert [a.text for a in fig.layout.annotations] == [
        "layer 0 (raw)",
        "layer 7 (raw)",
        "layer 0 (std)",
        "layer 7 (std)",
    ]
    assert [trace.xaxis for trace in fig.data[:: len(LANGS)]] == ["x", "x2", "x3", "x4"]
    zh_rows = [i for i, lang in enumerate(parallel.langs) if lang == "zh"]
    last = fig.data[-1]  # standardized, layer 7, zh
    assert last.name == "zh" and list(last.x) == pytest.approx(
        standardized.coords[3, zh_rows, 0].tolist()
    )
    assert sum(bool(trace.showlegend) for trace in fig.data) == len(LANGS)


# ---------------------------------------------------------------- perpendicularity


def _perpendicularity_rows(spaces=("raw", "standardized")) -> list[dict]:
    rows = []
    for space in spaces:
        for t, target in enumerate(("ko:South_Korea", "zh:China")):
            for layer in range(4):
                cos = 0.1 * layer - 0.2 * t + (0.05 if space == "raw" else 0.0)
                rows.append({
                    "target": target, "space": space, "layer": layer, "cos": cos,
                    "ci_low": cos - 0.1, "ci_high": cos + 0.1, "null_q95": 0.08 + 0.01 * layer,
                })  # fmt: skip
        rows += [
            {"target": "positive control", "space": space, "layer": layer, "cos": 0.7,
             "pair": "ko-zh", "ci_low": None, "ci_high": None, "null_q95": None}
            for layer in range(4)
        ]  # fmt: skip
    return rows


def test_perpendicularity_figure_draws_each_target_its_interval_null_margin_and_control():
    rows = _perpendicularity_rows()
    fig = perpendicularity_figure(rows, margin=0.15)
    # Per panel: 2 margin lines, 1 control, and per target 2 band edges + 2 null lines + 1 line.
    assert len(fig.data) == 2 * (2 + 1 + 2 * 5)
    lines = [trace for trace in fig.data if trace.mode == "lines+markers"]
    assert [(trace.name, trace.xaxis) for trace in lines] == [
        ("ko:South_Korea", "x"),
        ("zh:China", "x"),
        ("ko:South_Korea", "x2"),
        ("zh:China", "x2"),
    ]
    expected = [
        r["cos"] for r in rows if r["target"] == "zh:China" and r["space"] == "standardized"
    ]
    assert list(lines[3].y) == pytest.approx(expected)
    assert list(lines[3].x) == [0, 1, 2, 3]
    null = _by_name(fig, "ko:South_Korea sign-flip null (95%)")
    assert len(null) == 4
    assert list(null[0].y) == pytest.approx([-0.08, -0.09, -0.10, -0.11])
    assert list(null[1].y) == pytest.approx([0.08, 0.09, 0.10, 0.11])
    band = _by_name(fig, "zh:China 95% CI")  # raw panel: upper edge, lower edge (filled)
    raw_zh = [r["cos"] for r in rows if r["target"] == "zh:China" and r["space"] == "raw"]
    assert len(band) == 4 and band[1].fill == "tonexty"
    assert list(band[0].y) == pytest.approx([cos + 0.1 for cos in raw_zh])
    assert list(band[1].y) == pytest.approx([cos - 0.1 for cos in raw_zh])
    margin = [trace for trace in fig.data if trace.name == "equivalence margin ±0.15"]
    assert sorted(tuple(trace.y) for trace in margin) == [(-0.15, -0.15)] * 2 + [(0.15, 0.15)] * 2
    control = _by_name(fig, "positive control: cos(EN, EN) ko-zh")
    assert len(control) == 2 and list(control[0].y) == [0.7] * 4
    assert sum(bool(trace.showlegend) for trace in margin) == 1
    assert list(fig.layout.yaxis.range) == [-1, 1]
    assert [a.text for a in fig.layout.annotations] == [
        "raw residual space",
        "standardized residual space",
    ]


def test_perpendicularity_figure_without_margin_or_standardized_rows_has_fewer_traces():
    fig = perpendicularity_figure(_perpendicularity_rows(spaces=("raw",)))
    assert {trace.xaxis for trace in fig.data} == {"x"}
    assert len(fig.data) == 1 + 2 * 5
    assert not [trace for trace in fig.data if "margin" in trace.name]
    with pytest.raises(ValueError, match="no rows"):
        perpendicularity_figure([])


# ---------------------------------------------------------------- mixing


def _mixing_rows() -> list[dict]:
    rows = []
    for standardized in (False, True):
        for layer in (0, 1, 2):
            value = 0.3 + 0.2 * layer + (0.1 if standardized else 0.0)
            rows.append({
                "layer": layer, "standardized": standardized,
                "retrieval": value, "retrieval_ci": [value - 0.05, value + 0.05],
                "silhouette": 1 - value, "silhouette_ci": [0.9 - value, 1.1 - value],
                "probe": 0.5, "probe_ci": [0.4, 0.6],
                "model_id": "toy-model", "position": "last", "n_groups": 12, "n_langs": 3,
            })  # fmt: skip
    return rows


def test_mixing_figure_has_a_line_and_band_per_score_and_space():
    rows = _mixing_rows()
    fig = mixing_figure(rows)
    lines = [trace for trace in fig.data if trace.mode == "lines+markers"]
    assert [(trace.name, trace.yaxis) for trace in lines] == [
        ("raw residuals", "y"), ("raw residuals", "y2"), ("raw residuals", "y3"),
        ("standardized residuals", "y"), ("standardized residuals", "y2"),
        ("standardized residuals", "y3"),
    ]  # fmt: skip
    assert len(fig.data) == 2 * 3 * 3  # per space and score: two band edges and the line
    assert list(lines[1].y) == pytest.approx([0.7, 0.5, 0.3])  # raw silhouette
    assert list(lines[3].y) == pytest.approx([0.4, 0.6, 0.8])  # standardized retrieval
    bands = _by_name(fig, "standardized residuals 95% CI")
    assert list(bands[0].y) == pytest.approx([0.45, 0.65, 0.85])  # upper edge of retrieval
    assert list(bands[1].y) == pytest.approx([0.35, 0.55, 0.75])
    assert sum(bool(trace.showlegend) for trace in fig.data) == 2
    assert list(fig.layout.yaxis2.range) == [-1, 1]
    assert "12 sentence groups in 3 languages" in fig.layout.title.text
    with pytest.raises(ValueError, match="no rows"):
        mixing_figure([])


# ---------------------------------------------------------------- sweep


def _effect(mean: float, half: float = 0.1) -> dict:
    return {"mean_delta": mean, "ci_low": mean - half, "ci_high": mean + 2 * half}


def _sweep_summary() -> dict:
    points = []
    for method in ("en", "loc"):
        for alpha in (0.5, 1.0):
            for layer in (2, 4, 6):
                delta = layer / 10 + alpha + (0.5 if method == "loc" else 0.0)
                points.append({
                    "method": method, "layer": layer, "alpha": alpha,
                    "key": f"{method}@{layer}:{alpha}", "kl": 0.01 * layer * alpha,
                    "control_kl": 0.005 * layer * alpha,
                    "metrics": {
                        "transfer": {"vs_unsteered": _effect(delta), "control": _effect(0.0, 0.2)},
                        "gap_closure": {"vs_unsteered": _effect(-delta)},
                    },
                })  # fmt: skip
    return {"target": "ko:South_Korea", "split": "dev", "points": points,
            "settings": {"model_id": "toy-model", "alpha_units": "the vector"}}  # fmt: skip


def test_sweep_figure_has_an_effect_line_per_alpha_with_paired_intervals_and_the_control():
    summary = _sweep_summary()
    fig = sweep_figure(summary, ["transfer", None, "gap_closure"])
    assert [a.text for a in fig.layout.annotations][:6] == [
        "EN-steering: Δ transfer margin", "EN-steering: Δ gap_closure margin", "EN-steering: KL",
        "LOC-steering: Δ transfer margin", "LOC-steering: Δ gap_closure margin", "LOC-steering: KL",
    ]  # fmt: skip
    effects = [t for t in fig.data if t.name.startswith("α") and t.error_y.array is not None]
    assert len(effects) == 2 * 2 * 2  # methods x metrics x alphas
    loc_transfer = [t for t in effects if t.xaxis == "x4"]  # LOC row, transfer column
    assert [t.name for t in loc_transfer] == ["α = 0.5", "α = 1"]
    assert list(loc_transfer[1].x) == [2, 4, 6]
    assert list(loc_transfer[1].y) == pytest.approx([1.7, 1.9, 2.1])
    assert list(loc_transfer[1].error_y.array) == pytest.approx([0.2] * 3)  # ci_high - mean
    assert list(loc_transfer[1].error_y.arrayminus) == pytest.approx([0.1] * 3)
    controls = [t for t in fig.data if t.name == "random-direction control (95% CI)"]
    assert len(controls) == 2 * 2  # transfer has a control, gap_closure does not
    assert list(controls[0].y) == pytest.approx([0.4] * 3 + [-0.2] * 3)  # high edge, low back
    kl = [t for t in fig.data if t.xaxis in ("x3", "x6")]
    assert len(kl) == 2 * 2 * 2  # per method and alpha: the KL and the control's KL
    assert list(kl[0].y) == pytest.approx([0.01, 0.02, 0.03]) and kl[1].line.dash == "dot"
    assert fig.layout.yaxis3.type == "log"
    assert sum(1 for shape in fig.layout.shapes if shape.y0 == 0 and shape.y1 == 0) == 4
    assert "Layer sweep, ko:South_Korea (dev split)" in fig.layout.title.text


# ---------------------------------------------------------------- the plane


def _score(value: float, half: float = 0.1) -> Score:
    return Score(value, value - half, value + 2 * half, 20, "m", {})


def _plane() -> Plane:
    points = (
        PlanePoint("unsteered", "reference", None, _score(0.4), _score(0.6)),
        PlanePoint("english_query", "reference", None, _score(0.7), None),
        PlanePoint("explicit", "reference", None, _score(0.4), _score(0.9)),
        PlanePoint("best_en", "single", "en@6:0.5", _score(0.6), _score(0.3)),
        PlanePoint("best_loc", "single", "loc@14:1", _score(0.35), _score(0.8)),
        PlanePoint("surgical_2", "surgical", "en@6:0.5+loc@14:1", _score(0.65), _score(0.5)),
        PlanePoint("surgical_1", "surgical", "en@5:0.5+loc@14:1", _score(0.5), _score(0.7)),
        PlanePoint("random_control", "control", "random", _score(0.42), _score(0.58)),
    )
    return Plane("ko:South_Korea", ("transfer", "gap_closure"), points)


def test_plane_figure_shows_references_singles_the_control_and_a_sorted_frontier():
    fig = plane_figure(_plane())
    names = [t.name for t in fig.data]
    assert names == [
        "unsteered (asked in L, implicit)", "explicit prompt (culture named)",
        "best en: en@6:0.5", "best loc: loc@14:1", "surgical 2: en@6:0.5+loc@14:1",
        "surgical 1: en@5:0.5+loc@14:1", "random control: random",
        "surgical frontier (chosen on dev)",
    ]  # fmt: skip
    symbols = [t.marker.symbol for t in fig.data[:-1]]
    assert symbols == ["circle", "diamond", "triangle-up", "triangle-down", "star", "star", "x"]
    best_en = fig.data[2]
    assert (list(best_en.x), list(best_en.y)) == ([0.6], [0.3])
    assert list(best_en.error_x.array) == pytest.approx([0.2])
    assert list(best_en.error_x.arrayminus) == pytest.approx([0.1])
    frontier = fig.data[-1]
    assert list(frontier.x) == [0.5, 0.65] and list(frontier.y) == [0.7, 0.5]
    # The English query has no localization score: a dashed vertical line at its transfer.
    (line,) = fig.layout.shapes
    assert (line.x0, line.x1, line.line.dash) == (0.7, 0.7, "dash")
    assert fig.layout.annotations[0].text == "English query (transfer asked in English)"
    assert fig.layout.xaxis.title.text == "transfer"
    assert fig.layout.yaxis.title.text == "gap_closure"
    assert "ko:South_Korea" in fig.layout.title.text


# ---------------------------------------------------------------- saving


def test_save_figure_writes_offline_html_and_png_svg_pdf_of_the_expected_size(tmp_path: Path):
    fig = mixing_figure(_mixing_rows(), width=500, height=420)
    paths = save_figure(fig, tmp_path / "mixing")
    assert set(paths) == {"html", "png", "svg", "pdf"}
    assert {p.name for p in paths.values()} == {
        f"mixing.{s}" for s in ("html", "png", "svg", "pdf")
    }
    html = paths["html"].read_text()
    assert 'src="plotly.min.js"' in html and "https://cdn" not in html
    assert len(html) < 1_000_000  # plotly.js is beside the page, not in it
    assert _png_size(paths["png"]) == (500, 420)
    assert b"<svg" in paths["svg"].read_bytes()[:500]
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-"
    bundle = (tmp_path / "plotly.min.js").read_text()
    assert "plotly.js v" in bundle and len(bundle) > 1_000_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_figure_html_only_and_inline(tmp_path: Path):
    fig = mixing_figure(_mixing_rows())
    assert set(save_figure(fig, tmp_path / "alone" / "mixing", png=False)) == {"html"}
    assert (tmp_path / "alone" / "plotly.min.js").is_file()
    inline = save_figure(fig, tmp_path / "inline", formats=(), plotlyjs="inline")
    assert set(inline) == {"html"} and "plotly.js v" in inline["html"].read_text()
    with pytest.raises(ValueError, match="unknown figure format 'jpg'"):
        save_figure(fig, tmp_path / "x", formats=("jpg",))


def test_a_static_export_failing_twice_warns_and_keeps_the_html(tmp_path: Path, monkeypatch):
    """The defect: PNG export through kaleido failed under load and aborted the whole run."""
    attempts: list[str] = []

    def flaky(fig, fmt, width, height, scale):
        attempts.append(fmt)
        if fmt == "png":
            raise RuntimeError("kaleido: browser crashed")
        return f"<{fmt} bytes>".encode()

    monkeypatch.setattr(_export, "_static", flaky)
    with pytest.warns(
        FigureExportWarning, match=r"fig\.png: PNG export failed twice \(RuntimeError: kaleido"
    ):
        paths = save_figure(mixing_figure(_mixing_rows()), tmp_path / "fig")
    assert attempts == ["png", "png", "svg", "pdf"]
    assert set(paths) == {"html", "svg", "pdf"}
    assert paths["html"].is_file() and paths["svg"].read_bytes() == b"<svg bytes>"
    assert not (tmp_path / "fig.png").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_static_export_failing_once_is_retried_and_written(tmp_path: Path, monkeypatch):
    failures = {"png": 1}

    def once(fig, fmt, width, height, scale):
        if failures.get(fmt):
            failures[fmt] -= 1
            raise NameError("name 'kaleido_scope' is not defined")  # what kaleido raises under load
        return b"\x89PNG fake" if fmt == "png" else b"other"

    monkeypatch.setattr(_export, "_static", once)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureExportWarning)
        paths = save_figure(mixing_figure(_mixing_rows()), tmp_path / "fig", formats=("png",))
    assert set(paths) == {"html", "png"}
    assert paths["png"].read_bytes() == b"\x89PNG fake"
