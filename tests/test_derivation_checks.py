"""Checks of derivation labels whose quantity no other test asserts.

- D5 (`derivations/discrete_time.md`): the stability limit for λ > 0 is the first η at which
  η(1 − ηλ)^{k−1}μ_max/N = 1 + (1 − ηλ)^k, where the solver's top mode is multiplied by −1 in
  one step (elsewhere only λ = 0 is checked against a formula).
- F3 (`derivations/finite_width.md`): the per-layer norms of a finite network trained with L2
  decay as (1 − ηλ)^s, up to corrections that vanish with the width, and the exact per-step
  identity F3a behind that limit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from conftest import make_problem
from ntk_l2.data import datasets as data
from ntk_l2.experiments import compare
from ntk_l2.experiments.compare import CompareConfig
from ntk_l2.finite.train import layer_norms
from ntk_l2.networks.arch import fully_connected
from ntk_l2.theory import gradient_descent_mse_l2_discrete, stability_limit


def _d5_margin(eta: float, lam: float, k: int, mu_over_n: float) -> float:
    """1 + (1 − ηλ)^k − η(1 − ηλ)^{k−1}μ_max/N: ≥ 0 where step 0 amplifies no mode (D5)."""
    keep = 1.0 - eta * lam
    return 1.0 + keep**k - eta * keep ** (k - 1) * mu_over_n


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("lam_ratio", [1e-3, 1e-2, 0.05])
def test_stability_limit_is_the_first_root_of_d5(k, lam_ratio):
    """D5 for λ > 0: the returned η* is a root of the condition (≤ 1e-10 relative to its terms),
    the condition holds on a grid of 400 points of (0, η*) and fails just above; at η* the
    solver's one-step multiplier of the top mode (Y = 0, f_0 its eigenvector) is −1, and for
    k = 1, whose kernel is constant, the step-by-step map stays bounded at 0.98η* and
    diverges at 1.02η*. λ = lam_ratio·μ_max/N, so that the condition fails below ηλ = 1."""
    p = make_problem(n=12, m=2, c=1, seed=3)
    evals, evecs = np.linalg.eigh(p.k_train_train)
    n_out = p.y_train.size
    mu_over_n = float(evals[-1]) / n_out
    lam = lam_ratio * mu_over_n
    eta = stability_limit(float(evals[-1]), float(n_out), lam, k)
    assert 0.0 < eta * lam < 1.0
    assert abs(_d5_margin(eta, lam, k, mu_over_n)) <= 1e-10 * (1.0 + eta * mu_over_n)
    assert all(_d5_margin(e, lam, k, mu_over_n) > 0 for e in np.linspace(0.0, 0.999 * eta, 400)[1:])
    assert _d5_margin(1.001 * eta, lam, k, mu_over_n) < 0
    top = evecs[:, -1:]
    f1 = gradient_descent_mse_l2_discrete(p.k_train_train, np.zeros_like(top), eta * (1 - 1e-12), lam, k)(1, top)
    assert float(top[:, 0] @ np.asarray(f1)[:, 0]) == pytest.approx(-1.0, abs=1e-9)
    if k == 1:
        for factor, bounded in ((0.98, True), (1.02, False)):
            f, step = top.copy(), factor * eta
            for _ in range(2000):
                f = (1 - step * lam) * f - step * p.k_train_train @ f / n_out
            assert (np.max(np.abs(f)) < 1.0) == bounded, factor


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(n_train=32, n_test=16, seed=0)


def _layer_norm_deviation(ds: data.Dataset, width: int) -> np.ndarray:
    """max over seeds and records of |‖θ_l(s)‖/‖θ_l(0)‖ / (1 − ηλ)^s − 1|, per layer l.

    Depth 2 (k = 3), η = 10, λ = 1e-2 (ηλ = 0.1, half the D5 limit or less), 2/(ηλ) = 20 steps.
    """
    cfg = CompareConfig(
        depth=2,
        widths=(width,),
        learning_rate=10.0,
        l2=1e-2,
        steps=20,
        seeds=2,
        n_records=11,
        n_probe=2,
        n_kernel_records=2,
    )
    summary, arrays = compare.compare_width(ds, cfg, width)
    norms = arrays["layer_norms"]  # (seed, record, layer)
    theory = np.asarray(summary.layer_norm_ratio_theory)
    np.testing.assert_array_equal(theory, (1.0 - 0.1) ** arrays["steps"].astype(float))
    np.testing.assert_allclose(summary.layer_norm_ratio, np.mean(norms / norms[:, :1], axis=0), rtol=1e-6)
    return np.max(np.abs(norms / norms[:, :1] / theory[None, :, None] - 1.0), axis=(0, 1))


def test_layer_norms_decay_as_one_minus_eta_lambda_to_the_s(digits):
    """F3: ‖θ_l(s)‖/‖θ_l(0)‖ → (1 − ηλ)^s for every layer, as width → ∞.

    Over 20 steps the norms fall to 0.9^20 = 0.12 of their start. Measured max deviations
    (input, hidden, readout layer): width 64: 0.0038, 0.0035, 0.020; width 1024: 2.3e-4,
    1.4e-5, 1.3e-3. The bound 0.005 at width 1024 leaves 3.8× headroom, while a factor 2 in
    λ or η (the penalty λ‖θ‖² instead of (λ/2)‖θ‖²) changes the ratio at step 20 by a factor
    (0.8/0.9)^20 = 0.095. From width 64 to 1024 the deviation must fall as 1/P_l, the layer's
    number of entries (F3a): by 1/16 for the input and readout layers, 1/256 for the hidden one
    (measured 0.059, 0.004, 0.065; bound twice that), faster than the width^{-1/2} of F2.
    """
    wide = _layer_norm_deviation(digits, 1024)
    narrow = _layer_norm_deviation(digits, 64)
    assert wide.shape == (3,)
    assert np.all(wide < 0.005), wide
    expected = np.array([1 / 16, 1 / 256, 1 / 16])  # P_l: 64·W, W², W·10
    assert np.all(wide < 2 * expected * narrow), (wide, narrow)


def _f3a_gap(width: int, per_layer_degree: int = 1, steps: int = 5, eta: float = 1.0, lam: float = 0.05) -> float:
    """Largest relative gap to F3a, with θ_l·∇_l L = per_layer_degree·⟨f_X, f_X − Y⟩/N, over the
    layers and the steps of one float64 run of a bias-free ReLU network (depth 2, k = 3)."""
    net = fully_connected(depth=2, width=width, out_dim=3)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    y = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
    n_out = y.size

    def loss(p):
        return 0.5 * jnp.sum((net.apply_fn(p, x) - y) ** 2) / n_out

    worst = 0.0
    for _ in range(steps):
        f = net.apply_fn(params, x)
        grads = jax.grad(loss)(params)
        inner = per_layer_degree * float(jnp.vdot(f, f - y)) / n_out
        new = jax.tree_util.tree_map(lambda p, g: (1 - eta * lam) * p - eta * g, params, grads)
        before, after, grad_sq = (np.asarray(layer_norms(t)) ** 2 for t in (params, new, grads))
        predicted = (1 - eta * lam) ** 2 * before - 2 * eta * (1 - eta * lam) * inner + eta**2 * grad_sq
        worst = max(worst, float(np.max(np.abs(after - predicted) / after)))
        params = new
    return worst


def test_layer_norm_step_identity():
    """F3a: for a bias-free ReLU network every layer is homogeneous of degree 1 in its own
    parameters, so θ_l·∇_l L = ⟨f_X, f_X − Y⟩/N and
    ‖θ_l(s+1)‖² = (1 − ηλ)²‖θ_l(s)‖² − 2η(1 − ηλ)⟨f_X, f_X − Y⟩/N + η²‖∇_l L‖², exactly, at any
    width. In float64 the gap is round-off; 1e-12 is the bound. The whole network's Euler
    identity used per layer (k = 3 times the inner product) must miss by far more."""
    with enable_x64():
        assert _f3a_gap(width=16) < 1e-12
        assert _f3a_gap(width=64) < 1e-12
        assert _f3a_gap(width=16, per_layer_degree=3) > 1e-6
