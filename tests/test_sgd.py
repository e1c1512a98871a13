"""Minibatch SGD with L2: mean and covariance over batch draws (derivations/sgd.md, S1–S7)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import enable_x64

from conftest import make_problem, relative_error
from ntk_l2 import fully_connected, load_digits
from ntk_l2.common import memory as _memory
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.networks.nt import nt
from ntk_l2.theory.reference import gradient_descent_mse_l2_discrete
from ntk_l2.theory.sgd import MAX_ROWS, gradient_descent_mse_l2_sgd

INIT_SEED = 7


# ---------------------------------------------------------------------------------------------------------------
# Independent references: brute-force enumeration of batches, and a kernel-space simulation with train.py's sampler


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(-1)


def _expand(kernel: np.ndarray, c: int) -> np.ndarray:
    """(n, m) kernel to Θ ⊗ I_c over (i, a) rows; (n, m, c, c) to its (n·c, m·c) matrix."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim == 2:
        return np.kron(kernel, np.eye(c))
    n, m = kernel.shape[:2]
    return np.transpose(kernel, (0, 2, 1, 3)).reshape(n * c, m * c)


def _one_step(u, us, w, ws, mask, s, theta, k_st, y, eta, lam, k, batch, c, beta):
    """One SGD step in function space, written out: S2 (plain, degree k) or S3 (heavy ball, k = 1)."""
    res = np.repeat(mask, c) * (u - y)
    if beta is None:
        keep = 1.0 - eta * lam
        gamma = eta * keep ** (k - 1) * keep ** (2 * (k - 1) * s) / (batch * c)
        return keep**k * u - gamma * theta @ res, keep**k * us - gamma * k_st @ res, w, ws
    w = beta * w + lam * u + theta @ res / (batch * c)
    ws = beta * ws + lam * us + k_st @ res / (batch * c)
    return u - eta * w, us - eta * ws, w, ws


def enumerate_moments(theta, k_st, y, u0, us0, eta, lam, k, batch, steps, c, beta=None):
    """Exact mean and second moment of x = (u_X, u_*) after each step 0..steps, by enumerating every sequence
    of batches (C(n, B)^steps equally likely paths)."""
    n = theta.shape[0] // c
    batches = [np.isin(np.arange(n), combo).astype(float) for combo in itertools.combinations(range(n), batch)]
    states = [(u0, us0, np.zeros_like(u0), np.zeros_like(us0))]
    out = []
    for s in range(steps + 1):
        xs = np.stack([np.concatenate([u, us]) for u, us, _, _ in states])
        out.append((xs.mean(0), xs.T @ xs / len(xs)))
        if s < steps:
            states = [
                _one_step(*state, mask, s, theta, k_st, y, eta, lam, k, batch, c, beta)
                for state in states
                for mask in batches
            ]
    return out


def simulate_kernel_sgd(theta, k_st, y, u0, us0, eta, lam, k, batch, c, seeds, record):
    """Kernel-space SGD runs with `ntk_l2.finite.train`'s sampler: key = fold_in(PRNGKey(seed), 1), then per step
    ``key, sub = split(key)`` and ``choice(sub, n, (B,), replace=False)``. Returns x = (u_X, u_*) as
    (runs, records, rows)."""
    n = theta.shape[0] // c
    with enable_x64():
        g = jnp.asarray(np.concatenate([theta, k_st]))
        y, x0 = jnp.asarray(y), jnp.asarray(np.concatenate([u0, us0]))
        keep = 1.0 - eta * lam

        def step(s, state):
            x, key = state
            key, sub = jax.random.split(key)
            idx = jax.random.choice(sub, n, (batch,), replace=False)
            mask = jnp.repeat(jnp.zeros(n).at[idx].set(1.0), c)
            gamma = eta * keep ** (k - 1) * keep ** (2 * (k - 1) * s) / (batch * c)
            return keep**k * x - gamma * g @ (mask * (x[: n * c] - y)), key

        @jax.jit
        def run(seed):
            state = (x0, jax.random.fold_in(jax.random.PRNGKey(seed), 1))
            rows, last = [], 0
            for stop in record:
                state = jax.lax.fori_loop(last, stop, step, state)
                rows.append(state[0])
                last = stop
            return jnp.stack(rows)

        return np.asarray(jax.vmap(run)(jnp.asarray(seeds)))


def reference_map(k_tt, k_st, y, f0, fs0, eta, lam, k, times, off_tr=0.0, off_te=0.0):
    """The full-batch map D1–D4 of `ntk_l2.theory.reference` on the flattened (n·c)-row problem (any kernel
    form): train and test outputs as (T, n·c) and (T, m·c)."""
    c = np.shape(y)[1]
    col = lambda a, rows: np.broadcast_to(np.asarray(a, np.float64), (rows, c)).reshape(-1, 1)  # noqa: E731
    n, m = np.shape(y)[0], np.shape(fs0)[0]
    fx, fs = gradient_descent_mse_l2_discrete(_expand(k_tt, c), col(y, n), eta, lam, k)(
        np.asarray(times),
        col(f0, n),
        col(fs0, m),
        _expand(k_st, c),
        offset_train=col(off_tr, n),
        offset_test=col(off_te, m),
    )
    return np.asarray(fx).reshape(len(times), -1), np.asarray(fs).reshape(len(times), -1)


def _network_problem(n_train: int, n_test: int, width: int):
    """A fixed initialization θ_0 of a small ReLU net on digits: data, init_fn ignoring its key (every seed shares
    θ_0 and differs only in its batches), the empirical NTK (n, n, c, c) and the offsets f_0 − J_0θ_0 (F1)."""
    data = load_digits(n_train=n_train, n_test=n_test, seed=1)
    net = fully_connected(2, width=width, out_dim=data.n_classes)

    def init_fixed(key, shape):
        return net.init_fn(jax.random.PRNGKey(INIT_SEED), shape)

    with enable_x64():
        _, params0 = init_fixed(None, (-1, data.x_train.shape[1]))
        params0 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params0)
        x_tr, x_te = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
        ntk = nt.empirical_ntk_fn(net.apply_fn, trace_axes=(), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
        k_tt, k_st = np.asarray(ntk(x_tr, None, params0)), np.asarray(ntk(x_te, x_tr, params0))
        f0_tr, jt_tr = (np.asarray(a) for a in jax.jvp(lambda p: net.apply_fn(p, x_tr), (params0,), (params0,)))
        f0_te, jt_te = (np.asarray(a) for a in jax.jvp(lambda p: net.apply_fn(p, x_te), (params0,), (params0,)))
    return data, net, init_fixed, k_tt, k_st, (f0_tr, f0_te), (f0_tr - jt_tr, f0_te - jt_te)


def _safe_learning_rate(k_tt: np.ndarray, batch: int, c: int, factor: float = 1.0) -> float:
    """η = factor·B·c/μ_max: every batch step has ημ_max(Θ_B)/(Bc) ≤ factor (Θ_B a principal submatrix)."""
    return factor * batch * c / float(np.linalg.eigvalsh(_expand(k_tt, c))[-1])


# ---------------------------------------------------------------------------------------------------------------
# 1. The mean over batch draws of linearized networks is the full-batch map


def test_sgd_mean_of_linearized_networks_is_the_full_batch_map():
    """512 linearized nets (one θ_0, independent batch streams) trained by SGD with L2 vs the full-batch
    degree-1 map D1–D3 with the empirical NTK and offsets (S4, F1).

    Statistic: per record, two scalar projections of the joint (train, test) outputs, onto (Y − f_0) and onto
    a fixed random unit vector, each compared with the theory within 3 standard errors (SE = sample std/√512).
    Per-entry tests at 3 SE would fail by chance (0.27% each over ~200 entries × records); with 2 projections
    × 5 records the family-wise false-alarm rate is ≤ 10 × 0.27% = 2.7% (Bonferroni), and the seeds are fixed.
    Step 0 has no spread: equal to ≤ 1e-10.
    """
    data, net, init_fixed, k_tt, k_st, (f0_tr, f0_te), (c_tr, c_te) = _network_problem(16, 4, 48)
    c, batch, lam, record = data.n_classes, 4, 2e-3, (0, 1, 5, 20, 60, 150)
    eta = _safe_learning_rate(k_tt, batch, c)
    config = TrainConfig(
        learning_rate=eta, l2=lam, steps=record[-1], batch_size=batch, record_steps=record, float64=True
    )
    runs = train(
        init_fixed,
        net.apply_fn,
        data.x_train,
        data.y_train,
        config,
        x_test=data.x_test,
        seeds=range(512),
        linearized=True,
    )
    assert not runs.diverged.any()
    theory = np.concatenate(reference_map(k_tt, k_st, data.y_train, f0_tr, f0_te, eta, lam, 1, record, c_tr, c_te), 1)
    x = np.concatenate([runs.fx_train.reshape(512, len(record), -1), runs.fx_test.reshape(512, len(record), -1)], 2)
    assert relative_error(x[:, 0], np.broadcast_to(theory[0], x[:, 0].shape)) <= 1e-10
    direction = np.concatenate([_flat(data.y_train - f0_tr), np.zeros(f0_te.size)])
    random = np.random.default_rng(0).normal(size=theory.shape[1])
    for w in (direction / np.linalg.norm(direction), random / np.linalg.norm(random)):
        proj, expected = x[:, 1:] @ w, theory[1:] @ w
        z = (proj.mean(0) - expected) / (proj.std(0, ddof=1) / np.sqrt(512))
        print("mean projections, z per record:", np.round(z, 2))
        assert np.all(np.abs(z) <= 3.0)


def test_mean_equals_the_reference_full_batch_map():
    """For every B the mean is D1–D4 exactly (round-off, ≤ 1e-12): k ∈ {0, 1, 2, 3}, both kernel forms, test
    points and offsets, unsorted steps with repeats."""
    p = make_problem(n=7, m=3, c=2, seed=4)
    rng = np.random.default_rng(1)
    off_tr, off_te = rng.normal(size=(7, 2)), rng.normal(size=(3, 2))
    full_tt = np.einsum("ij,ab->ijab", p.k_train_train, np.eye(2)) + 0.1 * np.einsum(
        "ij,ab->ijab", p.k_train_train, np.ones((2, 2))
    )
    full_st = np.einsum("ij,ab->ijab", p.k_test_train, np.eye(2)) + 0.1 * np.einsum(
        "ij,ab->ijab", p.k_test_train, np.ones((2, 2))
    )
    times = np.array([40, 0, 7, 7, 1, 120])
    for (k_tt, k_st), k, batch in itertools.product(
        [(p.k_train_train, p.k_test_train), (full_tt, full_st)], (0, 1, 2, 3), (1, 3, 7)
    ):
        eta, lam = 0.4, 0.03
        ours = gradient_descent_mse_l2_sgd(k_tt, p.y_train, eta, lam, k, batch_size=batch)(
            times, p.fx_train_0, p.fx_test_0, k_st, offset_train=off_tr, offset_test=off_te
        )
        ref = reference_map(k_tt, k_st, p.y_train, p.fx_train_0, p.fx_test_0, eta, lam, k, times, off_tr, off_te)
        assert relative_error(np.asarray(ours.mean_train).reshape(len(times), -1), ref[0]) <= 1e-12
        assert relative_error(np.asarray(ours.mean_test).reshape(len(times), -1), ref[1]) <= 1e-12


# ---------------------------------------------------------------------------------------------------------------
# 2. The second moment against Monte Carlo


def test_kernel_space_sampler_is_the_linearized_network():
    """The Monte-Carlo reference below simulates SGD in kernel space. It is exactly a vmapped ensemble of
    linearized networks trained by `ntk_l2.finite.train` with the same seeds (same batches; the batch version of F1,
    S2): ≤ 1e-8 relative over 40 steps."""
    data, net, init_fixed, k_tt, k_st, (f0_tr, f0_te), (c_tr, c_te) = _network_problem(12, 3, 32)
    c, batch, lam, record, seeds = data.n_classes, 3, 1e-2, (1, 10, 40), (3, 4)
    eta = _safe_learning_rate(k_tt, batch, c)
    config = TrainConfig(
        learning_rate=eta, l2=lam, steps=record[-1], batch_size=batch, record_steps=record, float64=True
    )
    runs = train(
        init_fixed, net.apply_fn, data.x_train, data.y_train, config, x_test=data.x_test, seeds=seeds, linearized=True
    )
    sim = simulate_kernel_sgd(
        _expand(k_tt, c),
        _expand(k_st, c),
        _flat(data.y_train - c_tr),
        _flat(f0_tr - c_tr),
        _flat(f0_te - c_te),
        eta,
        lam,
        1,
        batch,
        c,
        seeds,
        record,
    )
    nc = f0_tr.size
    assert relative_error(runs.fx_train.reshape(len(seeds), 3, -1), sim[..., :nc] + _flat(c_tr)) <= 1e-8
    assert relative_error(runs.fx_test.reshape(len(seeds), 3, -1), sim[..., nc:] + _flat(c_te)) <= 1e-8
    assert not np.allclose(runs.fx_train[0, -1], runs.fx_train[1, -1])  # the seeds drew different batches


@pytest.mark.parametrize("full,k", [(False, 2), (True, 1)])
def test_second_moment_matches_monte_carlo(full, k):
    """2,000 kernel-space SGD runs (the sampler of `ntk_l2.finite.train`; equal to linearized networks, test above) vs
    S5–S6, n·c = 30 train + 12 test rows.

    Statistics per record, each within 3 standard errors estimated from the runs: the second moment about the
    exact mean E‖x_X − m_X‖² = tr C_XX, the second moment of a random unit projection E[(wᵀ(x − m))²] = wᵀCw over
    train and test rows, and the expected loss E[L]. Centering at the exact mean (S4, tested above) keeps the
    statistics sensitive to the covariance; a raw second moment would be dominated by m mᵀ. 3 statistics × 4
    records: family-wise false-alarm rate ≤ 12 × 0.27% = 3.2% (Bonferroni); the seeds are fixed.
    """
    n, m, c, batch, runs = 10, 4, 3, 3, 2000
    p = make_problem(n=n, m=m, c=c, seed=11)
    k_tt, k_st = p.k_train_train, p.k_test_train
    if full:  # correlated outputs: a genuine (n, n, c, c) kernel
        mix = np.random.default_rng(2).normal(size=(c, c))
        k_tt = np.einsum("ij,ab->ijab", k_tt, np.eye(c) + 0.3 * mix @ mix.T)
        k_st = np.einsum("ij,ab->ijab", k_st, np.eye(c) + 0.3 * mix @ mix.T)
    theta, cross = _expand(k_tt, c), _expand(k_st, c)
    eta, lam, record = _safe_learning_rate(k_tt, batch, c, 0.8), 5e-3, (1, 5, 25, 80)
    pred = gradient_descent_mse_l2_sgd(k_tt, p.y_train, eta, lam, k, batch_size=batch)(
        np.asarray(record), p.fx_train_0, p.fx_test_0, k_st
    )
    x = simulate_kernel_sgd(
        theta,
        cross,
        _flat(p.y_train),
        _flat(p.fx_train_0),
        _flat(p.fx_test_0),
        eta,
        lam,
        k,
        batch,
        c,
        np.arange(runs),
        record,
    )
    mean = np.concatenate(
        [np.asarray(pred.mean_train).reshape(len(record), -1), np.asarray(pred.mean_test).reshape(len(record), -1)],
        axis=1,
    )
    cov = np.asarray(_joint_cov(pred))
    w = np.random.default_rng(5).normal(size=mean.shape[1])
    w /= np.linalg.norm(w)
    dev = x - mean
    nc = n * c
    samples = {
        "tr C_XX": (np.sum(dev[..., :nc] ** 2, axis=-1), np.trace(cov[:, :nc, :nc], axis1=1, axis2=2)),
        "w'Cw": ((dev @ w) ** 2, np.einsum("i,tij,j->t", w, cov, w)),
        "E[L]": (np.sum((x[..., :nc] - _flat(p.y_train)) ** 2, axis=-1) / (2 * nc), np.asarray(pred.loss)),
    }
    for name, (values, theory) in samples.items():
        z = (values.mean(0) - theory) / (values.std(0, ddof=1) / np.sqrt(runs))
        print(f"{name}: z per record {np.round(z, 2)}")
        assert np.all(np.abs(z) <= 3.0)


def _joint_cov(pred) -> np.ndarray:
    """The (T, D, D) covariance of x = (f_X, f_*) over (i, a) rows from the blocks of an `SGDPrediction`."""

    def flat(block):
        b = np.asarray(block)
        t, r, q, c, _ = b.shape
        return np.transpose(b, (0, 1, 3, 2, 4)).reshape(t, r * c, q * c)

    xx, ss, sx = flat(pred.cov_train), flat(pred.cov_test), flat(pred.cov_test_train)
    return np.concatenate([np.concatenate([xx, np.transpose(sx, (0, 2, 1))], 2), np.concatenate([sx, ss], 2)], 1)


# ---------------------------------------------------------------------------------------------------------------
# 3. Exact checks: full batch, enumeration of all batches, symmetry and definiteness


def test_full_batch_has_zero_covariance_and_is_the_full_batch_map():
    """B = n: ν = 0, so the covariance is exactly 0 and the mean is D1–D3 (≤ 1e-12), plain and with momentum."""
    p = make_problem(n=6, m=2, c=3, seed=3)
    times = np.array([0, 3, 50, 120])
    for k in (0, 1, 2, 4):
        pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.6, 0.01, k, batch_size=6)(
            times, p.fx_train_0, p.fx_test_0, p.k_test_train
        )
        ref = reference_map(p.k_train_train, p.k_test_train, p.y_train, p.fx_train_0, p.fx_test_0, 0.6, 0.01, k, times)
        for block in (pred.cov_train, pred.cov_test, pred.cov_test_train):
            assert np.all(np.asarray(block) == 0.0)
        assert relative_error(np.asarray(pred.mean_train).reshape(4, -1), ref[0]) <= 1e-12
        assert relative_error(np.asarray(pred.mean_test).reshape(4, -1), ref[1]) <= 1e-12
        loss = np.sum((ref[0] - _flat(p.y_train)) ** 2, axis=1) / (2 * p.y_train.size)
        assert relative_error(pred.loss, loss) <= 1e-12
    heavy = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.6, 0.01, 1, batch_size=6, momentum=0.5)(
        times, p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    assert np.all(np.asarray(heavy.cov_train) == 0.0) and np.all(np.asarray(heavy.cov_test) == 0.0)
    moments = enumerate_moments(
        _expand(p.k_train_train, 3),
        _expand(p.k_test_train, 3),
        _flat(p.y_train),
        _flat(p.fx_train_0),
        _flat(p.fx_test_0),
        0.6,
        0.01,
        1,
        6,
        3,
        3,
        beta=0.5,
    )
    assert relative_error(np.asarray(heavy.mean_train[1]).reshape(-1), moments[3][0][:18]) <= 1e-12


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 4),
    c=st.integers(1, 2),
    m=st.integers(0, 2),
    full=st.booleans(),
    k=st.integers(0, 3),
    lam=st.sampled_from([0.0, 0.01, 0.2]),
    momentum=st.sampled_from([0.0, 0.0, 0.3, 0.9]),
    data=st.data(),
)
def test_property_second_moment_equals_enumeration_of_all_batches(seed, n, c, m, full, k, lam, momentum, data):
    """S4–S5 against the exact average over all C(n, B)^3 batch sequences of 3 steps (≤ 1e-12 relative), for
    random kernels, batch sizes, offsets, test points and momentum (degree 1); the covariance is symmetric and
    positive semi-definite (eigenvalues ≥ −1e-12·‖C‖)."""
    batch = data.draw(st.integers(1, n))
    k = 1 if momentum else k
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=((n + m) * c, 2 * (n + m) * c))
    joint = feats @ feats.T / feats.shape[1]
    if full:
        k_tt = np.transpose(joint[: n * c, : n * c].reshape(n, c, n, c), (0, 2, 1, 3))
        k_st = np.transpose(joint[n * c :, : n * c].reshape(m, c, n, c), (0, 2, 1, 3))
    else:
        joint = joint[::c, ::c]
        k_tt, k_st = joint[:n, :n], joint[n:, :n]
    y, f0, fs0 = rng.normal(size=(n, c)), rng.normal(size=(n, c)), rng.normal(size=(m, c))
    off_tr, off_te = rng.normal(size=(n, c)), rng.normal(size=(m, c))
    eta = 0.3 * batch * c / max(float(np.linalg.eigvalsh(_expand(k_tt, c))[-1]), 1e-3)
    pred = gradient_descent_mse_l2_sgd(k_tt, y, eta, lam, k, batch_size=batch, momentum=momentum)(
        np.array([3, 0, 2, 1]),
        f0,
        fs0 if m else None,
        k_st if m else None,
        offset_train=off_tr,
        offset_test=off_te if m else None,
    )
    moments = enumerate_moments(
        _expand(k_tt, c),
        _expand(k_st, c) if m else np.zeros((0, n * c)),
        _flat(y - off_tr),
        _flat(f0 - off_tr),
        _flat(fs0 - off_te) if m else np.zeros(0),
        eta,
        lam,
        k,
        batch,
        3,
        c,
        beta=momentum if momentum else None,
    )
    cov = _joint_cov(pred) if m else _joint_cov_train(pred)
    offsets = np.concatenate([_flat(off_tr), _flat(off_te) if m else np.zeros(0)])
    for i, s in enumerate([3, 0, 2, 1]):
        mean, second = moments[s]
        mean_pred = (
            np.concatenate(
                [
                    np.asarray(pred.mean_train[i]).reshape(-1),
                    np.asarray(pred.mean_test[i]).reshape(-1) if m else np.zeros(0),
                ]
            )
            - offsets
        )
        assert relative_error(mean_pred, mean) <= 1e-12
        assert relative_error(cov[i] + np.outer(mean_pred, mean_pred), second) <= 1e-12
        assert np.array_equal(cov[i], cov[i].T)
        evals = np.linalg.eigvalsh(cov[i])
        assert evals[0] >= -1e-12 * max(evals[-1], 1e-300)


def _joint_cov_train(pred) -> np.ndarray:
    b = np.asarray(pred.cov_train)
    t, n, _, c, _ = b.shape
    return np.transpose(b, (0, 1, 3, 2, 4)).reshape(t, n * c, n * c)


def test_expected_loss_and_variances_are_the_covariance_diagonal():
    """E[L] = (tr C_XX + ‖m_X − Y‖²)/(2N) and the variances are the diagonal of the covariance (S6)."""
    p = make_problem(n=5, m=2, c=2, seed=8)
    pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 0.01, 2, batch_size=2)(
        7, p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    cov = np.asarray(pred.cov_train)
    var = np.asarray(pred.var_train)
    assert var.shape == (5, 2) and np.array_equal(var, np.einsum("iiaa->ia", cov))
    assert np.array_equal(np.asarray(pred.var_test), np.einsum("iiaa->ia", np.asarray(pred.cov_test)))
    loss = np.trace(cov.transpose(0, 2, 1, 3).reshape(10, 10)) + np.sum((np.asarray(pred.mean_train) - p.y_train) ** 2)
    assert relative_error(pred.loss, loss / 20) <= 1e-14 and np.all(var > 0)


# ---------------------------------------------------------------------------------------------------------------
# Transformations: jit, vmap and grad over λ and η


def test_jit_vmap_grad_over_l2_and_learning_rate():
    """Under x64, jit and vmap over λ reproduce the eager results (≤ 1e-12), and grad of the expected loss
    over (η, λ) matches central differences (≤ 1e-6)."""
    p = make_problem(n=5, m=2, c=2, seed=9)
    times = np.array([10, 4])

    def expected_loss(eta, lam):
        pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, eta, lam, 2, batch_size=2)(
            times, p.fx_train_0, p.fx_test_0, p.k_test_train
        )
        return pred.loss[0] + jnp.sum(pred.cov_test[0])

    lams = np.array([0.0, 0.01, 0.05])
    with enable_x64():
        batched = jax.jit(jax.vmap(lambda lam: expected_loss(0.5, lam)))(lams)
        grads = jax.jit(jax.grad(expected_loss, argnums=(0, 1)))(0.5, 0.01)
        eager = np.array([float(expected_loss(0.5, lam)) for lam in lams])  # concrete: the eager path
        h = 1e-5
        numeric = [
            (float(expected_loss(0.5 + h, 0.01)) - float(expected_loss(0.5 - h, 0.01))) / (2 * h),
            (float(expected_loss(0.5, 0.01 + h)) - float(expected_loss(0.5, 0.01 - h))) / (2 * h),
        ]
    assert relative_error(batched, eager) <= 1e-12
    assert relative_error(np.array([float(g) for g in grads]), np.array(numeric)) <= 1e-6


# ---------------------------------------------------------------------------------------------------------------
# 4. Validation


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"batch_size": 0}, "batch_size: must be in [1, 6]"),
        ({"batch_size": 7}, "batch_size: must be in [1, 6]"),
        ({"batch_size": 2.0}, "batch_size: must be an integer"),
        ({"batch_size": True}, "batch_size: must be an integer"),
        ({"batch_size": None}, "batch_size: must be an integer"),
        ({"batch_size": 2, "momentum": 1.0}, "momentum: must be in [0, 1)"),
        ({"batch_size": 2, "momentum": -0.1}, "momentum: must be >= 0"),
        ({"batch_size": 2, "momentum": 0.5, "degree": 2}, "momentum: supported for degree 1 only"),
        ({"batch_size": 2, "learning_rate": 20.0, "l2": 0.1}, "learning_rate: learning_rate * l2 = 2"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    p = make_problem(n=6, m=2, c=2)
    args = {"learning_rate": 0.5, "l2": 0.01, "degree": 1, **kwargs}
    with pytest.raises(ValueError) as err:
        gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, **args)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_too_large_problems_are_refused_before_any_work():
    """n·c beyond MAX_ROWS names k_train_train (before the eigendecomposition); test points tipping the state over
    name k_test_train; the flop bound and memory name t; non-whole or infinite steps name t."""
    n = MAX_ROWS // 2 + 1
    with pytest.raises(ValueError, match=r"^k_train_train: .* exceed the SGD moment solver's bound of 1024"):
        gradient_descent_mse_l2_sgd(np.eye(n), np.zeros((n, 2)), batch_size=2)
    p = make_problem(n=6, m=2, c=2)
    predict = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 0.01, 1, batch_size=2)
    with pytest.raises(ValueError, match=r"^k_test_train: 1036 state rows"):
        predict(3, p.fx_train_0, None, np.ones((512, 6)))
    with pytest.raises(ValueError, match=r"^t: 1000000000 steps .* more than max_work"):
        predict(10**9)
    with pytest.raises(ValueError, match=r"^t: SGD moments are defined at whole finite steps, got 2.5"):
        predict([1, 2.5])
    with pytest.raises(ValueError, match=r"^t: SGD moments are defined at whole finite steps, got inf"):
        predict(np.inf)
    with _memory.memory_limit(1e3), pytest.raises(ValueError, match=r"^t: covariances of 12 state rows"):
        predict(np.arange(20))
    heavy = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 0.01, 1, batch_size=2, momentum=0.5)
    with pytest.raises(ValueError, match=r"^k_test_train: 1040 state rows .*momentum doubles the state"):
        heavy(3, p.fx_train_0, None, np.ones((254, 6)))
