"""Momentum flow with L2 at infinite width (derivations/momentum_flow.md, MF1–MF7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import enable_x64
from scipy.integrate import solve_ivp

from conftest import make_problem, relative_error
from ntk_l2.theory.momentum_flow import first_zero
from ntk_l2.theory.momentum_flow import gradient_descent_mse_l2_momentum as momentum_flow
from ntk_l2.theory.reference.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.schedules import PiecewiseConstant

# Integration bound: the solver runs Dormand–Prince at rtol 1e-10, atol 1e-12 (local, RMS over the state). On
# these damped problems the global error stays within ~1x the local tolerance: measured ≤ 4.9e-11 in every
# comparison below, and 1.0e-10 for n = 12 up to t = 400. The references are accurate to ~1e-13 (DOP853 at
# rtol 1e-12 agrees with Radau at 1e-12 to 4e-13). 1e-9 is 10x the worst measured.
INTEGRATION_BOUND = 1e-9


def _pieces(p, k_test_train=None):
    return p.fx_train_0, p.fx_test_0, p.k_test_train if k_test_train is None else k_test_train


def function_space_reference(p, eta, lam, k, beta, times, jumps=()):
    """MF2–MF3 in the original basis, f_X and f_* with their velocities: (a, b, F, G, F_*, G_*) where
    f = a^k f_0 + a^{k−1} F, f_* = a^k f_*(0) + a^{k−1} F_*; DOP853 at rtol 1e-12, restarted at ``jumps``."""
    K, Kx, Y, f0, fs0 = p.k_train_train, p.k_test_train, p.y_train, p.fx_train_0, p.fx_test_0
    (n, c), m, N, g = Y.shape, Kx.shape[0], Y.size, 1.0 - beta
    cut = np.cumsum([n * c, n * c, m * c])

    def rhs(t, s):
        e, l = eta(t), lam(t)
        a, b = s[0], s[1]
        F, G, Fs, Gs = (x.reshape(-1, c) for x in np.split(s[2:], cut))
        r = a ** (k - 1) * (a**k * f0 + a ** (k - 1) * F - Y) / N
        return np.concatenate(
            [
                [-e * b, -g * b + l * a],
                (-e * G).ravel(),
                (-g * G + l * F + K @ r).ravel(),
                (-e * Gs).ravel(),
                (-g * Gs + l * Fs + Kx @ r).ravel(),
            ]
        )

    state, out = np.concatenate([[1.0, 0.0], np.zeros(2 * (n + m) * c)]), {0.0: None}
    out[0.0] = state
    edges = [0.0] + [j for j in jumps if 0 < j < max(times)] + [max(times)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        t_eval = np.unique(np.append(times[(times > lo) & (times <= hi)], hi))
        sol = solve_ivp(rhs, (lo, hi), state, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=t_eval)
        out.update(zip(sol.t, sol.y.T, strict=False))
        state = sol.y[:, -1]
    fx, fs = [], []
    for t in times:
        a, rest = out[t][0], np.split(out[t][2:], cut)
        fx.append(a**k * f0 + a ** (k - 1) * rest[0].reshape(n, c))
        fs.append(a**k * fs0 + a ** (k - 1) * rest[2].reshape(m, c))
    return np.array(fx), np.array(fs)


# ---- 1. λ = 0 is neural-tangents' momentum ODE (MF5) -------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_lambda_zero_matches_neural_tangents(beta):
    """nt.predict.gradient_descent(loss, ..., momentum=β) with loss = ½Σ(f−y)²/y.size; its t is in steps too
    (it integrates in τ = √η t internally). Its odeint runs at its default rtol = atol = 1.4e-8, so ~1e-8-1e-7
    is its own error (measured 6e-8); 1e-6 is the bound asked of the comparison."""
    p = make_problem(n=12, m=5, c=2)
    eta, times = 0.7, np.array([0.0, 0.5, 3.0, 30.0, 200.0])
    fx, fs = momentum_flow(p.k_train_train, p.y_train, eta, 0.0, 3, momentum=beta)(times, *_pieces(p))
    with enable_x64():
        loss = lambda f, y: 0.5 * jnp.sum((f - y) ** 2) / y.size  # noqa: E731
        predict = nt.predict.gradient_descent(
            loss, jnp.asarray(p.k_train_train), jnp.asarray(p.y_train), eta, momentum=beta
        )
        gx, gs = predict(jnp.asarray(times), *(jnp.asarray(x) for x in _pieces(p)))
    assert relative_error(fx, gx) <= 1e-6
    assert relative_error(fs, gs) <= 1e-6


def test_time_rescaling_is_exact():
    """MF5: (η, γ, t) → (c²η, cγ, t/c) leaves the flow unchanged (the reason NT integrates in √η t)."""
    p = make_problem(n=8, m=3, c=2)
    eta, beta, lam, k, c = 0.5, 0.8, 2e-3, 2, 2.5
    times = np.array([1.0, 10.0, 60.0])
    a = momentum_flow(p.k_train_train, p.y_train, eta, lam, k, momentum=beta)(times, *_pieces(p))
    b = momentum_flow(p.k_train_train, p.y_train, c * c * eta, lam, k, momentum=1 - c * (1 - beta))(
        times / c, *_pieces(p)
    )
    for x, y in zip(a, b, strict=False):
        assert relative_error(x, y) <= INTEGRATION_BOUND


# ---- 2. λ > 0 and schedules against a high-accuracy integration (MF2–MF4, MF7) ---------------------------


def _smooth_eta(t, xp=jnp):
    return 0.3 + 0.2 * xp.exp(-t / 50.0)


def _smooth_l2(t, xp=jnp):
    return 3e-3 * (1.0 + xp.sin(t / 20.0))


PIECEWISE_ETA = PiecewiseConstant((40.0, 90.0), (0.5, 0.25, 0.15))
PIECEWISE_L2 = PiecewiseConstant((60.0,), (2e-3, 6e-3))
# (η, λ for the solver; the same as float64 NumPy functions for the reference; jump times)
SCHEDULES = {
    "piecewise": (PIECEWISE_ETA, PIECEWISE_L2, PIECEWISE_ETA, PIECEWISE_L2, (40.0, 60.0, 90.0)),
    "smooth": (_smooth_eta, _smooth_l2, lambda t: _smooth_eta(t, np), lambda t: _smooth_l2(t, np), ()),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_matches_high_accuracy_integration(k, schedule):
    """k ∈ {0, 1, 2, 3} with λ > 0 and schedules: the per-mode system against MF2–MF3 integrated in the
    original basis by DOP853 at rtol 1e-12 (restarted at the jumps); ≤ 1e-9 (INTEGRATION_BOUND)."""
    p = make_problem(n=6, m=3, c=2, seed=k)
    eta, lam, eta_np, lam_np, jumps = SCHEDULES[schedule]
    times = np.array([0.0, 0.5, 7.3, 40.0, 75.0, 120.0])
    fx, fs = momentum_flow(p.k_train_train, p.y_train, eta, lam, k, momentum=0.8)(times, *_pieces(p))
    rx, rs = function_space_reference(p, eta_np, lam_np, k, 0.8, times, jumps)
    assert relative_error(fx, rx) <= INTEGRATION_BOUND
    assert relative_error(fs, rs) <= INTEGRATION_BOUND


def test_k1_matches_parameter_space_momentum_flow():
    """k = 1: a linear model f = Jθ (J the features behind the kernel, Θ = JJᵀ) trained by MF1 itself in
    parameter space, v' = −γv + Jᵀ(f − Y)/N + λθ, θ' = −ηv, with no scale decomposition; ≤ 1e-9."""
    n, m, c, beta, eta, lam = 6, 3, 2, 0.7, 0.8, 0.02
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(n + m, 14)) / np.sqrt(14)
    J, Jx = feats[:n], feats[n:]
    theta0, Y = rng.normal(size=(14, c)), rng.normal(size=(n, c))
    times = np.array([0.0, 3.0, 25.0, 80.0])

    def rhs(t, s):
        th, v = s[: 14 * c].reshape(14, c), s[14 * c :].reshape(14, c)
        return np.concatenate([(-eta * v).ravel(), (-(1 - beta) * v + J.T @ (J @ th - Y) / (n * c) + lam * th).ravel()])

    sol = solve_ivp(
        rhs,
        (0, times[-1]),
        np.concatenate([theta0.ravel(), np.zeros(14 * c)]),
        method="DOP853",
        rtol=1e-12,
        atol=1e-14,
        t_eval=times,
    )
    thetas = sol.y[: 14 * c].T.reshape(-1, 14, c)
    fx, fs = momentum_flow(J @ J.T, Y, eta, lam, 1, momentum=beta)(times, J @ theta0, Jx @ theta0, Jx @ J.T)
    assert relative_error(fx, J @ thetas) <= INTEGRATION_BOUND
    assert relative_error(fs, Jx @ thetas) <= INTEGRATION_BOUND


# ---- 3. limits (MF6) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_large_friction_approaches_gradient_flow(beta):
    """MF6: with ε = η μ_max/(N γ²) small the momentum flow is gradient flow at rate η/γ = η/(1 − β). At
    λ = 0 every mode obeys sup_t |h(t) − e^{−ω²t/γ}| ≤ ε_i ≤ ε_max, so ‖f − f_GF‖_F ≤ ε_max ‖f_0 − Y‖_F at
    every t (measured 0.45 of it), plus the integration error. The error is first order: halving η at
    fixed slow time ηt/γ halves it, for λ = 0 and for λ > 0 with k = 2 (measured ratio 0.498 and 0.495;
    asserted within 0.5 ± 0.05)."""
    p = make_problem(n=8, m=3, c=2)
    gamma, N = 1.0 - beta, p.y_train.size
    mu_max = np.linalg.eigvalsh(p.k_train_train)[-1]
    slow_times = np.array([0.5, 2.0, 8.0, 30.0, 120.0])  # ηt/γ
    for lam in [0.0, 0.02]:
        errors = []
        for eta in [0.1 * gamma**2, 0.05 * gamma**2]:  # the same ε for both frictions
            times = slow_times * gamma / eta
            fx = momentum_flow(p.k_train_train, p.y_train, eta, lam, 2, momentum=beta)(times, p.fx_train_0)
            gf = gradient_descent_mse_l2(p.k_train_train, p.y_train, eta / gamma, lam, 2)(times, p.fx_train_0)
            errors.append(np.sqrt(np.sum((np.asarray(fx) - gf) ** 2, axis=(1, 2))))
            if lam == 0.0:
                eps = eta * mu_max / (N * gamma**2)
                assert np.all(errors[-1] <= eps * np.linalg.norm(p.fx_train_0 - p.y_train) + INTEGRATION_BOUND)
        ratio = np.max(errors[1]) / np.max(errors[0])
        assert abs(ratio - 0.5) <= 0.05, (lam, ratio)


def test_frictionless_limit_is_undamped_oscillation():
    """MF6: β → 1 at λ = 0: z − y = h(t)(z_0 − y) with h → cos(ω t), ω² = ημ/N. For γ = 1 − β,
    |h − cos ωt| ≤ γt/2 + γ/(2Ω) + |Ω − ω| t ≤ γ(t/2 + 1/ω_min) (Ω² = ω² − γ²/4, γ ≪ ω_min)."""
    p = make_problem(n=6, m=3, c=1)
    gamma, eta = 1e-7, 1.0
    evals, evecs = np.linalg.eigh(p.k_train_train)
    omega = np.sqrt(eta * evals / p.y_train.size)
    times = np.array([1.0, 10.0, 50.0])
    fx = np.asarray(momentum_flow(p.k_train_train, p.y_train, eta, 0.0, 2, momentum=1 - gamma)(times, p.fx_train_0))
    z0y = evecs.T @ (p.fx_train_0 - p.y_train)
    expected = p.y_train + np.einsum("ij,tj,jc->tic", evecs, np.cos(np.outer(times, omega)), z0y)
    bound = gamma * (times / 2 + 1 / omega.min()) * np.abs(z0y).sum() + INTEGRATION_BOUND
    assert np.all(np.max(np.abs(fx - expected), axis=(1, 2)) <= bound)


def test_k1_late_time_is_kernel_ridge_regression():
    """MF6: k = 1, λ > 0 (overdamped scale, γ² ≥ 4ηλ): a → 0 and f_* → Θ_*X(Θ + NλI)⁻¹Y whatever f_0.
    The slowest rate is ≥ ηλ/γ = 0.02, so at t = 3000 the remainder is < e^{−50}: only integration error."""
    p = make_problem(n=8, m=3, c=2)
    eta, lam, beta = 1.0, 0.01, 0.5
    fx, fs = momentum_flow(p.k_train_train, p.y_train, eta, lam, 1, momentum=beta)(3000.0, *_pieces(p))
    N = p.y_train.size
    ridge = np.linalg.solve(p.k_train_train + N * lam * np.eye(8), p.y_train)
    assert relative_error(fx, p.k_train_train @ ridge) <= INTEGRATION_BOUND
    assert relative_error(fs, p.k_test_train @ ridge) <= INTEGRATION_BOUND


def test_lambda_zero_late_time_is_kernel_regression():
    """MF6: λ = 0: z → y, f_* → f_*(0) + Θ_*X Θ⁻¹(Y − f_0). Slowest rate ≈ η μ_min/(Nγ) ≥ 0.03 here:
    t = 3000 leaves < e^{−90}."""
    p = make_problem(n=8, m=3, c=2)
    eta, beta = 2.0, 0.5
    mu_min = np.linalg.eigvalsh(p.k_train_train)[0]
    assert eta * mu_min / (p.y_train.size * (1 - beta)) * 3000 > 90
    fx, fs = momentum_flow(p.k_train_train, p.y_train, eta, 0.0, 2, momentum=beta)(3000.0, *_pieces(p))
    expected = p.fx_test_0 + p.k_test_train @ np.linalg.solve(p.k_train_train, p.y_train - p.fx_train_0)
    assert relative_error(fx, p.y_train) <= INTEGRATION_BOUND
    assert relative_error(fs, expected) <= INTEGRATION_BOUND


# ---- 4. transformations, layouts, times, validation ----------------------------------------------------------


def test_jit_matches_eager():
    """The same compiled integration either way: ≤ 1e-12."""
    p = make_problem(n=6, m=3, c=2)
    times = np.array([0.0, 5.0, 40.0])
    eager = momentum_flow(p.k_train_train, p.y_train, 0.5, 3e-3, 2, momentum=0.8)(times, *_pieces(p))
    with enable_x64():
        jitted = jax.jit(
            lambda lam, t: momentum_flow(p.k_train_train, p.y_train, 0.5, lam, 2, momentum=0.8)(t, *_pieces(p))
        )(3e-3, times)
    for a, b in zip(eager, jitted, strict=False):
        assert relative_error(b, a) <= 1e-12


def test_grad_matches_finite_differences():
    """jax.grad (odeint's adjoint) w.r.t. λ and η against central differences, both at rtol 1e-12.
    Central differences with relative step h = 1e-4 have truncation error ~h² f'''/6 (measured 5e-8 relative
    for η, scaling as h²), and the integrator's error, not smooth in the parameters, adds ~1e-13/h = 1e-9:
    ≤ 1e-6 relative. Compared as Python floats (float32 arithmetic outside x64 would hide the difference)."""
    p = make_problem(n=6, m=3, c=2)
    times = np.array([10.0, 60.0])
    weights = np.random.default_rng(1).normal(size=(2, 3, 2))

    def objective(eta, lam):
        fn = momentum_flow(p.k_train_train, p.y_train, eta, lam, 2, momentum=0.8, rtol=1e-12, atol=1e-14)
        return jnp.sum(weights * fn(times, *_pieces(p))[1])

    eta, lam, h = 0.5, 4e-3, 1e-4
    with enable_x64():
        g_eta, g_lam = (float(g) for g in jax.grad(objective, argnums=(0, 1))(eta, lam))
        fd_eta = float(objective(eta * (1 + h), lam) - objective(eta * (1 - h), lam)) / (2 * h * eta)
        fd_lam = float(objective(eta, lam * (1 + h)) - objective(eta, lam * (1 - h))) / (2 * h * lam)
    assert abs(g_eta - fd_eta) <= 1e-6 * abs(fd_eta)  # measured 5.3e-8 (the h² truncation: 5.5e-6 at h = 1e-3)
    assert abs(g_lam - fd_lam) <= 1e-6 * abs(fd_lam)  # measured 1.3e-9


def test_vmap_over_l2_and_times_equals_separate_calls():
    """vmap batches the while loop; every member keeps its own step sequence: ≤ 1e-12."""
    p = make_problem(n=6, m=3, c=2)
    lams = np.array([0.0, 2e-3, 8e-3])
    times = np.array([[1.0, 30.0], [70.0, 2.5], [0.0, 12.0]])

    def run(lam, t):
        return momentum_flow(p.k_train_train, p.y_train, 0.5, lam, 3, momentum=0.7)(t, *_pieces(p))

    with enable_x64():
        batched = jax.vmap(run)(lams, times)
    for i in range(3):
        for a, b in zip(run(lams[i], times[i]), batched, strict=False):
            assert relative_error(np.asarray(b)[i], a) <= 1e-12  # index in NumPy: float64 outside x64


def test_output_kernel_layout():
    """An (n, n, c, c) kernel Θ ⊗ I equals the (n, n) kernel. Θ ⊗ I has c copies of each mode, so the step
    sequence (chosen on the RMS error of the whole state) differs: INTEGRATION_BOUND."""
    p = make_problem(n=6, m=3, c=2)
    eye = np.eye(2)
    full = np.einsum("ij,ab->ijab", p.k_train_train, eye)
    cross = np.einsum("ij,ab->ijab", p.k_test_train, eye)
    args = (0.4, PiecewiseConstant((30.0,), (1e-3, 4e-3)), 2)
    times = np.array([3.0, 50.0])
    a = momentum_flow(p.k_train_train, p.y_train, *args)(times, *_pieces(p))
    b = momentum_flow(full, p.y_train, *args)(times, *_pieces(p, cross))
    for x, y in zip(b, a, strict=False):
        assert np.shape(x) == np.shape(y)
        assert relative_error(x, y) <= INTEGRATION_BOUND


SMALL = make_problem(n=5, m=2, c=1, seed=7)
SMALL_FN = momentum_flow(SMALL.k_train_train, SMALL.y_train, 0.5, 2e-3, 2, momentum=0.8)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 3.0, 17.5, 40.0]), min_size=4, max_size=4))
def test_unsorted_and_repeated_times(times):
    """Any order, repeats allowed: each row equals the scalar call at that time, ≤ 1e-12. The steps do not
    depend on the output times (they are interpolated), and a repeat moves a time by ~2 ulps (measured 7e-16)."""
    out = SMALL_FN(np.array(times), SMALL.fx_train_0)
    for t, row in zip(times, out, strict=False):
        assert relative_error(row, SMALL_FN(t, SMALL.fx_train_0)) <= 1e-12


@pytest.mark.parametrize(
    "kwargs, t, message",
    [
        ({"momentum": 1.0}, 1.0, "momentum:"),
        ({"momentum": -0.1}, 1.0, "momentum:"),
        ({}, np.inf, "t:"),
        ({}, None, "t:"),
        ({}, -1.0, "t:"),
        ({}, np.nan, "t:"),
        ({"max_steps": 50}, 1e4, "t:"),
    ],
)
def test_invalid_inputs_one_line(kwargs, t, message):
    with pytest.raises(ValueError) as err:
        momentum_flow(SMALL.k_train_train, SMALL.y_train, 0.5, 2e-3, 2, **kwargs)(t, SMALL.fx_train_0)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_weight_scale_reaching_zero_is_refused():
    """MF2: ηλ > γ²/4 makes a(t) oscillate; a degree-2 network cannot follow a past 0 (refused, exactly for
    constant rates, even when every requested time has a > 0), degree 1 can. first_zero against a dense
    solution of a'' + γa' + ω²a = 0 in all four regimes."""
    eta, lam, beta = 1.0, 0.1, 0.9
    t_zero = first_zero(1.0, 0.0, 1 - beta, eta * lam)
    times = np.array([1.0, 2 * np.pi / np.sqrt(eta * lam - 0.0025)])  # a > 0 at both, a < 0 in between
    with pytest.raises(ValueError, match=r"^l2: .*reaches 0 at t = ") as err:
        momentum_flow(SMALL.k_train_train, SMALL.y_train, eta, lam, 2, momentum=beta)(times, SMALL.fx_train_0)
    assert f"{t_zero:.6g}" in str(err.value)
    momentum_flow(SMALL.k_train_train, SMALL.y_train, eta, lam, 1, momentum=beta)(times, SMALL.fx_train_0)
    for a0, da0, gamma, omega2 in [
        (1.0, 0.0, 0.1, 0.1),
        (1.0, -3.0, 1.0, 0.1),
        (1.0, -3.0, 1.0, 0.25),
        (1.0, -2.0, 1.0, 0.0),
        (1.0, 0.0, 1.0, 0.1),
    ]:
        sol = solve_ivp(
            lambda t, s: [s[1], -gamma * s[1] - omega2 * s[0]],
            (0, 40),
            [a0, da0],
            rtol=1e-12,
            atol=1e-14,
            dense_output=True,
        )
        grid = np.linspace(0, 40, 400001)
        negative = np.flatnonzero(sol.sol(grid)[0] <= 0)
        expected = grid[negative[0]] if negative.size else np.inf
        assert abs(first_zero(a0, da0, gamma, omega2) - expected) <= 2e-4 or expected == np.inf == first_zero(
            a0, da0, gamma, omega2
        )
