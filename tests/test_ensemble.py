"""Ensemble mean and covariance with L2 (derivations/ensemble.md)."""

from __future__ import annotations

import numpy as np
import pytest
from jax.experimental import enable_x64

from conftest import make_problem, relative_error
from ntk_l2._nt import stax, nt
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
            TIMES, x_test, "ntk", compute_cov=True)
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
