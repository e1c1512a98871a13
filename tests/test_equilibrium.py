"""The equilibrium of scale-invariant weights under SGD with L2 (`derivations/scale_invariant.md`, SI4–SI6)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_l2.data.datasets import load_digits
from ntk_l2.finite.equilibrium import (
    EquilibriumConfig,
    angular_updates,
    effective_learning_rates,
    group_norms,
    norm_balance,
    predicted_angular_update,
    relaxation_steps,
    rescale_groups,
    spherical_random_walk,
    stationary_angular_update,
    train_equilibrium,
    window_statistics,
)
from ntk_l2.networks.batchnorm import convolutional_batchnorm
from ntk_l2.networks.scale_invariant import layernorm_fc, scale_invariant_mask


def test_measurements_of_a_known_rotation():
    """SI4, SI5: Δ of a group rotated by a known angle (and rescaled) is that angle; norms and η/‖w‖² per group."""
    params = [(np.array([3.0, 0.0]), None), (), (np.array([[0.0, 2.0]]),), (np.array([1.0, 1.0]),)]
    mask = [(True, None), (), (True,), (False,)]
    angle = 0.3
    after = [(5 * np.array([3 * math.cos(angle), 3 * math.sin(angle)]), None), (), (np.array([[0.0, 7.0]]),), (0,)]
    after[-1] = (np.array([5.0, -1.0]),)
    np.testing.assert_allclose(angular_updates(params, after, mask), [angle, 0.0], atol=1e-7)
    np.testing.assert_allclose(group_norms(params, mask), [3.0, 2.0])
    np.testing.assert_allclose(effective_learning_rates(0.5, group_norms(params, mask)), [0.5 / 9, 0.5 / 4])


def test_predictions_and_arguments():
    """SI5: √(2ηλ/(1+β)) is the small-ηλ form of arccos(1 − ηλ/(1+β)); SI6: (1 − β)/(4ηλ)."""
    assert predicted_angular_update(0.1, 0.01, 0.9) == pytest.approx(math.sqrt(2e-3 / 1.9))
    assert stationary_angular_update(0.1, 0.01, 0.9) == pytest.approx(math.acos(1 - 1e-3 / 1.9))
    assert stationary_angular_update(1.0, 1e-2) / predicted_angular_update(1.0, 1e-2) == pytest.approx(1, abs=1e-3)
    assert relaxation_steps(0.1, 0.01, 0.5) == pytest.approx(125.0)
    with pytest.raises(ValueError, match="momentum"):
        predicted_angular_update(0.1, 0.01, 1.0)
    with pytest.raises(ValueError, match="l2"):
        EquilibriumConfig(0.1, 0.0)
    with pytest.raises(ValueError, match="batch_size"):
        EquilibriumConfig(0.1, 0.1, batch_size=0)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_random_walk_settles_at_the_predicted_angular_update(momentum):
    """SI5, SI6 on the model the derivation assumes (gradients ⊥ w of size ∝ 1/‖w‖): after 12 relaxation
    times the RMS angular update is √(2ηλ/(1+β)) within 2% (window of 2,000 steps: the statistical
    error is ~0.3%), and ‖w‖⁴ − ‖w*‖⁴ has shrunk by e^{−1} ± 0.03 after one relaxation time
    (1 − β)/(4ηλ) (ηλ = 1e-4 ≪ (1 − β)² keeps the velocity fast)."""
    eta, lam = 0.1, 1e-3
    tau = relaxation_steps(eta, lam, momentum)
    start = int(12 * tau)  # ‖w_0‖⁴/‖w*‖⁴ ≈ 200: e^{−12}·200 ≈ 1e-3 is left of the transient
    norms, angles = spherical_random_walk(500, start + 2000, eta, lam, momentum, norm0=10.0, seed=1)
    rms = math.sqrt(float(np.mean(angles[start:] ** 2)))
    assert rms / predicted_angular_update(eta, lam, momentum) == pytest.approx(1.0, abs=0.02)
    quartic = norms**4
    star = quartic[start:].mean()
    assert (quartic[int(tau)] - star) / (quartic[0] - star) == pytest.approx(math.exp(-1), abs=0.03)


@pytest.mark.parametrize("kind", ["bn_cnn", "ln_fc"])
def test_norm_balance_is_exact_for_scale_invariant_groups(kind):
    """SI4: with β = 0, ‖w_{t+1}‖² = (1 − ηλ)²‖w_t‖² + η²‖g_t‖² step by step (float64, to 1e-9: BatchNorm's
    ε leaves g·w ≈ 1e-11‖g‖‖w‖); a group that is not scale-invariant (the readout) breaks it."""
    if kind == "bn_cnn":
        init_fn, apply_fn = convolutional_batchnorm(2, 4, 10, W_std=1e3)
        shape = (8, 8, 1)
    else:
        init_fn, apply_fn = layernorm_fc(2, 16, 10)
        shape = (12,)
    _, params = init_fn(jax.random.PRNGKey(0), (-1, *shape))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, *shape)), np.eye(10)[rng.integers(0, 10, 32)] - 0.1
    everything = jax.tree_util.tree_map(lambda _: True, scale_invariant_mask(params))
    config = EquilibriumConfig(0.5, 0.02, steps=20, batch_size=8, float64=True)
    run = train_equilibrium(apply_fn, params, x, y, everything, config)
    balance = norm_balance(run.group_norms[:-1] ** 2, run.grad_norms**2, 0.5, 0.02)
    error = np.abs(balance / run.group_norms[1:] ** 2 - 1).max(axis=0)
    assert np.all(error[:-1] < 1e-9), error
    assert error[-1] > 1e-3, error


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cnn_reaches_the_equilibrium_angular_update(momentum):
    """SI5 on the batch-normalized CNN (2 layers, 4 channels, 8×8 digits, minibatches of 32, η = 1,
    ηλ = 1e-2, groups rescaled to norm 1): over the 300 steps after 5/(ηλ) = 500, the mean and RMS
    angular update of each convolution are within 10% of √(2ηλ/(1+β)).

    Tolerance: measured ratios are within 3% (RMS) and 4% (mean) of 1; the window's statistical error
    is ~1%, the O(ηλ) corrections of SI5 are < 1%, and a slowly drifting gradient scale keeps the norm
    a little behind its equilibrium (SI6). 10% still rejects a missing (1 + β) (a factor 1.38)."""
    data = load_digits(n_train=1000, n_test=500, seed=0, flatten=False)
    init_fn, apply_fn = convolutional_batchnorm(2, 4, 10, W_std=1e3)
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    mask = scale_invariant_mask(params)
    params = rescale_groups(params, mask, 1.0)
    eta_l2 = 1e-2
    start = int(5 / eta_l2)
    config = EquilibriumConfig(1.0, eta_l2, momentum, steps=start + 300, batch_size=32)
    run = train_equilibrium(
        apply_fn, params, data.x_train, data.y_train, mask, config, x_test=data.x_test, labels_test=data.labels_test
    )
    stats = window_statistics(run, start)
    assert run.test_accuracy > 0.5  # it learns (chance: 0.1)
    np.testing.assert_allclose(stats.ratio_rms, 1.0, atol=0.1)
    np.testing.assert_allclose(stats.ratio_mean, 1.0, atol=0.1)
    assert float(jnp.max(run.effective_learning_rates[-1])) > 1.0  # η/‖w‖² has grown from η = 1
