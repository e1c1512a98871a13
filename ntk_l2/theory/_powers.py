"""Binary powering of small constant matrices in ``jax.numpy``, in gap form (`derivations/momentum.md`, M7).

A constant linear map x_{s+1} = A x_s is evaluated at any whole step count t
by repeated squaring over the bits of t: O(log t) products, with t a float64
that may be traced. Every power is held in *gap form*, A^m = I + G_m, and
multiplied as (I + G)(I + H) = I + (G + H + GH), so a map close to the
identity (a slow mode, 1 − x small) keeps the digits of its gap: squaring
gives G_{2m} = 2G_m + G_m², never 1 − (1 − x) (the matrix counterpart of
expm1/log1p in `discrete_time.md`, D6a).

All functions broadcast over leading axes (modes, times) and are pure.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

JArray = jax.Array

# Traced times are expanded over this many bits; concrete ones over as many as their maximum needs.
TRACED_BITS = 64
MAX_BITS = 1025  # every finite float64 is below 2^1024


def bits_needed(t_max: float) -> int:
    """Bits to expand concrete whole times up to ``t_max``: 64 below 2^64 (one compilation), else 1025."""
    return TRACED_BITS if t_max < 2.0**64 else MAX_BITS


def time_bits(times: JArray, n_bits: int) -> JArray:
    """Bit j of each whole float64 time, (T, n_bits) booleans: ⌊t/2^j⌋ mod 2, exact in float64."""
    scales = jnp.exp2(-jnp.arange(n_bits, dtype=jnp.float64))
    return jnp.mod(jnp.floor(times[:, None] * scales[None, :]), 2.0) == 1.0


def row_powers(gap: JArray, row: JArray, bits: JArray) -> JArray:
    """rᵀA^t for each time, A = I + ``gap`` (..., D, D); ``row`` (..., D) broadcast against it;
    bits (T, n_bits) → (T, ..., D).

    One pass over the bits: the powers A^{2^j} = I + G_j commute, so rᵀA^t = rᵀ Π_{j: bit j of t}
    (I + G_j), applied as r ← r + r G_j while squaring G_{j+1} = 2G_j + G_j².
    """
    lead = jnp.broadcast_shapes(gap.shape[:-1], row.shape)  # (..., D): modes, or several rows
    r0 = jnp.broadcast_to(row, (bits.shape[0],) + lead)

    def apply(carry, bit):
        r, g = carry
        moved = r + jnp.einsum("...i,...ij->...j", r, g)
        r = jnp.where(bit.reshape(bit.shape + (1,) * (r.ndim - 1)), moved, r)
        return (r, 2.0 * g + g @ g), None

    (out, _), _ = jax.lax.scan(apply, (r0, gap), jnp.moveaxis(bits, 1, 0))
    return out


def symmetric_power_gap(gap: JArray, degree: int) -> JArray:
    """Sym^d(I + G) − I for a 2×2 gap G, in the monomial basis m_i = x^{d−i} y^i, i = 0..d (M7).

    Row i holds the coefficients of (x' )^{d−i} (y')^i with x' = (1 + G₀₀)x + G₀₁y and
    y' = G₁₀x + (1 + G₁₁)y. Writing each factor as e + h (e = x or y, the identity part)
    the difference of the products telescopes, Π(e + h) − Πe = Σ_l [Π_{m<l}(e + h)] h_l
    [Π_{m>l} e], and is accumulated factor by factor as D ← D·e + F·h, F ← F·(e + h),
    so no entry is formed as (1 + small) − 1.
    """
    d = degree
    size = d + 1
    rows = jnp.arange(size)
    # Polynomials in y/x as coefficient vectors (degree ≤ d): F = product so far, D = F − identity part.
    full = jnp.zeros((size, size), gap.dtype).at[:, 0].set(1.0)
    diff = jnp.zeros((size, size), gap.dtype)
    for position in range(d):
        is_x = position < d - rows  # row i: its first d − i factors are x', then i factors y'
        # multiply a coefficient vector p by x (no shift) or y (shift by one)
        shift = lambda p: jnp.concatenate([jnp.zeros_like(p[:, :1]), p[:, :-1]], axis=1)  # noqa: E731
        h_const = jnp.where(is_x, gap[0, 0], gap[1, 0])[:, None]  # h = c₀ x + c₁ y
        h_lin = jnp.where(is_x, gap[0, 1], gap[1, 1])[:, None]
        times_e = jnp.where(is_x[:, None], full, shift(full))
        times_h = h_const * full + h_lin * shift(full)
        diff = jnp.where(is_x[:, None], diff, shift(diff)) + times_h
        full = times_e + times_h
    return diff


def exp_times(s: Any, log_x: Any) -> JArray:
    """x^s = exp(s·log x) for whole s ≥ 0 and log x ≤ 0, with x^0 = 1 even when log x = −inf."""
    s = jnp.asarray(s, jnp.float64)
    return jnp.exp(jnp.where(s == 0.0, 0.0, s * jnp.where(s == 0.0, 0.0, log_x)))


def geometric(s: Any, log_x: Any, one_minus_x: Any) -> JArray:
    """Σ_{j<s} x^j for 0 ≤ x ≤ 1 and whole s ≥ 0: s when x = 1, else −expm1(s·log x)/(1 − x), no cancellation."""
    s = jnp.asarray(s, jnp.float64)
    at_one = one_minus_x == 0.0
    safe = jnp.where(at_one, 1.0, one_minus_x)
    inside = -jnp.expm1(jnp.where(s == 0.0, 0.0, s * jnp.where(s == 0.0, 0.0, log_x))) / safe
    return jnp.where(at_one, s, inside)
