"""The discrete map with heavy-ball / Nesterov momentum and L2 (derivations/momentum.md, M1–M11)."""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from conftest import make_problem, relative_error
from ntk_l2.theory import _momentum_map
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.theory.momentum_scale import MapSpec, positivity_limit, tail_start

FORMS = [(0.0, False), (0.5, False), (0.5, True), (0.9, False), (0.9, True), (0.99, False), (0.99, True)]


def dense_loop(p, eta, lam, k, beta, nesterov, steps, y=None):
    """The training rule, transcribed in parameter space with θ = aθ_0 + J_0ᵀα, v = bθ_0 + J_0ᵀψ.

    In infinite width ∇L(θ_s) = a_s^{k−1}J_0ᵀ(f_s − Y)/N and f_s = a_s^k f_0 + a_s^{k−1}J_0δ_s (M2);
    writing δ = J_0ᵀα turns J_0δ into Θ_0α and J_*δ into Θ_*Xα, so the loop needs only the
    kernels (dense, original basis, no eigendecomposition), and (a, b), (α, ψ) are updated exactly
    as `ntk_l2.finite.train` updates θ and v. For k = 1 it is gradient descent on the linear model itself.
    """
    y = p.y_train if y is None else y
    n_out = y.size
    a, b = 1.0, 0.0
    alpha, psi = np.zeros_like(y), np.zeros_like(y)
    train, test = {}, {}
    for s in range(int(max(steps)) + 1):
        f = a**k * p.fx_train_0 + a ** (k - 1) * p.k_train_train @ alpha
        if s in steps:
            train[s], test[s] = f, a**k * p.fx_test_0 + a ** (k - 1) * p.k_test_train @ alpha
        g_alpha, g_a = lam * alpha + a ** (k - 1) * (f - y) / n_out, lam * a
        psi, b = beta * psi + g_alpha, beta * b + g_a
        if nesterov:
            alpha, a = alpha - eta * (g_alpha + beta * psi), a - eta * (g_a + beta * b)
        else:
            alpha, a = alpha - eta * psi, a - eta * b
    return np.stack([train[s] for s in steps]), np.stack([test[s] for s in steps])


def _setup(p, k, beta, nesterov):
    """η at 0.6 of the λ = 0 limit (large steps, far from the flow); ηλ = min(½ positivity bound, 10⁻³)."""
    mu_max, n_out = float(np.linalg.eigvalsh(p.k_train_train)[-1]), p.y_train.size
    eta = 0.6 * stability_limit(mu_max, n_out, 0.0, k, beta, nesterov)
    g = min(0.5 * positivity_limit(beta, nesterov), 1e-3) if k else 1e-6 * (1 - beta)  # k = 0: the kernel grows
    with enable_x64():
        start = float(tail_start(eta, g / eta, mu_max, MapSpec(k, beta, nesterov, float(n_out)))) if k >= 2 else np.inf
    return eta, g / eta, start


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("beta,nesterov", FORMS)
def test_matches_dense_loop(k, beta, nesterov):
    """The map (loop, tail or binary powering) vs the dense step-by-step loop, 10⁴ steps and, where the tail
    starts earlier, on both sides of S up to 3S (≤ 3·10⁴): ≤ 1e-10 of the trajectory's largest |output|.

    Both sides are float64 recursions of a contractive map: each step rounds at ~1e-16 relative and the
    differences stay far below (measured ≤ 2e-12, the powering's log t roundings and the tail's ≤ 2⁻⁵³
    included); 1e-10 leaves the margin of ~t·ε for 10⁴ steps of conditioning.
    """
    p = make_problem(seed=10 + k)
    eta, lam, start = _setup(p, k, beta, nesterov)
    steps = [0, 1, 2, 17, 300, 2500, 10_000]
    if start < 10_000:  # the tail is exercised: steps across S
        s = int(start)
        steps += [s - 1, s, s + 1, 2 * s + 5, 3 * s]
    ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k, momentum=beta, nesterov=nesterov)(
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    ref = dense_loop(p, eta, lam, k, beta, nesterov, steps)
    for a, b in zip(ours, ref, strict=False):
        assert relative_error(a, b) <= 1e-10


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("beta,nesterov", [(0.9, False), (0.99, True)])
def test_tail_at_the_double_root(k, beta, nesterov):
    """ηλ exactly at the positivity bound (M6): L̂_λ has a double root, a_s = (1 + γs) r^s, and the
    scale's closed form and the tail's Jordan-block growth are at their most delicate. Each time
    to 1e-10 of its own largest output (measured ≤ 1e-12)."""
    p = make_problem(seed=30 + k)
    mu_max, n_out = float(np.linalg.eigvalsh(p.k_train_train)[-1]), p.y_train.size
    eta = 0.6 * stability_limit(mu_max, n_out, 0.0, k, beta, nesterov)
    lam = positivity_limit(beta, nesterov) / eta
    with enable_x64():
        start = int(tail_start(eta, lam, mu_max, MapSpec(k, beta, nesterov, float(n_out))))
    steps = [start - 1, start, start + 1, 2 * start + 5, 3 * start]
    ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k, momentum=beta, nesterov=nesterov)(
        np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    ref = dense_loop(p, eta, lam, k, beta, nesterov, steps)
    for a, b in zip(ours, ref, strict=False):
        for i in range(len(steps)):
            assert relative_error(a[i], b[i]) <= 1e-10, (steps[i], relative_error(a[i], b[i]))


@pytest.mark.parametrize("t", [1e12])
@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_huge_times_reach_the_limits(t, beta, nesterov, monkeypatch):
    """t = 10¹²: λ = 0 → kernel regression and k = 1 → kernel ridge regression (ridge Nλ), with no loop at
    all (binary powering, M7); k ≥ 2 → the offsets exactly (a_t^k = 0, M8). Tolerance 1e-10: every power
    of the per-mode maps is 0 in float64 here, so what remains is the reference solves' round-off,
    ≈ cond(Θ_0) ≈ 20 times 1e-16."""
    from sklearn.kernel_ridge import KernelRidge

    p = make_problem(seed=4)
    k_tt, k_xt, y, f0, fs0 = p.k_train_train, p.k_test_train, p.y_train, p.fx_train_0, p.fx_test_0
    kw = dict(momentum=beta, nesterov=nesterov)
    real_loop = _momentum_map.loop_states
    monkeypatch.setattr(_momentum_map, "loop_states", lambda *a: pytest.fail("ρ = 1 must not loop"))
    for k in (0, 2, 4):
        fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, 0.0, k, **kw)(t, f0, fs0, k_xt)
        assert relative_error(fx, y) <= 1e-10
        assert relative_error(fs, fs0 + k_xt @ np.linalg.solve(k_tt, y - f0)) <= 1e-10
    lam = 1e-4
    t0 = time.perf_counter()
    fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, lam, 1, **kw)(t, f0, fs0, k_xt)
    assert time.perf_counter() - t0 < 10.0  # O(log t): 40 squarings, not 10¹² steps (compilation included)
    ridge = KernelRidge(alpha=y.size * lam, kernel="precomputed").fit(k_tt, y)
    assert relative_error(fx, ridge.predict(k_tt)) <= 1e-10
    assert relative_error(fs, ridge.predict(k_xt)) <= 1e-10
    monkeypatch.setattr(_momentum_map, "loop_states", real_loop)
    c_train, c_test = np.full_like(f0, 0.25), np.full_like(fs0, -0.5)
    for k in (2, 5):
        fx, fs = gradient_descent_mse_l2_discrete(k_tt, y, 1.0, lam, k, **kw)(
            np.array([t]), f0, fs0, k_xt, offset_train=c_train, offset_test=c_test
        )
        assert np.all(np.isfinite(fx)) and np.array_equal(fx[0], c_train) and np.array_equal(fs[0], c_test)


def _companion_radius(eta, lam, k, beta, nesterov, mu, norm):
    """Spectral radius of the step-0 function-space companion (1 − cηλ)^{k−1} M(λ + μ/N), built in the
    original (ũ, ṽ) coordinates from the update rule and diagonalized numerically (M11)."""
    kappa, c = lam + mu / norm, (1 + beta if nesterov else 1.0)
    carry = beta**2 if nesterov else beta
    m = np.array([[1 - c * eta * kappa, -eta * carry], [kappa, beta]])  # (ũ, ṽ) ← (ũ − η(c h + carry ṽ), βṽ + h)
    return float(np.max(np.abs(np.linalg.eigvals((1 - c * eta * lam) ** (k - 1) * m))))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("beta,nesterov", [(0.5, False), (0.9, True), (0.9, False)])
def test_stability_limit(k, beta, nesterov, problem):
    """1.01× the limit is refused with a one-line `learning_rate:` error naming it, 0.99× accepted; at the
    limit the companion matrix has spectral radius 1 (±1e-9 for the root at −1); λ = 0 gives 2(1 + β)N/μ_max
    (heavy ball) and 2(1 + β)N/((1 + 2β)μ_max) (Nesterov); for k = 1 the dense loop really diverges past it."""
    mu_max, n_out = float(np.linalg.eigvalsh(problem.k_train_train)[-1]), problem.y_train.size
    lam = 1e-5
    limit = stability_limit(mu_max, n_out, lam, k, beta, nesterov)
    assert limit * lam < positivity_limit(beta, nesterov)  # the companion condition binds, not positivity
    assert _companion_radius(0.99 * limit, lam, k, beta, nesterov, mu_max, n_out) < 1.0
    assert _companion_radius(limit, lam, k, beta, nesterov, mu_max, n_out) == pytest.approx(1.0, abs=1e-9)
    assert _companion_radius(1.01 * limit, lam, k, beta, nesterov, mu_max, n_out) > 1.0
    kw = dict(momentum=beta, nesterov=nesterov)
    with pytest.raises(ValueError, match=rf"^learning_rate: .*stability limit.*{re.escape(f'{limit:.6g}')}") as err:
        gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 1.01 * limit, lam, k, **kw)
    assert "\n" not in str(err.value)
    gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 0.99 * limit, lam, k, **kw)
    flat = 2 * (1 + beta) * n_out / ((1 + 2 * beta if nesterov else 1.0) * mu_max)
    assert stability_limit(mu_max, n_out, 0.0, k, beta, nesterov) == pytest.approx(flat, rel=1e-15)
    if k == 1:
        steps = [0, 3000]
        for factor, bounded in ((0.98, True), (1.02, False)):
            out = dense_loop(problem, factor * limit, lam, k, beta, nesterov, steps)[0]
            assert (np.max(np.abs(out[-1])) < 10 * np.max(np.abs(out[0]))) == bounded


def test_positivity_bound_is_refused_with_the_reason(problem):
    """ηλ beyond (1 − √β)² (heavy ball) or ((1 − β)/(1 + β))² (Nesterov): a_s would oscillate through 0 (M6)."""
    for nesterov, text in (
        (False, r"\(1 - sqrt\(momentum\)\)\^2"),
        (True, r"\(\(1 - momentum\)/\(1 \+ momentum\)\)\^2"),
    ):
        bound = positivity_limit(0.9, nesterov)
        with pytest.raises(ValueError, match=rf"^learning_rate: learning_rate \* l2 = .* must be <= {text}"):
            gradient_descent_mse_l2_discrete(
                problem.k_train_train, problem.y_train, 1.0, 1.001 * bound, 2, momentum=0.9, nesterov=nesterov
            )
        gradient_descent_mse_l2_discrete(
            problem.k_train_train, problem.y_train, 1.0, bound, 2, momentum=0.9, nesterov=nesterov
        )(10)
    with pytest.raises(ValueError, match=r"^momentum: must be in \[0, 1\)"):
        gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, momentum=1.0)
    with pytest.raises(ValueError, match="^nesterov: must be True or False"):
        gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, momentum=0.5, nesterov="yes")


def test_work_bound_raises_one_line_before_any_loop(problem, monkeypatch):
    """With momentum the tail start S scales as (1 − β)/(ηλ): a loop of steps × modes beyond
    max_loop_steps is refused up front, in one line, with the way out (M9)."""
    monkeypatch.setattr(_momentum_map, "loop_states", lambda *a: pytest.fail("the loop ran before the checks"))
    predict = gradient_descent_mse_l2_discrete(problem.k_train_train, problem.y_train, 1.0, 1e-12, 4, momentum=0.9)
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as err:
        predict(1e12, problem.fx_train_0)
    assert time.perf_counter() - t0 < 5.0  # S by bisection on a closed form (its compilation included)
    message = str(err.value)
    assert "\n" not in message and message.startswith("t: 1e+12 needs 1e+12 loop steps x 24 modes")
    assert "(1 - momentum)/(learning_rate * l2)" in message and "learning_rate / (1 - momentum)" in message


# --------------------------------------------------------------------------- transformations (M10)


def _richardson(fun, x, h):
    """Richardson-extrapolated central difference: error O(h⁴) + round-off/h."""
    central = lambda step: (fun(x + step) - fun(x - step)) / (2 * step)  # noqa: E731
    return (4 * central(h / 2) - central(h)) / 3


@pytest.mark.parametrize("k,beta,nesterov", [(3, 0.9, False), (1, 0.5, True)])
def test_gradients_match_finite_differences_of_the_loop(k, beta, nesterov):
    """jax.grad in η and in λ of Σ f_*(t)² at a time before and one past the tail start vs Richardson central
    differences of the dense NumPy loop: ≤ 1e-6 relative. h = 10⁻⁴ relative: the truncation error scales
    as h⁴ (measured 2.6e-7 at h = 10⁻³, 2e-11 at 10⁻⁴) and the round-off as ~1e-16/h = 1e-12.
    jax.jacfwd (forward mode) agrees with jax.grad (reverse mode, the transposed rule) to 1e-10."""
    p = make_problem(seed=7, n=10, m=4, c=2)
    eta, lam, start = _setup(p, k, beta, nesterov)
    steps = [200, int(start) + 300] if np.isfinite(start) else [200, 3000]
    kw = dict(momentum=beta, nesterov=nesterov)

    weights = 1.0 / np.sum(dense_loop(p, eta, lam, k, beta, nesterov, steps)[1] ** 2, axis=(1, 2))  # each time O(1)

    def loss(e, l):
        fs = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, e, l, k, **kw)(
            jnp.asarray(steps, jnp.float64), p.fx_train_0, p.fx_test_0, p.k_test_train
        )[1]
        return jnp.sum(jnp.sum(fs**2, axis=(1, 2)) * weights)

    def loop_loss(e, l):
        fs = dense_loop(p, e, l, k, beta, nesterov, steps)[1]
        return float(np.sum(np.sum(fs**2, axis=(1, 2)) * weights))

    with enable_x64():
        grad = [float(g) for g in jax.grad(loss, argnums=(0, 1))(eta, lam)]
        fwd = np.asarray(jax.jacfwd(lambda x: loss(x[0], x[1]))(jnp.array([eta, lam])))
    fd = [
        _richardson(lambda e: loop_loss(e, lam), eta, 1e-4 * eta),
        _richardson(lambda l: loop_loss(eta, l), lam, 1e-4 * lam),
    ]
    for ours, ref in zip(grad, fd, strict=False):
        assert abs(ours - ref) <= 1e-6 * abs(ref), (ours, ref)
    assert relative_error(fwd, grad) <= 1e-10


def test_jit_vmap_match_eager():
    """jit vs eager ≤ 1e-12; one vmap over λ, η, t and fx_train_0 together (every batching rule at once)
    equals separate calls ≤ 1e-12 (same operations, batched; the while loop under vmap runs to the
    longest member and masks the others)."""
    p = make_problem(seed=8, n=10, m=4, c=2)
    k, beta = 3, 0.9
    eta, lam, start = _setup(p, k, beta, False)
    times = np.array([5.0, 300.0, 2.0 * start])

    def run(e, l, t, f0):
        return gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, e, l, k, momentum=beta)(
            t, f0, p.fx_test_0, p.k_test_train
        )

    eager = run(eta, lam, times, p.fx_train_0)
    with enable_x64():
        jitted = jax.jit(run)(eta, lam, jnp.asarray(times), jnp.asarray(p.fx_train_0))
        lams, etas = jnp.array([0.5, 1.0, 1.5]) * lam, jnp.array([0.5, 0.8, 1.0]) * eta
        f0s = jnp.stack([jnp.asarray(p.fx_train_0) * s for s in (1.0, -0.5, 2.0)])
        ts = jnp.stack([jnp.asarray(times), jnp.asarray(times[::-1]), jnp.asarray(times) + 7.0])
        batched = jax.vmap(run)(etas, lams, ts, f0s)
    for a, b in zip(jitted, eager, strict=False):
        assert relative_error(a, b) <= 1e-12
    for i in range(3):
        alone = run(float(etas[i]), float(lams[i]), np.asarray(ts[i]), np.asarray(f0s[i]))
        for a, b in zip(batched, alone, strict=False):
            assert relative_error(a[i], b) <= 1e-12
