"""Plotly figures of the study; each saves offline HTML (plotly.min.js beside it) and PNG."""

from lens_steer.figures._export import save_figure
from lens_steer.figures.geometry import (
    geometry_figures,
    mixing_figure,
    pca_figure,
    perpendicularity_figure,
)
from lens_steer.figures.steering import plane_figure, save_steering_figures, sweep_figure

__all__ = [
    "geometry_figures",
    "mixing_figure",
    "pca_figure",
    "perpendicularity_figure",
    "plane_figure",
    "save_figure",
    "save_steering_figures",
    "sweep_figure",
]
