"""Theory vs finite width: the same network, data and initial outputs, side by side.

For each width an ensemble of seeds is trained (`ntk_l2.finite.train`); the theory
(continuous and discrete, infinite-width NTK from ``kernel_fn``) starts from each
seed's own initial outputs f_0, so the remaining gap is the finite-width
correction. The optimizer is plain gradient descent, heavy-ball or Nesterov
momentum β (``momentum``, ``nesterov``) and/or minibatch SGD (``batch_size``):

- discrete theory: `ntk_l2.theory.discrete.gradient_descent_mse_l2_discrete` with the
  same β (`derivations/discrete_time.md`, D1–D6 at β = 0; `derivations/momentum.md`, M1–M11);
- continuous theory: gradient flow `gradient_descent_mse_l2` at β = 0
  (`derivations/continuous_time.md`), the momentum flow
  `ntk_l2.theory.momentum_flow.gradient_descent_mse_l2_momentum` for heavy ball
  (`derivations/momentum_flow.md`, MF1–MF4) while its weight scale stays positive
  (ηλ ≤ (1 − β)²/4, no oscillation); none for Nesterov (no flow is derived for it);
- minibatch SGD: the expected outputs over batch draws follow the full-batch map
  exactly in the kernel regime (`derivations/sgd.md`, S4), so the SGD runs are compared
  with the full-batch theory mean; their gap then also holds the batch noise, whose
  spread (S5, `ntk_l2.theory.sgd`) does not shrink with width.

Reported per record step:

- relative error ‖f_*^finite − f_*^theory‖ / ‖f_*^theory‖ on the test points,
- test accuracy of both,
- the measured kernel ratio ‖Θ_t‖/‖Θ_0‖ on a probe set against a_t^{2(k−1)}, a_t the
  infinite-width parameter scale ((1 − ηλ)^t at β = 0, D2; M5 with momentum), at up to
  ``n_kernel_records`` of the record steps (``kernel_steps``),
- per-layer norms ‖θ_l(t)‖/‖θ_l(0)‖ against a_t, the infinite-width decay (the
  gradient moves θ by O(1/√width) relative),

each as a mean over seeds and per seed (``*_seeds``, drawn as medians with min–max bands), and
over widths the fitted exponent of the error: err ∝ width^p. Why these should
agree, and only as width → ∞: `derivations/finite_width.md` (F2–F4). `run_comparison` returns a
`ntk_l2.experiments.results_compare.ComparisonResult` (a `WidthComparison` per width) and, given
an output directory, writes it as ``summary.json`` beside its figure.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.common import metrics
from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.results_compare import ComparisonResult, WidthComparison, settings_json
from ntk_l2.experiments.runs import RunStore, fingerprint, settings
from ntk_l2.finite.train import TrainConfig, TrainResult, train
from ntk_l2.networks import arch
from ntk_l2.theory import gradient_descent_mse_l2
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete
from ntk_l2.theory.momentum_flow import gradient_descent_mse_l2_momentum
from ntk_l2.theory.momentum_scale import MapSpec, scale_at, scale_roots

# Fields added after runs were first stored, with the value they had implicitly then: a stored
# run of plain full-batch gradient descent stays valid (`ntk_l2.experiments.runs.settings`).
_ADDED_LATER = {"activation": "relu", "momentum": 0.0, "nesterov": False, "batch_size": None}


@dataclass(frozen=True)
class CompareConfig:
    """A theory-vs-finite-width comparison (fully connected, bias-free).

    ``activation`` is "relu" (σ_w = √2) or "linear" (σ_w = 1: a wide deep linear
    network of degree depth + 1, `ntk_l2.experiments.deep_linear_wide`). ``momentum`` β ∈ [0, 1)
    (heavy ball, or Nesterov with ``nesterov``) and ``batch_size`` (None: full batch)
    set the optimizer of the finite runs, as in `ntk_l2.finite.train.TrainConfig`.
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
    momentum: float = 0.0
    nesterov: bool = False
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "linear"):
            raise ValueError(f"activation: must be 'relu' or 'linear', got {self.activation!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths: need positive integers, got {self.widths!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds: must be >= 1, got {self.seeds!r}")
        if (
            isinstance(self.momentum, (bool, np.bool_))
            or not isinstance(self.momentum, (int, float, np.number))
            or not 0.0 <= float(self.momentum) < 1.0
        ):
            raise ValueError(f"momentum: must be a number in [0, 1), got {self.momentum!r}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov: must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: only meaningful with momentum > 0")
        if self.batch_size is not None and (
            isinstance(self.batch_size, (bool, np.bool_))
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "nesterov", bool(self.nesterov))


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


def parameter_scale(steps: np.ndarray, cfg: CompareConfig) -> np.ndarray:
    """The infinite-width parameter scale a_t, θ_t = a_tθ_0 + δ_t: (1 − ηλ)^t at β = 0 (D2), the
    λ-only momentum map's closed form with momentum (`derivations/momentum.md`, M5)."""
    steps = np.asarray(steps, np.float64)
    if cfg.momentum == 0.0:
        return (1.0 - cfg.learning_rate * cfg.l2) ** steps
    spec = MapSpec(cfg.depth + 1, cfg.momentum, cfg.nesterov, 1.0)  # N plays no part in the scale
    with enable_x64():
        a, _ = scale_at(jnp.asarray(steps), scale_roots(cfg.learning_rate * cfg.l2, spec))
        return np.asarray(a, np.float64)


def continuous_theory(cfg: CompareConfig) -> str | None:
    """Which continuous-time theory applies: "gradient flow" (β = 0), "momentum flow" (heavy ball
    with ηλ ≤ (1 − β)²/4, where the flow's weight scale does not oscillate through 0, MF2), else None."""
    if cfg.momentum == 0.0:
        return "gradient flow"
    if not cfg.nesterov and cfg.learning_rate * cfg.l2 <= (1.0 - cfg.momentum) ** 2 / 4:
        return "momentum flow"
    return None


def theory_predictors(kernels: Mapping[str, np.ndarray], ds: Dataset, cfg: CompareConfig) -> dict[str, Any]:
    """Discrete and (where one applies, `continuous_theory`) continuous predictors on the
    infinite-width NTK with the finite runs' η, λ and β: one eigendecomposition each, shared by
    every width. For minibatch SGD these are the full-batch maps, the theory's mean (S4)."""
    degree = cfg.depth + 1
    args = (kernels["train"], ds.y_train, cfg.learning_rate, cfg.l2, degree)
    out = {"discrete": gradient_descent_mse_l2_discrete(*args, momentum=cfg.momentum, nesterov=cfg.nesterov)}
    flow = continuous_theory(cfg)
    if flow == "gradient flow":
        out["continuous"] = gradient_descent_mse_l2(*args)
    elif flow == "momentum flow":
        out["continuous"] = gradient_descent_mse_l2_momentum(*args, momentum=cfg.momentum)
    return out


def _theory_runs(predictors: dict[str, Any], k_test: np.ndarray, result: TrainResult):
    """Predictions from each seed's own f_0: (seed, record, m, c) per solver, float64 NumPy."""
    times = {"continuous": result.steps.astype(float), "discrete": result.steps}
    out: dict[str, list[np.ndarray]] = {name: [] for name in predictors}
    for seed in range(result.fx_train.shape[0]):
        f0, fs0 = result.fx_train[seed, 0].astype(np.float64), result.fx_test[seed, 0].astype(np.float64)
        for name, predict in predictors.items():
            out[name].append(np.asarray(predict(times[name], f0, fs0, k_test)[1], np.float64))
    return {k: np.stack(v) for k, v in out.items()}


def _train_config(cfg: CompareConfig) -> TrainConfig:
    """The finite runs' configuration, with the probe NTK at up to ``n_kernel_records`` record steps.

    The probe NTK costs p·c vector products per seed (about 1.6 s at width 2048), so it is
    recorded at no more than n_kernel_records checkpoints, first and last included.
    """
    train_cfg = TrainConfig(
        learning_rate=cfg.learning_rate,
        l2=cfg.l2,
        steps=cfg.steps,
        n_records=cfg.n_records,
        n_probe=cfg.n_probe,
        float64=cfg.float64,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        batch_size=cfg.batch_size,
    )
    record = train_cfg.recorded_steps()
    picks = np.unique(
        np.round(np.linspace(0, len(record) - 1, max(min(cfg.n_kernel_records, len(record)), 1))).astype(int)
    )
    return TrainConfig(**{**asdict(train_cfg), "ntk_steps": tuple(record[i] for i in picks)})


def compare_width(
    ds: Dataset,
    cfg: CompareConfig,
    width: int,
    kernels: Mapping[str, np.ndarray] | None = None,
    progress: bool | None = None,
    predictors: dict[str, Any] | None = None,
) -> tuple[WidthComparison, dict[str, np.ndarray]]:
    """Train ``cfg.seeds`` networks of one width and compare them with the theory.

    ``kernels``: the infinite-width NTK blocks (`infinite_width_kernels`), computed when None.
    Returns (summary, arrays): the per-checkpoint comparison (`WidthComparison`) and the
    raw trajectories, indexed [seed, record, ...]: ``fx_train``, ``fx_test``,
    ``fx_test_theory_discrete``, ``fx_test_theory_continuous`` (when a continuous theory
    applies, `continuous_theory`), ``loss_data``, ``loss_l2``, ``layer_norms``, ``steps``,
    and ``ntk_probe`` [seed, kernel step, p·c, p·c] with ``kernel_steps``.
    """
    kernels = infinite_width_kernels(ds, cfg) if kernels is None else _checked_kernels(kernels, ds)
    if predictors is None:
        predictors = theory_predictors(kernels, ds, cfg)
    net = network(cfg, ds.n_classes, width)
    result = train(
        net.init_fn,
        net.apply_fn,
        ds.x_train,
        ds.y_train,
        _train_config(cfg),
        x_test=ds.x_test,
        labels_train=ds.labels_train,
        labels_test=ds.labels_test,
        seeds=tuple(range(cfg.seeds)),
        progress=progress,
        label=f"width {width}",
    )
    theory = _theory_runs(predictors, kernels["test"], result)
    arrays = {
        "steps": result.steps,
        "fx_train": result.fx_train,
        "fx_test": result.fx_test,
        **{f"fx_test_theory_{k}": v for k, v in theory.items()},
        "loss_data": result.loss_data,
        "loss_l2": result.loss_l2,
        "layer_norms": result.layer_norms,
        "ntk_probe": result.ntk_probe,
        "kernel_steps": result.ntk_steps,
    }
    return _summary(ds, cfg, width, net.degree, result, theory), arrays


def _summary(
    ds: Dataset, cfg: CompareConfig, width: int, degree: int, result: TrainResult, theory: dict[str, np.ndarray]
) -> WidthComparison:
    """The comparison of one width (see `compare_width`), built from its JSON form (as stored runs keep it)."""
    err = {k: relative_error(result.fx_test, v) for k, v in theory.items()}  # (seed, record)
    acc_theory = {k: metrics.accuracy(v, ds.labels_test) for k, v in theory.items()}
    kernel_norms = np.linalg.norm(result.ntk_probe, axis=(-2, -1))  # (seed, record)
    norms = result.layer_norms / result.layer_norms[:, :1]
    summary = {
        "width": width,
        "steps": result.steps.tolist(),
        "diverged": result.diverged.tolist(),
        "rel_err_test": {k: v.tolist() for k, v in err.items()},
        "rel_err_test_max": np.max(err["discrete"], axis=1).tolist(),  # per seed, max over time
        "rel_err_test_mean": np.mean(err["discrete"], axis=0).tolist(),  # per record, mean over seeds
        "acc_test_finite": np.nanmean(result.acc_test, axis=0).tolist(),
        "acc_test_theory": np.mean(acc_theory["discrete"], axis=0).tolist(),
        "kernel_steps": result.ntk_steps.tolist(),
        "kernel_ratio": np.mean(kernel_norms / kernel_norms[:, :1], axis=0).tolist(),  # at kernel_steps
        "layer_norm_ratio": np.mean(norms, axis=0).tolist(),  # (record, layer)
        # per seed, for the figures' medians and min–max bands (`ntk_l2.experiments.plot_comparison`)
        "acc_test_finite_seeds": result.acc_test.tolist(),  # (seed, record)
        "acc_test_theory_seeds": acc_theory["discrete"].tolist(),  # (seed, record)
        "kernel_ratio_seeds": (kernel_norms / kernel_norms[:, :1]).tolist(),  # (seed, kernel step)
        "layer_norm_ratio_seeds": norms.tolist(),  # (seed, record, layer)
    }
    if cfg.momentum == 0.0:  # (1 − ηλ)^{2(k−1)t} as it was always written, so stored runs read back identical
        keep = 1.0 - cfg.learning_rate * cfg.l2
        summary["kernel_ratio_theory"] = (keep ** (2 * (degree - 1) * result.ntk_steps.astype(float))).tolist()
        summary["layer_norm_ratio_theory"] = (keep ** result.steps.astype(float)).tolist()
    else:
        summary["kernel_ratio_theory"] = (parameter_scale(result.ntk_steps, cfg) ** (2 * (degree - 1))).tolist()
        summary["layer_norm_ratio_theory"] = parameter_scale(result.steps, cfg).tolist()
    if "continuous" in theory:
        summary["rel_err_test_max_continuous"] = np.max(err["continuous"], axis=1).tolist()
        summary["acc_test_theory_continuous"] = np.mean(acc_theory["continuous"], axis=0).tolist()
    return WidthComparison.from_json(summary)


def infinite_width_kernels(ds: Dataset, cfg: CompareConfig) -> dict[str, np.ndarray]:
    """NTK blocks of the infinite-width network (float64): ``train`` Θ(X, X) and ``test`` Θ(X_*, X)."""
    net = network(cfg, ds.n_classes)
    return {"train": net.ntk(ds.x_train), "test": net.ntk(ds.x_test, ds.x_train)}


def _checked_kernels(kernels: Any, ds: Dataset) -> Mapping[str, np.ndarray]:
    """Given kernels with a ``train`` (n, n) and a ``test`` (m, n) block for ``ds``, or a one-line
    ValueError naming ``kernels``."""
    n, m = ds.x_train.shape[0], ds.x_test.shape[0]
    if not isinstance(kernels, Mapping) or not {"train", "test"} <= set(kernels):
        raise ValueError("kernels: expected a mapping with the blocks 'train' and 'test' (infinite_width_kernels)")
    for name, rows in (("train", n), ("test", m)):
        shape = np.shape(kernels[name])
        if shape[:2] != (rows, n):
            raise ValueError(f"kernels: the {name} block has shape {shape}, expected {(rows, n)} for this dataset")
    return kernels


def compare_widths(
    ds: Dataset,
    cfg: CompareConfig,
    progress: bool | None = None,
    runs_dir: str | Path | None = None,
    kernels: Mapping[str, np.ndarray] | None = None,
) -> ComparisonResult:
    """Every width of ``cfg`` (`compare_width`), plus the width exponent of the median
    max-over-time error; writes no summary and no figure (its ``figure`` is None).

    ``kernels``: the infinite-width NTK blocks of ``cfg``'s network on ``ds``
    (`infinite_width_kernels`), computed once here when None. With ``runs_dir`` each width is a
    resumable run (`ntk_l2.experiments.runs.RunStore`: ``width<W>.json`` + ``width<W>.npz``);
    widths finished by an earlier call with the same configuration and data are read back, not
    trained again.
    """
    kernels = infinite_width_kernels(ds, cfg) if kernels is None else _checked_kernels(kernels, ds)
    predictors = theory_predictors(kernels, ds, cfg)
    store = None if runs_dir is None else RunStore(Path(runs_dir))
    data_id = fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.labels_test)
    per_width: list[WidthComparison] = []
    for w in cfg.widths:
        compute = partial(compare_width, ds, cfg, w, kernels, progress, predictors)
        if store is None:
            per_width.append(compute()[0])
            continue
        run_config = {**settings(cfg, _ADDED_LATER), "widths": None, "width": w, "data": data_id}
        summary, _, reused = store.run(f"width{w}", run_config, partial(_as_json, compute), WidthComparison.from_json)
        if reused and progress:
            print(f"width {w}: finished earlier, read from {store.directory / f'width{w}.json'}", file=sys.stderr)
        per_width.append(WidthComparison.from_json(summary, str(store.directory / f"width{w}.json")))
    medians = tuple(float(np.median(r.rel_err_test_max)) for r in per_width)
    return ComparisonResult(
        config=settings_json(cfg),
        dataset=ds.name,
        n_train=int(ds.x_train.shape[0]),
        n_test=int(ds.x_test.shape[0]),
        degree=cfg.depth + 1,
        continuous_theory=continuous_theory(cfg),
        widths={str(r.width): r for r in per_width},
        median_rel_err_test_max=medians,
        width_exponent=width_exponent(cfg.widths, medians) if len(cfg.widths) > 1 else None,
        figure=None,
    )


def _as_json(compute: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``compute()``'s (summary, arrays) with the summary as JSON, as a stored run keeps it."""
    summary, arrays = compute()
    return summary.to_json(), arrays


def run_comparison(
    ds: Dataset,
    cfg: CompareConfig,
    progress: bool | None = None,
    out_dir: str | Path | None = None,
    kernels: Mapping[str, np.ndarray] | None = None,
) -> ComparisonResult:
    """All widths and the width exponent (`compare_widths`); with ``out_dir``, a result directory:
    the resumable runs in ``out_dir/runs``, the figure ``comparison.png`` (and ``.pdf``) and
    ``summary.json`` (`ComparisonResult.save`), each written atomically.

    ``kernels``: the infinite-width NTK blocks when already computed (``ntk-l2 compare --lr auto``
    computes them for the learning rate), else computed once here.
    """
    if out_dir is None:
        return compare_widths(ds, cfg, progress, kernels=kernels)
    out = Path(out_dir)
    result = compare_widths(ds, cfg, progress, out / "runs", kernels)
    from ntk_l2.experiments import plots  # matplotlib only when a figure is drawn

    figure = plots.save_comparison(out / "comparison.png", result.to_json())
    result = dataclasses.replace(result, figure=str(figure))
    result.save(out)
    return result
