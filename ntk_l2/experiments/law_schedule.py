"""A λ schedule learned on the kernel, as an experiment: ``ntk-l2 schedule``.

`run_learn_schedule` learns a piecewise-constant λ(t) for a budget of T steps on the kernel of
the swept network (`ntk_l2.laws.learn_schedule`, `derivations/optimize.md` G5), predicts the
schedule's run and the constant λ_opt's run over 2T steps (single networks or the mean
prediction, as the surrogate says), and writes to an output directory, each file atomically:
``schedule.png``, then ``schedule.json`` (the schedule, which ``ntk-l2 autol2 --schedule`` trains
with, in theory or on finite networks), then ``summary.json``
(`ntk_l2.experiments.results_laws.ScheduleResult`), last, so a directory with a summary is complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ntk_l2.common import io
from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.law_runs import law_problem
from ntk_l2.experiments.results_laws import ScheduleResult
from ntk_l2.laws import (
    FiniteSweepConfig,
    KernelDynamics,
    L2Schedule,
    Surrogate,
    constant_runs,
    learn_schedule,
    optimal_l2_gradient,
    run_schedule,
    steps_to_reach,
)

__all__ = ["load_schedule", "run_learn_schedule"]


def load_schedule(path: str | Path) -> L2Schedule:
    """A schedule file written by ``ntk-l2 schedule`` (`run_learn_schedule`), every field checked;
    a one-line ``ValueError`` starting ``schedule:`` otherwise."""
    from ntk_l2.experiments.results import read_json

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"schedule: {file} is not a file")
    try:
        data = read_json(file)
    except ValueError as err:
        raise ValueError(f"schedule: {str(err).removeprefix('result_dir: ')}") from None
    return L2Schedule.from_file_json(data, f"schedule: {file}")


def run_learn_schedule(
    ds: Dataset,
    out_dir: str | Path,
    learning_rate: float,
    budget_step: int,
    network: FiniteSweepConfig = FiniteSweepConfig(),
    surrogate: Surrogate | None = None,
    segments: int = 8,
    l2_bounds: tuple[float, float] | None = None,
    log: Callable[[str], None] | None = None,
    checkpoints: tuple[int, ...] = (),
) -> ScheduleResult:
    """Learn λ(t) on the kernel of ``network`` (depth, width, parameterization, arch) for T =
    ``budget_step`` at η = ``learning_rate`` (``surrogate``: default `Surrogate()`), compare its
    predicted run over 2T steps with the constant λ_opt's (`ntk_l2.laws.optimal_l2_gradient`),
    and write the three files above. ``checkpoints``: earlier steps whose surrogate is averaged
    with T's (`ntk_l2.laws.learn_schedule`)."""
    if network.batchnorm:
        raise ValueError("batchnorm: a schedule is learned on the kernel, which batch normalization does not have")
    out, surrogate = Path(out_dir), Surrogate() if surrogate is None else surrogate
    problem = law_problem(ds, network.depth, network.parameterization, network.width, network.arch)
    constant = optimal_l2_gradient(problem, learning_rate, budget_step, surrogate, l2_bounds=l2_bounds)
    if log is not None:
        acc, seconds = 100 * constant.acc_at_budget, constant.seconds
        log(f"constant λ_opt = {constant.l2_opt:.4g} ({acc:.1f}% at T, {seconds:.1f} s); learning the schedule")
    learned = learn_schedule(
        problem,
        learning_rate,
        budget_step,
        surrogate,
        segments=segments,
        l2_bounds=l2_bounds,
        constant=constant,
        checkpoints=checkpoints,
    )
    steps = 2 * int(budget_step)
    dynamics = KernelDynamics(problem, surrogate.init_samples, surrogate.seed)
    every = max(1, steps // 400)
    run = run_schedule(dynamics, learned.schedule, steps, record_every=every)
    const = constant_runs(dynamics, learning_rate, steps, [constant.l2_opt], max(100, steps // every))[0]
    reach = steps_to_reach(run.steps, run.acc_test, const.max_test_acc)
    ratio = reach / const.t_star if math.isfinite(reach) and const.t_star > 0 else None
    result = ScheduleResult(
        dataset=ds.name,
        lr=float(learning_rate),
        budget_step=int(budget_step),
        network={k: getattr(network, k) for k in ("depth", "width", "parameterization", "arch")},
        surrogate=dict(surrogate.__dict__),
        learned=learned,
        steps=steps,
        schedule_steps_to_constant_best=reach if math.isfinite(reach) else None,
        constant_best_acc=const.max_test_acc,
        constant_t_star=const.t_star,
        ratio=ratio,
        schedule_max_test_acc=max(a for a in run.acc_test if math.isfinite(a)),
    )
    from ntk_l2.experiments import plots

    title = f"{ds.name}: λ schedule learned for T = {budget_step} (η = {learning_rate:g}) vs constant λ_opt"
    figure = plots.save_autol2(
        out / "schedule.png", run.to_json(), [const.to_json()], title=title, label="learned schedule"
    )
    result = replace(result, figure=str(figure))
    io.save_json(out / "schedule.json", learned.schedule.to_file_json())
    result.save(out)
    return result
