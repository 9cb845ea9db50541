"""Save a plotly figure as offline HTML and as a PNG, atomically.

By default the HTML loads ``plotly.min.js`` from its own folder, written there once (4.6 MB)
instead of embedded in every page; ``plotlyjs="inline"`` embeds it for a single self-contained
file. Neither needs a network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

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
    plotlyjs: Literal["directory", "inline"] = "directory",
) -> dict[str, Path]:
    """Write ``{stem}.html`` (works offline) and ``{stem}.png``; return their paths.

    With ``plotlyjs="directory"`` the page reads ``plotly.min.js`` beside it (written if
    missing or different); keep the two together when moving the figures. The PNG needs
    kaleido >= 1 and a Chromium (``apt-get install chromium``).
    """
    stem = Path(stem)
    width = width or fig.layout.width or DEFAULT_WIDTH
    height = height or fig.layout.height or DEFAULT_HEIGHT
    paths = {"html": stem.with_suffix(".html")}
    if plotlyjs == "directory":
        write_plotlyjs(stem.parent)
    include: bool | str = True if plotlyjs == "inline" else "directory"
    html = fig.to_html(include_plotlyjs=include, full_html=True)
    write_text_atomic(paths["html"], html)
    if png:
        paths["png"] = stem.with_suffix(".png")
        data = fig.to_image(format="png", width=int(width), height=int(height), scale=scale)
        write_bytes_atomic(paths["png"], data)
    return paths


PLOTLYJS_NAME = "plotly.min.js"


def write_plotlyjs(folder: Path) -> Path:
    """Write plotly.js (the version plotly uses here) as ``folder/plotly.min.js`` if stale."""
    path = Path(folder) / PLOTLYJS_NAME
    bundle = get_plotlyjs().encode()
    if not (path.is_file() and path.stat().st_size == len(bundle) and path.read_bytes() == bundle):
        write_bytes_atomic(path, bundle)
    return path
