"""Learning-rate and L2 schedules η(t), λ(t) for the ODE solver.

A schedule is a float (constant), a callable t ↦ value, or a
`PiecewiseConstant`, whose jumps the integrator treats as restart points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ntk_l2.theory import validation as _checks


@dataclass(frozen=True)
class PiecewiseConstant:
    """value(t) = values[i] for boundaries[i−1] ≤ t < boundaries[i].

    Attributes:
      boundaries: increasing times (steps) at which the value jumps, length P.
      values: P + 1 values; values[0] holds before boundaries[0].
    """

    boundaries: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        b = tuple(float(x) for x in self.boundaries)
        v = tuple(float(x) for x in self.values)
        object.__setattr__(self, "boundaries", b)
        object.__setattr__(self, "values", v)
        if len(v) != len(b) + 1:
            raise ValueError(f"values: need len(boundaries) + 1 = {len(b) + 1} values, got {len(v)}")
        if any(not np.isfinite(x) for x in b + v):
            raise ValueError("boundaries/values: must be finite")
        if any(b1 <= b0 for b0, b1 in zip(b, b[1:], strict=False)) or any(x < 0 for x in b):
            raise ValueError(f"boundaries: must be increasing and >= 0, got {b}")

    def __call__(self, t: float) -> float:
        return self.values[int(np.searchsorted(self.boundaries, t, side="right"))]


Schedule = float | Callable[[float], float] | PiecewiseConstant


def as_callable(schedule: Schedule, name: str, *, positive: bool = False) -> Callable[[float], float]:
    """Turn a schedule into t ↦ value; a constant is checked at once (a finite real number,
    > 0 with ``positive``, else ≥ 0), a callable's values when they are evaluated."""
    if isinstance(schedule, PiecewiseConstant) or callable(schedule):
        return schedule  # type: ignore[return-value]
    try:
        value = _checks.check_scalar(schedule, name, positive=positive, nonnegative=not positive)
    except ValueError as err:
        raise ValueError(f"{err}; or pass a callable of t or a PiecewiseConstant") from None
    return lambda t: value


def jump_times(*schedules: Schedule) -> tuple[float, ...]:
    """Sorted union of the jump times of piecewise-constant schedules."""
    times: set[float] = set()
    for s in schedules:
        if isinstance(s, PiecewiseConstant):
            times.update(s.boundaries)
    return tuple(sorted(times))
