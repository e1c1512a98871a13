"""Measured figures for the deep-linear properties the tests assert (`derivations/deep_linear.md`).

    python benchmarks/accuracy_deep_linear.py

Prints, and writes to benchmarks/results/deep_linear.json:
  1. gradient flow, no regularization, 10^4 time units: max relative drift of every imbalance;
  2. gradient flow with L2: max relative error of D_l(t) against D_l(0) exp(−2ηλt);
  3. scalar chains at a minimum: top Hessian eigenvalue vs Σ_i Π_{j≠i} w_j² (× mean x²);
  4. noise without L2 (input noise; minibatch SGD on label-noisy data), 16 seeds: end of the
     optimization phase vs imbalance half time, and the final/initial imbalance;
  5. depth 1 with L2 vs the ridge closed form;
  6. wide deep linear network (L = 3) vs the theory at k = L: error against width.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from ntk_l2 import deep_linear as dl  # noqa: E402
from ntk_l2.data.datasets import load_digits  # noqa: E402
from ntk_l2.experiments.deep_linear_wide import wide_deep_linear  # noqa: E402
from test_deep_linear import NETS, _chain_at_minimum, _max_rel_drift  # noqa: E402
from test_deep_linear_phases import DATA, NOISES, SEEDS, W0  # noqa: E402


def main() -> None:
    out: dict = {}
    for name, (w0, (x, y)) in NETS.items():
        run = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=10_000, n_records=40))
        out[f"conservation_drift[{name}]"] = _max_rel_drift(run, lambda t: 1.0)
        eta, lam = 0.5, 2e-3
        run = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=eta, steps=3000, l2=lam, n_records=40))
        out[f"l2_decay_error[{name}]"] = _max_rel_drift(run, lambda t, rate=2 * eta * lam: np.exp(-rate * t))
    errs = []
    for depth in range(1, 6):
        for seed in range(40):
            w, x, y = _chain_at_minimum(depth, seed)
            top = dl.hessian_top_eigenvalue(dl.chain(w), x, y, method="exact")
            errs.append(abs(top / dl.chain_top_eigenvalue_at_minimum(w, float(np.mean(x**2))) - 1))
    out["hessian_top_at_minimum_max_rel_error (200 chains)"] = max(errs)
    x, y = DATA
    for name, cfg in NOISES.items():
        run = dl.gradient_descent(W0, x, y, cfg, seeds=SEEDS)
        t_opt = [dl.optimization_phase_end(run.steps, r) for r in run.loss]
        t_half = [dl.imbalance_half_time(run.steps, r) for r in run.imbalance_norm]
        out[f"phases[{name}]"] = {
            "t_opt_max": max(t_opt),
            "t_half_min": min(t_half),
            "final_over_initial_imbalance_mean": float(np.mean(run.imbalance_norm[:, -1] / run.imbalance_norm[:, 0])),
        }
    x, y = dl.regression_data(40, 5, 3, label_noise=0.5, seed=3, whiten=False)
    w0 = (np.random.default_rng(0).standard_normal((3, 5)),)
    gd = dl.gradient_descent(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=3000, l2=0.05, n_records=5))
    w_star = dl.ridge_solution(x, y, 0.05)
    out["depth1_ridge_rel_error"] = float(np.linalg.norm(gd.weights[0][0, -1] - w_star) / np.linalg.norm(w_star))
    ds = load_digits(128, 256)
    for width in (256, 1024, 2048):
        t0 = time.perf_counter()
        summary, _ = wide_deep_linear(ds, depth=3, width=width, learning_rate=1.0, l2=1e-2, steps=100, seeds=2)
        out[f"wide_L3_median_max_rel_err[width {width}]"] = float(np.median(summary.rel_err_test_max))
        out[f"wide_L3_seconds[width {width}]"] = time.perf_counter() - t0
    for k, v in out.items():
        print(f"{k}: {v}")
    path = Path(__file__).resolve().parent / "results" / "deep_linear.json"
    path.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
