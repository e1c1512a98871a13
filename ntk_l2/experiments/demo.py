"""The main job: theory and finite-width training side by side on the embedded digits.

1. Theory: a bias-free ReLU network's NTK from neural-tangents; the mean
   train/test outputs over time for several L2 strengths (closed form);
   loss/accuracy curves in ``dynamics.png``.
2. Finite width: the same network trained with L2 at a few widths, compared
   with the theory from the same initial outputs (`ntk_l2.experiments.compare`);
   ``comparison.png``.
Both summaries go to ``summary.json`` in the output directory; each figure is also written as a
PDF beside its PNG, and `ntk_l2.experiments.plots.replot` draws both again from ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import io, metrics
from ntk_l2.data import datasets as data
from ntk_l2.networks import arch
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
    widths: tuple[int, ...] = (128, 512, 2048)
    seeds: int = 3
    compare_l2: float = 1e-3


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Theory for several λ and the finite-width comparison; figures + ``summary.json``."""
    ds = data.load_digits(n_train=config.n_train, n_test=config.n_test, seed=config.seed)
    net = arch.fully_connected(config.depth, out_dim=ds.n_classes)
    k_train, k_test = net.ntk(ds.x_train), net.ntk(ds.x_test, ds.x_train)
    times = np.concatenate([[0.0], np.logspace(0, np.log10(config.max_time), config.n_times - 1)])
    curves: dict[str, dict[str, list[float]]] = {}
    for lam in config.l2_values:
        predict = gradient_descent_mse_l2(k_train, ds.y_train, config.learning_rate, lam, net.degree)
        fx_train, fx_test = predict(times, 0.0, None, k_test)
        curves[f"{lam:g}"] = {
            "loss_train": io.json_floats(metrics.mse_loss(fx_train, ds.y_train)),
            "loss_test": io.json_floats(metrics.mse_loss(fx_test, ds.y_test)),
            "acc_train": io.json_floats(metrics.accuracy(fx_train, ds.labels_train)),
            "acc_test": io.json_floats(metrics.accuracy(fx_test, ds.labels_test)),
        }
    out = Path(out_dir)
    from ntk_l2.experiments import plots  # matplotlib only when a figure is drawn

    figure = plots.save_dynamics(
        out / "dynamics.png",
        times,
        curves,
        learning_rate=config.learning_rate,
        title=plots.dynamics_title(net.name, net.degree, config.learning_rate),
    )
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
    summary["comparison"] = _finite_width(ds, config, k_train, out)
    io.save_json(out / "summary.json", summary)
    return summary


def _finite_width(ds: data.Dataset, config: DemoConfig, k_train: np.ndarray, out: Path) -> dict[str, Any]:
    from ntk_l2.experiments import plots
    from ntk_l2.experiments.compare import CompareConfig, run_comparison, stable_learning_rate

    lam = config.compare_l2
    eta = stable_learning_rate(k_train, ds.y_train.size, lam, config.depth + 1)
    cfg = CompareConfig(
        depth=config.depth,
        widths=config.widths,
        learning_rate=eta,
        l2=lam,
        steps=int(round(2.0 / (eta * lam))),
        seeds=config.seeds,
    )
    result = run_comparison(ds, cfg, progress=True, out_dir=out)
    result["figure"] = str(plots.save_comparison(out / "comparison.png", result))
    result["widths_list"] = list(config.widths)
    return result
