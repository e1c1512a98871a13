"""The laws on finite networks: the network of a sweep and one training run per (λ, η).

The sweep writes nothing: a caller that keeps runs (`ntk_l2.experiments.laws.finite_sweep`,
resumable) passes a ``run`` hook that decides, per pair, whether to train or to read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ntk_l2.common import io
from ntk_l2.laws.tstar import record_steps, run_length, run_summary

PARAMETERIZATIONS = ("ntk", "standard")
ARCHS = ("fc", "cnn")

#: A training run of a sweep: its summary (as `finite_sweep` returns it) and arrays to keep with it.
Compute = Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]]

__all__ = ["ARCHS", "PARAMETERIZATIONS", "Compute", "FiniteSweepConfig", "RunHook", "finite_sweep"]


class RunHook(Protocol):
    """How `finite_sweep` obtains the run of one pair: ``run(l2, lr, compute)`` returns the run's
    summary, either ``compute()[0]`` (``compute`` trains) or that of an identical run done earlier."""

    def __call__(self, l2: float, lr: float, compute: Compute) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FiniteSweepConfig:
    """Finite-width runs for the laws: a bias-free ReLU network of ``depth`` hidden layers.

    ``parameterization`` is "ntk" (the package's default) or "standard": W itself is trained,
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
        """The `ntk_l2.networks.arch.Architecture` (stax triple and degree) of the network without batch
        normalization: ``depth`` hidden layers, bias-free ReLU; fc: ``width`` units; cnn: 3×3
        convolutions with ``width`` channels and stride 2, then a dense readout."""
        from ntk_l2.networks import arch

        if self.arch == "cnn":
            if len(input_shape) != 3:
                raise ValueError(
                    f"arch: the convolutional network needs NHWC images, got inputs of shape {input_shape}"
                )
            return arch.convolutional(
                self.depth,
                self.width,
                out_dim,
                strides=(2, 2),
                input_shape=input_shape,
                parameterization=self.parameterization,
            )
        return arch.fully_connected(
            self.depth, width=self.width, out_dim=out_dim, parameterization=self.parameterization
        )

    def network(self, out_dim: int, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The (init_fn, apply_fn) pair: `architecture`'s, or with ``batchnorm`` the same CNN with
        batch normalization after each convolution (`ntk_l2.networks.batchnorm`)."""
        from ntk_l2.networks.batchnorm import convolutional_batchnorm

        if self.batchnorm:
            return convolutional_batchnorm(self.depth, self.width, out_dim, parameterization=self.parameterization)
        net = self.architecture(out_dim, input_shape)
        return net.init_fn, net.apply_fn


def _train_run(
    ds: Any,
    net: tuple[Any, Any],
    config: FiniteSweepConfig,
    l2: float,
    lr: float,
    steps: np.ndarray,
    progress: bool | None,
) -> Compute:
    """The training of one pair, averaged over ``config.seeds`` (not started: a `Compute`)."""

    def compute() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        from ntk_l2.finite.train import TrainConfig, train  # looked up at call time: tests replace it

        cfg = TrainConfig(
            learning_rate=lr,
            l2=l2,
            steps=int(steps[-1]),
            record_steps=tuple(int(s) for s in steps),
            float64=config.float64,
        )
        res = train(
            net[0],
            net[1],
            ds.x_train,
            ds.y_train,
            cfg,
            x_test=ds.x_test,
            labels_test=ds.labels_test,
            seeds=tuple(range(config.seeds)),
            progress=progress,
        )
        acc = np.nanmean(res.acc_test, axis=0) if not res.diverged.all() else np.full(len(res.steps), np.nan)
        summary = run_summary(l2, lr, res.steps.astype(float), acc, config.budget_step)
        summary.update(diverged=bool(res.diverged.any()), steps=res.steps.tolist(), acc_test=io.json_floats(acc))
        return summary, {"steps": res.steps, "acc_test": res.acc_test, "loss_data": res.loss_data}

    return compute


def finite_sweep(
    ds: Any,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    config: FiniteSweepConfig = FiniteSweepConfig(),
    *,
    run: RunHook | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """The laws' sweep on finite networks: one training run per (λ, η), each for
    budget/(ηλ) steps (and to ``budget_step`` if later), accuracy averaged over seeds.

    Every pair is checked (λ > 0, η > 0) before any training. Each run is obtained through
    ``run(l2, lr, compute)`` (`RunHook`; None: trained, ``compute()[0]``), so a caller can keep
    finished runs and skip them when the sweep is run again.

    Returns one dict per pair (λ-major) with ``l2``, ``lr``, ``t_star``, ``t_star_eta_l2``,
    ``max_test_acc``, ``budget_test_acc``, ``diverged``, ``steps``, ``acc_test``.
    """
    pairs = []
    for lam in l2_values:
        for eta in learning_rates:
            if not (lam > 0 and eta > 0):
                raise ValueError(f"l2_values, learning_rates: need λ > 0 and η > 0, got λ = {lam!r}, η = {eta!r}")
            last = run_length(config.budget, eta, lam, config.budget_step)
            pairs.append((lam, eta, record_steps(last, config.n_records, config.budget_step)))
    net = config.network(ds.n_classes, ds.input_shape)
    runs = []
    for lam, eta, steps in pairs:
        compute = _train_run(ds, net, config, float(lam), float(eta), steps, progress)
        runs.append(compute()[0] if run is None else run(float(lam), float(eta), compute))
    return runs
