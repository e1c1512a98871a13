"""The empirical laws of L2 (Lewkowycz & Gur-Ari, 2020), read off the theory.

- t*: the first step at which test accuracy comes within ``tol`` (0.5 points)
  of its maximum over the run; the law is t* ≈ c/(ηλ), i.e. t*·η·λ ≈ c.
- λ_opt for a budget of T steps: from one run, λ_opt = c/(ηT) with the run's
  own c = t*·η·λ; from the kernel alone, the λ whose predicted test accuracy
  at step T is highest.
- AutoL2: λ starts large and is divided by ``factor`` whenever the training
  metric has not improved over a window of steps (`autol2_theory`).

The theory side uses the exact discrete-time map of the infinite-width
network (`derivations/discrete_time.md`, D1–D4) from zero initial outputs
(the mean over initializations), with one eigendecomposition shared by every
(λ, η) pair; AutoL2 runs the same map with λ changing between steps
(`derivations/laws.md`, L1–L3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2 import io, metrics
from ntk_l2.theory.reference import discrete
from ntk_l2.theory.reference._affine import solver_inputs
from ntk_l2.train import log_steps

Array = NDArray[np.float64]

#: The paper's tolerance for t*: within half a point of the best accuracy.
T_STAR_TOL = 0.005
PARAMETERIZATIONS = ("ntk", "standard")
ARCHS = ("fc", "cnn")
_ADDED_LATER = {"parameterization": "ntk", "arch": "fc", "batchnorm": False}  # fields newer than stored sweeps


def time_to_best(steps: ArrayLike, acc: ArrayLike, tol: float = T_STAR_TOL) -> tuple[float, float]:
    """(t*, max accuracy): t* is the first recorded step with acc ≥ max(acc) − tol.

    NaN accuracies (diverged or undefined records) are ignored; all-NaN gives (nan, nan).
    """
    steps, acc = np.asarray(steps, np.float64), np.asarray(acc, np.float64)
    if steps.shape != acc.shape or steps.ndim != 1:
        raise ValueError(f"acc: expected the shape of steps {steps.shape}, got {acc.shape}")
    if not np.any(np.isfinite(acc)):
        return math.nan, math.nan
    best = float(np.nanmax(acc))
    first = int(np.argmax(np.nan_to_num(acc, nan=-np.inf) >= best - tol))
    return float(steps[first]), best


@dataclass(frozen=True)
class LawProblem:
    """A kernel problem for the laws: infinite-width NTK blocks, targets and test labels."""

    k_train_train: Array
    k_test_train: Array
    y_train: Array
    labels_test: NDArray[np.integer]
    degree: int
    nngp: Array | None = None  # joint NNGP of (train, test) points: the law of the initial outputs

    def initial_outputs(self, n_samples: int, seed: int = 0) -> tuple[Array, Array]:
        """Draws of (f_X(0), f_*(0)) from the NNGP, (S, n, c) and (S, m, c): the random
        function a single network starts from (independent across outputs)."""
        if self.nngp is None:
            raise ValueError("nngp: the problem has no NNGP kernel to draw initial outputs from")
        if n_samples < 1:
            raise ValueError(f"init_samples: must be >= 1 to draw initial outputs (0: the mean), got {n_samples}")
        n, c = self.y_train.shape
        rng = np.random.default_rng(seed)
        evals, evecs = np.linalg.eigh(self.nngp)
        root = evecs * np.sqrt(np.clip(evals, 0.0, None))
        draws = np.einsum("ij,sjc->sic", root, rng.standard_normal((n_samples, len(evals), c)))
        return draws[:, :n], draws[:, n:]


def _run_summary(l2: float, lr: float, steps: Array, acc: Array, budget_step: int | None) -> dict[str, Any]:
    t_star, best = time_to_best(steps, acc)
    budget_acc = None
    if budget_step is not None:
        where = np.nonzero(steps == budget_step)[0]
        budget_acc = float(acc[where[0]]) if where.size else None
    return {"l2": float(l2), "lr": float(lr), "t_star": t_star, "t_star_eta_l2": t_star * lr * l2,
            "max_test_acc": best, "budget_test_acc": budget_acc, "diverged": False}


def at_budget(runs: Sequence[dict[str, Any]], budget_step: int) -> list[dict[str, Any]]:
    """The runs with ``budget_test_acc`` read from their recorded curves: the accuracy at the last
    record at or before step T = ``budget_step`` (None for a run shorter than T). For the paper's
    third panel from a sweep that was run without ``budget_step``."""
    out = []
    for r in runs:
        steps = np.asarray(r["steps"], float)
        acc = np.array([np.nan if a is None else a for a in r["acc_test"]], float)
        before = np.nonzero(steps <= budget_step)[0]
        ok = before.size and steps[-1] >= budget_step and np.isfinite(acc[before[-1]])
        out.append({**r, "budget_test_acc": float(acc[before[-1]]) if ok else None})
    return out


def theory_sweep(problem: LawProblem, l2_values: Sequence[float], learning_rates: Sequence[float],
                 budget: float = 2.0, budget_step: int | None = None, n_records: int = 200,
                 max_steps: int = 10**6, init_samples: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """The laws' sweep from the kernel: for each (λ, η), the predicted test accuracy over
    t ≤ budget/(ηλ) steps (and to ``budget_step`` if later), then t*, t*·η·λ, the best
    accuracy and the accuracy at ``budget_step``.

    One eigendecomposition serves every pair; each pair costs one compiled scan of
    O(steps · n) plus O(records · n · (n + m) · c) to map back.

    With ``init_samples`` = S > 0 the accuracy is that of single networks: the mean over S
    draws of the initial outputs from the NNGP (`LawProblem.initial_outputs`, the same
    draws for every pair), each run through the same map (E1: the map is affine in f_0).
    With S = 0 it is the accuracy of the mean prediction (f_0 = 0).

    Returns:
      One dict per pair (λ-major): ``l2``, ``lr``, ``t_star``, ``t_star_eta_l2``,
      ``max_test_acc``, ``budget_test_acc``, ``diverged`` (always False: an unstable η
      raises ValueError naming ``learning_rate``), plus ``steps`` and ``acc_test``.
    """
    eig, y, *_ = solver_inputs(problem.k_train_train, problem.y_train, 1.0, 0.0, problem.degree)
    k_test = np.asarray(problem.k_test_train, np.float64)
    draws = problem.initial_outputs(init_samples, seed) if init_samples else None
    runs = []
    for lam in l2_values:
        for eta in learning_rates:
            if not (lam > 0):
                raise ValueError(f"l2_values: the laws need λ > 0 (a run lasts budget/(ηλ) steps), got {lam!r}")
            last = int(math.ceil(budget / (eta * lam)))
            if budget_step is not None:
                last = max(last, int(budget_step))
            if last > max_steps:
                raise ValueError(f"l2_values: λ = {lam:g}, η = {eta:g} needs {last} steps > max_steps = {max_steps}")
            steps = log_steps(last, n_records, () if budget_step is None else (int(budget_step),))
            predict = discrete._make_predict_fn(eig, y, float(eta), float(lam), int(problem.degree))
            if init_samples:
                acc = np.mean([metrics.accuracy(predict(steps, f0, fs0, k_test)[1], problem.labels_test)
                               for f0, fs0 in zip(*draws)], axis=0)
            else:
                acc = metrics.accuracy(predict(steps, 0.0, 0.0, k_test)[1], problem.labels_test)
            run = _run_summary(lam, eta, steps.astype(float), acc, budget_step)
            run.update(steps=steps.tolist(), acc_test=io.json_floats(acc))
            runs.append(run)
    return runs


def optimal_l2_from_run(t_star: float, learning_rate: float, l2: float, budget_step: float) -> float:
    """λ_opt = c/(ηT) with c = t*·η·λ measured on one run (Lewkowycz & Gur-Ari, eq. for λ_opt)."""
    for name, value in (("t_star", t_star), ("learning_rate", learning_rate), ("l2", l2), ("budget_step", budget_step)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return t_star * learning_rate * l2 / (learning_rate * budget_step)


def optimal_l2_from_kernel(problem: LawProblem, learning_rate: float, budget_step: int,
                           l2_grid: Sequence[float] | None = None, init_samples: int = 0,
                           seed: int = 0) -> dict[str, Any]:
    """The λ whose predicted test accuracy at step T = ``budget_step`` is highest (no training).

    Default grid: 41 values log-spaced over [1e-5, 0.5/η] (ηλ < 1 keeps the map defined).
    Ties go to the largest λ (the most regularized of equally good choices). With
    ``init_samples`` > 0 the accuracy is that of single networks (as in `theory_sweep`).
    """
    draws = problem.initial_outputs(init_samples, seed) if init_samples else ((0.0,), (0.0,))
    if l2_grid is None:
        l2_grid = np.logspace(-5, math.log10(0.5 / learning_rate), 41)
    eig, y, *_ = solver_inputs(problem.k_train_train, problem.y_train, learning_rate, 0.0, problem.degree)
    k_test = np.asarray(problem.k_test_train, np.float64)
    accs = []
    for lam in l2_grid:
        predict = discrete._make_predict_fn(eig, y, float(learning_rate), float(lam), int(problem.degree))
        accs.append(float(np.mean([metrics.accuracy(predict(np.array([budget_step]), f0, fs0, k_test)[1], problem.labels_test)[0]
                                   for f0, fs0 in zip(*draws)])))
    accs_arr = np.nan_to_num(np.asarray(accs), nan=-1.0)
    best = int(np.flatnonzero(accs_arr == accs_arr.max())[-1])
    return {"l2_opt": float(l2_grid[best]), "acc_at_budget": accs[best], "l2_grid": [float(v) for v in l2_grid],
            "acc_grid": accs}


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
            raise ValueError(f"window, check_every: need 1 <= check_every <= window, got {self.check_every}, {self.window}")
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
        self.history, self.since, self.hold = [], 0, 0

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


def autol2_theory(problem: LawProblem, learning_rate: float, steps: int, config: AutoL2Config = AutoL2Config(),
                  labels_train: ArrayLike | None = None, record_every: int = 10,
                  fx_train_0: ArrayLike | None = None, fx_test_0: ArrayLike | None = None) -> dict[str, Any]:
    """AutoL2 on the infinite-width discrete map, λ_s chosen on the fly (`derivations/laws.md`, L3).

    Per step, in the eigenbasis Θ_0 = V diag(μ) Vᵀ, z = Vᵀ f_X, with κ_s = 1 − ηλ_s:

        z_{s+1} = κ_s^k z_s − η κ_s^{k−1} ρ_s μ (z_s − Vᵀ Y)/N,     ρ_{s+1} = κ_s^{2(k−1)} ρ_s,
        u_{s+1} = κ_s^k u_s − η κ_s^{k−1} ρ_s (z_s − Vᵀ Y)/N,        f_*(s) = Θ_*X V u_s

    with f_*(s) = A_s f_*(0) + Θ_*X V u_s, A_{s+1} = κ_s^k A_s, from f_0 = 0 (the mean over
    initializations) or from given ``fx_train_0``, ``fx_test_0`` (a single network's initial
    function, e.g. `LawProblem.initial_outputs`). Returns the recorded ``steps``,
    ``l2`` (λ used from each record on), ``acc_test``, ``acc_train``, ``loss_train`` and
    the ``changes`` [(step, new λ)].
    """
    if labels_train is None:
        labels_train = np.argmax(problem.y_train, axis=1)
    eig, y, *_ = solver_inputs(problem.k_train_train, problem.y_train, learning_rate, 0.0, problem.degree)
    k = int(problem.degree)
    norm = float(y.size)
    vt_y = eig.evecs.T @ y
    k_test_v = np.asarray(problem.k_test_train, np.float64) @ eig.evecs
    mu = eig.evals[:, None]
    z = np.zeros_like(vt_y) if fx_train_0 is None else eig.evecs.T @ np.asarray(fx_train_0, np.float64)
    f_test_0 = 0.0 if fx_test_0 is None else np.asarray(fx_test_0, np.float64)
    u = np.zeros_like(vt_y)
    rho, lam, carry = 1.0, config.l2_init, 1.0
    rule = _Plateau(config, learning_rate)
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
        keep = 1.0 - learning_rate * lam
        discrete.check_stability(learning_rate, lam, k, float(eig.evals[-1]) * rho, norm, 0)
        drive = learning_rate * keep ** (k - 1) * rho * (z - vt_y) / norm
        z, u = keep**k * z - mu * drive, keep**k * u - drive
        rho *= keep ** (2 * (k - 1))
        carry *= keep**k
    return {**out, "changes": changes, "lr": learning_rate, "config": config.__dict__.copy()}


# --------------------------------------------------------------------------- finite width

@dataclass(frozen=True)
class FiniteSweepConfig:
    """Finite-width runs for the laws: a bias-free ReLU network of ``depth`` hidden layers.

    ``parameterization`` is "ntk" (DESIGN.md's default) or "standard": W itself is trained,
    W ~ N(0, σ²/fan_in), as in the paper's experiments; its theory uses the NTK of that
    parameterization at the network's width (`derivations/laws.md`, L4).
    """

    depth: int = 3
    width: int = 512
    seeds: int = 1
    budget: float = 2.0
    budget_step: int | None = None
    n_records: int = 100
    float64: bool = False
    parameterization: str = "ntk"
    arch: str = "fc"
    batchnorm: bool = False

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization: must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch: must be one of {ARCHS}, got {self.arch!r}")
        if self.batchnorm and self.arch != "cnn":
            raise ValueError("batchnorm: only the convolutional network (arch 'cnn') has batch normalization")

    def architecture(self, out_dim: int, input_shape: tuple[int, ...]) -> Any:
        """The `ntk_l2.arch.Architecture` (stax triple and degree) of the network without batch
        normalization: ``depth`` hidden layers, bias-free ReLU; fc: ``width`` units; cnn: 3×3
        convolutions with ``width`` channels and stride 2, then a dense readout."""
        from ntk_l2 import arch

        if self.arch == "cnn":
            if len(input_shape) != 3:
                raise ValueError(f"arch: the convolutional network needs NHWC images, got inputs of shape {input_shape}")
            return arch.convolutional(self.depth, self.width, out_dim, strides=(2, 2), input_shape=input_shape,
                                      parameterization=self.parameterization)
        return arch.fully_connected(self.depth, width=self.width, out_dim=out_dim, parameterization=self.parameterization)

    def network(self, out_dim: int, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The (init_fn, apply_fn) pair: `architecture`'s, or with ``batchnorm`` the same CNN with
        batch normalization after each convolution (`ntk_l2.batchnorm`)."""
        from ntk_l2.batchnorm import convolutional_batchnorm

        if self.batchnorm:
            return convolutional_batchnorm(self.depth, self.width, out_dim, parameterization=self.parameterization)
        net = self.architecture(out_dim, input_shape)
        return net.init_fn, net.apply_fn


def finite_sweep(ds: Any, l2_values: Sequence[float], learning_rates: Sequence[float],
                 config: FiniteSweepConfig = FiniteSweepConfig(), out_dir: Any = None,
                 progress: bool | None = None, log: Any = None) -> list[dict[str, Any]]:
    """The laws' sweep on finite networks: one training run per (λ, η), each for
    budget/(ηλ) steps (and to ``budget_step`` if later), accuracy averaged over seeds.

    With ``out_dir`` every run is saved as it finishes (`ntk_l2.runs.RunStore`: ``l2=<λ>_lr=<η>.json/.npz``,
    λ and η exact, e.g. ``l2=0.01_lr=1.0``) and skipped when the sweep is run again, so a killed sweep
    resumes and ends with the same results as an uninterrupted one; runs stored by earlier versions
    (names rounded to six digits, no checksums) are trained again.

    Returns one dict per pair (λ-major) with ``l2``, ``lr``, ``t_star``, ``t_star_eta_l2``,
    ``max_test_acc``, ``budget_test_acc``, ``diverged``, ``steps``, ``acc_test``.
    """
    from pathlib import Path

    from ntk_l2.runs import RunStore, fingerprint, run_name, settings
    from ntk_l2.train import TrainConfig, train

    store = None if out_dir is None else RunStore(Path(out_dir) / "runs")
    data_id = fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test)
    init_fn, apply_fn = config.network(ds.n_classes, ds.input_shape)
    runs = []
    for lam in l2_values:
        for eta in learning_rates:
            if not (lam > 0 and eta > 0):
                raise ValueError(f"l2_values, learning_rates: need λ > 0 and η > 0, got λ = {lam!r}, η = {eta!r}")
            last = int(math.ceil(config.budget / (eta * lam)))
            if config.budget_step is not None:
                last = max(last, int(config.budget_step))
            steps = log_steps(last, config.n_records, () if config.budget_step is None else (int(config.budget_step),))

            def compute(lam=lam, eta=eta, steps=steps):
                cfg = TrainConfig(learning_rate=float(eta), l2=float(lam), steps=int(steps[-1]),
                                  record_steps=tuple(int(s) for s in steps), float64=config.float64)
                res = train(init_fn, apply_fn, ds.x_train, ds.y_train, cfg, x_test=ds.x_test,
                            labels_test=ds.labels_test, seeds=tuple(range(config.seeds)), progress=progress)
                acc = np.nanmean(res.acc_test, axis=0) if not res.diverged.all() else np.full(len(res.steps), np.nan)
                summary = _run_summary(lam, eta, res.steps.astype(float), acc, config.budget_step)
                summary.update(diverged=bool(res.diverged.any()), steps=res.steps.tolist(),
                               acc_test=io.json_floats(acc))
                return summary, {"steps": res.steps, "acc_test": res.acc_test, "loss_data": res.loss_data}

            if store is None:
                runs.append(compute()[0])
                continue
            run_config = {**settings(config, _ADDED_LATER), "l2": float(lam), "lr": float(eta), "data": data_id}
            summary, _, reused = store.run(run_name(l2=float(lam), lr=float(eta)), run_config, compute)
            if log is not None:
                log(f"λ = {lam:g}, η = {eta:g}: {'finished earlier' if reused else 'trained'}; "
                    f"t* = {summary['t_star']:g}, t*ηλ = {summary['t_star_eta_l2']:.3g}, "
                    f"best test acc {summary['max_test_acc']:.4f}")
            runs.append(summary)
    return runs


def autol2_finite(ds: Any, learning_rate: float, steps: int, config: AutoL2Config = AutoL2Config(),
                  depth: int = 3, width: int = 512, seeds: int = 1, float64: bool = False,
                  progress: bool | None = None, parameterization: str = "ntk", arch: str = "fc",
                  batchnorm: bool = False) -> dict[str, Any]:
    """AutoL2 on a finite network: λ chosen on the fly from each seed's own training metric.

    The network is `FiniteSweepConfig`'s (``depth``, ``width``, ``parameterization``, ``arch``,
    ``batchnorm``): the fully connected network or the CNN, with or without batch normalization.

    The network is checked every ``config.check_every`` steps (these are its record steps);
    the rule is the one of `autol2_theory`. Returns ``steps``, ``l2`` (per record, mean over
    seeds), ``acc_test`` and ``acc_train`` (mean over seeds), ``loss_train``, ``changes``.
    """
    from ntk_l2.train import TrainConfig, train

    init_fn, apply_fn = FiniteSweepConfig(depth=depth, width=width, parameterization=parameterization, arch=arch,
                                          batchnorm=batchnorm).network(ds.n_classes, ds.input_shape)
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
    res = train(init_fn, apply_fn, ds.x_train, ds.y_train, cfg, x_test=ds.x_test,
                labels_train=ds.labels_train, labels_test=ds.labels_test, seeds=tuple(range(seeds)),
                progress=progress, l2_controller=controller)
    return {"steps": res.steps.tolist(), "l2": np.mean(res.l2_records, axis=0).tolist(),
            "acc_test": np.nanmean(res.acc_test, axis=0).tolist(), "acc_train": np.nanmean(res.acc_train, axis=0).tolist(),
            "loss_train": np.nanmean(res.loss_data, axis=0).tolist(), "changes": changes, "lr": learning_rate,
            "diverged": bool(res.diverged.any()), "config": config.__dict__.copy()}


def steps_to_reach(steps: Sequence[float], acc: Sequence[float | None], target: float, tol: float = T_STAR_TOL) -> float:
    """The first step whose accuracy is ≥ target − tol (NaN if never): how AutoL2 is compared
    with the best constant λ."""
    acc_arr = np.array([np.nan if a is None else a for a in acc], np.float64)
    hit = np.nonzero(np.nan_to_num(acc_arr, nan=-np.inf) >= target - tol)[0]
    return float(np.asarray(steps, float)[hit[0]]) if hit.size else math.nan
