"""Ensemble mean and covariance with L2 (derivations/ensemble.md)."""

from __future__ import annotations

import numpy as np
import pytest
from jax.experimental import enable_x64

from conftest import make_problem, relative_error
from ntk_l2.networks.nt import nt, stax
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_ensemble

TIMES = np.array([0.0, 1.0, 10.0, 300.0, 5000.0])


def test_lambda_zero_matches_neural_tangents_ensemble():
    """λ = 0: mean and covariance equal nt.predict.gradient_descent_mse_ensemble (≤ 1e-10)."""
    rng = np.random.default_rng(0)
    _, _, kernel_fn = stax.serial(stax.Dense(64, b_std=None), stax.Relu(), stax.Dense(3, b_std=None))
    x_train, x_test = rng.normal(size=(20, 5)), rng.normal(size=(9, 5))
    y = rng.normal(size=(20, 3))
    with enable_x64():
        x_train, x_test = np.float64(x_train), np.float64(x_test)
        theirs = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y, learning_rate=0.7)(
            TIMES, x_test, "ntk", compute_cov=True
        )
        k_tt = kernel_fn(x_train, None, ("ntk", "nngp"))
        k_st = kernel_fn(x_test, x_train, ("ntk", "nngp"))
        k_ss = np.asarray(kernel_fn(x_test, None, "nngp"))
        blocks = [np.asarray(b) for b in (k_tt.ntk, k_tt.nngp, k_st.ntk, k_st.nngp)]
        mean, cov = np.asarray(theirs.mean), np.asarray(theirs.covariance)
    ours = gradient_descent_mse_l2_ensemble(blocks[0], blocks[1], y, 0.7, 0.0, 2)(TIMES, blocks[2], blocks[3], k_ss)
    assert relative_error(ours.mean, mean) <= 1e-10
    assert relative_error(ours.covariance, cov) <= 1e-10


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_covariance_is_linear_propagation_of_nngp(k):
    """With λ > 0 the ensemble equals pushing N(0, K) through the closed form (E1–E3).

    The closed form is affine in (f_X(0), f_*(0)); applying it to every basis
    vector gives the exact linear map A_t, so cov = A_t K A_tᵀ and
    mean = prediction from zero initial outputs, to round-off.
    """
    p = make_problem(n=12, m=5, c=2, seed=k)
    rng = np.random.default_rng(k)
    feats = rng.normal(size=(17, 40))
    nngp = feats @ feats.T / 40
    eta, lam = 1.3, 4e-3
    predict = gradient_descent_mse_l2(p.k_train_train, p.y_train, eta, lam, k)
    zeros_train, zeros_test = np.zeros((12, 2)), np.zeros((5, 2))
    mean_ref = predict(TIMES, zeros_train, zeros_test, p.k_test_train)[1]
    columns = []
    for j in range(17):  # response of the test outputs (column 0) to unit initial outputs
        f0, fs0 = zeros_train.copy(), zeros_test.copy()
        (f0 if j < 12 else fs0)[j if j < 12 else j - 12, 0] = 1.0
        columns.append(predict(TIMES, f0, fs0, p.k_test_train)[1][:, :, 0] - mean_ref[:, :, 0])
    a_t = np.stack(columns, axis=-1)  # (T, m, n + m)
    cov_ref = a_t @ nngp @ np.swapaxes(a_t, 1, 2)
    ens = gradient_descent_mse_l2_ensemble(p.k_train_train, nngp[:12, :12], p.y_train, eta, lam, k)
    out = ens(TIMES, p.k_test_train, nngp[12:, :12], nngp[12:, 12:])
    assert relative_error(out.mean, mean_ref) <= 1e-12
    assert relative_error(out.covariance, cov_ref) <= 1e-12


def test_mean_only_without_test_nngp():
    p = make_problem()
    ens = gradient_descent_mse_l2_ensemble(p.k_train_train, p.k_train_train, p.y_train, 1.0, 1e-3, 2)
    out = ens(5.0, p.k_test_train, p.k_test_train)
    assert out.covariance is None and out.mean.shape == p.fx_test_0.shape


def test_bad_nngp_shapes_name_the_argument():
    p = make_problem()
    with pytest.raises(ValueError, match="nngp_train_train: expected shape"):
        gradient_descent_mse_l2_ensemble(p.k_train_train, np.eye(3), p.y_train)
    ens = gradient_descent_mse_l2_ensemble(p.k_train_train, p.k_train_train, p.y_train)
    with pytest.raises(ValueError, match="nngp_test_test: expected shape"):
        ens(1.0, p.k_test_train, p.k_test_train, np.eye(3))


# --- the JAX ensemble against the NumPy reference, transformations, output kernels -------------

from ntk_l2.theory.reference import gradient_descent_mse_l2_ensemble as reference_ensemble  # noqa: E402


def _nngp(n_total: int, seed: int) -> np.ndarray:
    feats = np.random.default_rng(seed).normal(size=(n_total, 3 * n_total))
    return feats @ feats.T / feats.shape[1]


@pytest.mark.parametrize("k, lam", [(0, 2e-3), (1, 4e-3), (2, 4e-3), (4, 1e-4), (3, 0.0)])
def test_jax_ensemble_equals_numpy_reference(k, lam):
    """E1–E3 in JAX vs the NumPy reference, mean and covariance, ≤ 1e-12 of the largest entry.

    Both evaluate the same closed forms in float64 from the same eigendecomposition; what
    differs is the order of floating-point operations, a few ulps per entry.
    """
    p = make_problem(n=14, m=6, c=2, seed=10 + k)
    nngp = _nngp(20, k)
    times = np.array([0.0, 0.5, 3.0, 40.0, 2000.0, np.inf])
    args = (p.k_train_train, nngp[:14, :14], p.y_train, 1.1, lam, k)
    ours = gradient_descent_mse_l2_ensemble(*args)(times, p.k_test_train, nngp[14:, :14], nngp[14:, 14:])
    ref = reference_ensemble(*args)(times, p.k_test_train, nngp[14:, :14], nngp[14:, 14:])
    assert relative_error(ours.mean, ref.mean) <= 1e-12
    assert relative_error(ours.covariance, ref.covariance) <= 1e-12


def test_jax_ensemble_under_jit_vmap_and_grad():
    """jit equals eager; vmap over λ equals separate calls; grad w.r.t. λ of the summed variance
    matches a central difference (h = 1e-6 λ: truncation ~h²·f''' ≈ 1e-12 relative, round-off
    ~ε/h ≈ 1e-10; the bound 1e-6 leaves room for both)."""
    import jax
    import jax.numpy as jnp

    p = make_problem(n=10, m=4, c=2, seed=3)
    nngp = _nngp(14, 3)
    times = np.array([1.0, 30.0, 500.0])

    def variance(lam):
        ens = gradient_descent_mse_l2_ensemble(p.k_train_train, nngp[:10, :10], p.y_train, 0.9, lam, 2)
        return ens(times, p.k_test_train, nngp[10:, :10], nngp[10:, 10:])

    with enable_x64():
        eager = variance(3e-3)
        jitted = jax.jit(variance)(3e-3)
        assert relative_error(jitted.covariance, eager.covariance) <= 1e-12
        assert relative_error(jitted.mean, eager.mean) <= 1e-12
        lams = jnp.array([1e-3, 3e-3, 1e-2])
        batched = jax.vmap(variance)(lams)
        for i, lam in enumerate([1e-3, 3e-3, 1e-2]):
            assert relative_error(batched.covariance[i], variance(lam).covariance) <= 1e-12
        total = lambda lam: jnp.trace(variance(lam).covariance[-1])  # noqa: E731
        grad = float(jax.grad(total)(3e-3))
        h = 3e-9
        fd = (float(total(3e-3 + h)) - float(total(3e-3 - h))) / (2 * h)
    assert abs(grad - fd) <= 1e-6 * abs(fd)


def test_full_output_kernels_match_the_separable_form():
    """(n, n, c, c) kernels Θ⊗I_c and K⊗I_c give the (n, n) result; the covariance comes back as
    (T, m, m, c, c) with the (m, m) covariance on the diagonal output pairs and 0 off them."""
    p = make_problem(n=9, m=4, c=3, seed=5)
    nngp = _nngp(13, 5)
    eye = np.eye(3)
    full = lambda k: np.einsum("ij,ab->ijab", k, eye)  # noqa: E731
    times = np.array([0.0, 2.0, 50.0])
    ours = gradient_descent_mse_l2_ensemble(p.k_train_train, nngp[:9, :9], p.y_train, 1.0, 2e-3, 2)(
        times, p.k_test_train, nngp[9:, :9], nngp[9:, 9:]
    )
    flat = gradient_descent_mse_l2_ensemble(full(p.k_train_train), full(nngp[:9, :9]), p.y_train, 1.0, 2e-3, 2)(
        times, full(p.k_test_train), full(nngp[9:, :9]), full(nngp[9:, 9:])
    )
    assert flat.covariance.shape == (3, 4, 4, 3, 3)
    assert relative_error(flat.mean, ours.mean) <= 1e-12
    expected = np.einsum("tij,ab->tijab", np.asarray(ours.covariance), eye)
    assert relative_error(flat.covariance, expected) <= 1e-12


def test_output_dtype_follows_the_inputs():
    """float32 kernels and targets give float32 results (computed in float64); float64 give float64."""
    p = make_problem(n=8, m=3, c=2, seed=7)
    nngp = _nngp(11, 7)
    for dtype in (np.float32, np.float64):
        cast = lambda a: np.asarray(a, dtype)  # noqa: E731
        out = gradient_descent_mse_l2_ensemble(
            cast(p.k_train_train), cast(nngp[:8, :8]), cast(p.y_train), 1.0, 1e-3, 2
        )(np.array([1.0, 5.0]), cast(p.k_test_train), cast(nngp[8:, :8]), cast(nngp[8:, 8:]))
        assert out.mean.dtype == dtype and out.covariance.dtype == dtype
