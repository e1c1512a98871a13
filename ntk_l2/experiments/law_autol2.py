"""AutoL2 as an experiment: against a grid of constant λ over the same steps, in theory (mean
prediction or single networks) or on finite networks (stored and resumable).

`run_autol2` writes its figure and ``summary.json`` (atomically) to an output directory and
returns the `ntk_l2.experiments.results_laws.AutoL2Result`; AutoL2 itself (the rule, the run,
the comparison, the choice of settings on the kernel) is `ntk_l2.laws.autol2`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.law_runs import LawSetup, _problem, law_dynamics
from ntk_l2.experiments.results_laws import AutoL2Result
from ntk_l2.laws import (
    AutoL2Config,
    AutoL2Run,
    FiniteSweepConfig,
    L2Schedule,
    autol2,
    autol2_t_star,
    compare_autol2,
    constant_runs,
    run_schedule,
)

__all__ = ["run_autol2"]


def _autol2_kept(
    setup: LawSetup,
    directory: Path,
    learning_rate: float,
    steps: int,
    config: AutoL2Config,
    finite: FiniteSweepConfig,
    schedule: L2Schedule | None = None,
) -> AutoL2Run:
    """`ntk_l2.laws.autol2` on ``setup`` (or, given a ``schedule``, `ntk_l2.laws.run_schedule`
    recorded every ``config.check_every`` steps); for kept (finite) runs saved in ``directory``
    (`ntk_l2.experiments.runs.RunStore`) and reused when the same run (network, η, steps, AutoL2
    settings or schedule, data) is asked for again."""

    def train(dynamics: Any) -> AutoL2Run:
        if schedule is None:
            return autol2(dynamics, learning_rate, steps, config)
        return run_schedule(dynamics, schedule, steps, config.check_every, learning_rate)

    if not setup.kept:
        return train(setup.dynamics)
    from ntk_l2.experiments.runs import RunStore, fingerprint

    ds = setup.ds
    network = {
        k: getattr(finite, k) for k in ("depth", "width", "seeds", "float64", "parameterization", "arch", "batchnorm")
    }

    def compute() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        auto = train(replace(setup.dynamics, progress=True))  # type: ignore[type-var]
        return auto.to_json(), {"l2": np.asarray(auto.l2, np.float64)}

    rule = (
        {"autol2": config.__dict__}
        if schedule is None
        else {"schedule": schedule.to_json(), "every": config.check_every}
    )
    run_config = {
        **network,
        "lr": float(learning_rate),
        "steps": int(steps),
        **rule,
        "l2_mean": "geometric",  # the λ curve is the geometric mean over seeds (runs stored before: arithmetic)
        "data": fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test),
    }
    named = {k: v for k, v in run_config.items() if k != "data"}  # every setting: no two settings share a file
    prefix = "autol2_" if schedule is None else "schedule_"
    name = prefix + fingerprint(np.frombuffer(json.dumps(named, sort_keys=True).encode(), np.uint8))[:8]
    stored, _, reused = RunStore(directory).run(name, run_config, compute, AutoL2Run.from_json)  # one per setting
    auto = AutoL2Run.from_json(stored, "stored AutoL2 run")
    if setup.log is not None:
        what = "AutoL2" if schedule is None else "λ schedule"
        setup.log(f"{what}: {'finished earlier' if reused else 'trained'}; λ changes (step, seed, λ): {auto.changes}")
    return auto


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
    schedule: L2Schedule | None = None,
) -> AutoL2Result:
    """AutoL2 against a grid of constant λ over the same ``steps`` (`ntk_l2.laws.compare_autol2`):
    the best constant run (by best test accuracy), the steps it needed (its t*), and the steps
    AutoL2 needs to come within 0.5 points of that accuracy (None if it never does);
    ``speedup_ratio`` = AutoL2 steps / constant steps. ``init_samples`` > 0 (theory): single
    networks, each NNGP draw of the initial outputs with its own AutoL2 schedule. ``schedule``: a
    λ schedule (`ntk_l2.laws.L2Schedule`, e.g. learned by ``ntk-l2 schedule``) runs instead of
    AutoL2's rule, at its own η (``learning_rate`` must be it), and is compared the same way."""
    if schedule is not None and schedule.learning_rate != learning_rate:
        raise ValueError(
            f"schedule: it was learned for η = {schedule.learning_rate:g}, but the runs use η = {learning_rate:g} "
            "(--lr); train at the schedule's η"
        )
    out = Path(out_dir)
    # the constant runs are recorded (log-spaced) about as finely as AutoL2 is checked near the end,
    # so both reach times are read off grids of similar resolution
    n_records = max(finite.n_records, steps // config.check_every)
    cfg = FiniteSweepConfig(**{**finite.__dict__, "budget": 0.0, "budget_step": steps, "n_records": n_records})
    problem = _problem(ds, finite) if mode == "theory" else None
    setup = law_dynamics(ds, mode, cfg, problem, init_samples, log)
    keep = setup.keep(cfg, out / "constant")
    constant = constant_runs(setup.dynamics, learning_rate, steps, constant_l2, n_records, keep)
    best = max(constant, key=lambda r: r.max_test_acc)
    if best.t_star == 0:  # nothing learned: no t* to measure AutoL2 against
        raise ValueError(
            f"steps: the best constant λ ({best.l2:g}) is at its best test accuracy at step 0, "
            f"nothing was learned in {steps} steps; AutoL2 cannot be compared: use more --steps "
            "or a larger --lr"
        )
    auto = _autol2_kept(setup, out / "autol2", learning_rate, steps, config, finite, schedule)
    versus = compare_autol2(auto, constant)
    result = AutoL2Result(
        mode=mode,
        dataset=ds.name,
        lr=learning_rate,
        steps=steps,
        config=dataclasses.asdict(config),
        parameterization=finite.parameterization,
        finite=dataclasses.asdict(finite) if mode == "finite" else None,
        theory_init_samples=init_samples if mode == "theory" else None,
        constant=tuple(r.without_curve() for r in constant),
        best_constant_l2=versus.best_constant_l2,
        best_constant_acc=versus.best_constant_acc,
        best_constant_steps=versus.best_constant_steps,
        autol2_steps_to_best_constant_acc=versus.steps_to_best_constant_acc,
        speedup_ratio=versus.ratio,
        autol2_max_test_acc=versus.max_test_acc,
        autol2_final_test_acc=float(auto.acc_test[-1]),
        autol2_t_star=autol2_t_star(auto),
        autol2_changes=auto.changes,
        schedule=schedule,
    )
    from ntk_l2.experiments import plots

    label = "AutoL2" if schedule is None else "λ schedule"
    title = f"{ds.name}, {mode}: {label} vs constant λ (η = {learning_rate:g})"
    constant_json = [r.to_json() for r in constant]
    figure = plots.save_autol2(out / "autol2.png", auto.to_json(), constant_json, title=title, label=label)
    result = replace(result, figure=str(figure))
    result.save(out)
    return result
