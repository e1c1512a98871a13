"""``ntk-l2`` command line: ``predict``, ``demo``, ``compare``, ``sweep``, ``optimal-l2``, ``autol2``,
``deep-linear``.

Bad input prints one line ``ntk-l2: error: <argument>: <problem>`` and exits
with code 2, leaving no output file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ntk_l2 import _cli_args as A


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line, exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"ntk-l2: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="ntk-l2", description="Training dynamics of wide networks under L2 regularization.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    p = sub.add_parser("predict", help="predict outputs over time from a kernel .npz")
    p.add_argument("kernel", metavar="KERNEL.npz", help="k_train_train, y_train, optional k_test_train, fx_*_0, nngp_*")
    p.add_argument("--lr", type=A.positive_float, required=True, help="learning rate η")
    p.add_argument("--l2", type=A.nonnegative_float, required=True, help="L2 strength λ")
    p.add_argument("--degree", type=A.degree, required=True, help="homogeneity degree k (integer >= 0)")
    p.add_argument("--times", type=A.times, required=True, help="comma-separated steps, e.g. 0,10,100")
    p.add_argument("--discrete", action="store_true", help="gradient descent with a finite step (default: gradient flow)")
    p.add_argument("--momentum", type=A.momentum, default=0.0, metavar="BETA",
                   help="heavy-ball momentum β in [0, 1) (default 0): the exact map with --discrete, else its gradient flow")
    p.add_argument("--nesterov", action="store_true", help="with --momentum and --discrete: Nesterov's form")
    p.add_argument("--batch-size", type=A.positive_int, default=None, metavar="B",
                   help="with --discrete: minibatch SGD with batches of B points; adds the spread over batch draws")
    p.add_argument("--loss", default="mse", choices=("mse", "xent"), help="mse (closed form) or xent (ODE)")
    p.add_argument("--max-memory", type=A.size, default=None, metavar="SIZE",
                   help="refuse requests estimated above SIZE (e.g. 64G; default: the memory available now)")
    p.add_argument("--max-loop-steps", type=A.positive_float, default=None, metavar="N",
                   help="--discrete: refuse a step loop longer than N steps x modes (default 3e10, about a minute)")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output file (written atomically, never an input)")
    d = sub.add_parser("demo", help="the main job: theory and finite width side by side on the embedded digits")
    d.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    d.add_argument("--small", action="store_true", help="a smaller, faster run")
    c = sub.add_parser("compare", help="theory vs finite-width training at several widths")
    c.add_argument("--dataset", default="digits", choices=("digits", "mnist"), help="dataset (default: digits, embedded)")
    c.add_argument("--data-dir", default=None, help="directory holding the dataset files (mnist)")
    c.add_argument("--n-train", type=A.positive_int, default=512)
    c.add_argument("--n-test", type=A.positive_int, default=None, help="default: all remaining / the dataset's test set")
    c.add_argument("--depth", type=A.positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    c.add_argument("--widths", type=A.positive_ints, default=(256, 1024, 2048), help="comma-separated distinct widths")
    c.add_argument("--lr", type=A.auto_or(A.positive_float), default="auto",
                   help="learning rate η, or auto: half the stability limit (of the momentum map with --momentum), "
                        "capped at ηλ/(1 - β) = 0.1")
    c.add_argument("--l2", type=A.nonnegative_float, default=1e-2, help="L2 strength λ (0 needs --steps)")
    c.add_argument("--steps", type=A.auto_or(A.positive_int), default="auto", help="steps, or auto: 2(1 - β)/(ηλ)")
    c.add_argument("--momentum", type=A.momentum, default=0.0, metavar="BETA",
                   help="heavy-ball momentum β in [0, 1) of the networks and the theory (default 0: plain gradient descent)")
    c.add_argument("--nesterov", action="store_true",
                   help="with --momentum: Nesterov's form, θ ← θ - η(g + βv) (no continuous-time theory then)")
    c.add_argument("--batch-size", type=A.positive_int, default=None, metavar="B",
                   help="minibatch SGD, B training points per step (default: full batch); compared with the "
                        "full-batch theory, which is the mean over batch draws")
    c.add_argument("--seeds", type=A.positive_int, default=3)
    c.add_argument("--seed", type=A.nonnegative_int, default=0, help="data subset seed")
    c.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    c.add_argument("--out", required=True, help="output directory; widths finished there by an earlier run with the same settings are reused")
    _law_parsers(sub)
    return parser


def _law_parsers(sub: argparse._SubParsersAction) -> None:
    """``sweep``, ``optimal-l2`` and ``autol2``: the laws of L2, in theory or on finite networks."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="digits", choices=("digits", "mnist", "cifar10"),
                       help="dataset (default: digits, embedded)")
        p.add_argument("--data-dir", default=None, help="directory holding the dataset files (mnist, cifar10)")
        p.add_argument("--n-train", type=A.positive_int, default=512)
        p.add_argument("--n-test", type=A.positive_int, default=None, help="default: all remaining / the dataset's test set")
        p.add_argument("--seed", type=A.nonnegative_int, default=0, help="data subset seed")
        p.add_argument("--mode", default="theory", choices=("theory", "finite"),
                       help="theory: the infinite-width discrete map (seconds); finite: train networks")
        p.add_argument("--depth", type=A.positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
        p.add_argument("--width", type=A.positive_int, default=512, help="width of the finite networks")
        p.add_argument("--seeds", type=A.positive_int, default=1, help="seeds per finite run (accuracy averaged)")
        p.add_argument("--arch", default="fc", choices=("fc", "cnn"),
                       help="fc: fully connected; cnn: 3×3 convolutions, stride 2, --width channels (images kept NHWC)")
        p.add_argument("--batchnorm", action="store_true", help="cnn with batch normalization (finite runs only, no theory)")
        p.add_argument("--parameterization", default="ntk", choices=("ntk", "standard"),
                       help="ntk (default) or standard (W trained directly, as in the paper; theory at --width)")
        p.add_argument("--out", required=True, help="output directory (summary.json, figure; finite runs resumable)")

    s = sub.add_parser("sweep", help="t*, best and budget accuracy over a (λ, η) grid")
    common(s)
    s.add_argument("--l2", type=A.positive_floats, default=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1), help="comma-separated λ values")
    s.add_argument("--lr", type=A.positive_floats, default=(0.5, 1.0), help="comma-separated learning rates")
    s.add_argument("--budget", type=A.positive_float, default=2.0, help="each run lasts budget/(ηλ) steps (default 2)")
    s.add_argument("--budget-step", type=A.positive_int, default=None, help="also report the accuracy at this step T")
    s.add_argument("--init-samples", type=A.nonnegative_int, default=0,
                   help="theory for single networks: average over this many NNGP draws of f_0 (default 0: the mean prediction)")
    o = sub.add_parser("optimal-l2", help="λ_opt for a budget of T steps: one run, the kernel, a grid")
    common(o)
    o.add_argument("--lr", type=A.positive_float, default=1.0)
    o.add_argument("--budget-step", type=A.positive_int, required=True, help="the budget T in steps")
    o.add_argument("--probe-l2", type=A.positive_float, default=1e-2, help="λ of the one run that measures c = t*ηλ")
    o.add_argument("--grid", type=A.positive_floats, default=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                   help="comma-separated λ grid")
    o.add_argument("--init-samples", type=A.nonnegative_int, default=0,
                   help="theory for single networks: average over this many NNGP draws of f_0 (default 0: the mean)")
    a = sub.add_parser("autol2", help="AutoL2 against the best constant λ")
    common(a)
    a.add_argument("--lr", type=A.positive_float, default=1.0)
    a.add_argument("--steps", type=A.positive_int, required=True)
    a.add_argument("--constant-l2", type=A.positive_floats, default=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                   help="comma-separated constant λ to compare")
    a.add_argument("--l2-init", type=A.positive_float, default=0.1)
    a.add_argument("--factor", type=A.positive_float, default=10.0)
    a.add_argument("--window", type=A.positive_int, default=100, help="steps without improvement before λ is divided")
    a.add_argument("--check-every", type=A.positive_int, default=10)
    a.add_argument("--l2-min", type=A.positive_float, default=1e-5)
    a.add_argument("--metric", default="train_error", choices=("train_error", "loss"))
    a.add_argument("--init-samples", type=A.nonnegative_int, default=0,
                   help="theory for single networks: average over this many NNGP draws of f_0 (default 0: the mean)")
    a.add_argument("--min-wait", type=A.nonnegative_float, default=0.0,
                   help="hold each new λ at least this many of its time scales 1/(ηλ) (default 0: off)")
    dl = sub.add_parser("deep-linear", help="a deep linear network: layer imbalance, the two phases, flatness")
    dl.add_argument("--depth", type=A.positive_int, default=3, help="weight layers L of a scalar chain (ignored with --widths)")
    dl.add_argument("--widths", type=A.positive_int_list, default=None,
                    help="matrix layers: comma-separated d_in,d_1,...,d_out (default: scalar chain)")
    dl.add_argument("--regularizer", default="minibatch", choices=("none", "l2", "input-noise", "minibatch"))
    dl.add_argument("--strength", type=A.finite_float, default=4.0,
                    help="λ (l2), σ (input-noise) or the batch size (minibatch)")
    dl.add_argument("--lr", type=A.positive_float, default=0.05, help="learning rate η")
    dl.add_argument("--steps", type=A.positive_int, default=20_000, help="steps (end time for --method flow)")
    dl.add_argument("--method", default="gd", choices=("gd", "flow"), help="gradient descent/SGD or gradient flow")
    dl.add_argument("--seeds", type=A.positive_int, default=8, help="noise seeds (mean over seeds is reported)")
    dl.add_argument("--samples", type=A.positive_int, default=64, help="training samples of the linear teacher task")
    dl.add_argument("--label-noise", type=A.nonnegative_float, default=0.5, help="std of the label noise")
    dl.add_argument("--layer-ratio", type=A.positive_float, default=2.0,
                    help="initial scale ratio of consecutive layers (1: comparable)")
    dl.add_argument("--out", default="out/deep_linear", help="output directory (summary.json, deep_linear.png)")


def _dataset(args: argparse.Namespace):
    """The dataset of ``--dataset``, ``--data-dir`` (mnist), ``--n-train``, ``--n-test``, ``--seed``."""
    from ntk_l2 import data

    kwargs = {"n_train": args.n_train, "n_test": args.n_test, "seed": args.seed}
    if args.dataset in ("mnist", "cifar10"):
        kwargs["data_dir"] = args.data_dir
    if getattr(args, "arch", "fc") == "cnn":
        kwargs["flatten"] = False  # NHWC images for the convolutions
    elif args.dataset == "cifar10":
        kwargs["flatten"] = True
    try:
        return data.load_dataset(args.dataset, **kwargs)
    except FileNotFoundError as err:
        where = "no --data-dir given" if args.data_dir is None else f"--data-dir {args.data_dir}"
        raise ValueError(f"--data-dir: {args.dataset} files not found ({where}): {' '.join(str(err).split())}") from None


def _check_out(args: argparse.Namespace) -> None:
    """Every command's ``--out``, checked before any work: writable, and not an input (predict's
    kernel file, or the data directory)."""
    from ntk_l2 import io

    if args.command == "predict":
        io.check_output(args.out, inputs=(args.kernel,))
    else:
        io.check_output(args.out, directory=True, inputs=(getattr(args, "data_dir", None),))


def _finite_config(args: argparse.Namespace):
    from ntk_l2.laws import FiniteSweepConfig

    return FiniteSweepConfig(depth=args.depth, width=args.width, seeds=args.seeds, parameterization=args.parameterization,
                             arch=args.arch, batchnorm=args.batchnorm)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _sweep(args: argparse.Namespace) -> int:
    from ntk_l2.law_experiments import run_sweep

    summary = run_sweep(_dataset(args), args.out, args.mode, args.l2, args.lr, args.budget, args.budget_step,
                        _finite_config(args), log=_log, init_samples=args.init_samples)
    print(f"wrote {Path(args.out) / 'summary.json'} and {summary['figure']}")
    for r in summary["runs"]:
        print(f"  λ = {r['l2']:<8g} η = {r['lr']:<6g} t* = {r['t_star']:<7g} t*ηλ = {r['t_star_eta_l2']:.3f}  "
              f"best test acc {100 * r['max_test_acc']:.1f}%" + ("  DIVERGED" if r["diverged"] else ""))
    spread = summary["t_star_eta_l2_spread"]
    print(f"  t*ηλ varies by a factor {spread:.2f} (max/min)" if spread is not None
          else "  t*ηλ: no run learned anything (t* = 0 everywhere)")
    return 0


def _optimal_l2(args: argparse.Namespace) -> int:
    from ntk_l2.law_experiments import run_optimal_l2

    s = run_optimal_l2(_dataset(args), args.out, args.mode, args.lr, args.budget_step, args.probe_l2,
                       args.grid, _finite_config(args), log=_log, init_samples=args.init_samples)
    print(f"wrote {Path(args.out) / 'summary.json'} and {s['figure']}")
    print(f"  one run (λ = {args.probe_l2:g}): λ_opt = {s['l2_opt_one_run']:.3g}, accuracy at T {100 * s['acc_at_budget_one_run']:.1f}%")
    print(f"  kernel only: λ_opt = {s['l2_opt_kernel']:.3g}, accuracy at T {100 * s['acc_at_budget_kernel']:.1f}%")
    print(f"  grid ({args.mode}): λ_opt = {s['l2_opt_grid']:.3g}, accuracy at T {100 * s['acc_at_budget_grid']:.1f}%"
          + ("" if s["grid_optimum_interior"] else "  (at the edge of the grid)"))
    return 0


def _autol2(args: argparse.Namespace) -> int:
    from ntk_l2.law_experiments import run_autol2
    from ntk_l2.laws import AutoL2Config

    cfg = AutoL2Config(l2_init=args.l2_init, factor=args.factor, window=args.window, check_every=args.check_every,
                       l2_min=args.l2_min, metric=args.metric, min_wait=args.min_wait)
    s = run_autol2(_dataset(args), args.out, args.mode, args.lr, args.steps, args.constant_l2,
                   cfg, _finite_config(args), log=_log, init_samples=args.init_samples)
    print(f"wrote {Path(args.out) / 'summary.json'} and {s['figure']}")
    print(f"  best constant λ = {s['best_constant_l2']:g}: best test acc {100 * s['best_constant_acc']:.1f}% at step {s['best_constant_steps']:g}")
    reach, ratio = s["autol2_steps_to_best_constant_acc"], s["speedup_ratio"]
    when = "never" if reach is None else f"at step {reach:g}" + ("" if ratio is None else f" ({ratio:.2f}x its steps)")
    print(f"  AutoL2: best test acc {100 * s['autol2_max_test_acc']:.1f}%, reaches the constant run's best {when}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ntk_l2 import io
    from ntk_l2.predict_file import predict_file

    out = predict_file(args.kernel, args.times, max_memory=args.max_memory, learning_rate=args.lr, l2=args.l2,
                       degree=args.degree, discrete=args.discrete, loss=args.loss, max_loop_steps=args.max_loop_steps,
                       momentum=args.momentum, nesterov=args.nesterov, batch_size=args.batch_size)
    io.save_npz(args.out, **out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ntk_l2.demo import DemoConfig, run_demo

    config = DemoConfig(n_train=128, n_test=256, n_times=30, widths=(64, 256), seeds=2) if args.small else DemoConfig()
    summary = run_demo(args.out, config)
    print(f"wrote {Path(args.out) / 'summary.json'}, {summary['figure']} and {summary['comparison']['figure']}")
    for lam, acc in summary["best_test_accuracy"].items():
        print(f"  λ = {lam:>6}: best predicted test accuracy {100 * acc:.1f}%")
    cmp = summary["comparison"]
    for width, err in zip(cmp["widths_list"], cmp["median_rel_err_test_max"]):
        print(f"  width {width:>5}: max-over-time test-output error vs theory {err:.3f} (median over seeds)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ntk_l2 import io
    from ntk_l2.compare import CompareConfig, infinite_width_kernels, run_comparison, stable_learning_rate

    if args.l2 == 0 and args.steps == "auto":
        raise ValueError("--steps: auto is 2/(ηλ) (2(1 - β)/(ηλ) with --momentum), which has no value at --l2 0; "
                         "give --steps")
    if args.nesterov and args.momentum == 0:
        raise ValueError("--nesterov: needs --momentum > 0 (Nesterov's form of plain gradient descent is itself)")
    widths, beta = args.widths, args.momentum
    ds = _dataset(args)
    if args.batch_size is not None and args.batch_size > ds.x_train.shape[0]:
        raise ValueError(f"--batch-size: {args.batch_size} exceeds the {ds.x_train.shape[0]} training points (--n-train)")
    probe = CompareConfig(depth=args.depth, widths=widths, l2=args.l2)
    if args.lr == "auto":
        lr = stable_learning_rate(infinite_width_kernels(ds, probe)["train"], ds.y_train.size, args.l2, args.depth + 1,
                                  momentum=beta, nesterov=args.nesterov)
    else:
        lr = float(args.lr)
    steps = int(round(2.0 * (1.0 - beta) / (lr * args.l2))) if args.steps == "auto" else int(args.steps)
    cfg = CompareConfig(depth=args.depth, widths=widths, learning_rate=lr, l2=args.l2, steps=steps, seeds=args.seeds,
                        float64=args.float64, momentum=beta, nesterov=args.nesterov, batch_size=args.batch_size)
    out = Path(args.out)
    summary = run_comparison(ds, cfg, progress=True, out_dir=out)
    from ntk_l2 import plots

    summary["figure"] = str(plots.save_comparison(out / "comparison.png", summary))
    io.save_json(out / "summary.json", summary)
    optimizer = (f", {'Nesterov' if args.nesterov else 'heavy-ball'} momentum {beta:g}" if beta else "") + \
        (f", batches of {args.batch_size} (theory: the full-batch mean)" if args.batch_size else "")
    print(f"wrote {out / 'summary.json'} and {summary['figure']} (η = {lr:.4g}, {steps} steps{optimizer})")
    for width, err in zip(widths, summary["median_rel_err_test_max"]):
        print(f"  width {width:>5}: median over seeds of the max-over-time test-output error {err:.4f}")
    if summary["width_exponent"] is not None:
        print(f"  error ∝ width^{summary['width_exponent']:.3f}")
    return 0


def _deep_linear(args: argparse.Namespace) -> int:
    from ntk_l2.deep_linear.experiment import DeepLinearExperiment, run_experiment

    widths = args.widths if args.widths is not None else (1,) * (args.depth + 1)
    exp = DeepLinearExperiment(widths=widths, regularizer=args.regularizer, strength=args.strength,
                               learning_rate=args.lr, steps=args.steps, method=args.method, seeds=args.seeds,
                               n_samples=args.samples, label_noise=args.label_noise, layer_ratio=args.layer_ratio)
    s = run_experiment(exp, args.out)
    print(f"wrote {Path(args.out) / 'summary.json'} and {s['figure']}")
    ends = [v for v in s["optimization_phase_end"] if v is not None]
    halves = [v for v in s["imbalance_half_time"] if v is not None]
    print(f"  loss {s['loss'][0]:.4g} -> {s['loss'][-1]:.4g} (min {s['min_loss']:.4g}); imbalance ‖D‖ "
          f"{s['imbalance_norm'][0]:.4g} -> {s['imbalance_norm'][-1]:.4g}")
    print("  optimization phase ends at step " + (f"{np.median(ends):g} (median)" if ends else "— (not reached)")
          + "; imbalance halved at step " + (f"{np.median(halves):g} (median)" if halves else "— (not within the run)"))
    print(f"  Hessian top eigenvalue {s['hessian_top'][0]:.4g} -> {s['hessian_top'][-1]:.4g}, "
          f"trace {s['hessian_trace'][0]:.4g} -> {s['hessian_trace'][-1]:.4g}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ntk-l2`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # bad flags (one line printed, code 2) or --help (code 0)
        return int(exit_.code or 0)
    commands = {"predict": _predict, "demo": _demo, "compare": _compare, "sweep": _sweep,
                "optimal-l2": _optimal_l2, "autol2": _autol2, "deep-linear": _deep_linear}
    try:
        with A.one_line_warnings():
            _check_out(args)
            return commands[args.command](args)
    except (Exception, KeyboardInterrupt) as err:  # every failure: one line, exit code 2 (130 when interrupted)
        return A.report_failure(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
