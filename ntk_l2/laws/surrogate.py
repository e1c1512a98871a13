"""The smooth surrogate of the predicted test error at T, and its exact gradient in log λ (and log η).

The predicted test outputs at step T are an exact, differentiable function of every λ_s
(`ntk_l2.theory.schedule_map`, `derivations/optimize.md` G1–G2). `Surrogate` names a smooth
stand-in for the test error (G3); `Members` holds the factorized problem and the initial outputs
it is averaged over; `objective` is the surrogate as a function of λ per step, and `evaluator`
its value and gradient in log-parameters, compiled once per setting and shape, which
`ntk_l2.laws.optimize` minimizes (G4–G5).
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

from ntk_l2.common import metrics
from ntk_l2.laws.theory import LawProblem
from ntk_l2.theory.schedule_map import gradient_descent_mse_l2_schedule, mode_sequences

__all__ = ["Surrogate"]  # Members, objective and evaluator serve ntk_l2.laws.optimize

SURROGATES = ("error", "xent", "loss")


@dataclass(frozen=True)
class Surrogate:
    """The smooth objective standing in for the test error at T (`derivations/optimize.md`, G3).

    ``kind`` "error" (default): the smoothed test error 1 − mean over test points of
    softmax(f_*(T)/τ)[label], τ = ``temperature``, which tends to the test error as τ → 0; "xent":
    the mean of −log softmax(f_*(T)/τ)[label]; "loss": the mean of ‖f_*(T) − Y_*‖²/(2c) with
    Y_* the labels encoded as the training targets are. ``init_samples`` = S > 0: averaged over
    S NNGP draws of the initial outputs (``seed``; single networks), S = 0: the mean
    prediction (f_0 = 0).
    """

    kind: str = "error"
    temperature: float = 0.01
    init_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise ValueError(f"kind: must be one of {SURROGATES}, got {self.kind!r}")
        if not (
            isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0
        ):
            raise ValueError(f"temperature: must be finite and > 0, got {self.temperature!r}")
        if isinstance(self.init_samples, bool) or not isinstance(self.init_samples, int) or self.init_samples < 0:
            raise ValueError(f"init_samples: must be an integer >= 0, got {self.init_samples!r}")


def _test_targets(problem: LawProblem) -> np.ndarray:
    """The test labels encoded as the training targets: lo + (hi − lo)·one-hot (hi, lo of Y)."""
    y = np.asarray(problem.y_train, np.float64)
    lo, hi = float(y.min()), float(y.max())
    return lo + (hi - lo) * np.eye(y.shape[1])[np.asarray(problem.labels_test)]


def _score(kind: str, temperature: float, f_test: Any, targets: Any, labels: Any) -> Any:
    """G3: the surrogate of one prediction's test outputs (m, c)."""
    if kind == "loss":
        return jnp.mean(jnp.sum((f_test - targets) ** 2, axis=1)) / 2.0
    logits = f_test / temperature
    picked = jnp.take_along_axis(logits, jnp.asarray(labels)[:, None], axis=1)[:, 0]
    log_p = picked - jax.nn.logsumexp(logits, axis=1)  # log softmax(f/τ)[label]
    return -jnp.mean(log_p) if kind == "xent" else 1.0 - jnp.mean(jnp.exp(log_p))


@dataclass(frozen=True, eq=False)
class Members:
    """The factorized problem and the members' initial outputs, drawn once, with the eigenbasis
    arrays the objective takes as arguments (``data``: μ, Vᵀf_X(0) per member, VᵀY, Θ_*X V,
    f_*(0) per member, the encoded test targets and labels). Arguments, not constants closed
    over: XLA would otherwise fold the products of n × n constants at every compilation."""

    problem: LawProblem
    data: dict[str, np.ndarray]

    @classmethod
    def of(cls, problem: LawProblem, surrogate: Surrogate) -> Members:
        eig, y, k_test = problem.factorized()
        draws = problem.draws(surrogate.init_samples, surrogate.seed)
        (n, c), m = y.shape, k_test.shape[0]
        f0 = np.stack([np.broadcast_to(np.asarray(f, np.float64), (n, c)) for f in draws[0]])
        fs0 = np.stack([np.broadcast_to(np.asarray(f, np.float64), (m, c)) for f in draws[1]])
        data = {
            "mu": np.asarray(eig.evals, np.float64),
            "z0": np.einsum("nk,snc->skc", eig.evecs, f0),
            "y": eig.evecs.T @ y,
            "kv": k_test @ eig.evecs,
            "fs0": fs0,
            "targets": _test_targets(problem),
            "labels": np.asarray(problem.labels_test),
        }
        return cls(problem, data)

    def accuracy(self, l2_steps: np.ndarray, eta: float, budget_step: int) -> float:
        """The exact predicted test accuracy at T, mean over members, from the solver
        `ntk_l2.theory.schedule_map.gradient_descent_mse_l2_schedule` (every input checked)."""
        eig, y, k_test = self.problem.factorized()
        predict = gradient_descent_mse_l2_schedule(eig, y, eta, np.asarray(l2_steps, np.float64), self.problem.degree)
        v = eig.evecs
        accs = [
            metrics.accuracy(predict(budget_step, v @ z0, fs0, k_test)[1], self.problem.labels_test)
            for z0, fs0 in zip(self.data["z0"], self.data["fs0"], strict=True)
        ]
        return float(np.mean(accs))


def _surrogate_at(
    l2_steps: Any, eta: Any, data: Any, at: Any, degree: int, norm: float, kind: str, temperature: float
) -> Any:
    """The surrogate of the predicted test outputs at the steps ``at`` (T last) under ``l2_steps``
    (T values), averaged over the members and over ``at`` (G3, G5);
    f_*(t) = E_t f_*(0) + Θ_*X V(W^z_t z_0 + W^y_t y) (G2)."""
    _, _, wz, wy, e = mode_sequences(eta, l2_steps, data["mu"], degree, norm)
    coeffs = wz[at][:, None, :, None] * data["z0"][None] + wy[at][:, :, None][:, None] * data["y"][None, None]
    tests = e[at][:, None, None, None] * data["fs0"][None] + jnp.einsum("mn,tsnc->tsmc", data["kv"], coeffs)
    score = partial(_score, kind, temperature, targets=data["targets"], labels=data["labels"])
    return jnp.mean(jax.vmap(jax.vmap(score))(tests))


def objective(
    members: Members, budget_step: int, surrogate: Surrogate, checkpoints: tuple[int, ...] = ()
) -> Callable[[Any, Any, Any], Any]:
    """J(λ_steps, η, data): the surrogate at T (``λ_steps`` holds T values), and at the
    ``checkpoints`` (steps < T) when given (`_surrogate_at`; G3, G5)."""
    at = np.asarray([*checkpoints, budget_step], np.int64)
    fixed = _settings(members, surrogate)
    return lambda l2_steps, eta, data: _surrogate_at(l2_steps, eta, data, at, **fixed)


def _settings(members: Members, surrogate: Surrogate) -> dict[str, Any]:
    """The fixed (static) arguments of `_surrogate_at`: k, N = Y's size, the surrogate's kind and τ."""
    return {
        "degree": members.problem.degree,
        "norm": float(members.problem.y_train.size),
        "kind": surrogate.kind,
        "temperature": float(surrogate.temperature),
    }


@partial(jax.jit, static_argnames=("degree", "norm", "kind", "temperature", "fit_eta"))
def _log_value_and_grad(
    x: Any,
    index: Any,
    at: Any,
    eta: Any,
    data: Any,
    degree: int,
    norm: float,
    kind: str,
    temperature: float,
    fit_eta: bool,
) -> Any:
    """J and ∂J/∂x at the log-parameters x (G4–G5): log λ per segment (step s in segment
    ``index[s]``), then log η when ``fit_eta`` (``eta`` otherwise). One compiled function for
    every call with the same settings and shapes: a closure compiled afresh per call would be
    kept by JAX's caches, and the memory of repeated calls would grow without bound."""

    def value(x: Any) -> Any:
        rate = jnp.exp(x[-1]) if fit_eta else eta
        l2_steps = jnp.exp(x[:-1] if fit_eta else x)[index]
        return _surrogate_at(l2_steps, rate, data, at, degree, norm, kind, temperature)

    return jax.value_and_grad(value)(x)


def evaluator(
    members: Members, index: np.ndarray, surrogate: Surrogate, checkpoints: tuple[int, ...], eta: float, fit_eta: bool
) -> Callable[[np.ndarray], tuple[Any, Any]]:
    """x ↦ (J, ∂J/∂x) by `_log_value_and_grad` for these members: T = ``index.size`` steps, step s
    in segment ``index[s]``, the surrogate at the ``checkpoints`` and T. Built and called within
    ``jax.experimental.enable_x64`` (outside it JAX would silently compute in float32)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("evaluator: needs float64; build and call it within jax.experimental.enable_x64()")
    at = jnp.asarray([*checkpoints, index.size], jnp.int64)
    data = jax.tree_util.tree_map(jnp.asarray, members.data)
    fixed = {**_settings(members, surrogate), "fit_eta": fit_eta}
    steps, rate = jnp.asarray(index, jnp.int64), jnp.asarray(eta, jnp.float64)
    return lambda x: _log_value_and_grad(jnp.asarray(x, jnp.float64), steps, at, rate, data, **fixed)
