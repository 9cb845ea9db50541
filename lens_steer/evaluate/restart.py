"""How steerings restart from cached clean residuals and share the forward where they agree.

A steering becomes per-layer edits of ``resid_post`` (:func:`steering_edits`). For one chunk of
prompts (:class:`~lens_steer.evaluate.shared.SharedBatch`) the clean residuals are cached once;
every steering restarts from the clean residual of its first edited layer (``start_at_layer``)
instead of recomputing the layers below, steerings that make the same edits share the forward up
to where they part, and those that end with different vectors at the same layer finish together,
stacked along the batch. :func:`restart_finals` returns every steering's final residuals at the
positions that predict continuation tokens.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor
from transformer_lens import HookedTransformer

from lens_steer.evaluate.shared import PromptState, SharedBatch

if TYPE_CHECKING:
    from lens_steer.steering import Steering

_MAX_TILED_PROMPTS = 64
"""Prompt rows per tiled forward (steerings of one layer stacked along the batch)."""


@dataclass(frozen=True)
class LayerEdit:
    """What a steering does to ``resid_post`` of one layer: adds and direction scalings, in order.

    Consecutive additions are summed into one vector; ``key`` identifies the edit, so
    steerings that make the same edit at the same layer share the forward up to there.
    """

    steps: tuple[tuple[str, Tensor, float], ...]
    key: str

    def __call__(self, x: Tensor) -> Tensor:
        for op, vector, factor in self.steps:
            if op == "add":
                x = x + vector
            else:  # scale the component along the unit vector
                x = x + (factor - 1.0) * (x @ vector).unsqueeze(-1) * vector
        return x


Edits = tuple[tuple[int, LayerEdit], ...]
"""A steering as ``((layer, edit of its resid_post), ...)``, layers ascending."""

_Emit = Callable[[list[str], PromptState], None]


def fast_path_problem(steering: Steering | None) -> str | None:
    """Why the fast path cannot score this steering (``None`` when it can)."""
    if steering is None:
        return None
    for term in steering.terms:
        if term.point != "resid_post" or term.positions != "all":
            return (
                f"term {term.name!r} at layer {term.layer} has point={term.point!r}, "
                f"positions={term.positions!r} (the fast path restarts from resid_post and "
                "edits every position)"
            )
    return None


def steering_edits(model: HookedTransformer, steering: Steering | None) -> Edits:
    """The steering as per-layer edits of resid_post, for the fast path."""
    if steering is None or steering.is_null:
        return ()
    steering.validate(model)
    problem = fast_path_problem(steering)
    if problem is not None:
        raise ValueError(f"Steering {steering.label!r}: {problem}; use method='naive' or 'auto'")
    device, dtype = model.W_U.device, model.W_U.dtype
    by_layer: dict[int, list[tuple[str, Tensor, float]]] = defaultdict(list)
    for term in steering.terms:
        steps = by_layer[term.layer]
        if term.operation == "add":
            vector = term.effective_vector().to(device, dtype)
            if steps and steps[-1][0] == "add":
                steps[-1] = ("add", steps[-1][1] + vector, 1.0)
            else:
                steps.append(("add", vector, 1.0))
        else:
            unit = (term.vector.double() / term.vector.double().norm()).to(device, dtype)
            factor = 0.0 if term.operation == "project_out" else term.alpha
            steps.append(("scale", unit, factor))
    edits = []
    for layer in sorted(by_layer):
        frozen = tuple(by_layer[layer])
        key = hashlib.sha256(
            b"".join(
                op.encode() + repr(factor).encode() + _bytes(vector)
                for op, vector, factor in frozen
            )
        ).hexdigest()[:16]
        edits.append((layer, LayerEdit(frozen, key)))
    return tuple(edits)


def _bytes(vector: Tensor) -> bytes:
    return vector.detach().cpu().contiguous().numpy().tobytes()


def _add(state: PromptState, edit: LayerEdit) -> PromptState:
    """Apply a layer's edit at every position of both parts (``positions="all"``)."""
    prompts, options = state
    return edit(prompts), None if options is None else edit(options)


def _advance(
    model: HookedTransformer,
    batch: SharedBatch,
    state: PromptState | None,
    layer: int,
    target: int,
    clean: Mapping[int, PromptState] | None,
) -> PromptState:
    """``resid_post`` of block ``target`` from ``resid_post`` of block ``layer``.

    At the root (nothing added yet) the clean run has cached it; below, the blocks run.
    """
    if clean is not None:
        return clean[target]
    assert state is not None
    return batch.run(model, state, layer + 1, target + 1)


def _descend(
    model: HookedTransformer,
    batch: SharedBatch,
    state: PromptState | None,
    layer: int,
    group: list[tuple[str, Edits]],
    emit: _Emit,
    clean: Mapping[int, PromptState] | None = None,
) -> None:
    """Finish every steering of ``group`` from ``state`` (resid_post of ``layer``, edits applied).

    ``group`` holds each steering's remaining additions (all at layers above ``layer``).
    Steerings with nothing left share one forward to the end; the others share the forward up
    to their next addition, then split by vector. The root call (``clean`` given, ``layer``
    -1) reads the clean residuals from the cache instead of running blocks.
    """
    last = model.cfg.n_layers - 1
    finished = [key for key, rest in group if not rest]
    if finished:
        emit(finished, _advance(model, batch, state, layer, last, clean))
    pending = [(key, rest) for key, rest in group if rest]
    current, at = state, layer
    for next_layer in sorted({rest[0][0] for _, rest in pending}):
        current = _advance(model, batch, current, at, next_layer, clean)
        at = next_layer
        by_vector: dict[str, list[tuple[str, Edits]]] = defaultdict(list)
        vectors: dict[str, LayerEdit] = {}
        for key, rest in pending:
            if rest[0][0] == next_layer:
                digest = rest[0][1].key
                vectors[digest] = rest[0][1]
                by_vector[digest].append((key, rest[1:]))
        # Vectors after which every steering is done run to the end together, tiled.
        ending = [d for d, sub in by_vector.items() if all(not rest for _, rest in sub)]
        tile = max(1, _MAX_TILED_PROMPTS // len(batch))
        for first in range(0, len(ending), tile):
            digests = ending[first : first + tile]
            states = [_add(current, vectors[digest]) for digest in digests]
            finals = batch.run_tiled(model, states, next_layer + 1, last + 1)
            for digest, final in zip(digests, finals, strict=True):
                emit([key for key, _ in by_vector[digest]], final)
        for digest, subgroup in by_vector.items():
            if digest not in ending:
                _descend(model, batch, _add(current, vectors[digest]), next_layer, subgroup, emit)


def restart_finals(
    model: HookedTransformer, batch: SharedBatch, settings: Mapping[str, Edits]
) -> list[tuple[list[str], Tensor]]:
    """Every steering's predicting final residuals for one chunk: ``[(keys, rows), ...]``.

    Rows are :meth:`SharedBatch.picked_rows` (one per prompt's last position, then one per later
    option token); :attr:`SharedBatch.picked_index` maps the chunk's targets to them.
    """
    clean = batch.clean_states(model, [edits[0][0] for edits in settings.values() if edits])
    finished: list[tuple[list[str], Tensor]] = []

    def emit(keys: list[str], final: PromptState) -> None:
        finished.append((keys, batch.picked_rows(final)))

    _descend(model, batch, None, -1, list(settings.items()), emit, clean)
    return finished
