"""Gradient descent with λ changing from step to step: the exact discrete map as a JAX function of λ_s.

Training rule θ_{s+1} = (1 − ηλ_s)θ_s − η∇L(θ_s), L = ‖f − Y‖²/(2N), for a network homogeneous of
degree k at infinite width (`derivations/optimize.md`, G1–G2; at constant λ it is D1–D4). With
κ_s = 1 − ηλ_s and the kernel reached ρ_s Θ_0, ρ_{s+1} = κ_s^{2(k−1)} ρ_s, ρ_0 = 1, per eigenmode
of Θ_0 = V diag(μ) Vᵀ:

    α_s = κ_s^k,  b_s = η κ_s^{k−1} ρ_s / N,  m_s = α_s − b_s μ
    P_{s+1} = m_s P_s,          Q_{s+1} = m_s Q_s + b_s μ,
    W^z_{s+1} = α_s W^z_s − b_s P_s,   W^y_{s+1} = α_s W^y_s − b_s (Q_s − 1),   E_{s+1} = α_s E_s,

and the engine (`ntk_l2.theory._engine`) maps these back to train and test outputs. The map is a
``jax.lax.scan`` over the steps, so the outputs are differentiable in every λ_s (and η): the
gradient of a prediction at step T with respect to a whole schedule costs one backward pass.
`ntk_l2.laws.surrogate` builds on it the objective that `ntk_l2.laws.optimize` minimizes;
`ntk_l2.laws.KernelDynamics.run_l2_controller` evaluates the same map in NumPy (L3).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from ntk_l2.common import memory as _memory
from ntk_l2.theory import _engine
from ntk_l2.theory._discrete_checks import check_stability
from ntk_l2.theory.momentum_scale import MapSpec

__all__ = ["gradient_descent_mse_l2_schedule", "mode_sequences"]


def _check_schedule(l2_steps: Any, eta: float | None) -> Any:
    """λ_s per step: a concrete 1-D array of finite λ ≥ 0 with ηλ_s < 1 (a traced one: shape and dtype)."""
    if _engine.is_traced(l2_steps):
        if jnp.ndim(l2_steps) != 1 or not jnp.issubdtype(l2_steps.dtype, jnp.floating):
            raise ValueError(f"l2_steps: must be a 1-D array of floats, got shape {jnp.shape(l2_steps)}")
        return jnp.asarray(l2_steps, jnp.float64)
    lam = np.asarray(l2_steps)
    if lam.ndim != 1 or lam.size == 0 or lam.dtype.kind not in "fiu":
        raise ValueError(f"l2_steps: must be a non-empty 1-D array of numbers (λ per step), got shape {lam.shape}")
    lam = lam.astype(np.float64)
    bad = np.flatnonzero(~(np.isfinite(lam) & (lam >= 0)))
    if bad.size:
        raise ValueError(f"l2_steps: λ must be finite and >= 0; step {bad[0]} has {lam[bad[0]]!r}")
    if eta is not None and np.any(eta * lam >= 1.0):
        s = int(np.flatnonzero(eta * lam >= 1.0)[0])
        raise ValueError(f"l2_steps: ηλ must stay below 1 (G1); step {s} has ηλ = {eta * lam[s]:.6g}")
    return lam


def _check_stable(eta: float, lam: np.ndarray, degree: int, mu_max: float, norm: float) -> None:
    """D5 at the kernel reached, ρ_s μ_max, at every step where it is largest within a run of equal λ:
    the first step of the run for k ≥ 1 (the kernel shrinks), the last for k = 0 (it grows)."""
    kappa = 1.0 - eta * lam
    log_rho = np.concatenate([[0.0], np.cumsum(2 * (degree - 1) * np.log(kappa))])[:-1]
    change = np.flatnonzero(np.diff(lam, prepend=np.nan, append=np.nan) != 0)
    starts, ends = change[:-1], change[1:] - 1
    for s in ends if degree == 0 else starts:
        check_stability(eta, float(lam[s]), MapSpec(degree, 0.0, False, norm), mu_max * float(np.exp(log_rho[s])), 0)


@partial(jax.jit, static_argnames=("degree", "norm"))
def mode_sequences(eta: Any, lam: Any, mu: Any, degree: int, norm: float) -> tuple[Any, ...]:
    """(P, Q, W^z, W^y) of shape (S + 1, rows) and E of shape (S + 1,): the recursions of G2 for
    the eigenvalues ``mu`` of Θ_0, λ_s = ``lam[s]``, at steps 0…S. JAX throughout, unchecked: for
    callers that assemble outputs themselves (`ntk_l2.laws.surrogate`); the solver below checks.
    Compiled once per (``degree``, ``norm``) and shape: an eager scan would compile its step
    afresh at every call, and JAX keeps each compilation."""
    rows = mu.shape[0]

    def step(carry: tuple[Any, ...], lam_s: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        p, q, wz, wy, e, rho = carry
        kappa = 1.0 - eta * lam_s
        alpha = kappa**degree
        b = eta * kappa ** (degree - 1) * rho / norm
        m = alpha - b * mu
        new = (m * p, m * q + b * mu, alpha * wz - b * p, alpha * wy - b * (q - 1.0), alpha * e)
        return (*new, rho * kappa ** (2 * (degree - 1))), new

    one, zero = jnp.ones(rows, jnp.float64), jnp.zeros(rows, jnp.float64)
    start = (one, zero, zero, zero, jnp.ones((), jnp.float64))
    _, seq = jax.lax.scan(step, (*start, jnp.ones((), jnp.float64)), lam)
    return tuple(jnp.concatenate([s0[None], s], axis=0) for s0, s in zip(start, seq, strict=True))


def gradient_descent_mse_l2_schedule(
    k_train_train: ArrayLike, y_train: ArrayLike, learning_rate: Any, l2_steps: Any, degree: int = 2
) -> Callable[..., Any]:
    """Predicts training with λ_s = ``l2_steps[s]`` at step s (G1–G2), MSE, a finite step η.

    Same interface as the other solvers (``predict_fn(t, fx_train_0, fx_test_0, k_test_train, *,
    offset_train, offset_test)``, `ntk_l2.theory.gradient_descent_mse_l2_discrete`); ``t`` counts
    whole steps, 0 ≤ t ≤ S = ``len(l2_steps)``. A constant ``l2_steps`` gives D1–D4 exactly.

    Concrete inputs are checked before any work: λ_s ≥ 0 finite with ηλ_s < 1 (``l2_steps:``), and
    every step stable for the kernel it has reached (D5; ``learning_rate:``). Under ``jax.grad``
    (x64 enabled) ``learning_rate`` and ``l2_steps`` may be traced; their values are then not
    checked and an unstable schedule comes back as inf/NaN. Cost O(S·n) per call and as much
    memory (every step's coefficients are kept, then read at the steps asked for).
    """
    with _engine.float64(l2_steps, learning_rate):
        problem = _engine.solver_inputs(k_train_train, y_train, learning_rate, 0.0, degree)
        eta = _engine.concrete(problem.eta)
        lam = _check_schedule(l2_steps, eta)
        known = eta is not None and not _engine.is_traced(lam, problem.evals)
        if known:
            _check_stable(eta, lam, problem.degree, float(np.max(np.asarray(problem.evals))), problem.norm)
        _memory.check_fits(
            8.0 * 5 * (lam.shape[0] + 1) * problem.layout.rows, "the schedule's coefficients", "l2_steps"
        )
        lam = jnp.asarray(lam, jnp.float64)
    last = int(lam.shape[0])

    def parse_steps(t: Any) -> tuple[jax.Array, bool]:
        times, scalar = _engine.times_array(t)
        if not _engine.is_traced(times):
            values = np.asarray(times)
            if np.any(values != np.round(values)) or np.any(values < 0) or np.any(values > last):
                raise ValueError(f"t: the schedule covers whole steps 0..{last}, got {values.tolist()}")
        return times, scalar

    def coefficients(times: jax.Array) -> _engine.ModeCoefficients:
        p, q, wz, wy, e = mode_sequences(
            jnp.asarray(problem.eta, jnp.float64), lam, problem.evals, problem.degree, problem.norm
        )
        index = jnp.asarray(times).astype(jnp.int32)
        return _engine.ModeCoefficients(p=p[index], q=q[index], wz=wz[index], wy=wy[index], e=e[index])

    return _engine.make_predict_fn(problem, coefficients, parse_steps)
