"""Dormand–Prince with a step budget, for the momentum flow (`derivations/momentum_flow.md`, MF7).

`_odeint_budget` runs the forward pass of ``jax.experimental.ode.odeint`` (the same steps and
values) with one step budget for all the times of a segment (``max_steps``, by default
`MAX_STEPS`), and returns the time it reached, so that a request beyond the budget is refused
instead of silently cut short. Its gradient is odeint's adjoint (reverse mode only).
`_strictly_increasing` makes repeated times distinct, since a zero-length interval gives 0/0 in
odeint's interpolation and adjoint.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import ode

MAX_STEPS = 100_000  # Dormand–Prince steps per segment: measured 0.4 s to use them up at n = 20, 3.5 s at n = 300
_BACKWARD_STEPS = 4 * MAX_STEPS  # per interval of the adjoint (jax's mxstep), only reached if the forward passed


def _dopri(
    func: Callable, rtol: float, atol: float, max_steps: int, y0: jax.Array, ts: jax.Array, *args: Any
) -> tuple[jax.Array, jax.Array]:
    """``jax.experimental.ode.odeint``'s forward pass (same steps, same values) with one step budget for all
    of ``ts`` (strictly increasing): returns y at ``ts`` and the time reached (< ts[-1] when over budget)."""
    fun = lambda y, t: func(y, t, *args)  # noqa: E731

    def scan_fun(carry, target):
        def cond(state):
            i, _, _, t, dt, _, _ = state
            return (t < target) & (i < max_steps) & (dt > 0)

        def body(state):
            i, y, f, t, dt, last_t, coeff = state
            next_y, next_f, next_err, k = ode.runge_kutta_step(fun, y, f, t, dt)
            next_t = t + dt
            ratio = ode.mean_error_ratio(next_err, rtol, atol, y, next_y)
            new_coeff = ode.interp_fit_dopri(y, next_y, k, dt)
            dt = jnp.clip(ode.optimal_step_size(dt, ratio), min=0.0)
            new = [i + 1, next_y, next_f, next_t, dt, t, new_coeff]
            old = [i + 1, y, f, t, dt, last_t, coeff]
            return [jnp.where(ratio <= 1.0, x, z) for x, z in zip(new, old, strict=False)]

        carry = lax.while_loop(cond, body, carry)
        _, _, _, t, _, last_t, coeff = carry
        return carry, jnp.polyval(coeff, (target - last_t) / (t - last_t))

    f0 = fun(y0, ts[0])
    dt = ode.initial_step_size(fun, ts[0], y0, 4, rtol, atol, f0)
    init = [jnp.zeros((), jnp.int64), y0, f0, ts[0], dt, ts[0], jnp.array([y0] * 5)]
    carry, ys = lax.scan(scan_fun, init, ts[1:])
    return jnp.concatenate([y0[None], ys]), carry[3]


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _odeint_budget(func, rtol, atol, max_steps, y0, ts, *args):
    return _dopri(func, rtol, atol, max_steps, y0, ts, *args)


def _odeint_budget_fwd(func, rtol, atol, max_steps, y0, ts, *args):
    return _dopri(func, rtol, atol, max_steps, y0, ts, *args), (y0, ts, args)


def _odeint_budget_bwd(func, rtol, atol, max_steps, residuals, cotangents):
    """The adjoint of ``jax.experimental.ode.odeint`` (it recomputes the same forward pass)."""
    y0, ts, args = residuals

    def solve(y0_, ts_, *args_):
        return ode.odeint(
            func,
            y0_,
            ts_,
            *args_,
            rtol=rtol,
            atol=atol,  # noqa: E731
            mxstep=_BACKWARD_STEPS,
        )

    return jax.vjp(solve, y0, ts, *args)[1](cotangents[0])


_odeint_budget.defvjp(_odeint_budget_fwd, _odeint_budget_bwd)


def _strictly_increasing(ts: jax.Array) -> jax.Array:
    """Raise each time to at least two ulps past its predecessor: repeated times become distinct (moving them
    by ~1e-16 relative), since a zero-length interval gives 0/0 in odeint's interpolation and adjoint."""

    def step(prev, t):
        t = jnp.maximum(t, prev + jnp.abs(prev) * 2.0**-51 + 2.0**-990)
        return t, t

    return jnp.concatenate([ts[:1], lax.scan(step, ts[0], ts[1:])[1]])
