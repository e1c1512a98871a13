"""The parameter scale of momentum with L2: a_s in closed form, and where the kernel stops mattering.

With θ_s = a_s θ_0 + δ_s and v_s = b_s θ_0 + ν_s (`derivations/momentum.md`, M1–M2),
(a_s, b̂_s = η b_s) follows the λ-only map L̂_λ from (1, 0):

    heavy ball:  b̂' = β b̂ + g a,   a' = a − b̂'                     (g = ηλ)
    Nesterov:    b̂' = β b̂ + g a,   a' = a − (g a + β b̂')

whose eigenvalues r_i = 1 − y_i solve y² − (1 − β + c g) y + g = 0, c = 1 (heavy
ball) or 1 + β (Nesterov) (M5). When both are real and positive (M6),

    a_s = r_1^s + y_1 (1 − c y_2) r_1^{s−1} G(s),   b̂_s = g r_1^{s−1} G(s),
    G(s) = Σ_{j<s} (r_2/r_1)^j,

with y_1 = 2g/(s_y + √disc) and 1 − r_2/r_1 = √disc/(1 − y_1): no difference of
nearby numbers, so a_s keeps its relative precision however small g is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ntk_l2.theory._powers import exp_times, geometric

JArray = jax.Array

# The tail bound B(S) ≤ 2^-53 (M8), as `discrete_time.md` D6b: half an ulp of 1.
TAIL_TOLERANCE = 2.0**-53
# S is searched among whole steps below 2^53 (exact in float64); beyond, it is reported as inf.
MAX_TAIL_START = 2.0**53


class MapSpec(NamedTuple):
    """What fixes the map's structure (static under jit): degree k, momentum β, Nesterov form, N = n·c."""

    degree: int
    momentum: float
    nesterov: bool
    norm: float

    @property
    def c(self) -> float:
        """The gradient's weight in the parameter step: 1 (heavy ball), 1 + β (Nesterov)."""
        return 1.0 + self.momentum if self.nesterov else 1.0

    @property
    def carry(self) -> float:
        """The velocity's weight in the parameter step: β (heavy ball), β² (Nesterov)."""
        return self.momentum**2 if self.nesterov else self.momentum


def positivity_limit(momentum: float, nesterov: bool) -> float:
    """The largest ηλ for which a_s > 0 at every step (M6): (1 − √β)² (heavy ball), ((1 − β)/(1 + β))²
    (Nesterov). At β = 0 both are 1, the plain map's ηλ < 1 (reached only as a strict bound)."""
    if nesterov:
        return ((1.0 - momentum) / (1.0 + momentum)) ** 2
    return (1.0 - momentum**0.5) ** 2


class ScaleRoots(NamedTuple):
    """y_1 ≤ y_2 (r_i = 1 − y_i), log r_1, log(r_2/r_1), 1 − r_2/r_1, and the coefficient of a_s (M5)."""

    g: JArray
    y1: JArray
    y2: JArray
    log_r1: JArray
    log_x: JArray
    one_minus_x: JArray
    lift: JArray  # y_1 (1 − c y_2) = a_1 − r_1 ≥ 0


def scale_roots(g: Any, spec: MapSpec) -> ScaleRoots:
    """The roots of y² − (1 − β + c g) y + g = 0 without cancellation (M5)."""
    g = jnp.asarray(g, jnp.float64)
    if spec.momentum == 0.0:  # r_2 = 0: the plain map, a_s = (1 − g)^s
        one = jnp.ones_like(g)
        return ScaleRoots(g, g, one, jnp.log1p(-g), jnp.full_like(g, -jnp.inf), one, jnp.zeros_like(g))
    beta = spec.momentum
    s_y = 1.0 - beta + spec.c * g
    root = jnp.sqrt(jnp.maximum(s_y * s_y - 4.0 * g, 0.0))  # a double root at the edge of M6
    y1 = 2.0 * g / (s_y + root)
    y2 = s_y - y1
    log_r1 = jnp.log1p(-y1)
    one_minus_x = root / (1.0 - y1)  # 1 − r_2/r_1 = (y_2 − y_1)/(1 − y_1), and y_2 − y_1 = √disc
    return ScaleRoots(g, y1, y2, log_r1, jnp.log1p(-one_minus_x), one_minus_x, y1 * (1.0 - spec.c * y2))


def scale_at(s: Any, roots: ScaleRoots) -> tuple[JArray, JArray]:
    """(a_s, b̂_s) at whole steps s ≥ 0 (M5), broadcast."""
    s = jnp.asarray(s, jnp.float64)
    spread = geometric(s, roots.log_x, roots.one_minus_x)
    before = exp_times(jnp.maximum(s - 1.0, 0.0), roots.log_r1)
    return exp_times(s, roots.log_r1) + roots.lift * before * spread, roots.g * before * spread


def log_scale_at(s: Any, roots: ScaleRoots) -> JArray:
    """log a_s = s log r_1 + log1p(lift·G(s)/r_1): no underflow however large s."""
    s = jnp.asarray(s, jnp.float64)
    spread = geometric(s, roots.log_x, roots.one_minus_x)
    return s * roots.log_r1 + jnp.log1p(roots.lift * spread / jnp.exp(roots.log_r1))


def tail_log_threshold(eta: Any, lam: Any, mu_max: Any, spec: MapSpec) -> JArray:
    """ℓ such that B(S) ≤ 2^-53 ⇔ log a_S ≤ ℓ (M8):

        B(S) = Γ (c η μ_max/(N ω)) a_S^{2(k−1)}/(1 − ω^{2(k−1)}),   ω = a_1 = 1 − c g,
        Γ = 1 + β/((1 − β)(1 − ω^{2(k−1)})),

    a sum of logs, so nothing overflows for subnormal ηλ or huge μ_max.
    """
    k, beta, c = spec.degree, spec.momentum, spec.c
    log_omega = jnp.log1p(-c * eta * lam)
    one_minus_q = -jnp.expm1(2 * (k - 1) * log_omega)
    log_gamma = jnp.log1p(beta / ((1.0 - beta) * one_minus_q))
    excess = (
        jnp.log(c * eta)
        + jnp.log(mu_max)
        - jnp.log(spec.norm)
        - log_omega
        - jnp.log(one_minus_q)
        + log_gamma
        - jnp.log(TAIL_TOLERANCE)
    )
    return -excess / (2 * (k - 1))


def tail_start(eta: Any, lam: Any, mu_max: Any, spec: MapSpec) -> JArray:
    """The first step S with B(S) ≤ 2^-53 (M8), float64 (inf beyond 2^53); 0 when μ_max ≤ 0.

    Only k ≥ 2 with ηλ > 0 has one (the kernel decays as a_s^{2(k−1)}), inf otherwise; a_s is decreasing
    (M6), so S is found by bisection on the closed form of log a_s, 54 halvings of [0, 2^53].
    """
    eta, lam, mu_max = (jnp.asarray(v, jnp.float64) for v in (eta, lam, mu_max))
    if spec.degree < 2:  # the kernel is constant (k = 1) or grows (k = 0): no tail
        return jnp.full(jnp.broadcast_shapes(eta.shape, lam.shape, mu_max.shape), jnp.inf)
    g = eta * lam
    safe_g = jnp.where(g > 0.0, g, 0.5 * positivity_limit(spec.momentum, spec.nesterov))
    roots = scale_roots(safe_g, spec)
    level = tail_log_threshold(eta, jnp.where(g > 0.0, lam, safe_g / eta), jnp.where(mu_max > 0.0, mu_max, 1.0), spec)

    def halve(_, bounds):
        lo, hi = bounds  # log a_lo > level ≥ log a_hi
        mid = jnp.floor(0.5 * (lo + hi))
        below = log_scale_at(mid, roots) <= level
        return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 54, halve, (jnp.float64(0.0), jnp.float64(MAX_TAIL_START)))
    found = jnp.where(level >= 0.0, 0.0, hi)
    found = jnp.where(log_scale_at(MAX_TAIL_START, roots) <= level, found, jnp.inf)
    return jnp.where(mu_max > 0.0, jnp.where(g > 0.0, found, jnp.inf), 0.0)
