"""Findings as JSON values and the directional rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lens_steer.stats import Finding, directional_verdict


@pytest.mark.parametrize(
    ("intervals", "verdict"),
    [
        ([(0.1, 0.4), (0.01, 0.2)], "supported"),
        ([(0.1, 0.4), (-0.5, -0.1)], "refuted"),
        ([(0.1, 0.4), (0.0, 0.2)], "inconclusive"),  # a bound at 0 is not above 0
        ([(-0.1, 0.4)], "inconclusive"),
    ],
)
def test_directional_rule(intervals, verdict):
    assert directional_verdict(intervals) == verdict


def test_directional_rule_needs_a_comparison():
    with pytest.raises(ValueError):
        directional_verdict([])


def test_finding_to_json_is_plain_with_nan_as_none():
    finding = Finding(
        id="f",
        claim="c",
        prediction="p",
        statistic="s",
        estimate=np.float64(0.3),
        ci_low=0.1,
        ci_high=0.5,
        n=12,
        verdict="supported",
        detectable_effect=math.nan,
        confidence=0.95,
        details={"per_layer": np.array([0.1, np.nan]), "count": np.int64(3)},
    )
    obj = finding.to_json()
    assert json.loads(json.dumps(obj, allow_nan=False)) == {
        "id": "f",
        "claim": "c",
        "prediction": "p",
        "statistic": "s",
        "estimate": 0.3,
        "ci_low": 0.1,
        "ci_high": 0.5,
        "n": 12,
        "verdict": "supported",
        "detectable_effect": None,
        "confidence": 0.95,
        "margin": None,
        "details": {"per_layer": [0.1, None], "count": 3},
    }
