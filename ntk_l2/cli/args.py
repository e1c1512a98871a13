"""Argument types, the parser and failure reports of the ``ntk-l2`` command line.

Each type turns a flag's text into a value or raises `argparse.ArgumentTypeError`,
which the parser prints as one line ``ntk-l2: error: argument --flag: …`` with
exit code 2. `build_parser` declares every subcommand; each flag's help ends with its
default (`help_with_default`). Building and running the parser imports neither NumPy
nor JAX, so ``ntk-l2 --help`` and ``ntk-l2 SUB --help`` start in a fraction of a second.
`report_failure` turns any exception a command raises into one line:
``ValueError`` (bad input, refused request), ``OSError`` (files, disks),
``MemoryError``, and anything else as an internal error with its traceback saved
for a report.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ntk_l2.common.memory import parse_bytes

if TYPE_CHECKING:
    import numpy as np


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number ≥ 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def momentum(text: str) -> float:
    """A momentum coefficient β in [0, 1)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number ≥ 1."""
    return _integer(text, 1)


def nonnegative_int(text: str) -> int:
    """A whole number ≥ 0."""
    return _integer(text, 0)


def degree(text: str) -> int:
    """A homogeneity degree: a whole number ≥ 0 ('4' or '4.0')."""
    value = _number(text)
    if value < 0 or not value.is_integer():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(value)


def auto_or(kind):
    """'auto', or a value of ``kind``."""

    def parse(text: str):
        return "auto" if text == "auto" else kind(text)

    parse.__name__ = f"auto_or_{kind.__name__}"
    return parse


def _items(text: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def finite_float(text: str) -> float:
    """A finite number (its range is checked where it is used)."""
    return _number(text)


def _listed(text: str, kind, what: str) -> tuple:
    try:
        return tuple(kind(x) for x in _items(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _distinct(values: tuple, text: str) -> tuple:
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"values repeat in {text!r}")
    return values


def positive_floats(text: str) -> tuple[float, ...]:
    """Comma-separated distinct numbers > 0."""
    return _distinct(_listed(text, positive_float, "comma-separated positive numbers"), text)


def positive_ints(text: str) -> tuple[int, ...]:
    """Comma-separated distinct whole numbers ≥ 1."""
    return _distinct(_listed(text, positive_int, "comma-separated positive integers"), text)


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers ≥ 1 (repeats allowed: layer widths)."""
    return _listed(text, positive_int, "comma-separated positive integers")


def times(text: str) -> np.ndarray:
    """Comma-separated finite steps ≥ 0 (an output file holds finite numbers only)."""
    import numpy as np

    values = []
    for item in _items(text):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if math.isnan(value) or value < 0:
            raise argparse.ArgumentTypeError(f"times must be numbers >= 0, got {item!r}")
        if math.isinf(value):
            raise argparse.ArgumentTypeError(
                "inf cannot be written to the output file; a large finite time "
                "such as 1e300 gives the t → ∞ limit of gradient flow"
            )
        values.append(value)
    return np.array(values, np.float64)


def size(text: str) -> float:
    """A memory size: 512M, 24G, 1.5T or bytes."""
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def report_failure(err: BaseException) -> int:
    """Print one line for a command's failure and return its exit code (2; 130 when interrupted)."""
    if isinstance(err, KeyboardInterrupt):
        print("ntk-l2: interrupted (finished runs are kept; run the same command again to resume)", file=sys.stderr)
        return 130
    if isinstance(err, ValueError):
        message = _one_line(err)
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        message = f"{where}{_one_line(err.strerror or err)}"
    elif isinstance(err, MemoryError):
        message = "out of memory; ask for fewer points or times (the request was larger than the machine holds)"
    else:
        with tempfile.NamedTemporaryFile("w", prefix="ntk-l2-crash-", suffix=".txt", delete=False) as handle:
            traceback.print_exception(type(err), err, err.__traceback__, file=handle)
        message = (
            f"internal error: {type(err).__name__}: {_one_line(err)} — this is a bug in ntk_l2, not in "
            f"your input; please report it with the command line and the traceback saved in {handle.name}"
        )
    print(f"ntk-l2: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings (e.g. a stored run that failed verification) as ``ntk-l2: warning: …`` lines."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"ntk-l2: warning: {_one_line(message)}", file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


# --- the parser ------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line, exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"ntk-l2: error: {_one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def _shown(action: argparse.Action) -> str:
    """A default as it would be typed: on/off for switches, comma-separated for lists."""
    value = action.default
    if action.nargs == 0 and isinstance(value, bool):  # store_true / store_false
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def help_with_default(action: argparse.Action) -> str:
    """A flag's help as ``--help`` prints it: ends with ``(default: …)``, or ``(required)``.

    Help that already states its default (a ``None`` default needs words: "the memory available
    now", "full batch") is kept as written; positional arguments and ``-h`` get no suffix.
    """
    text = action.help or ""
    if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text:
        return text
    if action.required:
        return f"{text} (required)"
    return f"{text} (default: {_shown(action).replace('%', '%%')})"


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines that end with the flag's default (`help_with_default`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return help_with_default(action)


def _subparser(sub: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=text, description=text[:1].upper() + text[1:] + ".", formatter_class=DefaultsFormatter
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``ntk-l2`` parser: ``predict``, ``demo``, ``compare`` and the subcommands of `_law_parsers`."""
    parser = OneLineParser(
        prog="ntk-l2",
        description="Training dynamics of wide networks under L2 regularization. "
        "`ntk-l2 SUBCOMMAND --help` lists a subcommand's flags.",
        formatter_class=DefaultsFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="SUBCOMMAND")
    _predict_parser(_subparser(sub, "predict", "predict outputs over time from a kernel .npz"))
    d = _subparser(sub, "demo", "the main job: theory and finite width side by side on the embedded digits")
    d.add_argument("--out", default="out/demo", help="output directory")
    d.add_argument("--small", action="store_true", help="a smaller, faster run")
    _compare_parser(_subparser(sub, "compare", "theory vs finite-width training at several widths"))
    _law_parsers(sub)
    _deep_linear_parser(
        _subparser(sub, "deep-linear", "a deep linear network: layer imbalance, the two phases, flatness")
    )
    plot = _subparser(
        sub, "plot", "draw a result directory's figures again (PNG + PDF) from its stored results, without recomputing"
    )
    plot.add_argument(
        "dir",
        metavar="DIR",
        help="a directory written by demo, compare, deep-linear, sweep, optimal-l2 or autol2 (required)",
    )
    return parser


def _predict_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("kernel", metavar="KERNEL.npz", help="k_train_train, y_train, optional k_test_train, fx_*_0, nngp_*")
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


def _data_flags(p: argparse.ArgumentParser, datasets: tuple[str, ...]) -> None:
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


def _compare_parser(c: argparse.ArgumentParser) -> None:
    _data_flags(c, ("digits", "mnist"))
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


def _law_parsers(sub: argparse._SubParsersAction) -> None:
    """``sweep``, ``optimal-l2`` and ``autol2``: the laws of L2, in theory or on finite networks."""

    def common(p: argparse.ArgumentParser) -> None:
        _data_flags(p, ("digits", "mnist", "cifar10"))
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

    s = _subparser(sub, "sweep", "t*, best and budget accuracy over a (λ, η) grid")
    common(s)
    s.add_argument(
        "--l2", type=positive_floats, default=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1), help="comma-separated λ values"
    )
    s.add_argument("--lr", type=positive_floats, default=(0.5, 1.0), help="comma-separated learning rates")
    s.add_argument("--budget", type=positive_float, default=2.0, help="each run lasts budget/(ηλ) steps")
    s.add_argument(
        "--budget-step", type=positive_int, default=None, help="also report the accuracy at this step T (default: none)"
    )
    o = _subparser(sub, "optimal-l2", "λ_opt for a budget of T steps: one run, the kernel, a grid")
    common(o)
    o.add_argument("--lr", type=positive_float, default=1.0, help="learning rate η")
    o.add_argument("--budget-step", type=positive_int, required=True, help="the budget T in steps")
    o.add_argument("--probe-l2", type=positive_float, default=1e-2, help="λ of the one run that measures c = t*ηλ")
    o.add_argument(
        "--grid",
        type=positive_floats,
        default=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        help="comma-separated λ grid",
    )
    a = _subparser(sub, "autol2", "AutoL2 against the best constant λ")
    common(a)
    a.add_argument("--lr", type=positive_float, default=1.0, help="learning rate η")
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


def _deep_linear_parser(dl: argparse.ArgumentParser) -> None:
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
