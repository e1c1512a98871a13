"""Speed of the theory engine, each comparison measured side by side in one run.

    python benchmarks/bench_theory.py [--small]

1. Closed form with λ > 0 vs `nt.predict.gradient_descent_mse` with λ = 0 on
   the same kernel: n = 2048 train, m = 2048 test, c = 10, 100 time points,
   setup (eigendecomposition) included for both. Target: ratio ≤ 1.0.
2. Discrete map, 10^5 steps reported at 100 checkpoints, n = 512, c = 10.
   Target: < 2 s (first call, JIT compilation included).
   Discrete map at t = 10^12, n = 512, c = 10: k = 4 with ηλ = 1e-3 (loop to the
   tail start S, then the closed-form tail), λ = 0 and k = 1 (closed forms, no loop).
   Target: < 1 s each, eigendecomposition (and JIT compilation) included.
   Momentum map (`ntk_l2.theory.discrete`, `derivations/momentum.md`, M7–M9) at t = 10^12,
   n = 512, c = 10: k = 4 with ηλ = 1e-3 and β = 0.9 (heavy ball and Nesterov: loop to S,
   then the tail by binary powering), λ = 0 and k = 1 (binary powering, no loop), and β = 0
   (the same code, plain gradient descent). Target: < 1 s each (warm; first call with JIT).
3. ODE with a learning-rate schedule: the eigenbasis path vs integrating the
   full n·c system directly (same method, tolerances and schedule).
   Target: ≥ 100×.
4. `import ntk_l2` in a fresh process: under 10 s, printing nothing.
Prints one line per comparison and writes benchmarks/results/theory.json.
``--only discrete_large_t`` (or ``--only discrete_momentum_large_t``) runs just that measurement
and updates its entry in the results file, leaving the others as they were.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from jax.experimental import enable_x64
from scipy.integrate import solve_ivp

from ntk_l2.common.io import save_json
from ntk_l2.networks.nt import nt
from ntk_l2.theory import discrete as momentum_discrete
from ntk_l2.theory import gradient_descent_l2_ode, gradient_descent_mse_l2, gradient_descent_mse_l2_discrete


def random_kernel(n_total: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_total, n_total + 64))
    return feats @ feats.T / feats.shape[1]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_closed_form(n: int, m: int, c: int, repeats: int) -> dict:
    k = random_kernel(n + m)
    k_tt, k_st = k[:n, :n], k[n:, :n]
    y = np.random.default_rng(1).normal(size=(n, c))
    times = np.logspace(0, 6, 100)

    def ours():
        fx_train, fx_test = gradient_descent_mse_l2(k_tt, y, 1.0, 1e-4, 4)(times, 0.0, 0.0, k_st)
        return fx_test

    def theirs():
        with enable_x64():
            out = nt.predict.gradient_descent_mse(k_tt, y, learning_rate=1.0)(times, 0.0, 0.0, k_st)
            return np.asarray(out[1])

    ours(), theirs()  # warm up (JIT for neural-tangents)
    runs = [(best_of(ours, 1), best_of(theirs, 1)) for _ in range(repeats)]  # interleaved
    t_ours, t_nt = min(r[0] for r in runs), min(r[1] for r in runs)
    return {
        "n": n,
        "m": m,
        "c": c,
        "time_points": 100,
        "ntk_l2_s": t_ours,
        "neural_tangents_s": t_nt,
        "ratio": t_ours / t_nt,
        "median_pair_ratio": float(np.median([r[0] / r[1] for r in runs])),
        "pairs": repeats,
        "target": "ratio <= 1.0",
    }


def bench_discrete(n: int, c: int, steps: int) -> dict:
    k = random_kernel(n)
    y = np.random.default_rng(2).normal(size=(n, c))
    checkpoints = np.linspace(0, steps, 100).astype(np.int64)
    t0 = time.perf_counter()
    gradient_descent_mse_l2_discrete(k, y, 1.0, 1e-4, 3)(checkpoints)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    gradient_descent_mse_l2_discrete(k, y, 1.0, 1e-4, 3)(checkpoints)
    return {
        "n": n,
        "c": c,
        "steps": steps,
        "checkpoints": 100,
        "first_call_s": first,
        "warm_call_s": time.perf_counter() - t0,
        "target": "first_call_s < 2",
    }


def bench_discrete_large_t(n: int, c: int, t: float = 1e12) -> dict:
    """One step count t = 10^12: no loop for λ = 0 and k = 1, a loop to S only for k ≥ 2 (D6)."""
    k = random_kernel(n)
    y = np.random.default_rng(2).normal(size=(n, c))
    cases = {"k4_eta_l2_1e-3": (1.0, 1e-3, 4), "l2_0_k4": (1.0, 0.0, 4), "k1_l2_1e-3": (1.0, 1e-3, 1)}
    out = {"n": n, "c": c, "t": t, "target": "first_call_s < 1 (eigendecomposition included)"}
    for name, (eta, lam, degree) in cases.items():
        runs = []
        for _ in range(4):  # first call (JIT compilation of the loop for this shape), then 3 warm
            t0 = time.perf_counter()
            fx = gradient_descent_mse_l2_discrete(k, y, eta, lam, degree)(t)
            runs.append(time.perf_counter() - t0)
        out[name] = {
            "learning_rate": eta,
            "l2": lam,
            "degree": degree,
            "first_call_s": runs[0],
            "warm_call_s": min(runs[1:]),
            "finite": bool(np.isfinite(fx).all()),
        }
    return out


MOMENTUM_CASES = {  # name: (learning_rate, l2, degree, momentum, nesterov)
    "k4_eta_l2_1e-3_heavy_ball_0.9": (1.0, 1e-3, 4, 0.9, False),
    "k4_eta_l2_1e-3_nesterov_0.9": (1.0, 1e-3, 4, 0.9, True),
    "l2_0_k4_heavy_ball_0.9": (1.0, 0.0, 4, 0.9, False),
    "k1_l2_1e-3_nesterov_0.9": (1.0, 1e-3, 1, 0.9, True),
    "k4_eta_l2_1e-3_plain": (1.0, 1e-3, 4, 0.0, False),
}


def bench_discrete_momentum_large_t(n: int, c: int, t: float = 1e12) -> dict:
    """The momentum map at t = 10^12 (M7–M9): binary powering, plus a loop to S for k ≥ 2, λ > 0."""
    k = random_kernel(n)
    y = np.random.default_rng(2).normal(size=(n, c))
    out = {"n": n, "c": c, "t": t, "target": "warm_call_s < 1 (eigendecomposition included)"}
    for name, (eta, lam, degree, beta, nesterov) in MOMENTUM_CASES.items():
        runs = []
        for _ in range(4):  # first call (JIT compilation for this shape), then 3 warm
            t0 = time.perf_counter()
            fx = momentum_discrete.gradient_descent_mse_l2_discrete(
                k, y, eta, lam, degree, momentum=beta, nesterov=nesterov
            )(t)
            runs.append(time.perf_counter() - t0)
        out[name] = {
            "learning_rate": eta,
            "l2": lam,
            "degree": degree,
            "momentum": beta,
            "nesterov": nesterov,
            "first_call_s": runs[0],
            "warm_call_s": min(runs[1:]),
            "finite": bool(np.isfinite(fx).all()),
        }
    return out


def bench_ode(n: int, c: int) -> dict:
    k = random_kernel(n)
    rng = np.random.default_rng(3)
    y, f0 = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    eta = lambda t: 1.0 + 0.5 * np.cos(t / 50.0)  # noqa: E731
    lam, deg, t_end, tol = 1e-3, 3, 2000.0, dict(rtol=1e-8, atol=1e-10)
    times = np.linspace(0, t_end, 11)

    t0 = time.perf_counter()
    eig = gradient_descent_l2_ode(k, y, eta, lam, deg, method="Radau", **tol)(times, f0)
    t_eig = time.perf_counter() - t0

    norm = y.size
    big = np.kron(k, np.eye(c))  # Θ acting on the flattened (n, c) outputs

    def rhs(t, state):
        s = np.exp(state[-1])
        f = state[:-1]
        e = eta(t)
        return np.append(-e * s * big @ (f - y.ravel()) / norm - deg * e * lam * f, -2 * (deg - 1) * e * lam)

    def jac(t, state):
        e, s = eta(t), np.exp(state[-1])
        out = np.zeros((n * c + 1, n * c + 1))
        out[:-1, :-1] = -e * s * big / norm - deg * e * lam * np.eye(n * c)
        out[:-1, -1] = -e * s * big @ (state[:-1] - y.ravel()) / norm
        return out

    t0 = time.perf_counter()
    sol = solve_ivp(rhs, (0, t_end), np.append(f0.ravel(), 0.0), t_eval=times, method="Radau", jac=jac, **tol)
    t_full = time.perf_counter() - t0
    full = sol.y[:-1].T.reshape(-1, n, c)
    agreement = float(np.max(np.abs(full - eig)) / np.max(np.abs(full)))
    return {
        "n": n,
        "c": c,
        "method": "Radau",
        **tol,
        "eigenbasis_s": t_eig,
        "full_system_s": t_full,
        "speedup": t_full / t_eig,
        "max_relative_difference": agreement,
        "target": "speedup >= 100",
    }


def bench_import() -> dict:
    """Wall time of `python -c "import ntk_l2"` in a fresh process (best of 3), and its output."""
    import subprocess
    import sys

    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", "import ntk_l2"], capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
    return {"import_s": min(runs), "printed": proc.stdout + proc.stderr, "target": "import_s < 10, printed empty"}


def print_discrete_large_t(res: dict) -> None:
    for name in ("k4_eta_l2_1e-3", "l2_0_k4", "k1_l2_1e-3"):
        r = res[name]
        print(
            f"discrete map at t = {res['t']:.0e}, n={res['n']}, c={res['c']}, k={r['degree']}, "
            f"ηλ={r['learning_rate'] * r['l2']:g}: {r['first_call_s']:.3f} s first call, "
            f"{r['warm_call_s']:.3f} s warm (target < 1 s)"
        )


def print_discrete_momentum_large_t(res: dict) -> None:
    for name in MOMENTUM_CASES:
        r = res[name]
        form = f"{'Nesterov' if r['nesterov'] else 'heavy ball'} β={r['momentum']:g}" if r["momentum"] else "β=0"
        print(
            f"momentum map at t = {res['t']:.0e}, n={res['n']}, c={res['c']}, k={r['degree']}, "
            f"ηλ={r['learning_rate'] * r['l2']:g}, {form}: {r['first_call_s']:.3f} s first call, "
            f"{r['warm_call_s']:.3f} s warm (target < 1 s), finite {r['finite']}"
        )


ONLY = {
    "discrete_large_t": (bench_discrete_large_t, print_discrete_large_t),
    "discrete_momentum_large_t": (bench_discrete_momentum_large_t, print_discrete_momentum_large_t),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small sizes (smoke test, not the targets)")
    parser.add_argument("--only", choices=sorted(ONLY), help="run one measurement, update its entry")
    args = parser.parse_args()
    out = Path(__file__).parent / "results" / ("theory_small.json" if args.small else "theory.json")
    if args.only:
        results = json.loads(out.read_text()) if out.exists() else {}
        run, show = ONLY[args.only]
        results[args.only] = run(128 if args.small else 512, 10)
        show(results[args.only])
        save_json(out, results)
        print(f"wrote {out}")
        return
    if args.small:
        results = {
            "closed_form": bench_closed_form(256, 256, 10, 1),
            "discrete": bench_discrete(128, 10, 10_000),
            "ode": bench_ode(32, 4),
        }
    else:
        results = {
            "closed_form": bench_closed_form(2048, 2048, 10, 9),
            "discrete": bench_discrete(512, 10, 100_000),
            "ode": bench_ode(256, 10),
        }
    results["discrete_large_t"] = bench_discrete_large_t(128 if args.small else 512, 10)
    results["discrete_momentum_large_t"] = bench_discrete_momentum_large_t(128 if args.small else 512, 10)
    results["import"] = bench_import()
    cf, dm, od = results["closed_form"], results["discrete"], results["ode"]
    print(
        f"import ntk_l2: {results['import']['import_s']:.2f} s, printed {len(results['import']['printed'])} characters "
        "(target < 10 s, nothing printed)"
    )
    print(
        f"closed form (λ>0) vs nt.predict.gradient_descent_mse (λ=0), n=m={cf['n']}, c={cf['c']}, 100 times: "
        f"{cf['ntk_l2_s']:.3f} s vs {cf['neural_tangents_s']:.3f} s (best of {cf['pairs']} interleaved pairs), "
        f"ratio {cf['ratio']:.3f}, median of the pair ratios {cf['median_pair_ratio']:.3f} (target <= 1.0)"
    )
    print(
        f"discrete map, {dm['steps']} steps at 100 checkpoints, n={dm['n']}, c={dm['c']}: "
        f"{dm['first_call_s']:.3f} s first call, {dm['warm_call_s']:.3f} s warm (target < 2 s)"
    )
    print_discrete_large_t(results["discrete_large_t"])
    print_discrete_momentum_large_t(results["discrete_momentum_large_t"])
    print(
        f"ODE with a schedule, n={od['n']}, c={od['c']}: eigenbasis {od['eigenbasis_s']:.3f} s vs full system "
        f"{od['full_system_s']:.2f} s, speedup {od['speedup']:.0f}x (target >= 100x), "
        f"agreement {od['max_relative_difference']:.1e}"
    )
    save_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
