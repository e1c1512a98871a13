"""λ (and η) and a λ schedule chosen by gradient on the kernel, for a budget of T steps.

The predicted test outputs at step T are an exact, differentiable function of every λ_s
(`ntk_l2.theory.schedule_map`, `derivations/optimize.md` G1–G2). A smooth surrogate of the test
error (`ntk_l2.laws.surrogate.Surrogate`: by default the softmax-smoothed error at a
temperature, else the cross-entropy or the squared error of the predicted outputs, G3),
averaged over the mean prediction or over NNGP draws of the initial outputs (single networks),
is minimized in log λ by L-BFGS-B with exact gradients (G4):

- `optimal_l2_gradient`: one λ for the whole run (optionally η too), from the best of a few
  starting points;
- `learn_schedule`: a piecewise-constant λ(t) on log-spaced segments (`log_segments`) or given
  ones, started from the constant optimum (G5).

Both report the predicted accuracy at T of what they found, computed exactly (not the surrogate);
with NNGP draws, `learn_schedule` also reports it on other draws than those it learned on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from jax.experimental import enable_x64
from scipy.optimize import minimize

from ntk_l2.common.records import Record
from ntk_l2.laws.schedule import L2Schedule, segment_boundaries, whole_steps
from ntk_l2.laws.surrogate import Members, Surrogate, evaluator
from ntk_l2.laws.theory import LawProblem
from ntk_l2.theory import check_discrete_stability, stability_limit

__all__ = ["GradientOptimum", "LearnedSchedule", "learn_schedule", "optimal_l2_gradient"]


@dataclass(frozen=True)
class GradientOptimum(Record):
    """λ_opt (and η) minimizing the surrogate at T (`optimal_l2_gradient`)."""

    l2_opt: float
    lr_opt: float
    objective: float  # the surrogate there
    acc_at_budget: float  # its predicted test accuracy at T (exact, mean over members)
    budget_step: int
    path: tuple[tuple[float, float, float], ...]  # (λ, η, surrogate) per evaluation, starts first
    starts: int  # how many of the path's evaluations were starting points
    seconds: float  # wall time, kernel factorization included
    surrogate: dict[str, Any]
    converged: bool = True  # L-BFGS-B met its tolerance (False: stopped at the iteration limit or in a line search)


@dataclass(frozen=True)
class LearnedSchedule(Record):
    """A piecewise-constant λ(t) minimizing the surrogate at T (`learn_schedule`)."""

    schedule: L2Schedule
    objective: float  # the surrogate under the schedule: at T, or its mean over T and the checkpoints
    acc_at_budget: float  # predicted test accuracy at T under the schedule (exact)
    constant: GradientOptimum  # the constant optimum it started from
    path: tuple[float, ...]  # the surrogate per evaluation
    seconds: float
    surrogate: dict[str, Any]
    checkpoints: tuple[int, ...] = ()  # steps before T whose surrogate is averaged in (G5)
    converged: bool = True  # L-BFGS-B met its tolerance
    # accuracy at T on S other NNGP draws (seed + 1): free of the selection on the learning draws (G5);
    # None for the mean prediction. And the constant optimum's on the same draws.
    acc_at_budget_held_out: float | None = None
    constant_acc_at_budget_held_out: float | None = None


def _check_stable(problem: LawProblem, eta: float, lam: float, steps: int) -> None:
    """D5 for constant (η, λ) over ``steps`` steps (at the last one for k = 0, whose kernel grows):
    the solvers' one-line ``ValueError`` naming ``learning_rate`` otherwise."""
    eig = problem.factorized()[0]
    last = steps - 1 if problem.degree == 0 else 0
    check_discrete_stability(
        eta, lam, problem.degree, float(eig.evals[-1]), float(problem.y_train.size), last_step=last
    )


def _stable(problem: LawProblem, eta: float, lam: float, steps: int) -> bool:
    """`_check_stable` as a yes or no."""
    try:
        _check_stable(problem, eta, lam, steps)
    except ValueError:
        return False
    return True


def _bounds(
    problem: LawProblem, eta: float, l2_bounds: tuple[float, float] | None, steps: int, eta_max: float | None = None
) -> tuple[float, float]:
    """(λ_min, λ_max): given, or [1e-6, 0.5/η] (ηλ ≤ 1/2 keeps the map's factor 1 − ηλ away from 0),
    with λ_max lowered to the largest λ of a fine log grid below which every λ is stable (D5) at η
    and, when η is optimized too, at ``eta_max`` (for k = 1 and k = 0 the limit falls as λ grows;
    for k = 0 it is checked at the last step). λ_min itself must be stable."""
    top = max(eta, eta_max or eta)
    lo, hi = (1e-6, 0.5 / top) if l2_bounds is None else (float(l2_bounds[0]), float(l2_bounds[1]))
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi and top * hi < 1):
        raise ValueError(f"l2_bounds: need 0 < λ_min < λ_max < 1/η = {1 / top:g}, got {l2_bounds!r}")
    rates = (eta,) if eta_max is None else (eta, eta_max)
    for rate in rates:  # λ_min unstable: the solvers' own one-line error, naming learning_rate
        _check_stable(problem, rate, lo, steps)
    grid = np.geomspace(lo, hi, 200)
    stable = np.array([all(_stable(problem, rate, float(lam), steps) for rate in rates) for lam in grid])
    first_bad = int(np.argmin(stable)) if not stable.all() else grid.size
    return lo, float(grid[max(first_bad - 1, 0)])


def _check_budget(budget_step: Any) -> int:
    if isinstance(budget_step, bool) or not isinstance(budget_step, (int, np.integer)) or budget_step < 2:
        raise ValueError(f"budget_step: must be an integer >= 2, got {budget_step!r}")
    return int(budget_step)


def _minimize(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, bounds: list, iters: int, gtol: float = 1e-5
) -> Any:
    """L-BFGS-B on ``fun`` (value and exact gradient); non-finite values refused (G4). ``gtol``:
    its projected-gradient tolerance (SciPy's default; schedules pass a tiny one, see `learn_schedule`)."""

    def checked(x: np.ndarray) -> tuple[float, np.ndarray]:
        val, grad = fun(x)
        if not (np.isfinite(val) and np.all(np.isfinite(grad))):
            raise ValueError(f"the surrogate is not finite at log-parameters {x.tolist()}: the map is unstable there")
        return val, grad

    return minimize(checked, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": iters, "gtol": gtol})


def optimal_l2_gradient(
    problem: LawProblem,
    learning_rate: float,
    budget_step: int,
    surrogate: Surrogate = Surrogate(),
    *,
    optimize_lr: bool = False,
    l2_bounds: tuple[float, float] | None = None,
    starts: int = 7,
    max_iterations: int = 100,
) -> GradientOptimum:
    """λ_opt for a budget of T = ``budget_step`` steps by gradient on the kernel (G4).

    Minimizes the surrogate (`Surrogate`, G3) of the predicted test outputs at T over log λ ∈
    log ``l2_bounds`` (default [1e-6, 0.5/η], λ_max lowered to where the map stays stable, D5) and,
    with ``optimize_lr`` (degree ≥ 1), log η ∈ [η/10, 0.99 η_max] (η_max: the stability limit at
    λ_min; λ_max then also keeps ηλ ≤ 1/2 and D5 at η_max): L-BFGS-B with exact gradients, from
    the best of ``starts`` log-spaced starting λ. ``learning_rate`` is η (the start with
    ``optimize_lr``). ``converged`` records whether L-BFGS-B met its tolerance.
    """
    t0 = time.perf_counter()
    steps = _check_budget(budget_step)
    eta0 = float(learning_rate)
    if not (math.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"learning_rate: must be finite and > 0, got {learning_rate!r}")
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts: must be an integer >= 1, got {starts!r}")
    eta_hi = None
    if optimize_lr:
        if problem.degree == 0:
            raise ValueError("optimize_lr: not for degree 0, whose growing kernel makes the stable η depend on T")
        mu_max, norm = float(problem.factorized()[0].evals[-1]), float(problem.y_train.size)
        lam_lo = 1e-6 if l2_bounds is None else float(l2_bounds[0])
        eta_hi = 0.99 * stability_limit(mu_max, norm, lam_lo, problem.degree)
        if eta_hi <= eta0 / 10:
            raise ValueError(f"learning_rate: {eta0:g} is beyond the stability limit {eta_hi / 0.99:.6g} (D5)")
    lo, hi = _bounds(problem, min(eta0, eta_hi or eta0), l2_bounds, steps, eta_hi)
    members = Members.of(problem, surrogate)
    path: list[tuple[float, float, float]] = []
    with enable_x64():
        value_and_grad = evaluator(members, np.zeros(steps, np.int64), surrogate, (), eta0, optimize_lr)

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            val, grad = value_and_grad(x)
            eta = math.exp(x[1]) if optimize_lr else eta0
            path.append((math.exp(x[0]), eta, float(val)))
            return float(val), np.asarray(grad, np.float64)

        lr_part = [math.log(min(eta0, eta_hi))] if eta_hi is not None else []
        for lam in np.geomspace(lo, hi, starts + 2)[1:-1] if starts > 1 else [math.sqrt(lo * hi)]:
            fun(np.array([math.log(lam), *lr_part]))
        best = min(range(len(path)), key=lambda i: path[i][2])
        x0 = np.array([math.log(path[best][0]), *lr_part])
        bounds = [(math.log(lo), math.log(hi))] + ([(math.log(eta0 / 10), math.log(eta_hi))] if eta_hi else [])
        result = _minimize(fun, x0, bounds, max_iterations)
    lam, eta = math.exp(result.x[0]), (math.exp(result.x[1]) if optimize_lr else eta0)
    acc = members.accuracy(np.full(steps, lam), eta, steps)
    return GradientOptimum(
        lam,
        eta,
        float(result.fun),
        acc,
        steps,
        tuple(path),
        starts,
        time.perf_counter() - t0,
        dict(surrogate.__dict__),
        bool(result.success),
    )


def learn_schedule(
    problem: LawProblem,
    learning_rate: float,
    budget_step: int,
    surrogate: Surrogate = Surrogate(),
    *,
    segments: int = 8,
    l2_bounds: tuple[float, float] | None = None,
    max_iterations: int = 200,
    constant: GradientOptimum | None = None,
    checkpoints: Sequence[int] = (),
    boundaries: Sequence[int] | None = None,
) -> LearnedSchedule:
    """A λ(t) constant on ``segments`` log-spaced segments of [0, T) (`log_segments`), or on the
    segments between the given ``boundaries`` (increasing steps in (0, T), e.g. every 25 steps;
    ``segments`` is then not used; `ntk_l2.laws.schedule.segment_boundaries`),
    minimizing the surrogate at T = ``budget_step`` by gradient through the exact map (G5); with
    ``checkpoints`` (steps in (0, T)), the mean of the surrogate at T and at each of them: a run
    that must be good early (at a checkpoint) as well as at the end.

    Started from the constant optimum (``constant``, else `optimal_l2_gradient` with the same
    settings); L-BFGS-B on the segments' log λ within ``l2_bounds`` with exact gradients, stopped
    by the relative decrease of the surrogate or ``max_iterations`` (its projected-gradient test
    is made negligible: with many short segments each one's gradient is small from the start).
    With NNGP draws (S > 0), ``acc_at_budget_held_out`` is the accuracy at T on S other draws
    (seed + 1), and ``constant_acc_at_budget_held_out`` the constant optimum's there.
    """
    t0 = time.perf_counter()
    steps = _check_budget(budget_step)
    marks = whole_steps("checkpoints", checkpoints, steps)
    eta = float(learning_rate)
    if not (math.isfinite(eta) and eta > 0):
        raise ValueError(f"learning_rate: must be finite and > 0, got {learning_rate!r}")
    boundaries = segment_boundaries(steps, segments, boundaries)  # every argument checked before any work
    lo, hi = _bounds(problem, eta, l2_bounds, steps)
    if constant is None:
        constant = optimal_l2_gradient(problem, eta, steps, surrogate, l2_bounds=l2_bounds)
    elif constant.lr_opt != eta:
        raise ValueError(f"constant: found at η = {constant.lr_opt:g}, but the schedule is learned at η = {eta:g}")
    index = np.searchsorted(np.asarray(boundaries, np.int64), np.arange(steps), side="right")
    members = Members.of(problem, surrogate)
    path: list[float] = []
    with enable_x64():
        value_and_grad = evaluator(members, index, surrogate, marks, eta, False)

        def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
            val, grad = value_and_grad(u)
            path.append(float(val))
            return float(val), np.asarray(grad, np.float64)

        x0 = np.full(len(boundaries) + 1, math.log(min(max(constant.l2_opt, lo), hi)))
        result = _minimize(fun, x0, [(math.log(lo), math.log(hi))] * x0.size, max_iterations, gtol=1e-12)
    schedule = L2Schedule(eta, boundaries, tuple(float(v) for v in np.exp(result.x)), steps)
    per_step = schedule.per_step(steps)
    held_out = constant_held_out = None
    if surrogate.init_samples:
        others = Members.of(problem, replace(surrogate, seed=surrogate.seed + 1))
        held_out = others.accuracy(per_step, eta, steps)
        constant_held_out = others.accuracy(np.full(steps, constant.l2_opt), eta, steps)
    return LearnedSchedule(
        schedule,
        float(result.fun),
        members.accuracy(per_step, eta, steps),
        constant,
        tuple(path),
        time.perf_counter() - t0,
        dict(surrogate.__dict__),
        marks,
        bool(result.success),
        held_out,
        constant_held_out,
    )
