"""Aggregate scores from per-item rows: intervals against scipy and formulas, legacy bootstrap, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from lens_steer.evaluate.metrics import ItemScore
from lens_steer.evaluate.scores import Score, bootstrap_interval, gap_score, share_score


def rows_of(outcomes, margins=None, included=None) -> list[ItemScore]:
    margins = margins if margins is not None else [1.0 if o else -1.0 for o in outcomes]
    included = included if included is not None else [True] * len(outcomes)
    return [
        ItemScore(f"i{index}", margin, outcome=float(outcome), included=keep)
        for index, (outcome, margin, keep) in enumerate(
            zip(outcomes, margins, included, strict=True)
        )
    ]


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval, written out from its formula."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact interval from beta quantiles."""
    alpha = 1 - confidence
    low = 0.0 if k == 0 else stats.beta.ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
    return float(low), float(high)


@pytest.mark.parametrize(("k", "n"), [(0, 12), (3, 12), (7, 20), (12, 12), (1, 1)])
def test_wilson_interval_matches_its_formula(k, n):
    score = share_score(rows_of([1] * k + [0] * (n - k)), "transfer")
    assert score.value == pytest.approx(k / n)
    assert (score.ci_low, score.ci_high) == pytest.approx(wilson(k, n), abs=1e-10)
    assert score.n == n and score.settings["interval"] == "wilson"


@pytest.mark.parametrize(("k", "n"), [(0, 12), (5, 12), (12, 12)])
def test_clopper_pearson_interval_matches_beta_quantiles(k, n):
    score = share_score(rows_of([1] * k + [0] * (n - k)), "transfer", interval="clopper_pearson")
    assert (score.ci_low, score.ci_high) == pytest.approx(clopper_pearson(k, n), abs=1e-10)


def test_intervals_do_not_collapse_at_twelve_of_twelve():
    rows = rows_of([1] * 12)
    for interval, low in (("wilson", 0.7575), ("clopper_pearson", 0.7354)):
        score = share_score(rows, "transfer", interval=interval)
        assert score.value == 1.0 and score.ci_high == pytest.approx(1.0)
        assert score.ci_low == pytest.approx(low, abs=1e-4)  # a real width, not [1, 1]
    none = share_score(rows_of([0] * 12), "transfer")
    assert none.ci_low == pytest.approx(0.0, abs=1e-12) and none.ci_high > 0.2


def old_percentile_bootstrap(
    values: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[float, float]:
    """Version 1's interval, written out again: resample items, take the 2.5/97.5 percentiles."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("seed", [0, 7])
def test_legacy_bootstrap_interval_equals_the_old_percentile_bootstrap(seed):
    outcomes = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1]
    score = share_score(
        rows_of(outcomes), "localization", interval="bootstrap", n_bootstrap=500, seed=seed
    )
    expected = old_percentile_bootstrap(np.asarray(outcomes, float), 500, seed)
    assert (score.ci_low, score.ci_high) == expected  # exactly: old results are reproduced
    assert (
        bootstrap_interval(
            np.asarray(outcomes, float), lambda s: s.mean(axis=1), n_bootstrap=500, seed=seed
        )
        == expected
    )


def test_bootstrap_interval_with_zero_resamples_is_the_point():
    values = np.array([1.0, 0.0, 1.0, 1.0])
    assert bootstrap_interval(values, lambda s: s.mean(axis=1), n_bootstrap=0) == (0.75, 0.75)
    with pytest.raises(ValueError, match="confidence must be in"):
        bootstrap_interval(values, lambda s: s.mean(axis=1), confidence=1.5)


def test_share_counts_included_items_only_and_reports_the_mean_margin():
    rows = rows_of([1, 0, 1, 0], margins=[2.0, -1.0, 0.5, -7.0], included=[True, True, True, False])
    score = share_score(rows, "transfer", n_bootstrap=300, settings={"layer": 3})
    assert score.value == pytest.approx(2 / 3) and score.n == 3
    assert score.settings["n_excluded"] == 1 and score.settings["layer"] == 3
    assert score.margin == pytest.approx((2.0 - 1.0 + 0.5) / 3)
    low, high = score.margin_ci
    assert low <= score.margin <= high


def test_share_needs_items_and_binary_outcomes():
    with pytest.raises(ValueError, match="transfer: no included items"):
        share_score(rows_of([1], included=[False]), "transfer")
    with pytest.raises(ValueError, match="needs a binary outcome"):
        share_score([ItemScore("a", 1.0)], "gap_closure")


def test_gap_score_is_a_ratio_of_sums_against_the_unsteered_rows():
    base = [
        ItemScore(f"i{k}", m, reference=r)
        for k, (m, r) in enumerate([(-5.0, -1.0), (-4.0, -2.0), (-3.0, -3.05), (-2.0, -2.5)])
    ]
    steered = [
        ItemScore(f"i{k}", m, reference=b.reference)
        for k, (m, b) in enumerate(zip([-3.0, -3.5, -1.0, 0.0], base, strict=True))
    ]
    score = gap_score(steered, base, "gap_closure", min_gap=0.1, n_bootstrap=300)
    # Gaps 4 and 2 (the other two are below min_gap); gains 2 and 0.5.
    assert score.value == pytest.approx((2.0 + 0.5) / (4.0 + 2.0))
    assert score.n == 2 and score.settings["n_skipped"] == 2
    assert score.settings["aggregation"] == "ratio_of_sums"
    assert score.ci_low <= score.value <= score.ci_high
    assert gap_score(base, base, "gap_closure").value == 0.0  # the unsteered model closes nothing


def test_gap_score_errors_name_the_problem():
    base = [ItemScore("a", -1.0, reference=-1.0)]
    with pytest.raises(ValueError, match="no item has a reference gap >= 0.1"):
        gap_score(base, base, "gap_closure")
    with pytest.raises(ValueError, match=r"no unsteered row for item\(s\) \['b'\]"):
        gap_score([ItemScore("b", 0.0, reference=1.0)], base, "gap_closure")


def test_score_json_round_trip_turns_nan_into_none_and_back():
    score = share_score(rows_of([1, 0, 1]), "transfer", settings={"layer": 6, "note": math.nan})
    text = json.dumps(score.to_json(), allow_nan=False)  # strict JSON: no NaN literal
    restored = Score.from_json(json.loads(text))
    assert restored.value == score.value and restored.margin_ci == score.margin_ci
    assert restored.settings["note"] is None and restored.settings["layer"] == 6

    undefined = Score(math.nan, math.nan, math.nan, 0, "gap_closure")
    obj = json.loads(json.dumps(undefined.to_json(), allow_nan=False))
    assert obj["value"] is None and obj["ci_low"] is None and obj["margin_ci"] is None
    back = Score.from_json(obj)
    assert math.isnan(back.value) and math.isnan(back.ci_low) and math.isnan(back.ci_high)


def test_item_score_json_keeps_every_field():
    row = ItemScore("a", 1.5, 0.5, 1.0, -0.25, False, 0.0)
    assert ItemScore(**row.to_json()) == row
