"""The laws from the kernel: sweeps over (λ, η) and the optimal λ for a budget, without training.

Every prediction is the exact discrete-time map of the infinite-width network
(`derivations/discrete_time.md`, D1–D6), `ntk_l2.theory.gradient_descent_mse_l2_discrete`,
from zero initial outputs (the mean over initializations) or from NNGP draws of them
(single networks). The kernel is factorized once (`ntk_l2.theory.eigh_kernel`) and that
factorization serves every (λ, η) pair (`derivations/laws.md`, L1–L2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common import io, metrics
from ntk_l2.laws.tstar import record_steps, run_length, run_summary
from ntk_l2.theory import KernelEigen, eigh_kernel, gradient_descent_mse_l2_discrete
from ntk_l2.theory.validation import check_cross_kernel, check_scalar, check_targets

Array = NDArray[np.float64]
Draws = tuple[Sequence[Any], Sequence[Any]]  # (f_X(0) per draw, f_*(0) per draw)

__all__ = ["LawProblem", "optimal_l2_from_kernel", "optimal_l2_from_run", "theory_sweep"]


@dataclass(frozen=True)
class LawProblem:
    """A kernel problem for the laws: infinite-width NTK blocks, targets and test labels."""

    k_train_train: Array
    k_test_train: Array
    y_train: Array
    labels_test: NDArray[np.integer]
    degree: int
    nngp: Array | None = None  # joint NNGP of (train, test) points: the law of the initial outputs

    def initial_outputs(self, n_samples: int, seed: int = 0) -> tuple[Array, Array]:
        """Draws of (f_X(0), f_*(0)) from the NNGP, (S, n, c) and (S, m, c): the random
        function a single network starts from (independent across outputs)."""
        if self.nngp is None:
            raise ValueError("nngp: the problem has no NNGP kernel to draw initial outputs from")
        if n_samples < 1:
            raise ValueError(f"init_samples: must be >= 1 to draw initial outputs (0: the mean), got {n_samples}")
        n, c = self.y_train.shape
        rng = np.random.default_rng(seed)
        evals, evecs = np.linalg.eigh(self.nngp)
        root = evecs * np.sqrt(np.clip(evals, 0.0, None))
        draws = np.einsum("ij,sjc->sic", root, rng.standard_normal((n_samples, len(evals), c)))
        return draws[:, :n], draws[:, n:]

    def factorized(self) -> tuple[KernelEigen, Array, Array]:
        """(Θ_0 = V diag(μ) Vᵀ, Y, Θ_*X), checked, in float64: the one O(n³) step of a sweep."""
        eig = eigh_kernel(self.k_train_train)
        return eig, check_targets(self.y_train, eig.size), check_cross_kernel(self.k_test_train, eig.size)

    def draws(self, init_samples: int, seed: int) -> Draws:
        """The initial outputs predictions start from: S draws (`initial_outputs`), or for S = 0
        the single f_0 = 0 (the mean prediction)."""
        return self.initial_outputs(init_samples, seed) if init_samples else ((0.0,), (0.0,))


def _accuracies(
    predict: Callable[..., Any], steps: NDArray[np.int64], draws: Draws, k_test: Array, labels: NDArray[np.integer]
) -> list[Array]:
    """Test accuracy at ``steps`` of the prediction from each draw of the initial outputs
    (E1: the map is affine in f_0, so each draw runs through the same map)."""
    return [metrics.accuracy(predict(steps, f0, fs0, k_test)[1], labels) for f0, fs0 in zip(*draws, strict=True)]


def _padded(steps: NDArray[np.int64], width: int, degree: int) -> NDArray[np.int64]:
    """``steps`` followed by the steps just after the last, up to ``width`` steps in all.

    The map is compiled once per number of steps asked for, and a step's prediction does not
    depend on the other steps asked with it: padding every run of a sweep to one width compiles
    once, and the caller keeps the first ``steps.size`` results. The padding costs a few steps
    more per run. For degree 0 the stability horizon (D5) is checked at the last step asked for,
    so there nothing is added past the run.
    """
    missing = width - steps.size
    if missing <= 0 or degree == 0:
        return steps
    return np.concatenate([steps, steps[-1] + np.arange(1, missing + 1, dtype=np.int64)])


def _sweep_plan(
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float,
    budget_step: int | None,
    n_records: int,
    max_steps: int,
) -> list[tuple[float, float, NDArray[np.int64]]]:
    """(λ, η, recorded steps) per pair, λ-major, every pair checked before any work."""
    plan = []
    for lam in l2_values:
        for eta in learning_rates:
            if not (lam > 0):
                raise ValueError(f"l2_values: the laws need λ > 0 (a run lasts budget/(ηλ) steps), got {lam!r}")
            if not (eta > 0):
                raise ValueError(f"learning_rates: must be > 0, got {eta!r}")
            last = run_length(budget, eta, lam, budget_step)
            if last > max_steps:
                raise ValueError(f"l2_values: λ = {lam:g}, η = {eta:g} needs {last} steps > max_steps = {max_steps}")
            plan.append((float(lam), float(eta), record_steps(last, n_records, budget_step)))
    return plan


def theory_sweep(
    problem: LawProblem,
    l2_values: Sequence[float],
    learning_rates: Sequence[float],
    budget: float = 2.0,
    budget_step: int | None = None,
    n_records: int = 200,
    max_steps: int = 10**6,
    init_samples: int = 0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The laws' sweep from the kernel: for each (λ, η), the predicted test accuracy over
    t ≤ budget/(ηλ) steps (and to ``budget_step`` if later), then t*, t*·η·λ, the best
    accuracy and the accuracy at ``budget_step``.

    One eigendecomposition serves every pair; each pair costs one compiled scan of
    O(steps · n) plus O(records · n · (n + m) · c) to map back, and the scan is compiled once
    for the whole sweep (`_padded`).

    With ``init_samples`` = S > 0 the accuracy is that of single networks: the mean over S
    draws of the initial outputs from the NNGP (`LawProblem.initial_outputs`, the same
    draws for every pair), each run through the same map (E1: the map is affine in f_0).
    With S = 0 it is the accuracy of the mean prediction (f_0 = 0).

    Returns:
      One dict per pair (λ-major): ``l2``, ``lr``, ``t_star``, ``t_star_eta_l2``,
      ``max_test_acc``, ``budget_test_acc``, ``diverged`` (always False: an unstable η
      raises ValueError naming ``learning_rate``), plus ``steps`` and ``acc_test``.
    """
    plan = _sweep_plan(l2_values, learning_rates, budget, budget_step, n_records, max_steps)
    eig, y, k_test = problem.factorized()
    draws = problem.draws(init_samples, seed)
    width = max((steps.size for _, _, steps in plan), default=0)
    runs = []
    for lam, eta, steps in plan:
        predict = gradient_descent_mse_l2_discrete(eig, y, eta, lam, problem.degree)
        accs = _accuracies(predict, _padded(steps, width, problem.degree), draws, k_test, problem.labels_test)
        acc = np.mean(accs, axis=0)[: steps.size]
        run = run_summary(lam, eta, steps.astype(float), acc, budget_step)
        run.update(steps=steps.tolist(), acc_test=io.json_floats(acc))
        runs.append(run)
    return runs


def optimal_l2_from_run(t_star: float, learning_rate: float, l2: float, budget_step: float) -> float:
    """λ_opt = c/(ηT) with c = t*·η·λ measured on one run (Lewkowycz & Gur-Ari, eq. for λ_opt)."""
    for name, value in (("t_star", t_star), ("learning_rate", learning_rate), ("l2", l2), ("budget_step", budget_step)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return t_star * learning_rate * l2 / (learning_rate * budget_step)


def optimal_l2_from_kernel(
    problem: LawProblem,
    learning_rate: float,
    budget_step: int,
    l2_grid: Sequence[float] | None = None,
    init_samples: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """The λ whose predicted test accuracy at step T = ``budget_step`` is highest (no training).

    Default grid: 41 values log-spaced over [1e-5, 0.5/η] (ηλ < 1 keeps the map defined).
    Ties go to the largest λ (the most regularized of equally good choices). With
    ``init_samples`` > 0 the accuracy is that of single networks (as in `theory_sweep`).
    One eigendecomposition serves the whole grid.
    """
    eta = check_scalar(learning_rate, "learning_rate", positive=True)
    draws = problem.draws(init_samples, seed)
    if l2_grid is None:
        l2_grid = np.logspace(-5, math.log10(0.5 / eta), 41)
    eig, y, k_test = problem.factorized()
    step = np.array([budget_step])
    accs = []
    for lam in l2_grid:
        predict = gradient_descent_mse_l2_discrete(eig, y, eta, float(lam), problem.degree)
        accs.append(float(np.mean([a[0] for a in _accuracies(predict, step, draws, k_test, problem.labels_test)])))
    accs_arr = np.nan_to_num(np.asarray(accs), nan=-1.0)
    best = int(np.flatnonzero(accs_arr == accs_arr.max())[-1])
    return {
        "l2_opt": float(l2_grid[best]),
        "acc_at_budget": accs[best],
        "l2_grid": [float(v) for v in l2_grid],
        "acc_grid": accs,
    }
