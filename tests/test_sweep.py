"""Fast sweeps (cached clean residual + start_at_layer) against the naive hooked loop."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from test_scores import LOCALIZATION, TRANSFER  # hand-built Korean records

from lens_steer.evaluate import engine
from lens_steer.evaluate.engine import score_steerings, steering_additions
from lens_steer.evaluate.scores import localization_score, transfer_score
from lens_steer.evaluate.scoring import ScoringRequest
from lens_steer.evaluate.sweep import LayerSweep, layer_sweep
from lens_steer.steering import single_layer_steering, surgical_steering

REQUESTS = [
    ScoringRequest("The capital of our country is", (" Seoul", " Washington D.C."), "cap"),
    ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴", " 도쿄"), "ko"),
    ScoringRequest("我们国家的首都是", ("北京", "华盛顿特区"), "zh"),
]

KO_TRANSFER = [item for item in TRANSFER if item.lang == "ko"]


@dataclass(frozen=True)
class Vectors:
    """The LayerVectors protocol: a fixed random vector per layer."""

    rows: torch.Tensor
    provenance: dict

    def at_layer(self, layer: int) -> torch.Tensor:
        return self.rows[layer]


def random_vectors(model, seed: int, kind: str) -> Vectors:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(model.cfg.n_layers, model.cfg.d_model, generator=generator)
    return Vectors(rows, {"kind": kind, "seed": seed})


def flat(scores) -> torch.Tensor:
    return torch.tensor([value for score in scores for value in score.logprobs])


def grid(model, norm: float = 30.0) -> dict:
    en, loc = random_vectors(model, 1, "en"), random_vectors(model, 2, "loc")
    steerings = {"plain": None}
    for layer in range(model.cfg.n_layers):
        for alpha in (0.3, 1.5):
            steerings[f"en@{layer}:{alpha}"] = single_layer_steering(
                en.at_layer(layer), layer, alpha, reference_norm=norm
            )
    for low, high in ((0, 2), (1, 3), (1, 2), (2, 2)):
        steerings[f"surgical@{low},{high}"] = surgical_steering(
            en.at_layer(low), low, 1.0, loc.at_layer(high), high, 0.7,
            en_reference_norm=norm, loc_reference_norm=norm,
        )  # fmt: skip
    return steerings


def test_fast_equals_naive_hooked_loop_at_every_layer_and_for_surgical_pairs(tiny_model):
    steerings = grid(tiny_model)
    fast = score_steerings(tiny_model, REQUESTS, steerings, batch_size=3, show_progress=False)
    naive = score_steerings(
        tiny_model, REQUESTS, steerings, method="naive", batch_size=3, show_progress=False
    )
    plain = flat(fast["plain"])
    for key in steerings:
        torch.testing.assert_close(flat(fast[key]), flat(naive[key]), atol=1e-4, rtol=0)
        if key != "plain":  # the steerings really change the numbers
            assert (flat(fast[key]) - plain).abs().max() > 1e-2, key


def test_fast_equals_a_manual_residual_edit(tiny_model):
    vector = 5.0 * torch.randn(tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(7))
    steering = single_layer_steering(vector, 1, 1.0, alpha_mode="raw")
    (fast,) = score_steerings(
        tiny_model, REQUESTS[:1], {"s": steering}, show_progress=False
    ).values()

    def edit(resid, hook):
        return resid + vector

    request = REQUESTS[0]
    from lens_steer.tokens import encode

    prompt = encode(tiny_model, request.prompt)
    expected = []
    for option in request.options:
        cont = encode(tiny_model, option, prepend_bos=False)
        with torch.no_grad():
            logits = tiny_model.run_with_hooks(
                torch.tensor([prompt + cont]), fwd_hooks=[("blocks.1.hook_resid_post", edit)]
            )
        logprobs = torch.log_softmax(logits[0], dim=-1)
        expected.append(sum(logprobs[len(prompt) + j - 1, t].item() for j, t in enumerate(cont)))
    torch.testing.assert_close(
        torch.tensor(fast[0].logprobs), torch.tensor(expected), atol=1e-4, rtol=0
    )


def test_alpha_zero_equals_the_plain_model(tiny_model):
    vector = torch.randn(tiny_model.cfg.d_model)
    zero = single_layer_steering(vector, 2, 0.0, reference_norm=10.0)
    out = score_steerings(tiny_model, REQUESTS, {"plain": None, "zero": zero}, show_progress=False)
    assert torch.equal(flat(out["plain"]), flat(out["zero"]))
    assert steering_additions(tiny_model, zero) == ()


def test_fast_path_refuses_terms_it_cannot_replay(tiny_model):
    vector = torch.randn(tiny_model.cfg.d_model)
    mid = single_layer_steering(vector, 1, 1.0, alpha_mode="raw", point="resid_mid")
    with pytest.raises(ValueError, match="point='resid_post'.*use method='naive'"):
        score_steerings(tiny_model, REQUESTS, {"mid": mid}, show_progress=False)
    far = single_layer_steering(vector, 9, 1.0, alpha_mode="raw")
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        score_steerings(tiny_model, REQUESTS, {"far": far}, show_progress=False)
    wide = single_layer_steering(torch.ones(7), 1, 1.0, alpha_mode="raw")
    with pytest.raises(ValueError, match="width 7"):
        score_steerings(tiny_model, REQUESTS, {"wide": wide}, show_progress=False)


def test_checkpoint_resumes_after_a_kill_and_recomputes_only_missing_units(
    tiny_model, tmp_path, monkeypatch
):
    steerings = grid(tiny_model)
    path = tmp_path / "sweep.jsonl"
    full = score_steerings(
        tiny_model, REQUESTS, steerings, batch_size=1, checkpoint=path, show_progress=False
    )
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3  # header + 3 prompts in chunks of 1
    # A kill mid-append: header, one finished chunk, half of the second line.
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    ran = []
    real_chunk = engine._fast_chunk

    def counting_chunk(model, chunk, settings):
        ran.append([item.index for item in chunk])
        return real_chunk(model, chunk, settings)

    monkeypatch.setattr(engine, "_fast_chunk", counting_chunk)
    resumed = score_steerings(
        tiny_model, REQUESTS, steerings, batch_size=1, checkpoint=path, show_progress=False
    )
    assert len(ran) == 2  # only the two unfinished chunks ran
    for key in steerings:
        assert flat(resumed[key]).tolist() == flat(full[key]).tolist()
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_checkpoint_with_other_settings_is_refused(tiny_model, tmp_path):
    path = tmp_path / "sweep.jsonl"
    steerings = grid(tiny_model)
    score_steerings(
        tiny_model, REQUESTS, steerings, batch_size=2, checkpoint=path, show_progress=False
    )
    with pytest.raises(ValueError, match=r"different settings \(batch_size\)"):
        score_steerings(
            tiny_model, REQUESTS, steerings, batch_size=3, checkpoint=path, show_progress=False
        )
    with pytest.raises(ValueError, match=r"different settings \(steerings\)"):
        score_steerings(
            tiny_model, REQUESTS, grid(tiny_model, norm=31.0), batch_size=2, checkpoint=path,
            show_progress=False,
        )  # fmt: skip


def test_layer_sweep_scores_every_kind_layer_and_alpha(tiny_model):
    vectors = {
        "en": random_vectors(tiny_model, 1, "en"),
        "loc": random_vectors(tiny_model, 2, "loc"),
    }
    norms = [10.0, 20.0, 30.0, 40.0]
    sweep = layer_sweep(
        tiny_model, KO_TRANSFER, LOCALIZATION, vectors, alphas=(0.5, 2.0), reference_norms=norms,
        n_bootstrap=50, show_progress=False,
    )  # fmt: skip
    assert len(sweep.points) == 2 * 4 * 2 and sweep.kinds == ("en", "loc")
    assert sweep.lang == "ko" and sweep.settings["n_transfer"] == 2
    # The unsteered reference equals the plain scoring path.
    plain_t = transfer_score(tiny_model, KO_TRANSFER, n_bootstrap=50, show_progress=False)
    plain_l = localization_score(tiny_model, LOCALIZATION, n_bootstrap=50, show_progress=False)
    assert sweep.unsteered_transfer.value == plain_t.value
    assert sweep.unsteered_localization.value == plain_l.value
    point = sweep.curve("loc", 2.0)[3]
    term = point.steering["terms"][0]
    assert (point.layer, term["layer"], term["name"]) == (3, 3, "loc")
    assert term["effective_norm"] == pytest.approx(2.0 * 40.0)
    assert point.transfer.settings["steering"] == point.steering
    # A steered point equals transfer_score with the same steering (the hooked path).
    steering = single_layer_steering(
        vectors["loc"].at_layer(3), 3, 2.0, reference_norm=40.0, name="loc"
    )
    hooked = transfer_score(tiny_model, KO_TRANSFER, steering, n_bootstrap=50, show_progress=False)
    assert point.transfer.value == hooked.value
    peak = sweep.peak("en", "localization")
    assert peak.localization.value == max(
        p.localization.value for p in sweep.points if p.kind == "en"
    )
    assert LayerSweep.from_json(json.loads(json.dumps(sweep.to_json()))) == sweep


def test_layer_sweep_bad_input_names_the_problem(tiny_model):
    vectors = {"en": random_vectors(tiny_model, 1, "en")}
    with pytest.raises(ValueError, match="needs reference_norms"):
        layer_sweep(tiny_model, KO_TRANSFER, LOCALIZATION, vectors, show_progress=False)
    with pytest.raises(ValueError, match=r"Layers \[4\] out of range"):
        layer_sweep(tiny_model, KO_TRANSFER, LOCALIZATION, vectors, layers=[4], alpha_mode="raw",
                    show_progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="No transfer items in split 'dev'"):
        layer_sweep(tiny_model, KO_TRANSFER, LOCALIZATION, vectors, split="dev", alpha_mode="raw",
                    show_progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="alpha must be finite"):
        layer_sweep(tiny_model, KO_TRANSFER, LOCALIZATION, vectors, alphas=[float("nan")],
                    alpha_mode="raw", show_progress=False)  # fmt: skip


@pytest.mark.slow
def test_fast_equals_naive_on_gemma_for_a_few_layers(gemma):
    requests = [
        ScoringRequest("우리나라의 수도는", (" 서울", " 워싱턴", " 서울특별시"), "ko-cap"),
        ScoringRequest("질문: 금의 원소 기호는 무엇인가요?\n답:", (" Au", " Ag", " Fe"), "ko-gold"),
        ScoringRequest("Ibu kota negara kami adalah", (" Jakarta", " Washington D.C."), "id-cap"),
    ]
    generator = torch.Generator().manual_seed(0)
    vector = torch.randn(gemma.cfg.d_model, generator=generator)
    steerings = {"plain": None}
    for layer in (3, 9, 15):
        steerings[f"en@{layer}"] = single_layer_steering(vector, layer, 0.5, alpha_mode="raw")
    steerings["surgical"] = surgical_steering(
        vector, 6, 100.0, -vector, 12, 300.0, alpha_mode="raw"
    )
    fast = score_steerings(gemma, requests, steerings, batch_size=8, show_progress=False)
    assert max(n for score in fast["plain"] for n in score.n_tokens) > 2  # options rerun too
    naive = score_steerings(
        gemma, requests, steerings, method="naive", batch_size=8, show_progress=False
    )
    for key in steerings:
        torch.testing.assert_close(flat(fast[key]), flat(naive[key]), atol=1e-4, rtol=0)
    for key in steerings:
        if key != "plain":
            assert (flat(fast[key]) - flat(fast["plain"])).abs().max() > 1e-2, key
