"""What to train and what comes back: `TrainConfig`, `TrainResult`, and `log_steps` (record steps).

`ntk_l2.finite.train.train` takes a `TrainConfig` and returns a `TrainResult`; both are
importable from `ntk_l2.finite.train`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]
ScheduleFn = Callable[[Any], Any]  # step (traced int) -> value


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the rule `ntk_l2.finite.rules.l2_rule` (learning_rate, l2, momentum, nesterov)
    applied to the full batch or to minibatches, and what to record.

    Attributes:
      learning_rate: η, a number or a function of the step (jax-traceable).
      l2: λ, a number, a function of the step, or a tuple of numbers: a grid of
        λ values trained together, one ensemble member per (λ, seed) pair.
      steps: number of steps S.
      batch_size: None for full-batch gradient descent, else minibatch SGD.
      momentum: momentum coefficient β (0 = plain gradient descent).
      nesterov: use the Nesterov form θ ← θ − η(g + βv) instead of heavy ball
        θ ← θ − ηv (only meaningful with momentum > 0).
      record_steps: steps at which to record; default ``n_records`` log-spaced
        steps in [0, S] including both ends.
      n_records: number of default record steps.
      ntk_steps: steps at which to record the empirical NTK on the probe set
        (must be among the record steps); empty = never.
      n_probe: number of training points in the NTK probe set.
      float64: train in float64 (default float32).
      divergence_factor: stop when the data loss exceeds this × its initial
        value (or is not finite).
      seed_offset: added to each seed to form the PRNG key.
    """

    learning_rate: float | ScheduleFn = 1.0
    l2: float | ScheduleFn | tuple[float, ...] = 0.0
    steps: int = 1000
    batch_size: int | None = None
    momentum: float = 0.0
    nesterov: bool = False
    record_steps: tuple[int, ...] | None = None
    n_records: int = 40
    ntk_steps: tuple[int, ...] = ()
    n_probe: int = 32
    float64: bool = False
    divergence_factor: float = 1e6
    seed_offset: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps: must be an integer >= 0, got {self.steps!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")
        if not (0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov: must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: only meaningful with momentum > 0")
        if isinstance(self.l2, (tuple, list)):
            numbers = (int, float, np.floating, np.integer)
            if not self.l2 or not all(isinstance(v, numbers) and math.isfinite(v) and v >= 0 for v in self.l2):
                raise ValueError(f"l2: a grid must be a non-empty tuple of finite numbers >= 0, got {self.l2!r}")
            object.__setattr__(self, "l2", tuple(float(v) for v in self.l2))
        for name in ("learning_rate", "l2"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                continue
            if not callable(value) and not (math.isfinite(value) and value >= 0 and (value > 0 or name == "l2")):
                bound = "> 0" if name == "learning_rate" else ">= 0"
                raise ValueError(f"{name}: must be {bound} and finite, got {value!r}")
        steps = self.recorded_steps()
        if not steps:
            raise ValueError("record_steps: must hold at least one step")
        if any(s < 0 or s > self.steps for s in steps):
            raise ValueError(f"record_steps: must lie in [0, steps={self.steps}]")
        missing = sorted(set(self.ntk_steps) - set(steps))
        if missing:
            raise ValueError(f"ntk_steps: {missing} are not record steps")

    def recorded_steps(self) -> tuple[int, ...]:
        """The sorted, unique record steps."""
        if self.record_steps is not None:
            return tuple(sorted({int(s) for s in self.record_steps}))
        return tuple(log_steps(self.steps, self.n_records).tolist())


def log_steps(last: int, n: int = 200, extra: Sequence[int] = ()) -> NDArray[np.int64]:
    """Sorted unique integer steps 0, then ~n log-spaced steps up to ``last``, plus ``extra``."""
    if last < 0:
        raise ValueError(f"last: must be >= 0, got {last}")
    grid = np.round(np.logspace(0, math.log10(max(last, 1)), max(n - 1, 1))).astype(np.int64) if last else []
    return np.unique(np.concatenate([[0], grid, [last], np.asarray(extra, np.int64)])).astype(np.int64)


@dataclass(frozen=True)
class TrainResult:
    """Records of one run or of a vmapped ensemble (leading axis: ensemble member).

    Arrays are indexed [member, record, ...]; ``steps`` is (R,). Members are the
    seeds, or with a λ grid the (λ, seed) pairs, λ-major: ``member_l2`` and
    ``member_seed`` say which is which.
    """

    steps: Array
    fx_train: Array
    fx_test: Array | None
    loss_data: Array
    loss_l2: Array
    acc_train: Array | None
    acc_test: Array | None
    layer_norms: Array  # [seed, record, layer]: ‖θ_layer‖
    ntk_steps: Array
    ntk_probe: Array | None  # [seed, ntk record, p·c, p·c]
    diverged: Array  # [seed] bool
    diverged_at: Array  # [seed] step of divergence or −1
    member_seed: Array | None = None  # [member] seed
    member_l2: Array | None = None  # [member] λ (a λ grid), else None
    l2_records: Array | None = None  # [member, record] λ in force after each record (l2_controller)
