"""Gradient descent with a finite step, L2 and optionally momentum: the exact discrete map, in JAX.

Training rule (`ntk_l2.finite.train`), g_s = ∇L(θ_s) + λθ_s, L = ‖f − Y‖²/(2N), v_0 = 0:

    plain (β = 0):  θ ← (1 − ηλ)θ − η∇L                        (`derivations/discrete_time.md`, D1–D6)
    heavy ball:     v ← βv + g,  θ ← θ − ηv                     (`derivations/momentum.md`, M1–M11)
    Nesterov:       v ← βv + g,  θ ← θ − η(g + βv)

For a network homogeneous of degree k in infinite width, θ_s = a_sθ_0 + δ_s with the
scale a_s of the λ-only map, and per eigenmode of Θ_0 a two-dimensional state
(M3–M4) gives the engine's coefficients z_s = P z_0 + Q y, f_*(s) = a_s^k f_*(0) +
Θ_*X V (W^z z_0 + W^y y). At β = 0 this is D1–D4.

Cost independent of t (M7–M9): binary powering over the bits of t when the kernel
is constant (λ = 0 or k = 1); for k ≥ 2, λ > 0 a compiled loop to the step S where the
kernel a_s^{2(k−1)}Θ_0 stops mattering, then an exact tail by binary powering; for
k = 0 (growing kernel) the loop, refused past the stability horizon. A loop longer
than ``max_loop_steps`` (steps × modes) is refused before any work with a one-line
``t:`` error. Everything is ``jax.jit``/``vmap``/``grad``/``jacfwd``-able in η, λ, the
kernel, the targets, the initial outputs and (for values, not derivatives) t (M10).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from ntk_l2.theory import _engine
from ntk_l2.theory import validation as _checks
from ntk_l2.theory._discrete_checks import DEFAULT_MAX_LOOP_STEPS, check_loop_work, check_stability, stability_limit
from ntk_l2.theory._momentum_map import compiled_mode_sequences, path_for
from ntk_l2.theory._powers import TRACED_BITS, bits_needed
from ntk_l2.theory.momentum_scale import MapSpec

__all__ = ["DEFAULT_MAX_LOOP_STEPS", "check_discrete_stability", "gradient_descent_mse_l2_discrete", "stability_limit"]


def _check_momentum(momentum: Any, nesterov: Any) -> tuple[float, bool]:
    """β a concrete number in [0, 1); ``nesterov`` a bool (it changes nothing at β = 0)."""
    if _engine.is_traced(momentum):
        raise ValueError("momentum: must be a concrete number (it fixes the map's structure), got a traced value")
    beta = _checks.check_scalar(momentum, "momentum", nonnegative=True)
    if beta >= 1.0:
        raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov: must be True or False, got {nesterov!r}")
    return beta, bool(nesterov) and beta > 0.0


def _whole_steps(t: Any) -> tuple[jax.Array, bool]:
    """Concrete t checked as whole, finite step counts ≥ 0; traced t taken as is (its values cannot be checked)."""
    if _engine.is_traced(t):
        return _engine.times_array(t)
    times, scalar = _checks.check_times(t)
    if np.any(np.isinf(times)) or np.any(times != np.round(times)):
        raise ValueError("t: the discrete map takes whole, finite numbers of steps")
    return jnp.asarray(times, jnp.float64), scalar


def gradient_descent_mse_l2_discrete(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: Any = 1.0,
    l2: Any = 0.0,
    degree: int = 2,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    max_loop_steps: float = DEFAULT_MAX_LOOP_STEPS,
) -> Callable[..., Any]:
    """Predicts training with a finite learning rate, MSE, L2 and momentum β (M1–M11; β = 0: D1–D6).

    Same interface as the other solvers (``predict_fn(t, fx_train_0, fx_test_0, k_test_train, *,
    offset_train, offset_test)``); ``t`` counts whole steps. ``momentum`` is β ∈ [0, 1), heavy ball
    unless ``nesterov``. Cost: one eigendecomposition, then O(log t · n) when λ = 0 or k = 1,
    O(min(t, S)·n + log t · n) for k ≥ 2 (S = the tail start, about 40(1 − β)/(2(k−1)ηλ) steps),
    O(t·n) for k = 0, plus O(T·n·(n + m)·c) to map back. A loop longer than ``max_loop_steps``
    (steps × modes; the default is about a minute) raises a ``ValueError`` starting ``t:``
    before any work; an unstable η (M11, D5) or ηλ beyond the scale's positivity bound (M6)
    one starting ``learning_rate:``.

    Under ``jax.jit``/``vmap``/``grad`` (x64 enabled) η, λ, the kernel, the targets and
    the initial outputs may be traced; β, ``nesterov`` and ``degree`` stay concrete. Traced
    values are not checked (stability, work bound). With a traced λ and degree ≠ 1 the
    derivative in λ at exactly λ = 0 is NaN (the map changes structure there, M10).
    """
    return _engine.make_predict_fn(
        *setup(
            k_train_train,
            y_train,
            learning_rate,
            l2,
            degree,
            momentum=momentum,
            nesterov=nesterov,
            max_loop_steps=max_loop_steps,
        )
    )


def setup(
    k_train_train: Any,
    y_train: Any,
    learning_rate: Any,
    l2: Any,
    degree: int,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    max_loop_steps: float = DEFAULT_MAX_LOOP_STEPS,
) -> tuple[_engine.Problem, Callable[[jax.Array], _engine.ModeCoefficients], Callable[[Any], tuple[jax.Array, bool]]]:
    """The checked problem, its per-mode coefficients (M4) and its step parser (stability and work
    bound checked before any work): what `gradient_descent_mse_l2_discrete` hands the engine, for
    solvers that assemble outputs themselves (`ntk_l2.theory.scale_dense`)."""
    limit = _checks.check_scalar(max_loop_steps, "max_loop_steps", positive=True)
    beta, nesterov = _check_momentum(momentum, nesterov)
    problem = _engine.solver_inputs(k_train_train, y_train, learning_rate, l2, degree)
    spec = MapSpec(problem.degree, beta, nesterov, problem.norm)
    eta, lam = _engine.concrete(problem.eta), _engine.concrete(problem.lam)
    mu_max = None if _engine.is_traced(problem.evals) else float(np.max(np.asarray(problem.evals)))
    known = eta is not None and lam is not None and mu_max is not None
    if known:
        check_stability(eta, lam, spec, mu_max, 0)
    path = path_for(spec.degree, lam)
    # λ = 0: a_s ≡ 1, so the degree changes nothing in the per-mode system; one compilation serves all degrees
    compiled_spec = spec._replace(degree=1) if lam == 0.0 else spec
    rows = problem.layout.rows

    def parse_steps(t: Any) -> tuple[jax.Array, bool]:
        """Whole steps; then the stability horizon (M11, D5) and the work bound (M9): before any work."""
        times, scalar = _whole_steps(t)
        if known and not _engine.is_traced(times):
            t_max = float(np.max(np.asarray(times), initial=0.0))
            check_stability(eta, lam, spec, mu_max, max(int(min(t_max, 1e300)) - 1, 0))
            check_loop_work(t_max, rows, eta, lam, spec, mu_max, limit)
        return times, scalar

    def coefficients(times: jax.Array) -> _engine.ModeCoefficients:
        n_bits = TRACED_BITS if _engine.is_traced(times) else bits_needed(float(np.max(np.asarray(times))))
        p, q, wz, wy, e = compiled_mode_sequences(
            jnp.asarray(problem.eta, jnp.float64),
            jnp.asarray(problem.lam, jnp.float64),
            problem.evals,
            times,
            compiled_spec,
            n_bits,
            path,
        )
        return _engine.ModeCoefficients(p=p, q=q, wz=wz, wy=wy, e=e)

    return problem, coefficients, parse_steps


def check_discrete_stability(
    learning_rate: float,
    l2: float,
    degree: int,
    mu_max: float,
    norm: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    last_step: int = 0,
) -> None:
    """Refuse an unstable step of the discrete map, as `gradient_descent_mse_l2_discrete` does before any work.

    For a kernel whose largest eigenvalue is ``mu_max`` and a loss ‖f − Y‖²/(2N), N = ``norm``:
    ηλ beyond the scale's positivity bound (M6; β = 0: ηλ < 1), or the companion condition
    (M11; β = 0: D5, κ^k − ηκ^{k−1}μ_max/N ≥ −1 with κ = 1 − ηλ) failing at step 0, or at
    ``last_step`` for degree 0 (whose kernel grows), raises the solvers' one-line ``ValueError``
    starting ``learning_rate:``. A map whose λ changes between steps (AutoL2) calls it with
    the kernel it has reached, ``mu_max`` = μ_max·ρ_s. Concrete numbers only.
    """
    eta = _checks.check_scalar(learning_rate, "learning_rate", positive=True)
    lam = _checks.check_scalar(l2, "l2", nonnegative=True)
    mu = _checks.check_scalar(mu_max, "mu_max", nonnegative=True)
    n = _checks.check_scalar(norm, "norm", positive=True)
    beta, nesterov = _check_momentum(momentum, nesterov)
    last = _checks.check_scalar(last_step, "last_step", nonnegative=True)
    if not last.is_integer():
        raise ValueError(f"last_step: must be a whole number of steps, got {last_step!r}")
    check_stability(eta, lam, MapSpec(_checks.check_degree(degree), beta, nesterov, n), mu, int(min(last, 1e300)))
