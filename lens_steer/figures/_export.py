"""Save a plotly figure as offline HTML (plotly.js embedded) and as a PNG, atomically."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from lens_steer._io import write_bytes_atomic, write_text_atomic

DEFAULT_WIDTH = 1000
DEFAULT_HEIGHT = 600


def save_figure(
    fig: go.Figure,
    stem: str | Path,
    *,
    png: bool = True,
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
) -> dict[str, Path]:
    """Write ``{stem}.html`` (works offline) and ``{stem}.png``; return their paths.

    The PNG needs kaleido >= 1 and a Chromium (``apt-get install chromium``).
    """
    stem = Path(stem)
    width = width or fig.layout.width or DEFAULT_WIDTH
    height = height or fig.layout.height or DEFAULT_HEIGHT
    paths = {"html": stem.with_suffix(".html")}
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    write_text_atomic(paths["html"], html)
    if png:
        paths["png"] = stem.with_suffix(".png")
        data = fig.to_image(format="png", width=int(width), height=int(height), scale=scale)
        write_bytes_atomic(paths["png"], data)
    return paths
