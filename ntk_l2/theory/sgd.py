"""Minibatch SGD with L2 in the kernel regime: mean and covariance over batch draws, in JAX.

Each step draws a uniform batch of B distinct training points, independently of
the past (what `ntk_l2.finite.train.train` does), and descends the batch loss
L_B = ‖f_B − Y_B‖²/(2Bc), whose expectation is L = ‖f − Y‖²/(2N), N = n·c.
In function space (`derivations/sgd.md`, S2–S3), with u = f − c the outputs
minus their offsets, r_s = u_X(s) − (Y − c) and M_s the batch mask on points
(⊗ I_c on outputs), the state x = (u_X, u_*) moves as

    x_{s+1} = α x_s − γ_s G M_s r_s,   G = [Θ_0; Θ_*X],
    α = (1 − ηλ)^k,  γ_s = η (1 − ηλ)^{k−1} ρ^s/(Bc),  ρ = (1 − ηλ)^{2(k−1)},

and with heavy-ball momentum β (degree 1 only: exact for the linearized network)
the state gains the function-space velocity w = Jv (S3). M_s is independent of
x_s, E[M_s] = (B/n) I and E[M_ii M_jj] = B/n (i = j), B(B−1)/(n(n−1)) (i ≠ j)
(S1). Hence, with A_s = L − (B/n) h_s H P_X the full-batch transition (S4–S5):

    m_{s+1} = L m_s − (B/n) h_s H (P_X m_s − Ỹ)                                  (S4)
    C_{s+1} = A_s C_s A_sᵀ + h_s² H D(R_s) Hᵀ,   R_s = C_XX + r̄_s r̄_sᵀ,
    D(R)    = ν (R ∘ (I_n ⊗ J_c) − R/n),         ν = B(n − B)/(n(n − 1)),         (S5)

the mean being exactly the full-batch map D1–D3, and the expected loss
E[L] = (tr C_XX + ‖m_X − Y‖²)/(2N) (S6). The moments are propagated step by step
by one `jax.lax.scan` whose length is the largest requested step: O(t·D²·n·c)
for D = (n + m)·c state rows (twice that with momentum), refused beyond
`MAX_ROWS` rows or ``max_work`` flops (S7). Works eagerly and under ``jax.jit``,
``jax.vmap`` and ``jax.grad`` over η and λ (times stay concrete).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory._engine import (
    Problem,
    concrete,
    cross_kernel,
    float64,
    is_traced,
    outputs,
    refuse_non_finite,
    result_dtype,
    scalar,
    solver_inputs,
)
from ntk_l2.theory._sgd_moments import _model, _moments, _same_point, _slots
from ntk_l2.theory.eigen import KernelEigen

# State rows (n + m)·c, doubled with momentum: the covariance is a dense D × D matrix per step and per
# record, and each step costs ~6·D²·n·c flops (S7). 1024 rows: 8 MiB per covariance record.
MAX_ROWS = 1024
# Work bound for the whole scan, in flops: 2(3D²·nc + D·(nc)²) per step plus `STEP_OVERHEAD` for the fixed
# cost of a step (~2 µs). Measured on 2 CPU cores (benchmarks/accuracy_sgd.py): 10–17 GFLOP/s for D = 100–240,
# so 1e12 is one to two minutes.
DEFAULT_MAX_WORK = 1e12
STEP_OVERHEAD = 2e4


class SGDPrediction(NamedTuple):
    """Moments over batch draws at the requested steps (leading axis T unless ``t`` was a scalar).

    mean_train (T, n, c); cov_train (T, n, n, c, c) with cov[i, j, a, b] = Cov(f_ia, f_jb); loss (T,) the
    expected data loss E[‖f_X − Y‖²/(2N)]; with test inputs mean_test (T, m, c), cov_test (T, m, m, c, c)
    and cov_test_train (T, m, n, c, c), else None. The second moment is cov + mean meanᵀ (S4–S6).
    """

    mean_train: Any
    cov_train: Any
    loss: Any
    mean_test: Any = None
    cov_test: Any = None
    cov_test_train: Any = None

    @property
    def var_train(self) -> Any:
        """Var(f_ia) over batch draws, (T, n, c)."""
        return _variances(self.cov_train)

    @property
    def var_test(self) -> Any:
        """Var(f_*ia) over batch draws, (T, m, c), or None."""
        return None if self.cov_test is None else _variances(self.cov_test)


def _variances(cov: Any) -> Any:
    """cov[..., i, i, a, a] as (..., n, c): the diagonal over points, then over outputs."""
    lib = jnp if isinstance(cov, jax.Array) else np  # NumPy results stay NumPy (J3)
    with float64(cov):
        return lib.diagonal(lib.diagonal(cov, axis1=-4, axis2=-3), axis1=-3, axis2=-2)


def check_batch_size(batch_size: Any, n: int) -> int:
    """B: an integer with 1 ≤ B ≤ n (bool and non-integral numbers refused)."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(
            f"batch_size: must be an integer in [1, {n}] (the number of training points), got {batch_size!r}"
        )
    if not 1 <= int(batch_size) <= n:
        raise ValueError(f"batch_size: must be in [1, {n}] (the number of training points), got {int(batch_size)}")
    return int(batch_size)


def inclusion(n: int, batch: int) -> tuple[float, float, float]:
    """(p1, p2, ν): P(i ∈ batch) = B/n, P(i, j ∈ batch) = B(B−1)/(n(n−1)) for i ≠ j (S1), and
    ν = p1 − p2 = B(n−B)/(n(n−1)), the weight of the batch noise D(R) (S5); p2 = ν = 0 when n = 1."""
    p1 = batch / n
    pairs = max(n * (n - 1), 1)
    return p1, batch * (batch - 1) / pairs, batch * (n - batch) / pairs


def gradient_descent_mse_l2_sgd(
    k_train_train: ArrayLike | KernelEigen,
    y_train: ArrayLike,
    learning_rate: Any = 1.0,
    l2: Any = 0.0,
    degree: int = 2,
    *,
    batch_size: int,
    momentum: Any = 0.0,
    max_work: float = DEFAULT_MAX_WORK,
) -> Callable[..., SGDPrediction]:
    """Mean and covariance over batch draws of minibatch SGD with L2 (`derivations/sgd.md`, S1–S7).

    Args:
      k_train_train: (n, n) or (n, n, c, c) NTK Θ_0, or a `KernelEigen`; the batch mask acts on points
        (M ⊗ I_c on a full kernel's (n·c) rows).
      y_train: (n, c) targets.
      learning_rate: η > 0; l2: λ ≥ 0 (ηλ < 1 without momentum); degree: homogeneity degree k ≥ 0.
      batch_size: B, 1 ≤ B ≤ n distinct points per step (B = n: full batch, zero covariance).
      momentum: heavy-ball β ∈ [0, 1) as in `ntk_l2.finite.train` (v ← βv + ∇L_B + λθ, θ ← θ − ηv), degree 1 only.
      max_work: bound on the scan's flops (S7); beyond it ``t`` is refused before any work.

    Returns:
      ``predict_fn(t, fx_train_0=0., fx_test_0=None, k_test_train=None, *, offset_train=None,
      offset_test=None) -> SGDPrediction`` at whole steps ``t`` (a scalar or a 1-D array, any order).
      Initial outputs are deterministic (zero covariance at step 0).
    """
    _check_rows_early(k_train_train, y_train)
    problem = solver_inputs(k_train_train, y_train, learning_rate, l2, degree)
    batch = check_batch_size(batch_size, problem.layout.n)
    with float64(momentum, problem.eta, problem.lam):
        beta = scalar(momentum, "momentum", nonnegative=True)
        theta = _kernel_matrix(problem)
    velocity = is_traced(beta) or beta != 0.0
    if concrete(beta) is not None and beta >= 1.0:
        raise ValueError(f"momentum: must be in [0, 1), got {beta!r}")
    if velocity and problem.degree != 1:
        raise ValueError(
            f"momentum: supported for degree 1 only (the linearized network, exact), got degree "
            f"{problem.degree}; use momentum=0"
        )
    eta, lam = concrete(problem.eta), concrete(problem.lam)
    if not velocity and eta is not None and lam is not None and eta * lam >= 1.0:
        raise ValueError(
            f"learning_rate: learning_rate * l2 = {eta * lam:g} must be < 1 (each step multiplies "
            f"the parameters by 1 - learning_rate * l2)"
        )
    work = _checks.check_scalar(max_work, "max_work", positive=True)

    def predict_fn(
        t: Any,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = None,
        k_test_train: Any = None,
        *,
        offset_train: Any = None,
        offset_test: Any = None,
    ) -> SGDPrediction:
        """Mean, covariance and expected loss over batch draws after ``t`` steps (S4–S6)."""
        return _predict(
            problem,
            theta,
            batch,
            beta,
            velocity,
            work,
            t,
            fx_train_0,
            fx_test_0,
            k_test_train,
            offset_train=offset_train,
            offset_test=offset_test,
        )

    return predict_fn


def _check_rows_early(k_train_train: Any, y_train: Any) -> None:
    """Refuse n·c > `MAX_ROWS` from the shapes, before the kernel is factorized."""
    shape = tuple(np.shape(y_train))
    if len(shape) == 2 and shape[0] * shape[1] > MAX_ROWS:
        raise ValueError(
            f"k_train_train: {shape[0]} points x {shape[1]} outputs = {shape[0] * shape[1]} rows exceed "
            f"the SGD moment solver's bound of {MAX_ROWS} (it propagates a dense covariance of "
            f"(n + m)·c rows step by step); use fewer points"
        )


def _kernel_matrix(problem: Problem) -> Any:
    """Θ_0 as the (n·c, n·c) matrix Θ[(i,a),(j,b)] from the checked factorization (Θ ⊗ I_c for an (n, n) kernel)."""
    theta = (problem.evecs * problem.evals) @ problem.evecs.T
    theta = 0.5 * (theta + theta.T)
    lay = problem.layout
    return theta if lay.full else jnp.kron(theta, jnp.eye(lay.c))


def _step_times(t: Any) -> tuple[np.ndarray, bool]:
    """Requested steps as int64 (T,) and whether ``t`` was a scalar: concrete, finite, whole, ≥ 0."""
    if is_traced(t):
        raise ValueError("t: must be concrete whole steps (the number of steps is the static length of the scan)")
    times, is_scalar = _checks.check_times(t, "t")
    if not np.all(np.isfinite(times)) or np.any(times != np.round(times)):
        bad = times[~np.isfinite(times) | (times != np.round(times))][0]
        raise ValueError(f"t: SGD moments are defined at whole finite steps, got {bad:g}")
    return times.astype(np.int64), is_scalar


def _predict(
    problem: Problem,
    theta: Any,
    batch: int,
    beta: Any,
    velocity: bool,
    max_work: float,
    t: Any,
    fx_train_0: Any = 0.0,
    fx_test_0: Any = None,
    k_test_train: Any = None,
    *,
    offset_train: Any = None,
    offset_test: Any = None,
) -> SGDPrediction:
    """The ``predict_fn`` of `gradient_descent_mse_l2_sgd`: S4–S6 at the requested steps."""
    lay = problem.layout
    n, c = lay.n, lay.c
    args = (
        t,
        fx_train_0,
        fx_test_0,
        k_test_train,
        offset_train,
        offset_test,
        problem.eta,
        problem.lam,
        beta,
        theta,
        problem.y,
    )
    with float64(*args):
        times, is_scalar = _step_times(t)
        u0 = outputs(fx_train_0, "fx_train_0", lay, n).reshape(-1)
        c_train = outputs(0.0 if offset_train is None else offset_train, "offset_train", lay, n).reshape(-1)
        with_test = fx_test_0 is not None or k_test_train is not None
        m, g, us0, c_test = 0, theta, jnp.zeros(0), jnp.zeros(0)
        if with_test:
            if k_test_train is None:
                raise ValueError("k_test_train: required to predict test outputs")
            k_xt, m = cross_kernel(k_test_train, lay)
            k_xt = k_xt if lay.full else jnp.kron(k_xt, jnp.eye(c))
            g = jnp.concatenate([theta, k_xt])
            c_test = outputs(0.0 if offset_test is None else offset_test, "offset_test", lay, m).reshape(-1)
            us0 = outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", lay, m).reshape(-1) - c_test
        rows = (n + m) * c * (2 if velocity else 1)
        _check_cost(rows, n * c, m, times, velocity, max_work)
        dtype = result_dtype(problem.dtype, fx_train_0, fx_test_0, k_test_train, offset_train, offset_test, also=(t,))
        y_res = problem.y.reshape(-1) - c_train
        x0 = jnp.concatenate([u0 - c_train, us0])
        h, coef, log_rho = _model(problem, g, batch, beta, velocity)
        if velocity:
            x0 = jnp.concatenate([x0, jnp.zeros_like(x0)])
        unique, inverse = np.unique(times, return_inverse=True)
        mean, cov = _moments(
            h,
            coef,
            y_res,
            x0,
            log_rho,
            _same_point(n, c),
            inclusion(n, batch),
            n,
            _slots(unique),
            records=len(unique),
            with_zero=bool(unique[0] == 0),
            velocity=velocity,
        )
        mean, cov = mean[inverse], cov[inverse]
        refuse_non_finite(mean, "mean", jnp.asarray(times, jnp.float64))
        refuse_non_finite(cov, "covariance", jnp.asarray(times, jnp.float64))
        return _assemble(mean, cov, c_train, c_test, problem.y.reshape(-1), n, m, c, is_scalar, dtype)


def _check_cost(rows: int, nc: int, m: int, times: np.ndarray, velocity: bool, max_work: float) -> None:
    """S7: the state-row bound (naming the test kernel when it is what tips it over), the flop bound and memory."""
    if rows > MAX_ROWS:
        what = "momentum doubles the state; " if velocity else ""
        raise ValueError(
            f"k_test_train: {rows} state rows ((n + m)·c = {rows // (2 if velocity else 1)}; {what}"
            f"m = {m} test points) exceed the SGD moment solver's bound of {MAX_ROWS}; "
            f"use fewer test points"
        )
    steps = int(times.max())
    work = steps * (2.0 * (3.0 * rows * rows * nc + rows * nc * nc) + STEP_OVERHEAD)
    if work > max_work:
        raise ValueError(
            f"t: {steps} steps of the moment recursion for {rows} state rows need about {work:.3g} "
            f"flops, more than max_work = {max_work:.3g}; ask for fewer steps or raise max_work"
        )
    records = len(np.unique(times)) + 1 + times.size
    _memory.check_fits(
        8.0 * rows * rows * (records + 4), f"covariances of {rows} state rows at {times.size} step(s)", "t"
    )


def _assemble(
    mean: Any, cov: Any, c_train: Any, c_test: Any, y: Any, n: int, m: int, c: int, is_scalar: bool, dtype: Any
) -> SGDPrediction:
    """Split the state moments into train/test blocks, add the offsets and the expected loss (S6)."""
    nc, mc = n * c, m * c
    mean_x = c_train + mean[:, :nc]
    cov_xx = cov[:, :nc, :nc]
    loss = (jnp.trace(cov_xx, axis1=1, axis2=2) + jnp.sum((mean_x - y) ** 2, axis=1)) / (2.0 * nc)

    def shaped(block: Any, rows: int) -> Any:  # (T, rows·c, n·c) → (T, rows, n, c, c) … in [i, j, a, b] order
        out = jnp.transpose(block.reshape(-1, rows, c, block.shape[-1] // c, c), (0, 1, 3, 2, 4))
        return dtype(out[0] if is_scalar else out)

    def first(x: Any) -> Any:
        return dtype(x[0] if is_scalar else x)

    pred = SGDPrediction(first(mean_x.reshape(-1, n, c)), shaped(cov_xx, n), first(loss))
    if not m:
        return pred
    mean_s = (c_test + mean[:, nc : nc + mc]).reshape(-1, m, c)
    return pred._replace(
        mean_test=first(mean_s),
        cov_test=shaped(cov[:, nc : nc + mc, nc : nc + mc], m),
        cov_test_train=shaped(cov[:, nc : nc + mc, :nc], m),
    )
