"""Update rules: optax-style ``(init, update)`` pairs, and the exact L2 rules of the theory.

A rule is an `UpdateRule` (the shape of ``optax.GradientTransformation``, so any optax
transformation is one and ours can be chained with optax's): ``state = init(params)`` and
``updates, state = update(grads, state, params)``, with θ_{s+1} = θ_s + updates.

`l2_rule` builds the rules of the theory (`derivations/discrete_time.md`, D1;
`derivations/momentum.md`, M1), with g_s = ∇L(θ_s) + λ_s θ_s, v_0 = 0, η_s = η(s), λ_s = λ(s)::

    θ_{s+1} = (1 − η_s λ_s) θ_s − η_s ∇L(θ_s)                          (plain)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s v_{s+1}                 (heavy ball β)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s (g_s + β v_{s+1})       (Nesterov β, the optax/PyTorch form)

s is the state's step count. λ is a number, a function of s, or held in the state
(``l2_in_state``), where a controller changes it between steps (`set_l2`). `apply_rule`
takes one step: for these rules it evaluates the right-hand sides above as written
(the arithmetic of `ntk_l2.finite.train` since its first version, bit for bit), for any
other rule θ + updates (optax's ``apply_updates``). The plain rule's ``update`` returns
−η_s g_s; θ + (−η_s g_s) and (1 − η_s λ_s)θ − η_s∇L differ in rounding only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Params = Any
Schedule = Callable[[Any], Any]  # step s (traced integer) -> value


class UpdateRule(NamedTuple):
    """A gradient transformation: ``init(params) -> state``, ``update(grads, state, params) -> (updates, state)``.

    θ_{s+1} = θ_s + updates. Field for field the shape of ``optax.GradientTransformation``:
    any optax transformation (``optax.adamw(...)``, ``optax.chain(...)``) is accepted where an
    `UpdateRule` is, and an `UpdateRule` can be given to ``optax.chain``.
    """

    init: Callable[[Params], Any]
    update: Callable[..., tuple[Params, Any]]


class L2State(NamedTuple):
    """State of an `l2_rule`: the step count s, the velocity v_s (None without momentum), and
    λ when it lives in the state (``l2_in_state``; else None)."""

    count: Any
    velocity: Params | None
    l2: Any


def _value(value: float | Schedule, step: Any) -> Any:
    """A schedule's value at ``step``; a number is returned as the Python float itself."""
    return value(step) if callable(value) else value


@dataclass(frozen=True)
class L2Update:
    """The ``update`` of an `l2_rule` (see the module docstring for the equations).

    Attributes:
      learning_rate: η, a number or a function of the step s.
      l2: λ, a number or a function of s; None: λ is read from the state (``L2State.l2``).
      momentum: β (0: plain gradient descent).
      nesterov: the Nesterov form (needs β > 0).
    """

    learning_rate: float | Schedule
    l2: float | Schedule | None
    momentum: float = 0.0
    nesterov: bool = False

    def _rates(self, state: L2State) -> tuple[Any, Any]:
        eta = _value(self.learning_rate, state.count)
        lam = state.l2 if self.l2 is None else _value(self.l2, state.count)
        return eta, lam

    def _velocity(self, grads: Params, state: L2State, params: Params, lam: Any) -> Params:
        """v_{s+1} = β v_s + ∇L + λ θ_s."""
        beta = self.momentum
        return jax.tree_util.tree_map(lambda vi, gi, pi: beta * vi + gi + lam * pi, state.velocity, grads, params)

    def __call__(self, grads: Params, state: L2State, params: Params) -> tuple[Params, L2State]:
        """(θ_{s+1} − θ_s as −η_s × (g_s, v_{s+1} or g_s + β v_{s+1}), the next state); needs ``params``."""
        if params is None:
            raise ValueError("params: the L2 rules need the parameters (λθ)")
        eta, lam = self._rates(state)
        if not self.momentum:
            updates = jax.tree_util.tree_map(lambda gi, pi: -eta * (gi + lam * pi), grads, params)
            return updates, state._replace(count=state.count + 1)
        v = self._velocity(grads, state, params, lam)
        if self.nesterov:
            beta = self.momentum
            updates = jax.tree_util.tree_map(lambda gi, pi, vi: -eta * (gi + lam * pi + beta * vi), grads, params, v)
        else:
            updates = jax.tree_util.tree_map(lambda vi: -eta * vi, v)
        return updates, state._replace(count=state.count + 1, velocity=v)

    def step(self, grads: Params, state: L2State, params: Params) -> tuple[Params, L2State]:
        """(θ_{s+1}, the next state), the right-hand sides of the module docstring evaluated as written."""
        eta, lam = self._rates(state)
        if not self.momentum:
            new = jax.tree_util.tree_map(lambda pi, gi: (1 - eta * lam) * pi - eta * gi, params, grads)
            return new, state._replace(count=state.count + 1)
        v = self._velocity(grads, state, params, lam)
        if self.nesterov:  # θ ← θ − η(g_s + βv_{s+1}), v already updated
            beta = self.momentum
            new = jax.tree_util.tree_map(lambda pi, gi, vi: pi - eta * (gi + lam * pi + beta * vi), params, grads, v)
        else:
            new = jax.tree_util.tree_map(lambda pi, vi: pi - eta * vi, params, v)
        return new, state._replace(count=state.count + 1, velocity=v)


def _check(name: str, value: Any, positive: bool) -> None:
    if callable(value):
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(
            f"{name}: must be a finite number {'> 0' if positive else '>= 0'} or a function of the step, got {value!r}"
        )


def l2_rule(
    learning_rate: float | Schedule,
    l2: float | Schedule = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    *,
    l2_in_state: bool = False,
) -> UpdateRule:
    """The L2 rule of the theory: plain gradient descent, heavy ball or Nesterov (module docstring).

    Args:
      learning_rate: η, a number > 0 or a function of the step s.
      l2: λ >= 0, a number or a function of s; with ``l2_in_state`` the initial λ (a number).
      momentum: β ∈ [0, 1).
      nesterov: the Nesterov form (needs ``momentum`` > 0).
      l2_in_state: keep λ in the state (``L2State.l2``, in the parameters' dtype), so that it can be
        changed during a run with `set_l2`, or differ between vmapped ensemble members.
    """
    _check("learning_rate", learning_rate, positive=True)
    _check("l2", l2, positive=False)
    if not (isinstance(momentum, (int, float, np.integer, np.floating)) and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov: must be True or False, got {nesterov!r}")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov: only meaningful with momentum > 0")
    if l2_in_state and callable(l2):
        raise ValueError("l2: with l2_in_state, the initial λ must be a number")
    l2_number = float(l2) if not callable(l2) else l2
    update = L2Update(
        learning_rate if callable(learning_rate) else float(learning_rate),
        None if l2_in_state else l2_number,
        float(momentum),
        bool(nesterov),
    )

    def init(params: Params) -> L2State:
        leaves = jax.tree_util.tree_leaves(params)
        dtype = leaves[0].dtype if leaves else jnp.result_type(float)
        velocity = jax.tree_util.tree_map(jnp.zeros_like, params) if update.momentum else None
        return L2State(jnp.zeros((), int), velocity, jnp.asarray(l2_number, dtype) if l2_in_state else None)

    return UpdateRule(init, update)


def set_l2(state: L2State, l2: Any) -> L2State:
    """The state with λ replaced (a rule made with ``l2_in_state``); λ keeps the state's dtype and shape."""
    if not isinstance(state, L2State) or state.l2 is None:
        raise ValueError("state: λ is not in this state (make the rule with l2_rule(..., l2_in_state=True))")
    return state._replace(l2=jnp.broadcast_to(jnp.asarray(l2, state.l2.dtype), jnp.shape(state.l2)))


def check_rule(rule: Any) -> UpdateRule:
    """``rule`` as an `UpdateRule`: an object with callable ``init`` and ``update`` (an optax transformation)."""
    if not (callable(getattr(rule, "init", None)) and callable(getattr(rule, "update", None))):
        raise ValueError(f"rule: must be an (init, update) pair such as an optax GradientTransformation, got {rule!r}")
    return rule if isinstance(rule, UpdateRule) else UpdateRule(rule.init, rule.update)


def apply_updates(params: Params, updates: Params) -> Params:
    """θ + updates, in θ's dtype (what ``optax.apply_updates`` does)."""
    return jax.tree_util.tree_map(lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, updates)


def apply_rule(rule: UpdateRule, grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
    """One step: (θ_{s+1}, next state). `L2Update` rules take their exact `L2Update.step`; others θ + updates."""
    if isinstance(rule.update, L2Update):
        return rule.update.step(grads, state, params)
    updates, state = rule.update(grads, state, params)
    return apply_updates(params, updates), state
