"""score_steerings and next_token_kl: the fast path against the naive path and both against
one-sequence-at-a-time forwards; routing; checkpoints that resume with any batch size.

Tolerance: option log-probs agree to 1e-4 nats (absolute) between paths, batchings and the
per-sequence reference; they differ by float32 rounding only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lens_steer.evaluate import engine, restart
from lens_steer.evaluate.engine import score_steerings
from lens_steer.evaluate.kl import next_token_kl
from lens_steer.evaluate.scoring import ScoringRequest
from lens_steer.steering import Steering, SteeringTerm, single_layer_steering, surgical_steering
from lens_steer.tokens import encode

pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model is ~8x faster on one thread

ATOL = 1e-4
D_MODEL = 32

# Prompts of 2 to 8 tokens; options of 1 to 6 tokens, so both the first-token shortcut and the
# option inputs over the prompt's cache are exercised, in chunks that pad.
REQUESTS = [
    ScoringRequest("The capital of our country is", (" Seoul", " Washington D.C.", " X"), "cap"),
    ScoringRequest("Water boils at", (" one hundred degrees", " 50"), "water"),
    ScoringRequest("La moneda de nuestro pais es el", (" euro", " peso"), "es"),
    ScoringRequest("x", (" y", " zz top"), "short"),
]


def _vector(seed: int) -> torch.Tensor:
    return torch.randn(D_MODEL, generator=torch.Generator().manual_seed(seed))


def _steerings() -> dict[str, Steering | None]:
    en, loc, direction = _vector(1), _vector(2), _vector(3)
    return {
        "plain": None,
        "null": surgical_steering(en, 1, 0.0, loc, 2, 0.0),
        "en@1": single_layer_steering(en, 1, 0.5, name="en"),
        "en@1 x2": single_layer_steering(en, 1, 1.0, name="en"),
        "en@1+loc@2": surgical_steering(en, 1, 0.5, loc, 2, 0.8),  # shares en@1's forward
        "loc@3 rel": single_layer_steering(loc, 3, 0.5, alpha_mode="relative", reference_norm=9.0),
        "scale@2": single_layer_steering(direction, 2, 3.0, operation="scale"),
        "project@0": single_layer_steering(direction, 0, 1.0, operation="project_out"),
        "add+project@1": Steering(
            (SteeringTerm(1, en, 2.0), SteeringTerm(1, en, 1.0, operation="project_out"))
        ),
    }


def reference_logprobs(model, request: ScoringRequest, steering: Steering | None) -> list[float]:
    """Each prompt+option alone, unpadded, full logits under the steering's ordinary hooks."""
    prompt = encode(model, request.prompt)
    values = []
    for option in request.options:
        continuation = encode(model, option, prepend_bos=False)
        tokens = torch.tensor([prompt + continuation])
        hooks = [] if steering is None else steering.fwd_hooks(prompt_length=len(prompt))
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        logprobs = torch.log_softmax(logits.float(), dim=-1)[0]
        values.append(
            sum(float(logprobs[len(prompt) + j - 1, t]) for j, t in enumerate(continuation))
        )
    return values


def _values(scores) -> torch.Tensor:
    return torch.tensor([value for score in scores for value in score.logprobs])


def _assert_same(first, second, atol: float = ATOL) -> None:
    for a, b in zip(first, second, strict=True):
        assert a.id == b.id and a.n_tokens == b.n_tokens
    torch.testing.assert_close(_values(first), _values(second), atol=atol, rtol=0)


@pytest.fixture
def naive(tiny_model):
    return score_steerings(
        tiny_model, REQUESTS, _steerings(), method="naive", batch_size=3, show_progress=False
    )


# ---------------------------------------------------------------- values


def test_naive_scores_equal_one_sequence_at_a_time_forwards(tiny_model, naive):
    for key, steering in _steerings().items():
        for request, score in zip(REQUESTS, naive[key], strict=True):
            expected = reference_logprobs(tiny_model, request, steering)
            torch.testing.assert_close(
                torch.tensor(score.logprobs), torch.tensor(expected), atol=ATOL, rtol=0
            )


def test_fast_equals_naive_for_add_scale_and_project_out_steerings(tiny_model, naive):
    fast = score_steerings(
        tiny_model, REQUESTS, _steerings(), method="fast", batch_size=3, show_progress=False
    )
    assert list(fast) == list(_steerings())
    for key in fast:
        _assert_same(fast[key], naive[key])
    # The steerings really change the scores; the null ones do not.
    plain = _values(fast["plain"])
    torch.testing.assert_close(_values(fast["null"]), plain, atol=0, rtol=0)
    for key in ("en@1", "en@1+loc@2", "loc@3 rel", "scale@2", "project@0", "add+project@1"):
        assert float((_values(fast[key]) - plain).abs().max()) > 1e-2, key


def test_token_counts_and_ids_follow_the_requests(tiny_model, naive):
    for request, score in zip(REQUESTS, naive["plain"], strict=True):
        assert score.id == request.id
        assert score.n_tokens == tuple(
            len(encode(tiny_model, option, prepend_bos=False)) for option in request.options
        )
    assert max(n for score in naive["plain"] for n in score.n_tokens) >= 4


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_scores_do_not_depend_on_batch_size(tiny_model, method):
    steerings = {"plain": None, "en@1+loc@2": _steerings()["en@1+loc@2"]}
    one = score_steerings(
        tiny_model, REQUESTS, steerings, method=method, batch_size=1, show_progress=False
    )
    many = score_steerings(
        tiny_model, REQUESTS, steerings, method=method, batch_size=64, show_progress=False
    )
    for key in steerings:
        _assert_same(one[key], many[key])


def test_steerings_stacked_along_the_batch_equal_those_run_one_by_one(tiny_model, monkeypatch):
    """A sweep of alphas at one layer finishes tiled; a tile of one steering gives the same."""
    sweep = {
        f"a={alpha}": single_layer_steering(_vector(4), 2, alpha) for alpha in (0.25, 0.5, 1, 2, 4)
    }
    tiled = score_steerings(tiny_model, REQUESTS, sweep, method="fast", show_progress=False)
    monkeypatch.setattr(restart, "_MAX_TILED_PROMPTS", 1)
    single = score_steerings(tiny_model, REQUESTS, sweep, method="fast", show_progress=False)
    for key in sweep:
        _assert_same(tiled[key], single[key])


# ---------------------------------------------------------------- routing


def test_auto_scores_a_prompt_positions_steering_the_naive_way(tiny_model, monkeypatch):
    prompt_only = single_layer_steering(_vector(5), 1, 2.0, positions="prompt", name="p")
    steerings = {"en@1": _steerings()["en@1"], "prompt": prompt_only}
    routed: list[list[str]] = []
    real = engine._naive_batch

    def spy(model, batch, chosen):
        routed.append(list(chosen))
        return real(model, batch, chosen)

    monkeypatch.setattr(engine, "_naive_batch", spy)
    auto = score_steerings(tiny_model, REQUESTS, steerings, batch_size=16, show_progress=False)
    assert routed and all(keys == ["prompt"] for keys in routed)
    for request, score in zip(REQUESTS, auto["prompt"], strict=True):
        expected = reference_logprobs(tiny_model, request, prompt_only)
        torch.testing.assert_close(
            torch.tensor(score.logprobs), torch.tensor(expected), atol=ATOL, rtol=0
        )
    everywhere = score_steerings(
        tiny_model,
        REQUESTS,
        {"all": single_layer_steering(_vector(5), 1, 2.0)},
        show_progress=False,
    )
    assert float((_values(auto["prompt"]) - _values(everywhere["all"])).abs().max()) > 1e-3
    with pytest.raises(
        ValueError, match=r"Steering 'prompt': term 'p' .*positions='prompt'.*'auto' or 'naive'"
    ):
        score_steerings(tiny_model, REQUESTS, steerings, method="fast", show_progress=False)


def test_generated_positions_score_with_the_options_as_generated_tokens(tiny_model):
    """Scoring an option is generating it: a "generated" term steers the option tokens only."""
    steering = single_layer_steering(_vector(6), 2, 3.0, positions="generated")
    (scores,) = score_steerings(
        tiny_model, REQUESTS, {"gen": steering}, show_progress=False
    ).values()
    for request, score in zip(REQUESTS, scores, strict=True):
        expected = reference_logprobs(tiny_model, request, steering)
        torch.testing.assert_close(
            torch.tensor(score.logprobs), torch.tensor(expected), atol=ATOL, rtol=0
        )


def test_other_hook_points_are_routed_to_the_naive_path(tiny_model):
    pre = single_layer_steering(_vector(7), 2, 1.0, point="resid_pre")
    post = single_layer_steering(_vector(7), 1, 1.0)  # resid_pre of block 2 is resid_post of 1
    out = score_steerings(tiny_model, REQUESTS, {"pre": pre, "post": post}, show_progress=False)
    _assert_same(out["pre"], out["post"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "fastest"}, "method must be 'auto', 'fast' or 'naive'"),
        ({"steerings": {}}, "no steerings"),
        ({"requests": []}, "no requests"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        (
            {"requests": [ScoringRequest("Hi", (" a", ""), "item-7")]},
            r"item-7: option 1 \(''\) tokenizes to nothing",
        ),
        ({"requests": [ScoringRequest("", (" a",), "item-8")]}, "item-8: empty prompt"),
        ({"requests": [ScoringRequest("Hi", (), "item-9")]}, "item-9: no options"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tiny_model, kwargs, match):
    args = {"requests": REQUESTS, "steerings": {"plain": None}, **kwargs}
    with pytest.raises(ValueError, match=match):
        score_steerings(
            tiny_model, args.pop("requests"), args.pop("steerings"), show_progress=False, **args
        )


# ---------------------------------------------------------------- checkpoints


def _many_requests(n: int = 20) -> list[ScoringRequest]:
    return [
        ScoringRequest(f"Item {'x' * (i % 5)} number {i} is", (" a", " bb cc"), f"r{i}")
        for i in range(n)
    ]


def _checkpoint_steerings() -> dict[str, Steering | None]:
    return {
        "plain": None,
        "en@1+loc@2": _steerings()["en@1+loc@2"],
        "scale@2": _steerings()["scale@2"],
    }


def _payloads(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_a_killed_run_resumes_with_a_smaller_batch_size_and_gives_the_same_numbers(
    tiny_model, tmp_path, monkeypatch
):
    """The defect: a run killed mid-way could not resume with a smaller --batch-size."""
    requests, steerings = _many_requests(), _checkpoint_steerings()
    checkpoint = tmp_path / "scores.jsonl"
    real = engine._fast_chunk
    chunks: list[int] = []

    def dies_after_one_chunk(model, chunk, settings):
        if chunks:
            raise KeyboardInterrupt  # the run is killed while scoring its second chunk
        chunks.append(len(chunk))
        return real(model, chunk, settings)

    monkeypatch.setattr(engine, "_fast_chunk", dies_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_steerings(
            tiny_model,
            requests,
            steerings,
            batch_size=16,
            checkpoint=checkpoint,
            show_progress=False,
        )
    (unit,) = _payloads(checkpoint)
    assert chunks == [16] and len(unit["payload"]) == 16

    resumed_sizes: list[int] = []

    def counting(model, chunk, settings):
        resumed_sizes.append(len(chunk))
        return real(model, chunk, settings)

    monkeypatch.setattr(engine, "_fast_chunk", counting)
    resumed = score_steerings(
        tiny_model, requests, steerings, batch_size=4, checkpoint=checkpoint, show_progress=False
    )
    assert resumed_sizes == [4]  # only the 4 unfinished requests ran, in one chunk of 4
    monkeypatch.setattr(engine, "_fast_chunk", real)
    uninterrupted = score_steerings(
        tiny_model, requests, steerings, batch_size=16, show_progress=False
    )
    for key in steerings:
        _assert_same(resumed[key], uninterrupted[key], atol=1e-5)
        for index, recorded in unit["payload"].items():  # finished before the kill: kept exactly
            assert list(resumed[key][int(index)].logprobs) == recorded[key]
    assert [record["unit"] for record in _payloads(checkpoint)] == [0, 1]


def test_a_finished_checkpoint_is_read_back_without_running_the_model(
    tiny_model, tmp_path, monkeypatch
):
    requests, steerings = REQUESTS, _checkpoint_steerings()
    checkpoint = tmp_path / "done.jsonl"
    first = score_steerings(
        tiny_model, requests, steerings, batch_size=2, checkpoint=checkpoint, show_progress=False
    )

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran although every request was recorded")

    monkeypatch.setattr(engine, "_fast_chunk", must_not_run)
    again = score_steerings(
        tiny_model, requests, steerings, batch_size=3, checkpoint=checkpoint, show_progress=False
    )
    for key in steerings:
        assert again[key] == first[key]


def test_a_torn_last_line_is_dropped_and_its_requests_rerun(tiny_model, tmp_path):
    requests, steerings = REQUESTS, {"plain": None}
    checkpoint = tmp_path / "torn.jsonl"
    first = score_steerings(
        tiny_model, requests, steerings, batch_size=2, checkpoint=checkpoint, show_progress=False
    )
    lines = checkpoint.read_text().splitlines(keepends=True)
    checkpoint.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # died mid-write
    again = score_steerings(
        tiny_model, requests, steerings, batch_size=4, checkpoint=checkpoint, show_progress=False
    )
    _assert_same(again["plain"], first["plain"], atol=1e-5)
    assert checkpoint.read_text().endswith("\n")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda r, s: ([*r[:-1], ScoringRequest(r[-1].prompt, (" y", " zz"), r[-1].id)], s),
            "requests",
        ),
        (lambda r, s: (r[:-1], s), "requests"),
        (lambda r, s: (r, {**s, "plain": single_layer_steering(_vector(9), 1, 0.5)}), "steerings"),
        (lambda r, s: (r, {"renamed": s["plain"]}), "steerings"),
    ],
)
def test_a_checkpoint_of_other_requests_or_steerings_is_refused(
    tiny_model, tmp_path, change, field
):
    checkpoint = tmp_path / "scores.jsonl"
    steerings = {"plain": None}
    score_steerings(tiny_model, REQUESTS, steerings, checkpoint=checkpoint, show_progress=False)
    before = checkpoint.read_text()
    requests, other = change(list(REQUESTS), steerings)
    with pytest.raises(ValueError, match=rf"different settings \({field}\); delete it"):
        score_steerings(tiny_model, requests, other, checkpoint=checkpoint, show_progress=False)
    assert checkpoint.read_text() == before  # nothing appended to someone else's checkpoint


def test_a_checkpoint_with_a_naive_only_steering_is_refused(tiny_model, tmp_path):
    steering = single_layer_steering(_vector(10), 1, 1.0, positions="prompt")
    with pytest.raises(ValueError, match="checkpoints are kept by the fast path only"):
        score_steerings(
            tiny_model,
            REQUESTS,
            {"p": steering},
            checkpoint=tmp_path / "c.jsonl",
            show_progress=False,
        )


# ---------------------------------------------------------------- next-token KL


def test_next_token_kl_equals_a_direct_computation_from_full_logits(tiny_model):
    prompts = ["The weather is", "x", "Water boils at one hundred"]
    steerings = {
        "plain": None,
        "null": surgical_steering(_vector(1), 1, 0.0, _vector(2), 2, 0.0),
        "en@1": single_layer_steering(_vector(1), 1, 2.0),
        "en@1+loc@2": surgical_steering(_vector(1), 1, 2.0, _vector(2), 2, 2.0),
        "scale@2": single_layer_steering(_vector(3), 2, 3.0, operation="scale"),
    }
    # float32 logits on both sides: KL agrees to 1e-3 relative or 1e-5 nats absolute.
    kl = next_token_kl(tiny_model, prompts, steerings, batch_size=2)
    assert list(kl) == list(steerings) and all(len(values) == 3 for values in kl.values())
    assert kl["plain"] == [0.0, 0.0, 0.0] and max(kl["null"]) < 1e-6
    for key in ("en@1", "en@1+loc@2", "scale@2"):
        for prompt, value in zip(prompts, kl[key], strict=True):
            tokens = torch.tensor([encode(tiny_model, prompt)])
            with torch.no_grad():
                clean = torch.log_softmax(tiny_model(tokens)[0, -1].double(), -1)
                with steerings[key].apply(tiny_model) as steered:
                    hooked = torch.log_softmax(steered(tokens)[0, -1].double(), -1)
            expected = float((clean.exp() * (clean - hooked)).sum())
            assert expected > 5e-4
            assert value == pytest.approx(expected, rel=1e-3, abs=1e-5), (key, prompt)


def test_next_token_kl_refuses_what_the_fast_path_cannot_restart(tiny_model):
    with pytest.raises(ValueError, match="no prompts"):
        next_token_kl(tiny_model, [], {"plain": None})
    prompt_only = single_layer_steering(_vector(11), 1, 1.0, positions="prompt")
    with pytest.raises(ValueError, match="use method='naive' or 'auto'"):
        next_token_kl(tiny_model, ["Hi"], {"p": prompt_only})


# ---------------------------------------------------------------- the real model


@pytest.mark.slow
def test_fast_equals_naive_on_gemma_in_three_languages(gemma):
    requests = [
        ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴", " 워싱턴 D.C."), "ko"),
        ScoringRequest("我们国家的货币是", ("人民币", "美元"), "zh"),
        ScoringRequest(
            "Question: What is the chemical symbol of gold?\nAnswer:", (" Au", " Ag", " Fe"), "en"
        ),
    ]
    generator = torch.Generator().manual_seed(0)
    en, loc = (torch.randn(gemma.cfg.d_model, generator=generator) for _ in range(2))
    steerings = {
        "plain": None,
        "surgical": surgical_steering(en, 6, 0.5, loc, 12, 0.5, alpha_mode="relative",
                                      en_reference_norm=300.0, loc_reference_norm=3000.0),
        "scale": single_layer_steering(en, 9, 0.0, operation="scale"),
    }  # fmt: skip
    fast = score_steerings(
        gemma, requests, steerings, method="fast", batch_size=8, show_progress=False
    )
    naive = score_steerings(
        gemma, requests, steerings, method="naive", batch_size=8, show_progress=False
    )
    for key in steerings:
        _assert_same(fast[key], naive[key])
    assert max(n for score in fast["plain"] for n in score.n_tokens) > 1  # multi-token options
    for request, score in zip(requests, fast["plain"], strict=True):
        expected = reference_logprobs(gemma, request, None)
        torch.testing.assert_close(
            torch.tensor(score.logprobs), torch.tensor(expected), atol=ATOL, rtol=0
        )
    assert fast["plain"][0].values().argmax() == 0  # the embedded model localizes "our country"
    assert float((_values(fast["surgical"]) - _values(fast["plain"])).abs().max()) > 1e-2
