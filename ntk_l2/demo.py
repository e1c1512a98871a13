"""The main job (theory only, for now): predicted training with several λ.

On the embedded digits data, builds a bias-free ReLU network's NTK with
neural-tangents, predicts the mean train/test outputs over time for several
L2 strengths with the closed form, and writes loss/accuracy curves (PNG) and a
JSON summary to an output directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2 import arch, data, io, metrics
from ntk_l2.theory import gradient_descent_mse_l2


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the theory demo (defaults: a few seconds on 2 CPU cores)."""

    n_train: int = 256
    n_test: int = 512
    depth: int = 3
    learning_rate: float = 1.0
    l2_values: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2)
    n_times: int = 60
    max_time: float = 1e5
    seed: int = 0


def _json_list(values: np.ndarray) -> list[float | None]:
    """Floats for JSON; NaN (undefined accuracy of all-zero outputs) becomes null."""
    return [None if np.isnan(v) else float(v) for v in values]


def run_theory_demo(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Predict the dynamics for each λ, write ``dynamics.png`` and ``summary.json``."""
    ds = data.load_digits(n_train=config.n_train, n_test=config.n_test, seed=config.seed)
    net = arch.fully_connected(config.depth, out_dim=ds.n_classes)
    k_train = np.asarray(net.kernel_fn(ds.x_train, None, "ntk"), np.float64)
    k_test = np.asarray(net.kernel_fn(ds.x_test, ds.x_train, "ntk"), np.float64)
    times = np.concatenate([[0.0], np.logspace(0, np.log10(config.max_time), config.n_times - 1)])
    curves: dict[str, dict[str, list[float]]] = {}
    for lam in config.l2_values:
        predict = gradient_descent_mse_l2(k_train, ds.y_train, config.learning_rate, lam, net.degree)
        fx_train, fx_test = predict(times, 0.0, None, k_test)
        curves[f"{lam:g}"] = {
            "loss_train": _json_list(metrics.mse_loss(fx_train, ds.y_train)),
            "loss_test": _json_list(metrics.mse_loss(fx_test, ds.y_test)),
            "acc_train": _json_list(metrics.accuracy(fx_train, ds.labels_train)),
            "acc_test": _json_list(metrics.accuracy(fx_test, ds.labels_test)),
        }
    out = Path(out_dir)
    from ntk_l2 import plots  # matplotlib only when a figure is drawn

    figure = plots.save_dynamics(out / "dynamics.png", times, curves, title=f"{net.name}, degree k = {net.degree}, η = {config.learning_rate:g}")
    summary = {
        "dataset": ds.name,
        "n_train": int(ds.x_train.shape[0]),
        "n_test": int(ds.x_test.shape[0]),
        "architecture": net.name,
        "degree": net.degree,
        "learning_rate": config.learning_rate,
        "times": times.tolist(),
        "curves": curves,
        "best_test_accuracy": {lam: max(a for a in c["acc_test"] if a is not None) for lam, c in curves.items()},
        "figure": str(figure),
    }
    io.save_json(out / "summary.json", summary)
    return summary
