"""Geometry of the residual stream: contrast vectors, cosines against a null, PCA and mixing."""

from lens_steer.geometry.cosine import (
    LayerCosines,
    cosine,
    cosine_by_layer,
    null_band,
    perpendicularity_table,
    residual_scale,
)
from lens_steer.geometry.pca import (
    LayerPCA,
    language_silhouette,
    mixing_by_layer,
    pca_by_layer,
    translation_retrieval,
)
from lens_steer.geometry.study import GeometryStudy, geometry_study, measure_cost
from lens_steer.geometry.vectors import (
    ContrastVector,
    collect_localization,
    collect_parallel,
    contrast_vector,
    en_vectors,
    loc_vectors,
)

__all__ = [
    "ContrastVector",
    "GeometryStudy",
    "LayerCosines",
    "LayerPCA",
    "collect_localization",
    "collect_parallel",
    "contrast_vector",
    "cosine",
    "cosine_by_layer",
    "en_vectors",
    "geometry_study",
    "language_silhouette",
    "loc_vectors",
    "measure_cost",
    "mixing_by_layer",
    "null_band",
    "pca_by_layer",
    "perpendicularity_table",
    "residual_scale",
    "translation_retrieval",
]
