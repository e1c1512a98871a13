"""The laws of L2 as experiments: sweep, optimal λ, AutoL2 — in theory or on finite networks.

Each function runs one experiment end to end on a `Dataset`, writes its figure and
``summary.json`` (atomically) to an output directory and returns the summary. The
finite-width runs of a sweep are resumable (`ntk_l2.experiments.runs`). Used by the ``ntk-l2 sweep``,
``optimal-l2`` and ``autol2`` commands and the notebooks 02 and 03.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2 import laws
from ntk_l2.common import io, metrics
from ntk_l2.data.datasets import Dataset
from ntk_l2.laws import (
    AutoL2Config,
    FiniteSweepConfig,
    LawProblem,
    at_budget,
    autol2_finite,
    autol2_theory,
    log_steps,
    optimal_l2_from_kernel,
    optimal_l2_from_run,
    steps_to_reach,
    theory_sweep,
    time_to_best,
)
from ntk_l2.theory import gradient_descent_mse_l2

MODES = ("theory", "finite")
# FiniteSweepConfig fields newer than stored sweeps: left out of a run's stored settings at these values
_ADDED_LATER = {"parameterization": "ntk", "arch": "fc", "batchnorm": False}


def finite_sweep(
    ds: Dataset,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    config: FiniteSweepConfig = FiniteSweepConfig(),
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """`ntk_l2.laws.finite_sweep`, with every run kept in ``out_dir`` when given.

    Each run is saved as it finishes (`ntk_l2.experiments.runs.RunStore` in ``out_dir/runs``:
    ``l2=<λ>_lr=<η>.json/.npz``, λ and η exact, e.g. ``l2=0.01_lr=1.0``) and read back instead of
    trained when the sweep is run again with the same network, settings and data, so a killed
    sweep resumes and ends with the same results as an uninterrupted one; runs stored by earlier
    versions (names rounded to six digits, no checksums) are trained again. ``log`` gets one line
    per stored run. Returns what `ntk_l2.laws.finite_sweep` returns.
    """
    if out_dir is None:
        return laws.finite_sweep(ds, l2_values, learning_rates, config, progress=progress)
    from ntk_l2.experiments.runs import RunStore, fingerprint, run_name, settings

    store = RunStore(Path(out_dir) / "runs")
    data_id = fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test)

    def run(l2: float, lr: float, compute: laws.Compute) -> dict[str, Any]:
        run_config = {**settings(config, _ADDED_LATER), "l2": l2, "lr": lr, "data": data_id}
        summary, _, reused = store.run(run_name(l2=l2, lr=lr), run_config, compute)
        if log is not None:
            log(
                f"λ = {l2:g}, η = {lr:g}: {'finished earlier' if reused else 'trained'}; "
                f"t* = {summary['t_star']:g}, t*ηλ = {summary['t_star_eta_l2']:.3g}, "
                f"best test acc {summary['max_test_acc']:.4f}"
            )
        return summary

    return laws.finite_sweep(ds, l2_values, learning_rates, config, run=run, progress=progress)


def law_problem(
    ds: Dataset, depth: int = 3, parameterization: str = "ntk", width: int = 512, arch_kind: str = "fc"
) -> LawProblem:
    """The NTK problem of the bias-free ReLU network on ``ds`` (degree depth + 1), with the joint
    NNGP of train and test points for single-network (sampled f_0) predictions.

    In the NTK parameterization the kernel is the infinite-width one; in the standard
    parameterization it grows with the width, and neural-tangents computes it for the
    given ``width`` (`derivations/laws.md`, L4). ``arch_kind`` "cnn": the bias-free ReLU CNN of
    `FiniteSweepConfig.network` (3×3 convolutions, stride 2, ``width`` channels), degree depth + 1."""
    net = FiniteSweepConfig(depth=depth, width=width, parameterization=parameterization, arch=arch_kind).architecture(
        ds.n_classes, ds.input_shape
    )
    return LawProblem(
        net.ntk(ds.x_train),
        net.ntk(ds.x_test, ds.x_train),
        ds.y_train,
        ds.labels_test,
        depth + 1,
        nngp=net.nngp(np.concatenate([ds.x_train, ds.x_test])),
    )


def reference_accuracy(problem: LawProblem, learning_rate: float, last_step: int) -> float:
    """The λ = 0 reference of the laws' figure: the best test accuracy of the theory's mean
    prediction without L2 over ``last_step`` steps."""
    predict0 = gradient_descent_mse_l2(problem.k_train_train, problem.y_train, learning_rate, 0.0, problem.degree)
    t0 = log_steps(last_step, 200).astype(float)
    return float(np.nanmax(metrics.accuracy(predict0(t0, 0.0, 0.0, problem.k_test_train)[1], problem.labels_test)))


def _problem(ds: Dataset, finite: FiniteSweepConfig) -> LawProblem | None:
    """The theory's problem for the finite runs' network, or None with batch normalization (no theory)."""
    if finite.batchnorm:
        return None
    return law_problem(ds, finite.depth, finite.parameterization, finite.width, finite.arch)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")


def _spread(runs: Sequence[dict[str, Any]]) -> float | None:
    c = np.array([r["t_star_eta_l2"] for r in runs if not r["diverged"]], float)
    c = c[np.isfinite(c) & (c > 0)]
    return float(c.max() / c.min()) if c.size else None


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
    if problem is None and mode == "theory":
        raise ValueError("mode: there is no theory for batch normalization; use mode 'finite'")
    theory = (
        theory_sweep(problem, l2_values, learning_rates, budget, budget_step, init_samples=init_samples)
        if problem is not None and (mode == "theory" or with_theory)
        else None
    )
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
        "runs": [{k: v for k, v in r.items() if k not in ("steps", "acc_test")} for r in runs],
        "t_star_eta_l2_spread": _spread(runs),
        "theory_t_star_eta_l2_spread": _spread(theory) if theory is not None else None,
        "theory_runs": None
        if theory is None or mode == "theory"
        else [{k: v for k, v in r.items() if k not in ("steps", "acc_test")} for r in theory],
        "reference_max_test_acc": reference,
    }
    from ntk_l2.experiments import plots

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
    # Without a budget T, the third panel shows the accuracy at T = the shortest run's length.
    shown_t = budget_step if budget_step is not None else int(min(max(r["steps"]) for r in runs))
    fig_runs, fig_theory = runs, theory if mode == "finite" else None
    if budget_step is None:
        fig_runs, fig_theory = at_budget(runs, shown_t), None if fig_theory is None else at_budget(fig_theory, shown_t)
    summary["figure_budget_step"] = shown_t
    summary["figure"] = str(
        plots.save_laws(
            out / "laws.png",
            fig_runs,
            reference_acc=reference,
            theory=fig_theory,
            title=f"{ds.name}: {what}; runs to t = {budget:g}/(ηλ), budget T = {shown_t}",
        )
    )
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


def _autol2_finite_stored(
    ds: Dataset,
    directory: Path,
    learning_rate: float,
    steps: int,
    config: AutoL2Config,
    finite: FiniteSweepConfig,
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    """`autol2_finite` on ``finite``'s network, saved in ``directory`` (`ntk_l2.experiments.runs.RunStore`) and
    reused when the same run (network, η, steps, AutoL2 settings, data) is asked for again."""
    from ntk_l2.experiments.runs import RunStore, fingerprint

    network = {
        k: getattr(finite, k) for k in ("depth", "width", "seeds", "float64", "parameterization", "arch", "batchnorm")
    }

    def compute() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        auto = autol2_finite(ds, learning_rate, steps, config, progress=True, **network)
        summary = {**auto, **{k: io.json_floats(auto[k]) for k in ("acc_test", "acc_train", "loss_train")}}
        return summary, {"l2": np.asarray(auto["l2"], np.float64)}

    run_config = {
        **network,
        "lr": float(learning_rate),
        "steps": int(steps),
        "autol2": config.__dict__,
        "data": fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test),
    }
    named = {k: v for k, v in run_config.items() if k != "data"}  # every setting: no two settings share a file
    name = "autol2_" + fingerprint(np.frombuffer(json.dumps(named, sort_keys=True).encode(), np.uint8))[:8]
    auto, _, reused = RunStore(directory).run(name, run_config, compute)  # one file per AutoL2 setting
    if log is not None:
        log(f"AutoL2: {'finished earlier' if reused else 'trained'}; λ changes (step, seed, λ): {auto['changes']}")
    return auto


def autol2_theory_samples(
    problem: LawProblem, ds: Dataset, learning_rate: float, steps: int, config: AutoL2Config, init_samples: int
) -> dict[str, Any]:
    """`autol2_theory` for the mean prediction (``init_samples`` = 0), or averaged over single
    networks started from ``init_samples`` NNGP draws of f_0 (`LawProblem.initial_outputs`,
    seed 0), each with its own schedule: accuracies and losses averaged over the draws, λ as
    their geometric mean, the changes as (step, draw, λ) like the finite runs'."""
    if not init_samples:
        return autol2_theory(problem, learning_rate, steps, config, labels_train=ds.labels_train)
    draws = problem.initial_outputs(init_samples, seed=0)
    runs = [
        autol2_theory(problem, learning_rate, steps, config, labels_train=ds.labels_train, fx_train_0=f0, fx_test_0=fs0)
        for f0, fs0 in zip(*draws, strict=False)
    ]
    mean = {k: np.nanmean([r[k] for r in runs], axis=0).tolist() for k in ("acc_test", "acc_train", "loss_train")}
    return {
        **runs[0],
        **mean,
        "l2": np.exp(np.mean(np.log([r["l2"] for r in runs]), axis=0)).tolist(),
        "changes": [(step, i, lam) for i, r in enumerate(runs) for step, lam in r["changes"]],
    }


def _reach(auto: dict[str, Any], best: dict[str, Any]) -> tuple[float | None, float | None]:
    """(steps, ratio): the first step at which ``auto`` comes within 0.5 points of the best
    constant run's best accuracy, and those steps over that run's t* (None, None: never)."""
    reach = steps_to_reach(auto["steps"], auto["acc_test"], best["max_test_acc"])
    if not math.isfinite(reach):
        return None, None
    return reach, (reach / best["t_star"] if best["t_star"] > 0 else None)


def autol2_theory_scan(
    problem: LawProblem,
    ds: Dataset,
    learning_rate: float,
    steps: int,
    constant_l2: Sequence[float],
    configs: Sequence[AutoL2Config],
    init_samples: int = 4,
) -> dict[str, Any]:
    """Choose AutoL2's settings from the kernel alone (`derivations/laws.md`, L3): each
    configuration's AutoL2 and the constant-λ grid on the theory (single networks with
    ``init_samples`` > 0), over ``steps``.

    Returns the best constant run (``best_constant_l2``, ``best_constant_acc``,
    ``best_constant_steps`` = its t*), and per configuration (in order) ``config``,
    ``steps_to_best_constant_acc`` (None: never within 0.5 points), ``ratio`` (those steps over
    the constant's t*, None if never) and ``max_test_acc``; ``best`` is the index of the smallest
    ratio (None if no configuration reaches the constant run's accuracy).
    """
    n_records = max(100, steps // min(c.check_every for c in configs))
    constant = theory_sweep(
        problem, constant_l2, [learning_rate], 0.0, steps, n_records=n_records, init_samples=init_samples
    )
    best = max(constant, key=lambda r: r["max_test_acc"])
    rows = []
    for cfg in configs:
        auto = autol2_theory_samples(problem, ds, learning_rate, steps, cfg, init_samples)
        reach, ratio = _reach(auto, best)
        rows.append(
            {
                "config": cfg.__dict__.copy(),
                "steps_to_best_constant_acc": reach,
                "ratio": ratio,
                "max_test_acc": float(np.nanmax(np.asarray(auto["acc_test"], float))),
            }
        )
    ratios = [np.inf if r["ratio"] is None else r["ratio"] for r in rows]
    return {
        "best_constant_l2": best["l2"],
        "best_constant_acc": best["max_test_acc"],
        "best_constant_steps": best["t_star"],
        "rows": rows,
        "best": int(np.argmin(ratios)) if np.isfinite(min(ratios)) else None,
    }


def run_autol2(
    ds: Dataset,
    out_dir: str | Path,
    mode: str,
    learning_rate: float,
    steps: int,
    constant_l2: Sequence[float],
    config: AutoL2Config = AutoL2Config(),
    finite: FiniteSweepConfig = FiniteSweepConfig(),
    log: Callable[[str], None] | None = None,
    init_samples: int = 0,
) -> dict[str, Any]:
    """AutoL2 against a grid of constant λ over the same ``steps``: the best constant run (by
    best test accuracy), the steps it needed (its t*), and the steps AutoL2 needs to come
    within 0.5 points of that accuracy (None if it never does); ``speedup_ratio`` = AutoL2 steps /
    constant steps. ``init_samples`` > 0 (theory): single networks, the accuracy averaged over
    that many NNGP draws of the initial outputs, each draw with its own AutoL2 schedule."""
    _check_mode(mode)
    out = Path(out_dir)
    # the constant runs are recorded (log-spaced) about as finely as AutoL2 is checked near the end,
    # so both reach times are read off grids of similar resolution
    n_records = max(finite.n_records, steps // config.check_every)
    cfg = FiniteSweepConfig(**{**finite.__dict__, "budget": 0.0, "budget_step": steps, "n_records": n_records})
    if mode == "theory":
        problem = _problem(ds, finite)
        if problem is None:
            raise ValueError("mode: there is no theory for batch normalization; use mode 'finite'")
        constant = theory_sweep(
            problem, constant_l2, [learning_rate], 0.0, steps, n_records=n_records, init_samples=init_samples
        )
    else:
        constant = finite_sweep(ds, constant_l2, [learning_rate], cfg, out / "constant", log=log)
    best = max(constant, key=lambda r: r["max_test_acc"])
    if best["t_star"] == 0:  # nothing learned: no t* to measure AutoL2 against
        raise ValueError(
            f"steps: the best constant λ ({best['l2']:g}) is at its best test accuracy at step 0, "
            f"nothing was learned in {steps} steps; AutoL2 cannot be compared: use more --steps "
            "or a larger --lr"
        )
    auto = (
        autol2_theory_samples(problem, ds, learning_rate, steps, config, init_samples)
        if mode == "theory"
        else _autol2_finite_stored(ds, out / "autol2", learning_rate, steps, config, finite, log)
    )
    auto_steps, ratio = _reach(auto, best)
    summary = {
        "mode": mode,
        "dataset": ds.name,
        "lr": learning_rate,
        "steps": steps,
        "config": config.__dict__,
        "parameterization": finite.parameterization,
        "finite": finite.__dict__ if mode == "finite" else None,
        "theory_init_samples": init_samples if mode == "theory" else None,
        "constant": [{k: v for k, v in r.items() if k not in ("steps", "acc_test")} for r in constant],
        "best_constant_l2": best["l2"],
        "best_constant_acc": best["max_test_acc"],
        "best_constant_steps": best["t_star"],
        "autol2_steps_to_best_constant_acc": auto_steps,
        "speedup_ratio": ratio,  # None: never
        "autol2_max_test_acc": float(np.nanmax(np.asarray(auto["acc_test"], float))),
        "autol2_final_test_acc": float(auto["acc_test"][-1]),
        "autol2_t_star": time_to_best(auto["steps"], auto["acc_test"])[0],
        "autol2_changes": auto["changes"],
    }
    from ntk_l2.experiments import plots

    summary["figure"] = str(
        plots.save_autol2(
            out / "autol2.png", auto, constant, title=f"{ds.name}, {mode}: AutoL2 vs constant λ (η = {learning_rate:g})"
        )
    )
    io.save_json(out / "summary.json", summary)
    return summary
