"""Per-eigenmode solution of gradient flow with L2 for a homogeneous network.

In the eigenbasis of Θ_0 every mode of the training outputs obeys
(`derivations/continuous_time.md`, eq. C3)

    dz/dt = −a e^{−bt} (z − y) − d z,
    a = η μ / N,   g = η λ,   b = 2 (k − 1) g,   d = k g,

whose solution is z(t) = D(t) z(0) + R(t) y with

    A(t) = a (1 − e^{−bt}) / b + d t,      D(t) = e^{−A(t)},
    R(t) = ∫_0^t a e^{−bs} e^{−(A(t) − A(s))} ds.

For k ≥ 2 and g > 0, with x0 = a/b, xt = x0 e^{−bt}, U = x0 − xt and
p = k / (2(k − 1)) ∈ (1/2, 1],

    R = ∫_0^U e^{−u} (1 + u/xt)^{−p} du = xt^p e^{xt} ∫_{xt}^{x0} w^{−p} e^{−w} dw,

an incomplete gamma function whose textbook form overflows through e^{xt}
(x0 = μ/(2(k−1)Nλ) reaches 5e13 in the physical range). `mode_factors` evaluates it in four
regimes, each free of overflow and of cancellation (derivation, section 4):

    A   x0 ≤ 1         convergent series with expm1-differences per term
    B1  xt ≥ 1, U ≤ 1  20-point Gauss–Legendre on the smooth u-integral
    B2  xt ≥ 1, U > 1  R = G(xt) − D G(x0),  G(x) = x^p e^x Γ(1 − p, x) ∈ (0, 1]
                       by a continued fraction (no exponential prefactor)
    C   xt < 1 < x0    split at w = 1: series on [xt, 1] + quadrature or G on [1, x0]

k = 1 or λ = 0 (b = 0) and k = 0 (b < 0, d = 0) have elementary closed forms.
Checked against a 50-digit mpmath reference in `tests/test_modes_reference.py`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

_SERIES_TERMS = 24  # x0 ≤ 1: the n-th term is below 1/n!, 1/24! ≈ 1.6e-24
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_CF_MAX_ITER = 1000
_CF_EPS = 4.5e-16  # two ulps of 1: a smaller bound may never be met in float64


def psi(x: ArrayLike) -> Array:
    """ψ(x) = (1 − e^{−x}) / x, with ψ(0) = 1; accurate for all real x."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.where(x == 0.0, 1.0, x)
    with np.errstate(over="ignore"):
        return np.where(x == 0.0, 1.0, -np.expm1(-safe) / safe)


def phi(q: ArrayLike, t: ArrayLike) -> Array:
    """φ(q, t) = ∫_0^t e^{−q s} ds = (1 − e^{−qt}) / q, with φ(0, t) = t and φ(q>0, ∞) = 1/q."""
    q = np.asarray(q, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        qt = q * t
        trivial = (q == 0.0) | (qt == 0.0)
        return np.where(trivial, t, -np.expm1(-qt) / np.where(trivial, 1.0, q))


def scaled_upper_gamma(x: Array, p: float) -> Array:
    """G(x) = x^p e^x Γ(1 − p, x) = ∫_0^∞ e^{−v} (1 + v/x)^{−p} dv, for x ≥ 1.

    Modified Lentz evaluation of the continued fraction
    Γ(s, x) = e^{−x} x^s / (x + 1 − s − 1(1 − s)/(x + 3 − s − 2(2 − s)/…)),
    s = 1 − p, so that G(x) = x · CF(x) carries no exponential prefactor.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    s = 1.0 - p
    tiny = 1e-300
    idx = np.arange(x.size)
    xv = x.ravel().copy()
    bb = xv + 1.0 - s
    c = np.full_like(xv, 1.0 / tiny)
    d = 1.0 / bb
    h = d.copy()
    flat = out.ravel()
    for i in range(1, _CF_MAX_ITER + 1):
        an = -i * (i - s)
        bb = bb + 2.0
        d = an * d + bb
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = bb + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        done = np.abs(delta - 1.0) < _CF_EPS
        if done.any():
            flat[idx[done]] = xv[done] * h[done]
            keep = ~done
            idx, xv, bb, c, d, h = idx[keep], xv[keep], bb[keep], c[keep], d[keep], h[keep]
            if idx.size == 0:
                break
    if idx.size:  # pragma: no cover - the fraction converges for x ≥ 1
        raise RuntimeError("continued fraction for the incomplete gamma did not converge")
    return flat.reshape(x.shape)


def _series_ratio(x_hi: Array, length: Array, p: float) -> Array:
    """Σ_n (−1)^n x_hi^n φ(n + 1 − p, L) / n! = x_hi^{p−1} ∫_{x_hi e^{−L}}^{x_hi} w^{−p} e^{−w} dw / x_hi^0.

    Exactly: ∫_{x_lo}^{x_hi} w^{−p} e^{−w} dw = x_hi^{1−p} · (this sum), x_lo = x_hi e^{−L};
    each difference x_hi^q − x_lo^q = x_hi^q (1 − e^{−qL}) is formed by expm1.
    For x_hi ≤ 1 the alternating sum is well conditioned (condition number ≤ e²).
    """
    total = np.zeros_like(x_hi)
    power = np.ones_like(x_hi)
    factorial = 1.0
    for n in range(_SERIES_TERMS):
        if n:
            power = power * x_hi
            factorial *= n
        total = total + ((-1.0) ** n / factorial) * power * phi(n + 1.0 - p, length)
    return total


def _gauss_legendre(f, lo: Array, hi: Array) -> Array:
    """∫_lo^hi f(w) dw by 20-point Gauss–Legendre, vectorized over the limits."""
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    nodes = mid[..., None] + half[..., None] * _GL_NODES
    return half * np.sum(_GL_WEIGHTS * f(nodes), axis=-1)


def _response_homogeneous(a: Array, g: float, k: int, t: Array) -> Array:
    """R/a for k ≥ 2, g > 0 (regimes A, B1, B2, C of the module docstring)."""
    b = 2.0 * (k - 1) * g
    p = k / (2.0 * (k - 1))
    x0 = a / b
    length = b * t  # L = bt
    xt = x0 * np.exp(-length)
    u_total = x0 * -np.expm1(-length)  # U = x0 − xt without cancellation
    r_over_x0 = np.zeros_like(a)

    m = x0 <= 1.0  # regime A
    if m.any():
        r_over_x0[m] = np.exp(xt[m] - p * length[m]) * _series_ratio(x0[m], length[m], p)

    m = (x0 > 1.0) & (xt >= 1.0) & (u_total <= 1.0)  # regime B1
    if m.any():
        xm = xt[m]
        integral = _gauss_legendre(
            lambda u: np.exp(-u) * (1.0 + u / xm[:, None]) ** (-p), np.zeros_like(xm), u_total[m]
        )
        r_over_x0[m] = integral / x0[m]

    m = (x0 > 1.0) & (xt >= 1.0) & (u_total > 1.0)  # regime B2
    if m.any():
        decay = np.exp(-(u_total[m] + p * length[m]))
        r = scaled_upper_gamma(xt[m], p) - decay * scaled_upper_gamma(x0[m], p)
        r_over_x0[m] = r / x0[m]

    m = (x0 > 1.0) & (xt < 1.0)  # regime C
    if m.any():
        x0m = x0[m]
        log_inv_xt = length[m] - np.log(x0m)  # −ln xt, exact even when xt underflows
        lower = _series_ratio(np.ones_like(x0m), log_inv_xt, p)  # ∫_{xt}^1 w^{−p}e^{−w}dw
        upper = np.empty_like(x0m)
        near = x0m <= 2.0
        if near.any():
            upper[near] = _gauss_legendre(lambda w: w ** (-p) * np.exp(-w), np.ones(near.sum()), x0m[near])
        far = ~near
        if far.any():
            xf = x0m[far]
            g_one = scaled_upper_gamma(np.ones(1), p)[0]
            upper[far] = np.exp(-1.0) * g_one - np.exp(-xf) * xf ** (-p) * scaled_upper_gamma(xf, p)
        xt_m = np.exp(-log_inv_xt)
        r_over_x0[m] = np.exp(xt_m - p * log_inv_xt) * (lower + upper) / x0m
    return r_over_x0 / b


def _validate(a: Array, g: float, k: int, t: Array) -> None:
    if not (isinstance(k, (int, np.integer)) and k >= 0):
        raise ValueError(f"degree must be an integer >= 0, got {k!r}")
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"learning_rate * l2 must be finite and >= 0, got {g!r}")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("mode rates a = learning_rate * eigenvalue / N must be finite and >= 0")
    if np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError("times must be >= 0 and not NaN")
    with np.errstate(over="ignore"):
        x0_max = np.max(a) / (2.0 * (k - 1) * g) if g > 0 and k >= 2 and a.size else 0.0
    if not x0_max < 1e300:
        raise ValueError(
            f"l2: learning_rate * l2 = {g:.3g} is too small for the closed form (x0 = a/(2(k-1)ηλ) "
            f"overflows); use l2 = 0, the same prediction for t << 1/(learning_rate * l2)"
        )


def mode_factors(a: ArrayLike, g: float, k: int, t: ArrayLike) -> tuple[Array, Array]:
    """Decay D(t) = e^{−A(t)} and response per rate R(t)/a of every mode.

    Implements eq. C3–C5 of `derivations/continuous_time.md`:
    z(t) = D z(0) + a (R/a) y for dz/dt = −a e^{−bt}(z − y) − d z.

    Args:
      a: mode rates η μ / N (≥ 0), any shape broadcastable with ``t``.
      g: η λ ≥ 0.
      k: homogeneity degree (integer ≥ 0).
      t: times in steps (≥ 0).

    Returns:
      ``(decay, ra)``, both of the broadcast shape, finite and ≥ 0.
    """
    a_arr, t_arr = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(t, np.float64))
    g = float(g)
    _validate(a_arr, g, k, t_arr)
    a_f, t_f = a_arr.ravel().copy(), t_arr.ravel().copy()
    at_infinity = np.isinf(t_f)
    t_f[at_infinity] = 0.0
    if g == 0.0 or k == 1:  # b = 0: constant kernel
        rate = a_f + k * g
        decay = np.exp(-rate * t_f)
        ra = phi(rate, t_f)
    elif k == 0:  # b = −2g < 0, d = 0: growing kernel, no output decay
        rate = a_f
        with np.errstate(over="ignore"):
            # U / a = (e^{2gt} − 1) / (2g); capped at the largest float where it overflows
            span = np.minimum(phi(-2.0 * g, t_f), np.finfo(np.float64).max)
            u_total = a_f * span
            decay = np.exp(-u_total)
            small = u_total < 1.0
            ra = np.where(
                small,
                span * psi(np.where(small, u_total, 0.0)),
                -np.expm1(-u_total) / np.where(a_f > 0, a_f, 1.0),
            )
    else:
        rate = np.zeros_like(a_f)  # t → ∞: everything decays to 0
        b = 2.0 * (k - 1) * g
        u_total = a_f * phi(b, t_f)
        decay = np.exp(-(u_total + k * g * t_f))
        ra = _response_homogeneous(a_f, g, k, t_f)
    if at_infinity.any():  # limits; a zero-rate mode contributes 0 (pseudo-inverse convention)
        positive = rate[at_infinity] > 0
        decay[at_infinity] = np.where(positive, 0.0, 1.0 if k < 2 or g == 0.0 else 0.0)
        with np.errstate(over="ignore"):  # a subnormal rate: 1/a = inf, refused where it reaches an output
            ra[at_infinity] = np.where(positive, 1.0 / np.where(positive, rate[at_infinity], 1.0), 0.0)
    shape = a_arr.shape
    return decay.reshape(shape), ra.reshape(shape)


def output_decay(g: float, k: int, t: ArrayLike) -> Array:
    """e^{−kηλt}, the decay of the outputs' initial component (C6), with its t → ∞ limit.

    ``g`` = ηλ; at t = ∞ the factor is 0 when kg > 0 and 1 otherwise.
    """
    t = np.asarray(t, dtype=np.float64)
    finite = np.where(np.isinf(t), 0.0, t)
    return np.where(np.isinf(t) & (k * g > 0), 0.0, np.exp(-k * g * finite))


def carry_factor(a: ArrayLike, g: float, k: int, t: ArrayLike) -> Array:
    """qa(t) = (e^{−dt} − D(t)) / a = e^{−dt} (1 − e^{−U}) / a, U = a φ(b, t).

    The coefficient of z(0) in (z(t) − e^{−dt} z(0)) / a, which carries the
    training modes into the test outputs (`derivations/continuous_time.md`, C6).
    Finite as a → 0, where it tends to e^{−dt} φ(b, t).
    """
    a_arr, t_arr = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(t, np.float64))
    _validate(a_arr, float(g), k, t_arr)
    b = 2.0 * (k - 1) * g if k != 1 else 0.0
    d = k * g
    t_arr = np.array(t_arr, dtype=np.float64)
    at_infinity = np.isinf(t_arr)
    t_arr[at_infinity] = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.minimum(phi(b, t_arr), np.finfo(np.float64).max)
        u_total = a_arr * span
        small = u_total < 1.0
        body = np.where(
            small,
            span * psi(np.where(small, u_total, 0.0)),
            -np.expm1(-u_total) / np.where(a_arr > 0, a_arr, 1.0),
        )
    out = np.exp(-d * t_arr) * body
    if at_infinity.any():  # e^{−dt} → 0 for d > 0; else (1 − e^{−U∞})/a = 1/a (0 for a = 0)
        a_inf = a_arr[at_infinity]
        with np.errstate(over="ignore"):
            limit = np.where(a_inf > 0, 1.0 / np.where(a_inf > 0, a_inf, 1.0), 0.0)
        out[at_infinity] = 0.0 if d > 0 else limit
    return out
