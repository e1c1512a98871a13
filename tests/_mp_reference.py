"""High-precision mpmath reference for `ntk_l2.theory.reference.modes.mode_factors`.

A mode obeys dz/dt = −a e^{−bt} (z − y) − d z with b = 2(k − 1) g, d = k g, and
z(t) = D(t) z(0) + R(t) y, where

    A(t) = a (1 − e^{−bt}) / b + d t,    D = e^{−A},
    R(t) = ∫_0^t a e^{−bs} e^{−(A(t) − A(s))} ds.

`mp_mode_factors(a, g, k, t, dps)` returns (D, R/a) as mpf numbers, correct to
about `dps` significant digits for every float64 input (a ≥ 0, g ≥ 0, t ≥ 0).
The float64 inputs are converted to mpf exactly, so the reference is the exact
function at the given floats, not at some nearby decimal values.

Method
------
* b = 0 (g = 0 or k = 1):  D = e^{−(a+d)t},  R/a = −expm1(−(a+d)t) / (a+d).
* k = 0 (b = −2g, d = 0):  U = a expm1(2gt)/(2g),  D = e^{−U},  R/a = −expm1(−U)/a
  (U can reach 10^{300000}; for U > 1e40, D < 10^{−4e39} is returned as exactly 0).
* k ≥ 2, g > 0: with x0 = a/b, L = bt, xt = x0 e^{−L}, U = x0 (1 − e^{−L}) (by
  expm1), p = k / (2(k − 1)) and s = 1 − p ∈ [0, 1/2),

      R = xt^p e^{xt} (Γ(s, xt) − Γ(s, x0)) = G(xt) − e^{−pL−U} G(x0),
      G(x) = x^p e^x Γ(s, x)      (s = 0 exactly when k = 2),

  Γ(s, x) from mpmath.gammainc, except for s > 0 and x < 1 where Γ(s) minus
  the lower-gamma power series is used (mpmath's generic path is slow there).

  G is evaluated from ln x (ln xt = ln x0 − L exactly, however small xt is) and
  the second term's prefactor e^{−pL−U} uses U formed by expm1, so no step
  passes through the absolute error of xt ≈ x0 ~ 1e20 (which e^{xt} would
  amplify). The only loss is the cancellation in the difference when R is
  small relative to G(xt) (small U, or x0 ≪ 1); it is *measured* (bits of G(xt)
  minus bits of R) and the evaluation is repeated with that many extra digits
  until the loss is covered with a 15-digit margin. mpmath's exponent range is
  unbounded, so e^{−1e11}, e^{1e20} etc. neither underflow nor overflow.

Independent checks (series, tanh–sinh quadrature, the ODE itself, closed forms,
dps 50 vs 80) live in `tests/test_modes_reference.py`.
"""

from __future__ import annotations

import math

import mpmath
from mpmath import mp, mpf

__all__ = ["mp_mode_factors", "mp_regime"]

_GUARD_DIGITS = 15  # digits kept beyond `dps` after measured cancellation
_MAX_EXTRA_DIGITS = 4000
_HUGE_EXPONENT = mpf(10) ** 40  # e^{-u} for u beyond this is reported as 0


def _check(a: float, g: float, k: int, t: float) -> None:
    if not (isinstance(k, int) and k >= 0):
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    for name, v in (("a", a), ("g", g), ("t", t)):
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")


def _upper_gamma(s: mpf, x: mpf, log_x: mpf) -> mpf:
    """Γ(s, x) for 0 ≤ s < 1/2, x > 0, at the working precision.

    mpmath's generic path is slow for very small x with s > 0 (its cost grows
    with |log x|, and xt can be 10^{−3e10}); there Γ(s) − γ(s, x) with the
    lower gamma by its power series x^s Σ (−x)^n / (n! (s + n)) converges in a
    few terms and cancels at most ~1 digit (x < 1), covered by 10 guard digits.
    """
    if s == 0 or x >= 1:
        return mpmath.gammainc(s, x)
    with mp.extradps(10):
        tol = mpmath.eps
        total, term, n = mpf(0), mpf(1), 0  # term = (−x)^n / n!
        while True:
            total += term / (s + n)
            n += 1
            term *= -x / n
            if abs(term) < tol * abs(total):
                break
        return mpmath.gamma(s) - mpmath.exp(s * log_x) * total


def _ra_homogeneous(a: float, g: float, k: int, t: float, dps: int) -> mpf:
    """R/a for k ≥ 2, g > 0, t > 0 at `dps` digits (adaptive working precision)."""
    extra = 20
    while True:
        with mp.workdps(dps + extra):
            am, gm, tm = mpf(a), mpf(g), mpf(t)
            b = 2 * (k - 1) * gm
            d = k * gm
            L = b * tm
            if am == 0:
                # a → 0 limit: R/a = ∫_0^t e^{−bs} e^{−d(t−s)} ds = e^{−dt} φ(b − d, t)
                q = b - d  # = (k − 2) g
                span = tm if q == 0 else -mpmath.expm1(-q * tm) / q
                return +(mpmath.exp(-d * tm) * span)
            p = mpf(k) / (2 * (k - 1))
            s = 1 - p  # exactly 0 for k = 2
            x0 = am / b
            lx0 = mpmath.log(x0)
            lxt = lx0 - L
            xt = mpmath.exp(lxt)
            U = x0 * -mpmath.expm1(-L)
            g_t = mpmath.exp(p * lxt + xt) * _upper_gamma(s, xt, lxt)
            g_0 = mpmath.exp(p * lx0 + x0) * _upper_gamma(s, x0, lx0)
            r = g_t - mpmath.exp(-p * L - U) * g_0
            if r > 0:
                lost_digits = (mpmath.mag(g_t) - mpmath.mag(r)) * math.log10(2.0)
                if lost_digits + _GUARD_DIGITS <= extra:
                    return r / am
                extra = int(lost_digits) + _GUARD_DIGITS + 10
            else:  # total cancellation at this precision
                extra *= 2
        if extra > _MAX_EXTRA_DIGITS:  # pragma: no cover - never seen in range
            raise RuntimeError(f"reference did not converge for {(a, g, k, t)}")


def mp_mode_factors(a: float, g: float, k: int, t: float, dps: int = 50) -> tuple[mpf, mpf]:
    """(D(t), R(t)/a) to ~`dps` significant digits, as mpf (never rounded to float)."""
    a, g, t, k = float(a), float(g), float(t), int(k)
    _check(a, g, k, t)
    with mp.workdps(dps + 20):
        am, gm, tm = mpf(a), mpf(g), mpf(t)
        if t == 0.0:
            decay, ra = mpf(1), mpf(0)
        elif g == 0.0 or k == 1:  # b = 0
            rate = am + k * gm
            decay = mpmath.exp(-rate * tm)
            ra = tm if rate == 0 else -mpmath.expm1(-rate * tm) / rate
        elif k == 0:  # b = −2g, d = 0
            span = mpmath.expm1(2 * gm * tm) / (2 * gm)
            u = am * span
            if u > _HUGE_EXPONENT:
                # e^{−u} < 10^{−4e39}: evaluating it would need ~log2(u) bits of
                # argument reduction (u reaches 10^{300000} here); 0 and 1/a are
                # exact to far more than any requested number of digits.
                decay, ra = mpf(0), 1 / am
            else:
                decay = mpmath.exp(-u)
                ra = span if am == 0 else -mpmath.expm1(-u) / am
        else:
            b = 2 * (k - 1) * gm
            L = b * tm
            decay = mpmath.exp(-(am * -mpmath.expm1(-L) / b + k * gm * tm))
            ra = _ra_homogeneous(a, g, k, t, dps)
    with mp.workdps(dps):
        return +decay, +ra


def mp_regime(a: float, g: float, k: int, t: float) -> dict[str, float | str]:
    """x0, xt, U, L (as floats; log10 of xt if it underflows) for diagnostics."""
    out: dict[str, float | str] = {"a": a, "g": g, "k": k, "t": t}
    if g == 0.0 or k == 1:
        out["regime"] = "b = 0 (closed form)"
        return out
    if k == 0:
        out["regime"] = "k = 0 (closed form)"
        out["U"] = float(mpf(a) * mpmath.expm1(2 * mpf(g) * t) / (2 * mpf(g)))
        return out
    with mp.workdps(30):
        b = 2 * (k - 1) * mpf(g)
        L = b * t
        x0 = mpf(a) / b
        xt = x0 * mpmath.exp(-L)
        U = x0 * -mpmath.expm1(-L)
        out.update(x0=float(x0), L=float(L), U=float(U), log10_xt=float(mpmath.log10(xt)) if a else -math.inf)
        if x0 <= 1:
            out["regime"] = "x0 <= 1"
        elif xt >= 1:
            out["regime"] = "xt >= 1, U <= 1" if U <= 1 else "xt >= 1, U > 1"
        else:
            out["regime"] = "xt < 1 < x0"
    return out
