"""Load a model as a TransformerLens ``TransformerBridge``, and probe what its forward can do.

TransformerLens 3.x offers two wrappers: ``HookedTransformer`` (lens_steer's default, its own
re-implementation of each architecture) and ``TransformerBridge`` (hooks around the Hugging Face
model itself). :func:`load_bridge` builds the bridge offline from the same sources as
:func:`lens_steer.models.load_model` (the embedded Gemma 3 270M, a local HF folder, a ``.gguf``)
with the same tokenizer (``add_bos_token=True``), and turns on compatibility mode *without*
weight processing, so hook names (``blocks.{layer}.hook_resid_post``), residuals and logits
match the unprocessed ``HookedTransformer`` (measured on Gemma 3 270M: residuals within a
relative 1e-6, logits within 1e-4 absolute; see ``notes/bridge.md``).

What differs (TransformerLens 3.9, transformers 5.24; each pinned by ``tests/test_bridge.py``):

* ``start_at_layer`` raises ``NotImplementedError`` on the bridge (HF's forward owns the layer
  loop), so a sweep cannot restart from a cached residual: check :func:`supports_start_at_layer`
  and run the whole forward instead.
* ``generate`` with the KV cache (its default) is wrong: transformers 5.x passes the cache to
  Gemma 3's attention as ``cache=``, the bridge's attention only reads ``past_key_values``, so
  every cached step attends to itself alone. :func:`kv_cache_generation_works` detects it; pass
  ``use_past_kv_cache=False`` (correct, slower) when it returns ``False``.
* ``run_with_hooks`` silently skips a hook whose name does not exist; check names first
  (``lens_steer.hooks.steering_hooks`` does).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformer_lens import HookedTransformer
from transformer_lens.model_bridge import TransformerBridge

from lens_steer.model_cache import converted_gguf_folder, embedded_model_folder
from lens_steer.models import (
    DEFAULT_MODEL,
    EMBEDDED_ALIASES,
    EMBEDDED_OFFICIAL_NAME,
    _load_tokenizer,
    check_device,
    check_model_source,
    default_device,
)
from lens_steer.tokens import encode

__all__ = ["kv_cache_generation_works", "load_bridge", "supports_start_at_layer"]


def _source(name: str) -> tuple[str, Path | None]:
    """The name or folder to boot from, and the local folder holding the tokenizer (if any).

    Sources are resolved, and refused, exactly as :func:`lens_steer.models.load_model` does.
    """
    kind = check_model_source(name)
    if kind == "name":
        return name, None
    if kind == "embedded":
        folder = embedded_model_folder()
    elif kind == "gguf":
        folder = converted_gguf_folder(name)
    else:
        folder = Path(name)
    return str(folder), folder


def load_bridge(
    name_or_path: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> TransformerBridge:
    """Load a model as a ``TransformerBridge`` with HookedTransformer hook names, unprocessed.

    ``enable_compatibility_mode(no_processing=True)`` adds the legacy hook names
    (``blocks.{layer}.hook_resid_post``, ...) and keeps the raw weights, so numbers match
    :func:`lens_steer.models.load_model` (which loads ``from_pretrained_no_processing``).

    Args:
        name_or_path: ``"gemma-3-270m"`` (the embedded default, offline), a local HF folder, a
            ``.gguf`` file, or a TransformerLens model name (downloaded from the Hub), resolved
            and refused as ``load_model`` does.
        device: ``"cuda"``, ``"cpu"``, ...; CUDA when available if ``None``.
        dtype: weight dtype.

    Example:
        >>> bridge = load_bridge(device="cpu")  # doctest: +SKIP
        >>> "blocks.6.hook_resid_post" in bridge.hook_dict  # doctest: +SKIP
        True
    """
    name = os.fspath(name_or_path)
    source, folder = _source(name)
    tokenizer = _load_tokenizer(folder) if folder is not None else None
    bridge = TransformerBridge.boot_transformers(
        source,
        tokenizer=tokenizer,
        device=check_device(device) if device is not None else default_device(),
        dtype=dtype,
    )
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    if name in EMBEDDED_ALIASES:
        bridge.cfg.model_name = EMBEDDED_OFFICIAL_NAME
    bridge.eval()
    return bridge


def supports_start_at_layer(model: HookedTransformer | TransformerBridge) -> bool:
    """Whether ``model(resid, start_at_layer=layer)`` runs only the blocks from ``layer`` on.

    Measured, not read from documentation: a forward hook on every block counts calls during a
    ``start_at_layer`` forward of a small random residual. ``True`` only when the forward runs,
    no block below the start layer is called and the start block is. A forward that raises
    (``TransformerBridge`` raises ``NotImplementedError``) or that still runs the lower blocks
    gives ``False``; then restart from a cached residual is impossible and a sweep must run the
    whole forward.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` (anything with ``cfg`` and
            ``blocks``).

    Example:
        >>> supports_start_at_layer(load_model())  # doctest: +SKIP
        True
        >>> supports_start_at_layer(load_bridge())  # doctest: +SKIP
        False
    """
    blocks = list(model.blocks)
    if len(blocks) < 2:
        return False
    start = len(blocks) // 2
    calls = [0] * len(blocks)

    def counter(layer: int):
        def count(module, args, output) -> None:
            calls[layer] += 1

        return count

    handles = [block.register_forward_hook(counter(layer)) for layer, block in enumerate(blocks)]
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    resid = torch.randn((1, 3, int(model.cfg.d_model)), generator=generator)
    resid = resid.to(device=parameter.device, dtype=parameter.dtype)
    try:
        with torch.inference_mode():
            model(resid, start_at_layer=start, stop_at_layer=start + 1)
    except (NotImplementedError, TypeError, ValueError, RuntimeError):
        return False
    finally:
        for handle in handles:
            handle.remove()
    return not any(calls[:start]) and calls[start] > 0


def kv_cache_generation_works(
    model: HookedTransformer | TransformerBridge, prompt: str = "The capital of France is"
) -> bool:
    """Whether greedy ``generate`` gives the same tokens with and without the KV cache.

    Six greedy tokens of one prompt, both ways. ``False`` means ``use_past_kv_cache=True``
    (the default of ``generate``) gives wrong text on this model and library versions.

    Example:
        >>> kv_cache_generation_works(load_bridge())  # doctest: +SKIP
        False
    """
    device = next(model.parameters()).device
    tokens = torch.tensor([encode(model, prompt)], device=device)  # type: ignore[arg-type]
    runs: list[torch.Tensor] = []
    with torch.inference_mode():
        for cached in (True, False):
            out = model.generate(
                tokens,
                max_new_tokens=6,
                do_sample=False,
                stop_at_eos=False,
                use_past_kv_cache=cached,
                verbose=False,
                return_type="tokens",
            )
            assert isinstance(out, torch.Tensor)
            runs.append(out)
    return bool(torch.equal(runs[0], runs[1]))
