"""Per-eigenmode solution of gradient flow with L2, in JAX (jit, vmap, grad, jacfwd).

In the eigenbasis of Θ_0 every mode of the training outputs obeys
(`derivations/continuous_time.md`, eq. C3)

    dz/dt = −a e^{−bt} (z − y) − d z,
    a = η μ / N,   g = η λ,   b = 2 (k − 1) g,   d = k g,

with solution z(t) = D(t) z(0) + R(t) y (C4–C5). For k ≥ 2 and g > 0, R is an incomplete
gamma function, evaluated without overflow in the four regimes of section 4 of the
derivation, with the boundaries of the NumPy reference `ntk_l2.theory.reference.modes`:

    A   x0 ≤ 1         convergent series, each difference x0^q − xt^q as x0^q (1 − e^{−qL}) by φ
    B1  xt ≥ 1, U ≤ 1  20-point Gauss–Legendre on the smooth u-integral
    B2  xt ≥ 1, U > 1  R = G(xt) − D G(x0),  G(x) = x^p e^x Γ(1 − p, x),
                       G by a continued fraction (a `lax.while_loop`)
    C   xt < 1 < x0    split at w = 1: series on [xt, 1] + quadrature or G on [1, x0]

JAX evaluation (C9–C10): R/a is formed directly (never as (R/x0)/b, whose g-derivative cancels)
with U = a φ(b, t); the part of A with bt ≤ ln 2 (A_Q) uses B1's quadrature in u = U s.
Every regime is computed with ``jnp.where`` on safe inputs ("double where": an
unselected element gets a value inside the regime, so neither its value nor its derivative
is NaN), inside a `lax.cond` that skips it when no element falls in it (concrete inputs: the
regimes are classified first and the absent ones left out before tracing). G and the series
carry `jax.custom_jvp` derivatives (C9, C10a): ``grad``/``jacfwd`` never differentiate a
loop. Python ``if`` branches only on the integer k and on concrete values: a concrete g
picks its closed form (b = 0, k = 0 or homogeneous); a traced g computes the b = 0 and
homogeneous forms and selects.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntk_l2.theory import _engine
from ntk_l2.theory._elementary import _dpsi, _f64, _phi, _psi, phi, psi  # noqa: F401 (phi, psi: public here)
from ntk_l2.theory._gamma import _g_one, _scaled_upper_gamma, scaled_upper_gamma  # noqa: F401 (public here)

JArray = jax.Array

_SERIES_TERMS = 24  # x0 ≤ 1: the n-th term is below 1/n!, 1/24! ≈ 1.6e-24
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_NORMAL_MIN = float(np.finfo(np.float64).tiny)  # XLA flushes subnormal numbers to 0 on CPU
_X0_MAX = 1e300  # x0 = a/b beyond this is refused (concrete) or taken at its b → 0 limit (traced)
_EXP_MAX = 709.0  # e^x overflows float64 for x > 709.78
_FLOAT_MAX = float(np.finfo(np.float64).max)
_U_MAX = 1e300
_SAFE_G_ARG = 1e10  # argument of G where its value is not used: the fraction converges at once
_LN2 = float(np.log(2.0))
# Regimes of section 4, with A split by how it is evaluated: A_Q (bt ≤ ln 2) by B1's quadrature (C10)
REGIMES = (A, A_Q, B1, B2, C) = (0, 1, 2, 3, 4)
_SERIES_COEFFICIENTS = np.array([(-1.0) ** n / math.factorial(n) for n in range(_SERIES_TERMS)])


def _series_scan(x: JArray, p: float, scale: JArray, length: JArray, derivatives: bool) -> tuple[JArray, ...]:
    """S = Σ_n c_n x^n φ(q_n·scale, L), q_n = n + 1 − p, c_n = (−1)^n/n!, 24 terms by a `lax.scan`; with
    ``derivatives`` also ∂S/∂x, ∂S/∂scale and ∂S/∂L, summed term by term in the same loop (C10a)."""
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(scale), jnp.shape(length))

    def term(carry, n_coefficient):
        n, c = n_coefficient
        q = n + 1.0 - p
        sums, power, dpower = carry  # x^n and n x^{n−1}
        exponent = q * scale * length
        new = [sums[0] + c * power * length * _psi(exponent)]
        if derivatives:
            new += [
                sums[1] + c * dpower * length * _psi(exponent),
                sums[2] + c * power * q * length**2 * _dpsi(exponent),
                sums[3] + c * power * jnp.exp(-exponent),
            ]
        return (tuple(new), power * x, dpower * x + power), None

    zeros = tuple(jnp.zeros(shape) for _ in range(4 if derivatives else 1))
    terms = (jnp.arange(_SERIES_TERMS, dtype=jnp.float64), jnp.asarray(_SERIES_COEFFICIENTS))
    (sums, _, _), _ = lax.scan(term, (zeros, jnp.ones(shape), jnp.zeros(shape)), terms, unroll=4)
    return sums


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _series(x: JArray, p: float, scale: JArray, length: JArray) -> JArray:
    """Σ_n (−1)^n x^n φ((n + 1 − p)·scale, L) / n! over 24 terms (regime A's series, C5 section 4).

    With scale = 1 it is x^{p−1} ∫_{x e^{−L}}^{x} w^{−p} e^{−w} dw. Differentiated by its term-wise
    derivatives (C10), one forward scan, so reverse mode never transposes the loop.
    """
    return _series_scan(x, p, scale, length, False)[0]


@_series.defjvp
def _series_jvp(p: float, primals: tuple[JArray, ...], tangents: tuple[JArray, ...]) -> tuple[JArray, JArray]:
    value, d_x, d_scale, d_length = _series_scan(*primals[:1], p, *primals[1:], True)
    dx, dscale, dlength = tangents
    return value, d_x * dx + d_scale * dscale + d_length * dlength


def _gauss_legendre(log_f, lo: JArray, hi: JArray) -> JArray:
    """∫_lo^hi exp(log_f(w)) dw by 20-point Gauss–Legendre, vectorized over the limits."""
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    nodes = mid[..., None] + half[..., None] * _GL_NODES
    return half * jnp.sum(_GL_WEIGHTS * jnp.exp(log_f(nodes)), axis=-1)


def _geometry(a: JArray, g: Any, k: int, t: JArray) -> tuple[JArray, ...]:
    """b, x0 = a/b, xt = x0 e^{−bt}, U = a φ(b, t) (= x0 − xt; C10: well-conditioned derivatives), k ≥ 2."""
    b = 2.0 * (k - 1) * g
    x0 = a / b
    return b, x0, x0 * jnp.exp(-b * t), a * _phi(b, t)


def _classify(b: JArray, x0: JArray, xt: JArray, u_total: JArray, t: JArray) -> JArray:
    """The regime A, A_Q, B1, B2 or C of every element (int8)."""
    small_x0 = jnp.where(b * t <= _LN2, A_Q, A)
    large_x0 = jnp.where(xt >= 1.0, jnp.where(u_total <= 1.0, B1, B2), C)
    return jnp.where(x0 <= 1.0, small_x0, large_x0).astype(jnp.int8)


def _when(flag: JArray, compute, otherwise: JArray, known: bool | None) -> JArray:
    """``compute()`` if ``flag`` else ``otherwise``: by Python when the answer is ``known`` before tracing,
    else by `lax.cond` (under vmap both run, selected elementwise). XLA runs the body of a `lax.cond`
    on one thread, so a known answer halves the time on two cores."""
    if known is not None:
        return compute() if known else otherwise
    return lax.cond(flag, lambda _: compute(), lambda o: o, otherwise)


Present = tuple[bool, bool, bool, bool]  # some element in A / in A_Q or B1 / in B2 / in C


@partial(jax.jit, static_argnames=("k",))
def _regimes(a: JArray, g: Any, t: JArray, *, k: int) -> JArray:
    """The regime of every (time, mode) element of the homogeneous branch (t = ∞ classified at t = 0)."""
    tf = jnp.where(jnp.isinf(t), 0.0, t)
    return _classify(*_geometry(a, g, k, tf), tf)


def _present(regime: Any) -> Present:  # from the regime of every element
    counts = np.bincount(np.asarray(regime, np.int64).ravel(), minlength=len(REGIMES))
    return bool(counts[A]), bool(counts[A_Q] + counts[B1]), bool(counts[B2]), bool(counts[C])


def _response_homogeneous(
    a: JArray, g: Any, k: int, t: JArray, regime: JArray | None = None, present: Present | None = None
) -> JArray:
    """R/a for k ≥ 2, g > 0, t finite (C5; regimes A, A_Q, B1, B2, C, each only if some element is in it).

    R/a is formed directly, never as (R/x0)/b, whose derivatives in g would cancel (C10).
    Regimes A and C share one series loop. A ``regime`` array classified beforehand (`_regimes`) and
    the ``present`` flags read from it decide which regimes are computed before tracing.
    """
    p = k / (2.0 * (k - 1))
    b, x0, xt, u_total = _geometry(a, g, k, t)
    regime = _classify(b, x0, xt, u_total, t) if regime is None else regime
    has_a, has_q, has_b2, has_c = (None,) * 4 if present is None else present
    either = None if present is None else (has_b2 or has_c, has_a or has_c)
    in_a, in_q, in_b2, in_c = regime == A, (regime == A_Q) | (regime == B1), regime == B2, regime == C
    a_safe = jnp.where(in_a, 1.0, a)  # a > 0 outside regime A
    x0a = jnp.where(x0 <= 1.0, x0, 0.5)  # regime A is per mode
    x0c = jnp.where(x0 > 1.0, x0, 3.0)  # regime C is x0 > 1
    log_inv_xt = jnp.where(in_c, b * t - jnp.log(x0c), 1.0)  # C: ln(1/xt), exact when xt underflows
    zeros = jnp.zeros(regime.shape)

    def series():  # A: Σ (−1)^n x0^n φ((n+1−p) b, t)/n!;  C: Σ (−1)^n φ(n+1−p, ln(1/xt))/n! (∫_{xt}^1)
        x_hi, scale, length = jnp.where(in_a, x0a, 1.0), jnp.where(in_a, b, 1.0), jnp.where(in_a, t, log_inv_xt)
        return _series(x_hi, p, scale, length)

    def quadrature():  # C10b: R/a = φ(b, t) ∫_0^1 e^{−Us} (1 + s (e^{bt} − 1))^{−p} ds
        um, lq = jnp.where(in_q, u_total, 0.5), jnp.where(in_q, b * t, 0.5)  # safe: e^{bt} overflows elsewhere
        grow = lq * _psi(-lq)
        integral = _gauss_legendre(
            lambda s: -um[..., None] * s - p * jnp.log1p(s * grow[..., None]), jnp.zeros_like(um), jnp.ones_like(um)
        )
        return _phi(b, t) * integral

    x0g, xtg = jnp.where(x0 >= 1.0, x0, _SAFE_G_ARG), jnp.where(in_b2, xt, _SAFE_G_ARG)
    g_x0 = _when(
        jnp.any(in_b2 | in_c),
        lambda: _scaled_upper_gamma(x0g, p),
        jnp.ones(x0.shape),
        None if either is None else either[0],
    )
    g_xt = _when(jnp.any(in_b2), lambda: _scaled_upper_gamma(xtg, p), zeros, has_b2)
    sums = _when(jnp.any(in_a | in_c), series, zeros, None if either is None else either[1])
    out = jnp.where(in_q, _when(jnp.any(in_q), quadrature, zeros, has_q), 0.0)
    out = jnp.where(in_a, jnp.exp(x0a * jnp.exp(-b * t) - k * g * t) * sums, out)
    out = jnp.where(in_b2, (g_xt - jnp.exp(-(u_total + k * g * t)) * g_x0) / a_safe, out)  # (G(xt) − D G(x0))/a
    # C: xt^p e^{xt} (∫_{xt}^1 + ∫_1^{x0}) w^{−p} e^{−w} dw / a; ∫_1^{x0} per mode, by quadrature for x0 ≤ 2
    near = x0c <= 2.0
    x_near, x_far = jnp.where(near, x0c, 1.5), jnp.where(near, 3.0, x0c)
    quad = _gauss_legendre(lambda w: -w - p * jnp.log(w), jnp.ones_like(x_near), x_near)
    far = jnp.exp(-1.0) * _g_one(p) - jnp.exp(-x_far - p * jnp.log(x_far)) * g_x0
    upper = jnp.where(near, quad, far)
    return jnp.where(in_c, jnp.exp(jnp.exp(-log_inv_xt) - p * log_inv_xt) * (sums + upper) / a_safe, out)


def _span_response(a: JArray, b: Any, t: JArray) -> tuple[JArray, JArray, JArray]:
    """φ(b, t) capped at the largest float, U = a φ(b, t) (capped at 1e300: e^{−U} = 0 either way), and
    (1 − e^{−U})/a (ψ form for U < 1). Caps by `jnp.where`, whose derivative selects (min's multiplies: 0·inf)."""
    negative = b < 0.0  # k = 0: e^{−bt} or φ = (e^{−bt} − 1)/(−b) overflows where either exponent passes 709
    growth = -b * t
    over = negative & (jnp.maximum(growth, growth - jnp.log(jnp.where(negative, -b, 1.0))) > _EXP_MAX)
    span = jnp.where(over, _FLOAT_MAX, _phi(b, jnp.where(over, 0.0, t)))
    u_total = jnp.where(a * span >= _U_MAX, _U_MAX, a * span)
    small = u_total < 1.0
    body = jnp.where(
        small,
        span * _psi(jnp.where(small, u_total, 0.0)),
        (1.0 - jnp.exp(-u_total)) / jnp.where(small | (a <= 0.0), 1.0, a),
    )
    return span, u_total, body


def _limit(rate: JArray, vanishes: Any) -> tuple[JArray, JArray]:
    """(D, R/a) at t = ∞: (0, 1/rate) for rate > 0; else (0 if ``vanishes`` else 1, 0) (pseudo-inverse)."""
    positive = rate > 0.0
    return jnp.where(positive | vanishes, 0.0, 1.0), jnp.where(positive, 1.0 / jnp.where(positive, rate, 1.0), 0.0)


@partial(jax.jit, static_argnames=("k", "branch", "present"))
def _mode_factors(
    a: JArray, g: Any, t: JArray, regime: JArray | None = None, *, k: int, branch: str, present: Present | None = None
) -> tuple[JArray, JArray]:
    """(D, R/a) of one branch: "b0" (b = 0), "k0", "homogeneous" (k ≥ 2, g > 0), "traced" (k ≥ 2, any g).

    "homogeneous" takes the ``regime`` of every element and the ``present`` flags when known beforehand."""
    at_infinity = jnp.isinf(t)
    tf = jnp.where(at_infinity, 0.0, t)
    d = k * g
    if branch == "b0":
        rate = a + d
        decay, ra = jnp.exp(-rate * tf), _phi(rate, tf)
        decay_inf, ra_inf = _limit(rate, False)
    elif branch == "k0":
        _, u_total, ra = _span_response(a, -2.0 * g, tf)
        decay = jnp.exp(-u_total)
        decay_inf, ra_inf = _limit(a, False)
    else:
        b = 2.0 * (k - 1) * g
        decay = jnp.exp(-(a * _phi(b, tf) + d * tf))  # C4, valid for g = 0 too
        if branch == "homogeneous":
            ra = _response_homogeneous(a, g, k, tf, regime, present)
            decay_inf, ra_inf = _limit(jnp.zeros(()), True)
        else:  # g = 0, or x0 beyond 1e300 (b → 0 limit, error O(bt·at)): the b = 0 form
            homogeneous = (g > 0.0) & (a < b * _X0_MAX)
            ra_h = _response_homogeneous(jnp.where(homogeneous, a, 0.0), jnp.where(g > 0.0, g, 1.0), k, tf)
            ra = jnp.where(homogeneous, ra_h, _phi(a + d, tf))
            decay_inf, ra_inf = _limit(jnp.where(g > 0.0, 0.0, a), g > 0.0)
    shape = jnp.broadcast_shapes(a.shape, t.shape)
    return (
        jnp.broadcast_to(jnp.where(at_infinity, decay_inf, decay), shape),
        jnp.broadcast_to(jnp.where(at_infinity, ra_inf, ra), shape),
    )


def _validate(a: Any, g: Any, k: Any, t: Any) -> None:
    """The reference's checks, on whichever of a, g, t are concrete (traced values cannot be inspected)."""
    if not (isinstance(k, (int, np.integer)) and k >= 0):
        raise ValueError(f"degree must be an integer >= 0, got {k!r}")
    g_value = _engine.concrete(g)
    a_value, t_value = (None if _engine.is_traced(v) else np.asarray(v, np.float64) for v in (a, t))
    if g_value is not None and not (np.isfinite(g_value) and g_value >= 0):
        raise ValueError(f"learning_rate * l2 must be finite and >= 0, got {g_value!r}")
    if a_value is not None and not np.all(np.isfinite(a_value) & (a_value >= 0)):
        raise ValueError("mode rates a = learning_rate * eigenvalue / N must be finite and >= 0")
    if t_value is not None and (np.any(np.isnan(t_value)) or np.any(t_value < 0)):
        raise ValueError("times must be >= 0 and not NaN")
    if g_value and k >= 2 and (g_value < _NORMAL_MIN or (a_value is not None and not _fits(a_value, g_value, k))):
        raise ValueError(
            f"l2: learning_rate * l2 = {g_value:.3g} is too small for the closed form (x0 = a/(2(k-1)"
            f"ηλ) overflows, or ηλ is subnormal, which XLA reads as 0); use l2 = 0, the same prediction "
            f"for t << 1/(learning_rate * l2)"
        )


def _fits(a: np.ndarray, g: float, k: int) -> bool:
    """x0 = a/(2(k−1)g) stays below 1e300 for every mode (no modes: nothing overflows)."""
    with np.errstate(over="ignore"):
        return not a.size or bool(np.max(a) / (2.0 * (k - 1) * g) < _X0_MAX)


def _branch(g: Any, k: int) -> str:
    g_value = _engine.concrete(g)
    if k == 1 or g_value == 0.0:
        return "b0"
    if k == 0:
        return "k0"
    return "traced" if g_value is None else "homogeneous"


def mode_factors(a: Any, g: Any, k: int, t: Any) -> tuple[JArray, JArray]:
    """Decay D(t) = e^{−A(t)} and response per rate R(t)/a of every mode (float64 jax arrays).

    Implements eq. C3–C5 of `derivations/continuous_time.md` (JAX evaluation: C9–C10):
    z(t) = D z(0) + a (R/a) y for dz/dt = −a e^{−bt}(z − y) − d z.

    Args:
      a: mode rates η μ / N (≥ 0), any shape broadcastable with ``t``.
      g: η λ ≥ 0 (a Python number or a traced scalar).
      k: homogeneity degree (integer ≥ 0).
      t: times in steps (≥ 0; ``inf`` gives the t → ∞ limit).

    Returns:
      ``(decay, ra)``, both of the broadcast shape, finite and ≥ 0. Derivatives (C10) are finite while
      x0/g < 1e308; at g = 0 exactly (traced, k ≥ 2) that of R/a in g is the b = 0 form's.
    """
    _validate(a, g, k, t)
    branch = _branch(g, int(k))
    with _engine.float64(a, g, t):
        a, g, t = _f64(a), _f64(g), _f64(t)
        if branch == "homogeneous" and not _engine.is_traced(a, t):  # regimes known: skip the absent ones
            regime = _regimes(a, g, t, k=int(k))
            return _mode_factors(a, g, t, regime, k=int(k), branch=branch, present=_present(regime))
        return _mode_factors(a, g, t, k=int(k), branch=branch)


def output_decay(g: Any, k: int, t: Any) -> JArray:
    """e^{−kηλt}, the decay of the outputs' initial component (C6), with its t → ∞ limit.

    ``g`` = ηλ; at t = ∞ the factor is 0 when kg > 0 and 1 otherwise.
    """
    with _engine.float64(g, t):
        g, t = _f64(g), _f64(t)
        at_infinity = jnp.isinf(t)
        return jnp.where(at_infinity & (k * g > 0.0), 0.0, jnp.exp(-k * g * jnp.where(at_infinity, 0.0, t)))


@partial(jax.jit, static_argnames=("k",))
def _carry_factor(a: JArray, g: Any, t: JArray, *, k: int) -> JArray:
    b = 2.0 * (k - 1) * g if k != 1 else jnp.zeros(())
    d = k * g
    at_infinity = jnp.isinf(t)
    tf = jnp.where(at_infinity, 0.0, t)
    _, _, body = _span_response(a, b, tf)
    # t → ∞: e^{−dt} → 0 for d > 0; else (1 − e^{−U∞})/a = 1/a (0 for a = 0)
    limit = jnp.where(d > 0.0, 0.0, _limit(a, False)[1])
    out = jnp.where(at_infinity, limit, jnp.exp(-d * tf) * body)
    return jnp.broadcast_to(out, jnp.broadcast_shapes(a.shape, t.shape))


def carry_factor(a: Any, g: Any, k: int, t: Any) -> JArray:
    """qa(t) = (e^{−dt} − D(t)) / a = e^{−dt} (1 − e^{−U}) / a, U = a φ(b, t).

    The coefficient of z(0) in (z(t) − e^{−dt} z(0)) / a, which carries the training modes into
    the test outputs (`derivations/continuous_time.md`, C6). Finite as a → 0 (→ e^{−dt} φ(b, t)).
    """
    _validate(a, g, k, t)
    with _engine.float64(a, g, t):
        return _carry_factor(_f64(a), _f64(g), _f64(t), k=int(k))
