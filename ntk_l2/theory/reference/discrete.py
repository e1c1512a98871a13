"""Gradient descent with a finite step and L2: the discrete-time map.

Implements (`derivations/discrete_time.md`, eqs. D1–D4 and D6)

    f_{s+1} = (1 − ηλ)^k f_s − η (1 − ηλ)^{k−1} Θ_s (f_s − Y)/N,
    Θ_s     = (1 − ηλ)^{2(k−1)s} Θ_0,
    f_*(s+1) = (1 − ηλ)^k f_*(s) − η (1 − ηλ)^{k−1} Θ_*X,s (f_s − Y)/N.

In the eigenbasis of Θ_0 each mode is affine in (z_0, y): z_s = P_s z_0 + Q_s y
and f_*(s) = α^s f_*(0) + Θ_*X V (W^z_s z_0 + W^y_s y), with α = (1 − ηλ)^k,
β_s = η (1 − ηλ)^{k−1} ρ^s / N, ρ = (1 − ηλ)^{2(k−1)}, m_s = α − β_s μ:

    P_{s+1} = m_s P_s,              Q_{s+1} = m_s Q_s + β_s μ,
    W^z_{s+1} = α W^z_s − β_s P_s,  W^y_{s+1} = α W^y_s − β_s (Q_s − 1).

The cost does not grow with the step count asked for (D6):

- ρ = 1 (λ = 0 or k = 1): closed forms in geometric sums, no loop;
- ρ < 1 (k ≥ 2, λ > 0): a compiled `jax.lax` loop in float64 up to the step S
  where the kernel's remaining effect Σ_{j≥S} β_j μ_max/α is below 2^-53, then
  the exact remaining map (decay by α^{s−S} plus a geometric-sum correction);
- ρ > 1 (k = 0, λ > 0): the loop, refused past the stability horizon (D5).

Loops longer than ``max_loop_steps`` (counted as steps × modes) are refused
before any work, with the way out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.experimental import enable_x64
from numpy.typing import ArrayLike, NDArray

from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import KernelEigen
from ntk_l2.theory.reference._affine import ModeCoefficients, make_predict_fn, solver_inputs

Array = NDArray[np.float64]


def stability_limit(mu_max: float, norm: float, l2: float, degree: int) -> float:
    """The smallest η at which the step-0 condition |α − β_0 μ_max| ≤ 1 fails.

    The condition reads η(1−ηλ)^{k−1} μ_max/N ≤ 1 + (1−ηλ)^k (eq. D5); for
    λ = 0 it is the familiar η ≤ 2N/μ_max. For k ≥ 2 the stable set can
    reopen just below ηλ = 1 (each step then nearly erases the parameters);
    this returns the first crossing, the limit that matters in practice.
    """
    if mu_max <= 0:
        return np.inf
    if l2 == 0 or not np.isfinite(1.0 / l2):  # λ = 0, or so small (subnormal) that it cannot move the limit
        return 2.0 * norm / mu_max

    def excess(eta: float) -> float:
        keep = 1.0 - eta * l2
        return eta * keep ** (degree - 1) * mu_max / norm - 1.0 - keep**degree

    hi = 1.0 / l2
    start = norm / mu_max  # for k ≥ 1, excess(N/μ_max) = keep^{k−1}(1 − keep) − 1 ≤ 0: the crossing lies above
    if start >= hi:
        return hi
    # geometric grid: the crossing sits near 2N/μ_max however small λ makes hi = 1/λ
    grid = np.geomspace(start, hi, 4097)[:-1]
    values = np.array([excess(e) for e in grid])
    if not np.any(values > 0):
        return hi  # stable up to ηλ = 1, where the L2 step itself breaks down
    first = int(np.argmax(values > 0))
    lo = grid[first - 1] if first else 0.0  # k = 0 can cross below N/μ_max; excess(0) = −1 − keep^k < 0
    try:
        return float(scipy.optimize.brentq(excess, lo, grid[first], xtol=1e-15 * grid[first], rtol=1e-15))
    except (RuntimeError, ValueError):  # no convergence in extreme ranges: the grid's bracket is the answer
        return float(grid[first])


def check_stability(eta: float, lam: float, k: int, mu_max: float, norm: float, last_step: int) -> None:
    """Raise ``ValueError`` naming ``learning_rate`` when the map is unstable."""
    if eta * lam >= 1.0:
        raise ValueError(
            f"learning_rate: learning_rate * l2 = {eta * lam:g} must be < 1 for the discrete map "
            f"(each step multiplies the parameters by 1 - learning_rate * l2)"
        )
    keep = 1.0 - eta * lam
    alpha = keep**k
    worst_step = last_step if k == 0 else 0  # β_s grows for k = 0, shrinks for k ≥ 2
    with np.errstate(over="ignore", invalid="ignore"):
        beta = eta * mu_max / norm * np.exp((k - 1) * (1 + 2 * worst_step) * np.log(keep))
    if alpha - beta < -1.0 - 1e-12:
        limit = stability_limit(mu_max, norm, lam, k)
        where = "" if worst_step == 0 else f" at step {worst_step} (the degree-0 kernel grows)"
        raise ValueError(
            f"learning_rate: {eta:g} is beyond the discrete-time stability limit{where}; "
            f"the limit at step 0 is learning_rate <= {limit:.6g} "
            f"(largest eigenvalue {mu_max:.6g}, N = {norm:g})"
        )


# The tail bound Σ_{j≥S} β_j μ_max/α ≤ 2^-53 (D6): half an ulp of 1, the round-off of any
# float64 product, so the terms the tail drops are below the error of one multiplication.
TAIL_TOLERANCE = 2.0**-53
# Work bound, counted as loop steps × modes: the compiled loop takes about 1 µs per step at
# n = 512 on a 2-core CPU (2 ns per mode-step; `benchmarks/bench_theory.py`), so 3·10^10 is
# about one minute there. Small n pays a fixed per-step overhead (~0.16 µs) on top.
DEFAULT_MAX_LOOP_STEPS = 3 * 10**10

Sequences = tuple[Array, Array, Array, Array]  # P, Q, W^z, W^y, each (T, n)


@functools.partial(jax.jit, static_argnums=())
def _mode_sequences(mu, alpha, beta_n, log_rho, increments):
    """(P, Q, W^z, W^y) of every mode after each cumulative step count."""

    def step(s, state):
        p, q, wz, wy = state
        bn = beta_n * jnp.exp(s * log_rho)
        bmu = jnp.where(mu > 0, bn * mu, 0.0)  # a null mode stays inert even where a growing β_s overflows
        m = alpha - bmu
        return m * p, m * q + bmu, alpha * wz - bn * p, alpha * wy - bn * (q - 1.0)

    def advance(carry, inc):
        s0, state = carry
        state = jax.lax.fori_loop(s0, s0 + inc, step, state)
        return (s0 + inc, state), jnp.stack(state)

    zeros = jnp.zeros_like(mu)
    init = (jnp.asarray(0, increments.dtype), (jnp.ones_like(mu), zeros, zeros, zeros))
    _, out = jax.lax.scan(advance, init, increments)
    return out  # (T, 4, n)


def _power(gap: Array, t: Array) -> Array:
    """x^t for x = 1 − gap ∈ [−1, 1] and whole t ≥ 0, broadcast (D6).

    For x > 0 it is exp(t·log1p(−gap)): x is never rounded, and the relative
    error stays t·(error of gap), the conditioning of x^t itself. For x ≤ 0
    (gap ≥ 1, where 1 − gap is exact) it is (−1)^t |x|^t, with 0^0 = 1.
    """
    gap, t = np.broadcast_arrays(np.asarray(gap, np.float64), np.asarray(t, np.float64))
    positive = gap < 1.0
    decay = np.exp(t * np.log1p(-np.where(positive, gap, 0.0)))
    x = np.where(positive, 0.0, 1.0 - gap)
    sign = np.where((x < 0.0) & (np.fmod(t, 2.0) == 1.0), -1.0, 1.0)
    with np.errstate(over="ignore"):  # |x| > 1 only past D5's 1e-12 slack: inf, then refused as overflow
        return np.where(positive, decay, sign * np.power(np.abs(x), t))


def _exp_times(t: Array, log_x: float) -> Array:
    """x^t = exp(t·log x) for whole t ≥ 0 and log x ≤ 0, with x^0 = 1 even when log x = −inf."""
    t = np.asarray(t, np.float64)
    with np.errstate(over="ignore"):  # t·log x = −inf (huge degree k): x^t = 0, the right value
        return np.exp(np.where(t == 0.0, 0.0, t * log_x))


def _geometric(gap: Array, t: Array) -> Array:
    """Σ_{j<t} x^j for x = 1 − gap ∈ [−1, 1] and whole t ≥ 0, broadcast (D6).

    t when gap = 0; −expm1(t·log1p(−gap))/gap when 0 < gap < 1 (no cancellation
    as x → 1); (1 − x^t)/gap when gap ≥ 1 (x ≤ 0: nothing cancels).
    """
    gap, t = np.broadcast_arrays(np.asarray(gap, np.float64), np.asarray(t, np.float64))
    inside = (gap > 0.0) & (gap < 1.0)
    divisor = np.where(gap > 0.0, gap, 1.0)
    near_one = -np.expm1(t * np.log1p(-np.where(inside, gap, 0.0))) / divisor
    far = (1.0 - _power(gap, t)) / divisor
    return np.where(gap == 0.0, t, np.where(inside, near_one, far))


def _invariant_sequences(mu: Array, times: Array, eta: float, lam: float, k: int, norm: float) -> Sequences:
    """ρ = 1 (λ = 0 or k = 1): β_s = b = η(1−ηλ)^{k−1}/N and m = α − bμ are constant (D6a):

        P_t = m^t,  W^y_t = b Σ_{j<t} m^j,  Q_t = μ W^y_t,
        W^z_t = −b Σ_{j<t} α^{t−1−j} m^j = −b α^{t−1} Σ_{j<t} (m/α)^j   (m > 0),
              = −b (α^t − m^t)/(bμ)                                    (m ≤ 0).

    1 − m = (1 − α) + bμ and 1 − m/α = bμ/α are formed without cancellation; α ≥ 1 − ηλ > 0.
    """
    log_alpha = k * np.log1p(-eta * lam)  # 0 for λ = 0, whatever k
    alpha = np.exp(log_alpha)
    b = eta * np.exp(log_alpha - np.log1p(-eta * lam)) / norm
    t = times[:, None]
    gap_m = -np.expm1(log_alpha) + b * mu
    p = _power(gap_m, t)
    wy = b * _geometric(gap_m, t)
    inside = b * mu < alpha  # m > 0
    ratio_sum = _exp_times(np.maximum(t - 1.0, 0.0), log_alpha) * _geometric(np.where(inside, b * mu / alpha, 0.0), t)
    spread = np.where(inside, ratio_sum, (_exp_times(t, log_alpha) - p) / np.where(inside, 1.0, b * mu))
    return p, mu * wy, -b * spread, wy


def tail_start(eta: float, lam: float, k: int, mu_max: float, norm: float) -> float:
    """The first step S with Σ_{j≥S} β_j μ_max/α = β_S μ_max/(α(1−ρ)) ≤ 2^-53 (D6b).

    β_S/α = η ρ^S/(N(1−ηλ)), so S = ⌈(log(η μ_max/(N(1−ηλ)(1−ρ))) + 53 log 2)/(−log ρ)⌉,
    at least 0. Only ρ < 1 (k ≥ 2, ηλ > 0) has one: inf otherwise.
    """
    if k < 2 or eta * lam == 0.0:
        return np.inf
    if mu_max <= 0.0:
        return 0.0
    log_keep = np.log1p(-eta * lam)
    log_rho = 2 * (k - 1) * log_keep
    excess = (
        np.log(eta) + np.log(mu_max) - np.log(norm) - np.log(-np.expm1(log_rho)) - log_keep - np.log(TAIL_TOLERANCE)
    )  # a sum of logs: no overflow for subnormal ηλ or huge μ_max
    with np.errstate(over="ignore"):  # subnormal ηλ: S = inf, the kernel never decays in float64
        return float(max(0.0, np.ceil(excess / -log_rho)))


def _tail(
    state: Sequences, mu: Array, extra: Array, start: float, eta: float, lam: float, k: int, norm: float
) -> Sequences:
    """The map from step S on, for n = s − S more steps, ρ < 1 (D6c):

        P_s   = α^n P_S,
        Q_s   = α^n (Q_S + (β_S μ/α) Σ_{i<n} r^i),           r = ρ/α = (1−ηλ)^{k−2},
        W^z_s = α^n (W^z_S − (β_S/α) P_S Σ_{i<n} ρ^i),
        W^y_s = α^n (W^y_S + (β_S/α) Σ_{i<n} r^i).

    Each term dropped is a term kept times a factor in [1 − E, 1], E = Σ_{j≥S} β_j μ/α ≤ 2^-53.
    ``state`` holds (T, n) arrays at step min(s, S); ``extra`` (T,) is n, 0 leaves a row as it is.
    """
    log_keep = np.log1p(-eta * lam)
    log_rho = 2 * (k - 1) * log_keep
    n = extra[:, None]
    decay = _exp_times(n, k * log_keep)
    ratio = eta * _exp_times(start, log_rho) * np.exp(-log_keep) / norm  # β_S/α = ηρ^S/(N(1−ηλ))
    drive = ratio * _geometric(-np.expm1((k - 2) * log_keep), n)
    kernel_left = ratio * _geometric(-np.expm1(log_rho), n)
    p, q, wz, wy = state
    return decay * p, decay * (q + mu * drive), decay * (wz - kernel_left * p), decay * (wy + drive)


def _loop_sequences(mu: Array, steps: np.ndarray, eta: float, lam: float, k: int, norm: float) -> Sequences:
    """D4 step by step in the compiled loop, at whole ``steps`` (T,) in any order (one pass)."""
    order = np.argsort(steps, kind="stable")
    increments = np.diff(steps[order], prepend=0)
    keep = 1.0 - eta * lam
    with enable_x64():
        out = _mode_sequences(
            jnp.asarray(mu, jnp.float64),
            jnp.float64(keep**k),
            jnp.float64(eta * keep ** (k - 1) / norm),
            jnp.float64(2 * (k - 1) * np.log(keep)),
            jnp.asarray(increments, jnp.int64),
        )
        out = np.asarray(out)
    result = np.empty_like(out)
    result[order] = out
    return result[:, 0], result[:, 1], result[:, 2], result[:, 3]


def _sequences(mu: Array, times: Array, eta: float, lam: float, k: int, norm: float) -> Sequences:
    """P, Q, W^z, W^y at whole ``times``: closed form, or loop to min(t, S) then the tail (D6)."""
    if eta * lam == 0.0 or k == 1:
        return _invariant_sequences(mu, times, eta, lam, k, norm)
    start = tail_start(eta, lam, k, float(np.max(mu)), norm)  # inf for k = 0: loop all the way
    looped = np.minimum(times, start)
    state = _loop_sequences(mu, looped.astype(np.int64), eta, lam, k, norm)
    if not np.any(times > looped):
        return state
    return _tail(state, mu, times - looped, start, eta, lam, k, norm)


def loop_steps(t_max: float, eta: float, lam: float, k: int, mu_max: float, norm: float) -> float:
    """Steps the compiled loop runs to reach step ``t_max`` (D6d).

    0 when ρ = 1 (closed form), min(t, S) when ρ < 1, t when ρ > 1 (k = 0).
    """
    if eta * lam == 0.0 or k == 1:
        return 0.0
    return min(float(t_max), tail_start(eta, lam, k, mu_max, norm))


def check_loop_work(
    t_max: float, n: int, eta: float, lam: float, k: int, mu_max: float, norm: float, max_loop_steps: float
) -> None:
    """Raise a one-line ``ValueError`` starting ``t:`` when loop steps × n > ``max_loop_steps`` (D6d).

    O(1): it only evaluates `tail_start`, so it runs before any work.
    """
    steps = loop_steps(t_max, eta, lam, k, mu_max, norm)
    if steps * n <= max_loop_steps:
        return
    g, start = eta * lam, tail_start(eta, lam, k, mu_max, norm)
    if k == 0:
        why = (
            "with degree 0 the kernel grows as (1 - learning_rate * l2)^(-2s), so every step up to t is looped, "
            f"and the stable steps scale as 1/(learning_rate * l2) = {1.0 / g:.3g}"
        )
    else:
        why = (
            f"with degree {k} the kernel (1 - learning_rate * l2)^({2 * (k - 1)}s) falls below round-off only "
            f"after S = {start:.6g} steps, about {start * g:.3g}/(learning_rate * l2) "
            f"with learning_rate * l2 = {g:.3g}"
        )
    raise ValueError(
        f"t: {t_max:.6g} needs {steps:.6g} loop steps x {n} modes = {steps * n:.3g} > max_loop_steps = "
        f"{max_loop_steps:.3g}: {why}; the way out: the gradient-flow closed form gradient_descent_mse_l2 "
        f"(which this map approaches when learning_rate * l2 << 1; on the command line: drop --discrete), or a larger "
        f"max_loop_steps (--max-loop-steps)"
    )


def _check_steps(t: Any) -> tuple[np.ndarray, bool]:
    times, scalar = _checks.check_times(t)
    if np.any(np.isinf(times)) or np.any(times != np.round(times)):
        raise ValueError("t: the discrete map takes whole, finite numbers of steps")
    return times, scalar


def gradient_descent_mse_l2_discrete(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    l2: float = 0.0,
    degree: int = 2,
    *,
    max_loop_steps: float = DEFAULT_MAX_LOOP_STEPS,
) -> Callable[..., Any]:
    """Predicts gradient descent with a finite learning rate, MSE and L2 (D1–D4, D6).

    Same interface as `ntk_l2.theory.reference.closed_form.gradient_descent_mse_l2`;
    ``t`` counts whole steps. Cost: one eigendecomposition, then O(min(t, S)·n)
    for the largest step t (no loop at all when λ = 0 or k = 1; S = `tail_start`
    when k ≥ 2), plus O(T·n·(n + m)·c) to map back. A loop longer than
    ``max_loop_steps`` (steps × modes; the default is about a minute) raises a
    ``ValueError`` starting ``t:`` before any work.
    """
    limit = _checks.check_scalar(max_loop_steps, "max_loop_steps", positive=True)
    return _make_predict_fn(*solver_inputs(k_train_train, y_train, learning_rate, l2, degree), max_loop_steps=limit)


def _make_predict_fn(
    eig: KernelEigen, y: Array, eta: float, lam: float, k: int, max_loop_steps: float = DEFAULT_MAX_LOOP_STEPS
) -> Callable[..., Any]:
    norm = float(y.size)
    mu_max = float(eig.evals[-1])
    check_stability(eta, lam, k, mu_max, norm, 0)

    def parse_steps(t: Any) -> tuple[np.ndarray, bool]:
        """Whole steps, then the stability horizon (D5) and the work bound (D6d): before any work."""
        times, scalar = _check_steps(t)
        t_max = float(np.max(times, initial=0.0))
        check_stability(eta, lam, k, mu_max, norm, max(int(min(t_max, 1e300)) - 1, 0))
        check_loop_work(t_max, eig.size, eta, lam, k, mu_max, norm, max_loop_steps)
        return times, scalar

    def coefficients(steps: Array) -> ModeCoefficients:
        p, q, wz, wy = _sequences(eig.evals, steps, eta, lam, k, norm)
        alpha_s = _exp_times(steps, k * np.log1p(-eta * lam))  # α^s, 1 − ηλ > 0 (check_stability)
        return ModeCoefficients(p=p, q=q, wz=wz, wy=wy, e=alpha_s)

    return make_predict_fn(eig, y, coefficients, parse_steps)
