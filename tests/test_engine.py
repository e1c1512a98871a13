"""The shared JAX engine: output kernels (J1), one factorization (J2), precision and dtypes (J3).

derivations/engine.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.experimental import disable_x64, enable_x64

from conftest import make_problem, relative_error
from ntk_l2.theory import KernelEigen, eigh_kernel
from ntk_l2.theory.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete
from ntk_l2.theory.reference import gradient_descent_mse_l2 as reference_closed_form

TIMES = np.array([0.0, 1.0, 7.0, 60.0, 900.0])


def _separable(k: np.ndarray, c: int) -> np.ndarray:
    return np.einsum("ij,ab->ijab", k, np.eye(c))


@pytest.mark.parametrize("solver", [gradient_descent_mse_l2, gradient_descent_mse_l2_discrete])
def test_full_output_kernel_of_separable_form_equals_the_matrix_form(solver):
    """J1: Θ ⊗ I_c given as (n, n, c, c) solves the c columns of the (n, n) form, to round-off."""
    p = make_problem(n=12, m=5, c=3, seed=1)
    eta = 0.5 * p.y_train.size / np.linalg.eigvalsh(p.k_train_train)[-1]
    args = (p.y_train, eta, 3e-3, 2)
    ours = solver(p.k_train_train, *args)(TIMES, p.fx_train_0, p.fx_test_0, p.k_test_train)
    full = solver(_separable(p.k_train_train, 3), *args)(
        TIMES, p.fx_train_0, p.fx_test_0, _separable(p.k_test_train, 3)
    )
    for a, b in zip(full, ours, strict=False):
        assert a.shape == b.shape
        assert relative_error(a, b) <= 1e-12


def test_full_output_kernel_with_cross_terms_matches_a_direct_solve():
    """J1 with cross-output terms: a random PSD (n·c × n·c) kernel. k = 1, where the flattened
    dynamics dF/dt = −ηΘ̄(F − vec Y)/N − ηλF have the matrix-exponential solution
    F(t) = e^{−At}F_0 + A⁻¹(I − e^{−At})(η/N)Θ̄ vec Y, A = ηΘ̄/N + ηλI (train outputs), and the
    test outputs match the reference solver run on the flattened (n·c, 1) problem.
    expm and the solve each cost a few ulps times cond(A) ≈ 1e3: the bound is 1e-11."""
    n, m, c = 7, 4, 3
    rng = np.random.default_rng(2)
    feats = rng.normal(size=((n + m) * c, 3 * (n + m) * c))
    big = feats @ feats.T / feats.shape[1]  # rows (i, a) = i·c + a
    full = big.reshape(n + m, c, n + m, c).transpose(0, 2, 1, 3)
    k_tt, k_st = full[:n, :n], full[n:, :n]
    y, f0, fs0 = rng.normal(size=(n, c)), rng.normal(size=(n, c)), rng.normal(size=(m, c))
    eta, lam = 0.8, 0.02
    fx, fs = gradient_descent_mse_l2(k_tt, y, eta, lam, 1)(TIMES, f0, fs0, k_st)
    theta = big[: n * c, : n * c]
    a_mat = eta * theta / y.size + eta * lam * np.eye(n * c)
    drive = np.linalg.solve(a_mat, eta * theta @ y.ravel() / y.size)
    for i, t in enumerate(TIMES):
        decay = scipy.linalg.expm(-a_mat * t)
        expected = decay @ f0.ravel() + drive - decay @ drive
        assert relative_error(np.asarray(fx[i]).ravel(), expected) <= 1e-11
    ref_train, ref_test = reference_closed_form(theta, y.reshape(-1, 1), eta, lam, 1)(
        TIMES, f0.reshape(-1, 1), fs0.reshape(-1, 1), big[n * c :, : n * c]
    )
    assert relative_error(fs, ref_test.reshape(-1, m, c)) <= 1e-12
    assert relative_error(fx, ref_train.reshape(-1, n, c)) <= 1e-12


def test_one_factorization_serves_a_vmapped_grid():
    """J2: a KernelEigen in place of the kernel, vmapped over λ, equals separate calls on the kernel."""
    p = make_problem(n=16, m=4, c=2, seed=3)
    lams = np.array([0.0, 1e-4, 3e-3, 0.05])
    with enable_x64():
        eig = eigh_kernel(p.k_train_train)
        grid = jax.vmap(
            lambda lam: gradient_descent_mse_l2(eig, p.y_train, 1.2, lam, 3)(
                TIMES, p.fx_train_0, p.fx_test_0, p.k_test_train
            )
        )(jnp.asarray(lams))
    for i, lam in enumerate(lams):
        fx, fs = gradient_descent_mse_l2(p.k_train_train, p.y_train, 1.2, float(lam), 3)(
            TIMES, p.fx_train_0, p.fx_test_0, p.k_test_train
        )
        assert relative_error(grid[0][i], fx) <= 1e-12
        assert relative_error(grid[1][i], fs) <= 1e-12


def test_traced_call_without_x64_is_refused_in_one_line():
    """J3: under a float32 trace the solver cannot compute in float64; it says how to enable x64."""
    p = make_problem(n=6, m=2, c=2, seed=4)
    with disable_x64():
        with pytest.raises(ValueError, match=r"^ntk_l2 solvers compute in float64.*enable_x64") as err:
            jax.jit(lambda lam: gradient_descent_mse_l2(p.k_train_train, p.y_train, 1.0, lam, 2)(3.0))(0.1)
        assert "\n" not in str(err.value)
        eager = gradient_descent_mse_l2(p.k_train_train, p.y_train, 1.0, 0.1, 2)(3.0)  # eager: float64 inside
    ref = reference_closed_form(p.k_train_train, p.y_train, 1.0, 0.1, 2)(3.0)
    assert eager.dtype == np.float64 and relative_error(eager, ref) <= 1e-12


def test_output_dtype_policy():
    """J3: NumPy inputs give NumPy results, JAX inputs JAX results, in the inputs' floating dtype
    (integers count as float64); computed in float64 either way."""
    p = make_problem(n=8, m=3, c=2, seed=5)
    for dtype in (np.float32, np.float64):
        fx, fs = gradient_descent_mse_l2(p.k_train_train.astype(dtype), p.y_train.astype(dtype), 1.0, 1e-3, 2)(
            TIMES, 0.0, 0.0, p.k_test_train.astype(dtype)
        )
        assert isinstance(fx, np.ndarray) and fx.dtype == dtype and fs.dtype == dtype
    ints = np.round(10 * p.k_train_train).astype(np.int64)
    ints = ints @ ints.T  # an integer PSD kernel
    fx = gradient_descent_mse_l2(ints, p.y_train.astype(np.float32), 1e-3, 0.0, 1)(TIMES)
    assert fx.dtype == np.float64  # int64 counts as float64, which wins over float32
    with disable_x64():
        f32 = gradient_descent_mse_l2(
            jnp.asarray(p.k_train_train, jnp.float32), jnp.asarray(p.y_train, jnp.float32), 1.0, 1e-3, 2
        )(TIMES)
    ref = reference_closed_form(np.float32(p.k_train_train), np.float32(p.y_train), 1.0, 1e-3, 2)(TIMES)
    assert isinstance(f32, jax.Array) and f32.dtype == np.float32
    assert relative_error(f32, ref) <= 1e-6  # computed in float64, rounded once to float32
    with enable_x64():
        f64 = gradient_descent_mse_l2(jnp.asarray(p.k_train_train), p.y_train, 1.0, 1e-3, 2)(TIMES)
        assert isinstance(f64, jax.Array) and f64.dtype == np.float64 and relative_error(f64, ref) <= 1e-6
    mixed = gradient_descent_mse_l2(p.k_train_train, p.y_train, 1.0, 1e-3, 2)(TIMES, jnp.zeros((8, 2)))
    assert isinstance(mixed, jax.Array)  # a JAX initial output makes the result JAX


@pytest.mark.parametrize(
    "eig, message",
    [
        (
            lambda: KernelEigen(np.ones(4), np.ones((4, 5))),
            r"^k_train_train \(KernelEigen.evecs\): expected shape \(4, 4\)",
        ),
        (lambda: KernelEigen([1.0, 2.0, 3.0, 4.0], np.eye(4)), None),
        (
            lambda: KernelEigen(np.array([1.0, -5.0, 2.0, 3.0]), np.eye(4)),
            r"^k_train_train: a KernelEigen needs eigenvalues >= 0",
        ),
        (
            lambda: KernelEigen(np.array([1.0, 2.0, 3.0, np.nan]), np.eye(4)),
            r"^k_train_train \(KernelEigen.evals\): contains 1 NaN",
        ),
        (lambda: KernelEigen(np.ones(3), np.eye(3)), r"^k_train_train: a factorization of size 3 does not match 4"),
    ],
)
def test_a_given_factorization_is_checked(eig, message):
    """J2: a KernelEigen passed in place of the kernel is checked like any input (lists are read as arrays)."""
    y = np.zeros((4, 2))
    if message is None:
        assert np.all(np.isfinite(gradient_descent_mse_l2(eig(), y, 0.1)(1.0)))
        return
    with pytest.raises(ValueError, match=message):
        gradient_descent_mse_l2(eig(), y, 0.1)(1.0)
