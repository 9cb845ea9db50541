"""Plotly figures of the study; each saves HTML (offline) and PNG."""

from lens_steer.figures._export import save_figure

__all__ = ["save_figure"]
