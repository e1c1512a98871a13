"""The theory engine inside JAX programs: a λ grid vmapped over one factorization.

    python benchmarks/bench_jax.py [--small]

1. 64 values of λ, n = 1024 training points, c = 10 outputs, 100 times, closed form
   (degree 2): one ``jax.vmap`` over λ sharing one eigendecomposition
   (`ntk_l2.theory.eigh_kernel`, passed to the solver as a `KernelEigen`) vs 64
   separate solver calls on the kernel (each factorizes it). Target: ≥ 20× faster.
   Both are timed after a warm-up call (JIT compilation excluded from both; the
   first, compiling call of the vmapped version is reported beside).
2. The same with the exact discrete map at 100 steps up to 10^4 (degree 2).
   Each also reports the ceiling any shared-factorization grid can reach here (`speedup_ceiling`):
   every λ still needs its own (n × n) @ (n × T·c) product to form its outputs.
3. ``jax.grad`` of the final test loss with respect to λ, through the closed form:
   the time of one gradient against one prediction.

Prints one line per comparison and writes benchmarks/results/jax.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.common.io import save_json
from ntk_l2.theory import eigh_kernel, gradient_descent_mse_l2, gradient_descent_mse_l2_discrete


def problem(n: int, m: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n + m, n + 64))
    k = feats @ feats.T / feats.shape[1]
    return k[:n, :n], k[n:, :n], rng.normal(size=(n, c))


def timed(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def bench_grid(solver, n: int, c: int, n_l2: int, times: np.ndarray, repeats: int) -> dict:
    k_tt, _, y = problem(n, 0, c)
    eta = 0.5 * y.size / np.linalg.eigvalsh(k_tt)[-1]  # well inside the discrete map's stability limit
    lams = np.geomspace(1e-6, 1e-1, n_l2) / eta  # ηλ from 1e-6 to 0.1

    with enable_x64():

        def grid():
            eig = eigh_kernel(k_tt)
            return jax.vmap(lambda lam: solver(eig, y, eta, lam, 2)(times))(jnp.asarray(lams))

        def separate():
            return [solver(k_tt, y, eta, float(lam), 2)(times) for lam in lams]

        t0 = time.perf_counter()
        first = jax.block_until_ready(grid())
        t_first = time.perf_counter() - t0
        t_grid = timed(grid, repeats)
        separate()  # warm-up: compile the per-λ path once
        t_sep = timed(separate, max(1, repeats // 2))
        ref = separate()
    err = max(
        float(np.max(np.abs(np.asarray(first[i]) - np.asarray(r))) / np.max(np.abs(np.asarray(r))))
        for i, r in enumerate(ref)
    )
    ceiling = speedup_ceiling(k_tt, times.size * c, n_l2, repeats)
    return {
        "n": n,
        "c": c,
        "n_l2": n_l2,
        "n_times": int(times.size),
        "vmapped_s": t_grid,
        "vmapped_first_call_s": t_first,
        "separate_s": t_sep,
        "speedup": t_sep / t_grid,
        "max_rel_diff": err,
        "target_speedup": 20.0,
        **ceiling,
    }


def speedup_ceiling(k_tt: np.ndarray, columns: int, n_l2: int, repeats: int) -> dict:
    """The largest speed-up sharing the factorization can give on this machine.

    A separate call costs at least E (validation and eigendecomposition) + G, where G is the one product
    V (n × n) @ (n × T·c) that turns a λ's per-mode coefficients into its T·c output columns, timed here in
    NumPy's BLAS; the grid costs at least E + n_l2·G. So the ratio is at most (E + G) / (E/n_l2 + G),
    with mode factors and everything else taken as free.
    """
    n = k_tt.shape[0]
    coefficients = np.random.default_rng(2).normal(size=(n, columns))
    e = timed(lambda: eigh_kernel(k_tt), repeats)
    evecs = eigh_kernel(k_tt).evecs
    g = timed(lambda: evecs @ coefficients, repeats)
    return {
        "factorization_s": e,
        "output_gemm_s": g,
        "gemm_gflops": 2.0 * n * n * columns / g / 1e9,
        "speedup_ceiling": (e + g) / (e / n_l2 + g),
    }


def bench_grad(n: int, c: int, repeats: int) -> dict:
    k_tt, k_st, y = problem(n, 200, c)
    times = np.array([100.0])
    with enable_x64():
        eig = eigh_kernel(k_tt)

        def loss(lam):
            _, fs = gradient_descent_mse_l2(eig, y, 1.0, lam, 2)(times, 0.0, 0.0, k_st)
            return jnp.sum(fs**2)

        grad = jax.jit(jax.grad(loss))
        value = jax.jit(loss)
        grad(1e-3), value(1e-3)
        t_grad, t_value = timed(lambda: grad(1e-3), repeats), timed(lambda: value(1e-3), repeats)
    return {"n": n, "m": 200, "c": c, "grad_s": t_grad, "value_s": t_value, "ratio": t_grad / t_value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="n = 256, 16 λ values (a quick check)")
    args = parser.parse_args()
    n, n_l2, reps = (256, 16, 2) if args.small else (1024, 64, 3)
    times = np.geomspace(1.0, 1e4, 100)
    res = {
        "closed_form_grid": bench_grid(gradient_descent_mse_l2, n, 10, n_l2, times, reps),
        "discrete_grid": bench_grid(gradient_descent_mse_l2_discrete, n, 10, n_l2, np.unique(np.round(times)), reps),
        "grad": bench_grad(n, 10, reps),
    }
    for key in ("closed_form_grid", "discrete_grid"):
        r = res[key]
        print(
            f"{key}: {r['n_l2']} λ vmapped {r['vmapped_s']:.2f} s (first call {r['vmapped_first_call_s']:.2f} s) vs "
            f"separate calls {r['separate_s']:.2f} s: {r['speedup']:.1f}x (target >= 20x); "
            f"max relative difference {r['max_rel_diff']:.1e}; ceiling on this machine {r['speedup_ceiling']:.1f}x "
            f"(factorization {r['factorization_s'] * 1e3:.0f} ms, "
            f"one λ's output GEMM {r['output_gemm_s'] * 1e3:.0f} ms "
            f"at {r['gemm_gflops']:.0f} GFLOP/s)"
        )
    g = res["grad"]
    print(
        f"grad w.r.t. λ: {g['grad_s'] * 1e3:.1f} ms vs one prediction {g['value_s'] * 1e3:.1f} ms ({g['ratio']:.1f}x)"
    )
    if not args.small:
        save_json(Path(__file__).parent / "results" / "jax.json", res)


if __name__ == "__main__":
    main()
