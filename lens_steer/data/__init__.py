"""The study's prompts: the built-in probe set, BLEnD, user JSONL, and their templates."""

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

__all__ = [
    "ENGLISH",
    "LOC_LANGUAGES",
    "PROBE_LANGUAGES",
    "SPLITS",
    "BlendAnswer",
    "BlendItem",
    "BlendSet",
    "LocalizationItem",
    "ParallelItem",
    "ProbeSet",
    "Split",
    "TransferItem",
]
