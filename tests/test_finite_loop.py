"""The compiled loop (ntk_l2.finite.loop) alone, on a linear model whose gradient is known in closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_l2.finite.loop import Carry, data_loss_grad, make_advance, make_step, sample_batch
from ntk_l2.finite.rules import l2_rule

RNG = np.random.default_rng(1)
X, Y = RNG.standard_normal((12, 4)), RNG.standard_normal((12, 2))


def linear(p, x, p0):
    """f(θ, x) = x W (θ_0 unused)."""
    return x @ p["w"]


def _carry(n_members: int, rule, seed: int = 0) -> Carry:
    w = jnp.asarray(np.random.default_rng(seed).standard_normal((n_members, 4, 2)))
    params = {"w": w}
    keys = jnp.stack([jax.random.PRNGKey(i) for i in range(n_members)])
    return Carry(params, jax.vmap(rule.init)(params), params, keys)


def test_data_loss_grad_is_the_mse_gradient():
    """∇_W ‖XW − Y‖²/(2 Y.size) = Xᵀ(XW − Y)/Y.size."""
    with enable_x64():
        w = RNG.standard_normal((4, 2))
        g = data_loss_grad(linear)({"w": jnp.asarray(w)}, None, jnp.asarray(X), jnp.asarray(Y))
        np.testing.assert_allclose(np.asarray(g["w"]), X.T @ (X @ w - Y) / Y.size, rtol=1e-13)


def test_sample_batch_draws_distinct_matching_rows_from_a_fresh_key():
    x = jnp.arange(20.0).reshape(10, 2)
    y = x[:, :1] * 10
    key, xb, yb = sample_batch(jax.random.PRNGKey(3), x, y, 4)
    assert xb.shape == (4, 2) and len(set(np.asarray(xb[:, 0]).tolist())) == 4
    np.testing.assert_array_equal(np.asarray(yb), np.asarray(xb[:, :1] * 10))
    assert not np.array_equal(np.asarray(key), np.asarray(jax.random.PRNGKey(3)))
    again = sample_batch(jax.random.PRNGKey(3), x, y, 4)
    np.testing.assert_array_equal(np.asarray(again[1]), np.asarray(xb))
    _, other, _ = sample_batch(key, x, y, 4)
    assert not np.array_equal(np.asarray(other), np.asarray(xb))


def test_one_step_is_the_rule_applied_to_the_full_batch_gradient():
    """θ_1 = (1 − ηλ)θ_0 − η Xᵀ(Xθ_0 − Y)/N, the plain L2 rule."""
    eta, lam = 0.1, 0.01
    with enable_x64():
        rule = l2_rule(eta, lam)
        carry = _carry(1, rule)
        one = jax.tree_util.tree_map(lambda a: a[0], carry)
        out = make_step(data_loss_grad(linear), rule, jnp.asarray(X), jnp.asarray(Y), None)(0, one)
    w0 = np.asarray(carry.params["w"][0])
    expected = (1 - eta * lam) * w0 - eta * (X.T @ (X @ w0 - Y) / Y.size)
    np.testing.assert_allclose(np.asarray(out.params["w"]), expected, rtol=1e-13)
    assert int(out.rule_state.count) == 1
    np.testing.assert_array_equal(np.asarray(out.key), np.asarray(one.key))  # full batch: the key is not used


@pytest.mark.parametrize("n_members,batch_size", [(1, None), (3, None), (1, 5), (3, 5)])
def test_segments_compose_and_equal_the_steps_one_by_one(n_members, batch_size):
    """advance(0, 10) = advance(4, 10) ∘ advance(0, 4) bit for bit, = 10 calls of the step body."""
    with enable_x64():
        rule = l2_rule(0.1, 0.01, momentum=0.5)
        step = make_step(data_loss_grad(linear), rule, jnp.asarray(X), jnp.asarray(Y), batch_size)
        advance = make_advance(step, n_members)
        carry = _carry(n_members, rule)
        whole = advance(carry, 0, 10)
        parts = advance(advance(carry, 0, 4), 4, 10)
        by_hand = carry
        for s in range(10):
            by_hand = jax.vmap(lambda c, s=s: step(s, c))(by_hand)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (whole, parts, by_hand)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12, atol=1e-14)
    assert np.all(np.asarray(whole.rule_state.count) == 10)
    moved = np.asarray(whole.params["w"]) - np.asarray(carry.params["w"])
    assert np.all(np.abs(moved).max(axis=(1, 2)) > 1e-3)


def test_members_are_independent():
    """Member i of a vmapped ensemble runs as it would alone (minibatches from its own key)."""
    with enable_x64():
        rule = l2_rule(0.1, 0.01, momentum=0.5)
        step = make_step(data_loss_grad(linear), rule, jnp.asarray(X), jnp.asarray(Y), 5)
        carry = _carry(3, rule)
        together = make_advance(step, 3)(carry, 0, 20)
        alone = make_advance(step, 1)(jax.tree_util.tree_map(lambda a: a[1:2], carry), 0, 20)
    np.testing.assert_allclose(np.asarray(together.params["w"][1]), np.asarray(alone.params["w"][0]), rtol=1e-12)
    assert not np.allclose(np.asarray(together.params["w"][0]), np.asarray(together.params["w"][1]))


def test_progress_bar_names_the_run_and_moves_in_small_steps_without_changing_the_results(monkeypatch):
    """With the bar shown the loop stops every ~1% of the run (same steps, more segments): the results are
    bitwise those of a run without the bar, the bar's label says what runs (label, λ, η, seeds), and no
    update is larger than 1% of the run (before, the last log-spaced segment was a quarter of it)."""
    import ntk_l2.finite.train as train_module
    from ntk_l2 import fully_connected, load_digits
    from ntk_l2.finite.train import TrainConfig, train

    data = load_digits(n_train=32, n_test=16, seed=0)
    net = fully_connected(2, width=64, out_dim=data.n_classes)
    config = TrainConfig(learning_rate=1.0, l2=1e-2, steps=400, n_records=5)
    bars = []
    real = train_module._progress_bar

    def spy(run, progress, desc):
        bar = real(run, progress, desc)
        updates = []
        original = bar.update
        bar.update = lambda n=1: (updates.append(n), original(n))[1]
        bars.append((desc, bar, updates))
        return bar

    monkeypatch.setattr(train_module, "_progress_bar", spy)
    args = (net.init_fn, net.apply_fn, data.x_train, data.y_train, config)
    quiet = train(*args, x_test=data.x_test, seeds=(0, 1), progress=False)
    shown = train(*args, x_test=data.x_test, seeds=(0, 1), progress=True, label="width 64")
    for name in ("fx_train", "fx_test", "loss_data"):
        np.testing.assert_array_equal(getattr(quiet, name), getattr(shown, name))
    desc, _, updates = bars[-1]
    assert desc == "width 64, λ 0.01, η 1, seeds 0–1"
    assert sum(updates) == 400 and max(updates) <= 4
