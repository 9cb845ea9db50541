"""Sweep and plane figures: traces carry the scores and intervals; HTML and PNG are written."""

from __future__ import annotations

import pytest

from lens_steer.evaluate.plane import Plane, PlanePoint
from lens_steer.evaluate.scores import Score
from lens_steer.evaluate.sweep import LayerSweep, SweepPoint
from lens_steer.figures.steering import (
    LOCALIZATION_TITLE,
    TRANSFER_TITLE,
    plane_figure,
    save_steering_figures,
    sweep_figure,
)


def score(value: float, half: float = 0.1) -> Score:
    return Score(value, value - half, value + half, 20, "m", {})


def make_sweep() -> LayerSweep:
    points = []
    for kind in ("en", "loc"):
        for alpha in (0.5, 1.0):
            for layer in range(3):
                t = 0.3 + 0.1 * layer + (0.05 if kind == "en" else 0) + alpha / 10
                points.append(SweepPoint(kind, layer, alpha, score(t), score(1 - t, 0.05), {}))
    settings = {"model_id": "m", "split": "eval", "n_transfer": 20, "n_localization": 20,
                "alpha_mode": "relative"}  # fmt: skip
    return LayerSweep("ko", tuple(points), score(0.4), score(0.6), settings)


def steering(*terms: tuple[str, int, float]) -> dict:
    return {"label": "", "terms": [{"name": n, "layer": lay, "alpha": a} for n, lay, a in terms]}


def make_plane() -> Plane:
    points = (
        PlanePoint("unsteered", "reference", score(0.4), score(0.6)),
        PlanePoint("english_query", "reference", score(0.7), score(0.2)),
        PlanePoint("explicit", "reference", score(0.4), score(0.9)),
        PlanePoint("best_en", "single", score(0.6), score(0.3), steering(("en", 6, 0.5))),
        PlanePoint("best_loc", "single", score(0.35), score(0.8), steering(("loc", 14, 1.0))),
        PlanePoint("surgical_2", "surgical", score(0.65), score(0.5), steering(("en", 6, 0.5), ("loc", 14, 1.0))),
        PlanePoint("surgical_1", "surgical", score(0.5), score(0.7), steering(("en", 5, 0.5), ("loc", 14, 1.0))),
    )  # fmt: skip
    return Plane("ko", points, {"model_id": "m", "split": "eval"})


def test_sweep_figure_has_one_line_per_alpha_and_panel_with_intervals():
    sweep = make_sweep()
    fig = sweep_figure(sweep)
    lines = [t for t in fig.data if t.name and t.name.startswith("α")]
    assert len(lines) == 2 * 2 * 2  # kinds x metrics x alphas
    loc_transfer = [t for t in lines if t.xaxis == "x3" and "1 ×" in t.name][
        0
    ]  # LOC row, transfer col
    expected = [p.transfer.value for p in sweep.curve("loc", 1.0)]
    assert list(loc_transfer.y) == pytest.approx(expected)
    assert list(loc_transfer.error_y.array) == pytest.approx([0.1] * 3)
    dashed = [t for t in fig.data if t.line.dash == "dash"]
    assert len(dashed) == 4 and {tuple(t.y) for t in dashed} == {(0.4, 0.4), (0.6, 0.6)}
    assert fig.layout.yaxis.title.text == TRANSFER_TITLE
    assert fig.layout.yaxis2.title.text == LOCALIZATION_TITLE
    assert "Layer sweep, ko" in fig.layout.title.text
    assert [a.text for a in fig.layout.annotations][:2] == [
        "EN-steering: transfer",
        "EN-steering: localization",
    ]


def test_plane_figure_shows_references_singles_and_a_sorted_frontier():
    fig = plane_figure(make_plane())
    names = [t.name for t in fig.data]
    assert names[:3] == ["unsteered", "english query", "explicit"]
    assert names[3] == "best en: en@L6 α=0.5"
    frontier = fig.data[-1]
    assert frontier.mode == "lines+markers"
    assert list(frontier.x) == [0.5, 0.65] and list(frontier.y) == [0.7, 0.5]
    assert list(frontier.error_x.arrayminus) == pytest.approx([0.1, 0.1])
    assert fig.layout.xaxis.title.text == TRANSFER_TITLE
    assert fig.layout.yaxis.title.text == LOCALIZATION_TITLE


def test_figures_are_written_as_offline_html_and_png(tmp_path):
    written = save_steering_figures([make_sweep()], [make_plane()], tmp_path)
    assert set(written) == {"sweep_ko", "plane_ko"}
    for paths in written.values():
        png = paths["png"].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        html = paths["html"].read_text()
        assert 'src="http' not in html and 'src="plotly.min.js"' in html
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # one shared bundle
