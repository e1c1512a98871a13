"""λ_opt and a λ schedule by gradient on the kernel, against grids, AutoL2 and finite networks.

    NTK_L2_MNIST_DIR=DIR python benchmarks/bench_optimize.py [--part lambda|theory|finite|all] [--work DIR]
        [--seeds S --constant-l2 3e-3,1e-2]     # part finite with S networks per run

Setting (the AutoL2 measurements of notebooks/03_autol2): the bias-free ReLU network with 3
hidden layers in the standard parameterization at width 512, 512 real MNIST training and 1,000
test images, η = 0.05; theory for single networks (4 NNGP draws of f_0) unless said otherwise.

- ``lambda``: `ntk_l2.laws.optimal_l2_gradient` at T = 2,000 against the best predicted accuracy
  at T over 241 λ log-spaced in [1e-5, 10] (targets: within 1.5× of that λ and within 0.5
  points of its accuracy; under 10 s from the kernel, factorization and NNGP draws included).
- ``theory``: constant λ ∈ {1e-3, 3e-3, 1e-2, 3e-2, 1e-1} over 4,000 steps; schedules learned
  for T = t*/2 of the best of them (`ntk_l2.laws.learn_schedule`: 8 segments, several
  surrogates, 16 segments, one segment per 25 steps (nearly free), 32 draws instead of 4), and
  for the whole 4,000 steps with t*/2 as a checkpoint (4 and 32 draws);
  AutoL2 (the setting chosen from the kernel in notebook 03, λ₀ = 0.03, window 50, metric
  loss). Each runs 4,000 steps and is compared by `ntk_l2.laws.compare_autol2` (target: ≤ 0.5×
  the constant's t*) twice: on the 4 draws the schedules were learned on (seed 0), and on 32
  other draws (seed 1, ``held_out``), free of the selection on the learning draws; ``passed``
  is the held-out ratio of the schedule `ntk-l2 schedule` learns by default (32 draws, T = t*/2).
- ``ceiling``: how far the theory target can be reached at all: schedules learned on the very
  32 draws they are judged on (seed 1, the held-out draws of ``theory``; an optimistic bound, no
  longer a prediction for other networks), for T = t*/2 of the best constant run on those draws,
  on 8 log-spaced segments and on one segment per 25 steps, at temperatures 0.01 and 0.003, each
  started from four constant λ (1e-3, 3e-3, 1e-2, 3e-2); the best predicted accuracy at T
  against the threshold (the best constant's best accuracy less 0.5 points), and each one's ratio.
- ``finite``: the same constant runs, both AutoL2 settings and the learned schedules (8 segments
  for t*/2 and whole-run, each learned on 4 and on 32 draws) trained on
  width-512 networks (`ntk_l2.experiments.laws.run_autol2`, runs kept in ``--work``: resumable)
  (targets: ≤ 0.6× the best constant run's t*, and at least AutoL2's best accuracy).

Writes benchmarks/results/optimize.json (the parts run are replaced, the others kept).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ntk_l2.common.io import save_json
from ntk_l2.data import datasets as data
from ntk_l2.experiments.law_runs import law_problem
from ntk_l2.laws import (
    AutoL2Config,
    FiniteSweepConfig,
    KernelDynamics,
    L2Schedule,
    LawProblem,
    Surrogate,
    autol2,
    compare_autol2,
    constant_runs,
    learn_schedule,
    optimal_l2,
    optimal_l2_gradient,
    run_schedule,
)

RESULTS = Path(__file__).resolve().parent / "results" / "optimize.json"
LR, BUDGET, STEPS, SAMPLES, HELD_OUT = 0.05, 2000, 4000, 4, 32
CONSTANT = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CHOSEN = AutoL2Config(l2_init=0.03, window=50, metric="loss")


def _dataset(data_dir: str | None) -> data.Dataset:
    if not (data_dir and Path(data_dir).is_dir()):
        raise SystemExit("set NTK_L2_MNIST_DIR (or --data-dir) to the MNIST files: the targets are on MNIST")
    return data.load_mnist(data_dir=data_dir, n_train=512, n_test=1000, seed=0)


def _problem(ds: data.Dataset) -> LawProblem:
    return law_problem(ds, 3, "standard", 512)


def part_lambda(ds: data.Dataset) -> dict:
    """Gradient λ_opt against the fine grid, for single networks and the mean prediction."""
    out = {}
    for samples in (SAMPLES, 0):
        grid = optimal_l2(KernelDynamics(_problem(ds), samples), LR, BUDGET, np.geomspace(1e-5, 10, 241))
        acc = np.nan_to_num(np.asarray(grid.acc_grid), nan=-1.0)
        plateau = np.asarray(grid.l2_grid)[acc >= acc.max() - 0.005]
        fresh = _problem(ds)  # the gradient's time includes the factorization and the draws
        opt = optimal_l2_gradient(fresh, LR, BUDGET, Surrogate(init_samples=samples))
        ratio = opt.l2_opt / grid.l2_opt
        out["single" if samples else "mean"] = {
            "init_samples": samples,
            "grid_l2_opt": grid.l2_opt,
            "grid_acc": grid.acc_at_budget,
            "grid_within_half_point": [float(plateau.min()), float(plateau.max())],
            "gradient_l2_opt": opt.l2_opt,
            "gradient_acc": opt.acc_at_budget,
            "ratio": ratio,
            "points_below_grid": 100 * (grid.acc_at_budget - opt.acc_at_budget),
            "gradient_l2_in_half_point_range": bool(plateau.min() <= opt.l2_opt <= plateau.max()),
            "seconds": opt.seconds,
            "evaluations": len(opt.path),
            "surrogate": opt.surrogate,
            "passed": max(ratio, 1 / ratio) <= 1.5
            and grid.acc_at_budget - opt.acc_at_budget <= 0.005
            and opt.seconds < 10,
        }
        print(json.dumps(out["single" if samples else "mean"]), flush=True)
    out["surrogates"] = _survey(ds, out["single"]["grid_l2_opt"], out["single"]["grid_acc"])
    return out


def _survey(ds: data.Dataset, grid_l2: float, grid_acc: float) -> list[dict]:
    """Each surrogate's gradient λ_opt for single networks against the grid's (how the default was chosen)."""
    problem, rows = _problem(ds), []
    for kind, tau in (("error", 0.01), ("error", 0.03), ("error", 0.1), ("xent", 0.1), ("xent", 0.03), ("loss", 0.1)):
        opt = optimal_l2_gradient(problem, LR, BUDGET, Surrogate(kind, tau, init_samples=SAMPLES))
        row = {"kind": kind, "temperature": tau, "l2_opt": opt.l2_opt, "ratio": opt.l2_opt / grid_l2}
        rows.append({**row, "points_below_grid": 100 * (grid_acc - opt.acc_at_budget)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _versus(dynamics: KernelDynamics, schedule: L2Schedule, constant: list) -> dict:
    """A schedule's 4,000-step run on ``dynamics`` against its constant runs."""
    v = compare_autol2(run_schedule(dynamics, schedule, STEPS, record_every=10), constant)
    return {
        "steps_to_best_constant_acc": v.steps_to_best_constant_acc,
        "ratio": v.ratio,
        "max_test_acc": v.max_test_acc,
    }


def part_theory(ds: data.Dataset, work: Path) -> dict:
    """The learned schedules in theory against the constant grid and AutoL2, on the learning
    draws (seed 0) and on HELD_OUT other draws (seed 1)."""
    problem = _problem(ds)
    dynamics, fresh = KernelDynamics(problem, SAMPLES), KernelDynamics(problem, HELD_OUT, 1)
    constant = constant_runs(dynamics, LR, STEPS, CONSTANT, 400)
    constant_fresh = constant_runs(fresh, LR, STEPS, CONSTANT, 400)
    best = max(constant, key=lambda r: r.max_test_acc)
    auto = compare_autol2(autol2(dynamics, LR, STEPS, CHOSEN), constant)
    auto_fresh = compare_autol2(autol2(fresh, LR, STEPS, CHOSEN), constant_fresh)
    budget = int(best.t_star // 2)
    rows = {}
    for name, draws, kwargs in (
        ("default", SAMPLES, {}),
        ("error_tau0.03", SAMPLES, {"surrogate": Surrogate("error", 0.03, init_samples=SAMPLES)}),
        ("xent_tau0.1", SAMPLES, {"surrogate": Surrogate("xent", 0.1, init_samples=SAMPLES)}),
        ("default_16_segments", SAMPLES, {"segments": 16}),
        ("every_25_steps", SAMPLES, {"boundaries": tuple(range(25, budget, 25)), "max_iterations": 1000}),
        ("draws_32", 32, {}),
        ("whole_run_checkpoint", SAMPLES, {"checkpoints": (budget,), "budget_step": STEPS}),
        ("whole_run_checkpoint_draws_32", 32, {"checkpoints": (budget,), "budget_step": STEPS}),
    ):
        kwargs = {"surrogate": Surrogate(init_samples=draws), "budget_step": budget, **kwargs}
        learned = learn_schedule(problem, LR, **kwargs)
        rows[name] = {
            "schedule": learned.schedule.to_json(),
            "init_samples": draws,
            "checkpoints": list(learned.checkpoints),
            "acc_at_budget": learned.acc_at_budget,
            "acc_at_budget_held_out": learned.acc_at_budget_held_out,
            "constant_opt_acc_at_budget": learned.constant.acc_at_budget,
            **_versus(dynamics, learned.schedule, constant),
            "held_out": _versus(fresh, learned.schedule, constant_fresh),
            "seconds": learned.seconds,
        }
        print(name, json.dumps(rows[name]), flush=True)
    mean = _mean_prediction(problem)
    work.mkdir(parents=True, exist_ok=True)
    for name, row in (
        ("schedule.json", "default"),
        ("schedule_whole.json", "whole_run_checkpoint"),
        ("schedule_32.json", "draws_32"),
        ("schedule_whole_32.json", "whole_run_checkpoint_draws_32"),
    ):
        save_json(work / name, L2Schedule.from_json(rows[row]["schedule"]).to_file_json())
    at_budget = [r["acc_at_budget"] for r in rows.values() if not r["checkpoints"] and r["init_samples"] == SAMPLES]
    held = [r["held_out"]["ratio"] or np.inf for r in rows.values()]
    return {
        "constant": [{"l2": r.l2, "t_star": r.t_star, "max_test_acc": r.max_test_acc} for r in constant],
        "constant_held_out": [{"l2": r.l2, "t_star": r.t_star, "max_test_acc": r.max_test_acc} for r in constant_fresh],
        "best_constant": {"l2": best.l2, "t_star": best.t_star, "max_test_acc": best.max_test_acc},
        "budget_step": budget,
        "held_out_draws": HELD_OUT,
        "autol2_chosen": auto.to_json(),
        "autol2_chosen_held_out": auto_fresh.to_json(),
        "learned": rows,
        "ceiling_at_budget": max(at_budget),  # on the learning draws, over surrogates and segments
        "mean_prediction": mean,
        "threshold": best.max_test_acc - 0.005,
        "passed_on_learning_draws": (rows["default"]["ratio"] or np.inf) <= 0.5,
        "best_held_out_ratio": min(held),  # information only: a best of 8 on the held-out draws is selected there
        "passed": (rows["draws_32"]["held_out"]["ratio"] or np.inf) <= 0.5,  # the command line's default
    }


def part_ceiling(ds: data.Dataset) -> dict:
    """Schedules learned on the draws they are judged on (seed 1): the most the theory target's
    ratio can come down to with these segments, surrogates and starts (an optimistic bound)."""
    problem = _problem(ds)
    fresh = KernelDynamics(problem, HELD_OUT, 1)
    constant = constant_runs(fresh, LR, STEPS, CONSTANT, 400)
    best = max(constant, key=lambda r: r.max_test_acc)
    budget = int(best.t_star // 2)
    rows, optima = [], {}
    for tau in (0.01, 0.003):
        surrogate = Surrogate("error", tau, init_samples=HELD_OUT, seed=1)
        optimum = optimal_l2_gradient(problem, LR, budget, surrogate)
        optima[str(tau)] = {"l2": optimum.l2_opt, "acc_at_budget": optimum.acc_at_budget}
        for segments, boundaries in (("8 log-spaced", None), ("every 25 steps", tuple(range(25, budget, 25)))):
            for start in (1e-3, 3e-3, 1e-2, 3e-2):  # multi-start: the constant a schedule starts from
                # only l2_opt of the record is read by learn_schedule (its start); the rest is the optimum's
                learned = learn_schedule(
                    problem,
                    LR,
                    budget,
                    surrogate,
                    constant=replace(optimum, l2_opt=start),
                    boundaries=boundaries,
                    max_iterations=1000,
                )
                row = {
                    "segments": segments,
                    "temperature": tau,
                    "start_l2": start,
                    "acc_at_budget": learned.acc_at_budget,
                    **_versus(fresh, learned.schedule, constant),
                    "seconds": learned.seconds,
                }
                rows.append({**row, "schedule": learned.schedule.to_json()})
                print(json.dumps(row), flush=True)
    top = max(rows, key=lambda r: r["acc_at_budget"])
    ratios = [r["ratio"] or np.inf for r in rows]
    return {
        "best_constant": {"l2": best.l2, "t_star": best.t_star, "max_test_acc": best.max_test_acc},
        "constant_optimum_at_budget": optima,  # per temperature
        "budget_step": budget,
        "threshold": best.max_test_acc - 0.005,
        "rows": rows,
        "best_acc_at_budget": top["acc_at_budget"],
        "best_ratio": float(min(ratios)),
        "target_reachable": bool(min(ratios) <= 0.5),
    }


def _mean_prediction(problem: LawProblem) -> dict:
    """The same comparison for the mean prediction (f_0 = 0) instead of single networks."""
    dynamics = KernelDynamics(problem, 0)
    constant = constant_runs(dynamics, LR, STEPS, CONSTANT, 400)
    best = max(constant, key=lambda r: r.max_test_acc)
    budget = max(int(best.t_star // 2), 2)
    learned = learn_schedule(problem, LR, budget, Surrogate(init_samples=0))
    versus = compare_autol2(run_schedule(dynamics, learned.schedule, STEPS, record_every=10), constant)
    auto = compare_autol2(autol2(dynamics, LR, STEPS, CHOSEN), constant)
    out = {
        "best_constant": {"l2": best.l2, "t_star": best.t_star, "max_test_acc": best.max_test_acc},
        "budget_step": budget,
        "schedule": learned.schedule.to_json(),
        "acc_at_budget": learned.acc_at_budget,
        "ratio": versus.ratio,
        "max_test_acc": versus.max_test_acc,
        "autol2_chosen_ratio": auto.ratio,
    }
    print("mean prediction", json.dumps(out), flush=True)
    return out


def part_finite(ds: data.Dataset, work: Path, seeds: int = 1, constant: tuple[float, ...] = CONSTANT) -> dict:
    """Constant runs, both AutoL2 settings and the learned schedule on width-512 networks
    (``seeds`` networks per run, their accuracies averaged; runs in ``work/finite`` for one seed,
    ``work/finite_<seeds>_seeds`` otherwise)."""
    from ntk_l2.experiments.law_schedule import load_schedule
    from ntk_l2.experiments.laws import run_autol2

    net = FiniteSweepConfig(width=512, parameterization="standard", seeds=seeds)
    runs_dir = work / ("finite" if seeds == 1 else f"finite_{seeds}_seeds")
    out = {}
    runs = (
        ("autol2_default", AutoL2Config(), None),
        ("autol2_chosen", CHOSEN, None),
        ("schedule", AutoL2Config(), load_schedule(work / "schedule.json")),
        ("schedule_whole", AutoL2Config(), load_schedule(work / "schedule_whole.json")),
        ("schedule_32", AutoL2Config(), load_schedule(work / "schedule_32.json")),
        ("schedule_whole_32", AutoL2Config(), load_schedule(work / "schedule_whole_32.json")),
    )
    # with several seeds the paper's AutoL2 (which never reaches the constant's accuracy) is left out
    for name, config, sched in runs[1:] if seeds > 1 else runs:
        t0 = time.perf_counter()
        r = run_autol2(ds, runs_dir, "finite", LR, STEPS, constant, config, net, schedule=sched, log=print)
        out[name] = {
            "best_constant_l2": r.best_constant_l2,
            "best_constant_acc": r.best_constant_acc,
            "best_constant_steps": r.best_constant_steps,
            "steps_to_best_constant_acc": r.autol2_steps_to_best_constant_acc,
            "ratio": r.speedup_ratio,
            "max_test_acc": r.autol2_max_test_acc,
            "seconds": time.perf_counter() - t0,
        }
        print(name, json.dumps(out[name]), flush=True)
    autos = [out[k]["max_test_acc"] for k in ("autol2_default", "autol2_chosen") if k in out]
    for name in ("schedule", "schedule_whole", "schedule_32", "schedule_whole_32"):
        s = out[name]
        s["passed"] = (s["ratio"] or np.inf) <= 0.6 and s["max_test_acc"] >= max(autos)
        if "autol2_default" in out:
            s["passed_against_default_autol2"] = (s["ratio"] or np.inf) <= 0.6 and (
                s["max_test_acc"] >= out["autol2_default"]["max_test_acc"]
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("NTK_L2_MNIST_DIR"))
    parser.add_argument("--part", default="all", choices=("lambda", "theory", "ceiling", "finite", "all"))
    parser.add_argument("--work", default="/tmp/ntk_l2_bench_optimize", help="runs kept here (resumable)")
    parser.add_argument("--seeds", type=int, default=1, help="finite networks per run (part finite)")
    parser.add_argument(
        "--constant-l2",
        default=",".join(map(str, CONSTANT)),
        help="comma-separated constant λ of part finite (with --seeds > 1: the grid's best neighbourhood)",
    )
    args = parser.parse_args()
    ds, work = _dataset(args.data_dir), Path(args.work)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    parts = ("lambda", "theory", "ceiling", "finite") if args.part == "all" else (args.part,)
    for part in parts:
        t0 = time.perf_counter()
        key = part if part != "finite" or args.seeds == 1 else f"finite_{args.seeds}_seeds"
        if part == "lambda":
            results[key] = part_lambda(ds)
        elif part == "theory":
            results[key] = part_theory(ds, work)
        elif part == "ceiling":
            results[key] = part_ceiling(ds)
        else:
            constant = tuple(float(v) for v in args.constant_l2.split(","))
            results[key] = part_finite(ds, work, args.seeds, constant)
        results[key]["part_seconds"] = time.perf_counter() - t0
        save_json(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
