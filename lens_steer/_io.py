"""Files of results: atomic writes (complete or absent, never half-written) and tensor bundles.

A tensor bundle is ``{stem}.safetensors`` plus a ``{stem}.json`` sidecar carrying a fingerprint
of the tensor bytes, so a sidecar that belongs to other tensors (an interrupted overwrite) is
caught on load. Every error names the file by its full path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` via a temporary file and a rename."""
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON (UTF-8, indented, NaN refused) atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows)
    return write_text_atomic(path, text)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_tensors_atomic(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Save tensors to safetensors atomically (contiguous CPU copies)."""
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    return _atomic(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a damaged or truncated file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path.resolve()} not found")
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, or an OSError from a truncated file
        raise ValueError(
            f"{path.resolve()}: not a readable safetensors file ({type(err).__name__}: {err}); "
            "it may be damaged or truncated (full disk?); delete it and rerun"
        ) from None


def _stem(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 (32 hex digits) of a tensor's shape, dtype and bytes."""
    return fingerprint({"t": tensor})


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 (32 hex digits) of named tensors: names, shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


def save_tensor_bundle(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> dict[str, Path]:
    """Write ``{stem}.safetensors`` then the ``{stem}.json`` sidecar, each atomically."""
    stem = _stem(path)
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    digest = fingerprint(plain)
    paths = {"tensors": stem.with_suffix(".safetensors"), "metadata": stem.with_suffix(".json")}
    save_tensors_atomic(paths["tensors"], plain, metadata={"fingerprint": digest})
    write_json_atomic(paths["metadata"], {**metadata, "fingerprint": digest})
    return paths


def load_tensor_bundle(
    path: str | os.PathLike[str], *, expected_format: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_tensor_bundle` wrote; check the format tag and the fingerprint."""
    stem = _stem(path)
    tensor_path, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for needed in (tensor_path, meta_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed.resolve()} not found (saved values are a .safetensors + .json pair)"
            )
    try:
        metadata = read_json(meta_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path.resolve()}: not valid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{meta_path.resolve()}: expected a JSON object, got {type(metadata).__name__}"
        )
    if metadata.get("format") != expected_format:
        raise ValueError(
            f"{meta_path.resolve()}: format {metadata.get('format')!r}, expected {expected_format!r}"
        )
    tensors = load_tensors(tensor_path)
    if fingerprint(tensors) != metadata.get("fingerprint"):
        raise ValueError(
            f"{meta_path.resolve()} does not describe {tensor_path.resolve()} (fingerprints differ)"
        )
    return tensors, metadata
