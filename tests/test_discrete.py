"""Discrete-time map for a finite learning rate (derivations/discrete_time.md)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_problem, relative_error
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_discrete, stability_limit


def _loop(p, eta, lam, k, steps):
    """The recurrence D1–D3 step by step, in the original basis (dense Θ_s)."""
    n_out, g = p.y_train.size, eta * lam
    f, fs = p.fx_train_0.copy(), p.fx_test_0.copy()
    record_train, record_test = {}, {}
    for s in range(int(max(steps)) + 1):
        if s in steps:
            record_train[s], record_test[s] = f.copy(), fs.copy()
        scale = (1 - g) ** (2 * (k - 1) * s)
        r = (f - p.y_train) / n_out
        step = eta * (1 - g) ** (k - 1) * scale
        f, fs = (1 - g) ** k * f - step * p.k_train_train @ r, (1 - g) ** k * fs - step * p.k_test_train @ r
    return np.stack([record_train[s] for s in steps]), np.stack([record_test[s] for s in steps])


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
def test_matches_step_by_step_loop(k):
    """Eigenbasis solution vs the plain loop over 10^4 steps: ≤ 1e-10 relative."""
    p = make_problem(seed=10 + k)
    eta = 40.0 if k else 20.0  # large steps: far from the flow limit, still stable (k = 0's kernel grows)
    lam = 1e-3 if k else 1e-6
    steps = [0, 1, 2, 17, 300, 2500, 10_000]
    ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k)(
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train)
    ref = _loop(p, eta, lam, k, steps)
    for a, b in zip(ours, ref):
        assert relative_error(a, b) <= 1e-10


def test_unsorted_and_repeated_steps(problem):
    predict = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 5.0, 1e-3, 2)
    out = predict(np.array([50, 3, 50, 0]), problem.fx_train_0)
    assert np.array_equal(out[0], out[2])
    assert relative_error(out[1], predict(3, problem.fx_train_0)) == 0.0
    assert relative_error(out[3], problem.fx_train_0) <= 1e-14  # V Vᵀ f round trip


def test_small_steps_approach_gradient_flow(problem):
    """η → 0 at fixed ηt: the map tends to the closed-form flow, error O(η)."""
    flow_time, lam, k = 200.0, 5e-3, 3
    errors = []
    for eta in (0.2, 0.1, 0.05):
        steps = int(round(flow_time / eta))
        disc = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, eta, lam, k)(steps, problem.fx_train_0)
        flow = gradient_descent_mse_l2(problem.k_train_train, problem.y_train, eta, lam, k)(steps, problem.fx_train_0)
        errors.append(relative_error(disc, flow))
    assert errors[0] > errors[1] > errors[2]
    assert 1.6 < errors[0] / errors[1] < 2.4 and 1.6 < errors[1] / errors[2] < 2.4  # first order


def test_unstable_learning_rate_is_rejected_with_limit(problem):
    mu_max = float(np.linalg.eigvalsh(problem.k_train_train)[-1])
    limit = stability_limit(mu_max, problem.y_train.size, 1e-4, 2)
    with pytest.raises(ValueError, match=rf"learning_rate: .*stability limit.*{limit:.4g}"):
        gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 1.01 * limit, 1e-4, 2)
    gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 0.99 * limit, 1e-4, 2)  # stable
    assert stability_limit(mu_max, 10.0, 0.0, 3) == pytest.approx(20.0 / mu_max, rel=1e-15)


def test_degree_zero_becomes_unstable_late(problem):
    """k = 0: the kernel grows as (1 − ηλ)^{−2s}; the step at which stability is lost is reported."""
    predict = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 20.0, 1e-3, 0)
    predict(10)
    with pytest.raises(ValueError, match="learning_rate: .* at step"):
        predict(10_000)


def test_bad_steps_and_l2(problem):
    predict = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 1.0, 1e-3, 2)
    with pytest.raises(ValueError, match="t: the discrete map takes whole"):
        predict(2.5)
    with pytest.raises(ValueError, match="t: times must be >= 0"):
        predict(-3)
    with pytest.raises(ValueError, match="learning_rate: learning_rate \\* l2 = 1.5 must be < 1"):
        gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 1.5, 1.0, 2)
