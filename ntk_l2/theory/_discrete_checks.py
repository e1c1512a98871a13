"""Checks of the discrete map with momentum, before any work: scale positivity, stability, the loop's size.

Concrete values only (NumPy floats); each failure is a one-line ``ValueError`` naming
the argument (`derivations/momentum.md`, M6, M11, M9; `discrete_time.md`, D5, D6d).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
import scipy.optimize
from jax.experimental import enable_x64

from ntk_l2.theory._momentum_map import FLAT, GROW, MAX_TAIL_DEGREE, path_for
from ntk_l2.theory.momentum_scale import MapSpec, log_scale_at, positivity_limit, scale_roots, tail_start
from ntk_l2.theory.reference import discrete as reference

# Work bound, counted as loop steps × modes (`discrete_time.md`, D6d): the compiled loop takes
# about 1 µs per step at n = 512 on a 2-core CPU, so 3·10^10 is about one minute there.
DEFAULT_MAX_LOOP_STEPS = reference.DEFAULT_MAX_LOOP_STEPS
SLACK = 1e-12  # as D5: round-off in forming the step-0 condition must not refuse a limit given exactly


def _jury(eta: float, lam: float, spec: MapSpec, mu: float, ratio: float, log_kernel: float) -> tuple[float, float]:
    """(|T'| − 1 − D', |D'| − 1) for the function-space companion r^{k−1} M̂(κ) at one step (M11).

    κη = ηλ + η a_s^{2(k−1)} μ/N (``log_kernel`` = 2(k−1) log a_s), r = a_{s+1}/a_s; stable iff both ≤ 0.
    """
    beta, c, k = spec.momentum, spec.c, spec.degree
    with np.errstate(over="ignore", invalid="ignore"):
        ke = eta * lam + eta * mu / spec.norm * np.exp(log_kernel)
        x = ratio ** (k - 1)
        trace = x * (1.0 + beta - c * ke)
        det = x * x * (beta * (1.0 - ke) if spec.nesterov else beta)
        return float(np.nan_to_num(abs(trace) - 1.0 - det, nan=np.inf)), float(
            np.nan_to_num(abs(det) - 1.0, nan=np.inf)
        )


@functools.partial(jax.jit, static_argnums=1)
def _log_scales(g: Any, spec: MapSpec, steps: Any) -> Any:
    return log_scale_at(steps, scale_roots(g, spec))


_compiled_tail_start = jax.jit(tail_start, static_argnums=3)


def _scale_logs(eta: float, lam: float, spec: MapSpec, steps: list[float]) -> list[float]:
    with enable_x64():
        return [float(v) for v in np.asarray(_log_scales(np.float64(eta * lam), spec, np.asarray(steps, np.float64)))]


def stability_limit(
    mu_max: float, norm: float, l2: float, degree: int, momentum: float = 0.0, nesterov: bool = False
) -> float:
    """The smallest η at which the step-0 companion matrix gets an eigenvalue beyond the unit circle (M11).

    With x = (1 − cηλ)^{k−1}, κ = λ + μ_max/N, the condition is Jury's ``|T'| ≤ 1 + D'``, ``|D'| ≤ 1`` for
    T' = x(1 + β − cηκ), D' = x²β (heavy ball) or x²β(1 − ηκ) (Nesterov). λ = 0 gives
    η ≤ 2(1 + β)N/μ_max (heavy ball) and 2(1 + β)N/((1 + 2β)μ_max) (Nesterov); β = 0 is D5
    (`reference.discrete.stability_limit`, returned as is). For λ > 0 the limit is capped at
    the scale positivity bound ηλ ≤ `positivity_limit` (M6), as D5 caps at ηλ = 1.
    """
    if momentum == 0.0:
        return reference.stability_limit(mu_max, norm, l2, degree)
    if mu_max <= 0:
        return np.inf
    spec = MapSpec(int(degree), float(momentum), bool(nesterov), float(norm))
    flat = 2.0 * (1.0 + momentum) * norm / ((1.0 + 2.0 * momentum if nesterov else 1.0) * mu_max)
    if l2 == 0 or not np.isfinite(1.0 / l2):
        return flat
    hi = positivity_limit(momentum, nesterov) / l2

    def excess(eta: float) -> float:
        return max(_jury(eta, l2, spec, mu_max, 1.0 - spec.c * eta * l2, 0.0))

    grid = np.geomspace(1e-3 * min(flat, hi), hi, 4097)
    values = np.array([excess(e) for e in grid])
    if not np.any(values > 0):
        return hi
    first = int(np.argmax(values > 0))
    lo = grid[first - 1] if first else 1e-3 * grid[0]
    try:
        return float(scipy.optimize.brentq(excess, lo, grid[first], xtol=1e-15 * grid[first], rtol=1e-15))
    except (RuntimeError, ValueError):
        return float(grid[first])


def check_positivity(eta: float, lam: float, spec: MapSpec) -> None:
    """Refuse ηλ beyond `positivity_limit` (M6): the scale a_s would change sign. β = 0: D5's ηλ < 1."""
    g = eta * lam
    if spec.momentum == 0.0:
        if g >= 1.0:
            raise ValueError(
                f"learning_rate: learning_rate * l2 = {g:g} must be < 1 for the discrete map "
                f"(each step multiplies the parameters by 1 - learning_rate * l2)"
            )
        return
    limit = positivity_limit(spec.momentum, spec.nesterov)
    if g > limit:
        form = "((1 - momentum)/(1 + momentum))^2" if spec.nesterov else "(1 - sqrt(momentum))^2"
        raise ValueError(
            f"learning_rate: learning_rate * l2 = {g:g} must be <= {form} = {limit:.6g} with momentum "
            f"{spec.momentum:g}: beyond it the parameter scale a_s oscillates and changes sign, where "
            f"positive homogeneity f(c theta) = c^k f(theta), c > 0, no longer applies"
        )


def check_stability(eta: float, lam: float, spec: MapSpec, mu_max: float, last_step: int) -> None:
    """Positivity (M6), then the companion condition (M11) at step 0, or at the last step for k = 0 (D5)."""
    check_positivity(eta, lam, spec)
    if mu_max <= 0.0:  # a zero kernel: the modes never feel the (possibly overflowing) kernel factor
        return
    k = spec.degree
    worst = last_step if k == 0 else 0  # the kernel a_s^{2(k−1)} grows for k = 0, shrinks for k ≥ 2
    log_now, log_next = _scale_logs(eta, lam, spec, [float(worst), float(worst) + 1.0])
    ratio = float(np.exp(log_next - log_now))
    side, size = _jury(eta, lam, spec, mu_max, ratio, 2 * (k - 1) * log_now)
    if side > SLACK or size > SLACK:
        limit = stability_limit(mu_max, spec.norm, lam, k, spec.momentum, spec.nesterov)
        where = "" if worst == 0 else f" at step {worst} (the degree-0 kernel grows)"
        form = "" if spec.momentum == 0.0 else f" with {'Nesterov ' if spec.nesterov else ''}momentum {spec.momentum:g}"
        raise ValueError(
            f"learning_rate: {eta:g} is beyond the discrete-time stability limit{where}{form}; the limit "
            f"at step 0 is learning_rate <= {limit:.6g} (largest eigenvalue {mu_max:.6g}, N = {spec.norm:g})"
        )


def loop_steps(t_max: float, eta: float, lam: float, spec: MapSpec, mu_max: float) -> float:
    """Steps the compiled loop runs to reach step ``t_max`` (M9): 0 (ρ = 1), min(t, S) (k ≥ 2), t (k = 0)."""
    path = path_for(spec.degree, lam)
    if path == FLAT:
        return 0.0
    if path == GROW:
        return float(t_max)
    return min(float(t_max), _tail_start(eta, lam, spec, mu_max))


def _tail_start(eta: float, lam: float, spec: MapSpec, mu_max: float) -> float:
    with enable_x64():
        return float(_compiled_tail_start(np.float64(eta), np.float64(lam), np.float64(mu_max), spec))


def check_loop_work(
    t_max: float, n: int, eta: float, lam: float, spec: MapSpec, mu_max: float, max_loop_steps: float
) -> None:
    """Raise a one-line ``ValueError`` starting ``t:`` when loop steps × n > ``max_loop_steps`` (M9, D6d).

    O(1): it evaluates S only (a bisection on the closed form of a_s), so it runs before any work.
    """
    steps = loop_steps(t_max, eta, lam, spec, mu_max)
    if steps * n <= max_loop_steps:
        return
    k, beta, g = spec.degree, spec.momentum, eta * lam
    rate = "(1 - momentum)/(learning_rate * l2)" if beta else "1/(learning_rate * l2)"
    scale = (1.0 - beta) / g
    if k == 0:
        why = (
            f"with degree 0 the kernel grows as a_s^(-2), so every step up to t is looped, and the stable steps "
            f"scale as {rate} = {scale:.3g}"
        )
    elif path_for(k, lam) == GROW:
        why = f"with degree {k} > {MAX_TAIL_DEGREE} the map has no closed-form tail, so every step up to t is looped"
    else:
        start = _tail_start(eta, lam, spec, mu_max)
        why = (
            f"with degree {k} the kernel a_s^({2 * (k - 1)}) falls below round-off only after S = {start:.6g} "
            f"steps, about {start / scale:.3g} x {rate} with learning_rate * l2 = {g:.3g}"
        )
    flow = "gradient_descent_mse_l2" + (" with learning_rate / (1 - momentum)" if beta else "")
    raise ValueError(
        f"t: {t_max:.6g} needs {steps:.6g} loop steps x {n} modes = {steps * n:.3g} > max_loop_steps = "
        f"{max_loop_steps:.3g}: {why}; the way out: the gradient-flow closed form {flow} "
        f"(which this map approaches when learning_rate * l2 << 1; on the command line: drop --discrete), or a larger "
        f"max_loop_steps (--max-loop-steps)"
    )


__all__ = [
    "DEFAULT_MAX_LOOP_STEPS",
    "check_loop_work",
    "check_positivity",
    "check_stability",
    "loop_steps",
    "stability_limit",
]
