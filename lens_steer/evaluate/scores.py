"""Transfer, localization and gap-closure scores with percentile bootstrap intervals over items.

Definitions (SPEC §2):

* **transfer**: multiple-choice accuracy. An item counts as correct when the right option
  scores *strictly* above every other option; a tie counts as wrong, so a model that gives all
  options the same score gets 0, not 1/k.
* **localization**: the share of items whose local answer scores *strictly* above the US-default
  answer (ties count as not localized).
* **gap closure** (data with gold local answers, such as BLEnD): for the top-voted gold answer
  (ties: first in file order), ``gap = logp_explicit - logp_implicit`` is what naming the country
  adds, and ``gain = logp_steered_implicit - logp_implicit`` what the intervention adds. Items
  whose gap is below ``min_gap`` nats have nothing to close and are skipped (their number is in
  ``settings["n_skipped"]``). The score is the ratio of sums ``sum(gain) / sum(gap)`` over the
  kept items: items weigh by their gap, and no per-item clipping is needed.

Options are scored by summed continuation log-probability, or by its mean per token with
``normalize=True``. Intervals resample items with replacement (``n_bootstrap`` draws from
``numpy.random.default_rng(seed)``) and take percentiles of the statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from transformer_lens import HookedTransformer

from lens_steer.data.records import BlendItem, LocalizationItem, Split, TransferItem
from lens_steer.data.templates import (
    blend_continuations,
    blend_prompt,
    localization_continuations,
    localization_prompt,
    option_continuation,
    transfer_prompt,
)
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest, score_options

if TYPE_CHECKING:
    from lens_steer.steering import Steering

Variant = Literal["implicit", "explicit", "english_query"]
VARIANTS: tuple[Variant, ...] = ("implicit", "explicit", "english_query")
_Item = TypeVar("_Item", TransferItem, LocalizationItem, BlendItem)


@dataclass(frozen=True)
class Score:
    """A score with its bootstrap interval and the settings that produced it."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    metric: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Score:
        return cls(**obj)


# ---------------------------------------------------------------------------------------------
# Scores from option log-probs (no model): what the tests pin by hand.
# ---------------------------------------------------------------------------------------------


def bootstrap_interval(
    per_item: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over items.

    Args:
        per_item: one row per item (``[item]`` or ``[item, k]``).
        statistic: maps resamples ``[sample, item, ...]`` to one value per sample ``[sample]``.
        n_bootstrap: resamples; 0 gives a zero-width interval at the point estimate.
        seed: seed of the local ``numpy.random.default_rng``.
        confidence: central mass of the interval.

    Example:
        >>> bootstrap_interval(np.array([1.0, 0.0, 1.0, 1.0]), lambda s: s.mean(axis=1))  # doctest: +SKIP
        (0.25, 1.0)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    point = float(statistic(per_item[None])[0])
    if n_bootstrap == 0:
        return point, point
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_item), size=(n_bootstrap, len(per_item)))
    samples = np.asarray(statistic(per_item[draws]), dtype=np.float64)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _mean(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1)


def _ratio_of_sums(samples: np.ndarray) -> np.ndarray:
    return samples[..., 0].sum(axis=1) / samples[..., 1].sum(axis=1)


def _score(
    per_item: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    metric: str,
    settings: dict[str, Any],
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> Score:
    if len(per_item) == 0:
        raise ValueError(f"{metric}: no items to score (settings: {settings})")
    value = float(statistic(per_item[None])[0])
    low, high = bootstrap_interval(
        per_item, statistic, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence
    )
    full = {**settings, "n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence}
    return Score(value, low, high, len(per_item), metric, full)


def _strict_wins(
    option_scores: Sequence[OptionScores], answers: Sequence[int], normalize: bool
) -> np.ndarray:
    """1.0 where the given option scores strictly above every other option, else 0.0."""
    if len(option_scores) != len(answers):
        raise ValueError(f"{len(option_scores)} scored items but {len(answers)} answers")
    wins = []
    for scores, answer in zip(option_scores, answers, strict=True):
        values = scores.values(normalize)
        if not 0 <= answer < len(values):
            raise ValueError(f"{scores.id}: answer index {answer} outside {len(values)} options")
        others = np.delete(values, answer)
        wins.append(float(others.size == 0 or values[answer] > others.max()))
    return np.asarray(wins)


def transfer_accuracy(
    option_scores: Sequence[OptionScores],
    answers: Sequence[int],
    *,
    normalize: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Multiple-choice accuracy: the right option strictly above all others (ties are wrong).

    Example:
        >>> transfer_accuracy([OptionScores("q", (-1.0, -2.0), (1, 1))], [0]).value
        1.0
    """
    correct = _strict_wins(option_scores, answers, normalize)
    extra = {"normalize": normalize, **(settings or {})}
    return _score(correct, _mean, "transfer_accuracy", extra, n_bootstrap, seed, confidence)


def localization_share(
    option_scores: Sequence[OptionScores],
    *,
    normalize: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Share of items whose option 0 (local answer) scores strictly above option 1 (US answer).

    Example:
        >>> localization_share([OptionScores("q", (-1.0, -2.0), (1, 1))]).value
        1.0
    """
    for scores in option_scores:
        if len(scores.logprobs) != 2:
            raise ValueError(
                f"{scores.id}: localization needs (local, us) options, got {len(scores.logprobs)}"
            )
    localized = _strict_wins(option_scores, [0] * len(option_scores), normalize)
    extra = {"normalize": normalize, **(settings or {})}
    return _score(localized, _mean, "localization_share", extra, n_bootstrap, seed, confidence)


def gap_closure_from_logprobs(
    steered: Sequence[float],
    implicit: Sequence[float],
    explicit: Sequence[float],
    *,
    min_gap: float = 0.1,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    settings: dict[str, Any] | None = None,
) -> Score:
    """Share of the explicit-minus-implicit log-prob gap that steering closes (ratio of sums).

    Example:
        >>> gap_closure_from_logprobs([-3.0, -2.0], [-4.0, -4.0], [-2.0, -2.0]).value
        0.75
    """
    steered_a, implicit_a, explicit_a = (
        np.asarray(x, dtype=np.float64) for x in (steered, implicit, explicit)
    )
    if not steered_a.shape == implicit_a.shape == explicit_a.shape:
        raise ValueError(
            f"gap closure needs as many steered ({steered_a.size}), implicit ({implicit_a.size}) "
            f"and explicit ({explicit_a.size}) log-probs"
        )
    gap = explicit_a - implicit_a
    keep = gap >= min_gap
    if steered_a.size and not keep.any():
        raise ValueError(f"gap closure: no item has an explicit-implicit gap >= {min_gap} nats")
    per_item = np.stack([steered_a - implicit_a, gap], axis=-1)[keep]
    extra = {
        "min_gap": min_gap,
        "aggregation": "ratio_of_sums",
        "n_skipped": int((~keep).sum()),
        **(settings or {}),
    }
    return _score(per_item, _ratio_of_sums, "gap_closure", extra, n_bootstrap, seed, confidence)


# ---------------------------------------------------------------------------------------------
# From items to scoring requests.
# ---------------------------------------------------------------------------------------------


def select_split(items: Sequence[_Item], split: Split | None, what: str) -> list[_Item]:
    """The items of one split (all when ``split`` is None); an empty result is an error."""
    chosen = [item for item in items if split is None or item.split == split]
    if not chosen:
        langs = sorted({item.lang for item in items})
        raise ValueError(
            f"No {what} items in split {split!r} (given {len(items)} items, languages {langs})"
        )
    return chosen


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown prompt variant {variant!r}; expected one of {VARIANTS}")


def transfer_requests(
    items: Sequence[TransferItem],
    variant: Variant = "implicit",
    *,
    english_items: Sequence[TransferItem] | None = None,
) -> tuple[list[ScoringRequest], list[int]]:
    """Scoring requests and answer indices of multiple-choice items.

    ``implicit`` and ``explicit`` both ask the question in the item's language (transfer items
    name no culture); ``english_query`` asks its English version, found by ``group`` in
    ``english_items``.
    """
    _check_variant(variant)
    asked = list(items)
    if variant == "english_query":
        if english_items is None:
            raise ValueError("variant 'english_query' needs english_items (the English versions)")
        by_group = {item.group: item for item in english_items if item.lang == "en"}
        missing = [item.id for item in items if item.group not in by_group]
        if missing:
            raise ValueError(f"No English version (lang 'en', same group) for items {missing}")
        asked = [by_group[item.group] for item in items]
    requests = [
        ScoringRequest(
            transfer_prompt(item),
            tuple(option_continuation(option, item.lang) for option in item.options),
            item.id,
        )
        for item in asked
    ]
    return requests, [item.answer for item in asked]


_LOCALIZATION_FORMS = {
    "implicit": "implicit",
    "explicit": "explicit",
    "english_query": "english_implicit",
}


def localization_requests(
    items: Sequence[LocalizationItem], variant: Variant = "implicit"
) -> list[ScoringRequest]:
    """``(local, us)`` scoring requests; ``english_query`` asks the English implicit form."""
    _check_variant(variant)
    form = _LOCALIZATION_FORMS[variant]
    return [
        ScoringRequest(
            localization_prompt(item, form),  # type: ignore[arg-type]
            localization_continuations(item, form),  # type: ignore[arg-type]
            item.id,
        )
        for item in items
    ]


def _settings(
    model: HookedTransformer,
    items: Sequence[TransferItem] | Sequence[LocalizationItem] | Sequence[BlendItem],
    split: Split | None,
    steering: Steering | None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "model_id": model.cfg.model_name,
        "split": split,
        "langs": sorted({item.lang for item in items}),
        "steering": None if steering is None else steering.to_json(),
        **extra,
    }


def _hooks(steering: Steering | None) -> list:
    return [] if steering is None or steering.is_null else steering.fwd_hooks()


# ---------------------------------------------------------------------------------------------
# Scores of a model, a steering or a prompt variant.
# ---------------------------------------------------------------------------------------------


def transfer_score(
    model: HookedTransformer,
    items: Sequence[TransferItem],
    steering: Steering | None = None,
    *,
    variant: Variant = "implicit",
    english_items: Sequence[TransferItem] | None = None,
    split: Split | None = "eval",
    normalize: bool = False,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> Score:
    """Multiple-choice accuracy of culture-independent items, steered or not.

    Args:
        model: the model.
        items: transfer items (filtered to ``split``).
        steering: applied with hooks during every forward pass; None for the plain model.
        variant: ``"english_query"`` asks the English versions (``english_items``) instead.
        english_items: pool of English items, matched by ``group``.
        split: which split to score; None scores all given items.
        normalize: score options by mean log-prob per token instead of the sum.
        batch_size, n_bootstrap, seed, show_progress: see :func:`score_options` and
            :func:`bootstrap_interval`.

    Example:
        >>> transfer_score(model, probe.transfer, split="eval").value  # doctest: +SKIP
        0.62
    """
    chosen = select_split(items, split, "transfer")
    requests, answers = transfer_requests(chosen, variant, english_items=english_items)
    scores = score_options(
        model,
        requests,
        fwd_hooks=_hooks(steering),
        batch_size=batch_size,
        show_progress=show_progress,
    )
    settings = _settings(model, chosen, split, steering, variant=variant)
    return transfer_accuracy(
        scores, answers, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed, settings=settings
    )


def localization_score(
    model: HookedTransformer,
    items: Sequence[LocalizationItem],
    steering: Steering | None = None,
    *,
    variant: Variant = "implicit",
    split: Split | None = "eval",
    normalize: bool = False,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> Score:
    """Share of culture-dependent items where the local answer beats the US default.

    ``variant`` picks the prompt: ``implicit`` (the study's setting), ``explicit`` (the
    country is named) or ``english_query`` (the implicit question in English, English answers).

    Example:
        >>> localization_score(model, probe.localization, variant="explicit").value  # doctest: +SKIP
        0.9
    """
    chosen = select_split(items, split, "localization")
    requests = localization_requests(chosen, variant)
    scores = score_options(
        model,
        requests,
        fwd_hooks=_hooks(steering),
        batch_size=batch_size,
        show_progress=show_progress,
    )
    settings = _settings(model, chosen, split, steering, variant=variant)
    return localization_share(
        scores, normalize=normalize, n_bootstrap=n_bootstrap, seed=seed, settings=settings
    )


def _top_voted(item: BlendItem, form: Literal["implicit", "explicit"]) -> str:
    continuations = blend_continuations(item, form)
    if not continuations:
        raise ValueError(f"{item.id}: BLEnD item has no gold answer to score")
    return continuations[0]


def gap_closure(
    model: HookedTransformer,
    items: Sequence[BlendItem],
    steering: Steering | None,
    *,
    split: Split | None = "eval",
    min_gap: float = 0.1,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> Score:
    """Fraction of the explicit-vs-implicit gap of the top-voted gold answer a steering closes.

    Example:
        >>> gap_closure(model, load_blend(root, "South_Korea"), steering).value  # doctest: +SKIP
        0.31
    """
    chosen = select_split(items, split, "BLEnD")

    def requests(form: Literal["implicit", "explicit"]) -> list[ScoringRequest]:
        return [
            ScoringRequest(blend_prompt(item, form), (_top_voted(item, form),), item.id)
            for item in chosen
        ]

    def gold(form: Literal["implicit", "explicit"], hooks: list) -> list[float]:
        scored = score_options(
            model,
            requests(form),
            fwd_hooks=hooks,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        return [score.logprobs[0] for score in scored]

    settings = _settings(model, chosen, split, steering, answer="top_voted")
    return gap_closure_from_logprobs(
        gold("implicit", _hooks(steering)),
        gold("implicit", []),
        gold("explicit", []),
        min_gap=min_gap,
        n_bootstrap=n_bootstrap,
        seed=seed,
        settings=settings,
    )
