"""``ntk-l2`` command line: ``predict`` and ``demo``.

Bad input prints one line ``ntk-l2: error: <argument>: <problem>`` and exits
with code 2, leaving no output file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np


def _parse_times(text: str) -> np.ndarray:
    try:
        values = np.array([float(x) for x in text.split(",") if x.strip()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"--times: expected comma-separated numbers, got {text!r}") from None
    if values.size == 0:
        raise ValueError("--times: no times given")
    return values


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
    p.add_argument("--lr", type=float, required=True, help="learning rate η")
    p.add_argument("--l2", type=float, required=True, help="L2 strength λ")
    p.add_argument("--degree", type=float, required=True, help="homogeneity degree k (integer >= 0)")
    p.add_argument("--times", required=True, help="comma-separated steps, e.g. 0,10,100")
    p.add_argument("--discrete", action="store_true", help="gradient descent with a finite step (default: gradient flow)")
    p.add_argument("--loss", default="mse", help="mse (closed form) or xent (ODE)")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output file (written atomically)")
    d = sub.add_parser("demo", help="the main job: theory demo on the embedded digits data")
    d.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    d.add_argument("--small", action="store_true", help="a smaller, faster run")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from ntk_l2 import io
    from ntk_l2.predict_file import load_kernel_file, predict_from_arrays

    times = _parse_times(args.times)
    if args.loss not in ("mse", "xent"):
        raise ValueError(f"--loss: must be mse or xent, got {args.loss!r}")
    arrays = load_kernel_file(args.kernel)
    out = predict_from_arrays(arrays, times, learning_rate=args.lr, l2=args.l2, degree=args.degree,
                              discrete=args.discrete, loss=args.loss)
    io.save_npz(args.out, **out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ntk_l2.demo import DemoConfig, run_theory_demo

    config = DemoConfig(n_train=128, n_test=256, n_times=30) if args.small else DemoConfig()
    summary = run_theory_demo(args.out, config)
    print(f"wrote {Path(args.out) / 'summary.json'} and {summary['figure']}")
    for lam, acc in summary["best_test_accuracy"].items():
        print(f"  λ = {lam:>6}: best predicted test accuracy {100 * acc:.1f}%")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ntk-l2`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return {"predict": _predict, "demo": _demo}[args.command](args)
    except ValueError as err:
        message = " ".join(str(err).split())
        print(f"ntk-l2: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
