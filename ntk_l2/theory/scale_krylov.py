"""The Krylov solver: predictions from products with the training kernel (`derivations/large.md`, K1–K5).

`predict_krylov` grows a block Krylov space (`ntk_l2.theory.krylov.BlockLanczos`) from B = [Y, f_X(0)]
and predicts the Galerkin-projected problem, an r-point kernel problem (K3), with the engine's
own solvers, until two successive spaces agree to ``tol`` (K4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import KernelEigen, apply_left
from ntk_l2.theory.krylov import BlockLanczos, KrylovSpace, ritz_pairs, start_block
from ntk_l2.theory.operators import checked_product
from ntk_l2.theory.scale_problem import (
    DEFAULT_TOL,
    ScaleInputs,
    ScalePrediction,
    TrainingRule,
    check_inputs,
    kernel_eps,
    relative_change,
    roundoff,
)

Array = NDArray[np.float64]
DEFAULT_MAX_SIZE = 4096  # columns: real kernels converge with r ≈ 60–300 (K7); sizes the memory check


@dataclass(frozen=True)
class _Projected:
    """A Galerkin prediction on an r-column basis: train outputs in the basis, test outputs as they are."""

    train: Array  # (T, r, c)
    test: Array | None  # (T, m, c)

    def change(self, older: _Projected) -> Array:
        """Relative change from a prediction on the leading columns of this basis (K4)."""
        r_old = older.train.shape[1]
        padded = np.zeros_like(self.train)
        padded[:, :r_old] = older.train
        change = relative_change(self.train, padded)
        if self.test is not None and older.test is not None:
            change = np.maximum(change, relative_change(self.test, older.test))
        return change


def _projected_prediction(
    space: KrylovSpace,
    n: int,
    y: Array,
    f0: Array,
    kxq: Array | None,
    fs0: Array | None,
    times: Array,
    how: TrainingRule,
    eps: float,
) -> tuple[_Projected, int]:
    """The r-point problem of K3: kernel (r/n)T, targets Qᵀ Y, f'(0) = Qᵀ f_X(0), test kernel (r/n)Θ_*X Q.

    Padded to a power of two of points with modes of eigenvalue 0 whose targets, initial outputs
    and test-kernel columns are 0, which change nothing (K3): the engine then compiles once per
    power of two instead of once per check.
    """
    r = space.size
    theta, s = ritz_pairs(space, eps=eps, n=n)
    size = max(8, 1 << (r - 1).bit_length())
    evals = np.zeros(size)
    evals[:r] = (size / n) * theta  # the scale keeps every rate ημ/N with N' = size·c (K3)
    evecs = np.eye(size)
    evecs[:r, :r] = s
    q = space.basis

    def padded(x: Array) -> Array:
        out = np.zeros((size, x.shape[1]))
        out[:r] = q.T @ x
        return out

    predict = how.solver(KernelEigen(evals=evals, evecs=evecs), padded(y))
    if kxq is None:
        train = np.asarray(predict(times, padded(f0)))
        return _Projected(train[:, :r], None), r
    k_xt = np.zeros((kxq.shape[0], size))
    k_xt[:, :r] = (size / n) * kxq[:, :r]
    train, test = predict(times, padded(f0), fs0, k_xt)
    return _Projected(np.asarray(train)[:, :r], np.asarray(test)), r


def krylov_bytes(n: int, c: int, m: int, times: int, size: int) -> float:
    """Peak memory of `predict_krylov` for a space of ``size`` columns (K6): the basis and its
    projections (Q, T, Θ_*X Q), Ritz vectors, a product block, and the outputs with their
    intermediates (two predictions kept for the estimate)."""
    padded = 2.0 * size  # the projected problem is padded to a power of two (K3)
    return 8.0 * (
        n * size + 3.0 * padded * padded + m * padded + 4.0 * n * c + 4.0 * times * (padded + m) * c + times * n * c
    )


def check_krylov_memory(n: int, c: int, m: int, steps: int, max_size: int | None = None) -> None:
    """Refuse (one line naming ``k_train_train``) a Krylov request whose `krylov_bytes` exceed the limit."""
    size = int(min(n, DEFAULT_MAX_SIZE if max_size is None else max_size))
    _memory.check_fits(
        krylov_bytes(n, c, m, steps, size),
        f"a Krylov space of up to {size} columns (max_size) for {n} + {m} points",
        "k_train_train",
    )


def predict_krylov(
    k_train_train: Any,
    y_train: Any,
    times: Any,
    dynamics: TrainingRule,
    *,
    fx_train_0: Any = 0.0,
    k_test_train: Any = None,
    fx_test_0: Any = None,
    tol: float = DEFAULT_TOL,
    max_size: int | None = None,
    progress: bool | None = None,
) -> ScalePrediction:
    """Mean outputs at ``times`` from block Lanczos on Θ_0's products (K1–K4).

    The Krylov space grows by about 25% between checks until the relative change of every
    output, train and test, at every time falls to ``tol``; that change is the error estimate
    returned. ``max_size`` caps the dimension (default min(n, `DEFAULT_MAX_SIZE`), which the memory
    check assumes); hitting it first returns the
    prediction with ``converged=False`` and a warning naming the estimate.
    """
    tol = _checks.check_scalar(tol, "tol", positive=True)
    cap = None if max_size is None else _checks.check_scalar(max_size, "max_size", positive=True)
    if cap is not None and not cap.is_integer():
        raise ValueError(f"max_size: must be a whole number of columns, got {max_size!r}")

    def fits(n: int, c: int, m: int, steps: int) -> None:
        check_krylov_memory(n, c, m, steps, None if cap is None else int(cap))

    inp = check_inputs(dynamics, k_train_train, y_train, times, fx_train_0, k_test_train, fx_test_0, fits)
    capacity = int(min(inp.sizes[0], DEFAULT_MAX_SIZE if cap is None else cap))
    bar = _progress(progress, inp.sizes[0], capacity)
    try:
        lanczos, current, estimate, converged = _grow(inp, dynamics, tol, capacity, bar)
    finally:
        if bar is not None:
            bar.close()
    r = lanczos.space().size
    if not converged:
        warnings.warn(
            f"max_size: the Krylov space reached {r} columns with an estimated relative error of "
            f"{np.max(estimate):.3g} (tol {tol:g}); raise max_size or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    fx_train = apply_left(lanczos.space().basis, current.train)
    return ScalePrediction(inp.times, fx_train, current.test, "krylov", estimate, r, converged)


def _grow(
    inp: ScaleInputs, dynamics: TrainingRule, tol: float, capacity: int, bar: Any
) -> tuple[BlockLanczos, _Projected, Array, bool]:
    """Grow the space by ~25% per check until successive predictions agree to ``tol`` (K4)."""
    n, _, m = inp.sizes
    block = start_block(inp.y, inp.f0)
    if block is None:  # Y = 0 and f_X(0) = 0: any start gives f_X = 0, f_* = E(t) f_*(0)
        block = np.random.default_rng(0).standard_normal((n, 1))
    lanczos = BlockLanczos(inp.train.matmul, block, capacity)
    width = lanczos.size
    kxq = None if inp.test is None else np.empty((m, capacity))
    done, previous, target = 0, None, min(4 * width, max(capacity // 2, 1))
    while True:
        while not (lanczos.exhausted or lanczos.complete) and lanczos.space().size < target:
            lanczos.step()
        space = lanczos.space()
        if kxq is not None and space.size > done:
            new = np.ascontiguousarray(space.basis[:, done:])
            kxq[:, done : space.size] = checked_product(inp.test.matmul(new), (m, new.shape[1]), "k_test_train")
            done = space.size
        current, r = _projected_prediction(
            space, n, inp.y, inp.f0, kxq, inp.fs0, inp.times, dynamics, kernel_eps(inp.train)
        )
        if bar is not None:
            bar.update(r - bar.n)
        estimate = np.full(len(inp.times), np.inf) if previous is None else current.change(previous)
        if r == n:  # Q is square: the projection is a change of basis, exact to round-off (K3, K5)
            estimate = np.zeros(len(inp.times))
        if np.max(estimate) <= tol or lanczos.complete or lanczos.exhausted:
            floor = max(roundoff(n), lanczos.dropped)  # no space sees what deflation dropped
            return lanczos, current, np.maximum(estimate, floor), bool(np.max(estimate) <= tol)
        previous, target = current, min(max(int(1.25 * r), r + 2 * width), capacity)


def _progress(progress: bool | None, n: int, capacity: int) -> Any:
    """A tqdm bar over the Krylov dimension (default: shown from 20,000 points on)."""
    if not (progress if progress is not None else n >= 20_000):
        return None
    from tqdm import tqdm

    return tqdm(total=capacity, desc="Krylov space", unit="col", leave=False)
