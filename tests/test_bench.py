"""The benchmark harness (``python -m bench``): medians, ratios, targets, result keys, agreement.

Nothing here times anything or asserts a speed: the clock is faked where timing logic is
tested, and the benchmarks run on the tiny model only to check that both sides of each
comparison compute the same numbers and that the results carry every key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench import collect, overhead, reference, scoring, sweep  # noqa: E402
from bench.__main__ import _parse, merge_results, run_benchmarks  # noqa: E402
from bench._config import QUICK, Sizes  # noqa: E402
from bench._data import bench_probe_set, common_groups, parallel_selection  # noqa: E402
from bench._fallback import fallback_probe_set  # noqa: E402
from bench._flops import (  # noqa: E402
    FlopModel,
    collect_ceiling,
    shared_scoring_ceiling,
    sweep_ceiling,
)
from bench._timing import (  # noqa: E402
    Timed,
    alternate,
    paired_ratios,
    peak_rss,
    ratios_json,
    speedup,
    tensor_bytes,
)
from bench.report import (  # noqa: E402
    DOC_END,
    DOC_START,
    HEADLINE_KEYS,
    TARGETS,
    check_targets,
    embed_in_doc,
    to_markdown,
)
from lens_steer.data.records import ParallelItem, ProbeSet  # noqa: E402
from lens_steer.evaluate.engine import score_steerings  # noqa: E402
from lens_steer.evaluate.scoring import (  # noqa: E402
    ScoringRequest,
    prepare_batches,
)
from lens_steer.evaluate.shared import shared_prompt_chunks  # noqa: E402
from lens_steer.tokens import encode  # noqa: E402

TINY = Sizes(
    parallel_per_lang=2,
    batch_size=4,
    scoring_transfer=2,
    scoring_localization=2,
    sweep_transfer=1,
    sweep_localization=2,
    sweep_layer_stride=2,
    overhead_prompts=4,
    overhead_min_repeats=1,
    reference_pairs=3,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread for the tiny model: on a shared, loaded CPU two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeClock:
    """A clock that each side advances by a scripted duration; records the call order."""

    def __init__(self, durations: dict[str, list[float]]):
        self.now = 0.0
        self.durations = {name: list(values) for name, values in durations.items()}
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def side(self, name: str):
        def run() -> str:
            self.calls.append(name)
            self.now += self.durations[name].pop(0)
            return name

        return run


# --------------------------------------------------------------------------------------------
# Timing logic (fake clock) and memory probes.
# --------------------------------------------------------------------------------------------


def test_alternate_rotates_three_sides_through_every_slot():
    clock = FakeClock({name: [1.0] * 3 for name in "abc"})
    alternate({name: clock.side(name) for name in "abc"}, 3, clock=clock)
    assert "".join(clock.calls) == "abc" + "bca" + "cab"


def test_alternate_flips_the_order_every_round_and_keeps_each_sides_times():
    clock = FakeClock({"naive": [5.0, 9.0, 4.0], "ours": [1.0, 3.0, 2.0]})
    timed = alternate({"naive": clock.side("naive"), "ours": clock.side("ours")}, 3, clock=clock)
    assert clock.calls == ["naive", "ours", "ours", "naive", "naive", "ours"]
    assert timed["naive"].seconds == (5.0, 9.0, 4.0)
    assert timed["ours"].seconds == (1.0, 3.0, 2.0)
    assert timed["naive"].median == 5.0 and timed["ours"].median == 2.0
    assert timed["ours"].last == "ours"


def test_speedup_is_the_median_of_per_round_ratios_baseline_over_ours():
    naive, ours = Timed((5.0, 9.0, 4.0)), Timed((1.0, 3.0, 2.0))
    assert paired_ratios(naive, ours) == [5.0, 3.0, 2.0]
    assert speedup(naive, ours) == pytest.approx(3.0)
    assert ratios_json(naive, ours)["ratio_of_medians"] == pytest.approx(5.0 / 2.0)
    assert speedup(Timed((1.0, 2.0)), Timed((4.0, 4.0))) == pytest.approx((0.25 + 0.5) / 2)
    with pytest.raises(ValueError, match="no time"):
        speedup(Timed((1.0,)), Timed((0.0,)))
    with pytest.raises(ValueError, match="different number"):
        speedup(Timed((1.0, 2.0)), Timed((1.0,)))


def test_timed_json_has_median_min_max_and_repeats():
    assert Timed((3.0, 1.0, 2.0)).to_json() == {
        "median_s": 2.0,
        "min_s": 1.0,
        "max_s": 3.0,
        "seconds": [3.0, 1.0, 2.0],
        "repeats": 3,
    }


def test_alternate_refuses_zero_repeats_and_no_sides():
    with pytest.raises(ValueError, match="repeats"):
        alternate({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="no sides"):
        alternate({}, 1)


def test_tensor_bytes_counts_every_tensor_of_an_activation_cache(tiny_model):
    tokens = torch.tensor([encode(tiny_model, "Water boils")])
    logits, cache = tiny_model.run_with_cache(tokens)
    by_hand = sum(value.numel() * value.element_size() for value in cache.values())
    assert tensor_bytes(cache) == by_hand
    assert tensor_bytes({"a": [logits, (logits,)], "b": 3}) == 2 * logits.numel() * 4


def test_peak_rss_sees_a_large_allocation_made_inside_the_call():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak RSS reset needs Linux /proc/self/clear_refs")
    rss, out = peak_rss(lambda: float(torch.ones(64 * 2**20).sum()))  # 256 MiB of float32
    assert out == 64 * 2**20
    assert rss.delta_mib >= 200


def test_flop_model_counts_block_and_unembedding_weights_by_hand(tiny_model):
    flops = FlopModel.from_model(tiny_model)
    # W_Q, W_K, W_V, W_O: 4 x (32 x 32); gated MLP: 3 x (32 x 64); 2 FLOPs per weight.
    assert flops.block == 2 * (4 * 32 * 32 + 3 * 32 * 64)
    assert flops.unembed == 2 * 32 * tiny_model.cfg.d_vocab
    assert collect_ceiling(flops) == pytest.approx(1 + flops.unembed / (4 * flops.block))


def test_scoring_and_sweep_ceilings_follow_the_flop_model_by_hand(tiny_model):
    requests = [ScoringRequest("Water boils at", (" one hundred", " ten"))]
    (batch,) = prepare_batches(tiny_model, requests, batch_size=2)
    flops = FlopModel(n_layers=4, block=10.0, unembed=100.0)
    tokens = batch.tokens.tokens.numel()
    full = tokens * (4 * 10.0 + 100.0)
    # Shared: the prompt once, then both options but their last tokens, right-padded.
    prompt = len(encode(tiny_model, "Water boils at"))
    long, short = (len(encode(tiny_model, o, prepend_bos=False)) for o in (" one hundred", " ten"))
    assert min(long, short) > 1
    chunks = shared_prompt_chunks(tiny_model, requests, batch_size=2)
    positions, picked = prompt + 2 * (max(long, short) - 1), long + short
    shared = positions * 40.0 + picked * 100.0
    assert shared_scoring_ceiling(flops, [batch], chunks) == pytest.approx(full / shared)
    # Clean pass; then unsteered + layer 1 (blocks 2, 3 rerun) + layer 3 (nothing rerun).
    ours = positions * 40.0 + 3 * picked * 100.0 + positions * 2 * 10.0
    assert sweep_ceiling(flops, [batch], chunks, [None, 1, 3]) == pytest.approx(3 * full / ours)


# --------------------------------------------------------------------------------------------
# Targets and the report.
# --------------------------------------------------------------------------------------------


def test_targets_compare_in_the_right_direction_and_skip_missing_values():
    results = dict.fromkeys(HEADLINE_KEYS)
    results |= {"collect_speedup": 2.0, "scoring_speedup": 2.9, "sweep_max_abs_diff": 2e-4}
    results |= {"steer_overhead": 1.05, "reference_cosine_min": 0.9995}
    met = {row["key"]: row["met"] for row in check_targets(results)}
    assert met == {
        "collect_speedup": True,  # bound included
        "collect_memory_ratio": None,  # not run
        "scoring_speedup": False,
        "sweep_speedup": None,
        "sweep_max_abs_diff": False,  # an upper bound
        "steer_overhead": True,
        "reference_cosine_min": True,
    }
    assert [t.key for t in TARGETS] == list(HEADLINE_KEYS)


def test_embed_in_doc_replaces_only_the_text_between_the_markers():
    doc = f"# Title\n{DOC_START}\nold table\n{DOC_END}\nHow to rerun.\n"
    assert (
        embed_in_doc(doc, "| new |\n")
        == f"# Title\n{DOC_START}\n| new |\n{DOC_END}\nHow to rerun.\n"
    )
    with pytest.raises(ValueError, match="markers"):
        embed_in_doc("# no markers\n", "| new |")


# --------------------------------------------------------------------------------------------
# Data selection.
# --------------------------------------------------------------------------------------------


def test_parallel_selection_keeps_only_groups_present_in_every_language():
    items = [
        ParallelItem("g1-en", "g1", "en", "fit", "a"),
        ParallelItem("g1-ko", "g1", "ko", "fit", "b"),
        ParallelItem("g2-en", "g2", "en", "fit", "c"),  # no Korean: dropped
        ParallelItem("g3-ko", "g3", "ko", "eval", "d"),
        ParallelItem("g3-en", "g3", "en", "eval", "e"),
    ]
    probe = ProbeSet([], [], items)
    assert common_groups(items, ("en", "ko")) == ["g1", "g3"]
    chosen = parallel_selection(probe, ("ko", "en"), 5)
    assert [item.id for item in chosen] == ["g1-ko", "g3-ko", "g1-en", "g3-en"]
    assert [i.id for i in parallel_selection(probe, ("en", "ko"), 5, split="fit")] == [
        "g1-en",
        "g1-ko",
    ]


def test_fallback_probe_set_is_parallel_in_seven_languages():
    probe = fallback_probe_set()
    assert len(common_groups(probe.parallel, QUICK.langs)) == 16
    assert {item.lang for item in (*probe.transfer, *probe.localization)} == {"ko"}
    assert all(0 <= item.answer < len(item.options) for item in probe.transfer)
    source = bench_probe_set(TINY)[1]
    assert source["source"] in {"bench fallback", "lens_steer built-in probe set"}


# --------------------------------------------------------------------------------------------
# Both sides of each comparison agree (tiny model).
# --------------------------------------------------------------------------------------------


def test_naive_collection_matches_collect_residuals_and_a_single_prompt_run(tiny_model):
    prompts = ["Water boils", "우리나라의 수도는 서울", "Jakarta", "پایتخت کشور ما"]
    naive, peak_held, all_held = collect.naive_collect(tiny_model, prompts, batch_size=3)
    ours = collect.ours_collect(tiny_model, prompts, batch_size=3)
    torch.testing.assert_close(naive, ours, rtol=1e-5, atol=1e-5)
    _, cache = tiny_model.run_with_cache(torch.tensor([encode(tiny_model, prompts[1])]))
    alone = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(4)])
    torch.testing.assert_close(ours[1], alone, rtol=1e-4, atol=1e-4)
    assert all_held >= peak_held - tensor_bytes(naive) > 0


def test_naive_scores_match_the_engine_and_a_hand_computed_logprob(tiny_model):
    requests = [
        ScoringRequest("The capital of our country is", (" Seoul", " Washington DC")),
        ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴")),
    ]
    naive = scoring.naive_scores(tiny_model, requests, batch_size=3)
    ours = score_steerings(
        tiny_model, requests, {"plain": None}, batch_size=3, show_progress=False
    )["plain"]
    assert scoring.max_abs_diff(naive, ours) < 1e-4
    prompt = encode(tiny_model, requests[0].prompt)
    option = encode(tiny_model, requests[0].options[1], prepend_bos=False)
    logprobs = tiny_model(torch.tensor([prompt + option]))[0].log_softmax(-1)
    by_hand = sum(float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(option))
    assert naive[0].logprobs[1] == pytest.approx(by_hand, abs=1e-4)


def test_naive_sweep_matches_the_fast_engine_and_layer_sweep_scores(tiny_model):
    out = sweep.run(tiny_model, TINY, repeats=1)
    details = out["details"]
    assert out["max_abs_diff"] < 1e-4
    assert details["score_mismatches"] == []
    assert details["layers"] == [0, 2]
    assert details["n_steerings"] == 1 + 2 * len(TINY.alphas)


def test_overhead_steering_changes_the_logits_and_leaves_no_hook(tiny_model):
    out = overhead.run(tiny_model, None, TINY, repeats=1)
    assert out["details"]["steered_max_logit_change"] > 0
    assert out["details"]["hooks_left_attached"] == 0
    assert [t["layer"] for t in out["details"]["steering"]["terms"]] == [1, 2]
    assert "hf" not in out["details"]


def _tiny_hf_gemma():
    from conftest import make_tiny_tokenizer
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = make_tiny_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval(), tokenizer


def test_hook_fallback_and_steering_vectors_agree_with_hidden_states():
    hf_model, tokenizer = _tiny_hf_gemma()
    pairs = [("Water boils", "물은 끓는다"), ("The sun", "해는 매일 아침"), ("Seoul", "서울")]
    ours = reference.hook_vectors(hf_model, tokenizer, pairs, [0, 1], batch_size=2)
    by_hand = {0: torch.zeros(32), 1: torch.zeros(32)}
    with torch.no_grad():
        for positive, negative in pairs:
            for sign, text in ((1, positive), (-1, negative)):
                hidden = hf_model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
                for layer in (0, 1):  # hidden_states[l + 1] is block l's output (not the last)
                    by_hand[layer] += sign * hidden.hidden_states[layer + 1][0, -1] / len(pairs)
    for layer in (0, 1):
        torch.testing.assert_close(ours[layer], by_hand[layer], rtol=1e-4, atol=1e-5)
    pytest.importorskip("steering_vectors")
    theirs = reference.library_vectors(hf_model, tokenizer, pairs, [0, 1], batch_size=2)
    for layer in (0, 1):
        torch.testing.assert_close(theirs[layer], by_hand[layer], rtol=1e-4, atol=1e-5)
    cos, rel = reference.cosines(torch.stack([ours[0], ours[1]]), theirs, [0, 1])
    assert min(cos) > 0.9999 and max(rel) < 1e-3


# --------------------------------------------------------------------------------------------
# The runner: every headline key, JSON-clean results, the markdown table, the options.
# --------------------------------------------------------------------------------------------


def test_run_benchmarks_fills_the_headline_keys_of_what_ran(tiny_model):
    names = ["collect", "scoring", "overhead"]
    results = run_benchmarks(
        names, tiny_model, sizes=TINY, repeats=1, measure_rss=False, log=lambda *a, **k: None
    )
    ran = {"collect_speedup", "collect_memory_ratio", "scoring_speedup", "steer_overhead"}
    for key in HEADLINE_KEYS:
        assert (results[key] is not None) == (key in ran), key
        assert results[key] is None or isinstance(results[key], float)
    assert set(results["benchmarks"]) == set(names)
    assert results["benchmarks"]["collect"]["memory_basis"] == "held_bytes"
    assert results["benchmarks"]["collect"]["max_relative_diff"] < 1e-5
    assert results["benchmarks"]["scoring"]["max_abs_diff"] < 1e-4
    json.dumps(results, allow_nan=False)
    markdown = to_markdown(results | {"settings": {"wall_s": 1.0}})
    for key in HEADLINE_KEYS:
        assert f"`{key}`" in markdown
    assert "not run" in markdown


def test_merge_keeps_earlier_benchmarks_not_rerun_and_rechecks_targets():
    previous = dict.fromkeys(HEADLINE_KEYS) | {"collect_speedup": 3.0, "steer_overhead": 1.3}
    previous |= {
        "benchmarks": {"collect": {"x": 1}, "overhead": {"x": 2}},
        "settings": {"git": "a"},
    }
    new = dict.fromkeys(HEADLINE_KEYS) | {"steer_overhead": 1.02}
    new |= {"benchmarks": {"overhead": {"x": 3}}, "settings": {"git": "b"}}
    merged = merge_results(previous, new)
    assert merged["collect_speedup"] == 3.0 and merged["steer_overhead"] == 1.02
    assert merged["benchmarks"]["overhead"] == {"x": 3}
    assert merged["benchmarks"]["collect"]["x"] == 1
    met = {row["key"]: row["met"] for row in merged["targets"]}
    assert met["steer_overhead"] is True and met["collect_speedup"] is True
    assert merged["settings"]["merged"] == {"benchmarks": ["collect"], "from_run": {"git": "a"}}


def test_run_benchmarks_refuses_unknown_names_and_reference_without_hf(tiny_model):
    with pytest.raises(ValueError, match="Unknown benchmark"):
        run_benchmarks(["speed"], tiny_model)
    with pytest.raises(ValueError, match="transformers model"):
        run_benchmarks(["reference"], tiny_model)


def test_cli_options_parse_only_repeats_and_out(tmp_path):
    args = _parse(["--quick", "--only", "sweep", "--only", "collect", "--repeats", "2"])
    assert args.quick and args.only == ["sweep", "collect"] and args.repeats == 2
    assert _parse(["--out", str(tmp_path / "r.json")]).out == tmp_path / "r.json"
    with pytest.raises(SystemExit):
        _parse(["--only", "nothing"])
