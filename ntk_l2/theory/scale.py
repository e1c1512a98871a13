"""Predictions at 10^4–10^5 training points: the Krylov solver, the dense solver in bounded
memory, and the choice between them (`derivations/large.md`, K1–K7).

Both predict the mean outputs of gradient flow (closed form, C1–C6) or of gradient descent (the
exact discrete map, with momentum: D1–D6, M1–M11) at the requested times, from a training kernel
Θ_0 and a test kernel Θ_*X given as arrays or as `KernelOperator`s (a stored kernel read from disk
in tiles), and report an error estimate with every prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.operators import ArrayKernel, KernelOperator, as_operator
from ntk_l2.theory.scale_dense import dense_bytes, predict_dense
from ntk_l2.theory.scale_krylov import predict_krylov
from ntk_l2.theory.scale_problem import DEFAULT_TOL, ScalePrediction, TrainingRule

__all__ = [
    "DEFAULT_TOL",
    "SOLVERS",
    "ArrayKernel",
    "TrainingRule",
    "KernelOperator",
    "ScalePrediction",
    "choose_solver",
    "predict_at_scale",
    "predict_dense",
    "predict_krylov",
]

SOLVERS = ("auto", "dense", "krylov")
DENSE_MAX_POINTS = 3000  # auto: dense up to here (exact to round-off, seconds), Krylov beyond (K7)


def choose_solver(n: int, c: int, m: int, times: int) -> str:
    """``auto`` (K7): dense for n ≤ `DENSE_MAX_POINTS` when its 2n² numbers fit, else Krylov."""
    fits = dense_bytes(n, c, m, times) <= _memory.limit_bytes()
    return "dense" if n <= DENSE_MAX_POINTS and fits else "krylov"


def predict_at_scale(
    k_train_train: Any,
    y_train: Any,
    times: Any,
    dynamics: TrainingRule,
    *,
    fx_train_0: Any = 0.0,
    k_test_train: Any = None,
    fx_test_0: Any = None,
    solver: str = "auto",
    tol: float = DEFAULT_TOL,
    progress: bool | None = None,
) -> ScalePrediction:
    """Mean outputs at ``times`` by ``solver`` ("auto", "dense" or "krylov"; K7), with an error estimate.

    ``tol`` is the Krylov solver's relative tolerance (ignored by the dense solver, exact to
    round-off). See `predict_dense` and `predict_krylov`.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver: must be one of {', '.join(SOLVERS)}, got {solver!r}")
    tol = _checks.check_scalar(tol, "tol", positive=True)
    if solver == "auto":
        train = as_operator(k_train_train, "k_train_train")
        n = train.shape[0]
        c = int(getattr(y_train, "shape", (n, 1))[1]) if len(getattr(y_train, "shape", ())) == 2 else 1
        m = 0 if k_test_train is None else as_operator(k_test_train, "k_test_train").shape[0]
        solver = choose_solver(n, c, m, int(np.size(times)))
        k_train_train = train
    kwargs = {"fx_train_0": fx_train_0, "k_test_train": k_test_train, "fx_test_0": fx_test_0}
    if solver == "dense":
        return predict_dense(k_train_train, y_train, times, dynamics, **kwargs)
    return predict_krylov(k_train_train, y_train, times, dynamics, tol=tol, progress=progress, **kwargs)
