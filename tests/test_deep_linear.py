"""Deep linear networks: conservation and decay of the layer imbalance, flatness, ridge limit.

Derivations: `derivations/deep_linear.md` (DL0–DL9). Everything here is exact
theory, checked in float64 to round-off or to the integrator's tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from ntk_l2 import deep_linear as dl
from ntk_l2.deep_linear.dynamics import _flow_gradient


def _at(run, record):
    return tuple(w[0, record] for w in run.weights)


def _max_rel_drift(run, decay):
    """max over records and layers of ‖D_l(t) − D_l(0)·decay(t)‖_F / ‖D_l(0)·decay(t)‖_F."""
    d0 = dl.imbalance(_at(run, 0))
    worst = 0.0
    for r, t in enumerate(run.steps):
        for a, b in zip(dl.imbalance(_at(run, r)), d0, strict=False):
            worst = max(worst, np.linalg.norm(a - b * decay(t)) / np.linalg.norm(b * decay(t)))
    return worst


NETS = {
    "scalar chain L=4": (
        dl.chain([1.5, 0.3, -0.8, 1.1]),
        dl.regression_data(32, 1, 1, teacher=[[2.0]], label_noise=0.3, seed=0),
    ),
    "matrix 3-5-4-2": (dl.DeepLinear((3, 5, 4, 2)).init(0), dl.regression_data(20, 3, 2, label_noise=0.3, seed=1)),
}


# DL1: conserved imbalance, gradient flow without regularization, 10^4 time units.
@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("input_noise", [0.0, 0.5])  # the expected input-noise penalty depends on P only
def test_imbalance_conserved_by_gradient_flow(name, input_noise):
    w0, (x, y) = NETS[name]
    run = dl.gradient_flow(
        w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=10_000, input_noise=input_noise, n_records=40)
    )
    assert run.loss[0, -1] < run.loss[0, 0]  # it did train
    assert _max_rel_drift(run, lambda t: 1.0) <= 1e-8


@settings(max_examples=12, deadline=None, derandomize=True)
@given(depth=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_imbalance_conserved_for_random_chains(depth, seed):
    rng = np.random.default_rng(seed)
    w0 = dl.chain(rng.uniform(0.3, 1.5, depth) * rng.choice([-1, 1], depth))
    x, y = dl.regression_data(16, 1, 1, teacher=[[rng.uniform(-2, 2)]], label_noise=0.2, seed=seed)
    run = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=10_000, n_records=20))
    assert _max_rel_drift(run, lambda t: 1.0) <= 1e-8


# DL2: with L2 each imbalance decays as exp(−2ηλt).
@pytest.mark.parametrize("name", NETS)
def test_imbalance_decays_exactly_with_l2(name):
    w0, (x, y) = NETS[name]
    eta, lam = 0.5, 2e-3
    # t up to 3000: the imbalance falls by e^{-6}; much further and it sinks under atol.
    run = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=eta, steps=3000, l2=lam, n_records=40))
    assert _max_rel_drift(run, lambda t: np.exp(-2 * eta * lam * t)) <= 1e-6


# DL3: one gradient-descent step on a scalar chain contracts D_ij by (1−ηλ)² − η²ρ²P²/(w_i²w_j²).
@settings(max_examples=50, deadline=None, derandomize=True)
@given(depth=st.integers(2, 5), seed=st.integers(0, 10_000), lam=st.sampled_from([0.0, 1e-2]))
def test_gradient_descent_step_contracts_imbalance(depth, seed, lam):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.4, 1.5, depth) * rng.choice([-1, 1], depth)
    x, y = dl.regression_data(8, 1, 1, teacher=[[1.0]], label_noise=0.5, seed=seed)
    eta = 0.05
    run = dl.gradient_descent(
        dl.chain(w), x, y, dl.DeepLinearConfig(learning_rate=eta, steps=1, l2=lam, record_steps=(0, 1))
    )
    w1 = dl.chain_values(run.weights)[0, 1]
    p = np.prod(w)
    rho = np.mean((p * x[:, 0] - y[:, 0]) * x[:, 0])
    expected = dl.pairwise_imbalance(w) * ((1 - eta * lam) ** 2 - eta**2 * rho**2 * p**2 / np.outer(w**2, w**2))
    np.testing.assert_allclose(dl.pairwise_imbalance(w1), expected, rtol=1e-10, atol=1e-13)


# DL4: Hessian at a minimum of a scalar chain.
def _chain_at_minimum(depth, seed):
    rng = np.random.default_rng(seed)
    x, y = dl.regression_data(12, 1, 1, teacher=[[rng.uniform(0.5, 2.0)]], label_noise=0.4, seed=seed, whiten=False)
    p_star = dl.least_squares_product(x, y)[0, 0]
    w = rng.uniform(0.4, 1.6, depth)
    w[-1] = p_star / np.prod(w[:-1])
    return w, x, y


@settings(max_examples=40, deadline=None, derandomize=True)
@given(depth=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_top_hessian_eigenvalue_at_a_chain_minimum(depth, seed):
    w, x, y = _chain_at_minimum(depth, seed)
    top = dl.hessian_top_eigenvalue(dl.chain(w), x, y, method="exact")
    expected = dl.chain_top_eigenvalue_at_minimum(w, float(np.mean(x**2)))
    assert top == pytest.approx(expected, rel=1e-10)
    # rank one there: the trace equals the top eigenvalue
    assert dl.hessian_trace(dl.chain(w), x, y) == pytest.approx(expected, rel=1e-10)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(depth=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_balanced_point_is_the_flattest_minimum(depth, seed):
    w, x, y = _chain_at_minimum(depth, seed)
    p = float(np.prod(w))
    balanced = dl.balanced_chain(p, depth)
    assert np.prod(balanced) == pytest.approx(p, rel=1e-12)
    m = float(np.mean(x**2))
    flat = dl.chain_top_eigenvalue_at_minimum(balanced, m)
    assert flat == pytest.approx(m * depth * abs(p) ** (2 * (depth - 1) / depth), rel=1e-12)
    assert dl.chain_top_eigenvalue_at_minimum(w, m) >= flat * (1 - 1e-12)
    # the minimum over the manifold found numerically (free log|w_i|, last weight fixed by the product)
    # is the balanced point
    from scipy.optimize import minimize

    def on_manifold(logs):
        v = np.exp(np.append(logs, 0.0))
        v[-1] = abs(p) / np.prod(v[:-1])
        return v

    best = minimize(
        lambda z: dl.chain_top_eigenvalue_at_minimum(on_manifold(z), m),
        np.log(np.abs(w[:-1])),
        method="BFGS",
        options={"gtol": 1e-12},
    )
    np.testing.assert_allclose(on_manifold(best.x), np.abs(balanced), rtol=1e-5)


def test_rebalance_keeps_the_product():
    w = dl.chain([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(dl.product(dl.rebalance(w)), dl.product(w), rtol=1e-14)
    assert dl.imbalance_norm(dl.rebalance(w)) < 1e-12


# DL5: closed-form trace; Lanczos vs exact.
@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (2, 3, 3, 3, 1), (4, 4)])
def test_hessian_trace_closed_form(widths):
    net = dl.DeepLinear(widths)
    x, y = dl.regression_data(10, widths[0], widths[-1], label_noise=0.5, seed=2)
    w = net.init(3)
    assert dl.hessian_trace(w, x, y) == pytest.approx(np.trace(dl.hessian(w, x, y)), rel=1e-12)
    # batched over leading axes
    stacked = tuple(np.stack([a, 2 * a]) for a in w)
    np.testing.assert_allclose(
        dl.hessian_trace(stacked, x, y),
        [dl.hessian_trace(w, x, y), dl.hessian_trace(tuple(2 * a for a in w), x, y)],
        rtol=1e-12,
    )


def test_lanczos_top_eigenvalue_matches_exact():
    net = dl.DeepLinear((6, 12, 12, 3))
    x, y = dl.regression_data(30, 6, 3, label_noise=0.3, seed=4)
    w = net.init(5)
    exact = dl.hessian_top_eigenvalue(w, x, y, method="exact")
    assert dl.hessian_top_eigenvalue(w, x, y, method="lanczos") == pytest.approx(exact, rel=1e-9)


# DL6: distance to the minima manifold.
def test_distance_to_minima_is_first_order_exact():
    w, x, y = _chain_at_minimum(3, 7)
    assert dl.distance_to_minima(dl.chain(w), x, y) < 1e-12
    g = np.prod(w) / w  # normal to the manifold Π w = p at w
    for eps in (1e-2, 1e-3, 1e-4):
        moved = w + eps * g / np.linalg.norm(g)
        # second-order accurate: the error shrinks as eps²
        assert dl.distance_to_minima(dl.chain(moved), x, y) == pytest.approx(eps, rel=20 * eps)


def test_distance_to_minima_matrix_network_vanishes_after_training():
    w0, (x, y) = NETS["matrix 3-5-4-2"]
    run = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=2000, n_records=5))
    assert dl.distance_to_minima(_at(run, 0), x, y) > 0.1
    assert dl.distance_to_minima(_at(run, -1), x, y) < 1e-8


# DL9: depth 1 with L2 is ridge regression.
def test_depth_one_with_l2_is_ridge_regression():
    x, y = dl.regression_data(40, 5, 3, label_noise=0.5, seed=3, whiten=False)
    lam = 0.05
    w_star = dl.ridge_solution(x, y, lam)
    sk = Ridge(alpha=y.size * lam, fit_intercept=False).fit(x, y)  # ‖y − Xw‖² + α‖w‖², α = Nλ
    np.testing.assert_allclose(w_star, sk.coef_, rtol=1e-10)
    w0 = (np.random.default_rng(0).standard_normal((3, 5)),)
    cfg = dl.DeepLinearConfig(learning_rate=1.0, steps=300, l2=lam, n_records=15)
    flow = dl.gradient_flow(w0, x, y, cfg)
    for r, t in enumerate(flow.steps):
        np.testing.assert_allclose(
            flow.weights[0][0, r], dl.ridge_flow(w0[0], x, y, lam, 1.0, t), rtol=1e-8, atol=1e-10
        )
    gd = dl.gradient_descent(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=3000, l2=lam, n_records=5))
    np.testing.assert_allclose(gd.weights[0][0, -1], w_star, rtol=1e-10, atol=1e-12)


def test_flow_gradient_matches_autodiff():
    import jax
    from jax.experimental import enable_x64

    w0, (x, y) = NETS["matrix 3-5-4-2"]
    lam, sigma = 0.03, 0.4
    grad = _flow_gradient(x, y, lam, sigma, [w.shape for w in w0])(np.concatenate([w.ravel() for w in w0]))
    with enable_x64():

        def objective(ws):
            p = ws[2] @ ws[1] @ ws[0]
            return (
                dl.network.loss_jax(ws, x, y)
                + 0.5 * lam * sum((w**2).sum() for w in ws)
                + 0.5 * sigma**2 * x.shape[0] / y.size * (p**2).sum()
            )

        auto = jax.grad(objective)(tuple(jax.numpy.asarray(w) for w in w0))
    np.testing.assert_allclose(grad, np.concatenate([np.asarray(g).ravel() for g in auto]), rtol=1e-12)


def test_input_noise_penalty_is_the_expected_loss():
    """DL7: E_E ‖(X + σE)Pᵀ − Y‖²/(2N) = L + σ² n ‖P‖²/(2N), by Monte Carlo (5σ of its own error)."""
    w0, (x, y) = NETS["matrix 3-5-4-2"]
    p, sigma = dl.product(w0), 0.7
    rng = np.random.default_rng(0)
    samples = [0.5 * np.sum(((x + sigma * rng.standard_normal(x.shape)) @ p.T - y) ** 2) / y.size for _ in range(20000)]
    expected = dl.loss(w0, x, y) + sigma**2 * x.shape[0] * np.sum(p**2) / (2 * y.size)
    assert abs(np.mean(samples) - expected) < 5 * np.std(samples) / np.sqrt(len(samples))


def test_gradient_descent_seeds_and_divergence():
    x, y = dl.regression_data(16, 1, 1, teacher=[[1.0]], label_noise=0.3, seed=0)
    w0 = dl.chain([1.0, 1.0])
    cfg = dl.DeepLinearConfig(learning_rate=0.1, steps=50, batch_size=4, n_records=5)
    a = dl.gradient_descent(w0, x, y, cfg, seeds=(0, 1))
    b = dl.gradient_descent(w0, x, y, cfg, seeds=(1,))
    np.testing.assert_allclose(a.weights[0][1], b.weights[0][0], rtol=1e-14)  # member = its seed alone
    assert not np.allclose(a.weights[0][0], a.weights[0][1])
    big = dl.gradient_descent(w0, x, y, dl.DeepLinearConfig(learning_rate=50.0, steps=200, n_records=20))
    assert big.diverged[0] and np.isnan(big.loss[0, -1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"l2": -1.0}, "l2"),
        ({"input_noise": float("nan")}, "input_noise"),
        ({"steps": -1}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"record_steps": (0, 5000)}, "record_steps"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dl.DeepLinearConfig(**kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="widths"):
        dl.DeepLinear((3,))
    with pytest.raises(ValueError, match="depth"):
        dl.DeepLinear.scalar_chain(0)
    with pytest.raises(ValueError, match="x, y"):
        dl.loss(dl.chain([1.0]), np.ones((3, 1)), np.ones((4, 1)))
    with pytest.raises(ValueError, match="batch_size"):
        dl.gradient_flow(dl.chain([1.0]), np.ones(3), np.ones(3), dl.DeepLinearConfig(batch_size=2))
    with pytest.raises(ValueError, match="batch_size"):
        dl.gradient_descent(dl.chain([1.0]), np.ones(3), np.ones(3), dl.DeepLinearConfig(batch_size=4))
    with pytest.raises(ValueError, match="weights"):
        dl.DeepLinear((2, 3, 1)).check((np.ones((3, 2)), np.ones((2, 3))))
    with pytest.raises(ValueError, match="method"):
        dl.hessian_top_eigenvalue(dl.chain([1.0]), np.ones(3), np.ones(3), method="power")
