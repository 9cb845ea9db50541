"""Metrics as plug-ins: every built-in metric's rows against hand-computed option log-probs.

No model here: each test builds a target's items by hand, asks the metric for its task, feeds it
option log-probs chosen by hand (:class:`ScoredTask`) and compares every margin, outcome,
reference and flag with the same numbers computed directly with numpy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lens_steer.data.languages import Target
from lens_steer.data.records import BlendAnswer, BlendItem, FactItem, LocalizationItem, TransferItem
from lens_steer.data.targets import TargetItems
from lens_steer.data.templates import neutral_prompt, qa_prompt
from lens_steer.evaluate.metrics import (
    CALIBRATIONS,
    ItemScore,
    MetricTask,
    NoItems,
    ScoredTask,
    calibrated,
    metric,
    metrics,
    option_margin,
    register_metric,
    split_variant,
    variant_name,
)
from lens_steer.evaluate.scores import gap_score
from lens_steer.evaluate.scoring import OptionScores

KO = Target("ko", "South_Korea")


def lse(values) -> float:
    return float(np.log(np.sum(np.exp(np.asarray(values, dtype=float)))))


def expected_margins(values, right: int) -> tuple[float, float, float]:
    """The three numbers of a choice row, computed independently of ``option_margin``."""
    values = list(values)
    others = values[:right] + values[right + 1 :]
    return (
        values[right] - lse(others),
        values[right] - max(others),
        1.0 if values[right] > max(others) else 0.0,
    )


def scores(item_id: str, logprobs, n_tokens=None) -> OptionScores:
    return OptionScores(item_id, tuple(logprobs), tuple(n_tokens or (1,) * len(logprobs)))


def fact(group: str, lang: str, split: str, options: tuple[str, ...]) -> FactItem:
    return FactItem(
        f"{group}-{lang}",
        group,
        lang,
        split,
        "geo",
        f"Capital {group} {lang} is",
        options[0],
        options[1:],
    )


def localization(index: int, split: str = "dev") -> LocalizationItem:
    return LocalizationItem(
        f"loc-{index}",
        f"g{index}",
        "ko",
        split,
        "food",
        f"Our food {index} is",
        f"Korea food {index} is",
        f"local{index}",
        f"us{index}",
        f"Our food {index} is",
        f"Korea food {index} is",
        f"local{index}",
        f"us{index}",
    )


def answer(text: str, english: str, votes: int) -> BlendAnswer:
    return BlendAnswer(text, english, votes, (text,), (english,))


def blend(item_id: str, answers, us_answers=(), split: str = "dev") -> BlendItem:
    return BlendItem(
        item_id,
        "ko",
        split,
        "South_Korea",
        "food",
        "Korea question?",
        "Our question?",
        "Question about South Korea?",
        tuple(answers),
        tuple(us_answers),
        "Question about us?",
    )


# --- helpers of the module ------------------------------------------------------------------


def test_option_margin_matches_a_direct_computation():
    values = np.array([-1.0, -2.5, -0.5, -4.0])
    for right in range(4):
        assert option_margin(values, right) == pytest.approx(expected_margins(values, right))


def test_option_margin_ties_are_not_wins_and_one_option_has_no_margin():
    assert option_margin(np.array([-1.0, -1.0]), 0)[2] == 0.0
    margin, margin_max, outcome = option_margin(np.array([-1.0]), 0)
    assert math.isnan(margin) and math.isnan(margin_max) and outcome == 1.0


def test_calibrations_sum_per_token_and_pmi():
    option = scores("x", (-4.0, -3.0), (4, 1))
    np.testing.assert_allclose(calibrated(option, "sum"), [-4.0, -3.0])
    np.testing.assert_allclose(calibrated(option, "per_token"), [-1.0, -3.0])
    np.testing.assert_allclose(calibrated(option, "pmi", [-5.0, -1.0]), [1.0, -2.0])
    with pytest.raises(ValueError, match="x: PMI calibration needs the neutral scores"):
        calibrated(option, "pmi")


def test_variant_names_round_trip():
    assert variant_name("transfer", "sum") == "transfer"
    assert variant_name("transfer", "pmi") == "transfer:pmi"
    for calibration in CALIBRATIONS:
        assert split_variant(variant_name("localization", calibration)) == (
            "localization",
            calibration,
        )


# --- transfer (fact cloze v2, counted on facts known in English) -----------------------------

TRANSFER_OPTIONS = {
    "g1": ("Paris", "Rome", "Oslo", "Lima"),
    "g2": ("Rome", "Paris", "Bern", "Kyiv"),
    "g3": ("Oslo", "Lima", "Bern", "Cairo"),
}


def transfer_items() -> TargetItems:
    facts = [
        fact(group, lang, "dev", opts)
        for group, opts in TRANSFER_OPTIONS.items()
        for lang in ("ko", "en")
    ]
    facts.append(fact("g4", "ko", "dev", ("Tokyo", "Lima", "Rome", "Oslo")))  # no English version
    facts.append(fact("g5", "ko", "eval", ("Tokyo", "Lima", "Rome", "Oslo")))
    facts.append(fact("g5", "en", "eval", ("Tokyo", "Lima", "Rome", "Oslo")))
    return TargetItems(KO, facts=tuple(facts))


# English reference scores: g1 and g3 are known (answer strictly best), g2 is not.
ENGLISH = {
    "g1": scores("g1-en", (-1.0, -2.0, -3.0, -4.0), (2, 1, 1, 2)),
    "g2": scores("g2-en", (-2.0, -1.0, -3.0, -4.0)),
    "g3": scores("g3-en", (-0.5, -3.0, -2.0, -6.0), (1, 2, 2, 1)),
}
STEERED = {
    "g1": scores("g1-ko", (-2.0, -1.0, -3.0, -4.0), (4, 1, 1, 2)),
    "g3": scores("g3-ko", (-0.1, -3.0, -2.5, -4.0), (2, 3, 1, 1)),
}
NEUTRAL = {
    " Paris": -3.0,
    " Rome": -2.0,
    " Oslo": -6.0,
    " Lima": -1.0,
    " Bern": -4.0,
    " Kyiv": -5.0,
    " Cairo": -0.25,
}


def scored_transfer(task: MetricTask) -> ScoredTask:
    keep = task.keep(list(ENGLISH.values()))
    requests = [STEERED[g] if k else None for g, k in zip(TRANSFER_OPTIONS, keep, strict=True)]
    neutral = [scores("n", [NEUTRAL[o] for o in request.options]) for request in task.neutral]
    return ScoredTask(requests, list(ENGLISH.values()), neutral)


def test_transfer_task_asks_in_the_target_language_and_references_in_english():
    task = metric("transfer").build(transfer_items(), "dev")
    assert [r.id for r in task.requests] == ["g1-ko", "g2-ko", "g3-ko"]  # g4: no English version
    assert task.requests[0].prompt == "Capital g1 ko is"
    assert task.requests[0].options == (" Paris", " Rome", " Oslo", " Lima")
    assert [r.id for r in task.reference] == ["g1-en", "g2-en", "g3-en"]
    (neutral,) = task.neutral
    assert neutral.prompt == neutral_prompt("ko") == "답:"
    assert neutral.options == tuple(NEUTRAL)  # every distinct option once, in first-seen order


def test_transfer_keeps_only_facts_known_in_english():
    task = metric("transfer").build(transfer_items(), "dev")
    assert task.keep(list(ENGLISH.values())) == [True, False, True]
    rows = task.rows(scored_transfer(task), "sum")
    assert [(row.item, row.included) for row in rows] == [
        ("g1-ko", True),
        ("g2-ko", False),
        ("g3-ko", True),
    ]
    excluded = rows[1]
    assert math.isnan(excluded.margin) and math.isnan(excluded.outcome)
    # The reference is still reported for an excluded item (it is why it was excluded).
    assert excluded.reference == pytest.approx(expected_margins([-2.0, -1.0, -3.0, -4.0], 0)[0])
    assert excluded.reference_outcome == 0.0


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_transfer_rows_match_hand_computed_margins(calibration):
    task = metric("transfer").build(transfer_items(), "dev")
    rows = {row.item: row for row in task.rows(scored_transfer(task), calibration)}
    for group in ("g1", "g3"):
        steered, english = STEERED[group], ENGLISH[group]
        values = np.asarray(steered.logprobs)
        ref_values = np.asarray(english.logprobs)
        if calibration == "per_token":
            values = values / np.asarray(steered.n_tokens)
            ref_values = ref_values / np.asarray(english.n_tokens)
        if calibration == "pmi":
            values = values - np.asarray([NEUTRAL[" " + o] for o in TRANSFER_OPTIONS[group]])
        margin, margin_max, outcome = expected_margins(values, 0)
        reference, _, reference_outcome = expected_margins(ref_values, 0)
        row = rows[f"{group}-ko"]
        assert row.margin == pytest.approx(margin, abs=1e-12)
        assert row.margin_max == pytest.approx(margin_max, abs=1e-12)
        assert row.outcome == outcome
        assert row.reference == pytest.approx(reference, abs=1e-12)
        assert row.reference_outcome == reference_outcome == 1.0  # known in English
        assert row.included


def test_per_token_calibration_changes_the_winner_by_hand():
    # g1 in L: summed, "Rome" (-1) beats "Paris" (-2); per token, Paris (-2/4) beats Rome (-1/1).
    task = metric("transfer").build(transfer_items(), "dev")
    scored = scored_transfer(task)
    assert task.rows(scored, "sum")[0].outcome == 0.0
    assert task.rows(scored, "per_token")[0].outcome == 1.0


def test_transfer_without_items_is_not_measured():
    with pytest.raises(NoItems, match="ko:South_Korea has no fact"):
        metric("transfer").build(TargetItems(KO), "dev")
    only_local = TargetItems(KO, facts=(fact("g9", "ko", "dev", ("a", "b", "c", "d")),))
    with pytest.raises(NoItems, match="with an English version"):
        metric("transfer").build(only_local, "dev")


def test_transfer_gap_reads_the_same_rows_and_closes_the_english_gap():
    """transfer_gap: the share of the English-minus-L margin gap a steering closes (by hand)."""
    task = metric("transfer_gap").build(transfer_items(), "dev")
    assert metric("transfer_gap").aggregate == "gap"
    base = task.rows(scored_transfer(task), "sum")
    better = dict(STEERED)
    better["g1"] = scores("g1-ko", (-1.0, -2.0, -3.0, -4.0), (4, 1, 1, 2))  # now equals English
    keep = task.keep(list(ENGLISH.values()))
    requests = [better[g] if k else None for g, k in zip(TRANSFER_OPTIONS, keep, strict=True)]
    steered = task.rows(ScoredTask(requests, list(ENGLISH.values()), ()), "sum")
    by_item = {row.item: row for row in base}
    gains, gaps = [], []
    for row in steered:
        if not row.included:
            continue
        gap = row.reference - by_item[row.item].margin
        if gap >= 0.1:
            gains.append(row.margin - by_item[row.item].margin)
            gaps.append(gap)
    score = gap_score(steered, base, "transfer_gap", n_bootstrap=200)
    assert score.value == pytest.approx(sum(gains) / sum(gaps))
    assert score.n == len(gaps) == 1  # g3 is better in L than in English: no gap to close
    assert score.settings["n_skipped"] == 1


# --- transfer_mc (v1 multiple choice) --------------------------------------------------------


def mc(group: str, lang: str, right: int) -> TransferItem:
    return TransferItem(
        f"{group}-{lang}",
        group,
        lang,
        "eval",
        "chem",
        f"Symbol {group}?",
        ("Au", "Ag", "Fe"),
        right,
    )


MC_NEUTRAL = {" Au": -1.0, " Ag": -2.5, " Fe": -0.25}


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_transfer_mc_scores_the_answer_index_against_the_english_reference(calibration):
    items = TargetItems(
        KO, transfer=(mc("t1", "ko", 2), mc("t1", "en", 2), mc("t2", "ko", 0), mc("t2", "en", 0))
    )
    task = metric("transfer_mc").build(items, "eval")
    assert task.requests[0].prompt == qa_prompt("Symbol t1?", "ko")
    assert [r.id for r in task.reference] == ["t1-en", "t2-en"]
    (neutral_request,) = task.neutral
    assert neutral_request.options == tuple(MC_NEUTRAL)
    steered = [scores("t1-ko", (-3.0, -2.0, -1.0), (3, 1, 1)), scores("t2-ko", (-1.0, -0.5, -2.0))]
    english = [scores("t1-en", (-2.0, -3.0, -1.5), (1, 1, 3)), scores("t2-en", (-0.1, -2.0, -3.0))]
    neutral = [scores("n", tuple(MC_NEUTRAL.values()))]
    rows = task.rows(ScoredTask(steered, english, neutral), calibration)
    for row, s, e, right in zip(rows, steered, english, (2, 0), strict=True):
        values, ref = s.values(calibration == "per_token"), e.values(calibration == "per_token")
        if calibration == "pmi":
            values = values - np.asarray(list(MC_NEUTRAL.values()))
        assert (row.margin, row.margin_max, row.outcome) == pytest.approx(
            expected_margins(values, right)
        )
        assert row.reference == pytest.approx(expected_margins(ref, right)[0])
        assert row.reference_outcome == expected_margins(ref, right)[2]
        assert row.included  # no English-known filter for the v1 questions


def test_transfer_mc_without_english_versions_has_no_reference():
    task = metric("transfer_mc").build(TargetItems(KO, transfer=(mc("t1", "ko", 1),)), "eval")
    assert task.reference == ()
    (row,) = task.rows(ScoredTask([scores("t1-ko", (-2.0, -1.0, -3.0))], (), ()), "sum")
    assert row.outcome == 1.0 and math.isnan(row.reference) and math.isnan(row.reference_outcome)


# --- localization (hand-written items) -------------------------------------------------------


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_localization_rows_local_against_us_with_the_explicit_reference(calibration):
    items = TargetItems(KO, localization=(localization(1), localization(2)))
    task = metric("localization").build(items, "dev")
    assert [r.prompt for r in task.requests] == ["Our food 1 is", "Our food 2 is"]
    assert task.requests[0].options == (" local1", " us1")
    assert [r.prompt for r in task.reference] == ["Korea food 1 is", "Korea food 2 is"]
    implicit = [scores("loc-1", (-3.0, -1.0), (3, 1)), scores("loc-2", (-1.0, -2.0), (1, 4))]
    explicit = [scores("loc-1", (-1.0, -2.0), (3, 1)), scores("loc-2", (-3.0, -2.5), (1, 4))]
    (neutral_request,) = task.neutral
    neutral_values = {" local1": -4.0, " us1": -1.0, " local2": -2.0, " us2": -0.5}
    neutral = [scores("n", [neutral_values[o] for o in neutral_request.options])]
    rows = task.rows(ScoredTask(implicit, explicit, neutral), calibration)
    for row, s, e in zip(rows, implicit, explicit, strict=True):
        values = s.values(calibration == "per_token")
        if calibration == "pmi":
            values = values - np.asarray(
                [neutral_values[o] for o in (" local" + s.id[-1], " us" + s.id[-1])]
            )
        ref = e.values(calibration == "per_token")
        assert (row.margin, row.margin_max, row.outcome) == pytest.approx(
            expected_margins(values, 0)
        )
        assert row.reference == pytest.approx(ref[0] - ref[1])
        assert row.reference_outcome == float(ref[0] > ref[1])


def test_localization_reference_outcome_is_whether_the_explicit_prompt_localizes():
    items = TargetItems(KO, localization=(localization(1), localization(2)))
    task = metric("localization").build(items, "dev")
    implicit = [scores("loc-1", (-3.0, -1.0)), scores("loc-2", (-1.0, -2.0))]
    explicit = [scores("loc-1", (-1.0, -2.0)), scores("loc-2", (-3.0, -2.5))]
    neutral = [scores("n", (-1.0,) * 4)]
    rows = task.rows(ScoredTask(implicit, explicit, neutral), "sum")
    assert [row.reference_outcome for row in rows] == [1.0, 0.0]
    assert [row.outcome for row in rows] == [0.0, 1.0]


def test_localization_without_items_in_the_split_is_not_measured():
    items = TargetItems(KO, localization=(localization(1, split="fit"),))
    with pytest.raises(NoItems, match="no built-in localization items in split 'dev'"):
        metric("localization").build(items, "dev")


# --- BLEnD: blend_localization and gap_closure -----------------------------------------------


def blend_items() -> TargetItems:
    kimchi, rice = answer("kimchi", "kimchi", 5), answer("bap", "rice", 3)
    burger = answer("beogeo", "hamburger", 1)
    us = answer("hamburger", "hamburger", 4)
    return TargetItems(
        KO,
        blend=(
            blend("b1", [kimchi, rice, burger], [us]),  # local kimchi vs US hamburger
            blend("b2", [answer("hamburger", "hamburger", 4), rice], [us]),  # they agree: skipped
            blend("b3", [answer("bap", "rice", 1), answer("guk", "soup", 2)], ()),  # no US answer
        ),
    )


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_blend_localization_compares_the_local_and_the_us_answer_in_the_local_language(
    calibration,
):
    task = metric("blend_localization").build(blend_items(), "dev")
    (request,) = task.requests
    assert request.id == "blend-South_Korea-b1"
    assert request.prompt == qa_prompt("Our question?", "ko")
    assert request.options == (" kimchi", " beogeo")
    assert task.reference[0].prompt == qa_prompt("Korea question?", "ko")
    implicit = scores("b1", (-2.0, -3.0), (2, 3))
    explicit = scores("b1", (-1.0, -4.0), (2, 3))
    scored = ScoredTask([implicit], [explicit], [scores("n", (-1.5, -0.5))])
    (row,) = task.rows(scored, calibration)
    expected = {"sum": -2.0 + 3.0, "per_token": -1.0 + 1.0, "pmi": (-2.0 + 1.5) - (-3.0 + 0.5)}
    reference = {"sum": 3.0, "per_token": -0.5 + 4.0 / 3, "pmi": 3.0}
    assert row.margin == pytest.approx(expected[calibration])
    assert row.outcome == float(expected[calibration] > 0)
    assert row.reference == pytest.approx(reference[calibration])
    assert row.reference_outcome == 1.0


def test_blend_localization_without_usable_items_is_not_measured():
    items = TargetItems(KO, blend=blend_items().blend[1:])
    with pytest.raises(NoItems, match="BLEnD items with a local and a US answer"):
        metric("blend_localization").build(items, "dev")


@pytest.mark.parametrize("calibration", ["sum", "per_token"])
def test_gap_closure_rows_are_the_top_voted_gold_answer_implicit_and_explicit(calibration):
    task = metric("gap_closure").build(blend_items(), "dev")
    assert task.calibrations == ("sum", "per_token")  # one option: PMI would cancel nothing
    # The most-voted gold answer, whatever its position in the file.
    assert [r.options for r in task.requests] == [(" kimchi",), (" hamburger",), (" guk",)]
    assert [r.prompt for r in task.requests][0] == qa_prompt("Our question?", "ko")
    assert [r.prompt for r in task.reference][0] == qa_prompt("Korea question?", "ko")
    implicit = [
        scores("b1", (-6.0,), (3,)),
        scores("b2", (-2.0,), (1,)),
        scores("b3", (-5.0,), (2,)),
    ]
    explicit = [
        scores("b1", (-3.0,), (3,)),
        scores("b2", (-2.05,), (1,)),
        scores("b3", (-1.0,), (2,)),
    ]
    rows = task.rows(ScoredTask(implicit, explicit, ()), calibration)
    per_token = calibration == "per_token"
    assert [row.margin for row in rows] == pytest.approx(
        [-2.0, -2.0, -2.5] if per_token else [-6.0, -2.0, -5.0]
    )
    assert [row.reference for row in rows] == pytest.approx(
        [-1.0, -2.05, -0.5] if per_token else [-3.0, -2.05, -1.0]
    )
    assert all(math.isnan(row.outcome) for row in rows)


def test_gap_score_of_gap_closure_rows_against_a_hand_computation():
    base = [
        ItemScore("b1", -6.0, reference=-3.0),
        ItemScore("b2", -2.0, reference=-2.05),
        ItemScore("b3", -5.0, reference=-1.0),
    ]
    steered = [
        ItemScore("b1", -4.5, reference=-3.0),
        ItemScore("b2", 0.0, reference=-2.05),
        ItemScore("b3", -4.0, reference=-1.0),
    ]
    # Gaps: b1 3.0, b2 -0.05 (skipped: nothing to close), b3 4.0. Gains: 1.5 and 1.0.
    score = gap_score(steered, base, "gap_closure", min_gap=0.1, n_bootstrap=300)
    assert score.value == pytest.approx((1.5 + 1.0) / (3.0 + 4.0))
    assert score.n == 2 and score.settings["n_skipped"] == 1
    assert score.ci_low <= score.value <= score.ci_high
    assert score.margin == pytest.approx((1.5 + 1.0) / 2)  # mean gain in nats


# --- the registry -----------------------------------------------------------------------------


def test_builtin_metrics_are_registered_with_their_axes():
    assert {
        "transfer",
        "transfer_gap",
        "transfer_mc",
        "localization",
        "blend_localization",
        "gap_closure",
    } <= set(metrics())
    axes = {
        name: metric(name).axis
        for name in ("transfer", "transfer_mc", "localization", "gap_closure")
    }
    assert axes == {
        "transfer": "transfer",
        "transfer_mc": "transfer",
        "localization": "localization",
        "gap_closure": "localization",
    }
    assert metric("transfer:pmi") is metric("transfer")


def test_unknown_metric_names_the_registered_ones():
    with pytest.raises(
        ValueError, match=r"unknown metric 'nope'; registered: transfer.*register_metric"
    ):
        metric("nope")


def test_register_metric_validates_and_refuses_silent_redefinition():
    def build(items, split):  # pragma: no cover - never built
        raise NoItems("none")

    def other(items, split):  # pragma: no cover - never built
        raise NoItems("none")

    with pytest.raises(ValueError, match="without ':'"):
        register_metric("a:b", build, axis="transfer")
    with pytest.raises(ValueError, match="aggregate must be 'share', 'gap' or 'gain'"):
        register_metric("test_metric_x", build, axis="transfer", aggregate="mean")  # type: ignore[arg-type]
    spec = register_metric("test_metric_x", build, axis="transfer", description="d")
    assert register_metric("test_metric_x", build, axis="transfer").build is build  # idempotent
    with pytest.raises(ValueError, match="already registered"):
        register_metric("test_metric_x", other, axis="transfer")
    replaced = register_metric("test_metric_x", other, axis="localization", replace=True)
    assert metric("test_metric_x") == replaced and replaced.axis == "localization"
    assert spec.description == "d"
