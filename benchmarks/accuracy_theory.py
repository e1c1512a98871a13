"""Measured accuracy of the theory engine against each of its independent references.

    python benchmarks/accuracy_theory.py

The tests assert the bounds; this prints the measured figures (max relative
error) and writes benchmarks/results/accuracy.json:
  1. λ = 0 vs nt.predict.gradient_descent_mse / gradient_descent_mse_ensemble;
  2. closed form vs DOP853 (rtol 1e-13) on the full equations, k ∈ {0,1,2,3,5};
  3. discrete map vs the step-by-step loop over 10^4 steps, k ∈ {0,1,2,3,5};
  4. k = 1, t = ∞ vs scikit-learn KernelRidge (ridge Nλ);
  5. mode_factors vs the 50-digit mpmath reference on 2,000 random physical cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from jax.experimental import enable_x64

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from _mp_reference import mp_mode_factors  # noqa: E402
from conftest import make_problem, relative_error  # noqa: E402
from ntk_l2.common.io import save_json  # noqa: E402
from ntk_l2.networks.nt import nt, stax  # noqa: E402
from ntk_l2.theory import (  # noqa: E402
    gradient_descent_mse_l2,
    gradient_descent_mse_l2_discrete,
    gradient_descent_mse_l2_ensemble,
    mode_factors,
)
from test_closed_form import _integrate_full_equations  # noqa: E402
from test_discrete import _loop  # noqa: E402


def neural_tangents_agreement() -> dict:
    rng = np.random.default_rng(0)
    _, _, kernel_fn = stax.serial(stax.Dense(256, b_std=None), stax.Relu(), stax.Dense(3, b_std=None))
    x_train, x_test, y = rng.normal(size=(40, 6)), rng.normal(size=(15, 6)), rng.normal(size=(40, 3))
    times = np.array([0.0, 1.0, 10.0, 300.0, 5000.0])
    with enable_x64():
        kk = kernel_fn(x_train, None, ("ntk", "nngp"))
        ks = kernel_fn(x_test, x_train, ("ntk", "nngp"))
        kss = np.asarray(kernel_fn(x_test, None, "nngp"))
        blocks = [np.asarray(b) for b in (kk.ntk, kk.nngp, ks.ntk, ks.nngp)]
        f0, fs0 = rng.normal(size=(40, 3)), rng.normal(size=(15, 3))
        nt_pred = [np.asarray(a) for a in nt.predict.gradient_descent_mse(blocks[0], y, 0.7)(times, f0, fs0, blocks[2])]
        nt_ens = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y, learning_rate=0.7)(
            times, x_test, "ntk", compute_cov=True
        )
        nt_mean, nt_cov = np.asarray(nt_ens.mean), np.asarray(nt_ens.covariance)
    ours = gradient_descent_mse_l2(blocks[0], y, 0.7, 0.0, 2)(times, f0, fs0, blocks[2])
    ens = gradient_descent_mse_l2_ensemble(blocks[0], blocks[1], y, 0.7, 0.0, 2)(times, blocks[2], blocks[3], kss)
    return {
        "fx_train": relative_error(ours[0], nt_pred[0]),
        "fx_test": relative_error(ours[1], nt_pred[1]),
        "ensemble_mean": relative_error(ens.mean, nt_mean),
        "ensemble_cov": relative_error(ens.covariance, nt_cov),
        "bound": 1e-10,
    }


def closed_form_vs_integration() -> dict:
    out = {}
    for k in (0, 1, 2, 3, 5):
        p = make_problem(seed=k)
        times = np.array([0.0, 1.0, 30.0, 400.0, 1000.0 if k == 0 else 3000.0])
        ours = gradient_descent_mse_l2(p.k_train_train, p.y_train, 1.5, 3e-3, k)(
            times, p.fx_train_0, p.fx_test_0, p.k_test_train
        )
        ref = _integrate_full_equations(p, 1.5, 3e-3, k, times)
        out[f"k={k}"] = max(relative_error(a, b) for a, b in zip(ours, ref, strict=False))
    return {**out, "bound": 1e-8}


def discrete_vs_loop() -> dict:
    out = {}
    steps = [0, 1, 17, 300, 2500, 10_000]
    for k in (0, 1, 2, 3, 5):
        p = make_problem(seed=10 + k)
        eta, lam = (40.0, 1e-3) if k else (20.0, 1e-6)
        ours = gradient_descent_mse_l2_discrete(p.k_train_train, p.y_train, eta, lam, k)(
            np.array(steps), p.fx_train_0, p.fx_test_0, p.k_test_train
        )
        ref = _loop(p, eta, lam, k, steps)
        out[f"k={k}"] = max(relative_error(a, b) for a, b in zip(ours, ref, strict=False))
    return {**out, "bound": 1e-10}


def kernel_ridge() -> dict:
    from sklearn.kernel_ridge import KernelRidge

    p = make_problem()
    lam = 2e-3
    krr = KernelRidge(alpha=p.y_train.size * lam, kernel="precomputed").fit(p.k_train_train, p.y_train)
    fx_train, fx_test = gradient_descent_mse_l2(p.k_train_train, p.y_train, 0.7, lam, 1)(
        np.inf, p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    return {
        "train": relative_error(fx_train, krr.predict(p.k_train_train)),
        "test": relative_error(fx_test, krr.predict(p.k_test_train)),
        "bound": 1e-8,
    }


def mpmath_reference(cases: int = 2000) -> dict:
    rng = np.random.default_rng(2026)
    worst, compared = 0.0, 0
    for _ in range(cases):
        eta, mu, n_out = 10 ** rng.uniform(-4, 1), 10 ** rng.uniform(-12, 6), round(10 ** rng.uniform(0, 5))
        lam = 0.0 if rng.random() < 0.1 else 10 ** rng.uniform(-8, 0)
        t = 0.0 if rng.random() < 0.05 else 10 ** rng.uniform(-3, 9)
        k = int(rng.integers(0, 6))
        a, g = eta * mu / n_out, eta * lam
        got = mode_factors(a, g, k, t)
        for value, ref in zip(got, mp_mode_factors(a, g, k, t), strict=False):
            ref = float(ref)
            if ref > 1e-300:  # below, float64 has no 1e-9 relative resolution (see the test)
                worst = max(worst, abs(float(value) - ref) / ref)
                compared += 1
    return {"cases": cases, "values_compared": compared, "max_relative_error": worst, "bound": 1e-9}


def main() -> None:
    results = {
        "lambda0_vs_neural_tangents": neural_tangents_agreement(),
        "closed_form_vs_integration": closed_form_vs_integration(),
        "discrete_vs_loop_1e4_steps": discrete_vs_loop(),
        "k1_infinite_time_vs_kernel_ridge": kernel_ridge(),
        "modes_vs_mpmath_50_digits": mpmath_reference(),
    }
    for name, values in results.items():
        shown = ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"{name}: {shown}")
    out = Path(__file__).parent / "results" / "accuracy.json"
    save_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
