"""Closed-form gradient flow with L2 for a positively homogeneous network, in JAX.

Implements (`derivations/continuous_time.md`, eqs. C1–C6)

    Θ_t     = e^{−2(k−1)ηλt} Θ_0
    df_X/dt = −η Θ_t (f_X − Y)/N − k η λ f_X
    f_*(t)  = Θ_*X Θ_0⁻¹ f_X(t) + e^{−kηλt} (f_*(0) − Θ_*X Θ_0⁻¹ f_X(0))

with N = Y.size, solved mode by mode in the eigenbasis of Θ_0 by
`ntk_l2.theory.modes.mode_factors`. λ = 0 is `nt.predict.gradient_descent_mse`.

An output offset c (f = c + h(θ) with h homogeneous of degree k, e.g. a
network linearized at θ_0 with c = f_0 − J_0 θ_0) is handled exactly: h
follows the equations above with targets Y − c.

Built on the shared engine (`ntk_l2.theory._engine`): float64 inside, works
eagerly and under ``jax.jit``, ``jax.vmap``, ``jax.grad`` and ``jax.jacfwd``
(in λ, η, the kernel, targets, times, initial outputs and offsets; C9–C10 for
the derivatives). At exactly λ = 0 with a traced λ and degree k ≥ 2 the
derivative in λ is NaN, not a number: the kernel's decay rate 2(k−1)ηλ changes
the form of the solution there (C10); differentiate at λ > 0, or in log λ.
(``jax.jacfwd`` over λ and η jointly then returns NaN in the η column too,
where a zero λ tangent meets the NaN slope; ``jax.grad``/``jax.jacrev`` keep it.)
The NumPy reference is `ntk_l2.theory.reference.closed_form`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ntk_l2.theory import _engine
from ntk_l2.theory.modes import carry_factor, mode_factors, output_decay

PredictFn = Callable[..., Any]


def gradient_descent_mse_l2(
    k_train_train: Any,
    y_train: Any,
    learning_rate: Any = 1.0,
    l2: Any = 0.0,
    degree: int = 2,
) -> PredictFn:
    """Predicts continuous-time gradient descent on MSE with L2 regularization.

    Solves the equations of the module docstring in closed form. Setup costs one
    eigendecomposition of ``k_train_train``; each prediction O(T·n·(n + m)·c).

    Args:
      k_train_train: (n, n) NTK Θ_0 of the training inputs (any PSD matrix), an
        (n, n, c, c) kernel with output axes (the (n·c) × (n·c) matrix
        Θ[(i,a),(j,b)]), or a `KernelEigen` of either.
      y_train: (n, c) targets.
      learning_rate: η > 0 (a number, or a traced scalar under a transformation).
      l2: λ ≥ 0, the L2 strength on the trainable parameters (likewise).
      degree: homogeneity degree k ≥ 0 of the network (1: linear model).

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None, *,
      offset_train=None, offset_test=None)``. ``t`` is a scalar or a 1-D array
      of steps (``None`` or ``np.inf``: the t → ∞ limit). Returns ``fx_train``
      of shape (n, c) or (T, n, c), or ``(fx_train, fx_test)`` when
      ``fx_test_0`` or ``k_test_train`` is given (like neural-tangents), as
      jax arrays (dtype policy of `ntk_l2.theory._engine`).
    """
    return _engine.make_predict_fn(*setup(k_train_train, y_train, learning_rate, l2, degree))


def setup(
    k_train_train: Any, y_train: Any, learning_rate: Any, l2: Any, degree: int
) -> tuple[_engine.Problem, Callable[[jax.Array], _engine.ModeCoefficients], Callable[[Any], tuple[jax.Array, bool]]]:
    """The checked problem, its per-mode coefficients (C6) and its time parser: what
    `gradient_descent_mse_l2` hands the engine, for solvers that assemble outputs themselves
    (`ntk_l2.theory.scale_dense`: test outputs in chunks)."""
    problem = _engine.solver_inputs(k_train_train, y_train, learning_rate, l2, degree)
    return problem, _coefficients(problem), _engine.times_array


@jax.custom_jvp
def _no_slope_at_zero(lam: jax.Array) -> jax.Array:
    """λ itself, whose derivative is NaN where λ = 0: there, for k ≥ 2, the b = 0 form the modes
    evaluate ignores how the decay rate b = 2(k−1)ηλ moves with λ (C10), so no number is returned."""
    return lam


@_no_slope_at_zero.defjvp
def _no_slope_at_zero_jvp(primals: tuple, tangents: tuple) -> tuple:
    (lam,), (d_lam,) = primals, tangents
    return lam, jnp.where(lam == 0.0, jnp.nan, 1.0) * d_lam


def _coefficients(problem: _engine.Problem) -> Callable[[jax.Array], _engine.ModeCoefficients]:
    """P = D, Q = a·(R/a), W^z = −(η/N) q, W^y = (η/N) R/a, E = e^{−kηλt} (C6)."""
    eta, lam, k, norm = problem.eta, problem.lam, problem.degree, problem.norm
    if k >= 2 and _engine.concrete(lam) is None:
        lam = _no_slope_at_zero(lam)
    g = eta * lam  # a Python float when both are concrete: the modes then branch on its value

    def coefficients(times: jax.Array) -> _engine.ModeCoefficients:
        rates = eta * problem.evals / norm  # a = η μ / N
        decay, ra = mode_factors(rates[None, :], g, k, times[:, None])  # (T, rows)
        qa = carry_factor(rates[None, :], g, k, times[:, None])
        return _engine.ModeCoefficients(
            p=decay,
            q=jnp.where(rates > 0.0, _learned(rates, ra, g, times), 0.0),
            wz=-(eta / norm) * qa,
            wy=(eta / norm) * ra,
            e=output_decay(g, k, times),
        )

    return coefficients


def _learned(rates: jax.Array, ra: jax.Array, g: Any, times: jax.Array) -> jax.Array:
    """The share a·(R/a) of its target a mode has learned (C5). With λ = 0 it is 1 − e^{−at}
    itself, which stays exact where 1/a overflows (a subnormal rate at t = ∞); for a traced λ
    the overflowed product is replaced by that limit, 1."""
    g_value = _engine.concrete(g)
    if g_value is None:
        finite = jnp.isfinite(ra)
        return jnp.where(finite, rates * jnp.where(finite, ra, 0.0), 1.0)
    if g_value != 0.0:
        return rates * ra
    t = times[:, None]
    at_infinity = jnp.isinf(t)
    return jnp.where(at_infinity, 1.0, -jnp.expm1(-rates * jnp.where(at_infinity, 0.0, t)))
