"""AutoL2 as an experiment: against a grid of constant λ, in theory (mean prediction or
single networks) or on finite networks (stored and resumable), and the choice of AutoL2's
settings from the kernel alone (`autol2_theory_scan`).

`run_autol2` writes its figure and ``summary.json`` (atomically) to an output directory and returns
the summary; the public names are re-exported from `ntk_l2.experiments.laws`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import io
from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.law_runs import _check_mode, _problem, finite_sweep
from ntk_l2.laws import (
    AutoL2Config,
    FiniteSweepConfig,
    LawProblem,
    autol2_finite,
    autol2_theory,
    steps_to_reach,
    theory_sweep,
    time_to_best,
)

__all__ = ["autol2_theory_samples", "autol2_theory_scan", "run_autol2"]


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
