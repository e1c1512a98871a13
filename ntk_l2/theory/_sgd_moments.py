"""The moment recursion of minibatch SGD with L2 (`derivations/sgd.md`, S3–S5), in JAX.

With the state x = (u_X, u_*) (and the velocity w with momentum), h_s = ρ^s and the batch
mask M_s, one step is x' = L x − h_s H M_s r_s (S3). Its mean and covariance over batch draws,

    m_{s+1} = L m_s − (B/n) h_s H (P_X m_s − Ỹ)                                  (S4)
    C_{s+1} = A_s C_s A_sᵀ + h_s² H D(R_s) Hᵀ,   D(R) = ν (R ∘ (I_n ⊗ J_c) − R/n),   (S5)

are propagated by one `jax.lax.scan` (`_moments`). The solver, its checks and the assembly of
the results are in `ntk_l2.theory.sgd`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.theory._engine import Problem


def _model(problem: Problem, g: Any, batch: int, beta: Any, velocity: bool) -> tuple[Any, Any, Any]:
    """H (state rows × n·c), the coefficients of L and log ρ of S3, so that x' = L x − h_s H M r, h_s = ρ^s.

    Plain: L = α I, H = η(1−ηλ)^{k−1} G/(Bc). Momentum (k = 1): state (u, w),
    L = [[1 − ηλ, −ηβ], [λ, β]] ⊗ I and H = [η G; −G]/(Bc), ρ = 1.
    """
    eta, lam, k = problem.eta, problem.lam, problem.degree
    scale = 1.0 / (batch * problem.layout.c)
    if velocity:
        coef = jnp.stack(jnp.broadcast_arrays(1.0 - eta * lam, -eta * beta, lam, beta)).astype(jnp.float64)
        return jnp.concatenate([eta * scale * g, -scale * g]), coef, jnp.zeros((), jnp.float64)
    log_keep = jnp.log1p(-jnp.asarray(eta * lam, jnp.float64))
    alpha = jnp.exp(k * log_keep)
    gamma = eta * jnp.exp((k - 1) * log_keep) * scale
    return gamma * g, alpha[None], 2.0 * (k - 1) * log_keep


def _same_point(n: int, c: int) -> np.ndarray:
    """I_n ⊗ J_c: 1 where two output rows (i,a), (j,b) belong to the same point (i = j)."""
    return np.kron(np.eye(n), np.ones((c, c)))


def _slots(unique: np.ndarray) -> np.ndarray:
    """For each step s = 0 … t_max − 1, the record slot of step s + 1 (len(unique) when not requested)."""
    slots = np.full(int(unique[-1]), len(unique), np.int32)
    positive = unique[unique > 0]
    slots[positive - 1] = np.searchsorted(unique, positive)
    return slots


@functools.partial(jax.jit, static_argnames=("n", "records", "with_zero", "velocity"))
def _moments(
    h: Any,
    coef: Any,
    y_res: Any,
    x0: Any,
    log_rho: Any,
    same_point: Any,
    probs: Any,
    n: int,
    slots: Any,
    *,
    records: int,
    with_zero: bool,
    velocity: bool,
) -> tuple[Any, Any]:
    """Mean (U, D) and covariance (U, D, D) after each requested step: S4–S5 run by one `jax.lax.scan`."""
    p1, _, nu = probs
    nc = y_res.shape[0]
    size = x0.shape[0]

    def apply_l(x: Any) -> Any:
        if not velocity:
            return coef[0] * x
        xu, xw = x[: size // 2], x[size // 2 :]
        return jnp.concatenate([coef[0] * xu + coef[1] * xw, coef[2] * xu + coef[3] * xw])

    def apply_a(x: Any, hs: Any) -> Any:  # A_s x = L x − (B/n) h_s H x_X (S5)
        return apply_l(x) - (p1 * hs) * (h @ x[:nc])

    def step(carry: Any, xs: Any) -> Any:
        mean, cov, buf_m, buf_c = carry
        s, slot = xs
        hs = jnp.exp(s * log_rho)
        res = mean[:nc] - y_res
        second = cov[:nc, :nc] + jnp.outer(res, res)  # R_s = E[r rᵀ]
        noise = nu * (second * same_point - second / n)  # D(R_s)
        new_mean = apply_l(mean) - (p1 * hs) * (h @ res)  # S4
        new_cov = apply_a(apply_a(cov, hs).T, hs) + (hs * hs) * ((h @ noise) @ h.T)  # S5
        new_cov = 0.5 * (new_cov + new_cov.T)
        buf_m = jax.lax.dynamic_update_index_in_dim(buf_m, new_mean, slot, 0)
        buf_c = jax.lax.dynamic_update_index_in_dim(buf_c, new_cov, slot, 0)
        return (new_mean, new_cov, buf_m, buf_c), None

    buf_m = jnp.zeros((records + 1, size)).at[0].set(x0 if with_zero else 0.0)
    buf_c = jnp.zeros((records + 1, size, size))
    cov0 = jnp.zeros((size, size))
    steps = jnp.arange(slots.shape[0], dtype=jnp.float64)
    (_, _, buf_m, buf_c), _ = jax.lax.scan(step, (x0, cov0, buf_m, buf_c), (steps, slots))
    return buf_m[:records], buf_c[:records]
