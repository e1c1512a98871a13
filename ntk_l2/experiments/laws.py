"""The laws of L2 as experiments: sweep, optimal λ, AutoL2 — in theory or on finite networks.

Each ``run_*`` function runs one experiment end to end on a `Dataset`, writes its figure and
``summary.json`` (atomically) to an output directory and returns the summary. The
finite-width runs of a sweep are resumable (`ntk_l2.experiments.runs`). Used by the ``ntk-l2 sweep``,
``optimal-l2`` and ``autol2`` commands and the notebooks 02 and 03. The sweep and the optimal λ
live here; the shared pieces (`finite_sweep`, `law_dynamics`, `law_problem`,
`reference_accuracy`) in `ntk_l2.experiments.law_runs` and AutoL2 (`run_autol2`) in
`ntk_l2.experiments.law_autol2`, importable from here. Each returns its typed result
(`ntk_l2.experiments.results_laws`) and writes it as ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.law_autol2 import run_autol2
from ntk_l2.experiments.law_runs import (
    MODES,
    _problem,
    finite_sweep,
    law_dynamics,
    law_problem,
    reference_accuracy,
)
from ntk_l2.experiments.results_laws import GridPoint, OptimalL2Result, SweepResult
from ntk_l2.laws import (
    FiniteSweepConfig,
    KernelDynamics,
    LawRun,
    OptimalL2,
    Surrogate,
    at_budget,
    optimal_l2,
    optimal_l2_from_run,
    optimal_l2_gradient,
    sweep,
    theory_sweep,
)

__all__ = [
    "MODES",
    "finite_sweep",
    "law_problem",
    "reference_accuracy",
    "run_autol2",
    "run_optimal_l2",
    "run_sweep",
]


def _spread(runs: Sequence[LawRun]) -> float | None:
    """max/min of t*·η·λ over the runs that did not diverge (finite, > 0); None if there are none."""
    c = np.array([r.t_star_eta_l2 for r in runs if not r.diverged], float)
    c = c[np.isfinite(c) & (c > 0)]
    return float(c.max() / c.min()) if c.size else None


def _sweep_title(ds: Dataset, mode: str, finite: FiniteSweepConfig, shown_t: int) -> str:
    """The sweep figure's title: the dataset, the network (architecture, parameterization, width or
    theory), the runs' length budget/(ηλ) and the budget T shown in the third panel."""
    par = (
        "" if finite.arch == "fc" else f"CNN{' + BatchNorm' if finite.batchnorm else ''} ({finite.width} channels), "
    ) + ("" if finite.parameterization == "ntk" else f"standard param. (width {finite.width}), ")
    what = par + (
        "theory (infinite width)"
        if mode == "theory" and finite.parameterization == "ntk"
        else "theory"
        if mode == "theory"
        else f"finite width {finite.width}, {finite.seeds} seed(s)"
    )
    return f"{ds.name}: {what}; runs to t = {finite.budget:g}/(ηλ), budget T = {shown_t}"


def _sweep_figure(
    out: Path,
    ds: Dataset,
    result: SweepResult,
    finite: FiniteSweepConfig,
    runs: Sequence[LawRun],
    theory: Sequence[LawRun] | None,
) -> SweepResult:
    """Draw ``out/laws.png`` (`plots.save_laws`; the theory overlaid on finite runs); the result
    with ``figure_budget_step`` (the budget T of the third panel) and ``figure`` (its path)."""
    from ntk_l2.experiments import plots

    budget_step = finite.budget_step
    # Without a budget T, the third panel shows the accuracy at T = the shortest run's length.
    shown_t = budget_step if budget_step is not None else int(min(max(r.steps) for r in runs))
    fig_runs, fig_theory = runs, theory if result.mode == "finite" else None
    if budget_step is None:
        fig_runs, fig_theory = at_budget(runs, shown_t), None if fig_theory is None else at_budget(fig_theory, shown_t)
    path = plots.save_laws(
        out / "laws.png",
        [r.to_json() for r in fig_runs],
        reference_acc=result.reference_max_test_acc,
        theory=None if fig_theory is None else [r.to_json() for r in fig_theory],
        title=_sweep_title(ds, result.mode, finite, shown_t),
    )
    return replace(result, figure_budget_step=shown_t, figure=str(path))


def run_sweep(
    ds: Dataset,
    out_dir: str | Path,
    mode: str,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float = 2.0,
    budget_step: int | None = None,
    finite: FiniteSweepConfig = FiniteSweepConfig(),
    with_theory: bool = True,
    log: Callable[[str], None] | None = None,
    init_samples: int = 0,
) -> SweepResult:
    """Sweep (λ, η) in ``mode`` (`ntk_l2.laws.sweep` on `law_dynamics`); with finite runs the
    theory is overlaid (``with_theory``, not with batch normalization: it has no theory).
    ``init_samples`` > 0: the theory predicts single networks (initial outputs drawn from the
    NNGP) instead of the mean prediction. Finite runs are kept in ``out_dir/runs`` (`keeper`).
    Writes ``laws.png`` and ``summary.json``; returns the `SweepResult`."""
    out = Path(out_dir)
    finite = FiniteSweepConfig(**{**finite.__dict__, "budget": budget, "budget_step": budget_step})
    problem = _problem(ds, finite) if mode in MODES else None
    setup = law_dynamics(ds, mode, finite, problem, init_samples, log)
    runs = sweep(
        setup.dynamics, l2_values, learning_rates, budget, budget_step, setup.n_records, keep=setup.keep(finite, out)
    )
    theory = runs if mode == "theory" else None
    if mode == "finite" and with_theory and problem is not None:
        theory = theory_sweep(problem, l2_values, learning_rates, budget, budget_step, init_samples=init_samples)
    longest = max(max(r.steps) for r in runs)
    reference = None if problem is None else reference_accuracy(problem, float(min(learning_rates)), longest)
    result = SweepResult(
        mode=mode,
        dataset=ds.name,
        n_train=int(ds.x_train.shape[0]),
        n_test=int(ds.x_test.shape[0]),
        budget=budget,
        budget_step=budget_step,
        finite=dataclasses.asdict(finite) if mode == "finite" else None,
        parameterization=finite.parameterization,
        theory_init_samples=init_samples,
        runs=tuple(r.without_curve() for r in runs),
        t_star_eta_l2_spread=_spread(runs),
        theory_t_star_eta_l2_spread=_spread(theory) if theory is not None else None,
        theory_runs=None if theory is None or mode == "theory" else tuple(r.without_curve() for r in theory),
        reference_max_test_acc=reference,
    )
    result = _sweep_figure(out, ds, result, finite, runs, theory)
    result.save(out)
    return result


def run_optimal_l2(
    ds: Dataset,
    out_dir: str | Path,
    mode: str,
    learning_rate: float,
    budget_step: int,
    probe_l2: float,
    grid: Sequence[float],
    finite: FiniteSweepConfig = FiniteSweepConfig(),
    log: Callable[[str], None] | None = None,
    init_samples: int = 0,
    method: str = "grid",
    surrogate: Surrogate | None = None,
) -> OptimalL2Result:
    """λ_opt for a budget of T steps, three ways: from one run at ``probe_l2`` (its own t*, over
    2/(ηλ) steps: c = t*ηλ, λ_opt = c/(ηT)), from the kernel alone (``method`` "grid":
    `ntk_l2.laws.optimal_l2` on `KernelDynamics`, 41 λ; "gradient": `ntk_l2.laws.optimal_l2_gradient`
    with ``surrogate``, default `Surrogate` with ``init_samples`` draws), and by a grid search
    (accuracy at step T, each grid run T steps long) in ``mode``. The predicted λ_opt are run
    too, so their accuracy at T can be compared with the grid's best. ``init_samples`` > 0: the
    theory is that of single networks."""
    if method not in ("grid", "gradient"):
        raise ValueError(f"method: must be 'grid' or 'gradient', got {method!r}")
    if finite.batchnorm:
        raise ValueError("batchnorm: λ_opt needs the kernel's prediction, which batch normalization does not have")
    out = Path(out_dir)
    problem = _problem(ds, finite) if mode in MODES else None
    setup = law_dynamics(ds, mode, finite, problem, init_samples, log)

    def runs(l2s: Sequence[float], sub: str, budget: float) -> tuple[LawRun, ...]:
        cfg = FiniteSweepConfig(**{**finite.__dict__, "budget": budget, "budget_step": budget_step})
        keep = setup.keep(cfg, out / sub)
        return sweep(setup.dynamics, l2s, [learning_rate], budget, budget_step, setup.n_records, keep=keep)

    probe = runs([probe_l2], "probe", finite.budget)[0]
    l2_run = optimal_l2_from_run(probe.t_star, learning_rate, probe_l2, budget_step)
    kernel = optimal_l2(KernelDynamics(problem, init_samples), learning_rate, budget_step)  # type: ignore[arg-type]
    gradient = None
    if method == "gradient":
        surrogate = Surrogate(init_samples=init_samples) if surrogate is None else surrogate
        gradient = optimal_l2_gradient(problem, learning_rate, budget_step, surrogate)  # type: ignore[arg-type]
        if log is not None:
            log(f"gradient on the kernel: λ_opt = {gradient.l2_opt:.4g} in {gradient.seconds:.1f} s")
    l2_kernel = kernel.l2_opt if gradient is None else gradient.l2_opt
    grid_runs = runs(list(grid), "grid", 0.0)
    accs = np.array([np.nan if r.budget_test_acc is None else r.budget_test_acc for r in grid_runs])
    best = int(np.nanargmax(accs))
    predicted = runs([l2_run, l2_kernel], "predicted", 0.0)
    result = OptimalL2Result(
        mode=mode,
        dataset=ds.name,
        lr=learning_rate,
        budget_step=budget_step,
        init_samples=init_samples,
        parameterization=finite.parameterization,
        probe=probe.without_curve(),
        l2_opt_one_run=l2_run,
        acc_at_budget_one_run=predicted[0].budget_test_acc,
        l2_opt_kernel=l2_kernel,
        acc_at_budget_kernel=predicted[1].budget_test_acc,
        l2_opt_grid=grid_runs[best].l2,
        acc_at_budget_grid=float(accs[best]),
        grid=tuple(GridPoint(r.l2, r.budget_test_acc) for r in grid_runs),
        ratio_one_run_to_grid=l2_run / grid_runs[best].l2,
        ratio_kernel_to_grid=l2_kernel / grid_runs[best].l2,
        grid_optimum_interior=0 < best < len(grid_runs) - 1,
        method=method,
        gradient=gradient,
    )
    result = _optimal_figure(out, result, kernel)
    result.save(out)
    return result


def _optimal_figure(out: Path, result: OptimalL2Result, kernel: OptimalL2) -> OptimalL2Result:
    """Draw ``out/optimal_l2.png`` (`plots.save_optimal_l2`); the result with its path."""
    from ntk_l2.experiments import plots

    return replace(
        result, figure=str(plots.save_optimal_l2(out / "optimal_l2.png", result.to_json(), kernel.to_json()))
    )
