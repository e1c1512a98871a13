"""Degree 0 at finite width: scale-invariant networks with L2 against the growing-kernel discrete map.

    NTK_L2_MNIST_DIR=/path/to/mnist python benchmarks/bench_degree_zero.py [--data-dir DIR] [--seeds 3]

Network: `ntk_l2.networks.degree_zero.degree_zero_network` (Dense(n) → ReLU → Dense(n) → LayerNorm →
fixed readout σ_r = 0.25, no biases; degree 0, `derivations/degree_zero.md` Z1–Z2), widths 256, 512,
1024, 2048, seeds 0–2 (each draws its weights and its readout). Data: 256 real MNIST training and
500 test images, flattened (embedded digits without the files). Full-batch gradient descent with
η = 0.2·N/μ_max and ηλ = 5·10⁻³ (Z4) for 160 steps: the top mode's drive grows from 0.2 to 1.0,
inside the stability horizon (drive 2, step 229). The theory is the degree-0 discrete map
(`ntk_l2.theory.discrete.gradient_descent_mse_l2_discrete`, k = 0) from each network's own f_0
(`ntk_l2.experiments.degree_zero`).

Target: at width 2048 the median over seeds of the max-over-time relative error of the test
outputs ≤ 0.1, falling with width; test accuracy well above chance (10%).
Writes benchmarks/results/degree_zero.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ntk_l2.common.io import save_json
from ntk_l2.data.datasets import load_mnist_or_digits
from ntk_l2.experiments.degree_zero import DegreeZeroConfig, run_degree_zero

TARGET = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("NTK_L2_MNIST_DIR"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--widths",
        default=None,
        help="comma-separated widths beyond the target's (e.g. 4096): results go to degree_zero_<widths>.json",
    )
    args = parser.parse_args()
    ds = load_mnist_or_digits(256, 500, args.data_dir, seed=0, flatten=True)
    cfg = DegreeZeroConfig(seeds=args.seeds)
    name = "degree_zero.json"
    if args.widths:
        widths = tuple(int(w) for w in args.widths.split(","))
        cfg = DegreeZeroConfig(seeds=args.seeds, widths=widths)
        name = f"degree_zero_{'_'.join(map(str, widths))}.json"
    start = time.perf_counter()
    result, _ = run_degree_zero(ds, cfg, progress=True)
    elapsed = time.perf_counter() - start
    medians = result.median_rel_err_test_max
    last = result.widths[str(cfg.widths[-1])]
    acc_net = [row[-1] for row in last.acc_test_finite]
    acc_theory = [row[-1] for row in last.acc_test_theory]
    falling = all(b < a for a, b in zip(medians, medians[1:], strict=False))
    out = {
        **result.to_json(),
        "seconds": elapsed,
        "target": f"median over seeds of the max-over-time test error <= {TARGET} at width {cfg.widths[-1]}, falling",
        "final_accuracy_finite": acc_net,
        "final_accuracy_theory": acc_theory,
        "falling_with_width": falling,
        "passed": medians[-1] <= TARGET and falling,
    }
    path = save_json(Path(__file__).parent / "results" / name, out)
    print(f"η = {result.learning_rate:.6g}, λ = {result.l2:.6g}, steps {cfg.steps}, horizon {result.horizon}")
    for w, m in zip(cfg.widths, medians, strict=True):
        r = result.widths[str(w)]
        print(f"width {w}: median {m:.4f}, per seed {[round(v, 4) for v in r.rel_err_test_max]}")
    print(f"exponent {result.width_exponent:.3f}; accuracy at {cfg.widths[-1]}: {acc_net} vs theory {acc_theory}")
    print(f"passed: {out['passed']} ({elapsed:.0f} s) -> {path}")


if __name__ == "__main__":
    main()
