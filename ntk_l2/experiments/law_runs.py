"""The pieces every law experiment shares: the dynamics a mode runs on, finite-width runs kept in
a result directory (resumable), the NTK problem of the swept network, and the λ = 0 reference
accuracy.

Used by the law experiments (`ntk_l2.experiments.laws`, `ntk_l2.experiments.law_autol2`), which
re-export the public names from `ntk_l2.experiments.laws`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import metrics
from ntk_l2.data.datasets import Dataset
from ntk_l2.laws import (
    Compute,
    Dynamics,
    FiniteDynamics,
    FiniteSweepConfig,
    KeepRun,
    KernelDynamics,
    LawProblem,
    LawRun,
    log_steps,
    sweep,
)
from ntk_l2.theory import gradient_descent_mse_l2

__all__ = ["MODES", "LawSetup", "finite_sweep", "keeper", "law_dynamics", "law_problem", "reference_accuracy"]

MODES = ("theory", "finite")
# FiniteSweepConfig fields newer than stored sweeps: left out of a run's stored settings at these values
_ADDED_LATER = {"parameterization": "ntk", "arch": "fc", "batchnorm": False}


def keeper(
    config: FiniteSweepConfig, ds: Dataset, out_dir: str | Path, log: Callable[[str], None] | None = None
) -> KeepRun:
    """A `ntk_l2.laws.KeepRun` that keeps each finished finite run in ``out_dir/runs``.

    Each run is saved as it finishes (`ntk_l2.experiments.runs.RunStore`:
    ``l2=<λ>_lr=<η>.json/.npz``, λ and η exact, e.g. ``l2=0.01_lr=1.0``) and read back instead of
    trained when the sweep is run again with the same network, settings (``config``) and data,
    so a killed sweep resumes and ends with the same results as an uninterrupted one; runs
    stored by earlier versions (names rounded to six digits, no checksums) are trained again.
    ``log`` gets one line per run.
    """
    from ntk_l2.experiments.runs import RunStore, fingerprint, run_name, settings

    store = RunStore(Path(out_dir) / "runs")
    data_id = fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test)

    def keep(l2: float, lr: float, compute: Compute) -> LawRun:
        def stored() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
            run, arrays = compute()
            return run.to_json(), dict(arrays)

        run_config = {**settings(config, _ADDED_LATER), "l2": l2, "lr": lr, "data": data_id}
        summary, _, reused = store.run(run_name(l2=l2, lr=lr), run_config, stored, LawRun.from_json)
        run = LawRun.from_json(summary, "stored run")
        if log is not None:
            log(
                f"λ = {l2:g}, η = {lr:g}: {'finished earlier' if reused else 'trained'}; "
                f"t* = {run.t_star:g}, t*ηλ = {run.t_star_eta_l2:.3g}, best test acc {run.max_test_acc:.4f}"
            )
        return run

    return keep


def finite_sweep(
    ds: Dataset,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    config: FiniteSweepConfig = FiniteSweepConfig(),
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[LawRun, ...]:
    """`ntk_l2.laws.sweep` on finite networks (`ntk_l2.laws.FiniteDynamics` of ``config``),
    each run ``config.budget``/(ηλ) steps long (and to ``config.budget_step`` if later), recorded
    at about ``config.n_records`` steps, kept in ``out_dir`` when given (`keeper`: resumable).
    A run longer than 10^6 steps is refused before any training (`ntk_l2.laws.sweep`'s ``max_steps``)."""
    keep = None if out_dir is None else keeper(config, ds, out_dir, log)
    dynamics = FiniteDynamics(ds, config, progress)
    return sweep(
        dynamics, l2_values, learning_rates, config.budget, config.budget_step, n_records=config.n_records, keep=keep
    )


def law_problem(
    ds: Dataset, depth: int = 3, parameterization: str = "ntk", width: int = 512, arch_kind: str = "fc"
) -> LawProblem:
    """The NTK problem of the bias-free ReLU network on ``ds`` (degree depth + 1), with the joint
    NNGP of train and test points for single-network (sampled f_0) predictions.

    In the NTK parameterization the kernel is the infinite-width one; in the standard
    parameterization it grows with the width, and neural-tangents computes it for the
    given ``width`` (`derivations/laws.md`, L4). ``arch_kind`` "cnn": the bias-free ReLU CNN of
    `FiniteSweepConfig.network` (3×3 convolutions, stride 2, ``width`` channels), degree depth + 1."""
    net = FiniteSweepConfig(depth=depth, width=width, parameterization=parameterization, arch=arch_kind).architecture(
        ds.n_classes, ds.input_shape
    )
    return LawProblem(
        net.ntk(ds.x_train),
        net.ntk(ds.x_test, ds.x_train),
        ds.y_train,
        ds.labels_test,
        depth + 1,
        nngp=net.nngp(np.concatenate([ds.x_train, ds.x_test])),
        labels_train=ds.labels_train,
    )


def reference_accuracy(problem: LawProblem, learning_rate: float, last_step: int) -> float:
    """The λ = 0 reference of the laws' figure: the best test accuracy of the theory's mean
    prediction without L2 over ``last_step`` steps."""
    predict0 = gradient_descent_mse_l2(problem.k_train_train, problem.y_train, learning_rate, 0.0, problem.degree)
    t0 = log_steps(last_step, 200).astype(float)
    return float(np.nanmax(metrics.accuracy(predict0(t0, 0.0, 0.0, problem.k_test_train)[1], problem.labels_test)))


def _problem(ds: Dataset, finite: FiniteSweepConfig) -> LawProblem | None:
    """The theory's problem for the finite runs' network, or None with batch normalization (no theory)."""
    if finite.batchnorm:
        return None
    return law_problem(ds, finite.depth, finite.parameterization, finite.width, finite.arch)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")


@dataclass(frozen=True)
class LawSetup:
    """What a law experiment runs on (`law_dynamics`): the dynamics, the records per run, and
    whether its runs are kept in the result directory (finite networks: `keeper`)."""

    dynamics: Dynamics
    n_records: int
    ds: Dataset
    kept: bool
    log: Callable[[str], None] | None = None

    def keep(self, config: FiniteSweepConfig, directory: Path) -> KeepRun | None:
        """The `keeper` of runs of ``config`` in ``directory``, or None for runs not kept."""
        return keeper(config, self.ds, directory, self.log) if self.kept else None


def law_dynamics(
    ds: Dataset,
    mode: str,
    finite: FiniteSweepConfig,
    problem: LawProblem | None,
    init_samples: int = 0,
    log: Callable[[str], None] | None = None,
) -> LawSetup:
    """What a law experiment runs on, by ``mode`` (the one place the mode is read): the kernel
    theory of ``problem`` (single networks with ``init_samples`` > 0), 200 records per run, or
    ``finite``'s network, ``finite.n_records`` records per run, kept in the result directory."""
    _check_mode(mode)
    if mode == "finite":
        return LawSetup(FiniteDynamics(ds, finite), finite.n_records, ds, True, log)
    if problem is None:
        raise ValueError("mode: there is no theory for batch normalization; use mode 'finite'")
    return LawSetup(KernelDynamics(problem, init_samples), 200, ds, False)
