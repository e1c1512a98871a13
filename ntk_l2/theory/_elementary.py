"""Elementary functions of the per-mode solutions, in JAX with their derivatives at 0.

ψ(x) = (1 − e^{−x})/x and φ(q, t) = ∫_0^t e^{−qs} ds = t ψ(qt) (`derivations/continuous_time.md`,
C4–C5), each by its Taylor polynomial near 0 so that values and derivatives stay exact there.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from ntk_l2.theory import _engine

JArray = jax.Array


def _f64(x: Any) -> JArray:
    return jnp.asarray(x, jnp.float64)


# ψ(x) = Σ_j (−x)^j/(j + 1)! for |x| < 1/2 (18 terms: (1/2)^18/19! < 1e-22); outside, 1 − e^{−x} does not
# cancel (|1 − e^{−x}| > 0.39). XLA's expm1 is ~10x slower than exp on CPU.
_PSI_BELOW = 0.5
_PSI_COEFFICIENTS = [(-1.0) ** j / math.factorial(j + 1) for j in range(18)]


def _horner(x: JArray, coefficients: list[float]) -> JArray:
    acc = jnp.full_like(x, coefficients[-1])
    for c in coefficients[-2::-1]:
        acc = acc * x + c
    return acc


def _psi(x: JArray) -> JArray:
    small = jnp.abs(x) < _PSI_BELOW
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, _horner(jnp.where(small, x, 0.0), _PSI_COEFFICIENTS), (1.0 - jnp.exp(-safe)) / safe)


def _phi(q: Any, t: JArray) -> JArray:
    q = _f64(q)
    qt = jnp.where(jnp.isinf(t) & (q == 0.0), 0.0, q * t)
    small = jnp.abs(qt) < _PSI_BELOW
    q_safe, qt_safe = jnp.where(small, 1.0, q), jnp.where(small, 1.0, qt)
    taylor = t * _horner(jnp.where(small, qt, 0.0), _PSI_COEFFICIENTS)
    return jnp.where(small, taylor, (1.0 - jnp.exp(-qt_safe)) / q_safe)


def psi(x: Any) -> JArray:
    """ψ(x) = (1 − e^{−x}) / x, with ψ(0) = 1; accurate for all real x, with its derivatives at 0."""
    with _engine.float64(x):
        return _psi(_f64(x))


def phi(q: Any, t: Any) -> JArray:
    """φ(q, t) = ∫_0^t e^{−q s} ds = (1 − e^{−qt}) / q, with φ(0, t) = t and φ(q>0, ∞) = 1/q.

    t·ψ(qt) near qt = 0 (a polynomial), so the derivative in q is right at q = 0 too (−t²/2).
    """
    with _engine.float64(q, t):
        return _phi(_f64(q), _f64(t))


def _dpsi(x: JArray) -> JArray:
    """ψ'(x) = ((1 + x) e^{−x} − 1)/x², by its Taylor polynomial for |x| < 1/2."""
    small = jnp.abs(x) < _PSI_BELOW
    safe = jnp.where(small, 1.0, x)
    taylor = _horner(jnp.where(small, x, 0.0), [j * c for j, c in enumerate(_PSI_COEFFICIENTS)][1:])
    return jnp.where(small, taylor, ((1.0 + safe) * jnp.exp(-safe) - 1.0) / safe**2)
