"""Shared fixtures: a tiny random HookedTransformer (fast) and the real Gemma 3 270M (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
BLEND_ROOT = Path(os.environ.get("LENS_STEER_BLEND_ROOT", SHARED / "data" / "blend"))

_TINY_CORPUS = [
    "The capital of our country is Seoul. 우리나라의 수도는 서울입니다.",
    "我们国家的首都是北京。 La moneda de nuestro país es el euro.",
    "Ibu kota negara kami adalah Jakarta. Η πρωτεύουσα της χώρας μας είναι η Αθήνα.",
    "پایتخت کشور ما تهران است. Water boils at one hundred degrees.",
]


def make_tiny_tokenizer():
    """A byte-level BPE tokenizer (any script encodes) with BOS/EOS/PAD, trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        padding_side="left",
        add_bos_token=True,
        name_or_path="tiny-random",
    )


def make_tiny_model(seed: int = 0, n_layers: int = 4):
    """A randomly initialised 4-layer Gemma-like HookedTransformer (RMSNorm, rotary, gated MLP)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = make_tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        n_heads=4,
        d_head=8,
        d_mlp=64,
        d_vocab=len(tokenizer),
        n_ctx=512,
        act_fn="gelu",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        seed=seed,
        device="cpu",
        default_prepend_bos=True,
        model_name="tiny-random",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    # Random init leaves small weights; scale so that layers visibly change the residual.
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:
                param.mul_(4.0)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def gemma():
    """The real embedded Gemma 3 270M (loaded once per session)."""
    from lens_steer import load_model

    return load_model("gemma-3-270m", device="cpu")


@pytest.fixture(scope="session")
def blend_root() -> Path:
    if not (BLEND_ROOT / "annotations").is_dir():
        pytest.skip(f"BLEnD copy not found at {BLEND_ROOT} (set LENS_STEER_BLEND_ROOT)")
    return BLEND_ROOT
