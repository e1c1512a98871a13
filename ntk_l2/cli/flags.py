"""The flags of each ``ntk-l2`` subcommand, declared on a parser that `ntk_l2.cli.args.build_parser`
made: ``predict``, ``compare``, the laws of L2 (``sweep``, ``optimal-l2``, ``autol2``) and
``deep-linear``. Every flag's help ends with its default when ``--help`` prints it
(`ntk_l2.cli.args.help_with_default`).
"""

from __future__ import annotations

import argparse

from ntk_l2.cli.arg_types import (
    auto_or,
    degree,
    finite_float,
    momentum,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_floats,
    positive_int,
    positive_int_list,
    positive_ints,
    size,
    times,
)


def predict_flags(p: argparse.ArgumentParser) -> None:
    """``predict``: a kernel file, η, λ, k, the times, the dynamics and ``--out``."""
    p.add_argument(
        "kernel",
        metavar="KERNEL",
        help="a kernel .npz (k_train_train, y_train, optional k_test_train, fx_*_0, nngp_*) or a kernel store "
        "directory written by `ntk-l2 kernel`",
    )
    p.add_argument("--lr", type=positive_float, required=True, help="learning rate η")
    p.add_argument("--l2", type=nonnegative_float, required=True, help="L2 strength λ")
    p.add_argument("--degree", type=degree, required=True, help="homogeneity degree k (integer >= 0)")
    p.add_argument("--times", type=times, required=True, help="comma-separated steps, e.g. 0,10,100")
    p.add_argument(
        "--discrete", action="store_true", help="gradient descent with a finite step instead of gradient flow"
    )
    p.add_argument(
        "--momentum",
        type=momentum,
        default=0.0,
        metavar="BETA",
        help="heavy-ball momentum β in [0, 1): the exact map with --discrete, else its gradient flow",
    )
    p.add_argument("--nesterov", action="store_true", help="with --momentum and --discrete: Nesterov's form")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="B",
        help="with --discrete: minibatch SGD with batches of B points; adds the spread over batch draws "
        "(default: full batch)",
    )
    p.add_argument("--loss", default="mse", choices=("mse", "xent"), help="mse (closed form) or xent (ODE)")
    p.add_argument(
        "--solver",
        default="auto",
        choices=("auto", "dense", "krylov"),
        help="dense: one eigendecomposition in place; krylov: block Lanczos on kernel products, with an error "
        "estimate; auto: for a .npz the engine's dense solvers (every option), for a kernel store dense up to "
        "3,000 points when it fits, else krylov",
    )
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-8,
        help="--solver krylov: grow the Krylov space until the estimated relative error of every output is <= TOL",
    )
    p.add_argument(
        "--max-memory",
        type=size,
        default=None,
        metavar="SIZE",
        help="refuse requests estimated above SIZE, e.g. 64G (default: the memory available now)",
    )
    p.add_argument(
        "--max-loop-steps",
        type=positive_float,
        default=None,
        metavar="N",
        help="--discrete: refuse a step loop longer than N steps x modes (default: 3e10, about a minute)",
    )
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output file (written atomically, never an input)")


def data_flags(p: argparse.ArgumentParser, datasets: tuple[str, ...]) -> None:
    """``--dataset``, ``--data-dir``, ``--download``, ``--n-train``, ``--n-test``, ``--seed``."""
    files = "/".join(datasets[1:])
    p.add_argument("--dataset", default="digits", choices=datasets, help="dataset (digits is embedded: no files)")
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=f"directory holding the {files} files (default: $NTK_L2_MNIST_DIR for mnist, else "
        "$NTK_L2_DATA/DATASET, else ~/.cache/ntk_l2/DATASET)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help=f"fetch missing {files} files into the data directory (checksums verified)",
    )
    p.add_argument("--n-train", type=positive_int, default=512, help="training points drawn from the dataset")
    p.add_argument(
        "--n-test",
        type=positive_int,
        default=None,
        help="test points (default: all remaining digits / the dataset's whole test set)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the drawn training and test subsets")


def compare_flags(c: argparse.ArgumentParser) -> None:
    """``compare``: data, the networks (depth, widths, seeds), η, λ, steps, momentum, batches."""
    data_flags(c, ("digits", "mnist"))
    c.add_argument("--depth", type=positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    c.add_argument("--widths", type=positive_ints, default=(256, 1024, 2048), help="comma-separated distinct widths")
    c.add_argument(
        "--lr",
        type=auto_or(positive_float),
        default="auto",
        help="learning rate η, or auto: half the stability limit (of the momentum map with --momentum), "
        "capped at ηλ/(1 - β) = 0.1",
    )
    c.add_argument("--l2", type=nonnegative_float, default=1e-2, help="L2 strength λ (0 needs --steps)")
    c.add_argument("--steps", type=auto_or(positive_int), default="auto", help="steps, or auto: 2(1 - β)/(ηλ)")
    c.add_argument(
        "--momentum",
        type=momentum,
        default=0.0,
        metavar="BETA",
        help="heavy-ball momentum β in [0, 1) of the networks and the theory (0: plain gradient descent)",
    )
    c.add_argument(
        "--nesterov",
        action="store_true",
        help="with --momentum: Nesterov's form, θ ← θ - η(g + βv) (no continuous-time theory then)",
    )
    c.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="B",
        help="minibatch SGD, B training points per step, compared with the full-batch theory, which is "
        "the mean over batch draws (default: full batch)",
    )
    c.add_argument("--seeds", type=positive_int, default=3, help="networks trained per width (initialization seeds)")
    c.add_argument("--float64", action="store_true", help="train in float64 instead of float32")
    c.add_argument(
        "--out",
        required=True,
        help="output directory; widths finished there by an earlier run with the same settings are reused",
    )


def law_flags(p: argparse.ArgumentParser) -> None:
    """The flags that ``sweep``, ``optimal-l2`` and ``autol2`` share: data, mode, network, ``--out``."""
    data_flags(p, ("digits", "mnist", "cifar10"))
    p.add_argument(
        "--mode",
        default="theory",
        choices=("theory", "finite"),
        help="theory: the infinite-width discrete map (seconds); finite: train networks",
    )
    p.add_argument("--depth", type=positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    p.add_argument("--width", type=positive_int, default=512, help="width of the finite networks")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per finite run (accuracy averaged)")
    p.add_argument(
        "--arch",
        default="fc",
        choices=("fc", "cnn"),
        help="fc: fully connected; cnn: 3×3 convolutions, stride 2, --width channels (images kept NHWC)",
    )
    p.add_argument(
        "--batchnorm", action="store_true", help="cnn with batch normalization (finite runs only, no theory)"
    )
    p.add_argument(
        "--parameterization",
        default="ntk",
        choices=("ntk", "standard"),
        help="ntk, or standard (W trained directly, as in the paper; theory at --width)",
    )
    p.add_argument(
        "--init-samples",
        type=nonnegative_int,
        default=0,
        help="theory for single networks: average over this many NNGP draws of f_0 (0: the mean prediction)",
    )
    p.add_argument("--out", required=True, help="output directory (summary.json, figure; finite runs resumable)")


def sweep_flags(s: argparse.ArgumentParser) -> None:
    """``sweep``: t*, best and budget accuracy over a (λ, η) grid, runs of budget/(ηλ) steps."""
    law_flags(s)
    s.add_argument(
        "--l2", type=positive_floats, default=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1), help="comma-separated λ values"
    )
    s.add_argument("--lr", type=positive_floats, default=(0.5, 1.0), help="comma-separated learning rates")
    s.add_argument("--budget", type=positive_float, default=2.0, help="each run lasts budget/(ηλ) steps")
    s.add_argument(
        "--budget-step", type=positive_int, default=None, help="also report the accuracy at this step T (default: none)"
    )


def optimal_l2_flags(o: argparse.ArgumentParser) -> None:
    """``optimal-l2``: λ_opt for a budget of T steps from one run, from the kernel and from a grid."""
    law_flags(o)
    o.add_argument("--lr", type=positive_float, default=1.0, help="learning rate η")
    o.add_argument("--budget-step", type=positive_int, required=True, help="the budget T in steps")
    o.add_argument("--probe-l2", type=positive_float, default=1e-2, help="λ of the one run that measures c = t*ηλ")
    o.add_argument(
        "--grid",
        type=positive_floats,
        default=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        help="comma-separated λ grid",
    )
    o.add_argument(
        "--method",
        default="grid",
        choices=("grid", "gradient"),
        help="the kernel's λ_opt: best of 41 predicted accuracies, or by gradient of a smooth surrogate (seconds)",
    )
    surrogate_flags(o)


def surrogate_flags(p: argparse.ArgumentParser) -> None:
    """The smooth surrogate of the test error minimized by gradient (`ntk_l2.laws.Surrogate`)."""
    p.add_argument(
        "--surrogate",
        default="error",
        choices=("error", "xent", "loss"),
        help="what the gradient minimizes at T: 1 - mean softmax(f/τ)[label], the cross-entropy, or the test MSE",
    )
    p.add_argument("--temperature", type=positive_float, default=0.01, help="τ of the error and xent surrogates")


def autol2_flags(a: argparse.ArgumentParser) -> None:
    """``autol2``: AutoL2 (`ntk_l2.laws.AutoL2Config`) against a grid of constant λ."""
    law_flags(a)
    a.add_argument("--lr", type=positive_float, default=None, help="learning rate η (default 1, or the --schedule's)")
    a.add_argument("--steps", type=positive_int, required=True, help="steps of every run")
    a.add_argument(
        "--constant-l2",
        type=positive_floats,
        default=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        help="comma-separated constant λ to compare",
    )
    a.add_argument("--l2-init", type=positive_float, default=0.1, help="AutoL2's first λ")
    a.add_argument("--factor", type=positive_float, default=10.0, help="λ is divided by this when the metric stalls")
    a.add_argument("--window", type=positive_int, default=100, help="steps without improvement before λ is divided")
    a.add_argument("--check-every", type=positive_int, default=10, help="steps between two checks of the metric")
    a.add_argument("--l2-min", type=positive_float, default=1e-5, help="λ is never divided below this")
    a.add_argument(
        "--metric",
        default="train_error",
        choices=("train_error", "loss"),
        help="what must stop improving: 1 - train accuracy, or the data loss",
    )
    a.add_argument(
        "--min-wait",
        type=nonnegative_float,
        default=0.0,
        help="hold each new λ at least this many of its time scales 1/(ηλ) (0: off)",
    )
    a.add_argument(
        "--schedule",
        default=None,
        metavar="FILE",
        help="train with this λ schedule (written by `ntk-l2 schedule`) instead of AutoL2's rule; "
        "--lr defaults to its η",
    )


def deep_linear_flags(dl: argparse.ArgumentParser) -> None:
    """``deep-linear``: the chain or matrix layers, the regularizer, η, steps, the teacher task."""
    dl.add_argument(
        "--depth", type=positive_int, default=3, help="weight layers L of a scalar chain (ignored with --widths)"
    )
    dl.add_argument(
        "--widths",
        type=positive_int_list,
        default=None,
        help="matrix layers: comma-separated d_in,d_1,...,d_out (default: a scalar chain of --depth layers)",
    )
    dl.add_argument(
        "--regularizer",
        default="minibatch",
        choices=("none", "l2", "input-noise", "minibatch"),
        help="what regularizes training: nothing, an L2 penalty, input noise or minibatch noise",
    )
    dl.add_argument(
        "--strength", type=finite_float, default=4.0, help="λ (l2), σ (input-noise) or the batch size (minibatch)"
    )
    dl.add_argument("--lr", type=positive_float, default=0.05, help="learning rate η")
    dl.add_argument("--steps", type=positive_int, default=20_000, help="steps (end time for --method flow)")
    dl.add_argument("--method", default="gd", choices=("gd", "flow"), help="gradient descent/SGD or gradient flow")
    dl.add_argument("--seeds", type=positive_int, default=8, help="noise seeds (mean over seeds is reported)")
    dl.add_argument("--samples", type=positive_int, default=64, help="training samples of the linear teacher task")
    dl.add_argument("--label-noise", type=nonnegative_float, default=0.5, help="std of the label noise")
    dl.add_argument(
        "--layer-ratio",
        type=positive_float,
        default=2.0,
        help="initial scale ratio of consecutive layers (1: comparable)",
    )
    dl.add_argument("--out", default="out/deep_linear", help="output directory (summary.json, deep_linear.png)")
