"""The equilibrium of scale-invariant weights under SGD with L2 (Wan et al. 2020; Li, Lyu & Arora 2020).

For a group w of parameters the loss is invariant to scaling, ⟨w, ∇_w L⟩ = 0 and ∇L(cw) = ∇L(w)/c.
One step of SGD with L2 then balances the norm (`derivations/scale_invariant.md`, SI4)::

    ‖w_{t+1}‖² = (1 − ηλ)²‖w_t‖² + η²‖g_t‖²                        (β = 0, exactly)

the norm settles where growth from the gradients balances the decay, and the angular update per step
Δ_t = arccos(⟨w_t, w_{t+1}⟩/(‖w_t‖‖w_{t+1}‖)) tends to (SI5)::

    Δ* = arccos(1 − ηλ/(1 + β)) ≈ √(2ηλ/(1 + β))                  (heavy ball β)

in ~(1 − β)/(4ηλ) steps (‖w‖⁴ relaxes as e^{−4ηλt/(1−β)}, SI6), whatever the gradients' size. The
effective learning rate of the group is η/‖w‖².

Measurements: `group_norms`, `effective_learning_rates`, `angular_updates`; a training loop recording
them at every step (`train_equilibrium`, heavy-ball minibatch SGD with L2); the window statistics
(`window_statistics`); and `spherical_random_walk`, the model the derivation assumes (gradients of
random direction orthogonal to w and of size ∝ 1/‖w‖).
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

from ntk_l2.networks.scale_invariant import scale_invariant_groups

__all__ = [
    "EquilibriumConfig",
    "EquilibriumRun",
    "WindowStatistics",
    "angular_updates",
    "effective_learning_rates",
    "group_norms",
    "norm_balance",
    "predicted_angular_update",
    "relaxation_steps",
    "rescale_groups",
    "spherical_random_walk",
    "stationary_angular_update",
    "train_equilibrium",
    "window_statistics",
]

Params = Any
Groups = tuple[tuple[int, ...], ...]


def _check_rates(learning_rate: float, l2: float, momentum: float) -> None:
    for name, value in (("learning_rate", learning_rate), ("l2", l2)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    if not (isinstance(momentum, (int, float, np.floating)) and 0 <= momentum < 1):
        raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")


def predicted_angular_update(learning_rate: float, l2: float, momentum: float = 0.0) -> float:
    """√(2ηλ/(1 + β)), the equilibrium angular update per step to leading order in ηλ (SI5)."""
    _check_rates(learning_rate, l2, momentum)
    return math.sqrt(2 * learning_rate * l2 / (1 + momentum))


def stationary_angular_update(learning_rate: float, l2: float, momentum: float = 0.0) -> float:
    """arccos(1 − ηλ/(1 + β)), the angular update of a stationary norm, exactly (SI5)."""
    _check_rates(learning_rate, l2, momentum)
    return math.acos(1 - learning_rate * l2 / (1 + momentum))


def relaxation_steps(learning_rate: float, l2: float, momentum: float = 0.0) -> float:
    """(1 − β)/(4ηλ): the time constant of ‖w‖⁴ (and so of Δ_t) towards equilibrium (SI6)."""
    _check_rates(learning_rate, l2, momentum)
    return (1 - momentum) / (4 * learning_rate * l2)


def norm_balance(norm_sq: Any, grad_norm_sq: Any, learning_rate: float, l2: float) -> Any:
    """(1 − ηλ)²‖w_t‖² + η²‖g_t‖², which is ‖w_{t+1}‖² for β = 0 when g_t ⊥ w_t (SI4)."""
    return (1 - learning_rate * l2) ** 2 * norm_sq + learning_rate**2 * grad_norm_sq


def _group_vectors(leaves: list[Any], groups: Groups) -> list[list[Any]]:
    return [[leaves[i] for i in g] for g in groups]


def _norms(leaves: list[Any], groups: Groups) -> Any:
    return jnp.stack([jnp.sqrt(sum(jnp.sum(p**2) for p in g)) for g in _group_vectors(leaves, groups)])


def _angles(before: list[Any], after: list[Any], groups: Groups) -> Any:
    """2 arcsin(‖â − b̂‖/2) per group: the angle between the two group vectors, accurate for small angles."""
    nb, na = _norms(before, groups), _norms(after, groups)
    out = []
    for k, g in enumerate(groups):
        dist = jnp.sqrt(sum(jnp.sum((after[i] / na[k] - before[i] / nb[k]) ** 2) for i in g))
        out.append(2 * jnp.arcsin(jnp.minimum(dist / 2, 1.0)))
    return jnp.stack(out)


def group_norms(params: Params, mask: Params) -> NDArray[np.floating]:
    """‖w_G‖ for each scale-invariant group G (the masked leaves of a layer; `scale_invariant_groups`; SI4)."""
    groups = tuple(scale_invariant_groups(params, mask))
    return np.asarray(_norms(jax.tree_util.tree_leaves(params), groups))


def effective_learning_rates(learning_rate: float, norms: Any) -> NDArray[np.floating]:
    """η/‖w_G‖², the rate at which a scale-invariant group's direction moves per unit gradient (SI4)."""
    return learning_rate / np.asarray(norms, dtype=np.float64) ** 2


def angular_updates(before: Params, after: Params, mask: Params) -> NDArray[np.floating]:
    """Δ_G = arccos(⟨w, w'⟩/(‖w‖‖w'‖)) for each scale-invariant group between two parameter sets (SI5)."""
    groups = tuple(scale_invariant_groups(before, mask))
    return np.asarray(_angles(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), groups))


def rescale_groups(params: Params, mask: Params, norm: float) -> Params:
    """``params`` with every scale-invariant group scaled to ‖w_G‖ = ``norm``: the same function (SI1),
    with the initial effective learning rate η/norm² (so the run starts nearer its equilibrium)."""
    if not (isinstance(norm, (int, float, np.floating)) and math.isfinite(norm) and norm > 0):
        raise ValueError(f"norm: must be a finite number > 0, got {norm!r}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    factor = {}
    for group in scale_invariant_groups(params, mask):
        current = math.sqrt(sum(float(jnp.sum(jnp.asarray(leaves[i]) ** 2)) for i in group))
        factor.update({i: norm / current for i in group})
    return jax.tree_util.tree_unflatten(treedef, [p * factor[i] if i in factor else p for i, p in enumerate(leaves)])


@dataclass(frozen=True)
class EquilibriumConfig:
    """Heavy-ball SGD with L2 (the rule of `ntk_l2.finite.rules.l2_rule`, v_0 = 0) recorded at every step.

    Attributes:
      learning_rate: η > 0.
      l2: λ > 0 on the scale-invariant groups.
      momentum: β ∈ [0, 1).
      steps: number of steps.
      batch_size: minibatch size (drawn without replacement at every step); None: full batch.
      l2_readout: L2 on the readout (the leaves outside the mask) too.
      chunk: steps per compiled chunk.
      seed: seed of the minibatch draws.
      float64: train in float64.
    """

    learning_rate: float
    l2: float
    momentum: float = 0.0
    steps: int = 1000
    batch_size: int | None = 128
    l2_readout: bool = True
    chunk: int = 500
    seed: int = 0
    float64: bool = False

    def __post_init__(self) -> None:
        _check_rates(self.learning_rate, self.l2, self.momentum)
        for name in ("steps", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")


@dataclass(frozen=True)
class EquilibriumRun:
    """Per-step records of `train_equilibrium` (G scale-invariant groups, S steps).

    Attributes:
      group_norms: (S + 1, G) ‖w_t‖ for t = 0, …, S.
      grad_norms: (S, G) ‖∇_w L_t‖ of the (minibatch) data loss at step t.
      angular_updates: (S, G) Δ_t between w_t and w_{t+1}.
      loss: (S,) the (minibatch) data loss at step t.
      train_accuracy, test_accuracy: accuracy of the final network (test: None without test data).
      config: the `EquilibriumConfig`.
    """

    group_norms: NDArray[np.float64]
    grad_norms: NDArray[np.float64]
    angular_updates: NDArray[np.float64]
    loss: NDArray[np.float64]
    train_accuracy: float
    test_accuracy: float | None
    config: EquilibriumConfig

    @property
    def effective_learning_rates(self) -> NDArray[np.float64]:
        """(S + 1, G) η/‖w_t‖²."""
        return effective_learning_rates(self.config.learning_rate, self.group_norms)


@dataclass(frozen=True)
class WindowStatistics:
    """Angular updates over steps [start, stop): per group mean and root mean square, against SI5.

    ``ratio_mean`` = mean/√(2ηλ/(1+β)) and ``ratio_rms`` likewise (per group); the derivation
    predicts the mean square E[Δ²] (SI5), the mean is below the RMS by Jensen's inequality.
    """

    start: int
    stop: int
    mean: NDArray[np.float64]
    rms: NDArray[np.float64]
    predicted: float
    stationary: float

    @property
    def ratio_mean(self) -> NDArray[np.float64]:
        return self.mean / self.predicted

    @property
    def ratio_rms(self) -> NDArray[np.float64]:
        return self.rms / self.predicted


def window_statistics(run: EquilibriumRun, start: int, stop: int | None = None) -> WindowStatistics:
    """The `WindowStatistics` of ``run`` over steps [start, stop) (default: to the end)."""
    stop = len(run.angular_updates) if stop is None else stop
    if not (0 <= start < stop <= len(run.angular_updates)):
        raise ValueError(f"start: need 0 <= start < stop <= {len(run.angular_updates)}, got {start}, {stop}")
    window = run.angular_updates[start:stop]
    c = run.config
    return WindowStatistics(
        start=start,
        stop=stop,
        mean=window.mean(axis=0),
        rms=np.sqrt((window**2).mean(axis=0)),
        predicted=predicted_angular_update(c.learning_rate, c.l2, c.momentum),
        stationary=stationary_angular_update(c.learning_rate, c.l2, c.momentum),
    )


@partial(jax.jit, static_argnames=("apply_fn", "treedef", "decay", "groups", "batch", "length"))
def _chunk(
    carry: tuple[list[Any], list[Any]],
    x: Any,
    y: Any,
    key: Any,
    start: Any,
    rates: Any,
    *,
    apply_fn: Callable[..., Any],
    treedef: Any,
    decay: tuple[bool, ...],
    groups: Groups,
    batch: int | None,
    length: int,
) -> tuple[tuple[list[Any], list[Any]], tuple[Any, ...]]:
    """``length`` heavy-ball steps v ← βv + ∇L_B + λθ (λ on ``decay`` leaves), θ ← θ − ηv, recording
    the loss, ‖w_{t+1}‖, ‖∇_w L‖ and Δ_t per group at every step."""
    eta, lam, beta = rates

    def loss(ls: list[Any], xb: Any, yb: Any) -> Any:
        return jnp.sum((apply_fn(jax.tree_util.tree_unflatten(treedef, ls), xb) - yb) ** 2) / (2 * yb.size)

    def step(c: tuple[list[Any], list[Any]], s: Any) -> tuple[tuple[list[Any], list[Any]], tuple[Any, ...]]:
        ls, vs = c
        if batch is None:
            xb, yb = x, y
        else:
            idx = jax.random.permutation(jax.random.fold_in(key, s), x.shape[0])[:batch]
            xb, yb = x[idx], y[idx]
        value, grads = jax.value_and_grad(loss)(ls, xb, yb)
        vs = [beta * v + g + lam * p if d else beta * v + g for v, g, p, d in zip(vs, grads, ls, decay, strict=True)]
        new = [p - eta * v for p, v in zip(ls, vs, strict=True)]
        return (new, vs), (value, _norms(new, groups), _norms(grads, groups), _angles(ls, new, groups))

    return jax.lax.scan(step, carry, start + jnp.arange(length))


def _accuracy(apply_fn: Callable[..., Any], params: Params, x: Any, labels: Any) -> float:
    return float(np.mean(np.argmax(np.asarray(apply_fn(params, x)), axis=1) == np.asarray(labels)))


def train_equilibrium(
    apply_fn: Callable[..., Any],
    params: Params,
    x: Any,
    y: Any,
    mask: Params,
    config: EquilibriumConfig,
    *,
    labels: Any = None,
    x_test: Any = None,
    labels_test: Any = None,
) -> EquilibriumRun:
    """Train with heavy-ball (minibatch) SGD and L2, L = ‖f − y‖²/(2N) on the batch, recording the
    norm, gradient norm and angular update of every scale-invariant group at every step (SI4–SI6).

    ``mask`` marks the scale-invariant leaves (`ntk_l2.networks.scale_invariant.scale_invariant_mask`);
    L2 acts on them, and on the other leaves if ``config.l2_readout``. ``labels`` (default: argmax of
    ``y``) and ``x_test``/``labels_test`` give the final accuracies.
    """
    groups = tuple(scale_invariant_groups(params, mask))
    if not groups:
        raise ValueError("mask: marks no leaf")
    if config.batch_size is not None and config.batch_size > len(x):
        raise ValueError(f"batch_size: must be <= the {len(x)} training points, got {config.batch_size}")
    flags = tuple(bool(m) or config.l2_readout for m in jax.tree_util.tree_leaves(mask))
    dtype = jnp.float64 if config.float64 else jnp.float32
    with enable_x64(config.float64):
        leaves, treedef = jax.tree_util.tree_flatten(jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params))
        carry = (leaves, [jnp.zeros_like(p) for p in leaves])
        xs, ys = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
        rates = jnp.asarray([config.learning_rate, config.l2, config.momentum], dtype)
        key = jax.random.PRNGKey(config.seed)
        parts, done = [], 0
        while done < config.steps:
            length = min(config.chunk, config.steps - done)
            carry, rec = _chunk(
                carry, xs, ys, key, done, rates,
                apply_fn=apply_fn, treedef=treedef, decay=flags, groups=groups,
                batch=config.batch_size, length=length,
            )  # fmt: skip
            parts.append([np.asarray(r, np.float64) for r in rec])
            done += length
        final = jax.tree_util.tree_unflatten(treedef, carry[0])
        labels = np.argmax(np.asarray(y), axis=1) if labels is None else labels
        train_acc = _accuracy(apply_fn, final, xs, labels)
        test_acc = None if x_test is None else _accuracy(apply_fn, final, jnp.asarray(x_test, dtype), labels_test)
        norm0 = np.asarray(_norms(leaves, groups), np.float64)[None]
    loss, norms, grad_norms, angles = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return EquilibriumRun(
        group_norms=np.concatenate([norm0, norms]),
        grad_norms=grad_norms,
        angular_updates=angles,
        loss=loss,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        config=config,
    )


def spherical_random_walk(
    dim: int, steps: int, learning_rate: float, l2: float, momentum: float = 0.0, *, norm0: float = 1.0, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The model of SI4–SI6: heavy ball with L2 on w ∈ R^dim with gradients g_t = P_⊥ ξ_t/‖w_t‖,
    ξ_t ~ N(0, I/dim) independent, P_⊥ the projection orthogonal to w_t (a scale-invariant loss
    whose gradient is pure noise). Returns (‖w_t‖ for t = 0..steps, Δ_t for t = 0..steps − 1)."""
    _check_rates(learning_rate, l2, momentum)
    if not isinstance(dim, int) or dim < 2 or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"dim: need integers dim >= 2 and steps >= 1, got {dim!r}, {steps!r}")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    w *= norm0 / np.linalg.norm(w)
    v = np.zeros(dim)
    norms, angles = [np.linalg.norm(w)], []
    for _ in range(steps):
        xi = rng.normal(size=dim) / math.sqrt(dim)
        nw = np.linalg.norm(w)
        g = (xi - (xi @ w) * w / nw**2) / nw
        v = momentum * v + g + l2 * w
        new = w - learning_rate * v
        angles.append(2 * math.asin(min(np.linalg.norm(new / np.linalg.norm(new) - w / nw) / 2, 1.0)))
        w = new
        norms.append(np.linalg.norm(w))
    return np.asarray(norms), np.asarray(angles)
