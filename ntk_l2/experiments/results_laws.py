"""The typed results of the law experiments (`ntk_l2.experiments.laws`): sweep, optimal λ, AutoL2.

Each is a `ntk_l2.experiments.results.Result` written as ``summary.json``; the runs inside are
`ntk_l2.laws.LawRun` records without their curves (those are kept per run in ``runs/`` for
finite networks, and in the figures' data files). Accuracies are fractions in [0, 1]; steps
are gradient steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ntk_l2.common.records import Record, Result
from ntk_l2.laws import GradientOptimum, L2Schedule, LawRun, LearnedSchedule

__all__ = ["RESULTS", "AutoL2Result", "GridPoint", "OptimalL2Result", "ScheduleResult", "SweepResult"]


@dataclass(frozen=True)
class SweepResult(Result):
    """A sweep over (λ, η) (`ntk_l2.experiments.laws.run_sweep`)."""

    KIND = "sweep"

    mode: str  # "theory" or "finite"
    dataset: str
    n_train: int
    n_test: int
    budget: float  # each run lasts budget/(ηλ) steps
    budget_step: int | None  # the budget T (runs last at least T steps), None: none
    finite: dict[str, Any] | None  # the `FiniteSweepConfig` of the finite runs (None in theory mode)
    parameterization: str  # "ntk" or "standard"
    theory_init_samples: int  # NNGP draws of f_0 the theory averages over (0: the mean prediction)
    runs: tuple[LawRun, ...]  # (pairs,) λ-major, without curves
    t_star_eta_l2_spread: float | None  # max/min of t*·η·λ over the runs that did not diverge
    theory_t_star_eta_l2_spread: float | None  # the same for the theory's runs (None: no theory)
    theory_runs: tuple[LawRun, ...] | None  # the theory overlaid on finite runs (None: theory mode, or none)
    reference_max_test_acc: float | None  # best accuracy of the theory at λ = 0 over the longest run
    figure_budget_step: int = 0  # the T of the figure's third panel
    figure: str = ""  # path of laws.png


@dataclass(frozen=True)
class GridPoint(Record):
    """One λ of the optimal-λ grid search and its test accuracy at T (None: undefined)."""

    l2: float
    budget_test_acc: float | None


@dataclass(frozen=True)
class OptimalL2Result(Result):
    """λ_opt for a budget of T steps, three ways (`ntk_l2.experiments.laws.run_optimal_l2`)."""

    KIND = "optimal-l2"

    mode: str
    dataset: str
    lr: float
    budget_step: int  # the budget T
    init_samples: int  # NNGP draws of f_0 in the theory (0: the mean prediction)
    parameterization: str
    probe: LawRun  # the run at the probe λ whose t* gives c = t*·η·λ (without curve)
    l2_opt_one_run: float  # c/(ηT)
    acc_at_budget_one_run: float | None  # accuracy at T of a run at l2_opt_one_run
    l2_opt_kernel: float  # `ntk_l2.laws.optimal_l2` on the kernel
    acc_at_budget_kernel: float | None  # accuracy at T of a run at l2_opt_kernel
    l2_opt_grid: float  # the grid's best λ (first of ties)
    acc_at_budget_grid: float
    grid: tuple[GridPoint, ...]  # (G,)
    ratio_one_run_to_grid: float
    ratio_kernel_to_grid: float
    grid_optimum_interior: bool  # the grid's best is neither end of the grid
    figure: str = ""  # path of optimal_l2.png
    method: str = "grid"  # how l2_opt_kernel was found: "grid" (41 λ) or "gradient" (`ntk_l2.laws.optimal_l2_gradient`)
    gradient: GradientOptimum | None = None  # the gradient search (method "gradient"): path, η, time


@dataclass(frozen=True)
class AutoL2Result(Result):
    """AutoL2 against a grid of constant λ over the same steps (`ntk_l2.experiments.laws.run_autol2`)."""

    KIND = "autol2"

    mode: str
    dataset: str
    lr: float
    steps: int
    config: dict[str, Any]  # the `AutoL2Config`'s fields
    parameterization: str
    finite: dict[str, Any] | None  # the finite runs' `FiniteSweepConfig` (None in theory mode)
    theory_init_samples: int | None  # NNGP draws of f_0 in theory mode (None in finite mode)
    constant: tuple[LawRun, ...]  # the constant-λ runs, without curves
    best_constant_l2: float
    best_constant_acc: float
    best_constant_steps: float  # the best constant run's t*
    autol2_steps_to_best_constant_acc: float | None  # None: never within 0.5 points
    speedup_ratio: float | None  # AutoL2's steps over the constant's t* (None: never)
    autol2_max_test_acc: float
    autol2_final_test_acc: float
    autol2_t_star: float  # AutoL2's own t* (first step within 0.5 points of its best)
    autol2_changes: tuple[tuple[int, int, float], ...]  # (step, member, new λ)
    figure: str = ""  # path of autol2.png
    schedule: L2Schedule | None = None  # a given λ schedule ran instead of AutoL2's rule (the autol2_* fields are its)


@dataclass(frozen=True)
class ScheduleResult(Result):
    """A λ schedule learned on the kernel for a budget of T steps (`ntk_l2.experiments.law_schedule`)."""

    KIND = "schedule"

    dataset: str
    lr: float
    budget_step: int  # the budget T the schedule is learned for
    network: dict[str, Any]  # depth, width, parameterization, arch of the network whose kernel is used
    surrogate: dict[str, Any]  # the `ntk_l2.laws.Surrogate`'s fields
    learned: LearnedSchedule  # the schedule, its surrogate and accuracy at T, the constant optimum
    steps: int  # length of the predicted runs compared in the figure
    schedule_steps_to_constant_best: float | None  # first step within 0.5 points of the constant run's best
    constant_best_acc: float  # the constant λ_opt's best predicted accuracy over the steps
    constant_t_star: float  # and the step it gets there
    ratio: float | None  # schedule_steps_to_constant_best / constant_t_star (None: never)
    schedule_max_test_acc: float
    figure: str = ""  # path of schedule.png


RESULTS = (SweepResult, OptimalL2Result, AutoL2Result, ScheduleResult)
