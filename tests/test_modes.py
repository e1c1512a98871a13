"""Laws and limits of the per-mode solution (derivations/continuous_time.md, C4–C5).

The 50-digit reference comparison lives in tests/test_modes_reference.py; these
are the structural properties: exact special cases, continuity across the
regimes of the evaluation, and the defining ODE.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntk_l2.theory.modes import carry_factor, mode_factors, phi, psi, scaled_upper_gamma

log_uniform = lambda lo, hi: st.floats(lo, hi).map(lambda e: 10.0**e)  # noqa: E731


def test_time_zero_is_identity():
    a = np.logspace(-12, 6, 50)
    for k in range(6):
        decay, ra = mode_factors(a, 1e-3, k, 0.0)
        assert np.all(decay == 1.0) and np.all(ra == 0.0)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(a=log_uniform(-10, 4), t=log_uniform(-2, 6), k=st.integers(0, 5))
def test_lambda_zero_is_plain_gradient_flow(a, t, k):
    """λ = 0: D = e^{−at}, R/a = (1 − e^{−at})/a for every degree."""
    decay, ra = mode_factors(a, 0.0, k, t)
    assert decay == pytest.approx(np.exp(-a * t), rel=1e-14, abs=1e-300)
    assert ra == pytest.approx(-np.expm1(-a * t) / a, rel=1e-13)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(a=log_uniform(-8, 3), g=log_uniform(-8, -1), t=log_uniform(-1, 5), k=st.integers(2, 5))
def test_solves_the_mode_equation(a, g, k, t):
    """z(t) = D z0 + R y satisfies dz/dt = −a e^{−bt}(z − y) − d z (central difference)."""
    b, d = 2 * (k - 1) * g, k * g

    def z(time):
        decay, ra = mode_factors(a, g, k, time)
        return decay * 0.7 + a * ra * (-1.3)

    h = 1e-4 * t
    derivative = (z(t + h) - z(t - h)) / (2 * h)
    expected = -a * np.exp(-b * t) * (z(t) + 1.3) - d * z(t)
    scale = abs(a * np.exp(-b * t)) * (abs(z(t)) + 1.3) + d * abs(z(t))
    # Truncation error of the difference quotient, O(h² z'''), is below
    # 1e-8·scale·((a+b+d)t)²; round-off of z (~1e-15 relative) divided by 2h adds to it.
    truncation = 1e-6 * scale * max(1.0, (a + b + d) * t) ** 2
    roundoff = 1e-14 * (abs(z(t)) + 1.3) / h
    assert abs(derivative - expected) <= truncation + roundoff


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("boundary", ["x0", "xt", "U"])
def test_continuous_across_evaluation_regimes(k, boundary):
    """Values just below and above each regime boundary (x0 = 1, xt = 1, U = 1) agree."""
    g = 1e-3
    b = 2 * (k - 1) * g
    for eps in (1e-7, 1e-10):
        if boundary == "x0":  # x0 = a/b = 1
            a_lo, a_hi, t_lo, t_hi = b * (1 - eps), b * (1 + eps), 50.0, 50.0
        elif boundary == "xt":  # xt = x0 e^{−bt} = 1 with x0 = 5
            a_lo = a_hi = 5 * b
            t_star = np.log(5) / b
            t_lo, t_hi = t_star * (1 - eps), t_star * (1 + eps)
        else:  # U = x0(1 − e^{−bt}) = 1 with x0 = 40 (so xt > 1)
            a_lo = a_hi = 40 * b
            t_star = -np.log1p(-1 / 40) / b
            t_lo, t_hi = t_star * (1 - eps), t_star * (1 + eps)
        lo = mode_factors(a_lo, g, k, t_lo)
        hi = mode_factors(a_hi, g, k, t_hi)
        for x, y in zip(lo, hi):
            assert x == pytest.approx(y, rel=20 * eps + 1e-12)


def test_helpers_exact_values():
    assert psi(0.0) == 1.0 and psi(1e-300) == 1.0
    assert phi(0.0, 3.0) == 3.0 and phi(2.0, np.inf) == 0.5
    assert phi(1e-320, 2.0) == 2.0  # q·t underflows: the limit t, not 0
    # G(x) for p = 1 is x e^x E1(x): at x = 1, e·E1(1) = 0.5963473623231940743...
    assert scaled_upper_gamma(np.array([1.0]), 1.0)[0] == pytest.approx(0.5963473623231940743, rel=1e-14)
    # G(x) → 1 − p/x + p(p+1)/x² for large x
    x = 1e4
    assert scaled_upper_gamma(np.array([x]), 0.75)[0] == pytest.approx(1 - 0.75 / x + 0.75 * 1.75 / x**2, rel=1e-11)


def test_carry_factor_limits():
    """q = (e^{−dt} − D)/a: tends to e^{−dt} φ(b, t) as a → 0, equals R/a for k = 0."""
    g, t = 1e-3, 200.0
    for k in (2, 3):
        b = 2 * (k - 1) * g
        assert carry_factor(1e-300, g, k, t) == pytest.approx(np.exp(-k * g * t) * -np.expm1(-b * t) / b, rel=1e-14)
    a = np.logspace(-6, 2, 9)
    assert np.allclose(carry_factor(a, g, 0, t), mode_factors(a, g, 0, t)[1], rtol=1e-14, atol=0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="degree"):
        mode_factors(1.0, 0.1, -1, 1.0)
    with pytest.raises(ValueError, match="times"):
        mode_factors(1.0, 0.1, 2, -1.0)
    with pytest.raises(ValueError, match="mode rates"):
        mode_factors(-1.0, 0.1, 2, 1.0)
