"""G(x) = x^p e^x Γ(1 − p, x), the scaled upper incomplete gamma function of the closed form, in JAX.

Regimes B2 and C of `ntk_l2.theory.modes` (`derivations/continuous_time.md`, C5c) need G for
x ≥ 1. It is evaluated by the modified Lentz algorithm for the continued fraction of Γ(s, x)
(a `lax.while_loop`), and carries its analytic derivative (C9c) as a `jax.custom_jvp`, so that
``grad``/``jacfwd`` never differentiate the loop.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntk_l2.theory import _engine
from ntk_l2.theory._elementary import _f64

JArray = jax.Array

_CF_MAX_ITER = 1000
_CF_EPS = 4.5e-16  # two ulps of 1: a smaller bound may never be met in float64
_CF_TINY = 1e-300


def _lentz(x: JArray, s: float) -> JArray:
    """x · CF(x) for Γ(s, x) = e^{−x} x^s CF(x) by the modified Lentz algorithm (NaN where not converged)."""

    def body(state):
        i, bb, c, d, h, done = state
        an = -i * (i - s)
        bb = bb + 2.0
        d = an * d + bb
        d = jnp.where(jnp.abs(d) < _CF_TINY, _CF_TINY, d)
        c = bb + an / c
        c = jnp.where(jnp.abs(c) < _CF_TINY, _CF_TINY, c)
        d = 1.0 / d
        delta = d * c
        h = jnp.where(done, h, h * delta)  # an element stops at its own convergence, as in the reference
        return i + 1.0, bb, c, d, h, done | (jnp.abs(delta - 1.0) < _CF_EPS)

    def cond(state):
        return (state[0] <= _CF_MAX_ITER) & ~jnp.all(state[5])

    bb = x + 1.0 - s
    d = 1.0 / bb
    init = (jnp.float64(1.0), bb, jnp.full_like(x, 1.0 / _CF_TINY), d, d, jnp.zeros(x.shape, bool))
    *_, h, done = lax.while_loop(cond, body, init)
    return jnp.where(done, x * h, jnp.nan)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _scaled_upper_gamma(x: JArray, p: float) -> JArray:
    return _lentz(x, 1.0 - p)


@_scaled_upper_gamma.defjvp
def _scaled_upper_gamma_jvp(p: float, primals: tuple[JArray], tangents: tuple[JArray]) -> tuple[JArray, JArray]:
    """G'(x) = G(x)(1 + p/x) − 1 (C9a), evaluated as (p/x²)[(p+1) G_{p+2}(x) − p G_{p+1}(x)] (C9c)."""
    (x,), (dx,) = primals, tangents
    slope = p / x**2 * ((p + 1.0) * _scaled_upper_gamma(x, p + 2.0) - p * _scaled_upper_gamma(x, p + 1.0))
    return _scaled_upper_gamma(x, p), slope * dx


@functools.cache
def _g_one(p: float) -> float:
    """G(1) for exponent p, a constant (evaluated once per p, also inside a trace)."""
    with jax.ensure_compile_time_eval(), _engine.float64():
        return float(_lentz(jnp.ones((), jnp.float64), 1.0 - p))


def scaled_upper_gamma(x: Any, p: float) -> JArray:
    """G(x) = x^p e^x Γ(1 − p, x) = ∫_0^∞ e^{−v} (1 + v/x)^{−p} dv, for x ≥ 1 (C5c).

    Modified Lentz evaluation of the continued fraction
    Γ(s, x) = e^{−x} x^s / (x + 1 − s − 1(1 − s)/(x + 3 − s − 2(2 − s)/…)),
    s = 1 − p, so that G(x) = x · CF(x) carries no exponential prefactor.
    Differentiable in x through its analytic derivative (C9), not through the loop.
    """
    with _engine.float64(x):
        return _scaled_upper_gamma(_f64(x), float(p))
