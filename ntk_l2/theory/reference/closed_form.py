"""Closed-form gradient flow with L2 for a positively homogeneous network.

Implements (`derivations/continuous_time.md`, eqs. C1–C6)

    Θ_t     = e^{−2(k−1)ηλt} Θ_0
    df_X/dt = −η Θ_t (f_X − Y)/N − k η λ f_X
    f_*(t)  = Θ_*X Θ_0⁻¹ f_X(t) + e^{−kηλt} (f_*(0) − Θ_*X Θ_0⁻¹ f_X(0))

with N = Y.size, solved mode by mode in the eigenbasis of Θ_0 by
`ntk_l2.theory.reference.modes.mode_factors`. λ = 0 is `nt.predict.gradient_descent_mse`.

An output offset c (f = c + h(θ) with h homogeneous of degree k, e.g. a
network linearized at θ_0 with c = f_0 − J_0 θ_0) is handled exactly: h
follows the equations above with targets Y − c.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.theory.eigen import KernelEigen
from ntk_l2.theory.reference._affine import ModeCoefficients, make_predict_fn, solver_inputs
from ntk_l2.theory.reference.modes import carry_factor, mode_factors, output_decay

Array = NDArray[np.float64]
PredictFn = Callable[..., Any]


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
    return _make_predict_fn(*solver_inputs(k_train_train, y_train, learning_rate, l2, degree))


def _make_predict_fn(eig: KernelEigen, y: Array, eta: float, lam: float, k: int) -> PredictFn:
    norm = float(y.size)
    rates = eta * eig.evals / norm  # a = η μ / N
    g = eta * lam

    def coefficients(times: Array) -> ModeCoefficients:
        decay, ra = mode_factors(rates[None, :], g, k, times[:, None])  # (T, n)
        qa = carry_factor(rates[None, :], g, k, times[:, None])
        return ModeCoefficients(
            p=decay,
            q=np.where(rates > 0, _learned(rates, ra, g, times), 0.0),
            wz=-(eta / norm) * qa,
            wy=(eta / norm) * ra,
            e=output_decay(g, k, times),
        )

    return make_predict_fn(eig, y, coefficients)


def _learned(rates: Array, ra: Array, g: float, times: Array) -> Array:
    """The share a·(R/a) of its target a mode has learned (C5). With λ = 0 it is 1 − e^{−at}
    itself, which stays exact where 1/a overflows (a subnormal rate at t = ∞)."""
    if g != 0.0:
        return rates * ra
    t = times[:, None]
    return np.where(np.isinf(t), 1.0, -np.expm1(-rates * np.where(np.isinf(t), 0.0, t)))
