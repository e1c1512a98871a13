"""The two phases of training (Ginsburg 2020; `derivations/deep_linear.md`, DL8).

Optimization phase: the loss falls to its floor. Regularization phase: the
trajectory moves along the minima (the loss stays at its floor) while the
layer imbalance shrinks.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def optimization_phase_end(
    steps: ArrayLike, loss: ArrayLike, floor: float | None = None, fraction: float = 0.01, tail: float = 0.1
) -> float:
    """The first record step at which L − floor ≤ ``fraction`` × (L_0 − floor).

    Args:
      floor: the loss floor; default the median of the last ``tail`` of the records
        (the stationary level when noise keeps the loss above its minimum).
      fraction: the part of the initial excess loss still left at the end of the phase.

    Returns:
      The step, or NaN if the loss never gets there (or starts at its floor).
    """
    steps, loss = np.asarray(steps, np.float64), np.asarray(loss, np.float64)
    if steps.shape != loss.shape or steps.ndim != 1 or steps.size < 2:
        raise ValueError(f"loss: expected the shape of steps {steps.shape} (1-D, >= 2 records), got {loss.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: must be in (0, 1), got {fraction!r}")
    if floor is None:
        floor = float(np.nanmedian(loss[-max(1, int(round(tail * loss.size))) :]))
    excess0 = loss[0] - floor
    if not excess0 > 0:
        return math.nan
    hit = np.nonzero(loss - floor <= fraction * excess0)[0]
    return float(steps[hit[0]]) if hit.size else math.nan


def imbalance_half_time(steps: ArrayLike, imbalance: ArrayLike) -> float:
    """The first record step at which the imbalance norm is at most half its initial value (NaN if never)."""
    steps, imbalance = np.asarray(steps, np.float64), np.asarray(imbalance, np.float64)
    if steps.shape != imbalance.shape or steps.ndim != 1:
        raise ValueError(f"imbalance: expected the shape of steps {steps.shape}, got {imbalance.shape}")
    hit = np.nonzero(imbalance <= 0.5 * imbalance[0])[0]
    return float(steps[hit[0]]) if hit.size and imbalance[0] > 0 else math.nan
