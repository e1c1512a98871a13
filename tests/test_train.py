"""Finite-width training (ntk_l2.finite.train) against the theory where it is exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from conftest import relative_error
from ntk_l2 import fully_connected, load_digits
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.networks.nt import nt
from ntk_l2.theory import gradient_descent_mse_l2_discrete


def flat_ntk(apply_fn, params, x1, x2):
    """Empirical NTK with all output pairs, Θ_{(i,a),(j,b)}, as (n1·c, n2·c)."""
    fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    theta = np.asarray(fn(x1, x2, params))  # (n1, n2, c, c)
    n1, n2, c, _ = theta.shape
    return np.transpose(theta, (0, 2, 1, 3)).reshape(n1 * c, n2 * c)


def test_linearized_network_matches_discrete_map_exactly():
    """A network linearized at θ_0 and trained by GD with L2 is exactly the degree-1
    discrete map with offset c = f_0 − J_0θ_0 on its own empirical NTK (C7, D1).

    float64, 1,000 steps; the only differences are round-off: ≤ 1e-8 relative.
    """
    data = load_digits(n_train=16, n_test=8, seed=3)
    net = fully_connected(2, width=64, out_dim=data.n_classes)
    eta, lam, steps = 2.0, 1e-3, 1000
    config = TrainConfig(learning_rate=eta, l2=lam, steps=steps, record_steps=(0, 1, 10, 100, 1000), float64=True)
    result = train(
        net.init_fn, net.apply_fn, data.x_train, data.y_train, config, x_test=data.x_test, seeds=(5,), linearized=True
    )
    with enable_x64():
        _, params0 = net.init_fn(jax.random.PRNGKey(5), (-1, data.x_train.shape[1]))
        params0 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params0)
        x_tr, x_te = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
        f0_tr, jt_tr = jax.jvp(lambda p: net.apply_fn(p, x_tr), (params0,), (params0,))
        f0_te, jt_te = jax.jvp(lambda p: net.apply_fn(p, x_te), (params0,), (params0,))
        k_tt = flat_ntk(net.apply_fn, params0, x_tr, None)
        k_st = flat_ntk(net.apply_fn, params0, x_te, x_tr)
    c = data.n_classes
    # numpy, not jax, outside the float64 context: jax would compute in float32 there
    offset_tr = (np.asarray(f0_tr) - np.asarray(jt_tr)).reshape(-1, 1)
    offset_te = (np.asarray(f0_te) - np.asarray(jt_te)).reshape(-1, 1)
    predict = gradient_descent_mse_l2_discrete(k_tt, data.y_train.reshape(-1, 1), eta, lam, 1)
    fx_tr, fx_te = predict(
        result.steps,
        np.asarray(f0_tr).reshape(-1, 1),
        np.asarray(f0_te).reshape(-1, 1),
        k_st,
        offset_train=offset_tr,
        offset_test=offset_te,
    )
    err_train = relative_error(result.fx_train[0], fx_tr.reshape(len(result.steps), -1, c))
    err_test = relative_error(result.fx_test[0], fx_te.reshape(len(result.steps), -1, c))
    print(f"linearized network vs degree-1 discrete map over {steps} steps: train {err_train:.1e}, test {err_test:.1e}")
    assert err_train <= 1e-8 and err_test <= 1e-8


@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.5, True)])
def test_linearized_network_with_momentum_matches_discrete_momentum_map(momentum, nesterov):
    """The linearized network trained with heavy-ball or Nesterov momentum and L2 is exactly the
    degree-1 momentum map (`derivations/momentum.md`, M1–M4 with k = 1: h(θ) = J_0θ is linear, so
    θ_s = a_sθ_0 + δ_s holds with no approximation) on its empirical NTK, as an (n, n, c, c)
    kernel, with offset c = f_0 − J_0θ_0.

    float64, 1,000 steps; round-off only: ≤ 1e-8 relative (each step rounds at ~1e-16 and
    the map is contractive, so the accumulated difference stays orders of magnitude below).
    """
    from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete as momentum_map

    data = load_digits(n_train=16, n_test=8, seed=3)
    net = fully_connected(2, width=64, out_dim=data.n_classes)
    eta, lam, steps = 0.5, 1e-3, 1000
    config = TrainConfig(
        learning_rate=eta,
        l2=lam,
        steps=steps,
        record_steps=(0, 1, 10, 100, 1000),
        float64=True,
        momentum=momentum,
        nesterov=nesterov,
    )
    result = train(
        net.init_fn, net.apply_fn, data.x_train, data.y_train, config, x_test=data.x_test, seeds=(5,), linearized=True
    )
    with enable_x64():
        _, params0 = net.init_fn(jax.random.PRNGKey(5), (-1, data.x_train.shape[1]))
        params0 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params0)
        x_tr, x_te = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
        f0_tr, jt_tr = jax.jvp(lambda p: net.apply_fn(p, x_tr), (params0,), (params0,))
        f0_te, jt_te = jax.jvp(lambda p: net.apply_fn(p, x_te), (params0,), (params0,))
        ntk = nt.empirical_ntk_fn(net.apply_fn, trace_axes=(), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
        k_tt, k_st = np.asarray(ntk(x_tr, None, params0)), np.asarray(ntk(x_te, x_tr, params0))  # (n, n, c, c)
    f0_tr, f0_te = np.asarray(f0_tr), np.asarray(f0_te)
    predict = momentum_map(k_tt, data.y_train, eta, lam, 1, momentum=momentum, nesterov=nesterov)
    fx_tr, fx_te = predict(
        result.steps, f0_tr, f0_te, k_st, offset_train=f0_tr - np.asarray(jt_tr), offset_test=f0_te - np.asarray(jt_te)
    )
    err_train = relative_error(result.fx_train[0], fx_tr)
    err_test = relative_error(result.fx_test[0], fx_te)
    print(
        f"linearized network, momentum {momentum} {'Nesterov' if nesterov else 'heavy ball'}, {steps} steps: "
        f"train {err_train:.1e}, test {err_test:.1e}"
    )
    assert err_train <= 1e-8 and err_test <= 1e-8


def test_nesterov_differs_from_heavy_ball():
    """The two momentum forms are different updates (θ ← θ − η(g + βv) vs θ ← θ − ηv)."""
    data = load_digits(n_train=16, n_test=8)
    net = fully_connected(1, width=32, out_dim=10)
    runs = [
        train(
            net.init_fn,
            net.apply_fn,
            data.x_train,
            data.y_train,
            TrainConfig(
                learning_rate=0.5, l2=1e-3, steps=20, record_steps=(0, 20), momentum=0.9, nesterov=nest, float64=True
            ),
        ).fx_train[0, -1]
        for nest in (False, True)
    ]
    assert relative_error(runs[0], runs[1]) > 1e-3


def test_divergence_is_reported_not_raised():
    data = load_digits(n_train=32, n_test=8)
    net = fully_connected(2, width=32, out_dim=10)
    result = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(learning_rate=1e4, steps=200, n_records=20),
        seeds=(0, 1),
    )
    assert result.diverged.all() and (result.diverged_at > 0).all()
    assert np.isnan(result.fx_train[:, -1]).all()


def test_seeds_differ_and_records_have_shapes():
    data = load_digits(n_train=32, n_test=16)
    net = fully_connected(1, width=64, out_dim=10)
    result = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(learning_rate=1.0, l2=1e-3, steps=50, record_steps=(0, 25, 50), batch_size=8, momentum=0.5),
        x_test=data.x_test,
        labels_train=data.labels_train,
        labels_test=data.labels_test,
        seeds=(0, 1, 2),
    )
    assert result.fx_train.shape == (3, 3, 32, 10) and result.fx_test.shape == (3, 3, 16, 10)
    assert result.acc_test.shape == (3, 3) and result.layer_norms.shape == (3, 3, 2)
    assert not np.allclose(result.fx_train[0, 0], result.fx_train[1, 0])
    assert not result.diverged.any()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(steps=-1), "steps: must be an integer >= 0"),
        (dict(batch_size=0), "batch_size"),
        (dict(momentum=1.0), "momentum"),
        (dict(nesterov=True), "nesterov: only meaningful with momentum > 0"),
        (dict(momentum=0.5, nesterov="yes"), "nesterov: must be True or False"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(l2=-1.0), "l2"),
        (dict(l2=()), "l2: a grid"),
        (dict(l2=(1e-3, float("nan"))), "l2: a grid"),
        (dict(steps=10, record_steps=(0, 11)), "record_steps"),
        (dict(steps=10, record_steps=()), "record_steps: must hold at least one step"),
        (dict(steps=10, record_steps=(0, 10), ntk_steps=(5,)), "ntk_steps"),
    ],
)
def test_bad_config_names_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("momentum,batch_size", [(0.0, None), (0.5, 8)])
def test_l2_grid_in_one_program_equals_separate_runs(momentum, batch_size):
    """A λ grid is trained as one vmapped ensemble of (λ, seed) members; each member must
    be the run that λ and seed give alone (float64: same operations, so agreement to
    round-off; 1e-10 leaves room for a different reduction order under vmap)."""
    data = load_digits(n_train=32, n_test=16)
    net = fully_connected(2, width=64, out_dim=10)
    grid = (0.0, 1e-3, 3e-2)
    common = dict(
        learning_rate=2.0, steps=30, record_steps=(0, 10, 30), float64=True, momentum=momentum, batch_size=batch_size
    )
    together = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(l2=grid, **common),
        x_test=data.x_test,
        seeds=(0, 1),
    )
    assert together.fx_test.shape[0] == 6
    np.testing.assert_array_equal(together.member_l2, np.repeat(grid, 2))
    np.testing.assert_array_equal(together.member_seed, np.tile([0, 1], 3))
    for member, (lam, seed) in enumerate(zip(together.member_l2, together.member_seed, strict=False)):
        alone = train(
            net.init_fn,
            net.apply_fn,
            data.x_train,
            data.y_train,
            TrainConfig(l2=float(lam), **common),
            x_test=data.x_test,
            seeds=(int(seed),),
        )
        assert relative_error(together.fx_test[member], alone.fx_test[0]) < 1e-10
        if lam > 0:
            assert relative_error(together.loss_l2[member], alone.loss_l2[0]) < 1e-10
        else:
            assert not together.loss_l2[member].any()
    # λ matters: the members differ.
    assert relative_error(together.fx_test[0, -1], together.fx_test[4, -1]) > 1e-3
