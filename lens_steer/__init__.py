"""lens_steer: cultural erasure and Surgical Steering in multilingual LLMs, on TransformerLens.

One import gives a notebook user every step of the study::

    import lens_steer as ls
    model = ls.load_model()                                   # embedded Gemma 3 270M, offline
    probe = ls.load_probe_set(langs=["en", "ko", "id"])
    parallel = ls.collect_parallel(model, probe, ["en", "ko", "id"])
    en = ls.en_vectors(None, probe, ["ko", "id"], parallel=parallel)
    results = ls.run_study(ls.StudySettings(targets=("ko",), limit=24), "runs/ko")

Plug-in points: :func:`register_metric`, :func:`register_vector_method`,
:func:`register_language` (or a language declared in a JSONL meta record).
"""

from lens_steer import figures
from lens_steer.bridge import load_bridge
from lens_steer.collect import collect_residuals
from lens_steer.control_vectors import load_control_vector, save_control_vector
from lens_steer.data import limit_probe_set, load_blend, load_jsonl, load_probe_set
from lens_steer.data.blend_derived import load_blend_derived
from lens_steer.data.languages import (
    Country,
    Language,
    Target,
    language,
    parse_target,
    register_country,
    register_language,
)
from lens_steer.data.targets import TargetItems, target_items
from lens_steer.evaluate import (
    ItemScore,
    MetricTask,
    Score,
    ScoringRequest,
    ScoringSettings,
    SurgicalSettings,
    SweepSettings,
    build_plane,
    controlled_effect,
    evaluate_points,
    layer_sweep,
    point_effect,
    register_metric,
    score_steerings,
    surgical_search,
)
from lens_steer.geometry import (
    ContrastVector,
    VectorInputs,
    collect_localization,
    collect_parallel,
    constant_vector,
    contrast_vector,
    cosine_by_layer,
    en_vectors,
    fit_vectors,
    loc_vectors,
    measure_mixing,
    mixing_by_layer,
    null_band,
    pca_by_layer,
    perpendicularity_table,
    register_vector_method,
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
from lens_steer.residuals import ResidualSet
from lens_steer.steering import (
    Steering,
    SteeringTerm,
    apply_steering,
    compare_generations,
    generate,
    single_layer_steering,
    surgical_steering,
)
from lens_steer.study import StudyResults, StudySettings, run_study
from lens_steer.tokens import str_tokens, tokenize_batch

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_MODEL",
    "ContrastVector",
    "Country",
    "ItemScore",
    "Language",
    "MetricTask",
    "ResidualSet",
    "Score",
    "ScoringRequest",
    "ScoringSettings",
    "Steering",
    "SteeringTerm",
    "StudyResults",
    "StudySettings",
    "SurgicalSettings",
    "SweepSettings",
    "Target",
    "TargetItems",
    "VectorInputs",
    "__version__",
    "add_vector_hook",
    "apply_steering",
    "build_plane",
    "collect_localization",
    "collect_parallel",
    "collect_residuals",
    "compare_generations",
    "constant_vector",
    "contrast_vector",
    "controlled_effect",
    "cosine_by_layer",
    "en_vectors",
    "evaluate_points",
    "figures",
    "fit_vectors",
    "generate",
    "language",
    "layer_sweep",
    "limit_probe_set",
    "load_bridge",
    "load_blend",
    "load_blend_derived",
    "load_control_vector",
    "load_jsonl",
    "load_model",
    "load_probe_set",
    "loc_vectors",
    "measure_mixing",
    "mixing_by_layer",
    "multi_layer_hooks",
    "null_band",
    "parse_target",
    "pca_by_layer",
    "perpendicularity_table",
    "point_effect",
    "project_out_hook",
    "register_country",
    "register_language",
    "register_metric",
    "register_vector_method",
    "resid_hook_name",
    "run_study",
    "save_control_vector",
    "scale_direction_hook",
    "score_steerings",
    "single_layer_steering",
    "steering_hooks",
    "str_tokens",
    "surgical_search",
    "surgical_steering",
    "target_items",
    "tokenize_batch",
]
