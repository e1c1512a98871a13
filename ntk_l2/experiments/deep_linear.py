"""One deep-linear experiment, as run by ``ntk-l2 deep-linear``: train, measure, summarize.

Per record (mean over seeds): the data loss, the layer imbalance ‖D‖, the
first-order distance to the minima manifold, and at up to ``n_hessian``
records the top Hessian eigenvalue and trace; per seed: the end of the
optimization phase and the imbalance half time (`phases`). The summary is a
`ntk_l2.experiments.results_compare.DeepLinearResult`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntk_l2.deep_linear.dynamics import DeepLinearConfig, DeepLinearRun, gradient_descent, gradient_flow
from ntk_l2.deep_linear.flatness import distance_to_minima, hessian_top_eigenvalue, hessian_trace
from ntk_l2.deep_linear.network import DeepLinear, min_loss, regression_data
from ntk_l2.deep_linear.phases import imbalance_half_time, optimization_phase_end
from ntk_l2.experiments.results_compare import DeepLinearResult, settings_json

REGULARIZERS = ("none", "l2", "input-noise", "minibatch")
METHODS = ("gd", "flow")


@dataclass(frozen=True)
class DeepLinearExperiment:
    """A deep linear network, its data, its regularizer and how it is trained.

    Attributes:
      widths: (d_in, d_1, …, d_out); all ones is a scalar chain.
      regularizer: "none", "l2" (strength λ), "input-noise" (strength σ) or "minibatch" (strength = batch size B).
      strength: see ``regularizer`` (ignored for "none").
      learning_rate, steps: η and the number of steps (the end time, for gradient flow).
      method: "gd" (gradient descent / SGD) or "flow" (gradient flow; not with minibatches).
      seeds: noise seeds (gradient descent).
      n_samples, label_noise: the teacher task (`network.regression_data`); the teacher is 2 for scalar chains.
      layer_ratio: initial scale ratio between consecutive layers (1 = comparable layers, > 1 = imbalanced):
        layer l is scaled by layer_ratio^{l − (L+1)/2}, which leaves the product's scale unchanged.
      n_records, n_hessian: records (log-spaced) and records with Hessian measurements.
      init_seed, data_seed: seeds of the initial weights and of the data.
    """

    widths: tuple[int, ...] = (1, 1, 1, 1)
    regularizer: str = "minibatch"
    strength: float = 4.0
    learning_rate: float = 0.05
    steps: int = 20_000
    method: str = "gd"
    seeds: int = 8
    n_samples: int = 64
    label_noise: float = 0.5
    layer_ratio: float = 2.0
    n_records: int = 100
    n_hessian: int = 20
    init_seed: int = 0
    data_seed: int = 0

    def __post_init__(self) -> None:
        net = DeepLinear(tuple(self.widths))
        object.__setattr__(self, "widths", net.widths)
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer: must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {METHODS}, got {self.method!r}")
        if self.regularizer != "none" and not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(
                f"strength: must be finite and > 0 for regularizer {self.regularizer!r}, got {self.strength!r}"
            )
        if self.regularizer == "minibatch":
            if self.method == "flow":
                raise ValueError("method: minibatch noise has no gradient-flow limit; use method 'gd'")
            if self.strength != int(self.strength) or not 1 <= self.strength <= self.n_samples:
                raise ValueError(
                    f"strength: the batch size must be an integer in [1, n_samples={self.n_samples}], "
                    f"got {self.strength!r}"
                )
        if not (math.isfinite(self.layer_ratio) and self.layer_ratio > 0):
            raise ValueError(f"layer_ratio: must be finite and > 0, got {self.layer_ratio!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds: must be >= 1, got {self.seeds!r}")

    @property
    def network(self) -> DeepLinear:
        return DeepLinear(self.widths)

    def train_config(self) -> DeepLinearConfig:
        reg, s = self.regularizer, self.strength
        return DeepLinearConfig(
            learning_rate=self.learning_rate,
            steps=self.steps,
            n_records=self.n_records,
            l2=s if reg == "l2" else 0.0,
            input_noise=s if reg == "input-noise" else 0.0,
            batch_size=int(s) if reg == "minibatch" else None,
        )

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        d_in, d_out = self.widths[0], self.widths[-1]
        teacher = [[2.0]] if self.network.is_scalar else None
        return regression_data(
            self.n_samples, d_in, d_out, label_noise=self.label_noise, teacher=teacher, seed=self.data_seed
        )

    def initial_weights(self) -> tuple[np.ndarray, ...]:
        net = self.network
        depth = net.depth
        if net.is_scalar:  # deterministic, imbalanced chain: w_l = ratio^{l − (L+1)/2}
            return tuple(np.full((1, 1), self.layer_ratio ** (i - (depth + 1) / 2)) for i in range(1, depth + 1))
        return tuple(
            w * self.layer_ratio ** (i - (depth + 1) / 2) for i, w in enumerate(net.init(self.init_seed), start=1)
        )


def train(exp: DeepLinearExperiment) -> DeepLinearRun:
    """Train the experiment's network (all seeds)."""
    x, y = exp.data()
    w0 = exp.initial_weights()
    if exp.method == "flow":
        return gradient_flow(w0, x, y, exp.train_config())
    return gradient_descent(w0, x, y, exp.train_config(), seeds=tuple(range(exp.seeds)))


def _floats(values: np.ndarray | list[float]) -> tuple[float, ...]:
    """Numbers as a tuple of floats (NaN kept: null in the summary)."""
    return tuple(np.asarray(values, np.float64).tolist())


def measure(exp: DeepLinearExperiment, run: DeepLinearRun) -> DeepLinearResult:
    """The summary of a run (see the module docstring), without a figure (``figure`` None)."""
    x, y = exp.data()
    n_members, n_rec = run.loss.shape
    picks = np.unique(np.round(np.linspace(0, n_rec - 1, min(exp.n_hessian, n_rec))).astype(int))
    layers = lambda i, r: tuple(w[i, r] for w in run.weights)  # noqa: E731
    alive = ~run.diverged
    dist = np.array(
        [
            [distance_to_minima(layers(i, r), x, y) if np.isfinite(run.loss[i, r]) else np.nan for r in range(n_rec)]
            for i in range(n_members)
        ]
    )
    top = np.array(
        [
            [hessian_top_eigenvalue(layers(i, r), x, y) if np.isfinite(run.loss[i, r]) else np.nan for r in picks]
            for i in range(n_members)
        ]
    )
    trace = np.asarray(hessian_trace(tuple(w[:, picks] for w in run.weights), x, y))
    t_opt = [optimization_phase_end(run.steps, run.loss[i]) for i in range(n_members)]
    t_half = [imbalance_half_time(run.steps, run.imbalance_norm[i]) for i in range(n_members)]
    mean = lambda a: _floats(np.nanmean(a[alive], axis=0) if alive.any() else np.full(a.shape[1:], np.nan))  # noqa: E731
    return DeepLinearResult(
        config=settings_json(exp),
        depth=exp.network.depth,
        method=run.method,
        min_loss=float(min_loss(x, y)),
        steps=_floats(run.steps),
        loss=mean(run.loss),
        imbalance_norm=mean(run.imbalance_norm),
        distance_to_minima=mean(dist),
        hessian_steps=_floats(run.steps[picks]),
        hessian_top=mean(top),
        hessian_trace=mean(trace),
        optimization_phase_end=_floats(t_opt),
        imbalance_half_time=_floats(t_half),
        imbalance_ratio_final=_floats(run.imbalance_norm[:, -1] / run.imbalance_norm[:, 0]),
        diverged=tuple(bool(d) for d in run.diverged),
        figure=None,
    )


def run_experiment(exp: DeepLinearExperiment, out_dir: str | Path) -> DeepLinearResult:
    """Train, measure, and write ``summary.json`` (`DeepLinearResult.save`) and ``deep_linear.png``
    (with ``deep_linear.pdf`` beside it) under ``out_dir``, each atomically."""
    from ntk_l2.experiments import plots

    out = Path(out_dir)
    result = measure(exp, train(exp))
    result = dataclasses.replace(result, figure=str(plots.save_deep_linear(out / "deep_linear.png", result.to_json())))
    result.save(out)
    return result
