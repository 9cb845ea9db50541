"""Hook factories that edit the residual stream: add a vector, project or scale a direction.

Each factory returns a plain function with TransformerLens' ``(activation, hook) -> activation``
signature that closes over its parameters, so it composes with ``model.hooks(...)``,
``run_with_hooks`` and ``model.generate`` and has no dependency on lens_steer's data classes.

Positions. A hook can edit every position (``"all"``), the prompt only (``"prompt"``), generated
tokens only (``"generated"``), one index, a list of indices, or a boolean ``[batch, pos]`` mask.
Indices are absolute positions in the sequence (prompt first, then generated tokens); negative
indices count from the end of the prompt (``-1`` is the last prompt token). ``"prompt"``,
``"generated"`` and negative indices need the prompt length: pass ``prompt_length`` (for a
left-padded batch, the padded width). Without it, negative indices count from the end of the
forward pass that started the sequence. An index past the end of the forward pass that starts a
sequence raises an ``IndexError`` naming the hook, the index and the length, unless
``prompt_length`` is given and the index lies past the prompt: it then addresses a token that
``generate`` will produce.

Generation with the KV cache. ``model.generate`` runs the whole prompt once, then one new
position per step. A hook only sees activations, so it counts positions itself: a call with more
than one position (or a new batch size) starts a new sequence at position 0; a call with a single
position continues the previous sequence at the next position. A hook's first call always starts
a sequence. Build fresh hooks for each ``generate`` call when a prompt can be a single token long
(one-token prompts cannot be told apart from cached steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

HookFn = Callable[[Tensor, HookPoint], Tensor]
"""A TransformerLens forward hook: ``(activation, hook) -> activation``."""

PositionName = Literal["all", "prompt", "generated"]
Positions = PositionName | int | Sequence[int] | Bool[Tensor, "batch pos"]
"""Which positions a hook edits; see the module docstring."""

POSITION_NAMES = ("all", "prompt", "generated")
RESIDUAL_POINTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
"""Hook points of width ``d_model`` inside a block, accepted by :func:`resid_hook_name`."""

_MaskFn = Callable[[Tensor, HookPoint], Bool[Tensor, "batch pos"] | None]


def resid_hook_name(layer: int, point: str = "resid_post") -> str:
    """The TransformerLens hook name of a residual-stream point in a block.

    Args:
        layer: block index, 0..n_layers-1.
        point: one of ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``.

    Example:
        >>> resid_hook_name(6)
        'blocks.6.hook_resid_post'
    """
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {layer!r}")
    if layer < 0:
        raise ValueError(f"layer must be >= 0, got {layer}")
    if point not in RESIDUAL_POINTS:
        raise ValueError(f"Unknown hook point {point!r}; accepted: {', '.join(RESIDUAL_POINTS)}")
    return f"blocks.{layer}.hook_{point}"


def check_hook_point(model: HookedTransformer, name: str) -> None:
    """Raise a ValueError naming the hook point and the model's layers when ``name`` is unknown."""
    if name not in model.hook_dict:
        raise ValueError(
            f"Hook point {name!r} does not exist in {model.cfg.model_name} "
            f"(n_layers={model.cfg.n_layers}, layers 0..{model.cfg.n_layers - 1})"
        )


def _checked_vector(vector: Tensor, what: str, *, nonzero: bool = False) -> Tensor:
    if not isinstance(vector, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(vector).__name__}")
    if vector.ndim != 1:
        raise ValueError(f"{what} must be 1-D [d_model], got shape {tuple(vector.shape)}")
    if not vector.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {vector.dtype}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} contains NaN or inf")
    if nonzero and not bool(vector.any()):
        raise ValueError(f"{what} is the zero vector")
    return vector.detach().clone()


def _hook_name(hook: HookPoint | None) -> str:
    return str(getattr(hook, "name", None) or "hook")


def _checked_width(activation: Tensor, vector: Tensor, hook: HookPoint, what: str) -> None:
    if activation.shape[-1] != vector.shape[0]:
        raise ValueError(
            f"{_hook_name(hook)}: {what} has width {vector.shape[0]} but the activation has "
            f"d_model {activation.shape[-1]}"
        )


def _checked_prompt_length(prompt_length: int | None) -> None:
    if prompt_length is None:
        return
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int):
        raise TypeError(f"prompt_length must be an int, got {prompt_length!r}")
    if prompt_length < 1:
        raise ValueError(f"prompt_length must be >= 1, got {prompt_length}")


def _position_mask_fn(positions: Positions, prompt_length: int | None) -> _MaskFn:
    """Build the closure that says which positions of each call a hook edits (None: all).

    The closure keeps its own position count so that KV-cache steps of ``generate`` map to
    absolute positions (see the module docstring).
    """
    _checked_prompt_length(prompt_length)
    indices: list[int] | None = None
    mask: Tensor | None = None
    if isinstance(positions, str):
        if positions not in POSITION_NAMES:
            raise ValueError(
                f"Unknown positions {positions!r}; accepted: {', '.join(POSITION_NAMES)}, "
                "an int, a list of ints or a bool [batch, pos] mask"
            )
        if positions == "all":
            return lambda activation, hook: None
        if prompt_length is None:
            raise ValueError(f"positions={positions!r} needs prompt_length")
    elif isinstance(positions, Tensor):
        if positions.dtype != torch.bool or positions.ndim != 2:
            raise ValueError(
                "A positions mask must be a bool tensor [batch, pos], got "
                f"{positions.dtype} of shape {tuple(positions.shape)}"
            )
        mask = positions.detach().clone()
    elif isinstance(positions, int) and not isinstance(positions, bool):
        indices = [positions]
    elif isinstance(positions, Sequence) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in positions
    ):
        if len(positions) == 0:
            raise ValueError("positions is an empty list of indices")
        indices = [int(p) for p in positions]
    else:
        raise TypeError(
            f"positions must be 'all', 'prompt', 'generated', an int, a list of ints or a bool "
            f"[batch, pos] mask, got {positions!r}"
        )

    state: dict[str, int] = {"next": 0, "batch": -1, "first_length": 0}

    def mask_for(activation: Tensor, hook: HookPoint) -> Bool[Tensor, "batch pos"]:
        batch, n_pos = activation.shape[0], activation.shape[1]
        if n_pos > 1 or batch != state["batch"]:
            start = 0  # a new sequence (a plain forward, or the prompt step of generate)
            state["first_length"] = n_pos
        else:
            start = state["next"]  # one more cached generation step
        state["next"], state["batch"] = start + n_pos, batch
        absolute = torch.arange(start, start + n_pos, device=activation.device)
        reference = prompt_length if prompt_length is not None else state["first_length"]
        if positions == "prompt":
            return (absolute < reference).unsqueeze(0)
        if positions == "generated":
            return (absolute >= reference).unsqueeze(0)
        if mask is not None:
            if mask.shape[0] != batch:
                raise ValueError(
                    f"{_hook_name(hook)}: positions mask has {mask.shape[0]} rows but the batch has {batch}"
                )
            inside = absolute < mask.shape[1]
            picked = torch.zeros((batch, n_pos), dtype=torch.bool, device=activation.device)
            picked[:, inside] = mask.to(activation.device)[:, absolute[inside]]
            return picked
        assert indices is not None
        resolved = [index + reference if index < 0 else index for index in indices]
        for index, absolute_index in zip(indices, resolved, strict=True):
            if absolute_index < 0:
                raise IndexError(
                    f"{_hook_name(hook)}: position index {index} is before the start of a "
                    f"{reference}-token prompt"
                )
            # Checked when a sequence starts, before anything is edited: an index past its end
            # would silently edit nothing (or only the other indices of a list). Past the
            # prompt, an index addresses a generated token, reached by later cached steps.
            generated = prompt_length is not None and absolute_index >= prompt_length
            if start == 0 and absolute_index >= n_pos and not generated:
                raise IndexError(
                    f"{_hook_name(hook)}: position index {index} is outside the {n_pos}-token "
                    f"sequence (positions 0..{n_pos - 1}); to steer generated tokens by index, "
                    "pass prompt_length"
                )
        wanted = torch.tensor(resolved, device=activation.device)
        return torch.isin(absolute, wanted).unsqueeze(0)

    return mask_for


def _masked(
    activation: Float[Tensor, "batch pos d_model"],
    edited: Float[Tensor, "batch pos d_model"],
    mask: Bool[Tensor, "batch pos"] | None,
) -> Float[Tensor, "batch pos d_model"]:
    """``edited`` where the mask is set, the untouched activation elsewhere."""
    if mask is None:
        return edited
    return torch.where(mask.unsqueeze(-1), edited, activation)


def add_vector_hook(
    vector: Float[Tensor, " d_model"],
    *,
    alpha: float = 1.0,
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> HookFn:
    """A hook that adds ``alpha * vector`` to the activation at the chosen positions.

    The vector is copied when the hook is built and cast to the activation's dtype and device
    at each call.

    Args:
        vector: the direction to add, ``[d_model]``.
        alpha: its scale (raw; see ``lens_steer.steering`` for norm-relative scales).
        positions: which positions to edit (see the module docstring).
        prompt_length: the prompt's (padded) length; needed for ``"prompt"``/``"generated"``.

    Example:
        >>> hook = add_vector_hook(torch.ones(4), alpha=2.0)
        >>> hook(torch.zeros(1, 3, 4), None)[0, 0]
        tensor([2., 2., 2., 2.])
    """
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    scaled = _checked_vector(vector, "vector") * alpha
    mask_for = _position_mask_fn(positions, prompt_length)

    def add_vector(activation: Tensor, hook: HookPoint) -> Tensor:
        _checked_width(activation, scaled, hook, "vector")
        mask = mask_for(activation, hook)
        edited = activation + scaled.to(dtype=activation.dtype, device=activation.device)
        return _masked(activation, edited, mask)

    return add_vector


def scale_direction_hook(
    direction: Float[Tensor, " d_model"],
    factor: float,
    *,
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> HookFn:
    """A hook that multiplies the activation's component along ``direction`` by ``factor``.

    The orthogonal part is left as it is. ``factor=1`` is the identity, ``factor=0`` projects
    the direction out, ``factor=-1`` reflects it.

    Args:
        direction: the direction (any non-zero norm; it is normalised), ``[d_model]``.
        factor: the multiplier of the component along the direction.
        positions: which positions to edit (see the module docstring).
        prompt_length: the prompt's (padded) length; needed for ``"prompt"``/``"generated"``.

    Example:
        >>> hook = scale_direction_hook(torch.tensor([1.0, 0.0]), 3.0)
        >>> hook(torch.tensor([[[2.0, 5.0]]]), None)
        tensor([[[6., 5.]]])
    """
    if not math.isfinite(factor):
        raise ValueError(f"factor must be finite, got {factor}")
    checked = _checked_vector(direction, "direction", nonzero=True)
    unit = (checked.double() / checked.double().norm()).to(checked.dtype)
    mask_for = _position_mask_fn(positions, prompt_length)

    def scale_direction(activation: Tensor, hook: HookPoint) -> Tensor:
        _checked_width(activation, unit, hook, "direction")
        mask = mask_for(activation, hook)
        u = unit.to(dtype=activation.dtype, device=activation.device)
        component = (activation @ u).unsqueeze(-1)
        edited = activation + (factor - 1.0) * component * u
        return _masked(activation, edited, mask)

    return scale_direction


def project_out_hook(
    direction: Float[Tensor, " d_model"],
    *,
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> HookFn:
    """A hook that removes the activation's component along ``direction`` (directional ablation).

    Args:
        direction: the direction to remove (normalised internally), ``[d_model]``.
        positions: which positions to edit (see the module docstring).
        prompt_length: the prompt's (padded) length; needed for ``"prompt"``/``"generated"``.

    Example:
        >>> hook = project_out_hook(torch.tensor([1.0, 0.0]))
        >>> hook(torch.tensor([[[2.0, 5.0]]]), None)
        tensor([[[0., 5.]]])
    """
    return scale_direction_hook(direction, 0.0, positions=positions, prompt_length=prompt_length)


def multi_layer_hooks(
    additions: Mapping[int, Float[Tensor, " d_model"]],
    *,
    point: str = "resid_post",
    positions: Positions = "all",
    prompt_length: int | None = None,
) -> list[tuple[str, HookFn]]:
    """Hooks that add each (already scaled) vector at its layer, all in one forward pass.

    Args:
        additions: ``{layer: vector}``; each vector is added as it is (alpha 1).
        point: the residual point in each block (see :func:`resid_hook_name`).
        positions: which positions to edit, the same for every layer.
        prompt_length: the prompt's (padded) length; needed for ``"prompt"``/``"generated"``.

    Example:
        >>> hooks = multi_layer_hooks({2: torch.ones(4), 5: -torch.ones(4)})
        >>> [name for name, _ in hooks]
        ['blocks.2.hook_resid_post', 'blocks.5.hook_resid_post']
    """
    if not additions:
        raise ValueError("additions is empty: give at least one {layer: vector}")
    return [
        (
            resid_hook_name(layer, point),
            add_vector_hook(additions[layer], positions=positions, prompt_length=prompt_length),
        )
        for layer in sorted(additions)
    ]


@contextmanager
def steering_hooks(
    model: HookedTransformer, fwd_hooks: Sequence[tuple[str, HookFn]]
) -> Iterator[HookedTransformer]:
    """Attach forward hooks for the duration of a ``with`` block; they are removed on exit.

    Removal is guaranteed on exceptions too (``model.hooks`` resets its own hooks in a
    ``finally``). Hook names are checked against the model before anything is attached.

    Args:
        model: the model to edit.
        fwd_hooks: ``(hook_name, hook_fn)`` pairs, e.g. from :func:`multi_layer_hooks`.

    Example:
        >>> with steering_hooks(model, multi_layer_hooks({3: v})) as steered:  # doctest: +SKIP
        ...     logits = steered(tokens)
    """
    for name, hook in fwd_hooks:
        if not isinstance(name, str):
            raise TypeError(f"Hook names must be strings, got {name!r}")
        if not callable(hook):
            raise TypeError(f"The hook for {name!r} is not callable")
        check_hook_point(model, name)
    with model.hooks(fwd_hooks=list(fwd_hooks)) as hooked:
        yield hooked
