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
    d = sub.add_parser("demo", help="the main job: theory and finite width side by side on the embedded digits")
    d.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    d.add_argument("--small", action="store_true", help="a smaller, faster run")
    c = sub.add_parser("compare", help="theory vs finite-width training at several widths")
    c.add_argument("--dataset", default="digits", choices=("digits", "mnist"), help="dataset (default: digits, embedded)")
    c.add_argument("--data-dir", default=None, help="directory holding the dataset files (mnist)")
    c.add_argument("--n-train", type=int, default=512)
    c.add_argument("--n-test", type=int, default=None, help="default: all remaining / the dataset's test set")
    c.add_argument("--depth", type=int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    c.add_argument("--widths", default="256,1024,2048", help="comma-separated widths")
    c.add_argument("--lr", default="auto", help="learning rate η, or auto: half the stability limit, capped at ηλ = 0.1")
    c.add_argument("--l2", type=float, default=1e-2, help="L2 strength λ")
    c.add_argument("--steps", default="auto", help="steps, or auto: 2/(ηλ)")
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--seed", type=int, default=0, help="data subset seed")
    c.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    c.add_argument("--out", required=True, help="output directory; widths finished there by an earlier run with the same settings are reused")
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


def _positive_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag}: expected positive integers, got {text!r}")
    return values


def _compare(args: argparse.Namespace) -> int:
    from ntk_l2 import data, io
    from ntk_l2.compare import CompareConfig, infinite_width_kernels, run_comparison, stable_learning_rate

    widths = _positive_ints(args.widths, "--widths")
    kwargs = {"n_train": args.n_train, "n_test": args.n_test, "seed": args.seed}
    if args.dataset == "mnist":
        kwargs["data_dir"] = args.data_dir
    ds = data.load_dataset(args.dataset, **kwargs)
    probe = CompareConfig(depth=args.depth, widths=widths, l2=args.l2)
    if args.lr == "auto":
        lr = stable_learning_rate(infinite_width_kernels(ds, probe)["train"], ds.y_train.size, args.l2, args.depth + 1)
    else:
        lr = float(args.lr)
    steps = int(round(2.0 / (lr * args.l2))) if args.steps == "auto" else int(args.steps)
    cfg = CompareConfig(depth=args.depth, widths=widths, learning_rate=lr, l2=args.l2, steps=steps,
                        seeds=args.seeds, float64=args.float64)
    out = Path(args.out)
    summary = run_comparison(ds, cfg, progress=True, out_dir=out)
    from ntk_l2 import plots

    summary["figure"] = str(plots.save_comparison(out / "comparison.png", summary))
    io.save_json(out / "summary.json", summary)
    print(f"wrote {out / 'summary.json'} and {summary['figure']} (η = {lr:.4g}, {steps} steps)")
    for width, err in zip(widths, summary["median_rel_err_test_max"]):
        print(f"  width {width:>5}: median over seeds of the max-over-time test-output error {err:.4f}")
    if summary["width_exponent"] is not None:
        print(f"  error ∝ width^{summary['width_exponent']:.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ntk-l2`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return {"predict": _predict, "demo": _demo, "compare": _compare}[args.command](args)
    except ValueError as err:
        message = " ".join(str(err).split())
        print(f"ntk-l2: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
