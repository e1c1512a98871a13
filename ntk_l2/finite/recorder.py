"""Recording a run: what is measured at a record step, divergence, and the assembled `TrainResult`.

At a record step s, for every member (`make_observer`, `Recorder.record`)::

    fx_train = f(θ_s; X), fx_test = f(θ_s; X_test)
    loss_data = ‖fx_train − Y‖² / (2 Y.size),   loss_l2 = (λ_s / 2) ‖θ_s‖²,   layer_norms = ‖θ_l‖ per layer

A member diverges at the first record where loss_data is not finite or exceeds
``divergence_factor`` × its value at the first record; from there on its records are NaN.
The empirical NTK on a probe set (`probe_ntk`) is recorded at the requested steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.common import metrics
from ntk_l2.finite.config import Array, TrainResult
from ntk_l2.networks.nt import nt

Params = Any


def _sq_norm(tree: Any) -> Any:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def layer_norms(params: Any) -> Any:
    """‖θ_l‖ for each top-level layer that has parameters (stax layout)."""
    layers = params if isinstance(params, (list, tuple)) else [params]
    return jnp.stack([jnp.sqrt(_sq_norm(layer)) for layer in layers if jax.tree_util.tree_leaves(layer)])


def make_observer(
    f: Callable[[Params, Any, Params], Any], x_train: Any, x_test: Any | None
) -> Callable[[Params, Params], dict[str, Any]]:
    """Compiled ``observe(θ, θ_0)`` over the member axis: ``fx_train``, ``fx_test`` (with ``x_test``),
    ``sq_norm`` = ‖θ‖² and ``layer_norms``; ``f(θ, x, θ_0)`` is the network."""

    @jax.jit
    def observe(p: Params, p0: Params) -> dict[str, Any]:
        def one(pi: Params, p0i: Params) -> dict[str, Any]:
            out = {"fx_train": f(pi, x_train, p0i), "sq_norm": _sq_norm(pi), "layer_norms": layer_norms(pi)}
            if x_test is not None:
                out["fx_test"] = f(pi, x_test, p0i)
            return out

        return jax.vmap(one)(p, p0)

    return observe


def make_ntk_fn(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """The compiled empirical NTK Θ(x1, x2; θ) with all output pairs, by vector products (no
    Jacobian of all parameters × outputs is held in memory: wide nets)."""
    impl = nt.NtkImplementation.NTK_VECTOR_PRODUCTS
    return jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl))


def probe_ntk(ntk_fn: Callable[..., Any], probe: Any, params: Params) -> np.ndarray:
    """Empirical NTK Θ_{(i,a),(j,b)} on the probe set for every member, as (members, p·c, p·c)."""
    out = []
    for i in range(jax.tree_util.tree_leaves(params)[0].shape[0]):
        member = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
        theta = np.asarray(ntk_fn(probe, None, member))  # (p, p, c, c)
        pp, _, cc, _ = theta.shape
        out.append(np.transpose(theta, (0, 2, 1, 3)).reshape(pp * cc, pp * cc))
    return np.stack(out)


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (np.ndim(like) - 1))


def accuracy(fx: Array | None, labels: Array | None) -> Array | None:
    """`ntk_l2.common.metrics.accuracy` of each record, NaN for diverged (non-finite) records."""
    if fx is None or labels is None:
        return None
    acc = metrics.accuracy(np.nan_to_num(fx, nan=0.0), labels)
    return np.where(np.all(np.isfinite(fx), axis=(-2, -1)), acc, np.nan)


@dataclass
class Recorder:
    """The records of a run so far (mutable: one `record` call per record step).

    ``rows[i]`` holds the arrays of record i, each with a leading member axis; ``l2_rows[i]``
    the λ in force after record i (dynamic λ only); ``ntk_rows`` the probe NTKs.
    """

    y_train: np.ndarray
    divergence_factor: float
    alive: np.ndarray
    diverged_at: np.ndarray
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)
    l2_rows: list[np.ndarray] = field(default_factory=list)
    ntk_rows: list[np.ndarray] = field(default_factory=list)
    loss0: np.ndarray | None = None

    @classmethod
    def start(cls, y_train: Any, n_members: int, divergence_factor: float) -> Recorder:
        """An empty record of ``n_members`` members, all alive."""
        return cls(np.asarray(y_train), float(divergence_factor), np.ones(n_members, bool), np.full(n_members, -1))

    @property
    def finished(self) -> bool:
        """Whether every member has diverged."""
        return not self.alive.any()

    def record(self, step: int, obs: dict[str, np.ndarray], l2: float | np.ndarray) -> dict[str, np.ndarray]:
        """Record the observation ``obs`` (`make_observer`, as NumPy) at ``step`` with λ_s = ``l2``.

        Detects divergence (module docstring) and returns the row, NaN for diverged members.
        """
        y = self.y_train
        loss = 0.5 * np.sum((obs["fx_train"] - y) ** 2, axis=(1, 2)) / y.size
        if self.loss0 is None:
            self.loss0 = loss
        bad = ~np.isfinite(loss) | (loss > self.divergence_factor * np.maximum(self.loss0, 1e-30))
        self.diverged_at[bad & self.alive] = step
        self.alive &= ~bad
        row = {
            "fx_train": obs["fx_train"],
            "loss_data": loss,
            "loss_l2": 0.5 * l2 * obs["sq_norm"],
            "layer_norms": obs["layer_norms"],
        }
        if "fx_test" in obs:
            row["fx_test"] = obs["fx_test"]
        for key in row:
            row[key] = np.where(_expand(self.alive, row[key]), row[key], np.nan)
        self.rows.append(row)
        self.steps.append(int(step))
        return row

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the record, by name (`from_arrays` rebuilds the recorder)."""
        out = {"alive": self.alive, "diverged_at": self.diverged_at, "steps": np.asarray(self.steps, np.int64)}
        for key in self.rows[0] if self.rows else ():
            out[f"rows/{key}"] = np.stack([r[key] for r in self.rows], axis=1)
        if self.l2_rows:
            out["l2_rows"] = np.stack(self.l2_rows)
        if self.ntk_rows:
            out["ntk_rows"] = np.stack(self.ntk_rows)
        if self.loss0 is not None:
            out["loss0"] = self.loss0
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], y_train: Any, divergence_factor: float) -> Recorder:
        """The recorder whose `to_arrays` gave ``arrays``."""
        steps = [int(s) for s in arrays["steps"]]
        keys = [k.split("/", 1)[1] for k in arrays if k.startswith("rows/")]
        rows = [{k: arrays[f"rows/{k}"][:, i] for k in keys} for i in range(len(steps))]
        return cls(
            np.asarray(y_train),
            float(divergence_factor),
            arrays["alive"].copy(),
            arrays["diverged_at"].copy(),
            steps,
            rows,
            list(arrays.get("l2_rows", [])),
            list(arrays.get("ntk_rows", [])),
            arrays.get("loss0"),
        )

    def result(
        self,
        *,
        ntk_steps: tuple[int, ...],
        labels_train: Array | None,
        labels_test: Array | None,
        member_seed: Array,
        member_l2: Array | None,
    ) -> TrainResult:
        """The `TrainResult` of the records so far."""
        stacked = {key: np.stack([r[key] for r in self.rows], axis=1) for key in self.rows[0]}
        steps = np.asarray(self.steps)
        return TrainResult(
            steps=steps,
            fx_train=stacked["fx_train"],
            fx_test=stacked.get("fx_test"),
            loss_data=stacked["loss_data"],
            loss_l2=stacked["loss_l2"],
            acc_train=accuracy(stacked["fx_train"], labels_train),
            acc_test=accuracy(stacked.get("fx_test"), labels_test),
            layer_norms=stacked["layer_norms"],
            ntk_steps=np.asarray([s for s in ntk_steps if s in steps]),
            ntk_probe=np.stack(self.ntk_rows, axis=1) if self.ntk_rows else None,
            diverged=self.diverged_at >= 0,
            diverged_at=self.diverged_at,
            member_seed=member_seed,
            member_l2=member_l2,
            l2_records=np.stack(self.l2_rows, axis=1) if self.l2_rows else None,
        )
