"""Finite-width training with L2 in JAX, in the conventions of the theory.

Gradient descent on L(θ) + (λ/2)‖θ‖², L = ‖f_X − Y‖²/(2N), N = Y.size, with
g_s = ∇L(θ_s) + λ_s θ_s and v_0 = 0 (`derivations/discrete_time.md`, D1;
`derivations/momentum.md`, M1):

    θ_{s+1} = (1 − η_s λ_s) θ_s − η_s ∇L(θ_s)                          (plain)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s v_{s+1}                 (heavy ball β)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s (g_s + β v_{s+1})       (Nesterov β, the optax/PyTorch form)

Minibatch SGD uses L on a batch (N = batch size × c). L2 acts on every
trainable parameter. An ensemble of seeds runs vmapped in one compiled
program; steps between records run inside `jax.lax.fori_loop`.
"""

from __future__ import annotations

import math
import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from numpy.typing import NDArray

from ntk_l2 import metrics
from ntk_l2._nt import nt

Array = NDArray[np.floating]
ScheduleFn = Callable[[Any], Any]  # step (traced int) -> value


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      learning_rate: η, a number or a function of the step (jax-traceable).
      l2: λ, a number, a function of the step, or a tuple of numbers: a grid of
        λ values trained together, one ensemble member per (λ, seed) pair.
      steps: number of steps S.
      batch_size: None for full-batch gradient descent, else minibatch SGD.
      momentum: momentum coefficient β (0 = plain gradient descent).
      nesterov: use the Nesterov form θ ← θ − η(g + βv) instead of heavy ball
        θ ← θ − ηv (only meaningful with momentum > 0).
      record_steps: steps at which to record; default ``n_records`` log-spaced
        steps in [0, S] including both ends.
      n_records: number of default record steps.
      ntk_steps: steps at which to record the empirical NTK on the probe set
        (must be among the record steps); empty = never.
      n_probe: number of training points in the NTK probe set.
      float64: train in float64 (default float32).
      divergence_factor: stop when the data loss exceeds this × its initial
        value (or is not finite).
      seed_offset: added to each seed to form the PRNG key.
    """

    learning_rate: float | ScheduleFn = 1.0
    l2: float | ScheduleFn | tuple[float, ...] = 0.0
    steps: int = 1000
    batch_size: int | None = None
    momentum: float = 0.0
    nesterov: bool = False
    record_steps: tuple[int, ...] | None = None
    n_records: int = 40
    ntk_steps: tuple[int, ...] = ()
    n_probe: int = 32
    float64: bool = False
    divergence_factor: float = 1e6
    seed_offset: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps: must be an integer >= 0, got {self.steps!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")
        if not (0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov: must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: only meaningful with momentum > 0")
        if isinstance(self.l2, (tuple, list)):
            if not self.l2 or not all(isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and v >= 0
                                      for v in self.l2):
                raise ValueError(f"l2: a grid must be a non-empty tuple of finite numbers >= 0, got {self.l2!r}")
            object.__setattr__(self, "l2", tuple(float(v) for v in self.l2))
        for name in ("learning_rate", "l2"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                continue
            if not callable(value) and not (math.isfinite(value) and value >= 0 and (value > 0 or name == "l2")):
                raise ValueError(f"{name}: must be {'> 0' if name == 'learning_rate' else '>= 0'} and finite, got {value!r}")
        steps = self.recorded_steps()
        if any(s < 0 or s > self.steps for s in steps):
            raise ValueError(f"record_steps: must lie in [0, steps={self.steps}]")
        missing = sorted(set(self.ntk_steps) - set(steps))
        if missing:
            raise ValueError(f"ntk_steps: {missing} are not record steps")

    def recorded_steps(self) -> tuple[int, ...]:
        """The sorted, unique record steps."""
        if self.record_steps is not None:
            return tuple(sorted({int(s) for s in self.record_steps}))
        return tuple(log_steps(self.steps, self.n_records).tolist())


def log_steps(last: int, n: int = 200, extra: Sequence[int] = ()) -> NDArray[np.int64]:
    """Sorted unique integer steps 0, then ~n log-spaced steps up to ``last``, plus ``extra``."""
    if last < 0:
        raise ValueError(f"last: must be >= 0, got {last}")
    grid = np.round(np.logspace(0, math.log10(max(last, 1)), max(n - 1, 1))).astype(np.int64) if last else []
    return np.unique(np.concatenate([[0], grid, [last], np.asarray(extra, np.int64)])).astype(np.int64)


@dataclass(frozen=True)
class TrainResult:
    """Records of one run or of a vmapped ensemble (leading axis: ensemble member).

    Arrays are indexed [member, record, ...]; ``steps`` is (R,). Members are the
    seeds, or with a λ grid the (λ, seed) pairs, λ-major: ``member_l2`` and
    ``member_seed`` say which is which.
    """

    steps: Array
    fx_train: Array
    fx_test: Array | None
    loss_data: Array
    loss_l2: Array
    acc_train: Array | None
    acc_test: Array | None
    layer_norms: Array  # [seed, record, layer]: ‖θ_layer‖
    ntk_steps: Array
    ntk_probe: Array | None  # [seed, ntk record, p·c, p·c]
    diverged: Array  # [seed] bool
    diverged_at: Array  # [seed] step of divergence or −1
    member_seed: Array | None = None  # [member] seed
    member_l2: Array | None = None  # [member] λ (a λ grid), else None
    l2_records: Array | None = None  # [member, record] λ in force after each record (l2_controller)


def _as_schedule(value: float | ScheduleFn) -> ScheduleFn:
    return value if callable(value) else (lambda step, v=float(value): v)


def linearize(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """f_lin(θ, x; θ_0) = f(θ_0, x) + J(θ_0, x)(θ − θ_0), the network linearized at θ_0.

    Returns ``apply_lin(params, x, params0)``; like `nt.linearize` but with θ_0 an
    argument so an ensemble of initializations can be vmapped. Trained with L2 it is
    exactly the degree-1 discrete map with the empirical NTK and offset f_0 − J_0θ_0
    (`derivations/finite_width.md`, F1).
    """

    def apply_lin(params: Any, x: Any, params0: Any) -> Any:
        delta = jax.tree_util.tree_map(lambda p, p0: p - p0, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df

    return apply_lin


def _sq_norm(tree: Any) -> Any:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def layer_norms(params: Any) -> Any:
    """‖θ_l‖ for each top-level layer that has parameters (stax layout)."""
    layers = params if isinstance(params, (list, tuple)) else [params]
    return jnp.stack([jnp.sqrt(_sq_norm(layer)) for layer in layers if jax.tree_util.tree_leaves(layer)])


def train(
    init_fn: Callable[..., Any],
    apply_fn: Callable[..., Any],
    x_train: Array,
    y_train: Array,
    config: TrainConfig,
    *,
    x_test: Array | None = None,
    labels_train: Array | None = None,
    labels_test: Array | None = None,
    seeds: Sequence[int] = (0,),
    linearized: bool = False,
    progress: bool | None = None,
    l2_controller: Callable[[int, dict[str, np.ndarray]], Any] | None = None,
) -> TrainResult:
    """Train an ensemble of networks (one per seed, vmapped) and record the run.

    Args:
      init_fn, apply_fn: a stax pair (or any pair with that interface).
      x_train, y_train: training inputs and (n, c) targets.
      config: a `TrainConfig`.
      x_test: optional test inputs (recorded outputs ``fx_test``).
      labels_train, labels_test: integer labels for accuracies (optional).
      seeds: one network per seed, trained together with `jax.vmap` (with a
        λ grid in ``config.l2``: one per (λ, seed) pair, all in one program).
      linearized: train the network linearized at its initialization instead
        (`linearize`), the linear-model baseline.
      progress: show a tqdm bar (default: when the run has > 2,000 steps).
      l2_controller: a dynamical λ (e.g. AutoL2, `ntk_l2.laws.autol2_finite`): called at
        every record step s as ``l2_controller(s, row)`` with ``row`` holding that
        record's ``fx_train``, ``loss_data`` and ``l2`` (per member); it returns the new
        λ per member for the steps that follow, or None to keep them. ``config.l2`` is
        then the initial λ (a number).

    Returns:
      A `TrainResult`; a diverged seed keeps NaN records after its divergence.
    """
    dtype = jnp.float64 if config.float64 else jnp.float32
    ctx = enable_x64() if config.float64 else contextlib.nullcontext()
    with ctx:
        return _train(init_fn, apply_fn, x_train, y_train, config, x_test, labels_train, labels_test,
                      tuple(seeds), linearized, progress, dtype, l2_controller)


def _train(init_fn, apply_fn, x_train, y_train, config, x_test, labels_train, labels_test, seeds, linearized, progress,
           dtype, l2_controller=None):
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    x_tr = jnp.asarray(x_train, dtype)
    y_tr = jnp.asarray(y_train, dtype)
    if y_tr.ndim != 2 or y_tr.shape[0] != x_tr.shape[0]:
        raise ValueError(f"y_train: expected shape ({x_tr.shape[0]}, c), got {tuple(y_tr.shape)}")
    x_te = None if x_test is None else jnp.asarray(x_test, dtype)
    n, c = y_tr.shape
    batch = config.batch_size or n
    if batch > n:
        raise ValueError(f"batch_size: {batch} exceeds the number of training points {n}")
    if l2_controller is not None and (callable(config.l2) or isinstance(config.l2, tuple)):
        raise ValueError("l2: with l2_controller, l2 must be a number (the initial λ)")
    # With a λ grid or a controller each member carries its own λ in the state ("grid");
    # otherwise λ is the schedule lam_fn(step), shared by all members.
    grid = isinstance(config.l2, tuple) or l2_controller is not None
    l2_values = config.l2 if isinstance(config.l2, tuple) else ((float(config.l2),) if grid else (0.0,))
    eta_fn, lam_fn = _as_schedule(config.learning_rate), _as_schedule(0.0 if grid else config.l2)
    members = [(lam, seed) for lam in l2_values for seed in seeds]
    keys = jnp.stack([jax.random.PRNGKey(seed + config.seed_offset) for _, seed in members])
    lam_members = jnp.asarray([lam for lam, _ in members], dtype)  # used with a grid only
    n_members = len(members)

    def init_one(key):
        _, params = init_fn(key, (-1,) + tuple(x_tr.shape[1:]))
        return jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)

    params0 = jax.vmap(init_one)(keys)
    f = linearize(apply_fn) if linearized else (lambda p, x, p0: apply_fn(p, x))

    def data_loss(p, p0, xb, yb):
        return 0.5 * jnp.sum(jnp.square(f(p, xb, p0) - yb)) / yb.size

    grad_fn = jax.grad(data_loss)

    def step(s, state):
        p, v, p0, key, lam_member = state
        if config.batch_size is None:
            xb, yb = x_tr, y_tr
        else:
            key, sub = jax.random.split(key)
            idx = jax.random.choice(sub, n, (batch,), replace=False)
            xb, yb = x_tr[idx], y_tr[idx]
        eta, lam = eta_fn(s), (lam_member if grid else lam_fn(s))
        g = grad_fn(p, p0, xb, yb)
        if config.momentum:
            v = jax.tree_util.tree_map(lambda vi, gi, pi: config.momentum * vi + gi + lam * pi, v, g, p)
            if config.nesterov:  # θ ← θ − η(g_s + βv_{s+1}), v already updated
                p = jax.tree_util.tree_map(lambda pi, gi, vi: pi - eta * (gi + lam * pi + config.momentum * vi), p, g, v)
            else:
                p = jax.tree_util.tree_map(lambda pi, vi: pi - eta * vi, p, v)
        else:
            p = jax.tree_util.tree_map(lambda pi, gi: (1 - eta * lam) * pi - eta * gi, p, g)
        return p, v, p0, key, lam_member

    @jax.jit
    def advance(state, start, stop):
        if n_members == 1:
            # No vmap over a single seed: batched GEMMs of batch 1 cost XLA weight
            # transposes (benchmarks/bench_train.py measures the difference).
            one = jax.lax.fori_loop(start, stop, step, jax.tree_util.tree_map(lambda a: a[0], state))
            return jax.tree_util.tree_map(lambda a: a[None], one)
        return jax.vmap(lambda st: jax.lax.fori_loop(start, stop, step, st))(state)

    @jax.jit
    def observe(p, p0):
        def one(pi, p0i):
            out = {"fx_train": f(pi, x_tr, p0i), "sq_norm": _sq_norm(pi), "layer_norms": layer_norms(pi)}
            if x_te is not None:
                out["fx_test"] = f(pi, x_te, p0i)
            return out
        return jax.vmap(one)(p, p0)

    probe = x_tr[: min(config.n_probe, n)]
    # Vector products: no Jacobian of all parameters × outputs is held in memory (wide nets).
    ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=nt.NtkImplementation.NTK_VECTOR_PRODUCTS))

    record = config.recorded_steps()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params0)
    subkeys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    state = (params0, zeros, params0, subkeys, lam_members)
    rows: list[dict[str, np.ndarray]] = []
    l2_rows: list[np.ndarray] = []
    ntk_rows = []
    alive = np.ones(n_members, bool)
    diverged_at = np.full(n_members, -1)
    loss0 = None
    show = progress if progress is not None else config.steps > 2000
    bar = _progress_bar(config.steps, show)
    last = 0
    for s in record:
        if s > last:
            state = advance(state, last, s)
            bar.update(s - last)
            last = s
        obs = jax.tree_util.tree_map(np.asarray, observe(state[0], state[2]))
        y_np = np.asarray(y_tr)
        loss = 0.5 * np.sum((obs["fx_train"] - y_np) ** 2, axis=(1, 2)) / y_np.size
        lam_s = np.asarray(lam_members, np.float64) if grid else float(lam_fn(s))
        if loss0 is None:
            loss0 = loss
        bad = ~np.isfinite(loss) | (loss > config.divergence_factor * np.maximum(loss0, 1e-30))
        newly = bad & alive
        diverged_at[newly] = s
        alive &= ~bad
        row = {"fx_train": obs["fx_train"], "loss_data": loss, "loss_l2": 0.5 * lam_s * obs["sq_norm"],
               "layer_norms": obs["layer_norms"]}
        if x_te is not None:
            row["fx_test"] = obs["fx_test"]
        for key in row:
            row[key] = np.where(_expand(alive, row[key]), row[key], np.nan)
        rows.append(row)
        if l2_controller is not None:
            new = l2_controller(int(s), {"fx_train": row["fx_train"], "loss_data": row["loss_data"], "l2": lam_s})
            if new is not None:
                new = np.broadcast_to(np.asarray(new, np.float64), (n_members,))
                if not np.all(np.isfinite(new) & (new >= 0)):
                    raise ValueError(f"l2_controller: returned {new!r}; λ must be finite and >= 0")
                lam_members = jnp.asarray(new, dtype)
                state = (*state[:4], lam_members)
            l2_rows.append(np.asarray(lam_members, np.float64))
        if s in config.ntk_steps:
            # A linearized network's NTK is its NTK at θ_0, whatever θ is.
            ntk_rows.append(np.stack(_probe_ntk(ntk_fn, probe, state[2] if linearized else state[0])))
        if not alive.any():
            break
    bar.close()
    stacked = {key: np.stack([r[key] for r in rows], axis=1) for key in rows[0]}
    steps = np.asarray(record[: len(rows)])
    acc_train = _accuracy(stacked["fx_train"], labels_train)
    acc_test = _accuracy(stacked.get("fx_test"), labels_test)
    return TrainResult(
        steps=steps,
        fx_train=stacked["fx_train"],
        fx_test=stacked.get("fx_test"),
        loss_data=stacked["loss_data"],
        loss_l2=stacked["loss_l2"],
        acc_train=acc_train,
        acc_test=acc_test,
        layer_norms=stacked["layer_norms"],
        ntk_steps=np.asarray([s for s in config.ntk_steps if s in steps]),
        ntk_probe=np.stack(ntk_rows, axis=1) if ntk_rows else None,
        diverged=diverged_at >= 0,
        diverged_at=diverged_at,
        member_seed=np.asarray([seed for _, seed in members]),
        member_l2=np.asarray([lam for lam, _ in members]) if grid else None,
        l2_records=np.stack(l2_rows, axis=1) if l2_rows else None,
    )


def _probe_ntk(ntk_fn, probe, params) -> list[np.ndarray]:
    """Empirical NTK Θ_{(i,a),(j,b)} on the probe set for every seed, as (p·c, p·c)."""
    out = []
    for i in range(jax.tree_util.tree_leaves(params)[0].shape[0]):
        theta = np.asarray(ntk_fn(probe, None, jax.tree_util.tree_map(lambda a: a[i], params)))  # (p, p, c, c)
        pp, _, cc, _ = theta.shape
        out.append(np.transpose(theta, (0, 2, 1, 3)).reshape(pp * cc, pp * cc))
    return out


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (np.ndim(like) - 1))


def _accuracy(fx: Array | None, labels: Array | None) -> Array | None:
    """`metrics.accuracy`, NaN for diverged (non-finite) records."""
    if fx is None or labels is None:
        return None
    acc = metrics.accuracy(np.nan_to_num(fx, nan=0.0), labels)
    return np.where(np.all(np.isfinite(fx), axis=(-2, -1)), acc, np.nan)


def _progress_bar(total: int, show: bool):
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    return tqdm(total=total, disable=not show, unit="step", desc="training", leave=False)
