"""``ntk-l2 predict``: outputs over time from a kernel ``.npz`` or from a kernel store directory.

A ``.npz`` with ``--solver auto`` goes to the engine's solvers (every option: momentum flow, SGD,
cross-entropy, the covariance over initializations; `ntk_l2.experiments.predict_file`). A kernel
store, or ``--solver dense``/``krylov``, goes to the large-scale solvers
(`ntk_l2.experiments.predict_store`): mean outputs of gradient flow or of the discrete map, with
an error estimate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["run_predict"]


def run_predict(args: argparse.Namespace) -> int:
    """Predict from a kernel .npz (the engine's solvers, or ``--solver dense/krylov``) or from a kernel store."""
    import numpy as np

    from ntk_l2.common import io
    from ntk_l2.common import memory as _memory
    from ntk_l2.experiments import predict_store as scale
    from ntk_l2.experiments.predict_file import load_kernel_file, predict_file

    method = {
        "learning_rate": args.lr,
        "l2": args.l2,
        "degree": args.degree,
        "discrete": args.discrete,
        "momentum": args.momentum,
        "nesterov": args.nesterov,
    }
    scale_rule = {**method, "max_loop_steps": args.max_loop_steps}
    if scale.is_kernel_store(args.kernel) or args.solver != "auto":
        _refuse_at_scale(args)
        request = scale.StoreRequest(scale.TrainingRule(**scale_rule), args.solver, args.tol)
        with _memory.memory_limit(args.max_memory):
            if scale.is_kernel_store(args.kernel):
                out, res = scale.predict_store(args.kernel, args.times, request)
            else:
                out, res = scale.predict_npz_at_scale(load_kernel_file(args.kernel), args.times, request)
        io.save_npz(args.out, **out)
        acc = out.get("test_accuracy")
        best = "" if acc is None or np.all(np.isnan(acc)) else f", best test accuracy {100 * np.nanmax(acc):.1f}%"
        size = "" if res.solver == "dense" else f", {res.krylov_size} dimensions"
        print(
            f"wrote {args.out}: {res.solver} solver{size}, estimated relative error {res.max_error_estimate:.2g}{best}"
        )
        return 0
    out = predict_file(
        args.kernel,
        args.times,
        max_memory=args.max_memory,
        loss=args.loss,
        max_loop_steps=args.max_loop_steps,
        batch_size=args.batch_size,
        **method,
    )
    io.save_npz(args.out, **out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


def _refuse_at_scale(args: argparse.Namespace) -> None:
    """The options the large-scale solvers do not cover, named before any work."""
    from ntk_l2.experiments import predict_store as scale

    store = scale.is_kernel_store(args.kernel)
    where = "a kernel store" if store else f"--solver {args.solver}"
    if args.loss != "mse":
        raise ValueError(f"--loss: {where} predicts MSE; cross-entropy needs a .npz with --solver auto")
    if args.batch_size is not None:
        raise ValueError(f"--batch-size: {where} predicts full-batch training; SGD needs a .npz with --solver auto")
    out = Path(args.out).resolve()
    if store and Path(args.kernel).resolve() in out.parents:
        raise ValueError(f"--out: {args.out} is inside the kernel store {args.kernel}; stores are never modified")
