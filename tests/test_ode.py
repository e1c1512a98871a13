"""ODE solver: schedules and cross-entropy (derivations/ode.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from conftest import make_problem, relative_error
from ntk_l2.theory import PiecewiseConstant, gradient_descent_l2_ode, gradient_descent_mse_l2

TIMES = np.array([0.0, 2.0, 50.0, 800.0, 4000.0])


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_constant_schedule_matches_closed_form(problem, k):
    """Constant η, λ: the eigenbasis ODE (rtol 1e-10) equals the closed form to ≤ 1e-8."""
    args = (problem.k_train_train, problem.y_train, 2.0, 1e-3, k)
    ode = gradient_descent_l2_ode(*args)(TIMES, problem.fx_train_0, problem.fx_test_0, problem.k_test_train)
    exact = gradient_descent_mse_l2(*args)(TIMES, problem.fx_train_0, problem.fx_test_0, problem.k_test_train)
    for a, b in zip(ode, exact, strict=False):
        assert relative_error(a, b) <= 1e-8


def test_piecewise_schedule_matches_composed_closed_form(problem):
    """λ jumps at t = 1000: two closed-form legs, the second on the decayed kernel."""
    eta, lam1, lam2, k, t1 = 2.0, 1e-3, 1e-4, 2, 1000.0
    schedule = PiecewiseConstant((t1,), (lam1, lam2))
    ode = gradient_descent_l2_ode(problem.k_train_train, problem.y_train, eta, schedule, k)
    f_ode, fs_ode = ode(np.array([t1 + 2000.0]), problem.fx_train_0, problem.fx_test_0, problem.k_test_train)
    f1, fs1 = gradient_descent_mse_l2(problem.k_train_train, problem.y_train, eta, lam1, k)(
        t1, problem.fx_train_0, problem.fx_test_0, problem.k_test_train
    )
    scale = np.exp(-2 * (k - 1) * eta * lam1 * t1)
    f2, fs2 = gradient_descent_mse_l2(scale * problem.k_train_train, problem.y_train, eta, lam2, k)(
        2000.0, f1, fs1, scale * problem.k_test_train
    )
    assert relative_error(f_ode[0], f2) <= 1e-8
    assert relative_error(fs_ode[0], fs2) <= 1e-8


def test_callable_learning_rate_schedule(problem):
    """η(t) = η0 for all t given as a callable equals the constant run."""
    args = (problem.k_train_train, problem.y_train)
    a = gradient_descent_l2_ode(*args, lambda t: 1.5, 2e-3, 3)(TIMES, problem.fx_train_0)
    b = gradient_descent_mse_l2(*args, 1.5, 2e-3, 3)(TIMES, problem.fx_train_0)
    assert relative_error(a, b) <= 1e-8


def test_xent_matches_full_system_integration():
    """Cross-entropy: the solver against a direct DOP853 integration of O4."""
    p = make_problem(n=10, m=4, c=3, seed=4)
    labels = np.arange(10) % 3
    y = np.eye(3)[labels] - 1.0 / 3  # centered one-hot is accepted
    eta, lam, k = 3.0, 1e-3, 2
    ode = gradient_descent_l2_ode(p.k_train_train, y, eta, lam, k, loss="xent", rtol=1e-11, atol=1e-13)
    f, fs = ode(TIMES, p.fx_train_0, p.fx_test_0, p.k_test_train)
    probs = np.eye(3)[labels]

    def rhs(t, state):
        fx, fxs = state[:30].reshape(10, 3), state[30:].reshape(4, 3)
        e = np.exp(fx - fx.max(1, keepdims=True))
        grad = (e / e.sum(1, keepdims=True) - probs) / 10
        scale = eta * np.exp(-2 * (k - 1) * eta * lam * t)
        return np.concatenate(
            [
                (-scale * p.k_train_train @ grad - k * eta * lam * fx).ravel(),
                (-scale * p.k_test_train @ grad - k * eta * lam * fxs).ravel(),
            ]
        )

    sol = solve_ivp(
        rhs,
        (0, TIMES[-1]),
        np.concatenate([p.fx_train_0.ravel(), p.fx_test_0.ravel()]),
        t_eval=TIMES,
        method="DOP853",
        rtol=1e-12,
        atol=1e-14,
    )
    assert relative_error(f, sol.y[:30].T.reshape(-1, 10, 3)) <= 1e-7
    assert relative_error(fs, sol.y[30:].T.reshape(-1, 4, 3)) <= 1e-7


def test_bad_schedules_and_loss(problem):
    args = (problem.k_train_train, problem.y_train)
    with pytest.raises(ValueError, match="loss: must be one of"):
        gradient_descent_l2_ode(*args, 1.0, 0.0, 2, loss="hinge")
    with pytest.raises(ValueError, match="l2: schedule gave -1"):
        gradient_descent_l2_ode(*args, 1.0, lambda t: -1.0, 2)(1.0)
    with pytest.raises(ValueError, match="values: need len"):
        PiecewiseConstant((1.0, 2.0), (0.1,))
    with pytest.raises(ValueError, match="boundaries: must be increasing"):
        PiecewiseConstant((2.0, 1.0), (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="y_train: for loss='xent'"):
        gradient_descent_l2_ode(*args, 1.0, 0.0, 2, loss="xent")


@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_full_output_kernels(loss):
    """J1 (derivations/engine.md): an (n, n, c, c) kernel Θ⊗I_c gives the (n, n) result, for MSE
    and cross-entropy; with cross-output terms the MSE path equals the closed form on the same
    full kernel. Both sides integrate at rtol 1e-10 (different systems, so the bound is 1e-8)."""
    from ntk_l2.theory.closed_form import gradient_descent_mse_l2 as closed_form

    rng = np.random.default_rng(11)
    n, m, c = 6, 3, 3
    feats = rng.normal(size=(n + m, 20))
    k = feats @ feats.T / 20
    full = np.einsum("ij,ab->ijab", k, np.eye(c))
    y = np.eye(c)[rng.integers(0, c, n)] - 1.0 / c
    times = np.array([0.0, 1.0, 5.0, 30.0])
    ours = gradient_descent_l2_ode(k[:n, :n], y, 1.0, 1e-2, 2, loss=loss)(times, 0.0, 0.0, k[n:, :n])
    flat = gradient_descent_l2_ode(full[:n, :n], y, 1.0, 1e-2, 2, loss=loss)(times, 0.0, 0.0, full[n:, :n])
    for a, b in zip(flat, ours, strict=False):
        assert a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-8 * np.max(np.abs(b))
    if loss == "mse":
        g = rng.normal(size=((n + m) * c, 4 * (n + m) * c))
        cross = (g @ g.T / g.shape[1]).reshape(n + m, c, n + m, c).transpose(0, 2, 1, 3)
        ode = gradient_descent_l2_ode(cross[:n, :n], y, 1.0, 1e-2, 2)(times, 0.0, 0.0, cross[n:, :n])
        exact = closed_form(cross[:n, :n], y, 1.0, 1e-2, 2)(times, 0.0, 0.0, cross[n:, :n])
        for a, b in zip(ode, exact, strict=False):
            assert np.max(np.abs(a - np.asarray(b))) <= 1e-8 * np.max(np.abs(np.asarray(b)))
