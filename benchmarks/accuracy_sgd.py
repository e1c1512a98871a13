"""Measured accuracy and speed of the SGD moment solver (derivations/sgd.md, S1–S7).

    python benchmarks/accuracy_sgd.py [--runs 2000] [--kernel-runs 20000]

Prints:
  1. 2,000 linearized ReLU networks (one θ_0, independent batch streams, `ntk_l2.finite.train`) on
     digits, n = 16, c = 10, 4 test points (200 state rows): z-scores of the mean (two
     projections), of tr C_XX, wᵀCw and E[L] at every record, and the per-entry z-scores of the
     mean and of the covariance (the fraction beyond 3 SE: ~0.27% for independent Gaussian
     estimates; the entries share the same runs, so the fraction fluctuates far more than for
     independent tests, and products of deviations are skewed);
  2. 20,000 kernel-space runs (the same sampler) on a random kernel: the same statistics;
  3. exactness: the largest relative error against the enumeration of all batch sequences
     (small cases over 3 steps, and the problem of 2. over 2 steps: 120² paths), and B = n
     against the full-batch map;
  4. speed: µs per step and GFLOP/s of the recursion for several state sizes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from conftest import make_problem, relative_error  # noqa: E402
from ntk_l2.finite.train import TrainConfig, train  # noqa: E402
from ntk_l2.theory.sgd import STEP_OVERHEAD, gradient_descent_mse_l2_sgd  # noqa: E402
from test_sgd import (  # noqa: E402
    _expand,
    _flat,
    _joint_cov,
    _network_problem,
    _safe_learning_rate,
    enumerate_moments,
    reference_map,
    simulate_kernel_sgd,
)


def _statistics(x: np.ndarray, pred, y_flat: np.ndarray, nc: int) -> None:
    """z-scores (estimate − theory)/SE of the scalar statistics and per-entry summaries; x is (runs, T, D)."""
    runs, records = x.shape[:2]
    mean = np.concatenate(
        [np.asarray(pred.mean_train).reshape(records, -1), np.asarray(pred.mean_test).reshape(records, -1)], axis=1
    )
    cov = _joint_cov(pred)
    rng = np.random.default_rng(0)
    w = rng.normal(size=mean.shape[1])
    w /= np.linalg.norm(w)
    dev = x - mean
    scalars = {
        "mean·w": (x @ w, mean @ w),
        "tr C_XX": (np.sum(dev[..., :nc] ** 2, -1), np.trace(cov[:, :nc, :nc], axis1=1, axis2=2)),
        "w'Cw": ((dev @ w) ** 2, np.einsum("i,tij,j->t", w, cov, w)),
        "E[L]": (np.sum((x[..., :nc] - y_flat) ** 2, -1) / (2 * nc), np.asarray(pred.loss)),
    }
    for name, (values, theory) in scalars.items():
        z = (values.mean(0) - theory) / (values.std(0, ddof=1) / np.sqrt(runs))
        print(f"  {name:8s} z per record: {np.array2string(z, precision=2)}")
    z_mean = (x.mean(0) - mean) / (x.std(0, ddof=1) / np.sqrt(runs))
    iu = np.triu_indices(mean.shape[1])
    beyond, total, worst = 0, 0, 0.0
    for t in range(records):
        prod = dev[:, t, :, None] * dev[:, t, None, :]
        est, se = prod.mean(0)[iu], prod.std(0, ddof=1)[iu] / np.sqrt(runs)
        z = (est - cov[t][iu]) / se
        beyond += int(np.sum(np.abs(z) > 3))
        total += z.size
        worst = max(worst, float(np.max(np.abs(z))))
    print(f"  per-entry mean: {np.mean(np.abs(z_mean) > 3):.2%} beyond 3 SE, max |z| {np.max(np.abs(z_mean)):.2f}")
    print(
        f"  per-entry covariance ({total} entries over {records} records): {beyond / total:.2%} beyond 3 SE, "
        f"max |z| {worst:.2f}"
    )


def linearized_networks(runs: int) -> None:
    data, net, init_fixed, k_tt, k_st, (f0_tr, f0_te), (c_tr, c_te) = _network_problem(16, 4, 48)
    c, batch, lam, record = data.n_classes, 4, 2e-3, (1, 5, 20, 60, 150)
    eta = _safe_learning_rate(k_tt, batch, c)
    start = time.perf_counter()
    config = TrainConfig(
        learning_rate=eta, l2=lam, steps=record[-1], batch_size=batch, record_steps=record, float64=True
    )
    out = train(
        init_fixed,
        net.apply_fn,
        data.x_train,
        data.y_train,
        config,
        x_test=data.x_test,
        seeds=range(runs),
        linearized=True,
    )
    x = np.concatenate([out.fx_train.reshape(runs, len(record), -1), out.fx_test.reshape(runs, len(record), -1)], 2)
    pred = gradient_descent_mse_l2_sgd(k_tt, data.y_train, eta, lam, 1, batch_size=batch)(
        np.asarray(record), f0_tr, f0_te, k_st, offset_train=c_tr, offset_test=c_te
    )
    ref = np.concatenate(reference_map(k_tt, k_st, data.y_train, f0_tr, f0_te, eta, lam, 1, record, c_tr, c_te), 1)
    ours = np.concatenate(
        [np.asarray(pred.mean_train).reshape(len(record), -1), np.asarray(pred.mean_test).reshape(len(record), -1)], 1
    )
    print(
        f"1. {runs} linearized networks, n = 16, c = 10, m = 4, B = {batch}, η = {eta:.3g}, λ = {lam:g}, "
        f"records {record} ({time.perf_counter() - start:.0f} s)"
    )
    print(f"  solver mean vs full-batch reference map: {relative_error(ours, ref):.1e}")
    _statistics(x, pred, _flat(data.y_train), f0_tr.size)


def kernel_runs(runs: int) -> None:
    n, m, c, batch = 10, 4, 3, 3
    p = make_problem(n=n, m=m, c=c, seed=11)
    eta, lam, record = _safe_learning_rate(p.k_train_train, batch, c, 0.8), 5e-3, (1, 5, 25, 80, 300)
    pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, eta, lam, 2, batch_size=batch)(
        np.asarray(record), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    x = simulate_kernel_sgd(
        _expand(p.k_train_train, c),
        _expand(p.k_test_train, c),
        _flat(p.y_train),
        _flat(p.fx_train_0),
        _flat(p.fx_test_0),
        eta,
        lam,
        2,
        batch,
        c,
        np.arange(runs),
        record,
    )
    print(f"2. {runs} kernel-space runs, n = {n}, c = {c}, m = {m}, B = {batch}, k = 2, records {record}")
    _statistics(x, pred, _flat(p.y_train), n * c)


def exactness() -> None:
    worst = 0.0
    for seed, (n, batch, c, k, beta) in enumerate(
        [(4, 2, 2, 2, None), (4, 1, 1, 0, None), (5, 2, 2, 1, 0.7), (3, 2, 3, 3, None)]
    ):
        p = make_problem(n=n, m=2, c=c, seed=seed)
        eta = _safe_learning_rate(p.k_train_train, batch, c, 0.5)
        pred = gradient_descent_mse_l2_sgd(
            p.k_train_train, p.y_train, eta, 0.05, k, batch_size=batch, momentum=beta or 0.0
        )(np.arange(4), p.fx_train_0, p.fx_test_0, p.k_test_train)
        moments = enumerate_moments(
            _expand(p.k_train_train, c),
            _expand(p.k_test_train, c),
            _flat(p.y_train),
            _flat(p.fx_train_0),
            _flat(p.fx_test_0),
            eta,
            0.05,
            k,
            batch,
            3,
            c,
            beta,
        )
        cov = _joint_cov(pred)
        for s in range(4):
            mean = np.concatenate(
                [np.asarray(pred.mean_train[s]).reshape(-1), np.asarray(pred.mean_test[s]).reshape(-1)]
            )
            worst = max(worst, relative_error(cov[s] + np.outer(mean, mean), moments[s][1]))
    n, m, c, batch = 10, 4, 3, 3  # the problem of kernel_runs: its first records are exact, not sampled
    p = make_problem(n=n, m=m, c=c, seed=11)
    eta = _safe_learning_rate(p.k_train_train, batch, c, 0.8)
    pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, eta, 5e-3, 2, batch_size=batch)(
        np.array([1, 2]), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    moments = enumerate_moments(
        _expand(p.k_train_train, c),
        _expand(p.k_test_train, c),
        _flat(p.y_train),
        _flat(p.fx_train_0),
        _flat(p.fx_test_0),
        eta,
        5e-3,
        2,
        batch,
        2,
        c,
    )
    cov = _joint_cov(pred)
    for s in (1, 2):
        mean = np.concatenate(
            [np.asarray(pred.mean_train[s - 1]).reshape(-1), np.asarray(pred.mean_test[s - 1]).reshape(-1)]
        )
        worst = max(worst, relative_error(cov[s - 1] + np.outer(mean, mean), moments[s][1]))
    p = make_problem(n=12, m=3, c=2, seed=5)
    pred = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 0.01, 2, batch_size=12)(
        np.array([1, 100, 1000]), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    ref = reference_map(
        p.k_train_train, p.k_test_train, p.y_train, p.fx_train_0, p.fx_test_0, 0.5, 0.01, 2, [1, 100, 1000]
    )
    print(f"3. second moment vs enumeration of all batch sequences: max relative error {worst:.1e}")
    print(
        f"   B = n: max |covariance| {float(np.max(np.abs(np.asarray(pred.cov_train)))):.1e}, mean vs full-batch "
        f"map {relative_error(np.asarray(pred.mean_train).reshape(3, -1), ref[0]):.1e}"
    )


def speed() -> None:
    print("4. speed (2 CPU cores):")
    for n, m, c, steps in [
        (6, 0, 2, 20000),
        (20, 0, 5, 2000),
        (40, 0, 5, 500),
        (40, 8, 5, 300),
        (100, 0, 2, 300),
        (200, 0, 2, 60),
    ]:
        p = make_problem(n=n, m=max(m, 1), c=c)
        predict = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 0.01, 2, batch_size=max(1, n // 4))
        args = (p.fx_train_0, p.fx_test_0, p.k_test_train) if m else (p.fx_train_0,)
        predict(steps, *args).loss.block_until_ready()  # compile
        start = time.perf_counter()
        predict(steps, *args).loss.block_until_ready()
        dt = (time.perf_counter() - start) / steps
        rows, nc = (n + m) * c, n * c
        flops = 2 * (3 * rows * rows * nc + rows * nc * nc)
        print(
            f"   D = {rows:4d} (n·c = {nc}): {dt * 1e6:9.1f} µs/step, {flops / dt / 1e9:5.1f} GFLOP/s, "
            f"work-bound units {flops + STEP_OVERHEAD:.3g}/step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--kernel-runs", type=int, default=20000)
    args = parser.parse_args()
    linearized_networks(args.runs)
    kernel_runs(args.kernel_runs)
    exactness()
    speed()


if __name__ == "__main__":
    main()
