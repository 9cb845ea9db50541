"""lens_steer: cultural erasure and Surgical Steering in multilingual LLMs, on TransformerLens.

One import gives a notebook user every step of the study::

    import lens_steer as ls
    model = ls.load_model()                                   # embedded Gemma 3 270M, offline
    probe = ls.load_probe_set(langs=["en", "ko", "id"])
    parallel = ls.collect_parallel(model, probe, ["en", "ko", "id"])
    en = ls.en_vectors(None, probe, ["ko", "id"], parallel=parallel)
"""

from lens_steer import figures
from lens_steer.cache import ResidualSet, collect_residuals
from lens_steer.data import limit_probe_set, load_blend, load_jsonl, load_probe_set
from lens_steer.evaluate import (
    Score,
    layer_sweep,
    localization_score,
    plane_points,
    score_options,
    steering_study,
    surgical_search,
    transfer_score,
)
from lens_steer.geometry import (
    ContrastVector,
    collect_localization,
    collect_parallel,
    contrast_vector,
    cosine_by_layer,
    en_vectors,
    geometry_study,
    loc_vectors,
    mixing_by_layer,
    null_band,
    pca_by_layer,
    perpendicularity_table,
)
from lens_steer.hooks import (
    add_vector_hook,
    multi_layer_hooks,
    project_out_hook,
    resid_hook_name,
    scale_direction_hook,
    steering_hooks,
)
from lens_steer.models import DEFAULT_MODEL, load_model
from lens_steer.pipeline import StudySettings, run_study
from lens_steer.steering import (
    Steering,
    SteeringTerm,
    apply_steering,
    compare_generations,
    generate,
    single_layer_steering,
    surgical_steering,
)
from lens_steer.tokens import str_tokens, tokenize_batch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "ContrastVector",
    "ResidualSet",
    "Score",
    "Steering",
    "SteeringTerm",
    "StudySettings",
    "__version__",
    "add_vector_hook",
    "apply_steering",
    "collect_localization",
    "collect_parallel",
    "collect_residuals",
    "compare_generations",
    "contrast_vector",
    "cosine_by_layer",
    "en_vectors",
    "figures",
    "generate",
    "geometry_study",
    "layer_sweep",
    "limit_probe_set",
    "load_blend",
    "load_jsonl",
    "load_model",
    "load_probe_set",
    "loc_vectors",
    "localization_score",
    "mixing_by_layer",
    "multi_layer_hooks",
    "null_band",
    "pca_by_layer",
    "perpendicularity_table",
    "plane_points",
    "project_out_hook",
    "resid_hook_name",
    "run_study",
    "scale_direction_hook",
    "score_options",
    "single_layer_steering",
    "steering_hooks",
    "steering_study",
    "str_tokens",
    "surgical_search",
    "surgical_steering",
    "tokenize_batch",
    "transfer_score",
]
