"""The compiled training loop: steps between two records run inside one `jax.lax.fori_loop`.

One step s → s + 1 of every ensemble member (`make_step`)::

    (X_B, Y_B) = the whole training set, or B of its n points drawn without replacement with a
                 fresh key: key, sub = split(key); idx = choice(sub, n, (B,), replace=False)
    g          = ∇_θ L(θ_s; X_B, Y_B),   L = ‖f(θ; X_B) − Y_B‖² / (2 N_B),  N_B = Y_B.size
    θ_{s+1}, state_{s+1} = ntk_l2.finite.rules.apply_rule(rule, g, state_s, θ_s)

`make_advance` compiles ``advance(carry, start, stop)``, the steps start … stop − 1 with traced
bounds (one compilation serves every segment), vmapped over the members; running [a, b) then
[b, c) is the same computation as [a, c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ntk_l2.finite.rules import UpdateRule, apply_rule

Params = Any
LossGrad = Callable[[Params, Params, Any, Any], Params]  # (θ, θ_0, X_B, Y_B) -> ∇_θ L


class Carry(NamedTuple):
    """What the loop carries, per member: θ_s, the rule's state, θ_0 (for a linearized network) and
    the minibatch sampler's key."""

    params: Params
    rule_state: Any
    params0: Params
    key: jax.Array


def data_loss_grad(f: Callable[[Params, Any, Params], Any]) -> LossGrad:
    """∇_θ of L(θ) = ‖f(θ, X; θ_0) − Y‖² / (2 Y.size), as ``grad(θ, θ_0, X, Y)``."""

    def data_loss(p: Params, p0: Params, xb: Any, yb: Any) -> Any:
        return 0.5 * jnp.sum(jnp.square(f(p, xb, p0) - yb)) / yb.size

    return jax.grad(data_loss)


def sample_batch(key: jax.Array, x: Any, y: Any, batch_size: int) -> tuple[jax.Array, Any, Any]:
    """(next key, X_B, Y_B): B = ``batch_size`` points without replacement, from a subkey of ``key``."""
    key, sub = jax.random.split(key)
    idx = jax.random.choice(sub, y.shape[0], (batch_size,), replace=False)
    return key, x[idx], y[idx]


def make_step(
    loss_grad: LossGrad, rule: UpdateRule, x: Any, y: Any, batch_size: int | None
) -> Callable[[Any, Carry], Carry]:
    """The body of the loop, ``step(s, carry) -> carry`` (s unused: schedules read the rule's count).

    ``batch_size`` None: full-batch gradient descent; else minibatch SGD (`sample_batch`).
    """

    def step(_: Any, carry: Carry) -> Carry:
        params, state, params0, key = carry
        if batch_size is None:
            xb, yb = x, y
        else:
            key, xb, yb = sample_batch(key, x, y, batch_size)
        grads = loss_grad(params, params0, xb, yb)
        params, state = apply_rule(rule, grads, state, params)
        return Carry(params, state, params0, key)

    return step


def make_advance(step: Callable[[Any, Carry], Carry], n_members: int) -> Callable[[Carry, Any, Any], Carry]:
    """Compiled ``advance(carry, start, stop)``: ``step`` applied for s = start … stop − 1 to every member.

    The carry has a leading member axis. A single member runs without `jax.vmap`: batched GEMMs
    of batch 1 cost XLA weight transposes (`benchmarks/bench_train.py` measures the difference).
    """

    @jax.jit
    def advance(carry: Carry, start: Any, stop: Any) -> Carry:
        if n_members == 1:
            one = jax.lax.fori_loop(start, stop, step, jax.tree_util.tree_map(lambda a: a[0], carry))
            return jax.tree_util.tree_map(lambda a: a[None], one)
        return jax.vmap(lambda c: jax.lax.fori_loop(start, stop, step, c))(carry)

    return advance
