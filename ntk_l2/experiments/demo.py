"""The main job: theory and finite-width training side by side on the embedded digits.

1. Theory: a bias-free ReLU network's NTK from neural-tangents; the mean
   train/test outputs over time for several L2 strengths (closed form);
   loss/accuracy curves in ``dynamics.png``.
2. Finite width: the same network trained with L2 at a few widths, compared
   with the theory from the same initial outputs (`ntk_l2.experiments.compare`);
   ``comparison.png``.

Both go to ``summary.json`` in the output directory as one
`ntk_l2.experiments.results_compare.DemoResult`, the comparison nested in it (``comparison``);
the infinite-width NTK is computed once for both. Each figure is also written as a PDF beside
its PNG, and `ntk_l2.experiments.plots.replot` draws both again from ``summary.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ntk_l2.common import metrics
from ntk_l2.data import datasets as data
from ntk_l2.experiments.compare import CompareConfig, compare_widths, infinite_width_kernels, network
from ntk_l2.experiments.results_compare import DemoComparison, DemoCurves, DemoResult
from ntk_l2.theory import gradient_descent_mse_l2, stable_learning_rate


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


def _floats(values: np.ndarray) -> tuple[float, ...]:
    """An array of numbers as a tuple of floats (NaN kept: null in the summary)."""
    return tuple(np.asarray(values, np.float64).tolist())


def _best(accuracies: tuple[float, ...]) -> float:
    """The largest defined accuracy (NaN if none is defined)."""
    return max((a for a in accuracies if math.isfinite(a)), default=math.nan)


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> DemoResult:
    """Theory for several λ and the finite-width comparison; figures + ``summary.json``
    (`ntk_l2.experiments.results_compare.DemoResult`).

    The theory and the comparison share one infinite-width NTK: the demo's network is the
    compared one (`ntk_l2.experiments.compare.network`).
    """
    ds = data.load_digits(n_train=config.n_train, n_test=config.n_test, seed=config.seed)
    net = network(CompareConfig(depth=config.depth), ds.n_classes)  # the kernel depends on the depth only
    kernels = infinite_width_kernels(ds, CompareConfig(depth=config.depth))
    times = np.concatenate([[0.0], np.logspace(0, np.log10(config.max_time), config.n_times - 1)])
    curves: dict[str, DemoCurves] = {}
    for lam in config.l2_values:
        predict = gradient_descent_mse_l2(kernels["train"], ds.y_train, config.learning_rate, lam, net.degree)
        fx_train, fx_test = predict(times, 0.0, None, kernels["test"])
        curves[f"{lam:g}"] = DemoCurves(
            loss_train=_floats(metrics.mse_loss(fx_train, ds.y_train)),
            loss_test=_floats(metrics.mse_loss(fx_test, ds.y_test)),
            acc_train=_floats(metrics.accuracy(fx_train, ds.labels_train)),
            acc_test=_floats(metrics.accuracy(fx_test, ds.labels_test)),
        )
    out = Path(out_dir)
    from ntk_l2.experiments import plots  # matplotlib only when a figure is drawn

    figure = plots.save_dynamics(
        out / "dynamics.png",
        times,
        {lam: c.to_json() for lam, c in curves.items()},
        learning_rate=config.learning_rate,
        title=plots.dynamics_title(net.name, net.degree, config.learning_rate),
    )
    result = DemoResult(
        dataset=ds.name,
        n_train=int(ds.x_train.shape[0]),
        n_test=int(ds.x_test.shape[0]),
        architecture=net.name,
        degree=net.degree,
        learning_rate=float(config.learning_rate),
        times=_floats(times),
        curves=curves,
        best_test_accuracy={lam: _best(c.acc_test) for lam, c in curves.items()},
        figure=str(figure),
        comparison=_finite_width(ds, config, kernels, out),
    )
    result.save(out)
    return result


def _finite_width(ds: data.Dataset, config: DemoConfig, kernels: dict[str, np.ndarray], out: Path) -> DemoComparison:
    """The comparison at λ = ``config.compare_l2`` and the default η (`ntk_l2.theory.stable_learning_rate`:
    half the D5 limit, ηλ ≤ 0.1) for 2/(ηλ) steps; its runs in ``out/runs``, its figure ``out/comparison.png``."""
    from ntk_l2.experiments import plots

    lam = config.compare_l2
    eta = stable_learning_rate(kernels["train"], ds.y_train.size, lam, config.depth + 1)
    cfg = CompareConfig(
        depth=config.depth,
        widths=config.widths,
        learning_rate=eta,
        l2=lam,
        steps=int(round(2.0 / (eta * lam))),
        seeds=config.seeds,
    )
    result = compare_widths(ds, cfg, progress=True, runs_dir=out / "runs", kernels=kernels)
    figure = plots.save_comparison(out / "comparison.png", result.to_json())
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    return DemoComparison(**{**values, "figure": str(figure)}, widths_list=tuple(config.widths))
