"""L2 on scale-invariant parameters is an exponentially growing learning rate (Li & Arora 2019).

If the loss is unchanged when the group A of parameters L2 acts on is scaled, L(cθ_A, θ_B) =
L(θ_A, θ_B) for c > 0, then heavy-ball gradient descent with L2 on A (our convention, v_0 = 0,
`ntk_l2.finite.rules.l2_rule`)::

    v_{s+1} = β v_s + ∇L(θ_s) + λ θ_{A,s},   θ_{s+1} = θ_s − η v_{s+1}

is, exactly, heavy-ball gradient descent without L2 whose learning rate on A grows as
η̃_s = η α^{−2s−1}, with α the larger root of x² − (1 + β − ηλ)x + β = 0 (α = 1 − ηλ for β = 0),
started from the velocity v̂_0 = −(1 − α)θ_{A,0}/(αη): its parameters are θ̃_{A,s} = θ_{A,s}/α^s,
θ̃_{B,s} = θ_{B,s}, and its outputs are the same (`derivations/scale_invariant.md`, SI1–SI2). The
parameters B outside L2 (a readout) keep the rate η in both runs, or are not trained. With L2 on a
readout, which is not scale-invariant, the equivalence breaks (SI3).

`compare_trainings` runs both in float64 (one compiled loop each) and records the outputs; the
largest relative difference of the outputs over the run is `EquivalenceResult.max_relative_difference`
(`equivalence_gap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from numpy.typing import NDArray

__all__ = [
    "READOUT_MODES",
    "EquivalenceConfig",
    "EquivalenceResult",
    "compare_trainings",
    "equivalence_gap",
    "exponential_learning_rates",
    "li_arora_alpha",
    "map_state",
]

Params = Any
READOUT_MODES = ("fixed", "excluded", "l2")


def li_arora_alpha(learning_rate: float, l2: float, momentum: float = 0.0) -> float:
    """α, the larger root of x² − (1 + β − ηλ)x + β = 0 (`derivations/scale_invariant.md`, SI2).

    β = 0: α = 1 − ηλ (SI1). The root is real when ηλ ≤ (1 − √β)²; a ValueError names the
    argument otherwise.
    """
    for name, value in (("learning_rate", learning_rate), ("l2", l2)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    if learning_rate == 0:
        raise ValueError("learning_rate: must be > 0, got 0")
    if not (isinstance(momentum, (int, float, np.floating)) and 0 <= momentum < 1):
        raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")
    b = 1.0 + momentum - learning_rate * l2
    disc = b * b - 4.0 * momentum
    if disc < 0 or b <= 0:
        raise ValueError(
            f"l2: ηλ = {learning_rate * l2:g} exceeds (1 − √β)² = {(1 - math.sqrt(momentum)) ** 2:g}; no real α (SI2)"
        )
    return 0.5 * (b + math.sqrt(disc))


def exponential_learning_rates(learning_rate: float, alpha: float, steps: int) -> NDArray[np.float64]:
    """η̃_s = η α^{−2s−1} for s = 0, …, steps − 1 (`derivations/scale_invariant.md`, SI1)."""
    s = np.arange(steps, dtype=np.float64)
    return learning_rate * np.exp(-(2.0 * s + 1.0) * math.log(alpha))


def map_state(
    params: Params, velocity: Params, mask: Params, step: int, learning_rate: float, alpha: float
) -> tuple[Params, Params]:
    """(θ̃_s, v̂_s) of the exponential-schedule run from the state (θ_s, v_s) of the L2 run (SI2).

    On the leaves of ``mask`` (the L2 group A): θ̃_s = θ_s/α^s and
    v̂_s = α^{s−1}(α v_s − (1 − α)θ_s/η); elsewhere both are unchanged. At s = 0 with v_0 = 0
    this is the initial velocity v̂_0 = −(1 − α)θ_0/(αη).
    """

    def theta(p: Any, m: bool) -> Any:
        return p / alpha**step if m else p

    def vel(v: Any, p: Any, m: bool) -> Any:
        return alpha ** (step - 1) * (alpha * v - (1 - alpha) * p / learning_rate) if m else v

    return (
        jax.tree_util.tree_map(theta, params, mask),
        jax.tree_util.tree_map(vel, velocity, params, mask),
    )


@dataclass(frozen=True)
class EquivalenceConfig:
    """One comparison of the two trainings.

    Attributes:
      learning_rate: η > 0.
      l2: λ >= 0, on the scale-invariant leaves (and on the readout when ``readout="l2"``).
      momentum: β ∈ [0, 1), heavy ball; needs ηλ ≤ (1 − √β)².
      steps: number of steps S.
      readout: "fixed" (the readout is not trained), "excluded" (trained at rate η without L2 in
        both runs) or "l2" (trained with L2, and scheduled like the rest in the second run: the
        case where the equivalence fails, SI3).
      record_every: record the outputs every this many steps (must divide ``steps``).
    """

    learning_rate: float
    l2: float
    momentum: float = 0.0
    steps: int = 1000
    readout: str = "excluded"
    record_every: int = 1

    def __post_init__(self) -> None:
        li_arora_alpha(self.learning_rate, self.l2, self.momentum)  # validates η, λ, β
        if self.readout not in READOUT_MODES:
            raise ValueError(f"readout: must be one of {READOUT_MODES}, got {self.readout!r}")
        for name in ("steps", "record_every"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.steps % self.record_every:
            raise ValueError(f"record_every: must divide steps={self.steps}, got {self.record_every}")

    @property
    def alpha(self) -> float:
        """α of `li_arora_alpha`."""
        return li_arora_alpha(self.learning_rate, self.l2, self.momentum)


@dataclass(frozen=True)
class EquivalenceResult:
    """Outputs of the two trainings at the record steps, and their relative difference.

    Attributes:
      steps: (R,) record steps.
      outputs_l2, outputs_schedule: (R, n, c) outputs f(θ_s, x) of the L2 run and f(θ̃_s, x) of the
        exponential-schedule run.
      relative_difference: (R,) ‖f(θ̃_s) − f(θ_s)‖/‖f(θ_s)‖ (Frobenius norms); inf where a run diverged.
      final_state_difference: at s = S, the largest relative difference between (θ̃_S, v̂_S) and
        `map_state` of the L2 run's (θ_S, v_S), over the leaves (SI2).
      alpha: α.
      config: the `EquivalenceConfig`.
    """

    steps: NDArray[np.int64]
    outputs_l2: NDArray[np.float64]
    outputs_schedule: NDArray[np.float64]
    relative_difference: NDArray[np.float64]
    final_state_difference: float
    alpha: float
    config: EquivalenceConfig

    @property
    def max_relative_difference(self) -> float:
        """max_s ‖f(θ̃_s) − f(θ_s)‖/‖f(θ_s)‖ over the run."""
        return float(np.max(self.relative_difference))


@partial(jax.jit, static_argnames=("apply_fn", "treedef", "decay", "train", "scheduled", "records", "every"))
def _heavy_ball(
    leaves: list[Any],
    velocity: list[Any],
    x: Any,
    y: Any,
    rates: Any,
    *,
    apply_fn: Callable[..., Any],
    treedef: Any,
    decay: tuple[bool, ...],
    train: tuple[bool, ...],
    scheduled: tuple[bool, ...],
    records: int,
    every: int,
) -> tuple[Any, tuple[list[Any], list[Any]]]:
    """Heavy ball per leaf: v ← βv + ∇L + λθ (λ on ``decay`` leaves), θ ← θ − η_s v with
    η_s = η α^{−2s−1} on ``scheduled`` leaves, η elsewhere; frozen leaves where not ``train``.
    ``rates`` = (η, λ, β, log α). Returns the outputs at steps 0, every, 2·every, … and the final state."""
    eta, lam, beta, log_alpha = rates

    def loss(ls: list[Any]) -> Any:
        return jnp.sum((apply_fn(jax.tree_util.tree_unflatten(treedef, ls), x) - y) ** 2) / (2 * y.size)

    def step(s: Any, carry: tuple[list[Any], list[Any]]) -> tuple[list[Any], list[Any]]:
        ls, vs = carry
        grads = jax.grad(loss)(ls)
        grown = eta * jnp.exp(-(2 * s + 1) * log_alpha)
        new_l, new_v = [], []
        for p, v, g, d, t, sc in zip(ls, vs, grads, decay, train, scheduled, strict=True):
            if t:
                v = beta * v + g + lam * p if d else beta * v + g
                p = p - (grown if sc else eta) * v
            new_l.append(p)
            new_v.append(v)
        return new_l, new_v

    def record(carry: tuple[list[Any], list[Any]], r: Any) -> tuple[tuple[list[Any], list[Any]], Any]:
        carry = jax.lax.fori_loop(r * every, (r + 1) * every, step, carry)
        return carry, apply_fn(jax.tree_util.tree_unflatten(treedef, carry[0]), x)

    f0 = apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), x)
    carry, fs = jax.lax.scan(record, (leaves, velocity), jnp.arange(records))
    return jnp.concatenate([f0[None], fs]), carry


def _run(
    apply_fn: Callable[..., Any],
    params: Params,
    velocity: Params,
    x: Any,
    y: Any,
    config: EquivalenceConfig,
    flags: tuple[tuple[bool, ...], tuple[bool, ...], tuple[bool, ...]],
) -> tuple[Any, Params, Params]:
    """One training in float64 (call inside ``enable_x64``): outputs (R, n, c), final θ and v."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rates = jnp.asarray([config.learning_rate, config.l2, config.momentum, math.log(config.alpha)], dtype=jnp.float64)
    out, (ls, vs) = _heavy_ball(
        [jnp.asarray(p, jnp.float64) for p in leaves],
        [jnp.asarray(v, jnp.float64) for v in jax.tree_util.tree_leaves(velocity)],
        jnp.asarray(x, jnp.float64),
        jnp.asarray(y, jnp.float64),
        rates,
        apply_fn=apply_fn,
        treedef=treedef,
        decay=flags[0],
        train=flags[1],
        scheduled=flags[2],
        records=config.steps // config.record_every,
        every=config.record_every,
    )
    return np.asarray(out), jax.tree_util.tree_unflatten(treedef, ls), jax.tree_util.tree_unflatten(treedef, vs)


def _flags(params: Params, mask: Params, readout: str) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """(L2 group, trained leaves) as one bool per leaf: the group is the mask (+ the readout for "l2")."""
    group = [bool(m) for m in jax.tree_util.tree_leaves(mask)]
    if len(group) != len(jax.tree_util.tree_leaves(params)):
        raise ValueError("mask: must have one bool per leaf of params")
    if not any(group):
        raise ValueError("mask: marks no leaf")
    trained = tuple(True if readout != "fixed" else g for g in group)
    if readout == "l2":
        group = [True] * len(group)
    return tuple(group), trained


def compare_trainings(
    apply_fn: Callable[..., Any], params: Params, x: Any, y: Any, mask: Params, config: EquivalenceConfig
) -> EquivalenceResult:
    """Train with L2 at rate η, and without L2 at rate η̃_s = η α^{−2s−1} from v̂_0, both in float64.

    ``mask`` (bools matching ``params``, e.g. `ntk_l2.networks.scale_invariant.scale_invariant_mask`)
    is the scale-invariant group A; the other leaves form the readout, treated as
    ``config.readout`` says. Loss L = ‖f(θ, x) − y‖²/(2N), N = y.size, full batch. For a loss
    scale-invariant in A the outputs agree to rounding (`derivations/scale_invariant.md`, SI1–SI2);
    with ``readout="l2"`` they do not (SI3).
    """
    group, trained = _flags(params, mask, config.readout)
    none = tuple(False for _ in group)
    alpha = config.alpha
    group_tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), list(group))
    with enable_x64():
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        out_l2, theta, vel = _run(apply_fn, params, zeros, x, y, config, (group, trained, none))
        _, v0 = map_state(params, zeros, group_tree, 0, config.learning_rate, alpha)
        out_sched, theta_s, vel_s = _run(apply_fn, params, v0, x, y, config, (none, trained, group))
        mapped = map_state(theta, vel, group_tree, config.steps, config.learning_rate, alpha)
        gaps = [
            float(jnp.linalg.norm(a - b) / max(float(jnp.linalg.norm(b)), 1e-300))
            for a, b in zip(jax.tree_util.tree_leaves((theta_s, vel_s)), jax.tree_util.tree_leaves(mapped), strict=True)
        ]
        state_gap = max(gaps) if all(math.isfinite(g) for g in gaps) else math.inf
    diff = np.linalg.norm((out_sched - out_l2).reshape(len(out_l2), -1), axis=1)
    with np.errstate(invalid="ignore"):
        rel = diff / np.linalg.norm(out_l2.reshape(len(out_l2), -1), axis=1)
    rel = np.where(np.isfinite(rel), rel, np.inf)  # a diverged run: infinitely far
    return EquivalenceResult(
        steps=np.arange(0, config.steps + 1, config.record_every, dtype=np.int64),
        outputs_l2=out_l2,
        outputs_schedule=out_sched,
        relative_difference=rel,
        final_state_difference=state_gap,
        alpha=alpha,
        config=config,
    )


def equivalence_gap(
    apply_fn: Callable[..., Any], params: Params, x: Any, y: Any, mask: Params, config: EquivalenceConfig
) -> float:
    """max_s ‖f(θ̃_s) − f(θ_s)‖/‖f(θ_s)‖ of `compare_trainings` (SI1–SI3)."""
    return compare_trainings(apply_fn, params, x, y, mask, config).max_relative_difference
