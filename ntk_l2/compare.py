"""Theory vs finite width: the same network, data and initial outputs, side by side.

For each width an ensemble of seeds is trained (`ntk_l2.train`); the theory
(continuous `gradient_descent_mse_l2` and discrete
`gradient_descent_mse_l2_discrete`, infinite-width NTK from ``kernel_fn``)
starts from each seed's own initial outputs f_0, so the remaining gap is the
finite-width correction. Reported per record step:

- relative error ‖f_*^finite − f_*^theory‖ / ‖f_*^theory‖ on the test points,
- test accuracy of both,
- the measured kernel ratio ‖Θ_t‖/‖Θ_0‖ on a probe set against
  (1 − ηλ)^{2(k−1)t} (`derivations/discrete_time.md`, D2), at up to
  ``n_kernel_records`` of the record steps (``kernel_steps``),
- per-layer norms ‖θ_l(t)‖/‖θ_l(0)‖ against (1 − ηλ)^t, the infinite-width
  decay (the gradient moves θ by O(1/√width) relative),

and over widths the fitted exponent of the error: err ∝ width^p. Why these should
agree, and only as width → ∞: `derivations/finite_width.md` (F2–F4).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ntk_l2 import arch, metrics
from ntk_l2.data import Dataset
from ntk_l2.runs import RunStore, fingerprint, settings
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.train import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class CompareConfig:
    """A theory-vs-finite-width comparison (fully connected, bias-free).

    ``activation`` is "relu" (σ_w = √2) or "linear" (σ_w = 1: a wide deep linear
    network of degree depth + 1, `ntk_l2.deep_linear.wide`).
    """

    depth: int = 3
    widths: tuple[int, ...] = (256, 1024, 2048)
    learning_rate: float = 1.0
    l2: float = 1e-2
    steps: int = 200
    seeds: int = 3
    n_records: int = 20
    n_probe: int = 8
    n_kernel_records: int = 6
    float64: bool = False
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "linear"):
            raise ValueError(f"activation: must be 'relu' or 'linear', got {self.activation!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths: need positive integers, got {self.widths!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds: must be >= 1, got {self.seeds!r}")


def network(cfg: CompareConfig, out_dim: int, width: int = 512) -> arch.Architecture:
    """The compared architecture: ``cfg.depth`` hidden layers of ``cfg.activation``, no biases."""
    w_std = math.sqrt(2.0) if cfg.activation == "relu" else 1.0
    return arch.fully_connected(cfg.depth, width=width, out_dim=out_dim, activation=cfg.activation, W_std=w_std)


def relative_error(finite: np.ndarray, theory: np.ndarray) -> np.ndarray:
    """‖a − b‖/‖b‖ over the last two axes (…, m, c)."""
    return np.linalg.norm(finite - theory, axis=(-2, -1)) / np.linalg.norm(theory, axis=(-2, -1))


def width_exponent(widths: Sequence[int], errors: Sequence[float]) -> float:
    """Least-squares slope p of log(error) against log(width)."""
    slope, _ = np.polyfit(np.log(np.asarray(widths, float)), np.log(np.asarray(errors, float)), 1)
    return float(slope)


def theory_predictors(kernels: dict[str, np.ndarray], ds: Dataset, cfg: CompareConfig) -> dict[str, Any]:
    """Continuous and discrete predictors on the infinite-width NTK: one eigendecomposition each,
    shared by every width."""
    degree = cfg.depth + 1
    return {
        "continuous": gradient_descent_mse_l2(kernels["train"], ds.y_train, cfg.learning_rate, cfg.l2, degree),
        "discrete": gradient_descent_mse_l2_discrete(kernels["train"], ds.y_train, cfg.learning_rate, cfg.l2, degree),
    }


def _theory_runs(predictors: dict[str, Any], k_test: np.ndarray, result: TrainResult):
    """Predictions from each seed's own f_0: (seed, record, m, c) per solver."""
    times = {"continuous": result.steps.astype(float), "discrete": result.steps}
    out: dict[str, list[np.ndarray]] = {name: [] for name in predictors}
    for seed in range(result.fx_train.shape[0]):
        f0, fs0 = result.fx_train[seed, 0].astype(np.float64), result.fx_test[seed, 0].astype(np.float64)
        for name, predict in predictors.items():
            out[name].append(predict(times[name], f0, fs0, k_test)[1])
    return {k: np.stack(v) for k, v in out.items()}


def compare_width(ds: Dataset, cfg: CompareConfig, width: int, kernels: dict[str, np.ndarray] | None = None,
                  progress: bool | None = None,
                  predictors: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train ``cfg.seeds`` networks of one width and compare them with the theory.

    Returns (summary, arrays): the JSON-ready per-checkpoint comparison and the
    raw trajectories, indexed [seed, record, ...]: ``fx_train``, ``fx_test``,
    ``fx_test_theory_discrete``, ``fx_test_theory_continuous``, ``loss_data``,
    ``loss_l2``, ``layer_norms``, ``steps``, and ``ntk_probe`` [seed, kernel step, p·c, p·c]
    with ``kernel_steps``.
    """
    net = network(cfg, ds.n_classes, width)
    if kernels is None:
        kernels = infinite_width_kernels(ds, cfg)
    if predictors is None:
        predictors = theory_predictors(kernels, ds, cfg)
    train_cfg = TrainConfig(learning_rate=cfg.learning_rate, l2=cfg.l2, steps=cfg.steps, n_records=cfg.n_records,
                            n_probe=cfg.n_probe, float64=cfg.float64)
    record = train_cfg.recorded_steps()
    # The probe NTK costs p·c vector products per seed (about 1.6 s at width 2048), so it
    # is recorded at no more than n_kernel_records checkpoints, first and last included.
    picks = np.unique(np.round(np.linspace(0, len(record) - 1, max(min(cfg.n_kernel_records, len(record)), 1))).astype(int))
    train_cfg = TrainConfig(**{**asdict(train_cfg), "ntk_steps": tuple(record[i] for i in picks)})
    result = train(net.init_fn, net.apply_fn, ds.x_train, ds.y_train, train_cfg, x_test=ds.x_test,
                   labels_train=ds.labels_train, labels_test=ds.labels_test, seeds=tuple(range(cfg.seeds)),
                   progress=progress)
    theory = _theory_runs(predictors, kernels["test"], result)
    err = {k: relative_error(result.fx_test, v) for k, v in theory.items()}  # (seed, record)
    acc_theory = {k: metrics.accuracy(v, ds.labels_test) for k, v in theory.items()}
    keep = 1.0 - cfg.learning_rate * cfg.l2
    kernel_norms = np.linalg.norm(result.ntk_probe, axis=(-2, -1))  # (seed, record)
    norms = result.layer_norms / result.layer_norms[:, :1]
    steps = result.steps.astype(float)
    arrays = {"steps": result.steps, "fx_train": result.fx_train, "fx_test": result.fx_test,
              "fx_test_theory_discrete": theory["discrete"], "fx_test_theory_continuous": theory["continuous"],
              "loss_data": result.loss_data, "loss_l2": result.loss_l2, "layer_norms": result.layer_norms,
              "ntk_probe": result.ntk_probe, "kernel_steps": result.ntk_steps}
    summary = {
        "width": width,
        "steps": result.steps.tolist(),
        "diverged": result.diverged.tolist(),
        "rel_err_test": {k: v.tolist() for k, v in err.items()},
        "rel_err_test_max": np.max(err["discrete"], axis=1).tolist(),  # per seed, max over time
        "rel_err_test_mean": np.mean(err["discrete"], axis=0).tolist(),  # per record, mean over seeds
        "rel_err_test_max_continuous": np.max(err["continuous"], axis=1).tolist(),
        "acc_test_finite": np.nanmean(result.acc_test, axis=0).tolist(),
        "acc_test_theory": np.mean(acc_theory["discrete"], axis=0).tolist(),
        "acc_test_theory_continuous": np.mean(acc_theory["continuous"], axis=0).tolist(),
        "kernel_steps": result.ntk_steps.tolist(),
        "kernel_ratio": np.mean(kernel_norms / kernel_norms[:, :1], axis=0).tolist(),  # at kernel_steps
        "kernel_ratio_theory": (keep ** (2 * (net.degree - 1) * result.ntk_steps.astype(float))).tolist(),
        "layer_norm_ratio": np.mean(norms, axis=0).tolist(),  # (record, layer)
        "layer_norm_ratio_theory": (keep**steps).tolist(),
    }
    return summary, arrays


def infinite_width_kernels(ds: Dataset, cfg: CompareConfig) -> dict[str, np.ndarray]:
    """NTK blocks of the infinite-width network (float64)."""
    net = network(cfg, ds.n_classes)
    return {"train": net.ntk(ds.x_train), "test": net.ntk(ds.x_test, ds.x_train)}


def stable_learning_rate(k_train_train: np.ndarray, n_outputs: int, l2: float, degree: int, fraction: float = 0.5,
                         max_decay: float = 0.1) -> float:
    """A default η: ``fraction`` × the discrete-time stability limit of the infinite-width
    kernel (eq. D5), capped so that ηλ ≤ ``max_decay``.

    The cap keeps a run of 2/(ηλ) steps at least 2/max_decay = 20 steps long, so
    the weights shrink by at most 10% per step and the trajectory has enough
    checkpoints to compare; without it a large stability limit gives ηλ near 1
    and runs of a handful of steps.
    """
    mu_max = float(np.linalg.eigvalsh(k_train_train)[-1])
    eta = fraction * stability_limit(mu_max, float(n_outputs), l2, degree)
    return min(eta, max_decay / l2) if l2 > 0 else eta


def run_comparison(ds: Dataset, cfg: CompareConfig, progress: bool | None = None,
                   out_dir: str | Path | None = None) -> dict[str, Any]:
    """All widths, plus the width exponent of the median max-over-time error.

    With ``out_dir`` each width is a resumable run (`ntk_l2.runs.RunStore` in
    ``out_dir/runs``: ``width<W>.json`` + ``width<W>.npz``); widths finished
    by an earlier call with the same configuration and data are read back,
    not trained again.
    """
    kernels = infinite_width_kernels(ds, cfg)
    predictors = theory_predictors(kernels, ds, cfg)
    store = None if out_dir is None else RunStore(Path(out_dir) / "runs")
    data_id = fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test)
    per_width = []
    for w in cfg.widths:
        compute = partial(compare_width, ds, cfg, w, kernels, progress, predictors)
        if store is None:
            per_width.append(compute()[0])
            continue
        run_config = {**settings(cfg, {"activation": "relu"}), "widths": None, "width": w, "data": data_id}
        summary, _, reused = store.run(f"width{w}", run_config, compute)
        if reused and progress:
            print(f"width {w}: finished earlier, read from {store.directory / f'width{w}.json'}", file=sys.stderr)
        per_width.append(summary)
    medians = [float(np.median(r["rel_err_test_max"])) for r in per_width]
    return {
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(ds.x_train.shape[0]),
        "n_test": int(ds.x_test.shape[0]),
        "degree": cfg.depth + 1,
        "widths": {str(r["width"]): r for r in per_width},
        "median_rel_err_test_max": medians,
        "width_exponent": width_exponent(cfg.widths, medians) if len(cfg.widths) > 1 else None,
    }
