"""The laws of L2 as experiments: sweep, optimal λ, AutoL2 — in theory or on finite networks.

Each ``run_*`` function runs one experiment end to end on a `Dataset`, writes its figure and
``summary.json`` (atomically) to an output directory and returns the summary. The
finite-width runs of a sweep are resumable (`ntk_l2.experiments.runs`). Used by the ``ntk-l2 sweep``,
``optimal-l2`` and ``autol2`` commands and the notebooks 02 and 03. The sweep and the optimal λ
live here; the shared pieces (`finite_sweep`, `law_problem`, `reference_accuracy`) in
`ntk_l2.experiments.law_runs` and AutoL2 (`run_autol2`, `autol2_theory_samples`,
`autol2_theory_scan`) in `ntk_l2.experiments.law_autol2`, all importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import io
from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.law_autol2 import autol2_theory_samples, autol2_theory_scan, run_autol2
from ntk_l2.experiments.law_runs import (
    MODES,
    _check_mode,
    _problem,
    finite_sweep,
    law_problem,
    reference_accuracy,
)
from ntk_l2.laws import (
    FiniteSweepConfig,
    LawProblem,
    at_budget,
    optimal_l2_from_kernel,
    optimal_l2_from_run,
    theory_sweep,
)

__all__ = [
    "MODES",
    "autol2_theory_samples",
    "autol2_theory_scan",
    "finite_sweep",
    "law_problem",
    "reference_accuracy",
    "run_autol2",
    "run_optimal_l2",
    "run_sweep",
]


def _spread(runs: Sequence[dict[str, Any]]) -> float | None:
    """max/min of t*·η·λ over the runs that did not diverge (finite, > 0); None if there are none."""
    c = np.array([r["t_star_eta_l2"] for r in runs if not r["diverged"]], float)
    c = c[np.isfinite(c) & (c > 0)]
    return float(c.max() / c.min()) if c.size else None


def _without_curves(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs as the summary stores them: without their ``steps`` and ``acc_test`` curves."""
    return [{k: v for k, v in r.items() if k not in ("steps", "acc_test")} for r in runs]


def _sweep_theory(
    problem: LawProblem | None,
    mode: str,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float,
    budget_step: int | None,
    with_theory: bool,
    init_samples: int,
) -> list[dict[str, Any]] | None:
    """The theory's runs (`theory_sweep`) in theory mode or overlaid on finite runs (``with_theory``);
    None without them, or with batch normalization (``problem`` None: no theory; refused in theory mode)."""
    if problem is None and mode == "theory":
        raise ValueError("mode: there is no theory for batch normalization; use mode 'finite'")
    if problem is None or not (mode == "theory" or with_theory):
        return None
    return theory_sweep(problem, l2_values, learning_rates, budget, budget_step, init_samples=init_samples)


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
    mode: str,
    finite: FiniteSweepConfig,
    runs: list[dict[str, Any]],
    theory: list[dict[str, Any]] | None,
    reference: float | None,
) -> dict[str, Any]:
    """Draw ``out/laws.png`` (`plots.save_laws`; the theory overlaid on finite runs); returns the
    summary's ``figure_budget_step`` (the budget T of the third panel) and ``figure`` (its path)."""
    from ntk_l2.experiments import plots

    budget_step = finite.budget_step
    # Without a budget T, the third panel shows the accuracy at T = the shortest run's length.
    shown_t = budget_step if budget_step is not None else int(min(max(r["steps"]) for r in runs))
    fig_runs, fig_theory = runs, theory if mode == "finite" else None
    if budget_step is None:
        fig_runs, fig_theory = at_budget(runs, shown_t), None if fig_theory is None else at_budget(fig_theory, shown_t)
    path = plots.save_laws(
        out / "laws.png",
        fig_runs,
        reference_acc=reference,
        theory=fig_theory,
        title=_sweep_title(ds, mode, finite, shown_t),
    )
    return {"figure_budget_step": shown_t, "figure": str(path)}


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
) -> dict[str, Any]:
    """Sweep (λ, η) in ``mode``; with finite runs the theory is overlaid (``with_theory``).
    ``init_samples`` > 0: the theory predicts single networks (initial outputs drawn from the
    NNGP, `ntk_l2.laws.theory_sweep`) instead of the mean prediction.

    Summary: ``runs`` (per run ``l2``, ``lr``, ``t_star``, ``t_star_eta_l2``, ``max_test_acc``,
    ``budget_test_acc``, ``diverged``), ``t_star_eta_l2_spread`` = max/min of t*·η·λ,
    ``reference_max_test_acc`` (theory, λ = 0, over the longest run), ``figure``.
    """
    _check_mode(mode)
    out = Path(out_dir)
    problem = _problem(ds, finite)
    theory = _sweep_theory(problem, mode, l2_values, learning_rates, budget, budget_step, with_theory, init_samples)
    finite = FiniteSweepConfig(**{**finite.__dict__, "budget": budget, "budget_step": budget_step})
    runs = theory if mode == "theory" else finite_sweep(ds, l2_values, learning_rates, finite, out, log=log)
    reference = (
        None
        if problem is None
        else reference_accuracy(problem, float(min(learning_rates)), max(max(r["steps"]) for r in runs))
    )
    summary = {
        "mode": mode,
        "dataset": ds.name,
        "n_train": int(ds.x_train.shape[0]),
        "n_test": int(ds.x_test.shape[0]),
        "budget": budget,
        "budget_step": budget_step,
        "finite": finite.__dict__ if mode == "finite" else None,
        "parameterization": finite.parameterization,
        "theory_init_samples": init_samples,
        "runs": _without_curves(runs),
        "t_star_eta_l2_spread": _spread(runs),
        "theory_t_star_eta_l2_spread": _spread(theory) if theory is not None else None,
        "theory_runs": None if theory is None or mode == "theory" else _without_curves(theory),
        "reference_max_test_acc": reference,
    }
    summary.update(_sweep_figure(out, ds, mode, finite, runs, theory, reference))
    io.save_json(out / "summary.json", summary)
    return summary


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
) -> dict[str, Any]:
    """λ_opt for a budget of T steps, three ways: from one run at ``probe_l2`` (its own t*, over
    2/(ηλ) steps: c = t*ηλ, λ_opt = c/(ηT)), from the kernel alone, and by a grid search
    (accuracy at step T, each grid run T steps long) in ``mode``. The predicted λ_opt are run
    too, so their accuracy at T can be compared with the grid's best. ``init_samples`` > 0:
    the theory (kernel prediction and theory mode) is that of single networks."""
    _check_mode(mode)
    if finite.batchnorm:
        raise ValueError("batchnorm: λ_opt needs the kernel's prediction, which batch normalization does not have")
    out = Path(out_dir)
    problem = _problem(ds, finite)

    def sweep(l2s: Sequence[float], sub: str, budget: float) -> list[dict[str, Any]]:
        if mode == "theory":
            return theory_sweep(problem, l2s, [learning_rate], budget, budget_step, init_samples=init_samples)
        cfg = FiniteSweepConfig(**{**finite.__dict__, "budget": budget, "budget_step": budget_step})
        return finite_sweep(ds, l2s, [learning_rate], cfg, out / sub, log=log)

    probe = sweep([probe_l2], "probe", finite.budget)[0]
    l2_run = optimal_l2_from_run(probe["t_star"], learning_rate, probe_l2, budget_step)
    kernel = optimal_l2_from_kernel(problem, learning_rate, budget_step, init_samples=init_samples)
    grid_runs = sweep(list(grid), "grid", 0.0)
    accs = np.array([np.nan if r["budget_test_acc"] is None else r["budget_test_acc"] for r in grid_runs])
    best = int(np.nanargmax(accs))
    predicted = sweep([l2_run, kernel["l2_opt"]], "predicted", 0.0)
    summary = {
        "mode": mode,
        "dataset": ds.name,
        "lr": learning_rate,
        "budget_step": budget_step,
        "init_samples": init_samples,
        "parameterization": finite.parameterization,
        "probe": {k: v for k, v in probe.items() if k not in ("steps", "acc_test")},
        "l2_opt_one_run": l2_run,
        "acc_at_budget_one_run": predicted[0]["budget_test_acc"],
        "l2_opt_kernel": kernel["l2_opt"],
        "acc_at_budget_kernel": predicted[1]["budget_test_acc"],
        "l2_opt_grid": grid_runs[best]["l2"],
        "acc_at_budget_grid": float(accs[best]),
        "grid": [{"l2": r["l2"], "budget_test_acc": r["budget_test_acc"]} for r in grid_runs],
        "ratio_one_run_to_grid": l2_run / grid_runs[best]["l2"],
        "ratio_kernel_to_grid": kernel["l2_opt"] / grid_runs[best]["l2"],
        "grid_optimum_interior": 0 < best < len(grid_runs) - 1,
    }
    from ntk_l2.experiments import plots

    summary["figure"] = str(plots.save_optimal_l2(out / "optimal_l2.png", summary, kernel))
    io.save_json(out / "summary.json", summary)
    return summary
