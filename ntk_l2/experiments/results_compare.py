"""Typed results of the theory-vs-finite-width comparison, the demo and the deep-linear runs.

Frozen records (`ntk_l2.common.records`) whose fields are the keys of their ``summary.json``
(`ntk_l2.experiments.results`: `load_result` reads them back). Arrays are tuples indexed as the
comment of each field says: (seed, record) is a tuple over seeds of tuples over the record
steps. A float that is undefined (the accuracy of all-zero outputs, a diverged seed, a phase
that was not reached) is NaN, stored as ``null``; a field typed ``X | None`` is None where
the value does not exist (no continuous theory, a single width, no figure drawn).

================================  ==================================================  ============
class                             written by                                          kind
================================  ==================================================  ============
`ComparisonResult`                `ntk_l2.experiments.compare.run_comparison`         ``compare``
`DemoResult`                      `ntk_l2.experiments.demo.run_demo`                  ``demo``
`DeepLinearResult`                `ntk_l2.experiments.deep_linear.run_experiment`     ``deep-linear``
================================  ==================================================  ============

Nested records: `WidthComparison` (one width of a comparison, also what
`ntk_l2.experiments.compare.compare_width` returns and each stored run keeps),
`DemoComparison` (the demo's comparison), `DemoCurves` (the demo's theory curves for one λ)
and `WideDeepLinearComparison` (`ntk_l2.experiments.deep_linear_wide.wide_deep_linear`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ntk_l2.common.records import Record, Result

__all__ = [
    "RESULTS",
    "Comparison",
    "ComparisonResult",
    "DeepLinearResult",
    "DemoComparison",
    "DemoCurves",
    "DemoResult",
    "WideDeepLinearComparison",
    "WidthComparison",
    "settings_json",
]


def settings_json(config: Any) -> dict[str, Any]:
    """A frozen configuration dataclass as strict JSON, the form of a result's ``config`` field:
    tuples as lists, NaN and ±inf as None (so that a result equals itself read back)."""
    text = json.dumps(dataclasses.asdict(config))
    return json.loads(text, parse_constant=lambda _: None)


@dataclass(frozen=True)
class WidthComparison(Record):
    """One width of a comparison: the finite networks against the theory from each seed's own f_0
    (`ntk_l2.experiments.compare`); "theory" is the discrete map unless a name says otherwise."""

    # the hidden width of the finite networks
    width: int
    # the record steps t, (record,)
    steps: tuple[int, ...]
    # whether each seed's training diverged, (seed,)
    diverged: tuple[bool, ...]
    # ‖f_*^finite − f_*^theory‖/‖f_*^theory‖ on the test points per theory ("discrete", "continuous"), (seed, record)
    rel_err_test: dict[str, tuple[tuple[float, ...], ...]]
    # the max over records of the relative error (discrete theory), (seed,)
    rel_err_test_max: tuple[float, ...]
    # the mean over seeds of the relative error (discrete theory), (record,)
    rel_err_test_mean: tuple[float, ...]
    # test accuracy of the finite networks, mean over seeds ignoring undefined values, (record,)
    acc_test_finite: tuple[float, ...]
    # test accuracy of the discrete theory, mean over seeds, (record,)
    acc_test_theory: tuple[float, ...]
    # the record steps at which the probe-set NTK was measured, (kernel step,)
    kernel_steps: tuple[int, ...]
    # ‖Θ_t‖/‖Θ_0‖ on the probe set, mean over seeds, (kernel step,)
    kernel_ratio: tuple[float, ...]
    # ‖θ_l(t)‖/‖θ_l(0)‖ per layer, mean over seeds, (record, layer)
    layer_norm_ratio: tuple[tuple[float, ...], ...]
    # test accuracy of the finite networks per seed, (seed, record)
    acc_test_finite_seeds: tuple[tuple[float, ...], ...]
    # test accuracy of the discrete theory from each seed's f_0, (seed, record)
    acc_test_theory_seeds: tuple[tuple[float, ...], ...]
    # ‖Θ_t‖/‖Θ_0‖ per seed, (seed, kernel step)
    kernel_ratio_seeds: tuple[tuple[float, ...], ...]
    # ‖θ_l(t)‖/‖θ_l(0)‖ per seed, (seed, record, layer)
    layer_norm_ratio_seeds: tuple[tuple[tuple[float, ...], ...], ...]
    # the infinite-width kernel decay a_t^{2(k−1)} ((1 − ηλ)^{2(k−1)t} at β = 0), (kernel step,)
    kernel_ratio_theory: tuple[float, ...]
    # the infinite-width parameter scale a_t ((1 − ηλ)^t at β = 0), (record,)
    layer_norm_ratio_theory: tuple[float, ...]
    # max over records of the error against the continuous theory, (seed,); None without one
    rel_err_test_max_continuous: tuple[float, ...] | None = None
    # test accuracy of the continuous theory, mean over seeds, (record,); None without one
    acc_test_theory_continuous: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """`Record.to_json` without the continuous theory's keys where there is none (absent,
        not null, as the summaries have always been written; `from_json` reads them as None)."""
        data = super().to_json()
        for name in ("rel_err_test_max_continuous", "acc_test_theory_continuous"):
            if data[name] is None:
                del data[name]
        return data


@dataclass(frozen=True, kw_only=True)
class WideDeepLinearComparison(WidthComparison):
    """One width of a wide deep linear network against the theory at degree k = L."""

    # the homogeneity degree k = L, the number of weight layers
    degree: int


@dataclass(frozen=True)
class Comparison(Record):
    """Every width of a comparison and the width exponent of the error (the fields of `ComparisonResult`)."""

    # the `ntk_l2.experiments.compare.CompareConfig` as JSON (free form: its fields)
    config: dict[str, Any]
    # the data set's name
    dataset: str
    # the number of training points n
    n_train: int
    # the number of test points
    n_test: int
    # the homogeneity degree k = depth + 1
    degree: int
    # "gradient flow", "momentum flow", or None where no continuous theory applies
    continuous_theory: str | None
    # each width, keyed by the width as text ("256")
    widths: dict[str, WidthComparison]
    # the median over seeds of the max-over-time error, in the order of config["widths"], (width,)
    median_rel_err_test_max: tuple[float, ...]
    # the fitted p of error ∝ width^p; None with a single width
    width_exponent: float | None
    # the figure's PNG; None when none was drawn (no output directory)
    figure: str | None


@dataclass(frozen=True)
class ComparisonResult(Result, Comparison):
    """The result of ``ntk-l2 compare`` (`ntk_l2.experiments.compare.run_comparison`)."""

    KIND = "compare"


@dataclass(frozen=True, kw_only=True)
class DemoComparison(Comparison):
    """The demo's comparison: a `Comparison` and the widths as a list."""

    # the compared widths, (width,)
    widths_list: tuple[int, ...]


@dataclass(frozen=True)
class DemoCurves(Record):
    """The infinite-width theory's curves for one λ, at the demo's times, (time,) each."""

    # MSE loss ‖f − Y‖²/(2N) on the training points
    loss_train: tuple[float, ...]
    # MSE loss on the test points
    loss_test: tuple[float, ...]
    # training accuracy (NaN where undefined: all-zero outputs)
    acc_train: tuple[float, ...]
    # test accuracy (NaN where undefined)
    acc_test: tuple[float, ...]


@dataclass(frozen=True)
class DemoResult(Result):
    """The result of ``ntk-l2 demo`` (`ntk_l2.experiments.demo.run_demo`)."""

    KIND = "demo"

    # the data set's name
    dataset: str
    # the number of training points
    n_train: int
    # the number of test points
    n_test: int
    # the architecture's name
    architecture: str
    # its homogeneity degree k
    degree: int
    # the learning rate η of the theory curves
    learning_rate: float
    # the times t (steps) of the curves, (time,)
    times: tuple[float, ...]
    # the theory's curves per λ, keyed by λ as text ("0.001")
    curves: dict[str, DemoCurves]
    # the best test accuracy over time per λ (same keys as curves)
    best_test_accuracy: dict[str, float]
    # the dynamics figure's PNG
    figure: str
    # the finite-width comparison, with its own figure
    comparison: DemoComparison


@dataclass(frozen=True)
class DeepLinearResult(Result):
    """The result of ``ntk-l2 deep-linear`` (`ntk_l2.experiments.deep_linear.run_experiment`);
    means are over the seeds that did not diverge."""

    KIND = "deep-linear"

    # the `ntk_l2.experiments.deep_linear.DeepLinearExperiment` as JSON (free form: its fields)
    config: dict[str, Any]
    # the number of weight layers L
    depth: int
    # "gd" (gradient descent / SGD) or "flow"
    method: str
    # the smallest data loss any linear map reaches
    min_loss: float
    # the record steps (times, for gradient flow), (record,)
    steps: tuple[float, ...]
    # the data loss, mean over seeds, (record,)
    loss: tuple[float, ...]
    # the layer imbalance ‖D‖, mean over seeds, (record,)
    imbalance_norm: tuple[float, ...]
    # the first-order distance to the minima manifold, mean over seeds, (record,)
    distance_to_minima: tuple[float, ...]
    # the record steps with Hessian measurements, (Hessian step,)
    hessian_steps: tuple[float, ...]
    # the top eigenvalue of the loss Hessian, mean over seeds, (Hessian step,)
    hessian_top: tuple[float, ...]
    # the trace of the loss Hessian, mean over seeds, (Hessian step,)
    hessian_trace: tuple[float, ...]
    # the step where the optimization phase ends, NaN if not reached, (seed,)
    optimization_phase_end: tuple[float, ...]
    # the step where the imbalance has halved, NaN if not within the run, (seed,)
    imbalance_half_time: tuple[float, ...]
    # ‖D‖ at the end over ‖D‖ at the start, (seed,)
    imbalance_ratio_final: tuple[float, ...]
    # whether each seed diverged, (seed,)
    diverged: tuple[bool, ...]
    # the figure's PNG; None when none was drawn (`ntk_l2.experiments.deep_linear.measure` alone)
    figure: str | None


RESULTS = (ComparisonResult, DemoResult, DeepLinearResult)
