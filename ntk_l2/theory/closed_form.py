"""Closed-form gradient flow with L2 for a positively homogeneous network.

Implements (`derivations/continuous_time.md`, eqs. C1–C6)

    Θ_t     = e^{−2(k−1)ηλt} Θ_0
    df_X/dt = −η Θ_t (f_X − Y)/N − k η λ f_X
    f_*(t)  = Θ_*X Θ_0⁻¹ f_X(t) + e^{−kηλt} (f_*(0) − Θ_*X Θ_0⁻¹ f_X(0))

with N = Y.size, solved mode by mode in the eigenbasis of Θ_0 by
`ntk_l2.theory.modes.mode_factors`. λ = 0 is `nt.predict.gradient_descent_mse`.

An output offset c (f = c + h(θ) with h homogeneous of degree k, e.g. a
network linearized at θ_0 with c = f_0 − J_0 θ_0) is handled exactly: h
follows the equations above with targets Y − c.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.theory import _checks
from ntk_l2.theory.eigen import KernelEigen, apply_left, eigh_kernel
from ntk_l2.theory.modes import carry_factor, mode_factors

Array = NDArray[np.float64]
PredictFn = Callable[..., Any]


def _shape_time(x: Array, scalar: bool) -> Array:
    return x[0] if scalar else x


def _offset(value: ArrayLike | None, name: str, shape: tuple[int, ...]) -> Array:
    return np.zeros(shape) if value is None else _checks.check_outputs(value, name, shape)


def gradient_descent_mse_l2(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    l2: float = 0.0,
    degree: int = 2,
) -> PredictFn:
    """Predicts continuous-time gradient descent on MSE with L2 regularization.

    Solves the equations of the module docstring in closed form. Setup costs one
    eigendecomposition of ``k_train_train``; each prediction O(T·n·(n + m)·c).

    Args:
      k_train_train: (n, n) NTK Θ_0 of the training inputs (any PSD matrix).
      y_train: (n, c) targets.
      learning_rate: η > 0.
      l2: λ ≥ 0, the L2 strength on the trainable parameters.
      degree: homogeneity degree k ≥ 0 of the network (1: linear model).

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None, *,
      offset_train=None, offset_test=None)``. ``t`` is a scalar or a 1-D array
      of steps (``None`` or ``np.inf``: the t → ∞ limit). Returns ``fx_train``
      of shape (n, c) or (T, n, c), or ``(fx_train, fx_test)`` when
      ``fx_test_0`` or ``k_test_train`` is given (like neural-tangents).
    """
    eig = eigh_kernel(k_train_train)
    y = _checks.check_targets(y_train, eig.size)
    eta = _checks.check_scalar(learning_rate, "learning_rate", positive=True)
    lam = _checks.check_scalar(l2, "l2", nonnegative=True)
    k = _checks.check_degree(degree)
    return _make_predict_fn(eig, y, eta, lam, k)


def _make_predict_fn(eig: KernelEigen, y: Array, eta: float, lam: float, k: int) -> PredictFn:
    n, c = y.shape
    norm = float(y.size)
    rates = eta * eig.evals / norm  # a = η μ / N
    g = eta * lam

    def predict_fn(
        t: ArrayLike | None = None,
        fx_train_0: ArrayLike = 0.0,
        fx_test_0: ArrayLike | None = None,
        k_test_train: ArrayLike | None = None,
        *,
        offset_train: ArrayLike | None = None,
        offset_test: ArrayLike | None = None,
    ):
        times, scalar = _checks.check_times(np.inf if t is None else t)
        f0 = _checks.check_outputs(fx_train_0, "fx_train_0", (n, c))
        c_train = _offset(offset_train, "offset_train", (n, c))
        z0 = eig.to_eigenbasis(f0 - c_train)
        zy = eig.to_eigenbasis(y - c_train)
        decay, ra = mode_factors(rates[None, :], g, k, times[:, None])  # (T, n)
        gain = np.where(rates > 0, rates * ra, 0.0)
        z_t = decay[..., None] * z0 + gain[..., None] * zy
        fx_train = _shape_time(c_train + eig.from_eigenbasis(z_t), scalar)
        if fx_test_0 is None and k_test_train is None:
            return fx_train
        if k_test_train is None:
            raise ValueError("k_test_train: required to predict test outputs")
        k_xt = _checks.check_cross_kernel(k_test_train, n)
        m = k_xt.shape[0]
        f0_test = _checks.check_outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", (m, c))
        c_test = _offset(offset_test, "offset_test", (m, c))
        qa = carry_factor(rates[None, :], g, k, times[:, None])
        coef = (eta / norm) * (ra[..., None] * zy - qa[..., None] * z0)  # (T, n, c)
        output_decay = np.exp(-k * g * np.where(np.isinf(times), 0.0, times))
        output_decay = np.where(np.isinf(times) & (k * g > 0), 0.0, output_decay)
        fx_test = c_test + output_decay[:, None, None] * (f0_test - c_test) + apply_left(k_xt @ eig.evecs, coef)
        return fx_train, _shape_time(fx_test, scalar)

    return predict_fn
