"""Plotly figures of the study; each saves offline HTML (plotly.min.js beside it), PNG, SVG, PDF."""

from lens_steer.figures._export import FigureExportWarning, save_figure
from lens_steer.figures.geometry import mixing_figure, perpendicularity_figure
from lens_steer.figures.pca import pca_figure, pca_grid_figure
from lens_steer.figures.steering import plane_figure, sweep_figure

__all__ = [
    "FigureExportWarning",
    "mixing_figure",
    "pca_figure",
    "pca_grid_figure",
    "perpendicularity_figure",
    "plane_figure",
    "save_figure",
    "sweep_figure",
]
