"""The laws' dynamics on finite networks: the network (`FiniteSweepConfig`) and its training
as a `ntk_l2.laws.dynamics.Dynamics` (`FiniteDynamics`). Nothing here writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common import metrics
from ntk_l2.laws.dynamics import ControlledRun, Controller, Curve

PARAMETERIZATIONS = ("ntk", "standard")
ARCHS = ("fc", "cnn")

__all__ = ["ARCHS", "PARAMETERIZATIONS", "FiniteDynamics", "FiniteSweepConfig"]


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


@dataclass(frozen=True, eq=False)
class FiniteDynamics:
    """Finite networks as the laws' `ntk_l2.laws.dynamics.Dynamics`: ``config``'s network
    (`FiniteSweepConfig.network`) trained on ``ds`` (`ntk_l2.finite.train.train`), one member
    per seed (``config.seeds``, trained together), with ``config.float64``. Only the network's
    fields, ``seeds`` and ``float64`` of ``config`` are read here: a run's length and records
    (``budget``, ``budget_step``, ``n_records``) are the arguments of `ntk_l2.laws.sweep`.
    ``progress``: the training's progress bars (None: for runs of more than 2,000 steps)."""

    ds: Any
    config: FiniteSweepConfig = FiniteSweepConfig()
    progress: bool | None = None

    @cached_property
    def _network(self) -> tuple[Any, Any]:
        return self.config.network(self.ds.n_classes, self.ds.input_shape)

    def _train(self, cfg: Any, label: str, **kwargs: Any) -> Any:
        from ntk_l2.finite.train import train  # looked up at call time: tests replace it

        ds = self.ds
        return train(
            *self._network,
            ds.x_train,
            ds.y_train,
            cfg,
            x_test=ds.x_test,
            labels_test=ds.labels_test,
            seeds=tuple(range(self.config.seeds)),
            progress=self.progress,
            label=label,
            **kwargs,
        )

    def _label(self) -> str:
        cfg = self.config
        return f"{cfg.arch}{' + BN' if cfg.batchnorm else ''} width {cfg.width}"

    def accuracy_curve(self, learning_rate: float, l2: float, steps: NDArray[np.int64]) -> Curve:
        """Train the seeds for ``steps[-1]`` steps; the test accuracy at ``steps``, averaged over
        the seeds that did not diverge (NaN from a step at which all have)."""
        from ntk_l2.finite.train import TrainConfig

        steps = np.asarray(steps, np.int64)
        cfg = TrainConfig(
            learning_rate=learning_rate,
            l2=l2,
            steps=int(steps[-1]),
            record_steps=tuple(int(s) for s in steps),
            float64=self.config.float64,
        )
        res = self._train(cfg, self._label())
        acc = np.nanmean(res.acc_test, axis=0) if not res.diverged.all() else np.full(len(res.steps), np.nan)
        arrays = {"steps": res.steps, "acc_test": res.acc_test, "loss_data": res.loss_data}
        return Curve(np.asarray(res.steps, np.int64), acc, bool(res.diverged.any()), arrays)

    def run_l2_controller(
        self, learning_rate: float, steps: int, l2_init: float, record: NDArray[np.int64], controller: Controller
    ) -> ControlledRun:
        """Train the seeds with λ set by ``controller`` at every record step, from each seed's
        own training error and data loss (`ntk_l2.finite.train.train`'s ``l2_controller``)."""
        from ntk_l2.finite.train import TrainConfig

        labels = self.ds.labels_train

        def on_record(step: int, row: dict[str, np.ndarray]) -> np.ndarray:
            lam = np.array(row["l2"], np.float64).reshape(-1)
            error = 1.0 - metrics.accuracy(np.nan_to_num(np.asarray(row["fx_train"], np.float64)), labels)
            return controller(step, error, np.asarray(row["loss_data"], np.float64).reshape(-1), lam)

        cfg = TrainConfig(
            learning_rate=learning_rate,
            l2=l2_init,
            steps=int(steps),
            record_steps=tuple(int(s) for s in record),
            float64=self.config.float64,
        )
        res = self._train(cfg, self._label() + ", AutoL2", labels_train=labels, l2_controller=on_record)
        return ControlledRun(
            np.asarray(res.steps, np.int64),
            np.asarray(res.l2_records, np.float64),
            np.asarray(res.acc_test, np.float64),
            np.asarray(res.acc_train, np.float64),
            np.asarray(res.loss_data, np.float64),
            bool(res.diverged.any()),
        )
