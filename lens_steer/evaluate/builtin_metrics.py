"""The built-in metrics of the study (registered when :mod:`lens_steer.evaluate` is imported).

* ``transfer``: fact cloze (probe set v2) in L, counted on the facts the model answers right in
  English (``included``); the English margin is each item's reference;
* ``transfer_gap``: the same facts, as the share of the English-minus-L margin gap closed;
* ``transfer_mc``: the 4-option questions of probe set v1;
* ``localization``: hand-written culture items, local answer vs the US answer;
* ``blend_localization``: BLEnD questions, local answer vs the US annotators' answer;
* ``gold_logprob``: BLEnD gold answers, the mean change of the top-voted local answer's
  log-probability under an intervention (nats; the study's default localization axis);
* ``gap_closure``: the same rows as the share of the explicit-vs-implicit log-prob gap closed
  (ratio of sums over items whose gap is at least ``min_gap``; unstable when naming the country
  barely changes the gold answer's log-probability, as on Gemma 3 270M).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from lens_steer.data.blend_probe import blend_localization_item
from lens_steer.data.records import Split
from lens_steer.data.targets import TargetItems
from lens_steer.data.templates import (
    blend_continuations,
    blend_prompt,
    fact_prompt,
    localization_continuations,
    localization_prompt,
    neutral_prompt,
    option_continuation,
    transfer_prompt,
)
from lens_steer.evaluate.metrics import (
    NAN,
    Calibration,
    ItemScore,
    MetricTask,
    NoItems,
    ScoredTask,
    calibrated,
    option_margin,
    register_metric,
)
from lens_steer.evaluate.scoring import OptionScores, ScoringRequest


def _neutral_requests(requests: Sequence[ScoringRequest], lang: str, name: str) -> tuple:
    """One neutral-prompt request holding every distinct option of ``requests``."""
    options = tuple(dict.fromkeys(option for request in requests for option in request.options))
    return (ScoringRequest(neutral_prompt(lang), options, f"{name}:neutral:{lang}"),)


def _neutral_lookup(neutral: Sequence[ScoringRequest], scored: ScoredTask) -> dict[str, float]:
    """``{option continuation: log-prob after the neutral prompt}``."""
    lookup: dict[str, float] = {}
    for request, scores in zip(neutral, scored.neutral, strict=True):
        lookup.update(zip(request.options, scores.logprobs, strict=True))
    return lookup


def _choice_rows(
    requests: Sequence[ScoringRequest],
    answers: Sequence[int],
    scored: ScoredTask,
    calibration: Calibration,
    *,
    reference_answers: Sequence[int] | None = None,
    included: Sequence[bool] | None = None,
    neutral_requests: Sequence[ScoringRequest] = (),
) -> list[ItemScore]:
    """Rows of choice metrics: the right option against the others, with the reference margin."""
    neutral = _neutral_lookup(neutral_requests, scored) if calibration == "pmi" else {}
    rows = []
    for index, (request, answer) in enumerate(zip(requests, answers, strict=True)):
        scores = scored.requests[index]
        keep = True if included is None else included[index]
        reference, reference_outcome = NAN, NAN
        if scored.reference and reference_answers is not None:
            ref_scores = scored.reference[index]
            ref_values = calibrated(
                ref_scores, "per_token" if calibration == "per_token" else "sum"
            )
            reference, _, reference_outcome = option_margin(ref_values, reference_answers[index])
        if not keep or scores is None:  # not scored: excluded by the task's filter
            rows.append(ItemScore(request.id, NAN, NAN, NAN, reference, False, reference_outcome))
            continue
        neutral_values = [neutral[o] for o in request.options] if calibration == "pmi" else None
        margin, margin_max, outcome = option_margin(
            calibrated(scores, calibration, neutral_values), answer
        )
        rows.append(
            ItemScore(request.id, margin, margin_max, outcome, reference, True, reference_outcome)
        )
    return rows


def _nonempty(items: list, what: str, items_of: TargetItems, split: Split) -> list:
    if not items:
        raise NoItems(f"{items_of.target.key} has no {what} items in split {split!r}")
    return items


def _choice_task(
    requests: Sequence[ScoringRequest],
    answers: Sequence[int],
    *,
    lang: str,
    name: str,
    description: str,
    reference: Sequence[ScoringRequest] = (),
    reference_answers: Sequence[int] | None = None,
    keep: Callable[[Sequence[OptionScores]], list[bool]] | None = None,
) -> MetricTask:
    """A task whose items are choices: the right option (``answers``) against the others.

    ``reference`` requests (scored once, unsteered) give each item's reference margin with
    ``reference_answers``; ``keep`` decides from them which items count.
    """
    neutral = _neutral_requests(requests, lang, name)

    def rows(scored: ScoredTask, calibration: Calibration) -> list[ItemScore]:
        included = keep(scored.reference) if keep is not None else None
        return _choice_rows(
            requests, answers, scored, calibration, reference_answers=reference_answers,
            included=included, neutral_requests=neutral,
        )  # fmt: skip

    return MetricTask(
        tuple(requests),
        rows,
        reference=tuple(reference),
        neutral=neutral,
        keep=keep,
        description=description,
    )


def _option_requests(
    questions: Sequence[Any], prompt: Callable[[Any], str]
) -> list[ScoringRequest]:
    return [
        ScoringRequest(prompt(q), tuple(option_continuation(o, q.lang) for o in q.options), q.id)
        for q in questions
    ]


def _known_in_english(reference_scores: Sequence[OptionScores]) -> list[bool]:
    """Facts whose English answer scores strictly above its distractors."""
    return [option_margin(s.values(), 0)[2] == 1.0 for s in reference_scores]


def transfer_facts(items: TargetItems, split: Split) -> MetricTask:
    """Fact cloze (v2) in L, counted on the facts the model answers right in English."""
    facts = _nonempty(items.of("facts", split), "fact (transfer v2)", items, split)
    english = items.english_versions("facts")
    facts = [fact for fact in facts if fact.group in english]
    _nonempty(facts, "fact items with an English version", items, split)
    zeros = [0] * len(facts)  # the answer is always option 0
    return _choice_task(
        _option_requests(facts, fact_prompt), zeros, lang=items.target.lang, name="transfer",
        reference=_option_requests([english[f.group] for f in facts], fact_prompt),
        reference_answers=zeros, keep=_known_in_english,
        description="fact cloze accuracy in L on the facts known in English (answer strictly "
        "above its distractors)",
    )  # fmt: skip


def transfer_mc(items: TargetItems, split: Split) -> MetricTask:
    """The v1 multiple-choice questions in L (all items; English margin as the reference)."""
    questions = _nonempty(items.of("transfer", split), "multiple-choice transfer", items, split)
    english = items.english_versions("transfer")
    has_english = all(q.group in english for q in questions)
    versions = [english[q.group] for q in questions] if has_english else []
    return _choice_task(
        _option_requests(questions, transfer_prompt), [q.answer for q in questions],
        lang=items.target.lang, name="transfer_mc",
        reference=_option_requests(versions, transfer_prompt),
        reference_answers=[q.answer for q in versions] if has_english else None,
        description="4-option accuracy (right option strictly above the others)",
    )  # fmt: skip


def _localization_requests(chosen: Sequence[Any], form: Any) -> list[ScoringRequest]:
    return [
        ScoringRequest(
            localization_prompt(item, form), localization_continuations(item, form), item.id
        )
        for item in chosen
    ]


def localization_builtin(
    items: TargetItems, split: Split, *, name: str = "localization"
) -> MetricTask:
    """Hand-written culture items: local answer vs US answer, implicit prompt."""
    chosen = _nonempty(items.of("localization", split), "built-in localization", items, split)
    zeros = [0] * len(chosen)  # (local, US): the local answer is option 0
    return _choice_task(
        _localization_requests(chosen, "implicit"), zeros, lang=items.target.lang, name=name,
        reference=_localization_requests(chosen, "explicit"), reference_answers=zeros,
        description="share of implicit items whose local answer beats the US answer",
    )  # fmt: skip


def localization_blend(items: TargetItems, split: Split) -> MetricTask:
    """BLEnD items with both answers in L: local answer vs the US annotators' answer."""
    made = [blend_localization_item(item) for item in items.of("blend", split)]
    chosen = [item for item in made if not isinstance(item, str)]
    _nonempty(chosen, "BLEnD items with a local and a US answer", items, split)
    task = localization_builtin(
        TargetItems(items.target, localization=tuple(chosen)), split, name="blend_localization"
    )
    return replace(
        task, description="share of BLEnD implicit questions whose local answer beats the US answer"
    )


def gap_closure(items: TargetItems, split: Split, *, min_gap: float = 0.1) -> MetricTask:
    """BLEnD gold answers: log p(top-voted local answer | implicit), explicit as the reference."""
    chosen = [item for item in items.of("blend", split) if blend_continuations(item, "implicit")]
    _nonempty(chosen, "BLEnD items with a gold answer", items, split)
    requests = tuple(
        ScoringRequest(
            blend_prompt(item, "implicit"), (blend_continuations(item, "implicit")[0],), item.id
        )
        for item in chosen
    )
    reference = tuple(
        ScoringRequest(
            blend_prompt(item, "explicit"), (blend_continuations(item, "explicit")[0],), item.id
        )
        for item in chosen
    )

    def rows(scored: ScoredTask, calibration: Calibration) -> list[ItemScore]:
        out = []
        for index, request in enumerate(requests):
            value = float(calibrated(scored.requests[index], calibration)[0])
            ref = float(calibrated(scored.reference[index], calibration)[0])
            out.append(ItemScore(request.id, value, NAN, NAN, ref, True))
        return out

    return MetricTask(
        requests,
        rows,
        reference=reference,
        calibrations=("sum", "per_token"),
        description=f"share of the explicit-minus-implicit log-prob gap of the top-voted gold "
        f"answer closed (ratio of sums over items whose gap is >= {min_gap} nats)",
    )


register_metric(
    "transfer", transfer_facts, axis="transfer", needs=("facts",),
    description="fact cloze accuracy in L on facts known in English",
)  # fmt: skip
register_metric(
    "transfer_gap", transfer_facts, axis="transfer", aggregate="gap", needs=("facts",),
    description="facts known in English: share of the English-minus-L margin gap closed",
)  # fmt: skip
register_metric(
    "transfer_mc", transfer_mc, axis="transfer", needs=("transfer",),
    description="4-option multiple-choice accuracy (v1 questions)",
)  # fmt: skip
register_metric(
    "localization", localization_builtin, axis="localization", needs=("localization",),
    description="hand-written items: local answer beats the US answer",
)  # fmt: skip
register_metric(
    "blend_localization", localization_blend, axis="localization", needs=("blend",),
    description="BLEnD items: local answer beats the US annotators' answer",
)  # fmt: skip
register_metric(
    "gold_logprob", gap_closure, axis="localization", aggregate="gain", needs=("blend",),
    description="BLEnD: mean change of the top-voted gold local answer's log-probability against "
    "the unsteered model (nats)",
)  # fmt: skip
register_metric(
    "gap_closure", gap_closure, axis="localization", aggregate="gap", needs=("blend",),
    description="BLEnD: share of the explicit-implicit gap of the gold answer closed",
)  # fmt: skip
