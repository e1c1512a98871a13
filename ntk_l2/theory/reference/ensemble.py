"""Mean and covariance of f_*(t) over random initialization, with L2.

The L2 counterpart of `nt.predict.gradient_descent_mse_ensemble`
(`derivations/ensemble.md`). The closed-form solution is affine in the
initial outputs, f_*(t) = e^{−dt} f_*(0) − M_t f_X(0) + Θ_*X V diag((η/N) R/a) Vᵀ Y,
with M_t = Θ_*X V diag((η/N) q_t) Vᵀ (q_t from `modes.carry_factor`). With
(f_X(0), f_*(0)) ~ N(0, K) for the NNGP kernel K, per output column:

    mean_t = Θ_*X V diag((η/N) R/a) Vᵀ Y
    cov_t  = e^{−2dt} K_** − e^{−dt} (M_t K_X* + K_*X M_tᵀ) + M_t K_XX M_tᵀ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import apply_left
from ntk_l2.theory.reference._affine import solver_inputs
from ntk_l2.theory.reference.modes import carry_factor, mode_factors, output_decay

Array = NDArray[np.float64]


class Gaussian(NamedTuple):
    """Mean (…, m, c) and covariance (…, m, m) over initializations."""

    mean: Array
    covariance: Array | None


def gradient_descent_mse_l2_ensemble(
    ntk_train_train: ArrayLike,
    nngp_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    l2: float = 0.0,
    degree: int = 2,
) -> Callable[..., Any]:
    """Predicts the ensemble of infinitely wide networks trained with L2.

    Args:
      ntk_train_train: (n, n) NTK Θ_0 on the training inputs.
      nngp_train_train: (n, n) NNGP kernel K_XX (covariance of f_X(0)).
      y_train: (n, c) targets.
      learning_rate: η > 0.
      l2: λ ≥ 0.
      degree: homogeneity degree k ≥ 0.

    Returns:
      ``predict_fn(t, ntk_test_train, nngp_test_train, nngp_test_test=None)``
      returning a `Gaussian` whose covariance is None unless ``nngp_test_test``
      (m, m) is given. ``t`` a scalar or 1-D array of steps (``np.inf``: limit).
    """
    eig, y, eta, lam, k = solver_inputs(ntk_train_train, y_train, learning_rate, l2, degree, "ntk_train_train")
    n, g = eig.size, eta * lam
    k_xx = _checks.check_kernel(nngp_train_train, "nngp_train_train", size=n)
    eps_xx = _checks.input_eps(nngp_train_train)
    _checks.check_psd(k_xx, "nngp_train_train", eps_xx)
    norm = float(y.size)
    rates = eta * eig.evals / norm
    zy = eig.to_eigenbasis(y)
    k_xx_eig = eig.evecs.T @ k_xx @ eig.evecs

    def predict_fn(
        t: ArrayLike | None,
        ntk_test_train: ArrayLike,
        nngp_test_train: ArrayLike,
        nngp_test_test: ArrayLike | None = None,
    ) -> Gaussian:
        times, scalar = _checks.check_times(np.inf if t is None else t)
        theta_v = _checks.check_cross_kernel(ntk_test_train, n, "ntk_test_train") @ eig.evecs
        m = theta_v.shape[0]
        k_sx = _checks.check_cross_kernel(nngp_test_train, n, "nngp_test_train", rows=m)
        k_ss = None if nngp_test_test is None else _joint_nngp(k_xx, k_sx, nngp_test_test, eps_xx, nngp_test_train)
        _, ra = mode_factors(rates[None, :], g, k, times[:, None])
        with np.errstate(over="ignore", invalid="ignore"):
            mean = apply_left(theta_v, (eta / norm) * ra[..., None] * zy)  # (T, m, c)
        _checks.check_finite_result(mean, "mean", times)
        cov = None
        if k_ss is not None:
            _memory.check_fits(
                8.0 * times.size * m * m, f"the covariance of {m} test points at {times.size} time(s)", "t"
            )
            q = (eta / norm) * carry_factor(rates[None, :], g, k, times[:, None])  # (T, n)
            out_decay = output_decay(g, k, times)
            k_sx_v = k_sx @ eig.evecs  # K_*X V
            cov = np.empty((times.size, m, m))
            with np.errstate(over="ignore", invalid="ignore"):
                for i, (qi, di) in enumerate(zip(q, out_decay, strict=False)):
                    mv = theta_v * qi  # M_t V = Θ_*X V diag(q)
                    cross = mv @ k_sx_v.T  # M_t K_X*
                    cov[i] = di * di * k_ss - di * (cross + cross.T) + mv @ k_xx_eig @ mv.T
            _checks.check_finite_result(cov, "covariance", times)
        if scalar:
            return Gaussian(mean[0], None if cov is None else cov[0])
        return Gaussian(mean, cov)

    return predict_fn


def _joint_nngp(
    k_xx: Array, k_sx: Array, nngp_test_test: ArrayLike, eps_xx: float, nngp_test_train: ArrayLike
) -> Array:
    """K_** (m, m), checked with the whole NNGP [[K_XX, K_X*], [K_*X, K_**]]: the covariance of
    (f_X(0), f_*(0)) must be positive semi-definite, or the propagated covariance is not one."""
    m, n = k_sx.shape
    k_ss = _checks.check_kernel(nngp_test_test, "nngp_test_test", size=m)
    eps = max(eps_xx, _checks.input_eps(nngp_test_test), _checks.input_eps(nngp_test_train))
    _checks.check_psd(k_ss, "nngp_test_test", eps)
    joint = np.block([[k_xx, k_sx.T], [k_sx, k_ss]])
    try:
        _checks.check_psd(joint, "nngp_test_train", eps)
    except ValueError as err:
        raise ValueError(
            f"nngp_test_train: the joint NNGP kernel [[K_XX, K_X*], [K_*X, K_**]] of the "
            f"{n} + {m} points is not positive semi-definite ({str(err).split(': ', 2)[-1]})"
        ) from None
    return k_ss
