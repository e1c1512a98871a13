"""The parser and failure reports of the ``ntk-l2`` command line.

`build_parser` declares every subcommand, with the flags of `ntk_l2.cli.flags` and the
argument types of `ntk_l2.cli.arg_types` (re-exported here): a bad value is printed as one
line ``ntk-l2: error: argument --flag: …`` with exit code 2, and each flag's help ends with its
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
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator

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
from ntk_l2.cli.flags import (
    autol2_flags,
    compare_flags,
    deep_linear_flags,
    optimal_l2_flags,
    predict_flags,
    sweep_flags,
)
from ntk_l2.cli.kernel_command import kernel_flags
from ntk_l2.cli.schedule_command import schedule_flags

__all__ = [
    "DefaultsFormatter",
    "OneLineParser",
    "auto_or",
    "build_parser",
    "degree",
    "finite_float",
    "help_with_default",
    "momentum",
    "nonnegative_float",
    "nonnegative_int",
    "one_line_warnings",
    "positive_float",
    "positive_floats",
    "positive_int",
    "positive_int_list",
    "positive_ints",
    "report_failure",
    "size",
    "times",
]


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
    """The ``ntk-l2`` parser: ``predict``, ``demo``, ``compare``, the laws of L2 (``sweep``,
    ``optimal-l2``, ``autol2``), ``deep-linear`` and ``plot``; their flags are in `ntk_l2.cli.flags`."""
    parser = OneLineParser(
        prog="ntk-l2",
        description="Training dynamics of wide networks under L2 regularization. "
        "`ntk-l2 SUBCOMMAND --help` lists a subcommand's flags.",
        formatter_class=DefaultsFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="SUBCOMMAND")
    predict_flags(_subparser(sub, "predict", "predict outputs over time from a kernel .npz"))
    kernel_flags(_subparser(sub, "kernel", "compute a dataset's NTK and NNGP tile by tile into a kernel store"))
    d = _subparser(sub, "demo", "the main job: theory and finite width side by side on the embedded digits")
    d.add_argument("--out", default="out/demo", help="output directory")
    d.add_argument("--small", action="store_true", help="a smaller, faster run")
    compare_flags(_subparser(sub, "compare", "theory vs finite-width training at several widths"))
    sweep_flags(_subparser(sub, "sweep", "t*, best and budget accuracy over a (λ, η) grid"))
    optimal_l2_flags(_subparser(sub, "optimal-l2", "λ_opt for a budget of T steps: one run, the kernel, a grid"))
    autol2_flags(_subparser(sub, "autol2", "AutoL2 (or a λ schedule) against the best constant λ"))
    schedule_flags(
        _subparser(sub, "schedule", "a λ schedule learned on the kernel by gradient for a budget of T steps")
    )
    deep_linear_flags(
        _subparser(sub, "deep-linear", "a deep linear network: layer imbalance, the two phases, flatness")
    )
    plot = _subparser(
        sub, "plot", "draw a result directory's figures again (PNG + PDF) from its stored results, without recomputing"
    )
    plot.add_argument(
        "dir",
        metavar="DIR",
        help="a directory written by demo, compare, deep-linear, sweep, optimal-l2, autol2 or schedule (required)",
    )
    return parser
