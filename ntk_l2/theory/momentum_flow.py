"""Gradient flow with momentum and L2 at infinite width, integrated in JAX.

The continuous limit of heavy-ball momentum, v ← βv + ∇L + λθ, θ ← θ − ηv, is
(`derivations/momentum_flow.md`, MF1)

    v' = −(1 − β) v + ∇L + λθ,     θ' = −η v,     v(0) = 0,

with t in steps; for constant η, θ'' + (1 − β)θ' = −η(∇L + λθ). For a network of
degree k at infinite width, θ = aθ_0 + δ with the weight scale (MF2)

    a' = −η b,   b' = −(1 − β) b + λ a,   a(0) = 1, b(0) = 0,

the kernel is a^{2(k−1)}Θ_0, and per eigenmode of Θ_0 (MF3–MF4), with γ = 1 − β,

    ũ' = −η ṽ,   ṽ' = −γ ṽ + λ ũ + a^{k−1}(z − y)/N,   z = a^k z_0 + a^{k−1} μ ũ,
    f_* = a^k f_*(0) + a^{k−1} Θ_*X V ũ.

ũ is affine in (z_0, y): four equations per mode plus (a, b), whatever the number
of outputs. They are integrated by Dormand–Prince (the algorithm of
``jax.experimental.ode.odeint``, whose adjoint gives the gradients), restarted at
the jumps of `PiecewiseConstant` schedules, with a bounded number of steps (MF7).
At λ = 0 this is neural-tangents' ``gradient_descent(..., momentum=β)`` (MF5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.typing import ArrayLike

from ntk_l2.common import memory as _memory
from ntk_l2.theory import _engine
from ntk_l2.theory import validation as _checks
from ntk_l2.theory._odeint import MAX_STEPS, _odeint_budget, _strictly_increasing
from ntk_l2.theory.schedules import PiecewiseConstant, Schedule, jump_times


@dataclass(frozen=True)
class _Flow:
    """The static part of the system: degree, schedule callables (None: constant per segment), segments."""

    degree: int
    eta_fn: Callable[[Any], Any] | None
    lam_fn: Callable[[Any], Any] | None
    edges: tuple[float, ...]  # segment starts: 0 and the jump times of piecewise-constant schedules
    rtol: float
    atol: float
    max_steps: int

    def rhs(
        self,
        y: jax.Array,
        t: jax.Array,
        lo: jax.Array,
        eta_c: jax.Array,
        lam_c: jax.Array,
        gamma: jax.Array,
        mu_hat: jax.Array,
        rho: jax.Array,
    ) -> jax.Array:
        """(MF2, MF4) for the state [a, b, u^z, w^z, u^y, w^y], u = m U, w = m V, μ̂ = μ/m, ρ = m/N."""
        t = jnp.maximum(t, lo)  # never evaluate a schedule before its segment (the grid may start an ulp early)
        eta = eta_c if self.eta_fn is None else jnp.asarray(self.eta_fn(t), jnp.float64)
        lam = lam_c if self.lam_fn is None else jnp.asarray(self.lam_fn(t), jnp.float64)
        n = mu_hat.shape[0]
        a, b = y[0], y[1]
        uz, wz, uy, wy = (y[2 + i * n : 2 + (i + 1) * n] for i in range(4))
        ak, e1 = a**self.degree, a ** (self.degree - 1)
        stiffness = lam + e1 * e1 * rho * mu_hat
        return jnp.concatenate(
            [
                jnp.stack([-eta * b, -gamma * b + lam * a]),
                -eta * wz,
                -gamma * wz + stiffness * uz + rho * e1 * ak,
                -eta * wy,
                -gamma * wy + stiffness * uy - rho * e1,
            ]
        )


@partial(jax.jit, static_argnums=0)
def _solve(
    flow: _Flow, ts: jax.Array, etas: jax.Array, lams: jax.Array, gamma: jax.Array, mu_hat: jax.Array, rho: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """States at the sorted times ``ts`` (T, 2 + 4n), and whether every segment reached its end within the
    step budget (MF7). A scan over segments restarts at each jump: segment j integrates from its start to
    min(its end, ts[-1]) at the times clipped into it, and each time takes the values of its own segment."""
    n = mu_hat.shape[0]
    los = jnp.asarray(flow.edges, jnp.float64)
    his = jnp.concatenate([los[1:], jnp.array([jnp.inf])])

    def segment(state, inputs):
        lo, hi, eta, lam = inputs
        end = jnp.clip(ts[-1], lo, hi)
        grid = _strictly_increasing(jnp.concatenate([lo[None], jnp.clip(ts, lo, end), end[None]]))
        args = (lo, eta, lam, gamma, mu_hat, rho)
        func, consts = jax.closure_convert(flow.rhs, state, grid[0], *args)
        ys, t_reached = _odeint_budget(func, flow.rtol, flow.atol, flow.max_steps, state, grid, *args, *consts)
        return ys[-1], (ys[1:-1], t_reached >= grid[-1])

    state0 = jnp.concatenate([jnp.ones(1), jnp.zeros(1 + 4 * n)])
    _, (outs, reached) = lax.scan(segment, state0, (los, his, etas, lams))
    index = jnp.searchsorted(los[1:], ts, side="right")
    return outs[index, jnp.arange(ts.shape[0])], jnp.all(reached)


def _segment_rates(
    schedule: Schedule, name: str, edges: tuple[float, ...], *, positive: bool
) -> tuple[Callable[[Any], Any] | None, Any]:
    """(callable or None, value per segment): a number or traced scalar is checked once, a
    `PiecewiseConstant` is read at each segment's start (its values checked), a callable is kept."""
    if isinstance(schedule, PiecewiseConstant):
        for value in schedule.values:
            _checks.check_scalar(value, name, positive=positive, nonnegative=not positive)
        return None, tuple(schedule(lo) for lo in edges)
    if callable(schedule):
        return schedule, tuple(0.0 for _ in edges)
    try:
        value = _engine.scalar(schedule, name, positive=positive, nonnegative=not positive)
    except ValueError as err:
        raise ValueError(f"{err}; or pass a jax-traceable callable of t or a PiecewiseConstant") from None
    return None, tuple(value for _ in edges)


def _check_callable(fn: Callable[[Any], Any] | None, times: jax.Array, name: str, *, positive: bool) -> None:
    """A callable schedule's values at t = 0 and at the requested (concrete) times: finite, > 0 or ≥ 0."""
    if fn is None or _engine.is_traced(times):
        return
    at = jnp.concatenate([jnp.zeros(1), times])
    values = jax.vmap(lambda t: jnp.asarray(fn(t), jnp.float64))(at)
    if _engine.is_traced(values) or values.shape != at.shape:
        return
    values = np.asarray(values)
    bad = ~np.isfinite(values) | ((values <= 0) if positive else (values < 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name}: schedule gave {float(values[i]):g} at t = {float(at[i]):g}; must be finite and "
            f"{'> 0' if positive else '>= 0'}"
        )


def _finite_times(t: Any) -> tuple[jax.Array, bool]:
    """Times in steps, ≥ 0, not NaN (checked when concrete) and finite: there is no t = ∞ here."""
    times, is_scalar = _engine.times_array(t)
    if not _engine.is_traced(times) and not bool(jnp.all(jnp.isfinite(times))):
        raise ValueError(
            "t: times must be finite (the momentum flow is integrated step by step and has no "
            "t = inf limit); pass large finite times"
        )
    return times, is_scalar


def first_zero(a0: float, da0: float, gamma: float, omega2: float) -> float:
    """First t > 0 with a(t) = 0 for a'' + γa' + ω²a = 0, a(0) = a0 > 0, a'(0) = da0; inf if none (MF2)."""
    return _scale_segment(da0 / a0, gamma, omega2, math.inf)[0]


def _scale_segment(slope: float, gamma: float, omega2: float, length: float) -> tuple[float, float]:
    """For a'' + γa' + ω²a = 0 with a(0) = 1, a'(0) = slope: (first zero in (0, length], else inf; a'/a at
    ``length`` when there is no zero). Scale-free: a itself may be far below any tolerance (MF2)."""
    disc = 0.25 * gamma * gamma - omega2
    if omega2 == 0.0:  # a = 1 + slope (1 − e^{−γt})/γ
        zero = -math.log1p(gamma / slope) / gamma if slope < -gamma else math.inf
        if zero <= length or math.isinf(length):
            return zero, math.nan
        decay = math.exp(-gamma * length)
        return math.inf, slope * decay / (1.0 + slope * -math.expm1(-gamma * length) / gamma)
    if disc < 0:  # a = e^{−γt/2}(cos Ωt + B sin Ωt): first zero at Ωt = atan2(B, 1) + π/2
        big = math.sqrt(-disc)
        b = (slope + 0.5 * gamma) / big
        zero = (math.atan2(b, 1.0) + 0.5 * math.pi) / big
        if zero <= length or math.isinf(length):
            return zero, math.nan
        c, s = math.cos(big * length), math.sin(big * length)
        return math.inf, -0.5 * gamma + big * (b * c - s) / (c + b * s)
    root = math.sqrt(disc)
    slow, fast = -omega2 / (0.5 * gamma + root), -0.5 * gamma - root
    if root == 0.0:  # a = (1 + (slope + γ/2) t) e^{−γt/2}
        rise = slope + 0.5 * gamma
        zero = -1.0 / rise if rise < 0 else math.inf
        if zero <= length or math.isinf(length):
            return zero, math.nan
        return math.inf, slow + rise / (1.0 + rise * length)
    c1 = (slope - fast) / (slow - fast)  # a = c1 e^{slow t} + (1 − c1) e^{fast t}
    zero = math.log((1.0 - c1) / -c1) / (slow - fast) if c1 < 0 else math.inf
    if zero <= length or math.isinf(length):
        return zero, math.nan
    ratio = math.exp((fast - slow) * length)
    return math.inf, (c1 * slow + (1.0 - c1) * fast * ratio) / (c1 + (1.0 - c1) * ratio)


SCALE_SAMPLE_TOLERANCE = 1e-8  # a(t) < −1e-8 at a requested time is a crossing, not integration error (~1e-10)


def _check_scale(flow: _Flow, states: jax.Array, ts: jax.Array, etas: Any, lams: Any, gamma: Any) -> None:
    """Refuse (concrete inputs, k ≠ 1) a weight scale that reaches 0 before the last time (MF2): exactly, from
    a'/a carried across segments, when the rates are constant per segment; at the requested times otherwise."""
    if flow.degree == 1 or _engine.is_traced(states, ts, etas, lams, gamma):
        return
    ts, gamma = np.asarray(ts), float(gamma)
    if flow.eta_fn is not None or flow.lam_fn is not None:
        below = np.flatnonzero(np.asarray(states[:, 0]) < -SCALE_SAMPLE_TOLERANCE)
        zero = float(ts[below[0]]) if below.size else math.inf
    else:
        zero, slope, edges = math.inf, 0.0, flow.edges + (math.inf,)
        for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=False)):
            length = min(float(ts[-1]), hi) - lo
            if length <= 0:
                break
            eta = float(etas[j])
            # a'/a = −η b/a is continuous across a jump of λ; b/a is continuous across a jump of η
            start = slope if j == 0 else slope * eta / float(etas[j - 1])
            within, slope = _scale_segment(start, gamma, eta * float(lams[j]), length)
            if within <= length:
                zero = lo + within
                break
    if zero <= float(ts[-1]):
        raise ValueError(
            f"l2: the weight scale a(t) (a'' + (1 - momentum) a' + learning_rate * l2 * a = 0) "
            f"reaches 0 at t = {zero:.6g}: it oscillates when learning_rate * l2 > (1 - momentum)^2 / 4, "
            f"and the infinite-width limit of a degree-{flow.degree} network ends at a = 0 (only degree "
            f"1 goes on); use a smaller l2, learning rate or momentum, or earlier times"
        )


def _check_momentum(momentum: Any) -> Any:
    if _engine.is_traced(momentum):
        return _engine.scalar(momentum, "momentum")
    beta = _checks.check_scalar(momentum, "momentum")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum: must be in [0, 1), got {beta:g}")
    return beta


def gradient_descent_mse_l2_momentum(
    k_train_train: Any,
    y_train: ArrayLike,
    learning_rate: Schedule = 1.0,
    l2: Schedule = 0.0,
    degree: int = 2,
    *,
    momentum: float = 0.9,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = MAX_STEPS,
) -> Callable[..., Any]:
    """Predicts the momentum flow with L2 of a degree-k network at infinite width (MF1–MF4).

    Args:
      k_train_train: (n, n) or (n, n, c, c) NTK Θ_0, or a `KernelEigen`.
      y_train: (n, c) targets; the loss is ‖f − Y‖²/(2N), N = n·c.
      learning_rate: η > 0: a number, a jax-traceable callable t ↦ η(t), or a `PiecewiseConstant`.
      l2: λ ≥ 0, the same forms.
      degree: homogeneity degree k ≥ 0.
      momentum: β in [0, 1); the friction is 1 − β per step.
      rtol, atol: tolerances of the Dormand–Prince integration (MF7).
      max_steps: integration steps allowed per segment; beyond it the request is refused (``t:``).

    Returns:
      ``predict_fn(t, fx_train_0=0., fx_test_0=None, k_test_train=None, *, offset_train, offset_test)``
      as in `ntk_l2.theory._engine.make_predict_fn`; ``t`` in steps (fractional, unsorted or repeated
      allowed), finite and ≥ 0. Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (x64 on), not
      ``jax.jacfwd`` (the integrator's derivative is odeint's adjoint, reverse mode only).
    """
    edges = (0.0,) + tuple(jump for jump in jump_times(learning_rate, l2) if jump > 0)
    with _engine.float64(learning_rate, l2, momentum):
        eta_fn, etas = _segment_rates(learning_rate, "learning_rate", edges, positive=True)
        lam_fn, lams = _segment_rates(l2, "l2", edges, positive=False)
        beta = _check_momentum(momentum)
        rtol = _checks.check_scalar(rtol, "rtol", positive=True)
        atol = _checks.check_scalar(atol, "atol", positive=True)
    if isinstance(max_steps, (bool, np.bool_)) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps: must be a positive integer, got {max_steps!r}")
    problem = _engine.solver_inputs(
        k_train_train, y_train, 1.0 if eta_fn else etas[0], 0.0 if lam_fn else lams[0], degree
    )
    flow = _Flow(problem.degree, eta_fn, lam_fn, edges, rtol, atol, int(max_steps))
    return _engine.make_predict_fn(problem, partial(_coefficients, problem, flow, etas, lams, beta), _finite_times)


def _coefficients(
    problem: _engine.Problem, flow: _Flow, etas: tuple, lams: tuple, beta: Any, times: jax.Array
) -> _engine.ModeCoefficients:
    """MF4 → P, Q, W^z, W^y, E at ``times`` (any order), after the checks of MF2 and MF7."""
    _check_callable(flow.eta_fn, times, "learning_rate", positive=True)
    _check_callable(flow.lam_fn, times, "l2", positive=False)
    n = problem.evals.shape[0]
    _memory.check_fits(
        8.0 * 3 * len(flow.edges) * (times.size + 2) * (2 + 4 * n),
        f"integrating {times.size} time(s) for {n} modes",
        "t",
    )
    order = jnp.argsort(times)
    ts = times[order]
    mu = problem.evals
    scale = jnp.where(jnp.max(mu) > 0, jnp.max(mu), 1.0)  # m: u = m ũ is O(1) for the top modes (MF4)
    gamma = 1.0 - jnp.asarray(beta, jnp.float64)
    eta_arr = jnp.stack([jnp.asarray(e, jnp.float64) for e in etas])
    lam_arr = jnp.stack([jnp.asarray(v, jnp.float64) for v in lams])
    states, reached = _solve(flow, ts, eta_arr, lam_arr, gamma, mu / scale, scale / problem.norm)
    if not _engine.is_traced(reached) and not bool(reached):
        raise ValueError(
            f"t: the momentum flow needs more than {flow.max_steps} integration steps per segment to "
            f"reach t = {float(ts[-1]):g} (the fastest mode, the friction and a growing kernel set "
            f"the step); ask for earlier times or raise max_steps"
        )
    _check_scale(flow, states, ts, etas, lams, gamma)
    states = jnp.where(reached, states, jnp.nan)[jnp.argsort(order)]  # traced and over budget: NaN
    a = states[:, :1]
    uz, uy = states[:, 2 : 2 + n], states[:, 2 + 2 * n : 2 + 3 * n]
    ak, e1 = a**flow.degree, a ** (flow.degree - 1)
    return _engine.ModeCoefficients(
        p=ak + e1 * (mu / scale) * uz, q=e1 * (mu / scale) * uy, wz=e1 * uz / scale, wy=e1 * uy / scale, e=ak[:, 0]
    )
