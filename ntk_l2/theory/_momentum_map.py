"""Per-mode sequences of the discrete map with momentum and L2, in ``jax.numpy`` (`derivations/momentum.md`).

Per eigenmode of Θ_0 (eigenvalue μ) the velocity-and-displacement state (ũ, ŵ = ηṽ)
of δ_s = J_0ᵀVũ_s, ν_s = J_0ᵀVṽ_s follows (M3), with ηκ_s = ηλ + η a_s^{2(k−1)} μ/N
and ε = η/N,

    ŵ' = β ŵ + h,  ũ' = ũ − c h − β_u ŵ,   h = ηκ_s ũ + ε (a_s^{2k−1} z_0 − a_s^{k−1} y),

(c, β_u) = (1, β) for heavy ball and (1 + β, β²) for Nesterov. Affine in (z_0, y):
ũ = U^z z_0 + U^y y, and the engine's coefficients are (M4)

    E = a^k,  W^z = a^{k−1} U^z,  W^y = a^{k−1} U^y,  P = a^k + μ W^z,  Q = μ W^y.

Cost independent of t (M7–M9):

- ρ = 1 (λ = 0 or k = 1): a constant 5×5 system per mode, powered over the bits of t;
  P is read as [M̂(κ)^t]₀₀, never as a^k + μW^z (no cancellation);
- k ≥ 2, λ > 0: a compiled loop to min(t, S), then the exact tail: with the coupling
  dropped the forcing monomials of degree 2k − 1 and k − 1 evolve under Sym^d(L̂_λ),
  one mode-independent augmented matrix powered over the bits of t − S;
- k = 0, λ > 0 (growing kernel), and degrees above `MAX_TAIL_DEGREE`: the loop to t.

`mode_sequences` wraps it all in ``jax.custom_jvp``: the rule differentiates forward
(the loop is a ``while_loop``), w.r.t. η, λ and μ, so ``jax.grad`` works too.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ntk_l2.theory._powers import exp_times, row_powers, symmetric_power_gap, time_bits
from ntk_l2.theory.momentum_scale import MapSpec, positivity_limit, scale_at, scale_roots, tail_start

JArray = jax.Array
Sequences = tuple[JArray, JArray, JArray, JArray, JArray]  # P, Q, W^z, W^y (T, n) and E (T,)

# The tail's monomial basis has 2k dimensions; beyond this degree the loop runs to t instead (M9).
MAX_TAIL_DEGREE = 32

FLAT, DECAY, GROW, SWITCH = "flat", "decay", "grow", "switch"


def path_for(degree: int, lam: float | None) -> str:
    """Which evaluation applies (static): ``lam`` None when λ is traced."""
    if degree == 1 or lam == 0.0:
        return FLAT
    if lam is None:
        return SWITCH
    return DECAY if 2 <= degree <= MAX_TAIL_DEGREE else GROW


# --------------------------------------------------------------------------- the step-by-step loop (M3)


def _step(s: JArray, state: tuple, eta: JArray, lam: JArray, mu: JArray, roots, spec: MapSpec) -> tuple:
    """One step of M3 for both affine parts (z_0 and y) of every mode."""
    k, beta, c, carry = spec.degree, spec.momentum, spec.c, spec.carry
    a, _ = scale_at(s, roots)
    a_km1 = a ** (k - 1)
    eps = eta / spec.norm
    kernel = jnp.where(mu > 0, a_km1 * a_km1 * mu, 0.0)  # a null mode stays inert where a growing a^{k−1} overflows
    kappa_eta = eta * lam + eta * kernel / spec.norm
    uz, wz, uy, wy = state
    hz = kappa_eta * uz + eps * (a_km1 * a**k)
    hy = kappa_eta * uy - eps * a_km1
    return (uz - (c * hz + carry * wz), beta * wz + hz, uy - (c * hy + carry * wy), beta * wy + hy)


def loop_states(eta: JArray, lam: JArray, mu: JArray, ends: JArray, spec: MapSpec) -> tuple:
    """(U^z, Ŵ^z, U^y, Ŵ^y), each (T, n), after ``ends`` (T,) whole steps of M3, in one pass over the sorted ends."""
    roots = scale_roots(eta * lam, spec)
    order = jnp.argsort(ends)
    counts = ends[order].astype(jnp.int64)
    increments = jnp.diff(counts, prepend=jnp.zeros((1,), jnp.int64))

    def body(i, state):
        return _step(i.astype(jnp.float64), state, eta, lam, mu, roots, spec)

    def advance(carry, inc):
        start, state = carry
        state = jax.lax.fori_loop(start, start + inc, body, state)
        return (start + inc, state), jnp.stack(state)

    zeros = jnp.zeros_like(mu)
    _, out = jax.lax.scan(advance, (jnp.int64(0), (zeros, zeros, zeros, zeros)), increments)
    out = jnp.zeros_like(out).at[order].set(out)  # back to the caller's order
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3]


# --------------------------------------------------------------------------- ρ = 1: one constant system (M7)


def _flat_sequences(eta: JArray, lam: JArray, mu: JArray, times: JArray, spec: MapSpec, n_bits: int) -> Sequences:
    """λ = 0 or k = 1: κ = λ + μ/N is constant and the forcing is a_s z_0 − y; state (ũ, ŵ, a, b̂, 1) (M7a)."""
    beta, c, carry = spec.momentum, spec.c, spec.carry
    g, eps = eta * lam, eta / spec.norm
    ke = g + eta * mu / spec.norm  # ηκ per mode
    zero, one = jnp.zeros_like(ke), jnp.ones_like(ke)
    row = lambda *entries: jnp.stack([e * one for e in entries], axis=-1)  # noqa: E731
    gap = jnp.stack(
        [
            row(-c * ke, -carry * one, -c * eps, zero, c * eps),
            row(ke, (beta - 1.0) * one, eps, zero, -eps),
            row(zero, zero, -c * g, -carry * one, zero),
            row(zero, zero, g, (beta - 1.0) * one, zero),
            row(zero, zero, zero, zero, zero),
        ],
        axis=-2,
    )  # (n, 5, 5): A − I
    first = jnp.zeros((5,), jnp.float64).at[0].set(1.0)
    rows = row_powers(gap, first, time_bits(times, n_bits))  # (T, n, 5) = e_0ᵀ A^t
    a_t, _ = scale_at(times, scale_roots(g, spec))
    wz, wy = rows[..., 2], rows[..., 4]
    return rows[..., 0], mu * wy, wz, wy, a_t**spec.degree


# --------------------------------------------------------------------------- k ≥ 2, λ > 0: loop, then the tail (M8)


def _balance(g: JArray, spec: MapSpec) -> JArray:
    """θ with b̃ = b̂/θ: L̂'s off-diagonal entries become ±√(g β_u), so Sym^d stays well scaled."""
    if spec.carry == 0.0:
        return jnp.ones_like(g)
    return jnp.sqrt(g / spec.carry)


def _tail_rows(eta: JArray, lam: JArray, extra: JArray, spec: MapSpec, n_bits: int) -> tuple[JArray, JArray]:
    """e_0ᵀ A^n for the augmented tail states (ũ, ŵ, a^d, a^{d−1}b̃, …, b̃^d) of z_0 (d = 2k − 1, forcing
    +ε a^d) and of y (d = k − 1, forcing −ε a^d), n = ``extra`` (T,) (M8): (T, 2k + 2) and (T, k + 2).

    A = [[L̂_λ, ±ε(−c, 1)ᵀ e_0ᵀ], [0, Sym^d(L̂_λ)]] is mode-independent, so both blocks are powered
    once per time, together, as r_1^n (A/r_1)^n.
    """
    beta, c, carry, k = spec.momentum, spec.c, spec.carry, spec.degree
    g, eps = eta * lam, eta / spec.norm
    theta = _balance(g, spec)
    scale_gap = jnp.array([[-c, 0.0], [1.0, 0.0]]) * g + jnp.array([[0.0, -carry], [0.0, beta - 1.0]])
    scaled = scale_gap * jnp.stack(
        [jnp.stack([jnp.ones_like(theta), theta]), jnp.stack([1.0 / theta, jnp.ones_like(theta)])]
    )
    sizes = (2 * k + 2, k + 2)
    gap = jnp.zeros((sum(sizes), sum(sizes)), jnp.float64)
    for offset, degree, sign in ((0, 2 * k - 1, 1.0), (sizes[0], k - 1, -1.0)):
        gap = gap.at[offset : offset + 2, offset : offset + 2].set(scale_gap)  # (ũ, ŵ) with the coupling dropped: L̂_λ
        gap = gap.at[offset, offset + 2].set(-c * eps * sign).at[offset + 1, offset + 2].set(eps * sign)
        gap = gap.at[offset + 2 : offset + degree + 3, offset + 2 : offset + degree + 3].set(
            symmetric_power_gap(scaled, degree)
        )
    # Everything decays at least as r_1^n: power A/r_1 (slow eigenvalue exactly 1, so its gap form keeps
    # relative precision) and multiply by r_1^n = exp(n log r_1), as D6a's x^t = exp(t log1p(−gap)).
    roots = scale_roots(g, spec)
    normalized = (gap + roots.y1 * jnp.eye(sum(sizes))) / (1.0 - roots.y1)
    first = jnp.zeros((2, sum(sizes)), jnp.float64).at[0, 0].set(1.0).at[1, sizes[0]].set(1.0)
    rows = row_powers(normalized, first, time_bits(extra, n_bits))  # (T, 2, D)
    rows = exp_times(extra, roots.log_r1)[:, None, None] * rows
    return rows[:, 0, : sizes[0]], rows[:, 1, sizes[0] :]


def _monomials(a: JArray, b: JArray, degree: int) -> JArray:
    """(a^d, a^{d−1}b, …, b^d) for (T,) arrays: (T, d + 1)."""
    powers = jnp.arange(degree + 1)
    return a[:, None] ** (degree - powers)[None, :] * b[:, None] ** powers[None, :]


def _decay_sequences(eta: JArray, lam: JArray, mu: JArray, times: JArray, spec: MapSpec, n_bits: int) -> Sequences:
    """k ≥ 2, λ > 0: the loop to min(t, S), then the tail from S (M8)."""
    k = spec.degree
    start = jax.lax.stop_gradient(tail_start(eta, lam, jnp.max(mu), spec))
    ends = jnp.minimum(times, start)
    uz, wz, uy, wy = loop_states(eta, lam, mu, ends, spec)
    extra = times - ends
    roots = scale_roots(eta * lam, spec)
    a_end, b_end = scale_at(ends, roots)
    b_end = b_end / _balance(eta * lam, spec)
    rz, ry = _tail_rows(eta, lam, extra, spec, n_bits)
    u_z = rz[:, :1] * uz + rz[:, 1:2] * wz + jnp.sum(rz[:, 2:] * _monomials(a_end, b_end, 2 * k - 1), -1)[:, None]
    u_y = ry[:, :1] * uy + ry[:, 1:2] * wy + jnp.sum(ry[:, 2:] * _monomials(a_end, b_end, k - 1), -1)[:, None]
    return _outputs(scale_at(times, roots)[0], mu, u_z, u_y, k)


def _grow_sequences(eta: JArray, lam: JArray, mu: JArray, times: JArray, spec: MapSpec) -> Sequences:
    """k = 0 (the kernel grows as a_s^{−2}), or a degree above `MAX_TAIL_DEGREE`: the loop to t (M9)."""
    uz, _, uy, _ = loop_states(eta, lam, mu, times, spec)
    return _outputs(scale_at(times, scale_roots(eta * lam, spec))[0], mu, uz, uy, spec.degree)


def _outputs(a_t: JArray, mu: JArray, u_z: JArray, u_y: JArray, k: int) -> Sequences:
    """M4: E = a^k, W = a^{k−1} U, P = a^k + μ W^z, Q = μ W^y."""
    scale = (a_t ** (k - 1))[:, None]
    wz, wy = scale * u_z, scale * u_y
    e = a_t**k
    inert = mu > 0  # μW for a null mode is 0, even where W overflowed (k = 0: the kernel grows)
    return e[:, None] + jnp.where(inert, mu * wz, 0.0), jnp.where(inert, mu * wy, 0.0), wz, wy, e


# --------------------------------------------------------------------------- dispatch and derivatives


def _primal(eta: JArray, lam: JArray, mu: JArray, times: JArray, spec: MapSpec, n_bits: int, path: str) -> Sequences:
    if path == FLAT:
        return _flat_sequences(eta, lam, mu, times, spec, n_bits)
    if path == DECAY:
        return _decay_sequences(eta, lam, mu, times, spec, n_bits)
    if path == GROW:
        return _grow_sequences(eta, lam, mu, times, spec)
    # SWITCH: λ traced, degree ≠ 1; λ = 0 is the flat system, λ > 0 the loop (run on a safe λ when unused)
    positive = lam > 0.0
    safe = jnp.where(positive, lam, 0.5 * positivity_limit(spec.momentum, spec.nesterov) / eta)
    looped = (
        _decay_sequences(eta, safe, mu, times, spec, n_bits)
        if 2 <= spec.degree <= MAX_TAIL_DEGREE
        else _grow_sequences(eta, safe, mu, times, spec)
    )
    flat = _flat_sequences(eta, jnp.zeros_like(lam), mu, times, spec, n_bits)
    return tuple(jnp.where(positive, a, b) for a, b in zip(looped, flat, strict=False))


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5, 6))
def mode_sequences(
    eta: JArray, lam: JArray, mu: JArray, times: JArray, spec: MapSpec, n_bits: int, path: str
) -> Sequences:
    """(P, Q, W^z, W^y, E) at whole float64 ``times`` (T,) for eigenvalues ``mu`` (n,) (M3–M9).

    Differentiable in η, λ and μ (forward-mode Jacobians inside a ``custom_jvp`` rule, M10);
    times get no derivative.
    """
    return _primal(eta, lam, mu, times, spec, n_bits, path)


def _mode_sequences_jvp(spec: MapSpec, n_bits: int, path: str, primals: tuple, tangents: tuple) -> tuple:
    """tangent = J_η dη + J_λ dλ + J_μ ⊙ dμ, the Jacobians from one forward pass with three directions (M10).

    Modes are independent, so one all-ones direction in μ gives J_μ's diagonal. The rule is linear
    in the tangents, so JAX transposes it for ``jax.grad``.
    """
    eta, lam, mu, times = primals
    out = _primal(eta, lam, mu, times, spec, n_bits, path)
    d_eta, d_lam, d_mu, _ = tangents

    def push(direction):
        d_eta, d_lam, d_mu = direction
        return jax.jvp(
            lambda x, y, z: _primal(x, y, z, times, spec, n_bits, path), (eta, lam, mu), (d_eta, d_lam, d_mu)
        )[1]

    basis = (
        jnp.array([1.0, 0.0, 0.0]),
        jnp.array([0.0, 1.0, 0.0]),
        jnp.stack([jnp.zeros_like(mu), jnp.zeros_like(mu), jnp.ones_like(mu)]),
    )
    jac = jax.vmap(push)(basis)  # each (3, ...) : rows J_η, J_λ, J_μ
    if path == SWITCH and spec.degree != 1:  # at λ = 0 the structure changes: no derivative in λ there
        jac = tuple(j.at[1].set(jnp.where(lam > 0.0, j[1], jnp.nan)) for j in jac)
    tangent_out = []
    for j, o in zip(jac, out, strict=False):
        total = jnp.zeros_like(o)
        if not isinstance(d_eta, SymbolicZero):
            total = total + j[0] * d_eta
        if not isinstance(d_lam, SymbolicZero):
            total = total + j[1] * d_lam
        if not isinstance(d_mu, SymbolicZero) and o.ndim == 2:  # E = a^k does not depend on μ
            total = total + j[2] * d_mu[None, :]
        tangent_out.append(total)
    return out, tuple(tangent_out)


mode_sequences.defjvp(_mode_sequences_jvp, symbolic_zeros=True)

# Compiled once per (spec, bits, path) and shapes; inside an outer transformation it is simply inlined.
compiled_mode_sequences = jax.jit(mode_sequences, static_argnums=(4, 5, 6))
