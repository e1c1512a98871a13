"""Gradient descent with a finite step and L2: the discrete-time map.

Implements (`derivations/discrete_time.md`, eqs. D1–D4)

    f_{s+1} = (1 − ηλ)^k f_s − η (1 − ηλ)^{k−1} Θ_s (f_s − Y)/N,
    Θ_s     = (1 − ηλ)^{2(k−1)s} Θ_0,
    f_*(s+1) = (1 − ηλ)^k f_*(s) − η (1 − ηλ)^{k−1} Θ_*X,s (f_s − Y)/N.

In the eigenbasis of Θ_0 each mode is affine in (z_0, y): z_s = P_s z_0 + Q_s y
and f_*(s) = α^s f_*(0) + Θ_*X V (W^z_s z_0 + W^y_s y), with α = (1 − ηλ)^k,
β_s = η (1 − ηλ)^{k−1} ρ^s / N, ρ = (1 − ηλ)^{2(k−1)}, m_s = α − β_s μ:

    P_{s+1} = m_s P_s,              Q_{s+1} = m_s Q_s + β_s μ,
    W^z_{s+1} = α W^z_s − β_s P_s,  W^y_{s+1} = α W^y_s − β_s (Q_s − 1).

These four scalar sequences per mode (independent of the number of outputs)
run as one compiled `jax.lax` loop in float64: no Python loop over steps.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.experimental import enable_x64
from numpy.typing import ArrayLike, NDArray

from ntk_l2.theory import _checks
from ntk_l2.theory._affine import ModeCoefficients, make_predict_fn, solver_inputs
from ntk_l2.theory.eigen import KernelEigen

Array = NDArray[np.float64]


def stability_limit(mu_max: float, norm: float, l2: float, degree: int) -> float:
    """The smallest η at which the step-0 condition |α − β_0 μ_max| ≤ 1 fails.

    The condition reads η(1−ηλ)^{k−1} μ_max/N ≤ 1 + (1−ηλ)^k (eq. D5); for
    λ = 0 it is the familiar η ≤ 2N/μ_max. For k ≥ 2 the stable set can
    reopen just below ηλ = 1 (each step then nearly erases the parameters);
    this returns the first crossing, the limit that matters in practice.
    """
    if mu_max <= 0:
        return np.inf
    if l2 == 0:
        return 2.0 * norm / mu_max

    def excess(eta: float) -> float:
        keep = 1.0 - eta * l2
        return eta * keep ** (degree - 1) * mu_max / norm - 1.0 - keep**degree

    hi = 1.0 / l2
    grid = np.linspace(0.0, hi, 4097)[1:-1]
    values = np.array([excess(e) for e in grid])
    if not np.any(values > 0):
        return hi  # stable up to ηλ = 1, where the L2 step itself breaks down
    first = int(np.argmax(values > 0))
    lo = grid[first - 1] if first else 0.0
    return float(scipy.optimize.brentq(excess, lo, grid[first], xtol=1e-14 * hi, rtol=1e-15))


def check_stability(eta: float, lam: float, k: int, mu_max: float, norm: float, last_step: int) -> None:
    """Raise ``ValueError`` naming ``learning_rate`` when the map is unstable."""
    if eta * lam >= 1.0:
        raise ValueError(
            f"learning_rate: learning_rate * l2 = {eta * lam:g} must be < 1 for the discrete map "
            f"(each step multiplies the parameters by 1 - learning_rate * l2)"
        )
    keep = 1.0 - eta * lam
    alpha = keep**k
    worst_step = last_step if k == 0 else 0  # β_s grows for k = 0, shrinks for k ≥ 2
    with np.errstate(over="ignore"):
        beta = eta * mu_max / norm * np.exp((k - 1) * (1 + 2 * worst_step) * np.log(keep))
    if alpha - beta < -1.0 - 1e-12:
        limit = stability_limit(mu_max, norm, lam, k)
        where = "" if worst_step == 0 else f" at step {worst_step} (the degree-0 kernel grows)"
        raise ValueError(
            f"learning_rate: {eta:g} is beyond the discrete-time stability limit{where}; "
            f"the limit at step 0 is learning_rate <= {limit:.6g} "
            f"(largest eigenvalue {mu_max:.6g}, N = {norm:g})"
        )


@functools.partial(jax.jit, static_argnums=())
def _mode_sequences(mu, alpha, beta_n, log_rho, increments):
    """(P, Q, W^z, W^y) of every mode after each cumulative step count."""

    def step(s, state):
        p, q, wz, wy = state
        bn = beta_n * jnp.exp(s * log_rho)
        m = alpha - bn * mu
        return m * p, m * q + bn * mu, alpha * wz - bn * p, alpha * wy - bn * (q - 1.0)

    def advance(carry, inc):
        s0, state = carry
        state = jax.lax.fori_loop(s0, s0 + inc, step, state)
        return (s0 + inc, state), jnp.stack(state)

    zeros = jnp.zeros_like(mu)
    init = (jnp.asarray(0, increments.dtype), (jnp.ones_like(mu), zeros, zeros, zeros))
    _, out = jax.lax.scan(advance, init, increments)
    return out  # (T, 4, n)


def _check_steps(t: Any) -> tuple[np.ndarray, bool]:
    times, scalar = _checks.check_times(t)
    if np.any(np.isinf(times)) or np.any(times != np.round(times)):
        raise ValueError("t: the discrete map takes whole, finite numbers of steps")
    return times, scalar


def gradient_descent_mse_l2_discrete(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    l2: float = 0.0,
    degree: int = 2,
) -> Callable[..., Any]:
    """Predicts gradient descent with a finite learning rate, MSE and L2.

    Same interface as `ntk_l2.theory.closed_form.gradient_descent_mse_l2`;
    ``t`` counts whole steps. Cost: one eigendecomposition, then O(S·n) for
    the largest step S plus O(T·n·(n + m)·c) to map back.
    """
    return _make_predict_fn(*solver_inputs(k_train_train, y_train, learning_rate, l2, degree))


def _make_predict_fn(eig: KernelEigen, y: Array, eta: float, lam: float, k: int):
    norm = float(y.size)
    keep = 1.0 - eta * lam
    check_stability(eta, lam, k, float(eig.evals[-1]), norm, 0)

    def sequences(steps: np.ndarray) -> Array:
        order = np.argsort(steps, kind="stable")
        sorted_steps = steps[order]
        check_stability(eta, lam, k, float(eig.evals[-1]), norm, max(int(sorted_steps[-1]) - 1, 0))
        increments = np.diff(sorted_steps, prepend=0)
        with enable_x64():
            out = _mode_sequences(
                jnp.asarray(eig.evals, jnp.float64),
                jnp.float64(keep**k),
                jnp.float64(eta * keep ** (k - 1) / norm),
                jnp.float64(2 * (k - 1) * np.log(keep)),
                jnp.asarray(increments, jnp.int64),
            )
            out = np.asarray(out)
        result = np.empty_like(out)
        result[order] = out
        return result

    def coefficients(steps: Array) -> ModeCoefficients:
        seq = sequences(steps.astype(np.int64))  # (T, 4, n)
        alpha_s = np.exp(k * steps * np.log(keep))  # keep = 1 − ηλ > 0 (check_stability)
        return ModeCoefficients(p=seq[:, 0], q=seq[:, 1], wz=seq[:, 2], wy=seq[:, 3], e=alpha_s)

    return make_predict_fn(eig, y, coefficients, _check_steps)
