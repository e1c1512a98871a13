"""`mode_factors` against a 50-digit mpmath reference over the physical range: the NumPy
reference (`ntk_l2.theory.reference.modes`) and the JAX implementation (`ntk_l2.theory.modes`),
each held to the same bound.

Per kernel eigenmode, dz/dt = −a e^{−bt} (z − y) − d z with a = ημ/N, g = ηλ,
b = 2(k − 1) g, d = k g, and z(t) = D(t) z(0) + R(t) y. `mode_factors(a, g, k, t)`
returns (D, R/a). The reference (`tests/_mp_reference.py`) evaluates the same
quantities from the incomplete-gamma form with measured-cancellation adaptive
precision; the first group of tests below checks the reference itself against
the definition, closed forms, limits and an independent series.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mpmath import mp, mpf

from ntk_l2.theory import modes as jax_modes
from ntk_l2.theory.reference import modes as reference_modes

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _mp_reference import mp_mode_factors, mp_regime
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._mp_reference import mp_mode_factors, mp_regime

# |x − ref| ≤ RTOL·|ref| + ATOL. The absolute floor: float64's smallest normal
# number is 2.2e-308; below it values are subnormal (fewer significant bits,
# so no 1e-9 relative accuracy is representable) and below 4.9e-324 they flush
# to 0. A true value under ~1e-300 (e.g. D = e^{−A} with A > 690, which is
# routine here: A reaches 1e11) is therefore correctly returned as a tiny
# number or exactly 0, never NaN; 1e-300 leaves a margin for exp/products
# whose intermediate factors already sit at the bottom of the normal range.
RTOL = 1e-9
ATOL = 1e-300


# --------------------------------------------------------------------------
# The reference itself
# --------------------------------------------------------------------------


def _rel(x, y) -> float:
    with mp.workdps(80):
        x, y = mpf(x), mpf(y)
        return float(abs(x - y) / abs(y)) if y else float(abs(x))


def _float64_tol(exponent: float) -> float:
    """Relative error of a float64 closed form e^{−x}: a few ulp, times (1 + x) from rounding x."""
    return 8 * 2.0**-52 * (1.0 + abs(exponent))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("a", [1e-12, 1e-3, 0.7, 40.0])
@pytest.mark.parametrize("t", [1e-3, 1.0, 250.0])
def test_reference_closed_form_b0(a, t, k):
    """k = 1 (any g) and g = 0 (any k): D = e^{−(a+d)t}, R/a = (1 − D)/(a + d), in float64."""
    for g in [0.0, 1e-4, 0.3] if k == 1 else [0.0]:
        rate = a + k * g
        decay, ra = mp_mode_factors(a, g, k, t)
        tol = _float64_tol(rate * t)
        assert _rel(decay, math.exp(-rate * t)) < tol
        assert _rel(ra, -math.expm1(-rate * t) / rate) < tol


@pytest.mark.parametrize("a", [1e-15, 1e-3, 0.7, 40.0])
@pytest.mark.parametrize("t", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize("g", [1e-6, 0.01, 0.3])
def test_reference_closed_form_k0(a, g, t):
    """k = 0: U = a (e^{2gt} − 1)/(2g), D = e^{−U}, R/a = (1 − e^{−U})/a, in float64."""
    u = a * math.expm1(2 * g * t) / (2 * g)
    decay, ra = mp_mode_factors(a, g, 0, t)
    tol = _float64_tol(u) * (1 + 2 * g * t)  # e^{−u} and u ∝ e^{2gt} amplify rounding
    assert _rel(decay, math.exp(-u)) < tol
    assert _rel(ra, -math.expm1(-u) / a) < tol


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("a", [1e-3, 1.0, 50.0])
@pytest.mark.parametrize("t", [0.01, 1.0, 100.0])
def test_reference_homogeneous_tends_to_g0_closed_form(a, t, k):
    """The k ≥ 2 incomplete-gamma path (x0 = a/b ≥ 1e20 here) approaches the g = 0 form."""
    g = 1e-25  # relative distance to the g = 0 values: O(g t (1 + a t)) ≤ 1e-19
    decay, ra = mp_mode_factors(a, g, k, t)
    with mp.workdps(50):
        assert _rel(decay, mpmath.exp(-mpf(a) * t)) < 1e-18
        assert _rel(ra, -mpmath.expm1(-mpf(a) * t) / a) < 1e-18


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("g", [1e-3, 0.5])
@pytest.mark.parametrize("t", [0.01, 3.0, 1e4])
def test_reference_homogeneous_tends_to_a0_limit(g, t, k):
    """x0 → 0: R/a → ∫_0^t e^{−bs} e^{−d(t−s)} ds = e^{−dt} (1 − e^{−(k−2)gt})/((k−2)g)."""
    with mp.workdps(50):
        q = (k - 2) * mpf(g)
        limit = mpmath.exp(-k * mpf(g) * t) * (t if q == 0 else -mpmath.expm1(-q * t) / q)
    _, ra = mp_mode_factors(1e-40, g, k, t)
    assert _rel(ra, limit) < 1e-30
    assert _rel(mp_mode_factors(0.0, g, k, t)[1], limit) < 1e-45


@pytest.mark.parametrize(
    "a, g, k, t",
    [
        (0.3, 0.02, 0, 7.0),
        (2.0, 0.1, 1, 3.0),
        (0.05, 0.01, 2, 40.0),
        (3.0, 0.2, 2, 2.5),
        (1e-4, 0.3, 3, 5.0),
        (7.0, 0.05, 3, 10.0),
        (0.8, 0.4, 4, 1.5),
        (20.0, 0.001, 5, 300.0),
    ],
)
def test_reference_matches_definition_by_quadrature(a, g, k, t):
    """R/a = ∫_0^t e^{−bs} e^{−(A(t)−A(s))} ds and D = e^{−A(t)}, A by its definition."""
    decay, ra = mp_mode_factors(a, g, k, t)
    with mp.workdps(30):
        am, gm = mpf(a), mpf(g)
        b, d = 2 * (k - 1) * gm, k * gm

        def big_a(s):  # A(s) = ∫_0^s (a e^{−bσ} + d) dσ, for b ≠ 0 or b = 0
            return am * (s if b == 0 else -mpmath.expm1(-b * s) / b) + d * s

        at = big_a(mpf(t))
        ra_quad = mpmath.quad(lambda s: mpmath.exp(-b * s - (at - big_a(s))), mpmath.linspace(0, t, 5))
        assert _rel(decay, mpmath.exp(-at)) < 1e-25
        assert _rel(ra, ra_quad) < 1e-25


def _series_ra(a: float, g: float, k: int, t: float, dps: int = 40) -> mpf:
    """Independent R/a for k ≥ 2 and x0 ≤ ~100: termwise integration of e^{−w},

    ∫_{xt}^{x0} w^{−p} e^{−w} dw = Σ_n (−1)^n/n! · x0^{q} (1 − e^{−qL})/q,  q = n + 1 − p
    (the q = 0 term is L), each difference by expm1; the alternating sum cancels
    ≤ e^{2 x0}, covered by extra digits. Valid for any L = bt, however large.
    """
    with mp.workdps(dps + 20):
        b, p = 2 * (k - 1) * mpf(g), mpf(k) / (2 * (k - 1))
        L, x0 = b * t, mpf(a) / b
    with mp.workdps(dps + int(2 * float(x0) / 2.3) + 20):
        total, n, fact = mpf(0), 0, mpf(1)
        while True:
            q = n + 1 - p
            term = (L if q == 0 else x0**q * -mpmath.expm1(-q * L) / q) / fact
            total += -term if n % 2 else term
            if n > x0 and abs(term) < abs(total) * mpf(10) ** (-dps - 10):
                break
            n += 1
            fact *= n
        log_xt = mpmath.log(x0) - L
        return mpmath.exp(p * log_xt + mpmath.exp(log_xt)) * total / a


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize(
    "a, g, t",
    [
        (1e-3, 1e-2, 1e-3),  # x0 small, U ~ 1e-6
        (1e-3, 1e-2, 1e9),  # x0 small, L ~ 1e7, xt ~ 10^{-1e7}
        (0.9, 0.5, 0.3),  # x0 ~ 1
        (30.0, 0.5, 1e-3),  # xt ≈ x0 ≈ 30, U ~ 0.03
        (30.0, 0.5, 2.0),  # xt ~ 1
        (90.0, 0.5, 1e10),  # xt ~ 10^{-4e9} < 1 < x0
    ],
)
def test_reference_matches_independent_series(a, g, k, t):
    assert _rel(mp_mode_factors(a, g, k, t)[1], _series_ra(a, g, k, t)) < 1e-40


_EXTREMES = [
    (1e-21, 10.0, 2, 1e-3),
    (1e-21, 10.0, 5, 1e9),
    (1e6, 1e-12, 2, 1e-3),  # x0 = 5e17, U ~ 1e3
    (1e6, 1e-12, 3, 1e9),
    (1e8, 1e-12, 2, 1e-3),  # x0 = 5e19, U = 1e5
    (1e8, 1e-12, 4, 1e-7),  # x0 ~ 1.7e19, U = 10, L ~ 6e-19
    (1e-3, 1e-12, 3, 1e-3),  # U = 1e-6, both ~ x0 = 2.5e8
    (1e7, 10.0, 5, 1e9),  # x0 ~ 1.2e5, L = 8e10
    (5e-2, 1e-8, 2, 1e9),  # x0 = 2.5e6, L = 20
    (1.0, 0.5, 2, 1.0),  # x0 = 1
    (10.0, 1.0, 0, 1e9),  # k = 0, U ~ 10^(8.7e9)
]


@pytest.mark.parametrize("a, g, k, t", _EXTREMES)
def test_reference_precision_independent(a, g, k, t):
    """50 and 80 requested digits agree to ~50 digits at the extremes (incl. x0 ~ 1e20)."""
    for v50, v80 in zip(mp_mode_factors(a, g, k, t, dps=50), mp_mode_factors(a, g, k, t, dps=80), strict=False):
        assert v50 >= 0 and (v80 == 0 or _rel(v50, v80) < 1e-45)


# --------------------------------------------------------------------------
# The implementation against the reference
# --------------------------------------------------------------------------


class Case(NamedTuple):
    """Physical parameters of one mode; a = ημ/N and g = ηλ are formed in float64."""

    eta: float  # learning rate
    lam: float  # L2 strength λ
    mu: float  # kernel eigenvalue
    n: float  # normalization N (samples × classes)
    k: int  # homogeneity degree
    t: float  # time in steps

    @property
    def a(self) -> float:
        return self.eta * self.mu / self.n

    @property
    def g(self) -> float:
        return self.eta * self.lam


def _log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """10**x with x drawn on [lo, hi] (hypothesis favours the ends and simple values)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda x: 10.0**x)


def _or_zero(strategy: st.SearchStrategy[float], one_in: int) -> st.SearchStrategy[float]:
    """`strategy`, or exactly 0.0 about once in `one_in` draws."""
    return st.integers(1, one_in).flatmap(lambda i: st.just(0.0) if i == 1 else strategy)


@st.composite
def physical_cases(draw: st.DrawFn) -> Case:
    return Case(
        eta=draw(_log_uniform(-4.0, 1.0)),
        lam=draw(_or_zero(_log_uniform(-8.0, 0.0), 10)),
        mu=draw(_log_uniform(-12.0, 6.0)),
        n=float(round(draw(_log_uniform(0.0, 5.0)))),
        k=draw(st.integers(0, 5)),
        t=draw(_or_zero(_log_uniform(-3.0, 9.0), 20)),
    )


_FLOAT_MAX = np.finfo(np.float64).max


def _both(a, g: float, k: int, t) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(D, R/a) from the NumPy reference and from the JAX implementation, as NumPy arrays."""
    return {
        name: tuple(np.asarray(v) for v in impl.mode_factors(a, g, k, t))
        for name, impl in (("numpy", reference_modes), ("jax", jax_modes))
    }


def _check_against_reference(a: float, g: float, k: int, t: float, results: dict[str, tuple]) -> None:
    """Each implementation's (D, R/a) within RTOL·|ref| + ATOL of the 50-digit reference (computed once)."""
    ref = mp_mode_factors(a, g, k, t)
    for impl, (decay, ra) in results.items():
        for name, got, want in (("decay", decay, ref[0]), ("ra", ra, ref[1])):
            got = float(got)
            where = (
                f"{impl} {name}: mode_factors{(a, g, k, t)} = {got!r}, reference {mpmath.nstr(want, 17)}; "
                f"{mp_regime(a, g, k, t)}"
            )
            if want > _FLOAT_MAX:
                # Only for a = 0 with k = 0 (ra = (e^{2gt} − 1)/(2g)), outside the physical
                # range where ra ≤ max(t, 1/a) ≤ 1e21: saturating at the float64 maximum
                # (or +inf) is the only representable answer.
                assert got >= _FLOAT_MAX, where
                continue
            assert math.isfinite(got) and got >= 0.0, where
            with mp.workdps(60):
                err = abs(mpf(got) - want)
                rel = mpmath.nstr(err / want, 3) if want else err
                assert err <= RTOL * abs(want) + ATOL, f"{where}; rel err {rel}"


@pytest.mark.slow
@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(physical_cases())
# largest x0 = μ/(2(k−1)Nλ) = 5e13 (k = 2, p = 1): U = x0 bt tiny … huge
@example(Case(eta=1e-4, lam=1e-8, mu=1e6, n=1.0, k=2, t=1e-3))
@example(Case(eta=1e-4, lam=1e-8, mu=1e6, n=1.0, k=2, t=1e9))
@example(Case(eta=10.0, lam=1e-8, mu=1e6, n=1.0, k=2, t=1e9))  # xt = 5e13 e^{−200}
@example(Case(eta=1e-4, lam=1e-8, mu=1e6, n=1.0, k=3, t=1e9))
# bt = 8e10: x0 moderate (xt = 10^{−3.5e10}) and x0 = 1e-17
@example(Case(eta=10.0, lam=1.0, mu=1e6, n=1.0, k=5, t=1e9))
@example(Case(eta=10.0, lam=1.0, mu=1e-12, n=1e5, k=5, t=1e9))
# smallest a = 1e-21, shortest t
@example(Case(eta=1e-4, lam=1.0, mu=1e-12, n=1e5, k=3, t=1e-3))
@example(Case(eta=1e-4, lam=1e-8, mu=1e-12, n=1e5, k=2, t=1e-3))
# t = 0 exactly
@example(Case(eta=1.0, lam=0.5, mu=2.0, n=1.0, k=2, t=0.0))
@example(Case(eta=1.0, lam=0.0, mu=2.0, n=1.0, k=0, t=0.0))
# k = 2 (p = 1): x0 = 1 exactly, x0 = 50, and xt ≈ U ≈ 1 (x0 = 2, bt = ln 2)
@example(Case(eta=0.5, lam=1.0, mu=2.0, n=1.0, k=2, t=1.0))
@example(Case(eta=1.0, lam=1e-3, mu=1.0, n=10.0, k=2, t=100.0))
@example(Case(eta=1.0, lam=0.5, mu=2.0, n=1.0, k=2, t=math.log(2.0)))
@example(Case(eta=1.0, lam=0.5, mu=2.0, n=1.0, k=4, t=math.log(2.0) / 3))
# xt < 1 < x0 with x0 just above 2, and x0 = 1e3
@example(Case(eta=1.0, lam=0.1, mu=0.41, n=1.0, k=2, t=10.0))
@example(Case(eta=1.0, lam=1e-3, mu=6.0, n=1.0, k=4, t=1e4))
# k = 0: e^{2gt} overflows float64 (U ~ 10^{8.7e9}), and U ~ 1e-21
@example(Case(eta=10.0, lam=1.0, mu=1.0, n=1.0, k=0, t=1e9))
@example(Case(eta=1e-4, lam=1e-8, mu=1e-12, n=1e5, k=0, t=1e-3))
# b = 0: λ = 0 with k = 4, and k = 1 with the largest g
@example(Case(eta=1.0, lam=0.0, mu=1.0, n=1.0, k=4, t=1e9))
@example(Case(eta=10.0, lam=1.0, mu=1e-12, n=1e5, k=1, t=1e9))
def test_mode_factors_match_mp_reference(case: Case) -> None:
    a, g = case.a, case.g
    results = _both(np.float64(a), g, case.k, np.float64(case.t))
    assert all(np.shape(v) == () for pair in results.values() for v in pair)
    _check_against_reference(a, g, case.k, case.t, results)


_GRID_A = np.array([0.0, 1e-21, 1e-12, 1e-6, 1e-3, 0.1, 0.9, 1.0, 3.0, 30.0, 1e3, 1e7])
_GRID_T = np.array([0.0, 1e-3, 0.1, 0.7, 1.0, 10.0, 1e3, 1e5, 1e7, 1e9])


@pytest.mark.parametrize("k", range(6))
@pytest.mark.parametrize("g", [0.0, 1e-12, 1e-5, 1e-2, 0.5, 10.0])
def test_mode_factors_vectorized_mixed_regimes(g, k):
    """One broadcast call (a column × t row) mixing every regime, element by element.

    Wider than the physical range on purpose: a = 0 (R/a is then the a → 0 limit
    e^{−dt} ∫_0^t e^{(d−b)s} ds) and a = 1e7 with g = 1e-12, i.e. x0 = a/b up to
    5e18 (the physical bound is μ/(2(k−1)Nλ) ≤ 5e13; the module docstring of
    `modes.py` allows for 1e20).
    """
    results = {}
    for name, impl in (("numpy", reference_modes), ("jax", jax_modes)):
        try:
            results[name] = tuple(np.asarray(v) for v in impl.mode_factors(_GRID_A[:, None], g, k, _GRID_T[None, :]))
        except Exception as exc:  # noqa: BLE001 - name the raising elements, with their regime
            raising = []
            for a in _GRID_A:
                for t in _GRID_T:
                    try:
                        impl.mode_factors(a, g, k, t)
                    except Exception as one:  # noqa: BLE001
                        raising.append(f"{(float(a), g, k, float(t))}: {one!r}; {mp_regime(float(a), g, k, float(t))}")
            pytest.fail(f"{name}: {exc!r} from the broadcast call; raising elements:\n" + "\n".join(raising))
    for decay, ra in results.values():
        assert decay.shape == ra.shape == (_GRID_A.size, _GRID_T.size)
    for i, a in enumerate(_GRID_A):
        for j, t in enumerate(_GRID_T):
            pairs = {name: (d[i, j], r[i, j]) for name, (d, r) in results.items()}
            _check_against_reference(float(a), g, k, float(t), pairs)
