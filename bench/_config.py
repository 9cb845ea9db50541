"""How big each benchmark is: the full preset (the committed table) and the ``--quick`` smoke run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lens_steer.data.records import PROBE_LANGUAGES, Split


@dataclass(frozen=True)
class Sizes:
    """Prompt counts and settings of every benchmark (recorded beside the numbers).

    Attributes:
        langs: languages of the residual collection (English and the six LOC languages).
        parallel_split: split of the parallel sentences collected (``None``: all splits).
        parallel_per_lang: parallel sentences per language in the collection (``None``: all).
        batch_size: prompts (or prompt+option sequences) per forward pass, on both sides.
        scoring_transfer, scoring_localization: items of ``lang`` scored in the scoring bench.
        lang: the LOC language of the scoring, sweep and reference benches.
        sweep_transfer, sweep_localization: eval-split items of ``lang`` in the sweep.
        sweep_layer_stride: sweep every n-th layer (1: every layer).
        alphas: relative alphas of the sweep (added norm = alpha x mean residual norm).
        overhead_prompts: prompts in the steering-overhead batch.
        overhead_min_repeats: at least this many rounds for the (cheap) overhead bench.
        reference_pairs: English/``lang`` parallel pairs for the independent EN-vector check.
    """

    langs: tuple[str, ...] = PROBE_LANGUAGES
    parallel_split: Split | None = "fit"
    parallel_per_lang: int | None = 32
    batch_size: int = 16
    lang: str = "ko"
    scoring_transfer: int = 8
    scoring_localization: int = 8
    sweep_transfer: int = 2
    sweep_localization: int = 4
    sweep_layer_stride: int = 1
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0)
    overhead_prompts: int = 16
    overhead_min_repeats: int = 9
    reference_pairs: int = 32

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes()
QUICK = Sizes(
    parallel_per_lang=4,
    batch_size=8,
    scoring_transfer=2,
    scoring_localization=2,
    sweep_transfer=1,
    sweep_localization=2,
    sweep_layer_stride=6,
    overhead_prompts=8,
    overhead_min_repeats=2,
    reference_pairs=8,
)
