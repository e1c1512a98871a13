"""``ntk-l2`` command line: ``predict``, ``kernel``, ``demo``, ``compare``, ``sweep``, ``optimal-l2``,
``autol2``, ``schedule``, ``deep-linear``, ``plot``.

The arguments are parsed first (`args.build_parser`); each subcommand imports its experiment
(and with it JAX) only when it runs. Bad input, missing data and unwritable outputs print one
line ``ntk-l2: error: <argument>: <problem>`` and exit with code 2, leaving no output file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ntk_l2.cli import args as A
from ntk_l2.cli.kernel_command import run_kernel
from ntk_l2.cli.predict_command import run_predict
from ntk_l2.cli.schedule_command import run_schedule_command

if TYPE_CHECKING:
    from ntk_l2.data.datasets import Dataset


def _data_dir(args: argparse.Namespace) -> str | None:
    """``--data-dir``, else ``$NTK_L2_MNIST_DIR`` for mnist, else None: the loader's default,
    ``$NTK_L2_DATA/<dataset>`` or ``~/.cache/ntk_l2/<dataset>`` (`ntk_l2.data.formats.default_data_dir`)."""
    if getattr(args, "data_dir", None) is not None:
        return args.data_dir
    if getattr(args, "dataset", None) == "mnist":
        return os.environ.get("NTK_L2_MNIST_DIR") or None
    return None


def _sources(dataset: str, directory: Path) -> tuple[str, str, str]:
    """(hosts serving ``dataset``, the files to place by hand and where they come from, how to point at them)."""
    from urllib.parse import urlsplit

    from ntk_l2.data import formats

    if dataset == "mnist":
        hosts = ", ".join(urlsplit(url).netloc for url in formats.MNIST_MIRRORS)
        files = (
            f"the canonical *-ubyte.gz files (from {formats.MNIST_MIRRORS[0]}; the two t10k-* files suffice for "
            f"the test-split protocol) in {directory}"
        )
        return hosts, files, "--data-dir DIR or NTK_L2_MNIST_DIR=DIR"
    files = (
        f"{formats.CIFAR10_ARCHIVE} (from {formats.CIFAR10_URL}) or its extracted {formats.CIFAR10_DIR}/ in {directory}"
    )
    return urlsplit(formats.CIFAR10_URL).netloc, files, "--data-dir DIR"


def _first_sentence(err: BaseException) -> str:
    """The finding of a data error without the advice that follows it (written for the Python API)."""
    return re.split(r"\.\s+(?=[A-Z])", " ".join(str(err).split()), maxsplit=1)[0]


def _dataset(args: argparse.Namespace) -> Dataset:
    """The dataset of ``--dataset``, ``--data-dir``, ``--download``, ``--n-train``, ``--n-test``, ``--seed``.

    Missing files, failed downloads and unreadable directories become one-line `ValueError`s naming
    ``--data-dir`` or ``--download``, the hosts and how to place the files by hand.
    """
    from ntk_l2.data import datasets as data
    from ntk_l2.data import formats

    kwargs = {"n_train": args.n_train, "n_test": args.n_test, "seed": args.seed}
    directory = _data_dir(args)
    if args.dataset in ("mnist", "cifar10"):
        kwargs.update(data_dir=directory, download=args.download)
    if getattr(args, "shifted_copies", 0):  # ntk-l2 kernel: MNIST enlarged by shifted copies
        kwargs["shifted_copies"] = args.shifted_copies
    if getattr(args, "arch", "fc") == "cnn":
        kwargs["flatten"] = False  # NHWC images for the convolutions
    elif args.dataset == "cifar10":
        kwargs["flatten"] = True
    where = Path(directory).expanduser() if directory is not None else formats.default_data_dir(args.dataset)
    try:
        return data.load_dataset(args.dataset, **kwargs)
    except formats.DownloadError as err:
        hosts, files, point = _sources(args.dataset, where)
        raise ValueError(
            f"--download: could not fetch {args.dataset} from {hosts} ({_first_sentence(err)}); "
            f"without network access, place {files} by hand, or give {point} for a directory "
            f"holding them"
        ) from None
    except FileNotFoundError as err:
        hosts, files, point = _sources(args.dataset, where)
        raise ValueError(
            f"--data-dir: {args.dataset} files not found ({_first_sentence(err)}); pass --download to "
            f"fetch them from {hosts}, or place {files} by hand, or give {point} for a directory "
            f"holding them"
        ) from None
    except OSError as err:  # e.g. a data directory that cannot be created or read
        raise ValueError(f"--data-dir: {err.filename or where}: {err.strerror or err}") from None


def _check_out(args: argparse.Namespace) -> None:
    """Every command's ``--out``, checked before any work: writable, and not an input (predict's
    kernel file, or the data directory)."""
    from ntk_l2.common import io

    if args.command == "predict":
        io.check_output(args.out, inputs=(args.kernel,))
    elif args.command == "plot":
        io.check_output(args.dir, "DIR", directory=True)  # the figures are written into DIR
    else:
        io.check_output(args.out, directory=True, inputs=(_data_dir(args),))


def _finite_config(args: argparse.Namespace):
    from ntk_l2.laws import FiniteSweepConfig

    return FiniteSweepConfig(
        depth=args.depth,
        width=args.width,
        seeds=args.seeds,
        parameterization=args.parameterization,
        arch=args.arch,
        batchnorm=args.batchnorm,
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _percent(acc: float | None) -> str:
    """An accuracy as a percentage, or "undefined" (None: no accuracy at T)."""
    return "undefined" if acc is None else f"{100 * acc:.1f}%"


def _sweep(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.laws import run_sweep

    summary = run_sweep(
        _dataset(args),
        args.out,
        args.mode,
        args.l2,
        args.lr,
        args.budget,
        args.budget_step,
        _finite_config(args),
        log=_log,
        init_samples=args.init_samples,
    )
    print(f"wrote {Path(args.out) / 'summary.json'} and {summary.figure}")
    for r in summary.runs:
        print(
            f"  λ = {r.l2:<8g} η = {r.lr:<6g} t* = {r.t_star:<7g} t*ηλ = {r.t_star_eta_l2:.3f}  "
            f"best test acc {100 * r.max_test_acc:.1f}%" + ("  DIVERGED" if r.diverged else "")
        )
    spread = summary.t_star_eta_l2_spread
    print(
        f"  t*ηλ varies by a factor {spread:.2f} (max/min)"
        if spread is not None
        else "  t*ηλ: no run learned anything (t* = 0 everywhere)"
    )
    return 0


def _optimal_l2(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.laws import run_optimal_l2

    s = run_optimal_l2(
        _dataset(args),
        args.out,
        args.mode,
        args.lr,
        args.budget_step,
        args.probe_l2,
        args.grid,
        _finite_config(args),
        log=_log,
        init_samples=args.init_samples,
        method=args.method,
        surrogate=_surrogate(args),
    )
    print(f"wrote {Path(args.out) / 'summary.json'} and {s.figure}")
    print(
        f"  one run (λ = {args.probe_l2:g}): λ_opt = {s.l2_opt_one_run:.3g}, "
        f"accuracy at T {_percent(s.acc_at_budget_one_run)}"
    )
    how = "" if s.gradient is None else f" (gradient, {s.gradient.seconds:.1f} s)"
    print(f"  kernel only{how}: λ_opt = {s.l2_opt_kernel:.3g}, accuracy at T {_percent(s.acc_at_budget_kernel)}")
    print(
        f"  grid ({args.mode}): λ_opt = {s.l2_opt_grid:.3g}, accuracy at T {_percent(s.acc_at_budget_grid)}"
        + ("" if s.grid_optimum_interior else "  (at the edge of the grid)")
    )
    return 0


def _surrogate(args: argparse.Namespace):
    from ntk_l2.laws import Surrogate

    return Surrogate(args.surrogate, args.temperature, args.init_samples)


def _autol2(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.laws import run_autol2
    from ntk_l2.laws import AutoL2Config

    cfg = AutoL2Config(
        l2_init=args.l2_init,
        factor=args.factor,
        window=args.window,
        check_every=args.check_every,
        l2_min=args.l2_min,
        metric=args.metric,
        min_wait=args.min_wait,
    )
    schedule = None
    if args.schedule is not None:
        from ntk_l2.experiments.law_schedule import load_schedule

        schedule = load_schedule(args.schedule)
    lr = args.lr if args.lr is not None else 1.0 if schedule is None else schedule.learning_rate
    s = run_autol2(
        _dataset(args),
        args.out,
        args.mode,
        lr,
        args.steps,
        args.constant_l2,
        cfg,
        _finite_config(args),
        log=_log,
        init_samples=args.init_samples,
        schedule=schedule,
    )
    print(f"wrote {Path(args.out) / 'summary.json'} and {s.figure}")
    print(
        f"  best constant λ = {s.best_constant_l2:g}: best test acc {100 * s.best_constant_acc:.1f}% "
        f"at step {s.best_constant_steps:g}"
    )
    reach, ratio = s.autol2_steps_to_best_constant_acc, s.speedup_ratio
    when = "never" if reach is None else f"at step {reach:g}" + ("" if ratio is None else f" ({ratio:.2f}x its steps)")
    what = "AutoL2" if schedule is None else "λ schedule"
    print(f"  {what}: best test acc {100 * s.autol2_max_test_acc:.1f}%, reaches the constant run's best {when}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.demo import DemoConfig, run_demo

    config = DemoConfig(n_train=128, n_test=256, n_times=30, widths=(64, 256), seeds=2) if args.small else DemoConfig()
    result = run_demo(args.out, config)
    cmp = result.comparison
    print(f"wrote {Path(args.out) / 'summary.json'}, {result.figure} and {cmp.figure}")
    for lam, acc in result.best_test_accuracy.items():
        print(f"  λ = {lam:>6}: best predicted test accuracy {100 * acc:.1f}%")
    for width, err in zip(cmp.widths_list, cmp.median_rel_err_test_max, strict=False):
        print(f"  width {width:>5}: max-over-time test-output error vs theory {err:.3f} (median over seeds)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.compare import CompareConfig, infinite_width_kernels, run_comparison
    from ntk_l2.theory import stable_learning_rate

    if args.l2 == 0 and args.steps == "auto":
        raise ValueError(
            "--steps: auto is 2/(ηλ) (2(1 - β)/(ηλ) with --momentum), which has no value at --l2 0; give --steps"
        )
    if args.nesterov and args.momentum == 0:
        raise ValueError("--nesterov: needs --momentum > 0 (Nesterov's form of plain gradient descent is itself)")
    widths, beta = args.widths, args.momentum
    ds = _dataset(args)
    if args.batch_size is not None and args.batch_size > ds.x_train.shape[0]:
        raise ValueError(
            f"--batch-size: {args.batch_size} exceeds the {ds.x_train.shape[0]} training points (--n-train)"
        )
    kernels = None  # the infinite-width NTK, computed once: here for --lr auto, else in run_comparison
    if args.lr == "auto":
        kernels = infinite_width_kernels(ds, CompareConfig(depth=args.depth, widths=widths, l2=args.l2))
        lr = stable_learning_rate(
            kernels["train"], ds.y_train.size, args.l2, args.depth + 1, momentum=beta, nesterov=args.nesterov
        )
    else:
        lr = float(args.lr)
    steps = int(round(2.0 * (1.0 - beta) / (lr * args.l2))) if args.steps == "auto" else int(args.steps)
    cfg = CompareConfig(
        depth=args.depth,
        widths=widths,
        learning_rate=lr,
        l2=args.l2,
        steps=steps,
        seeds=args.seeds,
        float64=args.float64,
        momentum=beta,
        nesterov=args.nesterov,
        batch_size=args.batch_size,
    )
    out = Path(args.out)
    result = run_comparison(ds, cfg, progress=True, out_dir=out, kernels=kernels)
    optimizer = (f", {'Nesterov' if args.nesterov else 'heavy-ball'} momentum {beta:g}" if beta else "") + (
        f", batches of {args.batch_size} (theory: the full-batch mean)" if args.batch_size else ""
    )
    print(f"wrote {out / 'summary.json'} and {result.figure} (η = {lr:.4g}, {steps} steps{optimizer})")
    for width, err in zip(widths, result.median_rel_err_test_max, strict=False):
        print(f"  width {width:>5}: median over seeds of the max-over-time test-output error {err:.4f}")
    if result.width_exponent is not None:
        print(f"  error ∝ width^{result.width_exponent:.3f}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.plots import replot

    written = replot(args.dir)
    print(f"wrote {', '.join(str(p) for p in written)} (from the stored results; nothing recomputed)")
    return 0


def _deep_linear(args: argparse.Namespace) -> int:
    from ntk_l2.experiments.deep_linear import DeepLinearExperiment, run_experiment

    widths = args.widths if args.widths is not None else (1,) * (args.depth + 1)
    exp = DeepLinearExperiment(
        widths=widths,
        regularizer=args.regularizer,
        strength=args.strength,
        learning_rate=args.lr,
        steps=args.steps,
        method=args.method,
        seeds=args.seeds,
        n_samples=args.samples,
        label_noise=args.label_noise,
        layer_ratio=args.layer_ratio,
    )
    s = run_experiment(exp, args.out)
    import numpy as np

    print(f"wrote {Path(args.out) / 'summary.json'} and {s.figure}")
    ends = [v for v in s.optimization_phase_end if np.isfinite(v)]
    halves = [v for v in s.imbalance_half_time if np.isfinite(v)]
    print(
        f"  loss {s.loss[0]:.4g} -> {s.loss[-1]:.4g} (min {s.min_loss:.4g}); imbalance ‖D‖ "
        f"{s.imbalance_norm[0]:.4g} -> {s.imbalance_norm[-1]:.4g}"
    )
    print(
        "  optimization phase ends at step "
        + (f"{np.median(ends):g} (median)" if ends else "— (not reached)")
        + "; imbalance halved at step "
        + (f"{np.median(halves):g} (median)" if halves else "— (not within the run)")
    )
    print(
        f"  Hessian top eigenvalue {s.hessian_top[0]:.4g} -> {s.hessian_top[-1]:.4g}, "
        f"trace {s.hessian_trace[0]:.4g} -> {s.hessian_trace[-1]:.4g}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ntk-l2`` console script."""
    parser = A.build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # bad flags (one line printed, code 2) or --help (code 0)
        return int(exit_.code or 0)
    commands = {
        "predict": run_predict,
        "kernel": run_kernel,
        "demo": _demo,
        "compare": _compare,
        "sweep": _sweep,
        "optimal-l2": _optimal_l2,
        "autol2": _autol2,
        "schedule": lambda args: run_schedule_command(args, _dataset(args)),
        "deep-linear": _deep_linear,
        "plot": _plot,
    }
    try:
        with A.one_line_warnings():
            _check_out(args)
            return commands[args.command](args)
    except (Exception, KeyboardInterrupt) as err:  # every failure: one line, exit code 2 (130 when interrupted)
        return A.report_failure(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
