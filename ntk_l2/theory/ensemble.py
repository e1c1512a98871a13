"""Mean and covariance of f_*(t) over random initialization, with L2, in JAX.

The L2 counterpart of `nt.predict.gradient_descent_mse_ensemble`
(`derivations/ensemble.md`, E1–E3). The closed-form solution is affine in the
initial outputs, f_*(t) = e^{−dt} f_*(0) − M_t f_X(0) + Θ_*X V diag((η/N) R/a) Vᵀ Y,
with M_t = Θ_*X V diag((η/N) q_t) Vᵀ (q_t from `modes.carry_factor`). With
(f_X(0), f_*(0)) ~ N(0, K) for the NNGP kernel K, per output column:

    mean_t = Θ_*X V diag((η/N) R/a) Vᵀ Y                                         (E2)
    cov_t  = e^{−2dt} K_** − e^{−dt} (M_t K_X* + K_*X M_tᵀ) + M_t K_XX M_tᵀ.      (E3)

With (n, n, c, c) kernels (cross-output terms) the same holds for the flattened
(n·c)-row problem, and the covariance comes back as (m, m, c, c)
(`ntk_l2.theory._engine`). Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``
like every solver of the engine; the NumPy reference is
`ntk_l2.theory.reference.ensemble`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory._engine import (
    Layout,
    cross_kernel,
    float64,
    is_traced,
    refuse_non_finite,
    result_dtype,
    solver_inputs,
    times_array,
)
from ntk_l2.theory._inputs import full_to_matrix
from ntk_l2.theory.eigen import apply_left
from ntk_l2.theory.modes import carry_factor, mode_factors, output_decay


class Gaussian(NamedTuple):
    """Mean (…, m, c) and covariance (…, m, m), or (…, m, m, c, c) for full output kernels."""

    mean: Any
    covariance: Any | None


def gradient_descent_mse_l2_ensemble(
    ntk_train_train: ArrayLike,
    nngp_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: Any = 1.0,
    l2: Any = 0.0,
    degree: int = 2,
) -> Callable[..., Gaussian]:
    """Predicts the ensemble of infinitely wide networks trained with L2 (E1–E3).

    Args:
      ntk_train_train: (n, n) or (n, n, c, c) NTK Θ_0 on the training inputs, or a `KernelEigen`.
      nngp_train_train: NNGP kernel K_XX (covariance of f_X(0)), of the same form as the NTK.
      y_train: (n, c) targets.
      learning_rate: η > 0.
      l2: λ ≥ 0.
      degree: homogeneity degree k ≥ 0.

    Returns:
      ``predict_fn(t, ntk_test_train, nngp_test_train, nngp_test_test=None)``
      returning a `Gaussian` whose covariance is None unless ``nngp_test_test``
      is given. ``t`` a scalar or 1-D array of steps (``None`` or ``np.inf``: the limit).
    """
    problem = solver_inputs(ntk_train_train, y_train, learning_rate, l2, degree, "ntk_train_train")
    lay = problem.layout
    with float64(nngp_train_train, problem.eta, problem.lam):
        k_xx = _train_nngp(nngp_train_train, lay)
        zy = problem.to_eigenbasis(problem.y)
        k_xx_eig = problem.evecs.T @ k_xx @ problem.evecs
    eps_xx = _checks.input_eps(nngp_train_train)

    def predict_fn(t: Any, ntk_test_train: Any, nngp_test_train: Any, nngp_test_test: Any = None) -> Gaussian:
        with float64(t, ntk_test_train, nngp_test_train, nngp_test_test, problem.eta, problem.lam):
            times, is_scalar = times_array(t)
            k_st, m = cross_kernel(ntk_test_train, lay, "ntk_test_train")
            k_sx, _ = cross_kernel(nngp_test_train, lay, "nngp_test_train", rows=m)
            dtype = result_dtype(
                problem.dtype, nngp_train_train, ntk_test_train, nngp_test_train, nngp_test_test, also=(t,)
            )
            theta_v = k_st @ problem.evecs
            eta, g, norm = problem.eta, problem.eta * problem.lam, problem.norm
            rates = eta * problem.evals / norm
            _, ra = mode_factors(rates[None, :], g, problem.degree, times[:, None])
            mean = apply_left(theta_v, (eta / norm) * ra[..., None] * zy)  # (T, m_rows, columns)
            refuse_non_finite(mean, "mean", times)
            mean = lay.unflatten(mean, m)
            cov = None
            if nngp_test_test is not None:
                k_ss = _test_nngp(k_xx, k_sx, nngp_test_test, nngp_test_train, eps_xx, lay, m)
                _memory.check_fits(
                    8.0 * times.size * k_ss.shape[0] ** 2,
                    f"the covariance of {m} test points at {times.size} time(s)",
                    "t",
                )
                q = (eta / norm) * carry_factor(rates[None, :], g, problem.degree, times[:, None])
                decay = output_decay(g, problem.degree, times)
                cov = _covariance(theta_v, k_sx @ problem.evecs, k_xx_eig, k_ss, q, decay)
                refuse_non_finite(cov, "covariance", times)
                if lay.full:  # (T, m·c, m·c) → (T, m, m, c, c)
                    cov = jnp.transpose(cov.reshape(-1, m, lay.c, m, lay.c), (0, 1, 3, 2, 4))
                cov = dtype(cov[0] if is_scalar else cov)
            return Gaussian(dtype(mean[0] if is_scalar else mean), cov)

    return predict_fn


def _covariance(theta_v: Any, k_sx_v: Any, k_xx_eig: Any, k_ss: Any, q: Any, decay: Any) -> Any:
    """E3 at every time: with B = Θ_*X V diag(q_t), cov = d² K_** − d (B (K_*X V)ᵀ + transpose) + B VᵀK_XXV Bᵀ."""

    def one(args: tuple[Any, Any]) -> Any:
        qi, di = args
        b = theta_v * qi
        cross = b @ k_sx_v.T
        return di * di * k_ss - di * (cross + cross.T) + b @ k_xx_eig @ b.T

    return jax.lax.map(one, (q, decay))


def _nngp_block(value: Any, name: str, points: int, lay: Layout, traced: bool, hint: str = "") -> Any:
    """An NNGP block of ``points`` points, (points, points) or (points, points, c, c), as a float64
    (rows, rows) matrix: as given when ``traced``, else checked finite and symmetric (`check_kernel`)."""
    expected = (points, points, lay.c, lay.c) if lay.full else (points, points)
    if tuple(np.shape(value)) != expected:
        raise ValueError(f"{name}: expected shape {expected}{hint}, got {tuple(np.shape(value))}")
    if traced:
        k = jnp.asarray(value, jnp.float64)
        return full_to_matrix(k) if lay.full else k
    raw = _checks.as_float_array(value, name, ndim=len(expected))
    return _checks.check_kernel(full_to_matrix(raw) if lay.full else raw, name)


def _train_nngp(nngp_train_train: Any, lay: Layout) -> Any:
    """K_XX as a float64 (rows, rows) matrix: checked (symmetric, PSD) when concrete."""
    name, traced = "nngp_train_train", is_traced(nngp_train_train)
    k = _nngp_block(nngp_train_train, name, lay.n, lay, traced, " (the same form as the NTK)")
    if traced:
        return k
    _checks.check_psd(k, name, _checks.input_eps(nngp_train_train))
    return jnp.asarray(k)


def _test_nngp(
    k_xx: Any, k_sx: Any, nngp_test_test: Any, nngp_test_train: Any, eps_xx: float, lay: Layout, m: int
) -> Any:
    """K_** as a (m_rows, m_rows) matrix; when concrete, the joint NNGP [[K_XX, K_X*], [K_*X, K_**]] must be
    positive semi-definite, or the propagated covariance is not one."""
    name, traced = "nngp_test_test", is_traced(nngp_test_test, k_xx, k_sx)
    k_ss = _nngp_block(nngp_test_test, name, m, lay, traced)
    if traced:
        return k_ss
    eps = max(eps_xx, _checks.input_eps(nngp_test_test), _checks.input_eps(nngp_test_train))
    _checks.check_psd(k_ss, name, eps)
    k_xx_np, k_sx_np = np.asarray(k_xx), np.asarray(k_sx)
    joint = np.block([[k_xx_np, k_sx_np.T], [k_sx_np, k_ss]])
    try:
        _checks.check_psd(joint, "nngp_test_train", eps)
    except ValueError as err:
        raise ValueError(
            f"nngp_test_train: the joint NNGP kernel [[K_XX, K_X*], [K_*X, K_**]] of the "
            f"{lay.n} + {m} points is not positive semi-definite ({str(err).split(': ', 2)[-1]})"
        ) from None
    return jnp.asarray(k_ss)
