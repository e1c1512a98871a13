"""Degree 0 against finite width: scale-invariant networks trained with L2, against the growing-kernel map.

The network is `ntk_l2.networks.degree_zero.degree_zero_network` (Dense/ReLU → Dense → LayerNorm →
fixed readout; degree 0, `derivations/degree_zero.md` Z1–Z2). Full-batch gradient descent with a
constant η and λ (`ntk_l2.finite.train.train`, which decays only the trainable weights) is
compared with the degree-0 discrete map `ntk_l2.theory.discrete.gradient_descent_mse_l2_discrete`
(D1–D4 at k = 0: α = 1, Θ_s = (1 − ηλ)^{−2s}Θ_0, Z3) started from each network's own f_0 on the
train and test points, so the remaining gap is the finite-width correction (Z5).

The rates are set from the kernel (Z4): η = ``drive``·N/μ_max (the step-0 drive β_0μ_max of the
top mode) and λ = ``decay``/η; the drive grows as (1 − ηλ)^{−1−2s}, and the map's stability horizon
is the last step with drive ≤ 2 (`horizon`). A run of ``steps`` must stay inside it.

Reported per width and seed: the relative error ‖f_*^net − f_*^theory‖/‖f_*^theory‖ on the test
points per record (max over time per seed; median over seeds per width, and its width exponent),
test accuracies of both, the probe kernel's growth ‖Θ_T‖/‖Θ_0‖ against (1 − ηλ)^{−2T}, the
probe kernel's initial relative deviation from the infinite-width Θ_0 ⊗ I_c, and the per-layer
weight norms ‖ω_l(T)‖/‖ω_l(0)‖ against (1 − ηλ)^T.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ntk_l2.common import metrics
from ntk_l2.common.records import Record
from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.compare import relative_error, width_exponent
from ntk_l2.experiments.results_compare import settings_json
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.networks.degree_zero import degree_zero_network
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete

__all__ = [
    "DegreeZeroConfig",
    "DegreeZeroResult",
    "DegreeZeroWidth",
    "compare_width",
    "horizon",
    "infinite_width_kernels",
    "rates",
    "run_degree_zero",
]


@dataclass(frozen=True)
class DegreeZeroConfig:
    """A degree-0 comparison: network, rates (Z4), steps, widths and seeds.

    Attributes:
      depth: Dense → ReLU blocks before the last Dense and the LayerNorm.
      widths: hidden widths n of the finite networks.
      readout_W_std: σ_r of the fixed readout.
      drive: ημ_max/N at step 0 (sets η from the kernel); in (0, 2).
      decay: ηλ per step, in (0, 1).
      steps: full-batch steps T; must not pass the stability horizon.
      seeds: networks per width (seed i draws the trainable weights and the readout).
      n_records: record steps, evenly spaced over [0, T].
      n_probe: training points of the probe kernel, recorded at steps 0 and T.
    """

    depth: int = 1
    widths: tuple[int, ...] = (256, 512, 1024, 2048)
    readout_W_std: float = 0.25
    drive: float = 0.2
    decay: float = 0.005
    steps: int = 160
    seeds: int = 3
    n_records: int = 17
    n_probe: int = 8

    def __post_init__(self) -> None:
        if not self.widths or any(
            isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in self.widths
        ):
            raise ValueError(f"widths: need positive integers, got {self.widths!r}")
        for name in ("depth", "seeds", "n_records", "n_probe", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not 0.0 < self.drive < 2.0:
            raise ValueError(f"drive: must be in (0, 2) (ημ_max/N at step 0, D5), got {self.drive!r}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay: must be in (0, 1) (ηλ), got {self.decay!r}")
        if not 0.0 < self.readout_W_std < math.inf:
            raise ValueError(f"readout_W_std: must be a finite number > 0, got {self.readout_W_std!r}")


def rates(mu_max: float, norm: float, cfg: DegreeZeroConfig) -> tuple[float, float]:
    """(η, λ) = (drive·N/μ_max, decay/η) for the kernel's largest eigenvalue μ_max and N = Y.size (Z4)."""
    if not (mu_max > 0 and norm > 0):
        raise ValueError(f"mu_max: need mu_max > 0 and norm > 0, got {mu_max!r} and {norm!r}")
    eta = cfg.drive * norm / mu_max
    return eta, cfg.decay / eta


def drive_at(step: Any, eta: float, lam: float, mu_max: float, norm: float) -> np.ndarray:
    """β_sμ_max = ημ_max(1 − ηλ)^{−1−2s}/N: the top mode's drive at step s at degree 0 (D4, Z3)."""
    s = np.asarray(step, np.float64)
    return eta * mu_max / norm * np.exp((-1.0 - 2.0 * s) * math.log1p(-eta * lam))


def horizon(eta: float, lam: float, mu_max: float, norm: float) -> int:
    """The last step s with β_sμ_max ≤ 2 (D5 at k = 0, Z4): ⌊ln(2N(1 − ηλ)/(ημ_max))/(−2 ln(1 − ηλ))⌋.

    The map performs the updates s = 0 … t − 1, so t ≤ horizon + 1 steps are accepted.
    """
    g = eta * lam
    return int(math.floor(math.log(2.0 * norm * (1.0 - g) / (eta * mu_max)) / (-2.0 * math.log1p(-g))))


def infinite_width_kernels(ds: Dataset, cfg: DegreeZeroConfig) -> dict[str, np.ndarray]:
    """Θ_0 blocks (Z2, float64): ``train`` Θ(X, X), ``test`` Θ(X_*, X) and ``probe`` on the first n_probe points."""
    net = degree_zero_network(cfg.depth, 16, ds.n_classes, readout_W_std=cfg.readout_W_std)
    probe = ds.x_train[: cfg.n_probe]
    return {"train": net.ntk(ds.x_train), "test": net.ntk(ds.x_test, ds.x_train), "probe": net.ntk(probe)}


@dataclass(frozen=True)
class DegreeZeroWidth(Record):
    """One width: the finite networks against the degree-0 map from each seed's own f_0."""

    width: int
    steps: tuple[int, ...]
    # (seed, record): ‖f_*^net − f_*^theory‖/‖f_*^theory‖ on the test points
    rel_err_test: tuple[tuple[float, ...], ...]
    # (seed,): max over time of rel_err_test, and its median over seeds
    rel_err_test_max: tuple[float, ...]
    median_rel_err_test_max: float
    # (seed, record): test accuracy of the network and of the theory from its f_0
    acc_test_finite: tuple[tuple[float, ...], ...]
    acc_test_theory: tuple[tuple[float, ...], ...]
    # (seed,): ‖Θ_T‖/‖Θ_0‖ of the probe kernel; the theory's (1 − ηλ)^{−2T}
    kernel_ratio: tuple[float, ...]
    kernel_ratio_theory: float
    # (seed,): ‖Θ_0^probe − Θ_0 ⊗ I_c‖/‖Θ_0 ⊗ I_c‖, the initial kernel's finite-width deviation
    kernel_err_init: tuple[float, ...]
    # (seed, layer): ‖ω_l(T)‖/‖ω_l(0)‖; the theory's (1 − ηλ)^T
    layer_norm_ratio: tuple[tuple[float, ...], ...]
    layer_norm_ratio_theory: float
    diverged: tuple[bool, ...]
    seconds: float


@dataclass(frozen=True)
class DegreeZeroResult(Record):
    """Every width of a `DegreeZeroConfig`, with the rates, the horizon and the width exponent."""

    config: dict[str, Any]
    dataset: str
    n_train: int
    n_test: int
    learning_rate: float
    l2: float
    mu_max: float
    horizon: int
    drive_last: float
    widths: dict[str, DegreeZeroWidth]
    median_rel_err_test_max: tuple[float, ...]
    width_exponent: float | None


def _train_one(ds: Dataset, cfg: DegreeZeroConfig, width: int, seed: int, eta: float, lam: float) -> Any:
    net = degree_zero_network(cfg.depth, width, ds.n_classes, readout_W_std=cfg.readout_W_std, readout_seed=seed)
    record = tuple(int(s) for s in np.unique(np.round(np.linspace(0, cfg.steps, cfg.n_records)).astype(int)))
    train_cfg = TrainConfig(
        learning_rate=eta,
        l2=lam,
        steps=cfg.steps,
        record_steps=record,
        ntk_steps=(0, cfg.steps),
        n_probe=cfg.n_probe,
    )
    return train(
        net.init_fn,
        net.apply_fn,
        ds.x_train,
        ds.y_train,
        train_cfg,
        x_test=ds.x_test,
        labels_test=ds.labels_test,
        seeds=(seed,),
        progress=False,
    )


def compare_width(
    ds: Dataset,
    cfg: DegreeZeroConfig,
    width: int,
    kernels: Mapping[str, np.ndarray],
    predict: Callable[..., Any],
    eta: float,
    lam: float,
) -> tuple[DegreeZeroWidth, dict[str, np.ndarray]]:
    """Train ``cfg.seeds`` networks of one width and compare each with the map from its own f_0 (Z3, Z5).

    Returns the summary and the trajectories [seed, record, m, c]: ``fx_test``, ``fx_test_theory``.
    """
    start = time.perf_counter()
    rows: dict[str, list[Any]] = {k: [] for k in ("fx", "th", "acc", "ratio", "kerr", "norms", "div")}
    c = ds.n_classes
    probe_inf = np.kron(kernels["probe"], np.eye(c))  # rows (i, a), as the recorder's (p·c, p·c)
    for seed in range(cfg.seeds):
        res = _train_one(ds, cfg, width, seed, eta, lam)
        f0 = res.fx_train[0, 0].astype(np.float64)
        fs0 = res.fx_test[0, 0].astype(np.float64)
        theory = np.asarray(predict(res.steps, f0, fs0, kernels["test"])[1], np.float64)
        rows["fx"].append(res.fx_test[0].astype(np.float64))
        rows["th"].append(theory)
        rows["acc"].append(res.acc_test[0])
        ntk = np.asarray(res.ntk_probe[0], np.float64)  # (2, p·c, p·c): steps 0 and T
        rows["ratio"].append(np.linalg.norm(ntk[1]) / np.linalg.norm(ntk[0]))
        rows["kerr"].append(np.linalg.norm(ntk[0] - probe_inf) / np.linalg.norm(probe_inf))
        rows["norms"].append(res.layer_norms[0, -1] / res.layer_norms[0, 0])
        rows["div"].append(bool(res.diverged[0]))
    fx, th = np.stack(rows["fx"]), np.stack(rows["th"])
    err = relative_error(fx, th)
    keep = 1.0 - eta * lam
    summary = DegreeZeroWidth(
        width=int(width),
        steps=tuple(int(s) for s in res.steps),
        rel_err_test=_rows(err),
        rel_err_test_max=tuple(float(v) for v in err.max(axis=1)),
        median_rel_err_test_max=float(np.median(err.max(axis=1))),
        acc_test_finite=_rows(np.stack(rows["acc"])),
        acc_test_theory=_rows(metrics.accuracy(th, ds.labels_test)),
        kernel_ratio=tuple(float(v) for v in rows["ratio"]),
        kernel_ratio_theory=float(keep ** (-2.0 * cfg.steps)),
        kernel_err_init=tuple(float(v) for v in rows["kerr"]),
        layer_norm_ratio=_rows(np.stack(rows["norms"])),
        layer_norm_ratio_theory=float(keep**cfg.steps),
        diverged=tuple(rows["div"]),
        seconds=time.perf_counter() - start,
    )
    return summary, {"steps": np.asarray(res.steps), "fx_test": fx, "fx_test_theory": th}


def _rows(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(a, np.float64))


def run_degree_zero(
    ds: Dataset, cfg: DegreeZeroConfig, progress: bool = False
) -> tuple[DegreeZeroResult, dict[int, dict[str, np.ndarray]]]:
    """Every width of ``cfg`` (`compare_width`) against one degree-0 map (Z3–Z5).

    Refuses (ValueError naming ``steps``) a run longer than the map's stability horizon (Z4).
    Returns the result and, per width, the trajectories of `compare_width`.
    """
    kernels = infinite_width_kernels(ds, cfg)
    norm = float(ds.y_train.size)
    mu_max = float(np.linalg.eigvalsh(kernels["train"])[-1])
    eta, lam = rates(mu_max, norm, cfg)
    last = horizon(eta, lam, mu_max, norm)
    if cfg.steps > last + 1:
        raise ValueError(f"steps: {cfg.steps} passes the degree-0 stability horizon (last stable update {last})")
    predict = gradient_descent_mse_l2_discrete(kernels["train"], ds.y_train, eta, lam, 0)
    per_width: dict[str, DegreeZeroWidth] = {}
    arrays: dict[int, dict[str, np.ndarray]] = {}
    for w in cfg.widths:
        summary, arrays[int(w)] = compare_width(ds, cfg, int(w), kernels, predict, eta, lam)
        per_width[str(w)] = summary
        if progress:
            print(f"width {w}: median max error {summary.median_rel_err_test_max:.4f} ({summary.seconds:.0f} s)")
    medians = tuple(r.median_rel_err_test_max for r in per_width.values())
    result = DegreeZeroResult(
        config=settings_json(cfg),
        dataset=ds.name,
        n_train=int(ds.x_train.shape[0]),
        n_test=int(ds.x_test.shape[0]),
        learning_rate=eta,
        l2=lam,
        mu_max=mu_max,
        horizon=last,
        drive_last=float(drive_at(cfg.steps - 1, eta, lam, mu_max, norm)),
        widths=per_width,
        median_rel_err_test_max=medians,
        width_exponent=width_exponent(cfg.widths, medians) if len(cfg.widths) > 1 else None,
    )
    return result, arrays
