"""AutoL2 (Lewkowycz & Gur-Ari, 2020): λ divided whenever the training metric stops improving.

The rule (`AutoL2Config`, applied by one `_Plateau` per run) is the same for the theory
(`autol2_theory`: the infinite-width discrete map with λ changing between steps,
`derivations/laws.md`, L3) and for finite networks (`autol2_finite`: each seed's own metric
through the training loop's λ controller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ntk_l2.common import metrics
from ntk_l2.laws.finite import FiniteSweepConfig
from ntk_l2.laws.theory import LawProblem
from ntk_l2.theory import check_discrete_stability
from ntk_l2.theory.validation import check_degree, check_scalar

__all__ = ["AutoL2Config", "autol2_finite", "autol2_theory"]


@dataclass(frozen=True)
class AutoL2Config:
    """AutoL2 (Lewkowycz & Gur-Ari, 2020): a dynamical L2 schedule.

    λ starts at ``l2_init``; every ``check_every`` steps the metric ("train_error" =
    1 − train accuracy, or "loss" = the data loss) is evaluated, and when its best value
    over the last ``window`` steps is no better than its best value before them (since
    the last change of λ), λ is divided by ``factor``, not below ``l2_min``. After each change
    λ is held for at least ``min_wait``/(ηλ) steps, a fraction of the new λ's own time scale
    1/(ηλ) (`derivations/laws.md` L3): without it a plateau of the metric that outlasts the
    window divides λ again and again, one window apart (0 switches this off).
    """

    l2_init: float = 0.1
    factor: float = 10.0
    window: int = 100
    check_every: int = 10
    l2_min: float = 1e-5
    metric: str = "train_error"
    min_wait: float = 0.0

    def __post_init__(self) -> None:
        if not (self.l2_init > 0 and math.isfinite(self.l2_init)):
            raise ValueError(f"l2_init: must be finite and > 0, got {self.l2_init!r}")
        if not self.factor > 1:
            raise ValueError(f"factor: must be > 1, got {self.factor!r}")
        if self.window < 1 or self.check_every < 1 or self.check_every > self.window:
            raise ValueError(
                f"window, check_every: need 1 <= check_every <= window, got {self.check_every}, {self.window}"
            )
        if not (0 < self.l2_min <= self.l2_init):
            raise ValueError(f"l2_min: must be in (0, l2_init], got {self.l2_min!r}")
        if self.metric not in ("train_error", "loss"):
            raise ValueError(f"metric: must be 'train_error' or 'loss', got {self.metric!r}")
        if not (self.min_wait >= 0 and math.isfinite(self.min_wait)):
            raise ValueError(f"min_wait: must be finite and >= 0 (in units of 1/(ηλ)), got {self.min_wait!r}")

    def hold_steps(self, learning_rate: float, l2: float) -> int:
        """Steps λ is held after it changes to ``l2``: ⌈min_wait/(ηλ)⌉."""
        return int(math.ceil(self.min_wait / (learning_rate * l2))) if self.min_wait > 0 else 0


class _Plateau:
    """The AutoL2 decision rule on a stream of (step, metric) checks, for one run at rate η."""

    def __init__(self, config: AutoL2Config, learning_rate: float):
        self.config, self.learning_rate = config, learning_rate
        self.history: list[tuple[int, float]] = []
        self.since, self.hold = 0, 0

    def next_l2(self, step: int, value: float, l2: float) -> float:
        """Record a check of the metric made under λ = ``l2``; the λ to use from now on: ``l2``
        divided by ``factor`` (not below ``l2_min``) on a plateau once the window and the hold
        of the last change (`AutoL2Config.hold_steps`) have passed, else ``l2``."""
        cfg = self.config
        if l2 <= cfg.l2_min:
            return l2
        self.history.append((step, value))
        if step - self.since < max(cfg.window, self.hold):
            return l2
        recent = [v for s, v in self.history if s > step - cfg.window and s >= self.since]
        before = [v for s, v in self.history if s <= step - cfg.window and s >= self.since]
        if not before or min(recent) < min(before):
            return l2
        new = max(l2 / cfg.factor, cfg.l2_min)
        self.since, self.hold = step, cfg.hold_steps(self.learning_rate, new)
        return new


def autol2_theory(
    problem: LawProblem,
    learning_rate: float,
    steps: int,
    config: AutoL2Config = AutoL2Config(),
    labels_train: ArrayLike | None = None,
    record_every: int = 10,
    fx_train_0: ArrayLike | None = None,
    fx_test_0: ArrayLike | None = None,
) -> dict[str, Any]:
    """AutoL2 on the infinite-width discrete map, λ_s chosen on the fly (`derivations/laws.md`, L3).

    Per step, in the eigenbasis Θ_0 = V diag(μ) Vᵀ (`ntk_l2.theory.eigh_kernel`), z = Vᵀ f_X,
    with κ_s = 1 − ηλ_s:

        z_{s+1} = κ_s^k z_s − η κ_s^{k−1} ρ_s μ (z_s − Vᵀ Y)/N,     ρ_{s+1} = κ_s^{2(k−1)} ρ_s,
        u_{s+1} = κ_s^k u_s − η κ_s^{k−1} ρ_s (z_s − Vᵀ Y)/N,        f_*(s) = Θ_*X V u_s

    with f_*(s) = A_s f_*(0) + Θ_*X V u_s, A_{s+1} = κ_s^k A_s, from f_0 = 0 (the mean over
    initializations) or from given ``fx_train_0``, ``fx_test_0`` (a single network's initial
    function, e.g. `LawProblem.initial_outputs`). Each λ_s must keep the step stable for the
    kernel reached, ρ_s Θ_0 (`ntk_l2.theory.check_discrete_stability`, D5; else a ValueError
    naming ``learning_rate``). Returns the recorded ``steps``, ``l2`` (λ used from each record
    on), ``acc_test``, ``acc_train``, ``loss_train`` and the ``changes`` [(step, new λ)].
    """
    eta = check_scalar(learning_rate, "learning_rate", positive=True)
    k = check_degree(problem.degree)
    if labels_train is None:
        labels_train = np.argmax(problem.y_train, axis=1)
    eig, y, k_test = problem.factorized()
    norm = float(y.size)
    vt_y = eig.evecs.T @ y
    k_test_v = k_test @ eig.evecs
    mu = eig.evals[:, None]
    z = np.zeros_like(vt_y) if fx_train_0 is None else eig.evecs.T @ np.asarray(fx_train_0, np.float64)
    f_test_0 = 0.0 if fx_test_0 is None else np.asarray(fx_test_0, np.float64)
    u = np.zeros_like(vt_y)
    rho, lam, carry, checked = 1.0, config.l2_init, 1.0, None
    rule = _Plateau(config, eta)
    out: dict[str, list[Any]] = {"steps": [], "l2": [], "acc_test": [], "acc_train": [], "loss_train": []}
    changes: list[tuple[int, float]] = []
    for s in range(steps + 1):
        check = s % config.check_every == 0
        record = s % record_every == 0 or s == steps
        if check or record:
            f_train = eig.evecs @ z
            acc_train = float(metrics.accuracy(f_train, labels_train))
            loss = float(metrics.mse_loss(f_train, problem.y_train))
        if record:
            out["steps"].append(s)
            out["l2"].append(lam)
            out["acc_test"].append(float(metrics.accuracy(carry * f_test_0 + k_test_v @ u, problem.labels_test)))
            out["acc_train"].append(acc_train)
            out["loss_train"].append(loss)
        if check and s > 0:
            value = (1.0 - acc_train) if config.metric == "train_error" else loss
            if np.isnan(value):
                value = 1.0
            new = rule.next_l2(s, value, lam)
            if new != lam:
                lam = new
                changes.append((s, lam))
        if s == steps:
            break
        # ρ_s never grows for k ≥ 1, so a λ stable when it is set stays stable: checked then (every step for k = 0)
        if lam != checked or k == 0:
            check_discrete_stability(eta, lam, k, float(eig.evals[-1]) * rho, norm)
            checked = lam
        keep = 1.0 - eta * lam
        drive = eta * keep ** (k - 1) * rho * (z - vt_y) / norm
        z, u = keep**k * z - mu * drive, keep**k * u - drive
        rho *= keep ** (2 * (k - 1))
        carry *= keep**k
    return {**out, "changes": changes, "lr": learning_rate, "config": config.__dict__.copy()}


def autol2_finite(
    ds: Any,
    learning_rate: float,
    steps: int,
    config: AutoL2Config = AutoL2Config(),
    depth: int = 3,
    width: int = 512,
    seeds: int = 1,
    float64: bool = False,
    progress: bool | None = None,
    parameterization: str = "ntk",
    arch: str = "fc",
    batchnorm: bool = False,
) -> dict[str, Any]:
    """AutoL2 on a finite network: λ chosen on the fly from each seed's own training metric.

    The network is `FiniteSweepConfig`'s (``depth``, ``width``, ``parameterization``, ``arch``,
    ``batchnorm``): the fully connected network or the CNN, with or without batch normalization.

    The network is checked every ``config.check_every`` steps (these are its record steps);
    the rule is the one of `autol2_theory`. Returns ``steps``, ``l2`` (per record, mean over
    seeds), ``acc_test`` and ``acc_train`` (mean over seeds), ``loss_train``, ``changes``.
    """
    from ntk_l2.finite.train import TrainConfig, train

    init_fn, apply_fn = FiniteSweepConfig(
        depth=depth, width=width, parameterization=parameterization, arch=arch, batchnorm=batchnorm
    ).network(ds.n_classes, ds.input_shape)
    rules = [_Plateau(config, learning_rate) for _ in range(seeds)]
    changes: list[tuple[int, int, float]] = []

    def controller(step: int, row: dict[str, np.ndarray]) -> np.ndarray | None:
        lam = np.array(row["l2"], np.float64).reshape(-1).copy()
        if step == 0:
            return None
        if config.metric == "train_error":
            values = 1.0 - np.nan_to_num(metrics.accuracy(np.nan_to_num(row["fx_train"]), ds.labels_train), nan=0.0)
        else:
            values = np.nan_to_num(row["loss_data"], nan=np.inf)
        for i, rule in enumerate(rules):
            new = rule.next_l2(step, float(values[i]), float(lam[i]))
            if new != lam[i]:
                lam[i] = new
                changes.append((step, i, float(lam[i])))
        return lam

    record = tuple(range(0, steps + 1, config.check_every)) + (() if steps % config.check_every == 0 else (steps,))
    cfg = TrainConfig(learning_rate=learning_rate, l2=config.l2_init, steps=steps, record_steps=record, float64=float64)
    res = train(
        init_fn,
        apply_fn,
        ds.x_train,
        ds.y_train,
        cfg,
        x_test=ds.x_test,
        labels_train=ds.labels_train,
        labels_test=ds.labels_test,
        seeds=tuple(range(seeds)),
        progress=progress,
        l2_controller=controller,
    )
    return {
        "steps": res.steps.tolist(),
        "l2": np.mean(res.l2_records, axis=0).tolist(),
        "acc_test": np.nanmean(res.acc_test, axis=0).tolist(),
        "acc_train": np.nanmean(res.acc_train, axis=0).tolist(),
        "loss_train": np.nanmean(res.loss_data, axis=0).tolist(),
        "changes": changes,
        "lr": learning_rate,
        "diverged": bool(res.diverged.any()),
        "config": config.__dict__.copy(),
    }
