"""Numerical integration for what has no closed form: schedules and cross-entropy.

MSE with schedules η(t), λ(t) (`derivations/ode.md`, eqs. O1–O3) is integrated
in the eigenbasis of Θ_0. With s(t) = Θ_t/Θ_0 = exp(−2(k−1)∫ηλ) and
E(t) = exp(−k∫ηλ), each mode is affine in (z_0, y) and the four per-mode
sequences obey, with r = η s μ/N + kηλ,

    P' = −r P,   Q' = −r Q + η s μ/N,
    W^z' = −kηλ W^z − (η s/N) P,   W^y' = −kηλ W^y − (η s/N)(Q − 1),

z = P z_0 + Q y, f_* = E f_*(0) + Θ_*X V (W^z z_0 + W^y y): 4n + 2 equations
however many outputs, with an exact sparse Jacobian for the stiff solver.

Softmax cross-entropy, L = −(1/n) Σ_i Σ_j p_ij log softmax(f_i)_j, couples the
classes, so it is integrated in the original basis (eq. O4):

    df_X/dt = −η s Θ_0 (softmax(f_X) − p)/n − kηλ f_X,
    df_*/dt = −η s Θ_*X (softmax(f_X) − p)/n − kηλ f_*.

Jumps of `PiecewiseConstant` schedules restart the integrator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

from ntk_l2.common.quiet import silenced_fds
from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import eigh_kernel
from ntk_l2.theory.reference._affine import ModeCoefficients, make_predict_fn
from ntk_l2.theory.schedules import Schedule, as_callable, jump_times

Array = NDArray[np.float64]
LOSSES = ("mse", "xent")


def _segments(t_end: float, jumps: tuple[float, ...]) -> list[tuple[float, float]]:
    edges = [0.0] + [j for j in jumps if 0.0 < j < t_end] + [t_end]
    return list(zip(edges[:-1], edges[1:], strict=False))


MAX_EVALUATIONS = 200_000  # right-hand sides per prediction: ~5 s for a tiny system, minutes for xent at n = 512


class _OverBudget(Exception):
    pass


def integrate(
    rhs,
    y0: Array,
    times: Array,
    jumps,
    *,
    method: str,
    rtol: float,
    atol: float,
    jac=None,
    max_evaluations: int | None = None,
) -> Array:
    """Solve y' = rhs(t, y), y(0) = y0, restarting at ``jumps``; y at sorted ``times`` (repeats allowed).

    An integration that needs more than ``max_evaluations`` right-hand sides (a problem
    that is stiff beyond the method, or grows without bound) is refused with a ``t:`` error.
    """
    max_evaluations = MAX_EVALUATIONS if max_evaluations is None else max_evaluations
    unique, inverse = np.unique(times, return_inverse=True)
    out = np.empty((unique.size, y0.size))
    out[unique == 0] = y0
    state, calls = y0, [0]

    def counted(t, y):
        calls[0] += 1
        if calls[0] > max_evaluations:
            raise _OverBudget
        return rhs(t, y)

    for lo, hi in _segments(float(unique[-1]), jumps):
        if hi <= lo:  # every time asked for is 0: nothing to integrate
            continue
        inside = (unique > lo) & (unique <= hi)
        t_eval = unique[inside]
        if not t_eval.size or t_eval[-1] != hi:
            t_eval = np.append(t_eval, hi)  # always end on the segment's edge
        try:
            quiet = silenced_fds() if method == "LSODA" else contextlib.nullcontext()  # ODEPACK prints to fd 1/2
            with np.errstate(over="ignore", invalid="ignore"), quiet:
                sol = solve_ivp(counted, (lo, hi), state, method=method, t_eval=t_eval, rtol=rtol, atol=atol, jac=jac)
        except _OverBudget:
            raise ValueError(
                f"t: the ODE needs more than {max_evaluations} evaluations to reach t = {hi:g} (stiff, or "
                f"growing without bound); try earlier times, a smaller learning rate or a rescaled "
                f"kernel"
            ) from None
        if not sol.success or not np.all(np.isfinite(sol.y)):
            raise ValueError(
                f"t: the ODE integration failed on [{lo:g}, {hi:g}] ({sol.message}); "
                f"try earlier times, a smaller learning rate or a rescaled kernel"
            )
        out[inside] = sol.y.T[: np.count_nonzero(inside)]
        state = sol.y[:, -1]
    return out[inverse]


def gradient_descent_l2_ode(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: Schedule = 1.0,
    l2: Schedule = 0.0,
    degree: int = 2,
    *,
    loss: str = "mse",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str | None = None,
) -> Callable[..., Any]:
    """Predicts gradient flow with scheduled η(t), λ(t), for MSE or cross-entropy.

    Args:
      k_train_train: (n, n) NTK Θ_0, or (n, n, c, c) with cross-output terms
        (`derivations/engine.md`, J1: solved as the flattened (n·c)-row problem).
      y_train: (n, c) targets. For ``loss="xent"`` rows must be probability
        vectors, or the toolkit's centered one-hot (one-hot − 1/c), which is
        shifted back to one-hot.
      learning_rate: η as a number, a callable t ↦ η(t) or a `PiecewiseConstant`.
      l2: λ, the same forms (values must stay ≥ 0).
      degree: homogeneity degree k ≥ 0.
      loss: "mse" (normalization N = Y.size) or "xent" (normalization n).
      rtol, atol: tolerances passed to `scipy.integrate.solve_ivp`.
      method: solve_ivp method; default "Radau" (MSE, exact sparse Jacobian)
        or "LSODA" (xent).

    Returns:
      ``predict_fn(t, fx_train_0=0., fx_test_0=None, k_test_train=None)`` with
      the conventions of `gradient_descent_mse_l2` (finite times only).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: must be one of {LOSSES}, got {loss!r}")
    full = np.ndim(k_train_train) == 4
    if full and loss == "mse":
        return _full_kernel(k_train_train, y_train, learning_rate, l2, degree, rtol=rtol, atol=atol, method=method)
    if full:
        y = _checks.check_targets(y_train, np.shape(k_train_train)[0])
        eig = eigh_kernel(_full_matrix(k_train_train, *y.shape))
    else:
        eig = eigh_kernel(k_train_train)
        y = _checks.check_targets(y_train, eig.size)
    k = _checks.check_degree(degree)
    eta_fn = as_callable(learning_rate, "learning_rate", positive=True)
    lam_fn = as_callable(l2, "l2")
    rtol = _checks.check_scalar(rtol, "rtol", positive=True)
    atol = _checks.check_scalar(atol, "atol", positive=True)
    jumps = jump_times(learning_rate, l2)

    def rates(t: float) -> tuple[float, float]:
        eta, lam = _schedule_value(eta_fn, t, "learning_rate"), _schedule_value(lam_fn, t, "l2")
        if not (np.isfinite(eta) and eta > 0):
            raise ValueError(f"learning_rate: schedule gave {eta!r} at t = {t:g}; must be finite and > 0")
        if not (np.isfinite(lam) and lam >= 0):
            raise ValueError(f"l2: schedule gave {lam!r} at t = {t:g}; must be finite and >= 0")
        return eta, lam

    if loss == "mse":
        return _mse_predict_fn(eig, y, k, rates, jumps, method or "Radau", rtol, atol)
    probs = xent_targets(y, _checks.input_eps(y_train))  # checked now, at the targets' own precision
    return _xent_predict_fn(eig, probs, k, rates, jumps, method or "LSODA", rtol, atol, full)


def _full_matrix(k_train_train: Any, n: int, c: int) -> Array:
    """An (n, n, c, c) kernel as the (n·c, n·c) matrix Θ̄[(i,a),(j,b)] (J1), shape checked."""
    shape = np.shape(k_train_train)
    if shape != (n, n, c, c):
        raise ValueError(f"k_train_train: expected shape ({n}, {n}) or ({n}, {n}, {c}, {c}), got {shape}")
    raw = _checks.as_float_array(k_train_train, "k_train_train", ndim=4)
    return np.ascontiguousarray(raw.transpose(0, 2, 1, 3).reshape(n * c, n * c))


def _full_kernel(k_train_train: Any, y_train: Any, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """MSE with an (n, n, c, c) kernel: the same solver on Θ̄, one output column of n·c entries
    (J1), inputs flattened and outputs reshaped. (Cross-entropy keeps (n, c) targets, since the
    softmax acts on each point's c outputs, and applies Θ̄ to the flattened gradient.)"""
    y = _checks.check_targets(y_train, np.shape(k_train_train)[0])
    n, c = y.shape
    inner = gradient_descent_l2_ode(_full_matrix(k_train_train, n, c), y.reshape(n * c, 1), *args, loss="mse", **kwargs)

    def predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        f0 = _checks.check_outputs(fx_train_0, "fx_train_0", (n, c)).reshape(n * c, 1)
        if fx_test_0 is None and k_test_train is None:
            fx = inner(t, f0)
            return fx.reshape(*fx.shape[:-2], n, c)
        k_xt, m = _full_cross(k_test_train, n, c)
        fs0 = _checks.check_outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", (m, c)).reshape(m * c, 1)
        fx, fs = inner(t, f0, fs0, k_xt)
        return fx.reshape(*fx.shape[:-2], n, c), fs.reshape(*fs.shape[:-2], m, c)

    return predict_fn


def _full_cross(k_test_train: Any, n: int, c: int) -> tuple[Array, int]:
    """An (m, n, c, c) test kernel as the (m·c, n·c) matrix."""
    if k_test_train is None:
        raise ValueError("k_test_train: required to predict test outputs")
    shape = np.shape(k_test_train)
    if len(shape) != 4 or shape[1:] != (n, c, c):
        raise ValueError(
            f"k_test_train: with an (n, n, c, c) training kernel expected shape (m, {n}, {c}, {c}), got {shape}"
        )
    raw = _checks.as_float_array(k_test_train, "k_test_train", ndim=4)
    return raw.transpose(0, 2, 1, 3).reshape(shape[0] * c, n * c), shape[0]


def _mse_predict_fn(eig, y, k, rates, jumps, method, rtol, atol):
    n = y.shape[0]
    norm = float(y.size)
    mu = eig.evals
    idx = np.arange(n)

    def rhs(t, state):
        eta, lam = rates(t)
        p, q, wz, wy = state[:n], state[n : 2 * n], state[2 * n : 3 * n], state[3 * n : 4 * n]
        gain = eta * np.exp(state[4 * n]) / norm  # η s / N
        decay = k * eta * lam
        r = gain * mu + decay
        return np.concatenate(
            [
                -r * p,
                -r * q + gain * mu,
                -decay * wz - gain * p,
                -decay * wy - gain * (q - 1.0),
                [-2.0 * (k - 1) * eta * lam, -decay],
            ]
        )

    def jac(t, state):
        eta, lam = rates(t)
        p, q = state[:n], state[n : 2 * n]
        gain = eta * np.exp(state[4 * n]) / norm
        decay = k * eta * lam
        r = gain * mu + decay
        ls = 4 * n
        rows = np.concatenate(
            [idx, idx + n, idx + 2 * n, idx + 2 * n, idx + 3 * n, idx + 3 * n, idx, idx + n, idx + 2 * n, idx + 3 * n]
        )
        cols = np.concatenate([idx, idx + n, idx + 2 * n, idx, idx + 3 * n, idx + n, np.full(4 * n, ls)])
        vals = np.concatenate(
            [
                -r,
                -r,
                np.full(n, -decay),
                np.full(n, -gain),
                np.full(n, -decay),
                np.full(n, -gain),
                -gain * mu * p,
                gain * mu * (1.0 - q),
                -gain * p,
                -gain * (q - 1.0),
            ]
        )
        return scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(4 * n + 2, 4 * n + 2))

    def coefficients(times: Array) -> ModeCoefficients:
        order = np.argsort(times, kind="stable")
        y0 = np.concatenate([np.ones(n), np.zeros(3 * n), [0.0, 0.0]])
        sol = np.empty((times.size, y0.size))
        sol[order] = integrate(rhs, y0, times[order], jumps, method=method, rtol=rtol, atol=atol, jac=jac)
        p, q, wz, wy = (sol[:, i * n : (i + 1) * n] for i in range(4))
        return ModeCoefficients(p=p, q=q, wz=wz, wy=wy, e=np.exp(sol[:, 4 * n + 1]))

    return make_predict_fn(eig, y, coefficients, _finite_times)


def _schedule_value(schedule: Callable[[float], Any], t: float, name: str) -> float:
    value = schedule(t)
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0 or np.asarray(value).dtype.kind not in "iuf":
        raise ValueError(f"{name}: schedule gave {value!r} at t = {t:g}; must be a real number")
    return float(value)


def _finite_times(t: Any) -> tuple[Array, bool]:
    times, scalar = _checks.check_times(t)
    if np.any(np.isinf(times)):
        raise ValueError("t: the ODE solver needs finite times")
    return times, scalar


def xent_targets(y: Array, eps: float = float(np.finfo(np.float64).eps)) -> Array:
    """Probability targets for cross-entropy; centered one-hot is shifted back.

    Row sums and signs are held to the precision ``eps`` the targets arrived in
    (float32 one-hot − 1/3 sums to ~1e-7, not 0); round-off negatives are clipped.
    """
    c = y.shape[1]
    sum_tol, sign_tol = max(1e-8, 4 * c * eps), max(1e-12, 4 * eps)
    if np.allclose(y.sum(axis=1), 0.0, atol=sum_tol) and np.all(y >= -1.0 / c - sign_tol):
        y = y + 1.0 / c
    if np.any(y < -sign_tol) or not np.allclose(y.sum(axis=1), 1.0, atol=sum_tol):
        raise ValueError("y_train: for loss='xent' rows must be probability vectors (or one-hot - 1/c)")
    return np.maximum(y, 0.0)


def _softmax(f: Array) -> Array:
    e = np.exp(f - f.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _xent_predict_fn(eig, y, k, rates, jumps, method, rtol, atol, full=False):
    """O4; with ``full`` the kernel is the (n·c)² matrix Θ̄ of an (n, n, c, c) kernel (J1)."""
    n, c = y.shape
    probs = xent_targets(y)
    theta = (eig.evecs * eig.evals) @ eig.evecs.T

    def apply(kernel, grad):
        return (kernel @ grad.ravel()).reshape(-1, c) if full else kernel @ grad

    def predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        times, scalar = _finite_times(t)
        f0 = _checks.check_outputs(fx_train_0, "fx_train_0", (n, c))
        with_test = fx_test_0 is not None or k_test_train is not None
        if with_test and k_test_train is None:
            raise ValueError("k_test_train: required to predict test outputs")
        if full:
            k_xt, m = _full_cross(k_test_train, n, c) if with_test else (np.zeros((0, n * c)), 0)
        else:
            k_xt = _checks.check_cross_kernel(k_test_train, n) if with_test else np.zeros((0, n))
            m = k_xt.shape[0]
        fs0 = _checks.check_outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", (m, c))

        def rhs(tt, state):
            eta, lam = rates(tt)
            f = state[: n * c].reshape(n, c)
            fs = state[n * c : (n + m) * c].reshape(m, c)
            grad = (_softmax(f) - probs) / n
            scale = eta * np.exp(state[-1])
            return np.concatenate(
                [
                    (-scale * apply(theta, grad) - k * eta * lam * f).ravel(),
                    (-scale * apply(k_xt, grad) - k * eta * lam * fs).ravel(),
                    [-2.0 * (k - 1) * eta * lam],
                ]
            )

        order = np.argsort(times, kind="stable")
        y0 = np.concatenate([f0.ravel(), fs0.ravel(), [0.0]])
        sol = np.empty((times.size, y0.size))
        sol[order] = integrate(rhs, y0, times[order], jumps, method=method, rtol=rtol, atol=atol)
        fx_train = _checks.check_finite_result(sol[:, : n * c].reshape(-1, n, c), "fx_train", times)
        fx_train = fx_train[0] if scalar else fx_train
        if not with_test:
            return fx_train
        fx_test = _checks.check_finite_result(sol[:, n * c : (n + m) * c].reshape(-1, m, c), "fx_test", times)
        return fx_train, (fx_test[0] if scalar else fx_test)

    return predict_fn
