"""Discrete-time map for a finite learning rate (derivations/discrete_time.md): the JAX solver
`ntk_l2.theory.discrete` (its momentum path at β = 0), against a plain loop and the NumPy reference."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.experimental import enable_x64

from conftest import Problem, make_problem, relative_error
from ntk_l2.theory import _momentum_map
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.theory.momentum_scale import MapSpec
from ntk_l2.theory.momentum_scale import tail_start as _jax_tail_start
from ntk_l2.theory.reference import discrete as reference
from ntk_l2.theory.reference import gradient_descent_mse_l2


def tail_start(eta, lam, k, mu_max, norm):
    """The solver's tail start S (M8; at β = 0 the same bound as D6b)."""
    with enable_x64():
        return float(_jax_tail_start(eta, lam, mu_max, MapSpec(k, 0.0, False, float(norm))))


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
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    ref = _loop(p, eta, lam, k, steps)
    for a, b in zip(ours, ref, strict=False):
        assert relative_error(a, b) <= 1e-10


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("positive_l2", [False, True])
def test_equals_the_reference_map(k, positive_l2):
    """The JAX map (the momentum path at β = 0, heavy ball and Nesterov: M4 reduces to D1–D4) equals the
    NumPy reference `reference.discrete` ≤ 1e-12 of the trajectory's largest output, at steps on both sides
    of the tail start S and, where the cost allows, t = 10¹². Different evaluations of the same map
    (binary powering vs geometric sums, closed-form vs recursive scale): their round-off differs by
    ~log₂t·ε (powering) and t·ε·(conditioning of the slow modes) — measured ≤ 1e-14."""
    p = make_problem(seed=40 + k)
    eta = 40.0 if k else 20.0
    lam = (1e-3 if k else 1e-6) if positive_l2 else 0.0
    start, steps = _past_tail_start(p, eta, lam, k)
    if k != 0 or not positive_l2:
        steps = steps + [10**12]
    ref = reference.gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k)(
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    for nesterov in (False, True):
        ours = gradient_descent_mse_l2_discrete(
            p.k_train_train, p.y_train, eta, lam, k, momentum=0.0, nesterov=nesterov
        )(np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train)
        for a, b in zip(ours, ref, strict=False):
            assert relative_error(a, b) <= 1e-12
    mu_max = float(np.linalg.eigvalsh(p.k_train_train)[-1])
    assert stability_limit(mu_max, p.y_train.size, lam, k) == reference.stability_limit(mu_max, p.y_train.size, lam, k)


def test_unsorted_and_repeated_steps(problem):
    """Unsorted, repeated steps: a repeated step gives bitwise the same outputs (the engine computes each
    distinct time once); the per-mode coefficients (what the solver computes) are bitwise those of separate
    calls; the outputs V(P z_0 + Q y) of a batch and of a single call agree to the round-off of the
    engine's reconstruction, one XLA product over all (time, column) pairs whose last bit depends on the
    column's position (measured 4e-16; bound 1e-15, about 4 ulps)."""
    predict = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 5.0, 1e-3, 2)
    out = predict(np.array([50, 3, 50, 0]), problem.fx_train_0)
    assert np.array_equal(out[0], out[2])
    assert relative_error(out[1], predict(3, problem.fx_train_0)) <= 1e-15
    assert relative_error(out[3], problem.fx_train_0) <= 1e-14  # V Vᵀ f round trip
    evals = np.linalg.eigvalsh(problem.k_train_train)
    with enable_x64():

        def coefficients(steps):
            return np.stack(
                [
                    np.asarray(c)
                    for c in _momentum_map.compiled_mode_sequences(
                        5.0,
                        1e-3,
                        evals,
                        np.asarray(steps, np.float64),
                        MapSpec(2, 0.0, False, float(problem.y_train.size)),
                        64,
                        "decay",
                    )[:4]
                ],
                axis=1,
            )  # (T, 4, n)

        batch, alone = coefficients([50, 3, 50, 0]), coefficients([3])
    assert np.array_equal(batch[0], batch[2]) and np.array_equal(batch[1], alone[0])


def test_small_steps_approach_gradient_flow(problem):
    """η → 0 at fixed ηt: the map tends to the closed-form flow, error O(η)."""
    flow_time, lam, k = 200.0, 5e-3, 3
    errors = []
    for eta in (0.2, 0.1, 0.05):
        steps = int(round(flow_time / eta))
        disc = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, eta, lam, k)(
            steps, problem.fx_train_0
        )
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


# --------------------------------------------------------------------------- large times (D6)


def _past_tail_start(p, eta, lam, k):
    """Steps on both sides of the tail start S (k ≥ 2, λ > 0), else spread over 2·10^4 steps."""
    mu_max = float(np.linalg.eigvalsh(p.k_train_train)[-1])
    start = tail_start(eta, lam, k, mu_max, p.y_train.size)
    if np.isfinite(start):
        s = int(start)
        return s, [3 * s, 0, s + 1, 17, s - 1, s, 2 * s + 5, s + 1]  # unsorted, repeated, across S
    return None, [20_000, 0, 1, 17, 2500, 10_000, 2500]


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("positive_l2", [False, True])
def test_tail_and_closed_forms_match_step_by_step_loop(k, positive_l2):
    """Past the tail start S (k ≥ 2, λ > 0), and the ρ = 1 closed forms (λ = 0 or k = 1), vs the plain loop.

    Compared time by time, each at 1e-10 of that time's largest output: both sides carry
    the conditioning of α^t and m^t, a relative error t·(round-off of α, m) ≈ t·1e-16 ≤ 2e-12
    over ≤ 2·10^4 steps (measured ≤ 2e-12); the tail itself drops terms below 2^-53 relative (D6).
    """
    p = make_problem(seed=10 + k)
    eta = 40.0 if k else 20.0  # as in test_matches_step_by_step_loop: large steps, stable
    lam = (1e-3 if k else 1e-6) if positive_l2 else 0.0
    start, steps = _past_tail_start(p, eta, lam, k)
    if k >= 2 and positive_l2:
        assert 0 < start < max(steps)  # the tail is exercised
    ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k)(
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    ref = _loop(p, eta, lam, k, steps)
    for a, b in zip(ours, ref, strict=False):
        for i in range(len(steps)):
            assert relative_error(a[i], b[i]) <= 1e-10, (steps[i], relative_error(a[i], b[i]))


@pytest.mark.parametrize("t", [1e12, 1e15])
def test_huge_times_reach_the_limits(t):
    """t = 10^12, 10^15: λ = 0 → kernel regression, k = 1 → kernel ridge regression, k ≥ 2 → α^t = 0.

    Tolerance 1e-10: at these t every m^t and α^t is exactly 0 in float64, so what remains is
    the round-off of the reference solves, ≈ cond(Θ_0) ≈ 20 times 1e-16 (make_problem's kernel).
    """
    from sklearn.kernel_ridge import KernelRidge

    p = make_problem(seed=4)
    k_tt, k_xt, y, f0, fs0 = p.k_train_train, p.k_test_train, p.y_train, p.fx_train_0, p.fx_test_0
    for k in (0, 2, 4):  # λ = 0: the limit of kernel regression, from any degree
        fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 0.0, k)(t, f0, fs0, k_xt)
        assert relative_error(fx, y) <= 1e-10  # full-rank kernel: train outputs reach the targets
        assert relative_error(fs, fs0 + k_xt @ np.linalg.solve(k_tt, y - f0)) <= 1e-10
    lam = 1e-3  # k = 1: kernel ridge regression with ridge N·λ, whatever the initial outputs
    fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, lam, 1)(t, f0, fs0, k_xt)
    ridge = KernelRidge(alpha=y.size * lam, kernel="precomputed").fit(k_tt, y)
    assert relative_error(fx, ridge.predict(k_tt)) <= 1e-10
    assert relative_error(fs, ridge.predict(k_xt)) <= 1e-10
    c_train, c_test = np.full_like(f0, 0.25), np.full_like(fs0, -0.5)
    for k in (2, 3, 5):  # ρ < 1: everything decays as α^t = (1 − ηλ)^{kt}, which is 0 here
        fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, lam, k)(
            np.array([t]), f0, fs0, k_xt, offset_train=c_train, offset_test=c_test
        )
        assert np.array_equal(fx[0], c_train) and np.array_equal(fs[0], c_test)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_late_times_decay_as_alpha_to_the_t(k):
    """Past the tail, (f(s) − c)/α^s is constant for k ≥ 3, and affine in s for k = 2 (ρ = α there:
    the drive decays exactly as fast as the modes). Checked by a difference, to 1e-12 of the
    largest value: each evaluation is a few float64 products (the tail's α^n and geometric sums, D6)."""
    p = make_problem(seed=20 + k)
    eta, lam = 40.0, 5e-3  # ηλ = 0.2: the tail starts within 100 steps and r^n = (0.8)^{(k−2)n} dies fast
    start = int(tail_start(eta, lam, k, float(np.linalg.eigvalsh(p.k_train_train)[-1]), p.y_train.size))
    steps = start + 200 + 10 * np.arange(3)
    fx, fs = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k)(
        steps, p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    alpha_s = (1 - eta * lam) ** (k * steps.astype(float))
    for out in (fx, fs):
        scaled = out / alpha_s[:, None, None]
        difference = scaled[1] - scaled[0] if k > 2 else scaled[0] - 2 * scaled[1] + scaled[2]
        assert np.max(np.abs(difference)) <= 1e-12 * np.max(np.abs(scaled))
        if k == 2:  # ... and not constant: dropping the tail's correction would be wrong
            assert np.max(np.abs(scaled[1] - scaled[0])) > 1e-3 * np.max(np.abs(scaled))


def test_work_bound_raises_one_line_before_any_loop(problem, monkeypatch):
    """Loops of steps × modes > max_loop_steps are refused up front, with the way out, in one line."""

    def no_loop(*args, **kwargs):
        raise AssertionError("the loop ran before the checks")

    monkeypatch.setattr(_momentum_map, "loop_states", no_loop)
    k_tt, y = problem.k_train_train, problem.y_train
    for k in (4, 0):  # k ≥ 2: S ≈ 10/(ηλ) steps before the kernel is gone; k = 0: every step, to t
        predict = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-12, k)
        t0 = time.perf_counter()
        with pytest.raises(ValueError) as err:
            predict(1e12, problem.fx_train_0, problem.fx_test_0, problem.k_test_train)
        assert time.perf_counter() - t0 < 1.0
        message = str(err.value)
        assert "\n" not in message and message.startswith("t: 1e+12 needs 1e+12 loop steps x 24 modes")
        assert "/(learning_rate * l2)" in message  # why: the 1/(ηλ) scale of the steps
        assert "gradient_descent_mse_l2 " in message and "max_loop_steps" in message
    with pytest.raises(ValueError, match="learning_rate: .* at step"):  # k = 0 past its horizon: D5 first
        gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-3, 0)(1e12)
    monkeypatch.undo()
    small = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-3, 3, max_loop_steps=1e3)
    with pytest.raises(ValueError, match=r"^t: 100 needs 100 loop steps x 24 modes = 2.4e\+03 > max_loop_steps = 1e"):
        small(100)
    assert small(41).shape == y.shape  # 41 × 24 = 984 ≤ 10^3
    raised = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-3, 3, max_loop_steps=1e8)(100)
    assert np.array_equal(raised, gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-3, 3)(100))
    with pytest.raises(ValueError, match="max_loop_steps: must be > 0"):
        gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 1e-3, 3, max_loop_steps=0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 5),
    k=st.integers(0, 5),
    fraction=st.floats(0.05, 0.9),
    l2_step=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    steps=st.lists(st.integers(0, 1500), min_size=3, max_size=3),
)
def test_property_tail_equals_loop(seed, n, k, fraction, l2_step, steps):
    """Random small kernels, degrees, η, ηλ and times: the map (loop, tail, closed form) equals the plain loop.

    Tolerance 1e-10 of each time's largest output, plus 1e-280 absolute for outputs that decay into
    float64's subnormal range (ηλ = 0.2, k = 5, 1500 steps: α^t ≈ 1e-730), where the loop keeps few digits.
    """
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n + 2, 2 * n + 4))
    kernel = feats @ feats.T / feats.shape[1]
    p = Problem(
        kernel[:n, :n],
        kernel[n:, :n],
        kernel[n:, n:],
        rng.normal(size=(n, 2)),
        rng.normal(size=(n, 2)),
        rng.normal(size=(2, 2)),
    )
    eta = fraction * stability_limit(float(np.linalg.eigvalsh(p.k_train_train)[-1]), p.y_train.size, 0.0, k)
    try:
        ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, l2_step / eta, k)(
            np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
        )
    except ValueError as err:  # beyond D5's limit for this ηλ (k = 0's growing kernel, k = 1's 2N/(μ + Nλ))
        assert str(err).startswith("learning_rate:")
        assume(False)
    ref = _loop(p, eta, l2_step / eta, k, steps)
    for a, b in zip(ours, ref, strict=False):
        for i in range(len(steps)):
            assert np.max(np.abs(a[i] - b[i])) <= 1e-10 * np.max(np.abs(b[i])) + 1e-280
