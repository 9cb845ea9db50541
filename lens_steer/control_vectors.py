"""Export and import steering directions as llama.cpp control vectors (GGUF).

A control vector file is a GGUF with ``general.architecture = "controlvector"``, the metadata
``controlvector.model_hint`` (the model's ``general.architecture``, e.g. ``"gemma3"``) and
``controlvector.layer_count``, and one F32 1-D tensor ``direction.{n}`` of width ``d_model`` per
steered layer. llama.cpp adds every direction to the residual stream at every position
(``llama-cli --control-vector FILE``, ``--control-vector-scaled FILE ALPHA``); several files or
several tensors for one layer are summed.

Layer numbering. ``direction.{n}`` is added to the output of llama.cpp's layer ``il = n``
(0-based), after the feed-forward residual add: that is TransformerLens'
``blocks.{n}.hook_resid_post``. So the keys of :func:`save_control_vector` are lens_steer block
indices as they are, with no shift. Block 0's output cannot be steered: llama.cpp never
allocates a tensor for layer 0 and refuses a file with ``direction.0``. Source (llama.cpp
commit 0c1e570, vendored in llama-cpp-python 0.3.36):

* ``common/common.cpp``, ``common_control_vector_load_one``: ``layer_idx`` is parsed from the
  tensor name ``direction.{layer_idx}``; ``layer_idx == 0`` is an error ("invalid (zero)
  direction tensor layer index"); the data goes to ``data + n_embd * (layer_idx - 1)`` ("layer 1
  at [0]").
* ``src/llama-adapter.cpp``, ``llama_adapter_cvec::init``/``apply``: ``tensors[0]`` is
  ``nullptr`` ("there's never a tensor for layer 0") and ``tensors[il]`` is filled from
  ``data + n_embd * (il - 1)``; ``tensor_for(il)`` returns ``tensors[il]`` when
  ``layer_start <= il <= layer_end`` (``--control-vector-layer-range``, default 1..n_layer).
* ``src/models/gemma3.cpp`` (every architecture does the same): in the loop
  ``for (int il = 0; il < n_layer; ++il)``, ``cur = ggml_add(ctx0, cur, sa_out);`` then
  ``cur = build_cvec(cur, il);`` then ``cb(cur, "l_out", il)``, and ``build_cvec`` is
  ``cvec->apply_to(ctx0, cur, il)`` (``src/llama-graph.cpp``).

llama.cpp's own ``cvector-generator`` reads ``l_out`` of layer ``il`` and writes it as
``direction.{il + 1}`` (``tools/cvector-generator/mean.hpp``, ``pca.hpp``): a vector it fits
at one layer is applied one layer later. lens_steer does not copy that shift: a vector fitted
and applied at ``blocks.{n}.hook_resid_post`` is written as ``direction.{n}``.

Strength. llama.cpp adds the tensor as it is (times ``--control-vector-scaled``'s factor). To
reproduce lens_steer's ``alpha * v``, save ``{layer: alpha * v}`` or pass ``alpha`` as the scale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lens_steer._io import _atomic

ARCHITECTURE = "controlvector"
_NAME = re.compile(r"direction\.(\d+)")


def direction_name(layer: int) -> str:
    """The tensor name llama.cpp reads for a vector added at ``blocks.{layer}.hook_resid_post``.

    Example:
        >>> direction_name(6)
        'direction.6'
    """
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {layer!r}")
    if layer < 1:
        raise ValueError(
            f"layer {layer}: llama.cpp control vectors cannot steer block {layer}'s output "
            "(it never applies a direction at layer 0; valid layers are 1..n_layers-1)"
        )
    return f"direction.{layer}"


def _checked_directions(directions: Mapping[int, Tensor], what: str) -> dict[int, np.ndarray]:
    """Validate ``{layer: [d_model]}`` and return float32 arrays, sorted by layer."""
    if not isinstance(directions, Mapping) or not directions:
        raise ValueError(f"{what}: directions must be a non-empty {{layer: tensor}} mapping")
    arrays: dict[int, np.ndarray] = {}
    width: int | None = None
    for layer in sorted(directions):
        name = direction_name(layer)
        vector = directions[layer]
        if not isinstance(vector, Tensor):
            raise TypeError(f"{what}: {name} must be a torch.Tensor, got {type(vector).__name__}")
        if vector.ndim != 1 or not vector.is_floating_point():
            raise ValueError(
                f"{what}: {name} must be a 1-D floating tensor [d_model], got "
                f"{vector.dtype} of shape {tuple(vector.shape)}"
            )
        if width is None:
            width = vector.shape[0]
        elif vector.shape[0] != width:
            raise ValueError(
                f"{what}: {name} has width {vector.shape[0]} but the other directions have {width}"
            )
        array = vector.detach().to("cpu", torch.float32).contiguous().numpy().copy()
        if not np.isfinite(array).all():
            raise ValueError(f"{what}: {name} contains NaN or inf")
        arrays[layer] = array
    return arrays


def save_control_vector(
    path: str | Path,
    directions: Mapping[int, Float[Tensor, " d_model"]],
    *,
    model_hint: str = "gemma3",
) -> Path:
    """Write directions as a llama.cpp control vector GGUF, atomically.

    Args:
        path: the ``.gguf`` file to write (parents are created).
        directions: ``{layer: vector}`` with lens_steer block indices (the vector is added at
            ``blocks.{layer}.hook_resid_post``), layers >= 1, one width for all. Scale them
            first (``alpha * v``) or scale at use with ``--control-vector-scaled``.
        model_hint: the target model's GGUF ``general.architecture`` (``"gemma3"`` for the
            embedded Gemma 3 270M); llama.cpp only records it.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "en.gguf"
        >>> _ = save_control_vector(out, {6: torch.ones(640)})
        >>> load_control_vector(out)[6].shape
        torch.Size([640])
    """
    from gguf import GGUFWriter

    path = Path(path)
    arrays = _checked_directions(directions, str(path))
    if not isinstance(model_hint, str) or not model_hint:
        raise ValueError(f"{path}: model_hint must be a non-empty string, got {model_hint!r}")

    def write(tmp: Path) -> None:
        writer = GGUFWriter(None, ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", model_hint)
        # llama.cpp's cvector-generator writes the number of direction tensors here (as int32);
        # its loader never reads it.
        writer.add_int32(f"{ARCHITECTURE}.layer_count", len(arrays))
        for layer, array in arrays.items():
            writer.add_tensor(direction_name(layer), array)
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return _atomic(path, write)


def load_control_vector(
    path: str | Path, *, d_model: int | None = None, n_layers: int | None = None
) -> dict[int, Float[Tensor, " d_model"]]:
    """Read a llama.cpp control vector GGUF as ``{layer: vector}`` (lens_steer block indices).

    The checks are those of llama.cpp's loader (architecture, ``direction.{n}`` names with
    ``n >= 1``, F32, 1-D, one width), plus finite values and, when given, the model's width
    and layer count. Every error names the file and the tensor at fault.

    Args:
        path: the control vector file.
        d_model: the width every direction must have (the model's ``d_model``), if known.
        n_layers: the model's layer count; directions must lie in ``1..n_layers-1``.

    Returns:
        ``{layer: float32 tensor [d_model]}``, sorted by layer; add each at
        ``blocks.{layer}.hook_resid_post`` (e.g. with ``lens_steer.hooks.multi_layer_hooks``).

    Example:
        >>> directions = load_control_vector("en.gguf", d_model=640, n_layers=18)  # doctest: +SKIP
    """
    from gguf import GGMLQuantizationType, GGUFReader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Control vector file not found: {path}")
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # the reader raises several types on a bad file
        raise ValueError(f"{path} is not a readable GGUF file: {err}") from err
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    if arch != ARCHITECTURE:
        raise ValueError(
            f"{path} is not a control vector: general.architecture is {arch!r}, "
            f"expected {ARCHITECTURE!r}"
        )
    if not reader.tensors:
        raise ValueError(f"{path}: control vector holds no direction tensors")
    directions: dict[int, Tensor] = {}
    width: int | None = None
    for tensor in reader.tensors:
        where = f"{path}: tensor {tensor.name!r}"
        match = _NAME.fullmatch(tensor.name)
        if match is None:
            raise ValueError(f"{where} is not named direction.<layer>")
        layer = int(match.group(1))
        if layer == 0:
            raise ValueError(f"{where}: llama.cpp refuses layer 0 (it never steers layer 0)")
        if n_layers is not None and layer >= n_layers:
            raise ValueError(
                f"{where}: layer {layer} is missing from the model, which has layers "
                f"0..{n_layers - 1}"
            )
        if layer in directions:
            raise ValueError(f"{where} appears twice")
        if tensor.tensor_type != GGMLQuantizationType.F32:
            raise ValueError(f"{where} has type {tensor.tensor_type.name}; llama.cpp needs F32")
        shape = [int(n) for n in tensor.shape]
        if len(shape) != 1:
            raise ValueError(f"{where} has shape {shape}; a direction is 1-D [d_model]")
        expected = d_model if d_model is not None else width
        if expected is not None and shape[0] != expected:
            source = (
                "the model's d_model is" if d_model is not None else "the other directions have"
            )
            raise ValueError(f"{where} has width {shape[0]} but {source} {expected}")
        width = shape[0]
        array = np.array(tensor.data, dtype=np.float32).reshape(-1)
        if not np.isfinite(array).all():
            raise ValueError(f"{where} contains NaN or inf")
        directions[layer] = torch.from_numpy(array)
    return dict(sorted(directions.items()))


def llama_cpp_buffer(
    directions: Mapping[int, Float[Tensor, " d_model"]], *, n_layers: int
) -> Float[Tensor, " flat"]:
    """The flat float32 buffer ``llama_set_adapter_cvec`` takes (layer 1 at offset 0).

    llama.cpp's C API wants ``n_embd * (n_layers - 1)`` floats, block ``n``'s vector at offset
    ``n_embd * (n - 1)``; this is what its own file loader builds. Pass ``il_start=1`` and
    ``il_end=n_layers - 1`` with it.

    Example:
        >>> llama_cpp_buffer({1: torch.ones(2), 3: torch.full((2,), 3.0)}, n_layers=4)
        tensor([1., 1., 0., 0., 3., 3.])
    """
    arrays = _checked_directions(directions, "llama_cpp_buffer")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
        raise ValueError(f"n_layers must be an int >= 2, got {n_layers!r}")
    outside = [layer for layer in arrays if layer >= n_layers]
    if outside:
        raise ValueError(f"layer(s) {outside} outside 1..{n_layers - 1}")
    width = next(iter(arrays.values())).shape[0]
    flat = torch.zeros((n_layers - 1) * width, dtype=torch.float32)
    for layer, array in arrays.items():
        flat[(layer - 1) * width : layer * width] = torch.from_numpy(array)
    return flat
