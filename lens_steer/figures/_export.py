"""Save a plotly figure as offline HTML and as static images (PNG, SVG, PDF), atomically.

By default the HTML loads ``plotly.min.js`` from its own folder, written there once (4.6 MB)
instead of embedded in every page; ``plotlyjs="inline"`` embeds it for a single self-contained
file. Static export goes through kaleido (a headless Chromium); it can fail under load, so each
image is retried once and a lasting failure is a warning (the HTML is kept), never a crash.
"""

from __future__ import annotations

import atexit
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from lens_steer._io import write_bytes_atomic, write_text_atomic

DEFAULT_WIDTH = 1000
DEFAULT_HEIGHT = 600
STATIC_FORMATS = ("png", "svg", "pdf")


class FigureExportWarning(UserWarning):
    """A static image could not be written (the HTML was)."""


_SERVER: dict[str, bool] = {}


def _start_server() -> None:
    """Keep one headless browser for the whole process (0.2 s per image instead of 4 s)."""
    if "started" in _SERVER:
        return
    _SERVER["started"] = False
    try:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _SERVER["started"] = True
        atexit.register(_stop_server)
    except Exception:  # an older kaleido, or no browser: each export starts its own
        pass


def _stop_server() -> None:
    try:
        import kaleido

        kaleido.stop_sync_server(silence_warnings=True)
    except Exception:
        pass


def _static(fig: go.Figure, fmt: str, width: int, height: int, scale: float) -> bytes:
    _start_server()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        return fig.to_image(format=fmt, width=width, height=height, scale=scale)


def save_figure(
    fig: go.Figure,
    stem: str | Path,
    *,
    formats: Sequence[str] = STATIC_FORMATS,
    static: go.Figure | None = None,
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
    plotlyjs: Literal["directory", "inline"] = "directory",
    png: bool = True,
) -> dict[str, Path]:
    """Write ``{stem}.html`` (works offline) and ``{stem}.{png,svg,pdf}``; return what was written.

    Args:
        fig: the figure (the HTML is always this one).
        stem: path without suffix.
        formats: static formats to write (``()`` for HTML only).
        static: another figure for the static images (e.g. a small-multiples grid for a figure
            whose HTML has a slider).
        width, height, scale: static image size.
        plotlyjs: ``"directory"`` (``plotly.min.js`` beside the page) or ``"inline"``.
        png: ``False`` is shorthand for ``formats=()``.
    """
    stem = Path(stem)
    image = static if static is not None else fig
    width = int(width or image.layout.width or DEFAULT_WIDTH)
    height = int(height or image.layout.height or DEFAULT_HEIGHT)
    paths = {"html": stem.with_suffix(".html")}
    if plotlyjs == "directory":
        write_plotlyjs(stem.parent)
    include: bool | str = True if plotlyjs == "inline" else "directory"
    write_text_atomic(paths["html"], fig.to_html(include_plotlyjs=include, full_html=True))
    for fmt in formats if png else ():
        if fmt not in STATIC_FORMATS:
            raise ValueError(f"unknown figure format {fmt!r}; accepted: {STATIC_FORMATS}")
        target = stem.with_suffix(f".{fmt}")
        for attempt in (1, 2):
            try:
                write_bytes_atomic(target, _static(image, fmt, width, height, scale))
                paths[fmt] = target
                break
            except Exception as err:  # kaleido raises several types (and NameError under load)
                if attempt == 2:
                    warnings.warn(
                        f"{target}: {fmt.upper()} export failed twice ({type(err).__name__}: "
                        f"{err}); the HTML is kept; rerun `lens-steer report` to retry",
                        FigureExportWarning,
                        stacklevel=2,
                    )
    return paths


PLOTLYJS_NAME = "plotly.min.js"


def write_plotlyjs(folder: Path) -> Path:
    """Write plotly.js (the version plotly uses here) as ``folder/plotly.min.js`` if stale."""
    path = Path(folder) / PLOTLYJS_NAME
    bundle = get_plotlyjs().encode()
    if not (path.is_file() and path.stat().st_size == len(bundle) and path.read_bytes() == bundle):
        write_bytes_atomic(path, bundle)
    return path
