"""Theory vs finite width: the same network, data and initial outputs, side by side.

For each width an ensemble of seeds is trained (`ntk_l2.train`); the theory
(continuous `gradient_descent_mse_l2` and discrete
`gradient_descent_mse_l2_discrete`, infinite-width NTK from ``kernel_fn``)
starts from each seed's own initial outputs f_0, so the remaining gap is the
finite-width correction. Reported per record step:

- relative error ‖f_*^finite − f_*^theory‖ / ‖f_*^theory‖ on the test points,
- test accuracy of both,
- the measured kernel ratio ‖Θ_t‖/‖Θ_0‖ on a probe set against
  (1 − ηλ)^{2(k−1)t} (`derivations/discrete_time.md`, D2),
- per-layer norms ‖θ_l(t)‖/‖θ_l(0)‖ against (1 − ηλ)^t, the infinite-width
  decay (the gradient moves θ by O(1/√width) relative),

and over widths the fitted exponent of the error: err ∝ width^p.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ntk_l2 import arch, metrics
from ntk_l2.data import Dataset
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.train import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class CompareConfig:
    """A theory-vs-finite-width comparison (fully connected, bias-free ReLU)."""

    depth: int = 3
    widths: tuple[int, ...] = (256, 1024, 2048)
    learning_rate: float = 1.0
    l2: float = 1e-2
    steps: int = 200
    seeds: int = 3
    n_records: int = 20
    n_probe: int = 8
    float64: bool = False

    def __post_init__(self) -> None:
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths: need positive integers, got {self.widths!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds: must be >= 1, got {self.seeds!r}")


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
                  progress: bool | None = None, predictors: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``cfg.seeds`` networks of one width and compare them with the theory."""
    net = arch.fully_connected(cfg.depth, width=width, out_dim=ds.n_classes)
    if kernels is None:
        kernels = infinite_width_kernels(ds, cfg)
    if predictors is None:
        predictors = theory_predictors(kernels, ds, cfg)
    train_cfg = TrainConfig(learning_rate=cfg.learning_rate, l2=cfg.l2, steps=cfg.steps, n_records=cfg.n_records,
                            n_probe=cfg.n_probe, float64=cfg.float64)
    record = train_cfg.recorded_steps()
    train_cfg = TrainConfig(**{**asdict(train_cfg), "ntk_steps": record})
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
    return {
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
        "kernel_ratio": np.mean(kernel_norms / kernel_norms[:, :1], axis=0).tolist(),
        "kernel_ratio_theory": (keep ** (2 * (net.degree - 1) * steps)).tolist(),
        "layer_norm_ratio": np.mean(norms, axis=0).tolist(),  # (record, layer)
        "layer_norm_ratio_theory": (keep**steps).tolist(),
    }


def infinite_width_kernels(ds: Dataset, cfg: CompareConfig) -> dict[str, np.ndarray]:
    """NTK blocks of the infinite-width network (float64)."""
    net = arch.fully_connected(cfg.depth, out_dim=ds.n_classes)
    return {
        "train": np.asarray(net.kernel_fn(ds.x_train, None, "ntk"), np.float64),
        "test": np.asarray(net.kernel_fn(ds.x_test, ds.x_train, "ntk"), np.float64),
    }


def stable_learning_rate(k_train_train: np.ndarray, n_outputs: int, l2: float, degree: int, fraction: float = 0.5) -> float:
    """``fraction`` × the discrete-time stability limit of the infinite-width kernel (eq. D5)."""
    mu_max = float(np.linalg.eigvalsh(k_train_train)[-1])
    return fraction * stability_limit(mu_max, float(n_outputs), l2, degree)


def run_comparison(ds: Dataset, cfg: CompareConfig, progress: bool | None = None) -> dict[str, Any]:
    """All widths, plus the width exponent of the median max-over-time error."""
    kernels = infinite_width_kernels(ds, cfg)
    predictors = theory_predictors(kernels, ds, cfg)
    per_width = [compare_width(ds, cfg, w, kernels, progress, predictors) for w in cfg.widths]
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
