"""The interface every MSE solver shares: per-mode affine coefficients.

For MSE the dynamics are linear, so in the eigenbasis of Θ_0 (z = Vᵀ(f_X − c),
y = Vᵀ(Y − c) for an output offset c) every solver reduces to four sequences
per mode and one scalar (`derivations/continuous_time.md`, C6–C7;
`discrete_time.md`, D4; `ode.md`, O3):

    z(t)   = P(t) z(0) + Q(t) y
    f_*(t) = c_* + E(t) (f_*(0) − c_*) + Θ_*X V (W^z(t) z(0) + W^y(t) y).

A solver supplies ``coefficients(times) -> ModeCoefficients``; `make_predict_fn`
turns it into the neural-tangents style ``predict_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import KernelEigen, apply_left, eigh_kernel

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ModeCoefficients:
    """P, Q, W^z, W^y of shape (T, n) and E of shape (T,)."""

    p: Array
    q: Array
    wz: Array
    wy: Array
    e: Array


def solver_inputs(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: Any,
    l2: Any,
    degree: Any,
    kernel_name: str = "k_train_train",
) -> tuple[KernelEigen, Array, float, float, int]:
    """Validate the common solver arguments; diagonalize the kernel."""
    eig = eigh_kernel(k_train_train, kernel_name)
    y = _checks.check_targets(y_train, eig.size)
    eta = _checks.check_scalar(learning_rate, "learning_rate", positive=True)
    lam = _checks.check_scalar(l2, "l2", nonnegative=True)
    return eig, y, eta, lam, _checks.check_degree(degree)


def make_predict_fn(
    eig: KernelEigen,
    y: Array,
    coefficients: Callable[[Array], ModeCoefficients],
    parse_times: Callable[[Any], tuple[Array, bool]] = _checks.check_times,
) -> Callable[..., Any]:
    """Build ``predict_fn(t, fx_train_0=0., fx_test_0=None, k_test_train=None, *,
    offset_train=None, offset_test=None)`` from a solver's coefficients.

    Returns ``fx_train`` ((n, c), or (T, n, c) for an array ``t``), or
    ``(fx_train, fx_test)`` when ``fx_test_0`` or ``k_test_train`` is given.
    """
    n, c = y.shape

    def predict_fn(
        t: ArrayLike | None = None,
        fx_train_0: ArrayLike = 0.0,
        fx_test_0: ArrayLike | None = None,
        k_test_train: ArrayLike | None = None,
        *,
        offset_train: ArrayLike | None = None,
        offset_test: ArrayLike | None = None,
    ):
        times, scalar = parse_times(np.inf if t is None else t)
        f0 = _checks.check_outputs(fx_train_0, "fx_train_0", (n, c))
        c_train = _checks.check_outputs(0.0 if offset_train is None else offset_train, "offset_train", (n, c))
        with_test = fx_test_0 is not None or k_test_train is not None
        if with_test:  # validate everything before the (possibly long) solve
            if k_test_train is None:
                raise ValueError("k_test_train: required to predict test outputs")
            k_xt = _checks.check_cross_kernel(k_test_train, n)
            m = k_xt.shape[0]
            fs0 = _checks.check_outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", (m, c))
            c_test = _checks.check_outputs(0.0 if offset_test is None else offset_test, "offset_test", (m, c))
        m_test = k_xt.shape[0] if with_test else 0
        _memory.check_fits(
            8.0 * times.size * (4 * n + 3 * (n + m_test) * c),
            f"predicting {times.size} time(s) for {n} + {m_test} points x {c} outputs",
            "t",
        )
        z0 = eig.to_eigenbasis(f0 - c_train)
        zy = eig.to_eigenbasis(y - c_train)
        co = coefficients(times)
        _checks.check_finite_result(np.stack([co.p, co.q], axis=-1), "fx_train", times, eig.evals)
        with np.errstate(over="ignore", invalid="ignore"):
            fx_train = c_train + eig.from_eigenbasis(co.p[..., None] * z0 + co.q[..., None] * zy)
        fx_train = _checks.check_finite_result(fx_train, "fx_train", times)
        fx_train = fx_train[0] if scalar else fx_train
        if not with_test:
            return fx_train
        _checks.check_finite_result(
            np.stack([co.wz, co.wy, np.broadcast_to(co.e[:, None], co.p.shape)], axis=-1), "fx_test", times, eig.evals
        )
        with np.errstate(over="ignore", invalid="ignore"):
            moved = _test_kernel_times_modes(k_xt, eig, co.wz[..., None] * z0 + co.wy[..., None] * zy)
            fx_test = c_test + co.e[:, None, None] * (fs0 - c_test) + moved
        fx_test = _checks.check_finite_result(fx_test, "fx_test", times)
        return fx_train, (fx_test[0] if scalar else fx_test)

    return predict_fn


def _test_kernel_times_modes(k_xt: Array, eig: KernelEigen, stack: Array) -> Array:
    """Θ_*X V s for a stack s (T, n, c), in the cheaper association order.

    (Θ_*X V) s costs m·n² + m·n·T·c flops; Θ_*X (V s) costs n²·T·c + m·n·T·c,
    less whenever T·c < m.
    """
    m, n = k_xt.shape
    columns = stack.size // n  # T·c
    if columns < m:
        return apply_left(k_xt, eig.from_eigenbasis(stack))
    return apply_left(k_xt @ eig.evecs, stack)
