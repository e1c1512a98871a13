"""The dense solver in bounded memory (`derivations/large.md`, K5–K6).

One copy of the training kernel is read (`KernelOperator.load`) and diagonalized in place
(LAPACK ``syevr``: the kernel's memory is overwritten, the eigenvectors take one more n × n
array, 2n² numbers in all, against 3n² for ``syevd``); the per-mode coefficients of the
dynamics (C6, M4) give the training outputs, and the test outputs are formed in chunks of test
rows read one at a time:

    f_X(t) = V (P(t) z_0 + Q(t) z_y),   f_*(t) = E(t) f_*(0) + Θ_*X A(t),   A(t) = V (W^z z_0 + W^y z_y),

so the test kernel is never held whole. Memory is checked before anything is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from ntk_l2.common import memory as _memory
from ntk_l2.theory import _engine
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import KernelEigen, apply_left
from ntk_l2.theory.operators import check_loaded
from ntk_l2.theory.scale_problem import ScalePrediction, TrainingRule, check_inputs, kernel_eps, roundoff

Array = NDArray[np.float64]


def dense_bytes(n: int, c: int, m: int, times: int, block_rows: int = 1024) -> float:
    """Peak memory of `predict_dense` (K6): the kernel and its eigenvectors (2n²), LAPACK's
    O(n) workspace, the coefficients (5T·n), the outputs and their intermediates (3T·n·c +
    T·m·c) and one chunk of test rows (``block_rows``·n)."""
    return 8.0 * (2.0 * n * n + 30.0 * n + 5.0 * times * n + 3.0 * times * n * c + times * m * c + block_rows * n)


def check_dense_memory(n: int, c: int, m: int, steps: int, block_rows: int = 1024) -> None:
    """Refuse (one line naming ``k_train_train``) a dense request whose `dense_bytes` exceed the limit."""
    _memory.check_fits(
        dense_bytes(n, c, m, steps, block_rows),
        f"the dense solver for {n} + {m} points and {steps} times (2 copies of the {n} x {n} kernel; the "
        f"Krylov solver, --solver krylov, holds none)",
        "k_train_train",
    )


def eigh_in_place(
    kernel: Array, name: str = "k_train_train", eps: float = float(np.finfo(np.float64).eps)
) -> KernelEigen:
    """Θ_0 = V diag(μ) Vᵀ from an array the caller gives up (its memory is overwritten; K5).

    ``kernel`` must be a C-ordered float64 (n, n) array, symmetric (checked by the caller); its
    transpose is the same matrix in Fortran order, which LAPACK overwrites without a copy.
    """
    evals, evecs = scipy.linalg.eigh(kernel.T, driver="evr", overwrite_a=True, check_finite=False)
    return KernelEigen(evals=_checks.check_eigenvalues(evals, name, eps), evecs=evecs)


def predict_dense(
    k_train_train: Any,
    y_train: Any,
    times: Any,
    dynamics: TrainingRule,
    *,
    fx_train_0: Any = 0.0,
    k_test_train: Any = None,
    fx_test_0: Any = None,
) -> ScalePrediction:
    """Mean outputs at ``times`` from one in-place eigendecomposition (C6, M4; K5).

    Kernels are arrays (never modified: the one copy diagonalized is the solver's) or
    `KernelOperator`s (a stored kernel: its one copy is read from disk). Refuses, before
    reading anything, a request whose memory (`dense_bytes`) exceeds the limit in force.
    """

    def fits(n: int, c: int, m: int, steps: int) -> None:
        check_dense_memory(n, c, m, steps, int(getattr(k_test_train, "block_rows", 1024)))

    inp = check_inputs(dynamics, k_train_train, y_train, times, fx_train_0, k_test_train, fx_test_0, fits)
    n, c, m = inp.sizes
    kernel = check_loaded(inp.train.load(), n, "k_train_train")
    eig = eigh_in_place(kernel, "k_train_train", kernel_eps(inp.train))
    del kernel
    problem, coefficients, parse = dynamics.setup(eig, inp.y)
    with _engine.float64():  # JAX computes in float32 outside an x64 scope
        steps, _ = parse(inp.times)
        co = coefficients(steps)
        p, q, wz, wy, e = (np.asarray(x, np.float64) for x in (co.p, co.q, co.wz, co.wy, co.e))
    _engine.refuse_non_finite((p, q), "fx_train", inp.times, np.asarray(problem.evals))
    v = eig.evecs
    z0, zy = v.T @ inp.f0, v.T @ inp.y
    fx_train = apply_left(v, p[..., None] * z0 + q[..., None] * zy)
    _checks.check_finite_result(fx_train, "fx_train", inp.times)
    fx_test = None
    if inp.test is not None:
        _engine.refuse_non_finite((wz, wy, e[:, None]), "fx_test", inp.times, np.asarray(problem.evals))
        weights = apply_left(v, wz[..., None] * z0 + wy[..., None] * zy)  # A(t), (T, n, c)
        fx_test = np.empty((len(inp.times), m, c))
        for rows, block in inp.test.row_blocks():
            fx_test[:, rows] = e[:, None, None] * inp.fs0[rows] + apply_left(block, weights)
        _checks.check_finite_result(fx_test, "fx_test", inp.times)
    estimate = np.full(len(inp.times), roundoff(n))
    return ScalePrediction(inp.times, fx_train, fx_test, "dense", estimate, n, True)
