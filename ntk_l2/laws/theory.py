"""The laws' dynamics from the kernel: the infinite-width network, without training.

`LawProblem` holds a kernel problem (NTK blocks, targets, labels, degree, and the NNGP the
initial outputs are drawn from); `KernelDynamics` is its `ntk_l2.laws.dynamics.Dynamics`.
Every prediction is the exact discrete-time map (`derivations/discrete_time.md`, D1–D6),
`ntk_l2.theory.gradient_descent_mse_l2_discrete`, from zero initial outputs (the mean over
initializations) or from NNGP draws of them (single networks). The kernel is factorized once
per dynamics (`ntk_l2.theory.eigh_kernel`) and that factorization serves every (λ, η)
(`derivations/laws.md`, L1–L3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.common import metrics
from ntk_l2.laws.dynamics import ControlledRun, Controller, Curve
from ntk_l2.theory import KernelEigen, check_discrete_stability, eigh_kernel, gradient_descent_mse_l2_discrete
from ntk_l2.theory.initial import sample_initial_outputs
from ntk_l2.theory.validation import check_cross_kernel, check_degree, check_scalar, check_targets

Array = NDArray[np.float64]
Draws = tuple[Sequence[Any], Sequence[Any]]  # (f_X(0) per draw, f_*(0) per draw)

__all__ = ["KernelDynamics", "LawProblem"]


@dataclass(frozen=True, eq=False)
class LawProblem:
    """A kernel problem for the laws: infinite-width NTK blocks, targets and labels."""

    k_train_train: Array
    k_test_train: Array
    y_train: Array
    labels_test: NDArray[np.integer]
    degree: int
    nngp: Array | None = None  # joint NNGP of (train, test) points: the law of the initial outputs
    labels_train: NDArray[np.integer] | None = None  # None: argmax of y_train

    def initial_outputs(self, n_samples: int, seed: int = 0) -> tuple[Array, Array]:
        """Draws of (f_X(0), f_*(0)) from the NNGP, (S, n, c) and (S, m, c): the random
        function a single network starts from (`ntk_l2.theory.initial.sample_initial_outputs`)."""
        if self.nngp is None:
            raise ValueError("nngp: the problem has no NNGP kernel to draw initial outputs from")
        n, c = np.shape(self.y_train)
        return sample_initial_outputs(self.nngp, n, c, n_samples, seed)

    def factorized(self) -> tuple[KernelEigen, Array, Array]:
        """(Θ_0 = V diag(μ) Vᵀ, Y, Θ_*X), checked, in float64: the one O(n³) step, done once per
        problem whatever number of dynamics, sweeps and λ_opt searches use it."""
        return self._factorized

    @cached_property
    def _factorized(self) -> tuple[KernelEigen, Array, Array]:
        eig = eigh_kernel(self.k_train_train)
        return eig, check_targets(self.y_train, eig.size), check_cross_kernel(self.k_test_train, eig.size)

    def draws(self, init_samples: int, seed: int) -> Draws:
        """The initial outputs predictions start from: S draws (`initial_outputs`), or for S = 0
        the single f_0 = 0 (the mean prediction)."""
        return self.initial_outputs(init_samples, seed) if init_samples else ((0.0,), (0.0,))


def _bucket(steps: NDArray[np.int64], degree: int) -> NDArray[np.int64]:
    """``steps`` followed by the steps just after the last, up to the next power of two in count.

    The map is compiled once per number of steps asked for, and a step's prediction does not
    depend on the other steps asked with it: padding to a power of two compiles a sweep's runs
    a few times, not once per run, and the caller keeps the first ``steps.size`` results. For
    degree 0 the stability horizon (D5) is checked at the last step asked for, so there
    nothing is added past the run.
    """
    width = 1 << max(int(steps.size) - 1, 0).bit_length()
    if width <= steps.size or degree == 0:
        return steps
    return np.concatenate([steps, steps[-1] + np.arange(1, width - steps.size + 1, dtype=np.int64)])


def _checked_l2(value: Any, members: int) -> Array:
    """A controller's λ per member: finite and ≥ 0, one per member, else a one-line ValueError."""
    lam = np.asarray(value, np.float64).reshape(-1)
    if lam.shape != (members,) or not np.all(np.isfinite(lam) & (lam >= 0)):
        raise ValueError(f"controller: returned {value!r}; need {members} finite λ >= 0, one per member")
    return lam


@dataclass(frozen=True, eq=False)
class KernelDynamics:
    """The kernel theory as the laws' `ntk_l2.laws.dynamics.Dynamics`.

    ``init_samples`` = S > 0: single networks, S draws of the initial outputs from the NNGP
    (`LawProblem.initial_outputs` with ``seed``, the same draws for every run), each run through
    the same map (E1: the map is affine in f_0); S = 0: the mean prediction (f_0 = 0).
    """

    problem: LawProblem
    init_samples: int = 0
    seed: int = 0

    @cached_property
    def _factors(self) -> tuple[KernelEigen, Array, Array, Draws]:
        return (*self.problem.factorized(), self.problem.draws(self.init_samples, self.seed))

    def accuracy_curve(self, learning_rate: float, l2: float, steps: NDArray[np.int64]) -> Curve:
        """The mean over members of the test accuracy of the map D1–D4 at ``steps``; an η beyond
        the stability limit (D5) raises a ValueError naming ``learning_rate``."""
        eig, y, k_test, draws = self._factors
        steps = np.asarray(steps, np.int64)
        predict = gradient_descent_mse_l2_discrete(eig, y, learning_rate, l2, self.problem.degree)
        padded = _bucket(steps, self.problem.degree)
        accs = np.array(
            [
                metrics.accuracy(predict(padded, f0, fs0, k_test)[1], self.problem.labels_test)[: steps.size]
                for f0, fs0 in zip(*draws, strict=True)
            ]
        )
        return Curve(steps, np.mean(accs, axis=0), arrays={"acc_test": accs})

    def run_l2_controller(
        self, learning_rate: float, steps: int, l2_init: float, record: NDArray[np.int64], controller: Controller
    ) -> ControlledRun:
        """The map with λ_s changing between steps (`derivations/laws.md`, L3), per member.

        In the eigenbasis Θ_0 = V diag(μ) Vᵀ, z = Vᵀ f_X, with κ_s = 1 − ηλ_s:

            z_{s+1} = κ_s^k z_s − η κ_s^{k−1} ρ_s μ (z_s − Vᵀ Y)/N,     ρ_{s+1} = κ_s^{2(k−1)} ρ_s,
            u_{s+1} = κ_s^k u_s − η κ_s^{k−1} ρ_s (z_s − Vᵀ Y)/N,        f_*(s) = A_s f_*(0) + Θ_*X V u_s,

        A_{s+1} = κ_s^k A_s. Each λ_s must keep the step stable for the kernel reached, ρ_s Θ_0
        (`ntk_l2.theory.check_discrete_stability`, D5; else a ValueError naming ``learning_rate``).
        """
        eta = check_scalar(learning_rate, "learning_rate", positive=True)
        k = check_degree(self.problem.degree)
        eig, y, k_test, draws = self._factors
        labels_train = self.problem.labels_train
        labels_train = np.argmax(self.problem.y_train, axis=1) if labels_train is None else labels_train
        norm, v, mu_max = float(y.size), eig.evecs, float(eig.evals[-1])
        # members on the middle axis, (n, S, c): one BLAS product maps every member back at once
        vt_y, k_test_v, mu = (v.T @ y)[:, None, :], k_test @ v, eig.evals[:, None, None]
        z = np.stack([v.T @ np.broadcast_to(np.asarray(f0, np.float64), y.shape) for f0 in draws[0]], axis=1)
        shape_test = (k_test.shape[0], y.shape[1])
        f_test_0 = np.stack([np.broadcast_to(np.asarray(f, np.float64), shape_test) for f in draws[1]], axis=1)
        members = z.shape[1]
        u, lam, rho, carry = np.zeros_like(z), np.full(members, float(l2_init)), np.ones(members), np.ones(members)
        checked: Array | None = None
        rows: dict[str, list[Array]] = {"l2": [], "acc_test": [], "acc_train": [], "loss_train": []}
        todo = {int(s) for s in record if 0 <= s <= steps}
        for s in range(steps + 1):
            if s in todo:
                f_train = (v @ z.reshape(z.shape[0], -1)).reshape(z.shape).transpose(1, 0, 2)
                f_test = carry[None, :, None] * f_test_0 + (k_test_v @ u.reshape(u.shape[0], -1)).reshape(
                    f_test_0.shape
                )
                acc_train, loss = metrics.accuracy(f_train, labels_train), metrics.mse_loss(f_train, y)
                lam = _checked_l2(controller(s, 1.0 - acc_train, loss, lam.copy()), members)
                rows["l2"].append(lam)
                rows["acc_test"].append(metrics.accuracy(f_test.transpose(1, 0, 2), self.problem.labels_test))
                rows["acc_train"].append(acc_train)
                rows["loss_train"].append(loss)
            if s == steps:
                break
            # ρ_s never grows for k ≥ 1, so a λ stable when it is set stays stable: checked then (every step for k = 0)
            if checked is None or k == 0 or np.any(lam != checked):
                for lam_i, rho_i in zip(lam, rho, strict=True):
                    check_discrete_stability(eta, float(lam_i), k, mu_max * float(rho_i), norm)
                checked = lam.copy()
            keep = 1.0 - eta * lam
            drive = (eta * keep ** (k - 1) * rho)[None, :, None] * (z - vt_y) / norm
            z, u = keep[None, :, None] ** k * z - mu * drive, keep[None, :, None] ** k * u - drive
            rho, carry = rho * keep ** (2 * (k - 1)), carry * keep**k
        out = {key: np.stack(val, axis=1) for key, val in rows.items()}
        return ControlledRun(np.asarray(sorted(todo), np.int64), **out)
