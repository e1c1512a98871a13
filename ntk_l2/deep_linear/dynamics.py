"""Training deep linear networks: gradient flow, gradient descent and minibatch SGD.

Objective (`derivations/conventions.md`): L(W) + (λ/2)‖W‖², L = ‖X Pᵀ − Y‖²/(2N).

    gradient flow     dW/dt = −η (∇L + λW)                     (Radau IIA, rtol 1e-12)
    gradient descent  W_{s+1} = (1 − ηλ) W_s − η ∇L_s(W_s)

where L_s is the loss on step s's data: the full set, a minibatch of B rows
drawn without replacement (N = B·d_out), and/or inputs with fresh Gaussian
noise X + σE (input-noise augmentation). In expectation over the noise,
input noise adds (σ² n/(2N)) ‖P‖_F² to L (`derivations/deep_linear.md`, DL7);
gradient flow with ``input_noise`` integrates that expected objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

from ntk_l2.deep_linear.imbalance import imbalance_norm
from ntk_l2.deep_linear.network import check_data, loss, loss_jax, partial_products, product
from ntk_l2.finite.train import log_steps

Array = NDArray[np.float64]


@dataclass(frozen=True)
class DeepLinearConfig:
    """How to train a deep linear network.

    Attributes:
      learning_rate: η.
      steps: number of gradient-descent steps, or the end time of gradient flow (in steps).
      l2: λ (weight decay on every weight).
      input_noise: σ, the std of Gaussian noise added to every input at every step.
      batch_size: minibatch size B (SGD, rows drawn without replacement); None = full batch.
      n_records: number of log-spaced record steps (with 0 and ``steps``), unless ``record_steps``.
      record_steps: explicit record steps (each in [0, steps]).
    """

    learning_rate: float = 0.1
    steps: int = 1000
    l2: float = 0.0
    input_noise: float = 0.0
    batch_size: int | None = None
    n_records: int = 200
    record_steps: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("learning_rate", "l2", "input_noise"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: must be a finite number >= 0, got {v!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: must be > 0, got {self.learning_rate!r}")
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps: must be an integer >= 0, got {self.steps!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")
        if self.n_records < 2:
            raise ValueError(f"n_records: must be >= 2, got {self.n_records!r}")
        if self.record_steps is not None and any(not (0 <= s <= self.steps) for s in self.record_steps):
            raise ValueError(f"record_steps: must lie in [0, steps={self.steps}]")

    def recorded_steps(self) -> Array:
        if self.record_steps is not None:
            return np.unique(np.asarray(self.record_steps, np.float64))
        return log_steps(self.steps, self.n_records).astype(np.float64)


@dataclass(frozen=True)
class DeepLinearRun:
    """A recorded trajectory; arrays are indexed [member (seed), record, ...].

    Attributes:
      steps: (R,) record steps (times, for gradient flow).
      weights: per layer, (S, R, d_l, d_{l−1}).
      loss: (S, R) data loss L on the full, clean data.
      imbalance_norm: (S, R) ‖D‖ (`imbalance.imbalance_norm`).
      product: (S, R, d_out, d_in) P = W_L ⋯ W_1.
      seeds: (S,) the noise seeds (gradient flow: one member, seed 0).
      method: "flow" or "gd".
      diverged: (S,) whether a member's weights stopped being finite (records NaN after).
    """

    steps: Array
    weights: tuple[Array, ...]
    loss: Array
    imbalance_norm: Array
    product: Array
    seeds: Array
    method: str
    diverged: Array


def _finish(steps, weights, x, y, seeds, method) -> DeepLinearRun:
    weights = tuple(np.asarray(w, np.float64) for w in weights)
    bad = ~np.all(np.stack([np.all(np.isfinite(w), axis=(-2, -1)) for w in weights]), axis=0)  # (S, R)
    bad = np.logical_or.accumulate(bad, axis=1)
    weights = tuple(np.where(bad[..., None, None], np.nan, w) for w in weights)
    with np.errstate(invalid="ignore", over="ignore"):
        return DeepLinearRun(
            steps=np.asarray(steps, np.float64),
            weights=weights,
            loss=loss(weights, x, y),
            imbalance_norm=imbalance_norm(weights),
            product=product(weights),
            seeds=np.asarray(seeds),
            method=method,
            diverged=bad[:, -1],
        )


def _unflatten(v, shapes):
    """Split flat weights (…, Σ sizes) into layers of the given shapes (leading axes kept)."""
    ends = np.cumsum([a * b for a, b in shapes])
    return [
        part.reshape(part.shape[:-1] + tuple(shape))
        for part, shape in zip(np.split(v, ends[:-1], axis=-1), shapes, strict=True)
    ]


def _flow_gradient(x, y, l2, input_noise, shapes):
    """∇ of L + (σ² n/(2N))‖P‖² + (λ/2)‖W‖² on flat weights, in numpy (DL0, DL7):
    ∂/∂W_l = B_lᵀ G A_lᵀ + λ W_l with G = (P XᵀX − YᵀX)/N + (σ² n/N) P."""
    xx, yx, big_n = x.T @ x / y.size, y.T @ x / y.size, y.size
    noise_coef = input_noise**2 * x.shape[0] / big_n

    def grad(v):
        ws = _unflatten(v, shapes)
        below, above = partial_products(ws)
        p = above[0] @ ws[0]
        g = p @ xx - yx + noise_coef * p
        return np.concatenate([(b.T @ g @ a.T + l2 * w).ravel() for w, a, b in zip(ws, below, above, strict=False)])

    return grad


def gradient_flow(
    weights0: Sequence[ArrayLike],
    x: ArrayLike,
    y: ArrayLike,
    config: DeepLinearConfig,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    method: str = "Radau",
) -> DeepLinearRun:
    """Integrate dW/dt = −η ∇_W [L + (λ/2)‖W‖² (+ input-noise penalty, DL7)] to t = ``config.steps``.

    Args:
      weights0: the initial layers (W_1, …, W_L).
      rtol, atol, method: passed to `scipy.integrate.solve_ivp`. The default, Radau IIA
        (implicit, order 5) at rtol 1e-12, is not slowed by the stiffness near the minima,
        where an explicit method needs ~10⁴ steps per 10⁴ time units; it keeps the conserved
        imbalances to ~1e-13 relative (`tests/test_deep_linear.py`).

    Returns:
      A `DeepLinearRun` with one member.
    """
    if config.batch_size is not None:
        raise ValueError("batch_size: minibatch noise has no gradient-flow limit; use gradient_descent")
    x, y = check_data(x, y)
    weights0 = tuple(np.asarray(w, np.float64) for w in weights0)
    shapes = [w.shape for w in weights0]
    times = config.recorded_steps()
    grad = _flow_gradient(x, y, config.l2, config.input_noise, shapes)
    eta = config.learning_rate
    flat0 = np.concatenate([w.ravel() for w in weights0])
    if times[-1] > 0:
        sol = solve_ivp(
            lambda _t, v: -eta * grad(v),
            (0.0, float(times[-1])),
            flat0,
            method=method,
            t_eval=times,
            rtol=rtol,
            atol=atol,
        )
        if not sol.success:
            raise RuntimeError(f"gradient_flow: the integrator failed: {sol.message}")
        path = sol.y.T
    else:
        path = flat0[None]
    layers = tuple(w[None] for w in _unflatten(path, shapes))  # (1 member, record, d_l, d_{l−1})
    return _finish(times, layers, x, y, np.asarray([0]), "flow")


def gradient_descent(
    weights0: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike, config: DeepLinearConfig, seeds: Sequence[int] = (0,)
) -> DeepLinearRun:
    """Run W_{s+1} = (1 − ηλ) W_s − η ∇L_s(W_s) from ``weights0`` for every seed (vmapped, float64).

    The seeds drive the noise only (minibatches and input noise); every member
    starts from the same ``weights0``. Steps between records run inside
    `jax.lax.fori_loop`.
    """
    x, y = check_data(x, y)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    n = x.shape[0]
    batch = config.batch_size or n
    if batch > n:
        raise ValueError(f"batch_size: {batch} exceeds the number of samples {n}")
    record = config.recorded_steps().astype(np.int64)
    eta, lam, sigma = config.learning_rate, config.l2, config.input_noise
    with enable_x64():
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        grad = jax.grad(loss_jax)

        def step(_s, state):
            ws, key = state
            key, k_batch, k_noise = jax.random.split(key, 3)
            if batch < n:
                idx = jax.random.choice(k_batch, n, (batch,), replace=False)
                xb, yb = xj[idx], yj[idx]
            else:
                xb, yb = xj, yj
            if sigma > 0:
                xb = xb + sigma * jax.random.normal(k_noise, xb.shape, xb.dtype)
            g = grad(ws, xb, yb)
            return tuple((1 - eta * lam) * w - eta * gi for w, gi in zip(ws, g, strict=False)), key

        @jax.jit
        def advance(state, start, stop):
            return jax.vmap(lambda st: jax.lax.fori_loop(start, stop, step, st))(state)

        ws = tuple(jnp.broadcast_to(jnp.asarray(w, jnp.float64), (len(seeds),) + np.shape(w)) for w in weights0)
        state = (ws, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        rows, last = [], 0
        for s in record:
            if s > last:
                state = advance(state, int(last), int(s))
                last = s
            rows.append([np.asarray(w) for w in state[0]])
            if not all(np.all(np.isfinite(w)) for w in rows[-1]):
                break
    layers = tuple(np.stack([r[i] for r in rows], axis=1) for i in range(len(weights0)))
    if len(rows) < len(record):  # diverged: pad with NaN records
        pad = len(record) - len(rows)
        layers = tuple(np.concatenate([w, np.full((w.shape[0], pad) + w.shape[2:], np.nan)], axis=1) for w in layers)
    return _finish(record, layers, x, y, np.asarray(seeds), "gd")
