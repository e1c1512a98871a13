"""Laws and limits of the per-mode solution (derivations/continuous_time.md, C4–C5, C10).

The 50-digit reference comparison lives in tests/test_modes_reference.py; these
are the structural properties: exact special cases, continuity across the
regimes of the evaluation, and the defining ODE. Each holds for the JAX modes
(`ntk_l2.theory.modes`) and for the NumPy reference (`ntk_l2.theory.reference.modes`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntk_l2.theory import modes as jax_modes
from ntk_l2.theory.reference import modes as reference_modes

IMPLEMENTATIONS = [pytest.param(jax_modes, id="jax"), pytest.param(reference_modes, id="reference")]
log_uniform = lambda lo, hi: st.floats(lo, hi).map(lambda e: 10.0**e)  # noqa: E731


def _factors(impl, a, g, k, t) -> tuple[np.ndarray, np.ndarray]:
    """(D, R/a) of one implementation as NumPy arrays."""
    decay, ra = impl.mode_factors(a, g, k, t)
    return np.asarray(decay), np.asarray(ra)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_time_zero_is_identity(impl):
    a = np.logspace(-12, 6, 50)
    for k in range(6):
        decay, ra = _factors(impl, a, 1e-3, k, 0.0)
        assert np.all(decay == 1.0) and np.all(ra == 0.0)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(a=log_uniform(-10, 4), t=log_uniform(-2, 6), k=st.integers(0, 5))
def test_lambda_zero_is_plain_gradient_flow(impl, a, t, k):
    """λ = 0: D = e^{−at}, R/a = (1 − e^{−at})/a for every degree."""
    decay, ra = _factors(impl, a, 0.0, k, t)
    assert decay == pytest.approx(np.exp(-a * t), rel=1e-14, abs=1e-300)
    assert ra == pytest.approx(-np.expm1(-a * t) / a, rel=1e-13)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(a=log_uniform(-8, 3), g=log_uniform(-8, -1), t=log_uniform(-1, 5), k=st.integers(2, 5))
def test_solves_the_mode_equation(impl, a, g, k, t):
    """z(t) = D z0 + R y satisfies dz/dt = −a e^{−bt}(z − y) − d z (central difference)."""
    b, d = 2 * (k - 1) * g, k * g

    def z(time):
        decay, ra = _factors(impl, a, g, k, time)
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


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("boundary", ["x0", "xt", "U", "bt"])
def test_continuous_across_evaluation_regimes(impl, k, boundary):
    """Values just below and above each regime boundary (x0 = 1, xt = 1, U = 1, and the JAX
    evaluation's bt = ln 2 inside regime A, C10) agree."""
    g = 1e-3
    b = 2 * (k - 1) * g
    for eps in (1e-7, 1e-10):
        if boundary == "x0":  # x0 = a/b = 1
            a_lo, a_hi, t_lo, t_hi = b * (1 - eps), b * (1 + eps), 50.0, 50.0
        elif boundary == "xt":  # xt = x0 e^{−bt} = 1 with x0 = 5
            a_lo = a_hi = 5 * b
            t_star = np.log(5) / b
            t_lo, t_hi = t_star * (1 - eps), t_star * (1 + eps)
        elif boundary == "bt":  # bt = ln 2 with x0 = 1/2: A_Q (quadrature) | A (series)
            a_lo = a_hi = 0.5 * b
            t_lo, t_hi = np.log(2) / b * (1 - eps), np.log(2) / b * (1 + eps)
        else:  # U = x0(1 − e^{−bt}) = 1 with x0 = 40 (so xt > 1)
            a_lo = a_hi = 40 * b
            t_star = -np.log1p(-1 / 40) / b
            t_lo, t_hi = t_star * (1 - eps), t_star * (1 + eps)
        lo = _factors(impl, a_lo, g, k, t_lo)
        hi = _factors(impl, a_hi, g, k, t_hi)
        for x, y in zip(lo, hi, strict=False):
            assert x == pytest.approx(y, rel=20 * eps + 1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_helpers_exact_values(impl):
    psi, phi, gamma = impl.psi, impl.phi, impl.scaled_upper_gamma
    assert float(psi(0.0)) == 1.0 and float(psi(1e-300)) == 1.0
    assert float(phi(0.0, 3.0)) == 3.0 and float(phi(2.0, np.inf)) == 0.5
    assert float(phi(1e-320, 2.0)) == 2.0  # q·t underflows: the limit t, not 0
    # G(x) for p = 1 is x e^x E1(x): at x = 1, e·E1(1) = 0.5963473623231940743...
    assert float(gamma(np.array([1.0]), 1.0)[0]) == pytest.approx(0.5963473623231940743, rel=1e-14)
    # G(x) → 1 − p/x + p(p+1)/x² for large x
    x = 1e4
    assert float(gamma(np.array([x]), 0.75)[0]) == pytest.approx(1 - 0.75 / x + 0.75 * 1.75 / x**2, rel=1e-11)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_carry_factor_limits(impl):
    """q = (e^{−dt} − D)/a: tends to e^{−dt} φ(b, t) as a → 0, equals R/a for k = 0."""
    g, t = 1e-3, 200.0
    for k in (2, 3):
        b = 2 * (k - 1) * g
        limit = np.exp(-k * g * t) * -np.expm1(-b * t) / b
        assert float(impl.carry_factor(1e-300, g, k, t)) == pytest.approx(limit, rel=1e-14)
    a = np.logspace(-6, 2, 9)
    assert np.allclose(impl.carry_factor(a, g, 0, t), _factors(impl, a, g, 0, t)[1], rtol=1e-14, atol=0)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_invalid_arguments(impl):
    with pytest.raises(ValueError, match="degree"):
        impl.mode_factors(1.0, 0.1, -1, 1.0)
    with pytest.raises(ValueError, match="times"):
        impl.mode_factors(1.0, 0.1, 2, -1.0)
    with pytest.raises(ValueError, match="mode rates"):
        impl.mode_factors(-1.0, 0.1, 2, 1.0)
    with pytest.raises(ValueError, match="l2: learning_rate \\* l2 = 1e-310 is too small"):
        impl.mode_factors(1.0, 1e-310, 2, 1.0)
