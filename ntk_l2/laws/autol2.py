"""AutoL2 (Lewkowycz & Gur-Ari, 2020): λ divided whenever the training metric stops improving.

Everything about AutoL2 lives here, written once for any `ntk_l2.laws.dynamics.Dynamics`: the
rule (`AutoL2Config`, applied by one `_Plateau` per member: each seed of a finite network, or
each NNGP draw of single networks in theory, follows its own metric), the run (`autol2`:
the dynamics' λ controller; on the kernel the discrete map with λ changing between steps,
`derivations/laws.md`, L3), the comparison with the best constant λ (`compare_autol2`) and
the choice of AutoL2's settings from the kernel alone (`autol2_scan`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common.records import Record
from ntk_l2.laws.dynamics import ControlledRun, Dynamics
from ntk_l2.laws.sweep import KeepRun, LawRun, sweep
from ntk_l2.laws.tstar import steps_to_reach, time_to_best
from ntk_l2.theory.validation import check_scalar

__all__ = [
    "AutoL2Comparison",
    "AutoL2Config",
    "AutoL2Run",
    "AutoL2Scan",
    "autol2",
    "autol2_scan",
    "autol2_t_star",
    "compare_autol2",
    "constant_runs",
]


@dataclass(frozen=True)
class AutoL2Config:
    """AutoL2 (Lewkowycz & Gur-Ari, 2020): a dynamical L2 schedule.

    λ starts at ``l2_init``; every ``check_every`` steps the metric ("train_error" =
    1 − train accuracy, or "loss" = the data loss) is evaluated, and when its best value
    over the last ``window`` steps is no better than its best value before them (since
    the last change of λ), λ is divided by ``factor``, not below ``l2_min``. After each change
    λ is held for at least ``min_wait``/(ηλ) steps, a fraction of the new λ's own time scale
    1/(ηλ) (`derivations/laws.md` L3): without it a plateau of the metric that outlasts the
    window divides λ again and again, one window apart (0 switches this off).
    """

    l2_init: float = 0.1
    factor: float = 10.0
    window: int = 100
    check_every: int = 10
    l2_min: float = 1e-5
    metric: str = "train_error"
    min_wait: float = 0.0

    def __post_init__(self) -> None:
        if not (self.l2_init > 0 and math.isfinite(self.l2_init)):
            raise ValueError(f"l2_init: must be finite and > 0, got {self.l2_init!r}")
        if not self.factor > 1:
            raise ValueError(f"factor: must be > 1, got {self.factor!r}")
        if self.window < 1 or self.check_every < 1 or self.check_every > self.window:
            raise ValueError(
                f"window, check_every: need 1 <= check_every <= window, got {self.check_every}, {self.window}"
            )
        if not (0 < self.l2_min <= self.l2_init):
            raise ValueError(f"l2_min: must be in (0, l2_init], got {self.l2_min!r}")
        if self.metric not in ("train_error", "loss"):
            raise ValueError(f"metric: must be 'train_error' or 'loss', got {self.metric!r}")
        if not (self.min_wait >= 0 and math.isfinite(self.min_wait)):
            raise ValueError(f"min_wait: must be finite and >= 0 (in units of 1/(ηλ)), got {self.min_wait!r}")

    def hold_steps(self, learning_rate: float, l2: float) -> int:
        """Steps λ is held after it changes to ``l2``: ⌈min_wait/(ηλ)⌉."""
        return int(math.ceil(self.min_wait / (learning_rate * l2))) if self.min_wait > 0 else 0


class _Plateau:
    """The AutoL2 decision rule on a stream of (step, metric) checks, for one run at rate η."""

    def __init__(self, config: AutoL2Config, learning_rate: float):
        self.config, self.learning_rate = config, learning_rate
        self.history: list[tuple[int, float]] = []
        self.since, self.hold = 0, 0

    def next_l2(self, step: int, value: float, l2: float) -> float:
        """Record a check of the metric made under λ = ``l2``; the λ to use from now on: ``l2``
        divided by ``factor`` (not below ``l2_min``) on a plateau once the window and the hold
        of the last change (`AutoL2Config.hold_steps`) have passed, else ``l2``."""
        cfg = self.config
        if l2 <= cfg.l2_min:
            return l2
        self.history.append((step, value))
        if step - self.since < max(cfg.window, self.hold):
            return l2
        recent = [v for s, v in self.history if s > step - cfg.window and s >= self.since]
        before = [v for s, v in self.history if s <= step - cfg.window and s >= self.since]
        if not before or min(recent) < min(before):
            return l2
        new = max(l2 / cfg.factor, cfg.l2_min)
        self.since, self.hold = step, cfg.hold_steps(self.learning_rate, new)
        return new


@dataclass(frozen=True)
class AutoL2Run(Record):
    """An AutoL2 run (`autol2`), recorded at ``steps`` (R,); curves are means over members."""

    steps: tuple[int, ...]  # (R,)
    l2: tuple[float, ...]  # (R,) λ in force after each record: geometric mean over members
    acc_test: tuple[float, ...]  # (R,) test accuracy (NaN: undefined)
    acc_train: tuple[float, ...]  # (R,) training accuracy
    loss_train: tuple[float, ...]  # (R,) data loss
    changes: tuple[tuple[int, int, float], ...]  # (step, member, new λ) per change of λ
    lr: float
    diverged: bool  # some member diverged (finite networks)
    config: dict[str, Any]  # the `AutoL2Config`'s fields

    @classmethod
    def from_controlled(
        cls, run: ControlledRun, changes: Sequence[tuple[int, int, float]], lr: float, config: dict[str, Any]
    ) -> AutoL2Run:
        """The record of a dynamics' controlled run (`ntk_l2.laws.dynamics.ControlledRun`): curves
        averaged over members (λ by its geometric mean), with the λ ``changes`` made and the rule's
        ``config`` (AutoL2's settings, a schedule, …)."""
        return cls(
            tuple(int(s) for s in run.steps),
            _geometric_mean(run.l2),
            _mean(run.acc_test),
            _mean(run.acc_train),
            _mean(run.loss_train),
            tuple(changes),
            float(lr),
            bool(run.diverged),
            config,
        )


def _mean(values: np.ndarray) -> tuple[float, ...]:
    """Mean over members (axis 0) of (members, R) records, NaN where none is defined."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(values)
        total = np.where(finite, values, 0.0).sum(axis=0)
        count = finite.sum(axis=0)
    return tuple(float(v) for v in np.where(count > 0, total / np.maximum(count, 1), np.nan))


def _geometric_mean(values: np.ndarray) -> tuple[float, ...]:
    """Geometric mean over members (axis 0) of (members, R) positive records, exact where the
    members agree (a λ all members share is reported as itself, not up to round-off)."""
    same = np.all(values == values[:1], axis=0)
    return tuple(float(v) for v in np.where(same, values[0], np.exp(np.mean(np.log(values), axis=0))))


def autol2(
    dynamics: Dynamics,
    learning_rate: float,
    steps: int,
    config: AutoL2Config = AutoL2Config(),
    record_every: int | None = None,
) -> AutoL2Run:
    """AutoL2 for ``steps`` steps at η = ``learning_rate``: every member starts at
    ``config.l2_init`` and follows its own metric (`_Plateau`, checked every ``config.check_every``
    steps). Recorded at the checks and every ``record_every`` steps (None: at the checks).

    The metric's undefined values count as the worst: a training error that is NaN (outputs all
    zero) as 1, a NaN loss as +∞.
    """
    eta = check_scalar(learning_rate, "learning_rate", positive=True)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: must be an integer >= 1, got {steps!r}")
    every = config.check_every if record_every is None else int(record_every)
    if every < 1:
        raise ValueError(f"record_every: must be >= 1, got {record_every!r}")
    record = np.union1d(np.arange(0, steps + 1, every), np.arange(0, steps + 1, config.check_every))
    record = np.union1d(record, [steps]).astype(np.int64)
    rules: list[_Plateau] = []
    changes: list[tuple[int, int, float]] = []

    def controller(step: int, error: NDArray, loss: NDArray, l2: NDArray) -> NDArray:
        if not rules:
            rules.extend(_Plateau(config, eta) for _ in range(l2.size))
        if step == 0 or step % config.check_every:
            return l2
        metric = (
            np.where(np.isnan(error), 1.0, error) if config.metric == "train_error" else np.nan_to_num(loss, nan=np.inf)
        )
        new = l2.astype(np.float64).copy()
        for i, rule in enumerate(rules):
            new[i] = rule.next_l2(step, float(metric[i]), float(l2[i]))
            if new[i] != l2[i]:
                changes.append((int(step), i, float(new[i])))
        return new

    run = dynamics.run_l2_controller(eta, int(steps), config.l2_init, record, controller)
    return AutoL2Run.from_controlled(run, changes, learning_rate, dict(config.__dict__))


@dataclass(frozen=True)
class AutoL2Comparison(Record):
    """AutoL2 against the best of a grid of constant λ over the same steps (`compare_autol2`)."""

    best_constant_l2: float
    best_constant_acc: float  # its best test accuracy
    best_constant_steps: float  # its t*: the steps it needs
    steps_to_best_constant_acc: float | None  # AutoL2's first step within 0.5 points of it (None: never)
    ratio: float | None  # those steps over the constant run's t* (None: never)
    max_test_acc: float  # AutoL2's best test accuracy


def compare_autol2(auto: AutoL2Run, constant: Sequence[LawRun]) -> AutoL2Comparison:
    """How fast ``auto`` reaches the best accuracy of the best constant run (by best accuracy):
    its first step within 0.5 points of it (`steps_to_reach`), and that over the constant run's t*."""
    if not constant:
        raise ValueError("constant: needs at least one constant-λ run to compare AutoL2 with")
    best = max(constant, key=lambda r: r.max_test_acc)
    reach = steps_to_reach(auto.steps, auto.acc_test, best.max_test_acc)
    ratio = reach / best.t_star if math.isfinite(reach) and best.t_star > 0 else None
    return AutoL2Comparison(
        best.l2,
        best.max_test_acc,
        best.t_star,
        reach if math.isfinite(reach) else None,
        ratio,
        float(np.nanmax(np.asarray(auto.acc_test, float))),
    )


def autol2_t_star(auto: AutoL2Run) -> float:
    """The first recorded step within 0.5 points of AutoL2's own best accuracy (`time_to_best`)."""
    return time_to_best(auto.steps, auto.acc_test)[0]


def constant_runs(
    dynamics: Dynamics,
    learning_rate: float,
    steps: int,
    constant_l2: Sequence[float],
    n_records: int,
    keep: KeepRun | None = None,
) -> tuple[LawRun, ...]:
    """The constant-λ runs AutoL2 is compared with: each ``steps`` long, recorded at about
    ``n_records`` log-spaced steps and at the end (`sweep` with budget 0 and T = ``steps``),
    each obtained through ``keep`` (`KeepRun`; None: computed)."""
    return sweep(dynamics, constant_l2, [learning_rate], 0.0, steps, n_records=n_records, keep=keep)


@dataclass(frozen=True)
class AutoL2Scan(Record):
    """AutoL2's settings chosen on a dynamics (`autol2_scan`): one comparison per configuration."""

    configs: tuple[dict[str, Any], ...]  # (K,) the `AutoL2Config` fields tried
    rows: tuple[AutoL2Comparison, ...]  # (K,) each against the same best constant run
    best: int | None  # index of the smallest ratio (None: no configuration reaches the constant's accuracy)


def autol2_scan(
    dynamics: Dynamics, learning_rate: float, steps: int, constant_l2: Sequence[float], configs: Sequence[AutoL2Config]
) -> AutoL2Scan:
    """Choose AutoL2's settings (`derivations/laws.md`, L3): each configuration's AutoL2 and
    the constant-λ grid on ``dynamics`` (from the kernel alone with `KernelDynamics`), over
    ``steps``, compared by `compare_autol2`; ``best`` is the fastest configuration."""
    if not configs:
        raise ValueError("configs: needs at least one AutoL2Config to try")
    n_records = max(100, steps // min(c.check_every for c in configs))
    constant = constant_runs(dynamics, learning_rate, steps, constant_l2, n_records)
    rows = tuple(compare_autol2(autol2(dynamics, learning_rate, steps, cfg), constant) for cfg in configs)
    ratios = [np.inf if r.ratio is None else r.ratio for r in rows]
    best = int(np.argmin(ratios)) if np.isfinite(min(ratios)) else None
    return AutoL2Scan(tuple(dict(c.__dict__) for c in configs), rows, best)
