"""A piecewise-constant λ schedule, and training with it on any dynamics.

`L2Schedule` is λ(s) = ``l2[i]`` for ``boundaries[i−1]`` ≤ s < ``boundaries[i]`` (the last value
held after the last boundary), at a learning rate η: what `ntk_l2.laws.learn_schedule` learns on
the kernel and what ``ntk-l2 schedule`` writes as JSON. `run_schedule` trains with it on a
`ntk_l2.laws.dynamics.Dynamics` (the kernel's map with λ changing between steps, L3 and
`derivations/optimize.md` G1, or a finite network) through the dynamics' λ controller, with a
record at every boundary so λ changes exactly there; the run is an `ntk_l2.laws.AutoL2Run`, so
`ntk_l2.laws.compare_autol2` compares it with constant λ as it does AutoL2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common.records import Record
from ntk_l2.laws.autol2 import AutoL2Run
from ntk_l2.laws.dynamics import Dynamics

__all__ = ["L2Schedule", "log_segments", "run_schedule", "segment_boundaries", "whole_steps"]

#: The ``kind`` a schedule file carries (`L2Schedule.to_file_json`).
SCHEDULE_KIND = "ntk_l2.l2_schedule"


def log_segments(budget_step: int, segments: int) -> tuple[int, ...]:
    """The boundaries of ``segments`` log-spaced segments of [0, T): T/2^{P−1}, …, T/4, T/2 rounded
    (P = ``segments``), so each segment is twice as long as the one before; fewer when T is too
    short for distinct whole-step boundaries (at most log₂ T + 1 of them)."""
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"segments: must be an integer >= 1, got {segments!r}")
    if isinstance(budget_step, bool) or not isinstance(budget_step, (int, np.integer)) or budget_step < 2:
        raise ValueError(f"budget_step: must be an integer >= 2, got {budget_step!r}")
    if segments == 1:
        return ()
    # beyond log2(T) + 1 segments the boundaries T/2^j fall below one step and repeat
    segments = min(int(segments), int(math.log2(budget_step)) + 2)
    edges = np.round(budget_step / 2.0 ** np.arange(segments - 1, 0, -1)).astype(np.int64)
    return tuple(int(b) for b in np.unique(edges[(edges > 0) & (edges < budget_step)]))


def whole_steps(name: str, values: Any, steps: int) -> tuple[int, ...]:
    """``values`` (a sequence) as whole steps in (0, ``steps``), or a one-line ``ValueError``
    naming the argument ``name``: the check of segment boundaries and of checkpoints."""
    if not isinstance(values, (Sequence, np.ndarray)) or isinstance(values, str):
        raise ValueError(f"{name}: must be a sequence of whole steps in (0, {steps}), got {values!r}")
    marks = tuple(values)
    if any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b in marks) or any(
        not 0 < b < steps for b in marks
    ):
        raise ValueError(f"{name}: must be whole steps in (0, {steps}), got {marks!r}")
    return tuple(int(b) for b in marks)


def segment_boundaries(steps: int, segments: int, boundaries: Sequence[int] | None = None) -> tuple[int, ...]:
    """The segments' boundaries: ``boundaries`` checked (whole, increasing, in (0, T)) when given
    (``segments`` is then not used), else ``segments`` log-spaced ones (`log_segments`)."""
    if boundaries is None:
        return log_segments(steps, segments)
    marks = whole_steps("boundaries", boundaries, steps)
    if any(b1 <= b0 for b0, b1 in zip(marks, marks[1:], strict=False)):
        raise ValueError(f"boundaries: must be increasing, got {marks!r}")
    return marks


@dataclass(frozen=True)
class L2Schedule(Record):
    """λ(s) = ``l2[i]`` for ``boundaries[i−1]`` ≤ s < ``boundaries[i]`` at learning rate ``learning_rate``.

    ``boundaries`` are increasing whole steps > 0, ``l2`` has one more value (each finite, > 0,
    with ηλ < 1); after the last boundary its value is held. ``budget_step``: the budget T the
    schedule was learned for (informative; the schedule runs for any number of steps).
    """

    learning_rate: float
    boundaries: tuple[int, ...]
    l2: tuple[float, ...]
    budget_step: int

    def __post_init__(self) -> None:
        eta = self.learning_rate
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"learning_rate: must be finite and > 0, got {eta!r}")
        b = self.boundaries
        if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in b) or any(x <= 0 for x in b):
            raise ValueError(f"boundaries: must be whole steps > 0, got {b!r}")
        if any(b1 <= b0 for b0, b1 in zip(b, b[1:], strict=False)):
            raise ValueError(f"boundaries: must be increasing, got {b!r}")
        if len(self.l2) != len(b) + 1:
            raise ValueError(f"l2: needs len(boundaries) + 1 = {len(b) + 1} values, got {len(self.l2)}")
        for lam in self.l2:
            if not (isinstance(lam, (int, float)) and math.isfinite(lam) and 0 < lam and eta * lam < 1):
                raise ValueError(f"l2: every λ must be finite, > 0 and below 1/η = {1 / eta:g}; got {lam!r}")

    def value(self, step: int) -> float:
        """λ in force for the step from ``step`` to ``step`` + 1."""
        return self.l2[int(np.searchsorted(self.boundaries, step, side="right"))]

    def per_step(self, steps: int) -> NDArray[np.float64]:
        """λ_s for s = 0, …, ``steps`` − 1."""
        index = np.searchsorted(np.asarray(self.boundaries, np.int64), np.arange(steps), side="right")
        return np.asarray(self.l2, np.float64)[index]

    def to_file_json(self) -> dict[str, Any]:
        """The schedule file's content: `to_json` plus ``kind`` (checked by `from_file_json`)."""
        return {"kind": SCHEDULE_KIND, **self.to_json()}

    @classmethod
    def from_file_json(cls, data: Any, where: str = "schedule") -> L2Schedule:
        """A schedule file read back: its ``kind`` and every field checked (one-line ``ValueError``)."""
        if not isinstance(data, dict) or data.get("kind") != SCHEDULE_KIND:
            raise ValueError(f"{where}: not an ntk_l2 λ schedule (its 'kind' must be {SCHEDULE_KIND!r})")
        fields = {k: v for k, v in data.items() if k != "kind"}
        try:
            return cls.from_json(fields, where)
        except (TypeError, ValueError) as err:  # field type errors already name ``where``; checks do not
            message = str(err)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def run_schedule(
    dynamics: Dynamics, schedule: L2Schedule, steps: int, record_every: int = 10, learning_rate: float | None = None
) -> AutoL2Run:
    """Train ``steps`` steps on ``dynamics`` with λ(s) of ``schedule`` at η = the schedule's
    (or ``learning_rate``), recorded every ``record_every`` steps, at every boundary and at the end.

    The dynamics' λ controller sets λ at each record to the schedule's value there; since every
    boundary is a record, λ_s = λ(s) at every step (G1). The run is an `AutoL2Run` whose
    ``config`` holds the schedule and whose ``changes`` are its boundaries.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: must be an integer >= 1, got {steps!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise ValueError(f"record_every: must be an integer >= 1, got {record_every!r}")
    eta = schedule.learning_rate if learning_rate is None else float(learning_rate)
    inside = [b for b in schedule.boundaries if b < steps]
    record = np.union1d(np.arange(0, steps + 1, record_every), np.asarray([*inside, steps], np.int64))

    def controller(step: int, error: NDArray, loss: NDArray, l2: NDArray) -> NDArray:
        return np.full(l2.shape, schedule.value(step), np.float64)

    run = dynamics.run_l2_controller(eta, int(steps), schedule.value(0), record.astype(np.int64), controller)
    members = run.l2.shape[0]
    changes = tuple((int(b), i, schedule.value(b)) for b in inside for i in range(members))
    return AutoL2Run.from_controlled(run, changes, eta, {"schedule": schedule.to_json()})
