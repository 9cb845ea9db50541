"""The redesigned code reproduces the numbers committed before it (figures/*_results.json at 002e6c4).

Those results were made with probe set 1.0 (frozen in tests/fixtures/probe_v1), alpha relative
to the mean residual norm, the first N groups/items of dev and eval, and percentile-bootstrap
intervals; the new code offers each of these as an option. Reduced grids (Korean, layers 6 and
12, alpha 0.1; all seven languages for the geometry) keep the tests to about a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_steer.data.jsonl import load_jsonl
from lens_steer.data.records import ProbeSet
from lens_steer.data.targets import target_items
from lens_steer.evaluate.points import ScoringSettings
from lens_steer.evaluate.sweep import SweepSettings, layer_sweep
from lens_steer.geometry import (
    collect_localization,
    collect_parallel,
    en_vectors,
    loc_vectors,
    perpendicularity_table,
)
from lens_steer.geometry.mixing import language_silhouette, translation_retrieval
from lens_steer.residuals import ResidualSet

FIXTURES = Path(__file__).parent / "fixtures"
COMMITTED = json.loads((FIXTURES / "legacy" / "committed_results.json").read_text())
TOLERANCE = 1e-6


def probe_v1() -> ProbeSet:
    parts = [
        load_jsonl(FIXTURES / "probe_v1" / f"{name}.jsonl")
        for name in ("transfer", "localization", "parallel")
    ]
    return ProbeSet(
        transfer=[i for p in parts for i in p.transfer],
        localization=[i for p in parts for i in p.localization],
        parallel=[i for p in parts for i in p.parallel],
        version="1.0",
    )


def first_n(probe: ProbeSet, limit: int) -> ProbeSet:
    """Version 1's --limit: the first N groups (by name) / items (by id) of dev and eval."""

    def groups(items):
        kept = set()
        for split in ("dev", "eval"):
            names = sorted({i.group for i in items if i.split == split})[:limit]
            kept |= {(split, g) for g in names}
        return [i for i in items if i.split == "fit" or (i.split, i.group) in kept]

    counts: dict = {}
    local = []
    for item in sorted(probe.localization, key=lambda i: i.id):
        key = (item.lang, item.split)
        if item.split == "fit" or counts.get(key, 0) < limit:
            local.append(item)
            counts[key] = counts.get(key, 0) + (item.split != "fit")
    return ProbeSet(groups(probe.transfer), local, groups(probe.parallel), probe.version)


def _close(score, expected) -> None:
    for name in ("value", "ci_low", "ci_high"):
        assert abs(getattr(score, name) - expected[name]) <= TOLERANCE, (name, score, expected)
    assert score.n == expected["n"]


@pytest.mark.slow
def test_committed_steering_sweep_numbers_are_reproduced(gemma):
    committed = COMMITTED["steering"]["ko"]
    probe = first_n(probe_v1(), committed["settings"]["limit"])
    parallel = collect_parallel(gemma, probe, ["en", "ko", "id"], split="fit", show_progress=False)
    localization = collect_localization(
        gemma, probe, ["ko", "id"], split="fit", show_progress=False
    )
    vectors = {
        "en": en_vectors(None, probe, ["ko"], parallel=parallel)["ko"],
        "loc": loc_vectors(None, probe, ["ko"], localization=localization)["ko"],
    }
    norms = parallel.where_lang("ko").mean_norm().tolist()
    items = target_items(probe, __import__("lens_steer").parse_target("ko"))
    sweep = layer_sweep(
        gemma, items, vectors,
        SweepSettings(layers=(6, 12), alphas=(0.1,), alpha_mode="relative", n_controls=0),
        ScoringSettings(metrics=("transfer_mc", "localization"), calibrations=("sum",),
                        interval="bootstrap", n_bootstrap=1000, seed=0),
        split="eval", reference_norms=norms, show_progress=False,
    )  # fmt: skip
    unsteered = sweep.points["unsteered"].scores
    _close(unsteered["transfer_mc"], committed["unsteered"]["transfer"])
    _close(unsteered["localization"], committed["unsteered"]["localization"])
    for expected in committed["points"]:
        key = f"{expected['kind']}@{expected['layer']}:{expected['alpha']:g}"
        scores = sweep.points[key].scores
        _close(scores["transfer_mc"], expected["transfer"])
        _close(scores["localization"], expected["localization"])
        assert norms[expected["layer"]] == pytest.approx(expected["reference_norm"], rel=1e-5)
        vector = vectors[expected["kind"]].at_layer(expected["layer"])
        assert float(vector.double().norm()) == pytest.approx(expected["vector_norm"], rel=1e-5)


@pytest.mark.slow
def test_committed_geometry_numbers_are_reproduced(gemma):
    committed = COMMITTED["geometry"]
    settings = committed["settings"]
    langs = settings["langs"]
    loc_langs = [lang for lang in langs if lang != "en"]
    probe = probe_v1()
    parallel = collect_parallel(gemma, probe, langs, split="fit", show_progress=False)
    localization = collect_localization(gemma, probe, loc_langs, split="fit", show_progress=False)
    boot = settings["n_bootstrap"]
    en = en_vectors(None, probe, loc_langs, parallel=parallel, n_bootstrap=boot, seed=0)
    loc = loc_vectors(None, probe, loc_langs, localization=localization, n_bootstrap=boot, seed=1)
    scale = ResidualSet.concat([parallel, *localization.values()])
    rows = {(r["lang"], r["layer"]): r for r in perpendicularity_table(en, loc, scale=scale)}
    for expected in committed["perpendicularity"]:
        row = rows[(expected["lang"], expected["layer"])]
        for name in ("cos_raw", "ci_low", "ci_high", "cos_std", "std_ci_low", "std_ci_high"):
            # The committed table rounds to 6 decimals; allow that rounding plus float noise.
            assert abs(row[name] - expected[name]) <= 2e-6, (
                expected["lang"],
                expected["layer"],
                name,
            )
    for expected in committed["mixing"]:
        layer, standardized = expected["layer"], expected["standardized"]
        pairs = translation_retrieval(parallel, layer, standardize=standardized)
        retrieval = sum(pairs.values()) / len(pairs)
        silhouette = language_silhouette(parallel, layer, standardize=standardized)
        assert abs(retrieval - expected["retrieval_accuracy"]) <= 2e-6
        assert abs(silhouette - expected["silhouette"]) <= 2e-6
