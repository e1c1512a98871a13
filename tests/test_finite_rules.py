"""Update rules (ntk_l2.finite.rules) alone, and optax transformations as rules of `train`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import enable_x64

from conftest import relative_error
from ntk_l2 import fully_connected, load_digits
from ntk_l2.finite.rules import L2State, UpdateRule, apply_rule, apply_updates, check_rule, l2_rule, set_l2
from ntk_l2.finite.train import TrainConfig, train

RNG = np.random.default_rng(0)
THETA = {"w": RNG.standard_normal((5, 3)), "b": RNG.standard_normal(3)}
GRADS = [{k: RNG.standard_normal(v.shape) for k, v in THETA.items()} for _ in range(3)]


def _run(rule: UpdateRule, steps: int = 3, exact: bool = True) -> tuple[dict, object]:
    """θ after ``steps`` steps with the fixed gradients GRADS, float64."""
    with enable_x64():
        params = jax.tree_util.tree_map(jnp.asarray, THETA)
        state = rule.init(params)
        for g in GRADS[:steps]:
            g = jax.tree_util.tree_map(jnp.asarray, g)
            if exact:
                params, state = apply_rule(rule, g, state, params)
            else:
                updates, state = rule.update(g, state, params)
                params = apply_updates(params, updates)
        return jax.tree_util.tree_map(np.asarray, params), state


def _by_hand(eta, lam, beta=0.0, nesterov=False, steps=3) -> dict:
    """The equations of the module docstring in NumPy, in the same order of operations."""
    out = {}
    for k in THETA:
        p, v = THETA[k].copy(), np.zeros_like(THETA[k])
        for s in range(steps):
            e, la, g = eta(s), lam(s), GRADS[s][k]
            if not beta:
                p = (1 - e * la) * p - e * g
                continue
            v = beta * v + g + la * p
            p = p - e * (g + la * p + beta * v) if nesterov else p - e * v
        out[k] = p
    return out


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.7, True)])
def test_l2_rules_are_the_equations_bit_for_bit(beta, nesterov):
    params, state = _run(l2_rule(0.3, 0.05, beta, nesterov))
    expected = _by_hand(lambda s: 0.3, lambda s: 0.05, beta, nesterov)
    for k in THETA:
        np.testing.assert_array_equal(params[k], expected[k])
    assert int(state.count) == 3 and (state.velocity is None) == (beta == 0.0)


def test_schedules_read_the_step_count():
    eta, lam = (lambda s: 0.5 / (1.0 + s)), (lambda s: jnp.where(s < 2, 0.01, 0.2))
    params, _ = _run(l2_rule(eta, lam, 0.5))
    expected = _by_hand(lambda s: 0.5 / (1.0 + s), lambda s: 0.01 if s < 2 else 0.2, 0.5)
    for k in THETA:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-14, atol=0)
    constant, _ = _run(l2_rule(0.5, 0.01, 0.5))
    assert relative_error(params["w"], constant["w"]) > 1e-2  # the schedules do act


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.7, True)])
def test_update_plus_params_is_the_exact_step_up_to_rounding(beta, nesterov):
    """``update`` (optax semantics, θ + updates) and `apply_rule` (the equations as written) agree to
    round-off; with momentum θ − ηv and θ + (−ηv) are the same floating-point numbers."""
    rule = l2_rule(0.3, 0.05, beta, nesterov)
    exact, _ = _run(rule)
    added, _ = _run(rule, exact=False)
    for k in THETA:
        if beta:
            np.testing.assert_array_equal(added[k], exact[k])
        else:
            np.testing.assert_allclose(added[k], exact[k], rtol=1e-14, atol=1e-15)


def test_l2_in_state_is_changed_between_steps_by_set_l2():
    rule = l2_rule(0.3, 0.05, l2_in_state=True)
    with enable_x64():
        params = jax.tree_util.tree_map(jnp.asarray, THETA)
        state = rule.init(params)
        assert state.l2.dtype == jnp.float64 and float(state.l2) == 0.05
        for s, g in enumerate(GRADS):
            if s == 2:
                state = set_l2(state, 0.4)
            params, state = apply_rule(rule, jax.tree_util.tree_map(jnp.asarray, g), state, params)
    expected = _by_hand(lambda s: 0.3, lambda s: 0.05 if s < 2 else 0.4)
    np.testing.assert_array_equal(np.asarray(params["w"]), expected["w"])
    with pytest.raises(ValueError, match="state: λ is not in this state"):
        set_l2(l2_rule(0.3, 0.05).init(THETA), 0.1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(learning_rate=0.0), "learning_rate: must be a finite number > 0"),
        (dict(learning_rate=float("inf")), "learning_rate"),
        (dict(l2=-1e-3), "l2: must be a finite number >= 0"),
        (dict(momentum=1.0), "momentum: must be in"),
        (dict(nesterov=True), "nesterov: only meaningful"),
        (dict(nesterov=1, momentum=0.5), "nesterov: must be True or False"),
        (dict(l2=lambda s: 0.1, l2_in_state=True), "l2: with l2_in_state"),
    ],
)
def test_bad_rule_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        l2_rule(**{"learning_rate": 0.1, **kwargs})


def test_any_init_update_pair_is_a_rule_and_ours_chain_with_optax():
    assert isinstance(check_rule(optax.adamw(1e-3)), UpdateRule)
    with pytest.raises(ValueError, match="rule: must be an"):
        check_rule(object())
    ours = l2_rule(0.3, 0.05, 0.9)
    chained = optax.chain(optax.clip_by_global_norm(1e9), ours)  # clipping far above |g|: the same rule
    expected, _ = _run(ours, exact=False)
    got, state = _run(chained, exact=False)
    np.testing.assert_array_equal(got["w"], expected["w"])
    assert isinstance(state[1], L2State)


@pytest.fixture(scope="module")
def tiny():
    data = load_digits(n_train=24, n_test=8, seed=2)
    return data, fully_connected(2, width=32, out_dim=data.n_classes)


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_optax_sgd_with_decayed_weights_trains_like_our_l2_rule(tiny, beta, nesterov):
    """optax.sgd(η, β) after optax.add_decayed_weights(λ) is our rule: the same trajectory to round-off
    (float64, 200 steps: ~1e-16 relative); without the decayed weights it is not."""
    data, net = tiny
    eta, lam, steps = 0.5, 1e-2, 200
    common = dict(steps=steps, record_steps=(0, 50, 200), float64=True)
    ours = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(learning_rate=eta, l2=lam, momentum=beta, nesterov=nesterov, **common),
        x_test=data.x_test,
        seeds=(0, 1),
    )
    sgd = optax.sgd(eta, momentum=beta or None, nesterov=nesterov)
    theirs = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(**common),
        x_test=data.x_test,
        seeds=(0, 1),
        rule=optax.chain(optax.add_decayed_weights(lam), sgd),
    )
    for name in ("fx_train", "fx_test", "layer_norms"):
        err = relative_error(getattr(theirs, name), getattr(ours, name))
        assert err < 1e-13, f"{name}: {err:.1e}"
    assert not theirs.loss_l2.any()
    plain = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(**common),
        x_test=data.x_test,
        seeds=(0, 1),
        rule=sgd,
    )
    assert relative_error(plain.fx_test[:, -1], ours.fx_test[:, -1]) > 1e-3


def test_our_rule_given_as_a_rule_is_the_config_run(tiny):
    data, net = tiny
    common = dict(steps=40, record_steps=(0, 20, 40), batch_size=8)
    config_run = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(learning_rate=0.5, l2=1e-2, momentum=0.5, **common),
        seeds=(0, 1),
    )
    rule_run = train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        TrainConfig(**common),
        seeds=(0, 1),
        rule=l2_rule(0.5, 1e-2, 0.5),
    )
    np.testing.assert_array_equal(rule_run.fx_train, config_run.fx_train)


def test_adamw_trains_and_bad_combinations_are_named(tiny):
    data, net = tiny
    config = TrainConfig(steps=100, record_steps=(0, 100))
    result = train(
        net.init_fn, net.apply_fn, data.x_train, data.y_train, config, rule=optax.adamw(1e-3, weight_decay=1e-2)
    )
    assert result.loss_data[0, -1] < 0.5 * result.loss_data[0, 0]
    args = (net.init_fn, net.apply_fn, data.x_train, data.y_train)
    with pytest.raises(ValueError, match="l2: with a rule"):
        train(*args, TrainConfig(l2=1e-3, steps=2), rule=optax.sgd(0.1))
    with pytest.raises(ValueError, match="momentum: with a rule"):
        train(*args, TrainConfig(momentum=0.5, steps=2), rule=optax.sgd(0.1))
    with pytest.raises(ValueError, match="l2_controller: needs the L2 rules"):
        train(*args, TrainConfig(steps=2), rule=optax.sgd(0.1), l2_controller=lambda s, row: None)
