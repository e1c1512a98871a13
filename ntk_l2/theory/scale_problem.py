"""What a large-scale prediction takes and returns: the dynamics, the checked inputs, the result with its
error estimate (`derivations/large.md`, K4–K6). The solvers: `ntk_l2.theory.scale_krylov`,
`ntk_l2.theory.scale_dense`; the choice between them: `ntk_l2.theory.scale`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ntk_l2.theory import closed_form, discrete
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.operators import KernelOperator, as_operator, check_symmetric

Array = NDArray[np.float64]
DEFAULT_TOL = 1e-8


@dataclass(frozen=True)
class TrainingRule:
    """What is predicted: η, λ, the degree k, and gradient flow or the discrete map (with momentum β)."""

    learning_rate: float
    l2: float
    degree: int = 2
    discrete: bool = False
    momentum: float = 0.0
    nesterov: bool = False
    max_loop_steps: float | None = None  # the discrete map's work bound (None: its default)

    def _args(self, kernel: Any, y: Array) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.momentum and not self.discrete:
            raise ValueError("momentum: at scale, momentum is predicted for the discrete map; add discrete=True")
        extra = {"momentum": self.momentum, "nesterov": self.nesterov} if self.discrete else {}
        if self.discrete and self.max_loop_steps is not None:
            extra["max_loop_steps"] = self.max_loop_steps
        return (kernel, y, self.learning_rate, self.l2, self.degree), extra

    def solver(self, kernel: Any, y: Array) -> Callable[..., Any]:
        """The engine's predict_fn for this dynamics on (kernel, targets)."""
        args, extra = self._args(kernel, y)
        if self.discrete:
            return discrete.gradient_descent_mse_l2_discrete(*args, **extra)
        return closed_form.gradient_descent_mse_l2(*args)

    def setup(self, kernel: Any, y: Array) -> tuple[Any, Callable[..., Any], Callable[..., Any]]:
        """(problem, coefficients, time parser) for solvers that assemble outputs themselves."""
        args, extra = self._args(kernel, y)
        return discrete.setup(*args, **extra) if self.discrete else closed_form.setup(*args)


@dataclass(frozen=True)
class ScalePrediction:
    """Mean outputs over time and how far they can be trusted.

    Attributes:
      times: (T,) steps.
      fx_train: (T, n, c); fx_test: (T, m, c), or None without a test kernel.
      solver: "dense" or "krylov".
      error_estimate: (T,) estimated relative error ‖Δf(t)‖/‖f(t)‖ (Frobenius, train and test
        outputs, the larger) at each time: the Krylov estimate K4, or the dense solver's
        round-off bound K5.
      krylov_size: dimension r of the Krylov space (n for the dense solver).
      converged: whether the estimate met ``tol`` (always True for the dense solver).
    """

    times: Array
    fx_train: Array
    fx_test: Array | None
    solver: str
    error_estimate: Array
    krylov_size: int
    converged: bool

    @property
    def max_error_estimate(self) -> float:
        return float(np.max(self.error_estimate))


def roundoff(n: int) -> float:
    """The round-off floor of an estimate, max(10·n·ε, 10⁻¹²): the backward error of a symmetric
    eigensolver or of an orthonormal Krylov basis is a modest multiple of n·ε·‖Θ_0‖, and two float64
    routes to the same prediction differ by up to a few 10⁻¹³ even at n = 40 (K5); no estimate
    claims less."""
    return max(10.0 * n * float(np.finfo(np.float64).eps), 1e-12)


def relative_change(new: Array, old: Array) -> Array:
    """‖new(t) − old(t)‖_F / ‖new(t)‖_F for stacks (T, …); 0 where both vanish."""
    axes = tuple(range(1, new.ndim))
    diff = np.sqrt(np.sum((new - old) ** 2, axis=axes))
    size = np.sqrt(np.sum(new**2, axis=axes))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(diff == 0.0, 0.0, diff / np.where(size > 0.0, size, np.finfo(float).tiny))


@dataclass(frozen=True)
class ScaleInputs:
    """Checked inputs of a large-scale prediction."""

    train: KernelOperator
    y: Array
    f0: Array
    test: KernelOperator | None
    fs0: Array | None
    times: Array

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(n, c, m)."""
        return self.y.shape[0], self.y.shape[1], 0 if self.test is None else self.test.shape[0]


def check_inputs(
    rule: Any,
    k_train_train: Any,
    y_train: Any,
    times: Any,
    fx_train_0: Any,
    k_test_train: Any,
    fx_test_0: Any,
    fits: Callable[[int, int, int, int], None] | None = None,
) -> ScaleInputs:
    """Validate everything before any work (V1–V4): kernels as operators of matching shapes,
    targets and initial outputs finite and shaped (n, c) / (m, c); then ``fits(n, c, m, T)`` (the
    solver's memory check, before any kernel entry is read); then the training kernel symmetric."""
    train = as_operator(k_train_train, "k_train_train")
    n = train.shape[0]
    y = _checks.check_targets(y_train, n)
    if not isinstance(rule, TrainingRule):
        raise ValueError(f"rule: must be a TrainingRule (η, λ, degree, ...), got {type(rule).__name__}")
    t, _ = _checks.check_times(times)
    f0 = _checks.check_outputs(fx_train_0, "fx_train_0", y.shape)
    test, fs0 = None, None
    if k_test_train is None:
        if fx_test_0 is not None and np.any(fx_test_0):
            raise ValueError("fx_test_0: given without k_test_train")
    else:
        test = as_operator(k_test_train, "k_test_train", cols=n)
        fs0 = _checks.check_outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", (test.shape[0], y.shape[1]))
    if fits is not None:
        fits(n, y.shape[1], 0 if test is None else test.shape[0], len(t))
    train = check_symmetric(train, "k_train_train", kernel_eps(train))
    return ScaleInputs(train, y, f0, test, fs0, t)


def kernel_eps(kernel: Any) -> float:
    """The precision a kernel arrived in (V1–V2's tolerances): an `ArrayKernel`'s, else float64's."""
    return float(getattr(kernel, "eps", np.finfo(np.float64).eps))
