"""The study's prompts: the built-in probe set, BLEnD, user JSONL, and their templates.

Example:
    >>> from lens_steer.data import load_probe_set, localization_prompt
    >>> item = load_probe_set(["ko"]).localization[0]
    >>> localization_prompt(item, "implicit")
    '우리나라의 화폐 단위는'
"""

from lens_steer.data.blend import COUNTRIES as BLEND_COUNTRIES
from lens_steer.data.blend import load_blend
from lens_steer.data.jsonl import load_jsonl, write_jsonl
from lens_steer.data.limit import limit_probe_set
from lens_steer.data.probe import load_probe_set
from lens_steer.data.records import (
    ENGLISH,
    LOC_LANGUAGES,
    PROBE_LANGUAGES,
    SPLITS,
    BlendAnswer,
    BlendItem,
    BlendSet,
    LocalizationItem,
    ParallelItem,
    ProbeSet,
    Split,
    TransferItem,
)
from lens_steer.data.templates import (
    BlendForm,
    LocalizationForm,
    blend_continuations,
    blend_prompt,
    localization_continuations,
    localization_prompt,
    option_continuation,
    parallel_prompt,
    transfer_prompt,
)

__all__ = [
    "BLEND_COUNTRIES",
    "ENGLISH",
    "LOC_LANGUAGES",
    "PROBE_LANGUAGES",
    "SPLITS",
    "BlendAnswer",
    "BlendForm",
    "BlendItem",
    "BlendSet",
    "LocalizationForm",
    "LocalizationItem",
    "ParallelItem",
    "ProbeSet",
    "Split",
    "TransferItem",
    "blend_continuations",
    "blend_prompt",
    "load_blend",
    "load_jsonl",
    "load_probe_set",
    "limit_probe_set",
    "localization_continuations",
    "localization_prompt",
    "option_continuation",
    "parallel_prompt",
    "transfer_prompt",
    "write_jsonl",
]
