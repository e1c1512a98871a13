"""Speed of the theory's version of the laws' sweep (`ntk_l2.laws.theory_sweep`: `ntk_l2.laws.sweep`
on `ntk_l2.laws.KernelDynamics`).

    python benchmarks/bench_laws.py [--data-dir DIR]

Target: 30 (λ, η) pairs over up to 10^5 steps in under 30 s for n = 512.
Pairs: 10 values of λ log-spaced over [2e-5, 1e-1] × η ∈ {0.25, 0.5, 1}; each run lasts
2/(ηλ) steps (the paper's budget), from 20 up to 4·10^5 steps (more than the target's
10^5) for the smallest ηλ. 200 records per run,
test accuracy on 1,000 points. Data: 512 real MNIST training samples when --data-dir (or
NTK_L2_MNIST_DIR) holds the files, else 512 embedded digits. Timing includes the kernel's
eigendecomposition and JIT compilation (a first call), excludes computing the NTK.
Writes benchmarks/results/laws.json.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from ntk_l2.common.io import save_json
from ntk_l2.data import datasets as data
from ntk_l2.experiments.laws import law_problem
from ntk_l2.laws import theory_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("NTK_L2_MNIST_DIR"))
    args = parser.parse_args()
    if args.data_dir and Path(args.data_dir).is_dir():
        ds = data.load_mnist(data_dir=args.data_dir, n_train=512, n_test=1000, seed=0)
    else:
        ds = data.load_digits(n_train=512, n_test=1000, seed=0)
    problem = law_problem(ds)
    l2s = np.logspace(math.log10(2e-5), -1, 10)
    lrs = (0.25, 0.5, 1.0)
    t0 = time.perf_counter()
    runs = theory_sweep(problem, l2s, lrs, budget=2.0, budget_step=None, max_steps=10**6)
    elapsed = time.perf_counter() - t0
    steps = [r.steps[-1] for r in runs]
    result = {
        "dataset": ds.name,
        "n_train": 512,
        "n_test": 1000,
        "pairs": len(runs),
        "seconds": elapsed,
        "max_steps": max(steps),
        "total_steps": int(sum(steps)),
        "target": "30 pairs, up to 1e5 steps, < 30 s",
        "passed": elapsed < 30 and len(runs) == 30 and max(steps) >= 10**5,
        "t_star_eta_l2": [r.t_star_eta_l2 for r in runs],
    }
    out = Path(__file__).parent / "results" / "laws.json"
    save_json(out, result)
    print(
        f"theory sweep on {ds.name}, n = 512: {len(runs)} (λ, η) pairs, up to {max(steps)} steps "
        f"({sum(steps)} in all) in {elapsed:.1f} s (target < 30 s); wrote {out}"
    )


if __name__ == "__main__":
    main()
