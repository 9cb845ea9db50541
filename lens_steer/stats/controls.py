"""Effects net of random-direction controls at the same layer and dose (SPEC §8 "Controls").

A random direction with the steering vector's norm shows how much of an effect any push of that
size produces; only what the steering vector does beyond it is attributed to its direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from lens_steer.stats._plain import plain
from lens_steer.stats.intervals import IntervalMethod
from lens_steer.stats.paired import PairedEffect, paired_effect


@dataclass(frozen=True)
class ControlledEffect:
    """An intervention's effect, the random-direction controls' effect and the net of the two.

    ``steered`` is after - before (with outcomes: McNemar), ``control`` is the mean control
    minus before, and ``net`` is ``steered - control`` per item, the effect that counts.
    """

    steered: PairedEffect
    control: PairedEffect
    net: PairedEffect
    n_controls: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; NaN becomes None."""
        return plain(
            {
                "steered": self.steered.to_json(),
                "control": self.control.to_json(),
                "net": self.net.to_json(),
                "n_controls": self.n_controls,
            }
        )


def net_effect(
    after_margin: Float[ArrayLike, " item"],
    control_margins: Float[ArrayLike, "control item"],
    before_margin: Float[ArrayLike, " item"],
    *,
    after_outcome: Float[ArrayLike, " item"] | None = None,
    control_outcomes: Float[ArrayLike, "control item"] | None = None,
    before_outcome: Float[ArrayLike, " item"] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: IntervalMethod = "percentile",
    power: float = 0.8,
) -> ControlledEffect:
    """Effect net of random-direction controls at the same layer and dose.

    Per item, ``net = (after - before) - mean_k(control_k - before)``. The unsteered margin
    cancels item by item, so ``net = after - mean_k(control_k)``: the comparison is the steered
    model against the average control on the same items. ``before`` still defines the two
    effects reported beside the net (``steered`` and ``control``).

    Args:
        after_margin: per-item margin with the intervention ``[item]``.
        control_margins: per-item margins with each of ``k`` random directions ``[k, item]``.
        before_margin: per-item margin without intervention ``[item]``.
        after_outcome, control_outcomes, before_outcome: optional 0/1 outcomes of the same
            shapes; the net accuracy change compares ``after`` with the controls' mean outcome.
        n_bootstrap, seed, confidence, method, power: as in :func:`paired_effect`.

    Example:
        >>> effect = net_effect([2.0, 3.0, 4.0], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [0.0, 1.0, 2.0])
        >>> effect.steered.mean_delta, effect.control.mean_delta, effect.net.mean_delta
        (2.0, 1.0, 1.0)
    """
    controls = np.asarray(control_margins, dtype=np.float64)
    if controls.ndim != 2 or controls.shape[0] < 1:
        raise ValueError(f"control_margins must be [control, item], got shape {controls.shape}")
    options: dict[str, Any] = {
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "confidence": confidence,
        "method": method,
        "power": power,
    }
    control_outcome = None
    if control_outcomes is not None:
        control_outcome = np.asarray(control_outcomes, dtype=np.float64)
        if control_outcome.shape != controls.shape:
            raise ValueError(
                f"control_outcomes {control_outcome.shape} differ from margins {controls.shape}"
            )
        control_outcome = control_outcome.mean(axis=0)
    steered = paired_effect(
        after_margin,
        before_margin,
        after_outcome=after_outcome,
        before_outcome=before_outcome,
        **options,
    )
    with_outcomes = control_outcome is not None and before_outcome is not None
    control = paired_effect(
        controls.mean(axis=0),
        before_margin,
        after_outcome=control_outcome if with_outcomes else None,
        before_outcome=before_outcome if with_outcomes else None,
        **options,
    )
    with_outcomes = control_outcome is not None and after_outcome is not None
    net = paired_effect(
        after_margin,
        controls.mean(axis=0),
        after_outcome=after_outcome if with_outcomes else None,
        before_outcome=control_outcome if with_outcomes else None,
        **options,
    )
    return ControlledEffect(steered, control, net, n_controls=controls.shape[0])
