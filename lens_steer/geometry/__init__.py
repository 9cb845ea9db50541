"""Geometry of the residual stream: prompt sets, contrast vectors and the methods that fit them,
cosines against nulls, PCA and language mixing."""

from lens_steer.geometry.cosine import (
    LayerCosines,
    cosine,
    cosine_by_layer,
    null_band,
    perpendicularity_table,
    residual_scale,
)
from lens_steer.geometry.methods import (
    VectorInputs,
    VectorMethod,
    constant_vector,
    en_vectors,
    fit_vectors,
    loc_vectors,
    register_vector_method,
    vector_method,
    vector_methods,
)
from lens_steer.geometry.mixing import (
    LayerMixing,
    language_silhouette,
    measure_mixing,
    mixing_by_layer,
    translation_retrieval,
)
from lens_steer.geometry.pca import LayerPCA, pca_by_layer
from lens_steer.geometry.prompt_sets import (
    collect_blend,
    collect_forms,
    collect_localization,
    collect_parallel,
)
from lens_steer.geometry.vectors import ContrastVector, contrast_vector

__all__ = [
    "ContrastVector",
    "LayerCosines",
    "LayerMixing",
    "LayerPCA",
    "VectorInputs",
    "VectorMethod",
    "collect_blend",
    "collect_forms",
    "collect_localization",
    "collect_parallel",
    "constant_vector",
    "contrast_vector",
    "cosine",
    "cosine_by_layer",
    "en_vectors",
    "fit_vectors",
    "language_silhouette",
    "loc_vectors",
    "measure_mixing",
    "mixing_by_layer",
    "null_band",
    "pca_by_layer",
    "perpendicularity_table",
    "register_vector_method",
    "residual_scale",
    "translation_retrieval",
    "vector_method",
    "vector_methods",
]
