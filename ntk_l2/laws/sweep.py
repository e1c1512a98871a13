"""The sweep over (λ, η) and the optimal λ for a budget, written once for any dynamics.

Both ask a `ntk_l2.laws.dynamics.Dynamics` (the kernel theory, `KernelDynamics`, or finite
networks, `FiniteDynamics`) for accuracy curves at constant (η, λ) and read the laws off them
(`derivations/laws.md`, L1–L2): t* and t*·η·λ per run (`ntk_l2.laws.tstar`), and the λ whose
accuracy at the budget T is highest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common.records import Record
from ntk_l2.laws.dynamics import Curve, Dynamics
from ntk_l2.laws.theory import KernelDynamics, LawProblem
from ntk_l2.laws.tstar import record_steps, run_length, time_to_best
from ntk_l2.theory.validation import check_scalar

__all__ = [
    "Compute",
    "KeepRun",
    "LawRun",
    "OptimalL2",
    "at_budget",
    "optimal_l2",
    "optimal_l2_from_run",
    "sweep",
    "theory_sweep",
]

#: The work of one run of a sweep: its `LawRun` and per-member arrays worth keeping with it.
Compute = Callable[[], tuple["LawRun", Mapping[str, np.ndarray]]]


class KeepRun(Protocol):
    """How a sweep obtains one run: ``keep(l2, lr, compute)`` returns ``compute()[0]`` (the run
    done now) or the same run done earlier and kept (e.g. `ntk_l2.experiments.runs.RunStore`)."""

    def __call__(self, l2: float, lr: float, compute: Compute) -> LawRun: ...


@dataclass(frozen=True)
class LawRun(Record):
    """One run of a sweep at constant (λ, η), read off its accuracy curve (`derivations/laws.md`, L1)."""

    l2: float
    lr: float
    t_star: float  # first recorded step within 0.5 points of the best accuracy (`time_to_best`); NaN: none
    t_star_eta_l2: float  # t*·η·λ, the law's constant c
    max_test_acc: float  # best test accuracy over the run (NaN: none defined)
    budget_test_acc: float | None  # test accuracy recorded at the budget T (None: no T, or no record there)
    diverged: bool  # some member (seed) diverged
    steps: tuple[int, ...] = ()  # (R,) recorded steps
    acc_test: tuple[float, ...] = ()  # (R,) test accuracy, mean over members (NaN: undefined)

    @classmethod
    def from_curve(cls, l2: float, lr: float, curve: Curve, budget_step: int | None) -> LawRun:
        """The run of ``curve`` (`time_to_best`; the accuracy recorded at ``budget_step``)."""
        steps = np.asarray(curve.steps, np.float64)
        acc = np.asarray(curve.acc_test, np.float64)
        t_star, best = time_to_best(steps, acc)
        budget_acc = None
        if budget_step is not None:
            where = np.nonzero(steps == budget_step)[0]
            budget_acc = float(acc[where[0]]) if where.size and np.isfinite(acc[where[0]]) else None
        return cls(
            float(l2),
            float(lr),
            t_star,
            t_star * lr * l2,
            best,
            budget_acc,
            bool(curve.diverged),
            tuple(int(s) for s in curve.steps),
            tuple(float(a) for a in acc),
        )

    def without_curve(self) -> LawRun:
        """The run without its recorded ``steps`` and ``acc_test`` (as result summaries keep it)."""
        return replace(self, steps=(), acc_test=())

    def to_json(self) -> dict[str, Any]:
        """`Record.to_json`, without ``steps`` and ``acc_test`` when the run has no curve."""
        out = super().to_json()
        return out if self.steps else {k: v for k, v in out.items() if k not in ("steps", "acc_test")}


def at_budget(runs: Sequence[LawRun], budget_step: int) -> tuple[LawRun, ...]:
    """The runs with ``budget_test_acc`` read from their recorded curves: the accuracy at the last
    record at or before step T = ``budget_step`` (None for a run shorter than T, or undefined
    there). For the third panel of the laws' figure from a sweep run without ``budget_step``."""
    out = []
    for r in runs:
        steps, acc = np.asarray(r.steps, float), np.asarray(r.acc_test, float)
        before = np.nonzero(steps <= budget_step)[0]
        ok = before.size and steps[-1] >= budget_step and np.isfinite(acc[before[-1]])
        out.append(replace(r, budget_test_acc=float(acc[before[-1]]) if ok else None))
    return tuple(out)


def _plan(
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float,
    budget_step: int | None,
    n_records: int,
    max_steps: int,
) -> list[tuple[float, float, NDArray[np.int64]]]:
    """(λ, η, recorded steps) per pair, λ-major, every pair checked before any work."""
    if not (budget > 0 or budget_step is not None):
        raise ValueError(
            f"budget: must be > 0 unless budget_step is given (runs last budget/(ηλ) steps), got {budget!r}"
        )
    plan = []
    for lam in l2_values:
        for eta in learning_rates:
            if not (lam > 0):
                raise ValueError(f"l2_values: the laws need λ > 0 (a run lasts budget/(ηλ) steps), got {lam!r}")
            if not (eta > 0):
                raise ValueError(f"learning_rates: must be > 0, got {eta!r}")
            last = run_length(budget, eta, lam, budget_step)
            if last > max_steps:
                raise ValueError(f"l2_values: λ = {lam:g}, η = {eta:g} needs {last} steps > max_steps = {max_steps}")
            plan.append((float(lam), float(eta), record_steps(last, n_records, budget_step)))
    return plan


def sweep(
    dynamics: Dynamics,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float = 2.0,
    budget_step: int | None = None,
    n_records: int = 200,
    max_steps: int = 10**6,
    keep: KeepRun | None = None,
) -> tuple[LawRun, ...]:
    """The laws' sweep: for each (λ, η), λ-major, the test accuracy over t ≤ budget/(ηλ) steps
    (and to ``budget_step`` = T if later), recorded at about ``n_records`` log-spaced steps and
    at T, read into a `LawRun` (t*, t*·η·λ, best accuracy, accuracy at T).

    Every pair is checked (λ > 0, η > 0, at most ``max_steps`` steps) before any work. Each run
    is obtained through ``keep`` (`KeepRun`; None: computed), so a caller can keep finished
    runs and skip them when the sweep is run again.
    """
    runs = []
    for lam, eta, steps in _plan(l2_values, learning_rates, budget, budget_step, n_records, max_steps):

        def compute(lam: float = lam, eta: float = eta, steps: NDArray[np.int64] = steps) -> tuple[LawRun, Mapping]:
            curve = dynamics.accuracy_curve(eta, lam, steps)
            return LawRun.from_curve(lam, eta, curve, budget_step), curve.arrays

        runs.append(compute()[0] if keep is None else keep(lam, eta, compute))
    return tuple(runs)


def theory_sweep(
    problem: LawProblem,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float = 2.0,
    budget_step: int | None = None,
    n_records: int = 200,
    max_steps: int = 10**6,
    init_samples: int = 0,
    seed: int = 0,
) -> tuple[LawRun, ...]:
    """`sweep` on the kernel theory, ``KernelDynamics(problem, init_samples, seed)``: one
    eigendecomposition serves every pair; ``init_samples`` > 0 predicts single networks."""
    dynamics = KernelDynamics(problem, init_samples, seed)
    return sweep(dynamics, l2_values, learning_rates, budget, budget_step, n_records, max_steps)


@dataclass(frozen=True)
class OptimalL2(Record):
    """The λ with the highest test accuracy at step T among a grid (`optimal_l2`)."""

    l2_opt: float
    acc_at_budget: float  # its accuracy at T
    l2_grid: tuple[float, ...]  # (G,) the λ tried
    acc_grid: tuple[float, ...]  # (G,) their accuracies at T (NaN: undefined)


def optimal_l2(
    dynamics: Dynamics, learning_rate: float, budget_step: int, l2_grid: Sequence[float] | None = None
) -> OptimalL2:
    """The λ whose test accuracy at step T = ``budget_step`` is highest (`derivations/laws.md`, L2).

    Default grid: 41 values log-spaced over [1e-5, 0.5/η] (ηλ < 1 keeps the map defined).
    Ties go to the largest λ (the most regularized of equally good choices). On
    `KernelDynamics` this is λ_opt from the kernel alone: one eigendecomposition serves the grid.
    """
    eta = check_scalar(learning_rate, "learning_rate", positive=True)
    if isinstance(budget_step, bool) or not isinstance(budget_step, (int, np.integer)) or budget_step < 1:
        raise ValueError(f"budget_step: must be an integer >= 1, got {budget_step!r}")
    grid = np.logspace(-5, math.log10(0.5 / eta), 41) if l2_grid is None else np.asarray(l2_grid, np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ValueError(f"l2_grid: must be a non-empty list of finite λ > 0, got {l2_grid!r}")
    steps = np.array([0, int(budget_step)], np.int64)
    accs = [float(dynamics.accuracy_curve(eta, float(lam), steps).acc_test[-1]) for lam in grid]
    filled = np.nan_to_num(np.asarray(accs), nan=-1.0)
    best = int(np.flatnonzero(filled == filled.max())[-1])
    return OptimalL2(float(grid[best]), accs[best], tuple(float(v) for v in grid), tuple(accs))


def optimal_l2_from_run(t_star: float, learning_rate: float, l2: float, budget_step: float) -> float:
    """λ_opt = c/(ηT) with c = t*·η·λ measured on one run (Lewkowycz & Gur-Ari, eq. for λ_opt)."""
    for name, value in (("t_star", t_star), ("learning_rate", learning_rate), ("l2", l2), ("budget_step", budget_step)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return t_star * learning_rate * l2 / (learning_rate * budget_step)
