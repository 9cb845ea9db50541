"""TransformerBridge: loading offline, agreement with HookedTransformer, what its forward can do.

Tolerances (measured on Gemma 3 270M, CPU float32, 8 prompts in English and Korean; see
notes/bridge.md): last-token residuals agree to a relative 8e-7 of their norm at every layer,
logits to 5e-5 absolute (steered: 4e-5), greedy tokens exactly. The tests allow about 10x that.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lens_steer.bridge import kv_cache_generation_works, load_bridge, supports_start_at_layer
from lens_steer.collect import collect_residuals
from lens_steer.hooks import add_vector_hook, resid_hook_name, steering_hooks
from lens_steer.tokens import tokenize_batch

RESID_REL_TOL = 1e-5
LOGIT_ABS_TOL = 1e-3
LAYER = 6
EN = ("The capital of France is", "Water boils at one hundred degrees", "My favourite food is")
KO = ("프랑스의 수도는", "물은 백 도에서 끓는다", "내가 가장 좋아하는 음식은")


# --------------------------------------------------------------------------------------------
# The start_at_layer probe, on models whose behaviour is known by construction.
# --------------------------------------------------------------------------------------------


class _Stack(nn.Module):
    """Blocks of linear maps; ``mode`` says how ``start_at_layer`` is handled."""

    def __init__(self, mode: str, n_layers: int = 4, d_model: int = 3):
        super().__init__()
        self.cfg = SimpleNamespace(d_model=d_model, n_layers=n_layers)
        self.blocks = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        self.mode = mode

    def forward(self, x, start_at_layer=None, stop_at_layer=None):
        if self.mode == "raises" and start_at_layer is not None:
            raise NotImplementedError("start_at_layer")
        start = start_at_layer if self.mode == "skips" else 0
        for block in self.blocks[start:stop_at_layer]:
            x = block(x)
        return x


@pytest.mark.parametrize(
    ("mode", "expected"), [("skips", True), ("raises", False), ("runs", False)]
)
def test_supports_start_at_layer_counts_block_calls(mode, expected):
    assert supports_start_at_layer(_Stack(mode)) is expected


def test_supports_start_at_layer_on_hooked_transformer(tiny_model):
    assert supports_start_at_layer(tiny_model) is True


def test_probe_leaves_no_hooks_behind(tiny_model):
    supports_start_at_layer(tiny_model)
    assert all(not block._forward_hooks for block in tiny_model.blocks)


def test_load_bridge_refuses_sources_as_load_model_does(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Model path does not exist"):
        load_bridge(tmp_path / "missing" / "model")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_bridge(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        load_bridge("gpt2")


# --------------------------------------------------------------------------------------------
# The real model: the bridge against HookedTransformer.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridge():
    return load_bridge("gemma-3-270m", device="cpu")


@pytest.fixture(scope="module")
def residuals(gemma, bridge):
    prompts = list(EN + KO)
    return (
        collect_residuals(gemma, prompts, show_progress=False),
        collect_residuals(bridge, prompts, show_progress=False),
    )


@pytest.fixture(scope="module")
def en_vector(residuals):
    acts = residuals[0].acts[:, LAYER]
    return acts[: len(EN)].mean(0) - acts[len(EN) :].mean(0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=-1) / a.norm(dim=-1)).max())


@pytest.mark.slow
def test_bridge_exposes_hooked_transformer_names(gemma, bridge):
    assert (bridge.cfg.n_layers, bridge.cfg.d_model) == (gemma.cfg.n_layers, gemma.cfg.d_model)
    assert bridge.cfg.model_name == gemma.cfg.model_name == "google/gemma-3-270m"
    for layer in range(gemma.cfg.n_layers):
        for point in ("resid_pre", "resid_mid", "resid_post"):
            assert f"blocks.{layer}.hook_{point}" in bridge.hook_dict


@pytest.mark.slow
def test_bridge_residuals_match_hooked_transformer(residuals):
    hooked, bridged = residuals
    assert hooked.layers == bridged.layers
    assert _rel(hooked.acts, bridged.acts) < RESID_REL_TOL


@pytest.mark.slow
def test_bridge_logits_match_on_a_left_padded_batch(gemma, bridge):
    batch = tokenize_batch(gemma, list(EN + KO))
    with torch.inference_mode():
        hooked = gemma(batch.tokens, attention_mask=batch.attention_mask)
        bridged = bridge(batch.tokens, attention_mask=batch.attention_mask)
    real = batch.attention_mask.bool()
    assert float((hooked - bridged)[real].abs().max()) < LOGIT_ABS_TOL
    assert torch.equal(hooked[real].argmax(-1), bridged[real].argmax(-1))


@pytest.mark.slow
def test_bridge_steered_logits_match(gemma, bridge, en_vector):
    batch = tokenize_batch(gemma, list(KO))
    name = resid_hook_name(LAYER)
    with torch.inference_mode():
        plain = bridge(batch.tokens, attention_mask=batch.attention_mask)
        with steering_hooks(gemma, [(name, add_vector_hook(en_vector))]):
            hooked = gemma(batch.tokens, attention_mask=batch.attention_mask)
        with steering_hooks(bridge, [(name, add_vector_hook(en_vector))]):
            bridged = bridge(batch.tokens, attention_mask=batch.attention_mask)
        after = bridge(batch.tokens, attention_mask=batch.attention_mask)
    real = batch.attention_mask.bool()
    assert float((hooked - bridged)[real].abs().max()) < LOGIT_ABS_TOL
    assert float((bridged - plain)[real].abs().max()) > 1.0  # the hook did steer the bridge
    assert torch.equal(after, plain)  # and was removed


@pytest.mark.slow
def test_bridge_steered_generation_matches_without_kv_cache(gemma, bridge, en_vector):
    batch = tokenize_batch(gemma, ["우리나라의 수도는", "Die Hauptstadt von Deutschland ist"])
    width = batch.tokens.shape[1]
    hooks = [(resid_hook_name(LAYER), add_vector_hook(en_vector))]
    settings = dict(max_new_tokens=8, do_sample=False, stop_at_eos=False, verbose=False)
    with torch.inference_mode():
        with gemma.hooks(fwd_hooks=hooks):
            hooked = gemma.generate(batch.tokens, padding_side="left", **settings)
        with bridge.hooks(fwd_hooks=hooks):
            bridged = bridge.generate(
                batch.tokens,
                attention_mask=batch.attention_mask,
                use_past_kv_cache=False,
                return_type="tokens",
                **settings,
            )
    assert torch.equal(hooked[:, width:], bridged[:, width:])


@pytest.mark.slow
def test_start_at_layer_is_only_real_on_hooked_transformer(gemma, bridge):
    """Pinned: TransformerLens 3.9's bridge raises NotImplementedError for start_at_layer."""
    assert supports_start_at_layer(gemma) is True
    assert supports_start_at_layer(bridge) is False


def test_kv_cache_probe_passes_on_hooked_transformer(tiny_model):
    assert kv_cache_generation_works(tiny_model, "우리나라의 수도는") is True


@pytest.mark.slow
def test_kv_cache_generation_is_broken_on_the_bridge(bridge):
    """Pinned: with transformers 5.x the bridge's attention never sees the KV cache.

    Gemma 3's attention receives the cache as ``cache=``; TransformerLens 3.9's
    ``AttentionBridge._update_kv_cache`` reads only ``past_key_values``/``layer_past``, so each
    cached step attends to itself alone. If this starts failing, the bridge was fixed: drop
    the ``use_past_kv_cache=False`` advice in lens_steer.bridge and notes/bridge.md.
    """
    assert kv_cache_generation_works(bridge) is False


@pytest.mark.slow
def test_bridge_stop_at_layer_runs_only_the_lower_blocks(bridge):
    calls = [0] * bridge.cfg.n_layers
    handles = [
        block.register_forward_hook(lambda *args, layer=layer: calls.__setitem__(layer, 1))
        for layer, block in enumerate(bridge.blocks)
    ]
    seen = {}
    tokens = torch.tensor([[2, 818, 5279, 529]])
    try:
        with torch.inference_mode():
            with bridge.hooks(
                fwd_hooks=[
                    (resid_hook_name(3), lambda act, hook: seen.setdefault("r", act.clone()))
                ]
            ):
                out = bridge(tokens, stop_at_layer=4)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [1] * 4 + [0] * (bridge.cfg.n_layers - 4)
    assert torch.equal(out, seen["r"])


@pytest.mark.slow
def test_bridge_run_with_hooks_silently_skips_unknown_names(bridge):
    """Pinned pitfall: a misspelt hook name is ignored, so check names before running."""
    tokens = torch.tensor([[2, 818, 5279]])

    def boom(act, hook):
        raise AssertionError("never called")

    with torch.inference_mode():
        bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.99.hook_resid_post", boom)])
    with pytest.raises(ValueError, match="does not exist"):
        with steering_hooks(bridge, [("blocks.99.hook_resid_post", boom)]):
            pass


@pytest.mark.slow
def test_scoring_and_kl_on_the_bridge_match_the_hooked_transformer(gemma, bridge, en_vector):
    """The one scoring entry point falls back to the naive path on a bridge, same numbers."""
    from lens_steer.evaluate.engine import score_steerings
    from lens_steer.evaluate.kl import next_token_kl
    from lens_steer.evaluate.scoring import ScoringRequest
    from lens_steer.steering import generate, single_layer_steering

    requests = [
        ScoringRequest("The capital of France is", (" Paris", " Rome", " Berlin"), "fr"),
        ScoringRequest("프랑스의 수도는", (" 파리", " 로마"), "fr-ko"),
    ]
    steerings = {"plain": None, "en": single_layer_steering(en_vector, LAYER, 1.0, name="en")}
    hooked = score_steerings(gemma, requests, steerings, show_progress=False)  # fast path
    bridged = score_steerings(bridge, requests, steerings, show_progress=False)  # naive path
    for key in steerings:
        for ours, theirs in zip(hooked[key], bridged[key], strict=True):
            diffs = [abs(a - b) for a, b in zip(ours.logprobs, theirs.logprobs, strict=True)]
            assert max(diffs) < LOGIT_ABS_TOL
    with pytest.raises(ValueError, match="cannot restart a forward"):
        score_steerings(bridge, requests, steerings, method="fast", show_progress=False)
    kl_hooked = next_token_kl(gemma, list(KO), {"en": steerings["en"]})["en"]
    kl_bridged = next_token_kl(bridge, list(KO), {"en": steerings["en"]})["en"]
    assert kl_hooked == pytest.approx(kl_bridged, abs=1e-3) and min(kl_hooked) > 0
    text_hooked = generate(
        gemma, list(KO[:2]), steerings["en"], max_new_tokens=6, show_progress=False
    )
    text_bridged = generate(
        bridge, list(KO[:2]), steerings["en"], max_new_tokens=6, show_progress=False
    )
    assert text_hooked == text_bridged
