"""``ntk-l2 schedule``: a λ schedule learned on the kernel for a budget of T steps.

``ntk-l2 schedule --dataset mnist --parameterization standard --lr 0.05 --steps 2000 --out S/``
learns a piecewise-constant λ(t) on 8 log-spaced segments by gradient through the exact discrete
map (`ntk_l2.experiments.law_schedule`) and writes ``S/schedule.json``, which
``ntk-l2 autol2 --schedule S/schedule.json`` trains with (``--mode theory`` or ``finite``),
``S/summary.json`` and ``S/schedule.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ntk_l2.cli.arg_types import nonnegative_int, positive_float, positive_int, positive_ints
from ntk_l2.cli.flags import data_flags, surrogate_flags

if TYPE_CHECKING:
    from ntk_l2.data.container import Dataset

__all__ = ["run_schedule_command", "schedule_flags"]


def schedule_flags(p: argparse.ArgumentParser) -> None:
    """``schedule``: data, the network whose kernel is used, η, T, the segments and the surrogate."""
    data_flags(p, ("digits", "mnist", "cifar10"))
    p.add_argument("--depth", type=positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    p.add_argument("--width", type=positive_int, default=512, help="width of the network (its standard-param. kernel)")
    p.add_argument("--arch", default="fc", choices=("fc", "cnn"), help="fc: fully connected; cnn: 3×3 convolutions")
    p.add_argument(
        "--parameterization", default="ntk", choices=("ntk", "standard"), help="ntk, or standard (kernel at --width)"
    )
    p.add_argument("--lr", type=positive_float, default=1.0, help="learning rate η (the schedule is learned for it)")
    p.add_argument("--steps", type=positive_int, required=True, help="the budget T: the schedule maximizes step T")
    p.add_argument("--segments", type=positive_int, default=8, help="log-spaced segments of constant λ")
    p.add_argument(
        "--checkpoints",
        type=positive_ints,
        default=(),
        help="comma-separated steps before T whose surrogate is averaged in: good early as well as at T "
        "(default: none, T alone)",
    )
    p.add_argument(
        "--init-samples",
        type=nonnegative_int,
        default=32,
        help="single networks: average the surrogate over this many NNGP draws of f_0 (0: the mean prediction); "
        "more draws overfit them less: the schedule's accuracy on other draws is reported beside",
    )
    p.add_argument("--l2-min", type=positive_float, default=1e-6, help="smallest λ a segment may take")
    p.add_argument("--l2-max", type=positive_float, default=None, help="largest λ a segment may take (default 0.5/η)")
    surrogate_flags(p)
    p.add_argument("--out", required=True, help="output directory (schedule.json, summary.json, schedule.png)")


def run_schedule_command(args: argparse.Namespace, ds: Dataset) -> int:
    """Learn the schedule (`ntk_l2.experiments.law_schedule.run_learn_schedule`) and report it."""
    from ntk_l2.experiments.law_schedule import run_learn_schedule
    from ntk_l2.laws import FiniteSweepConfig, Surrogate

    l2_max = 0.5 / args.lr if args.l2_max is None else args.l2_max
    if args.steps < 2:
        raise ValueError(f"--steps: the budget T must be at least 2 steps, got {args.steps}")
    if not args.l2_min < l2_max:
        raise ValueError(f"--l2-min: must be below --l2-max ({l2_max:g}), got {args.l2_min:g}")
    if not l2_max * args.lr < 1:
        raise ValueError(f"--l2-max: η·λ must stay below 1, got {l2_max:g} × --lr {args.lr:g}")
    late = [c for c in args.checkpoints if c >= args.steps]
    if late:
        raise ValueError(f"--checkpoints: must be steps before --steps {args.steps}, got {late[0]}")
    network = FiniteSweepConfig(
        depth=args.depth, width=args.width, parameterization=args.parameterization, arch=args.arch
    )
    surrogate = Surrogate(args.surrogate, args.temperature, args.init_samples)
    s = run_learn_schedule(
        ds,
        args.out,
        args.lr,
        args.steps,
        network,
        surrogate,
        args.segments,
        (args.l2_min, l2_max),
        log=_log,
        checkpoints=tuple(args.checkpoints),
    )
    out = Path(args.out)
    print(f"wrote {out / 'schedule.json'}, {out / 'summary.json'} and {s.figure}")
    learned = s.learned
    parts = ", ".join(
        f"{lam:.3g} from {start}"
        for lam, start in zip(learned.schedule.l2, (0, *learned.schedule.boundaries), strict=True)
    )
    print(f"  λ(t): {parts}" + ("" if learned.converged else "  (L-BFGS-B stopped before converging)"))
    print(
        f"  predicted accuracy at T = {s.budget_step}: schedule {100 * learned.acc_at_budget:.1f}%, "
        f"constant λ_opt = {learned.constant.l2_opt:.3g} {100 * learned.constant.acc_at_budget:.1f}%"
    )
    if learned.acc_at_budget_held_out is not None:
        print(
            f"  on {args.init_samples} other NNGP draws (not those it was learned on): schedule "
            f"{100 * learned.acc_at_budget_held_out:.1f}%, constant λ_opt "
            f"{100 * learned.constant_acc_at_budget_held_out:.1f}% at T"
        )
    reach = s.schedule_steps_to_constant_best
    when = "never" if reach is None else f"at step {reach:g} ({s.ratio:.2f}x its steps)" if s.ratio else f"at {reach:g}"
    print(
        f"  over {s.steps} steps the constant λ_opt's best is {100 * s.constant_best_acc:.1f}% at step "
        f"{s.constant_t_star:g}; the schedule reaches it {when}"
    )
    return 0


def _log(message: str) -> None:
    import sys

    print(message, file=sys.stderr)
