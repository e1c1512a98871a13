"""Scale-invariant networks: the L2 ↔ exponential learning rate equivalence and the equilibrium
angular update (`derivations/scale_invariant.md`, SI1–SI6).

    NTK_L2_MNIST_DIR=... python benchmarks/bench_equilibrium.py [--small]

1. Equivalence (SI1–SI3): `ntk_l2.finite.scale_invariant.compare_trainings` over 1,000 float64
   steps on the batch-normalized CNN (8×8 inputs, 4 channels, depth 2, W_std = 1e3) and the
   layer-normalized FC network (depth 2, width 16), 16 random inputs, readout fixed / excluded from
   L2 / with L2 (the failing case); β = 0 (η = 0.5, ηλ = 1e-3) and β = 0.9 (η = 0.05, ηλ = 1e-4),
   plus β = 0.9 at η = 0.1, ηλ = 1e-3 (the effective learning rate grows ~e^{22}: chaotic, the
   rounding of the two runs separates).
2. Equilibrium (SI4–SI6): the batch-normalized CNN (depth 2, 8 channels, strides 2, NTK
   parameterization, W_std = 1e3, the convolutions rescaled to norm 1 at the start) on 4,000 real
   MNIST images (NTK_L2_MNIST_DIR; the embedded digits otherwise), minibatch SGD of 64 with L2 on
   every parameter, η = 1, β ∈ {0, 0.9}, ηλ ∈ {1e-3, 3e-3, 1e-2}: 5/(ηλ) steps, then a window of
   max(1/(ηλ), 500) steps over which the mean and RMS angular update of each convolution are
   compared with √(2ηλ/(1+β)) (target: the RMS within 10%, SI5 predicts E[Δ²]; the mean, lower by
   Jensen's inequality, is recorded with its own flag). The same at full batch (256 images,
   ηλ = 1e-2, 1,500 steps, window: the last 500): no gradient noise.
Writes benchmarks/results/equilibrium.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import numpy as np

from ntk_l2.common.io import save_json
from ntk_l2.data.datasets import load_mnist_or_digits
from ntk_l2.finite.equilibrium import (
    EquilibriumConfig,
    predicted_angular_update,
    rescale_groups,
    train_equilibrium,
    window_statistics,
)
from ntk_l2.finite.scale_invariant import EquivalenceConfig, compare_trainings
from ntk_l2.networks.batchnorm import convolutional_batchnorm
from ntk_l2.networks.scale_invariant import layernorm_fc, scale_invariant_mask

OUT = Path(__file__).parent / "results" / "equilibrium.json"


def equivalence_rows(steps: int) -> list[dict]:
    """Max relative output difference of the two trainings, per network, readout and momentum."""
    nets = {
        "bn_cnn": (convolutional_batchnorm(2, 4, 10, W_std=1e3), (8, 8, 1)),
        "ln_fc": (layernorm_fc(2, 16, 10), (12,)),
    }
    # (β, η, ηλ, in the target): the last case lets η/‖w‖² grow ~e^{22}, where the dynamics amplify rounding
    cases = [(0.0, 0.5, 1e-3, True), (0.9, 0.05, 1e-4, True), (0.9, 0.1, 1e-3, False)]
    rows = []
    for name, ((init_fn, apply_fn), shape) in nets.items():
        _, params = init_fn(jax.random.PRNGKey(0), (-1, *shape))
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, *shape)), np.eye(10)[rng.integers(0, 10, 16)] - 0.1
        mask = scale_invariant_mask(params)
        for momentum, eta, eta_l2, target in cases:
            for readout in ("fixed", "excluded", "l2"):
                config = EquivalenceConfig(eta, eta_l2 / eta, momentum, steps=steps, readout=readout, record_every=10)
                result = compare_trainings(apply_fn, params, x, y, mask, config)
                half = int(np.searchsorted(result.steps, steps // 2))
                row = {
                    "network": name,
                    "readout": readout,
                    "momentum": momentum,
                    "learning_rate": eta,
                    "eta_l2": eta_l2,
                    "steps": steps,
                    "in_target": target and readout != "l2",
                    "alpha": result.alpha,
                    "final_rate_growth": float(result.alpha ** (-2 * steps)),
                    "max_relative_difference": result.max_relative_difference,
                    "relative_difference_first_half": float(result.relative_difference[: half + 1].max()),
                    "final_state_difference": result.final_state_difference,
                }
                rows.append(row)
                print(
                    f"equivalence {name:6s} {readout:8s} β={momentum} η={eta} ηλ={eta_l2:g}: "
                    f"max rel diff {row['max_relative_difference']:.3g}"
                )
    return rows


def equilibrium_row(data, momentum: float, eta_l2: float, batch: int | None, steps: int, window: int) -> dict:
    """One run of the CNN to 5/(ηλ) + window steps; window statistics of the convolutions' Δ_t."""
    init_fn, apply_fn = convolutional_batchnorm(2, 8, 10, W_std=1e3)
    _, params = init_fn(jax.random.PRNGKey(0), (-1, *data.x_train.shape[1:]))
    mask = scale_invariant_mask(params)
    params = rescale_groups(params, mask, 1.0)
    eta = 1.0
    config = EquilibriumConfig(eta, eta_l2 / eta, momentum, steps=steps, batch_size=batch)
    t0 = time.perf_counter()
    run = train_equilibrium(
        apply_fn, params, data.x_train, data.y_train, mask, config, x_test=data.x_test, labels_test=data.labels_test
    )
    stats = window_statistics(run, steps - window)
    # the first step from which the RMS over the next 100 steps is within 10% in every group
    pred = predicted_angular_update(eta, eta_l2 / eta, momentum)
    rolling = np.sqrt(np.stack([np.convolve(g**2, np.ones(100) / 100, "valid") for g in run.angular_updates.T]))
    inside = np.all(np.abs(rolling / pred - 1) < 0.1, axis=0)
    first = int(np.argmax(inside)) + 100 if inside.any() else None
    row = {
        "momentum": momentum,
        "eta_l2": eta_l2,
        "learning_rate": eta,
        "l2": eta_l2 / eta,
        "batch_size": batch,
        "n_train": len(data.x_train),
        "steps": steps,
        "window": [steps - window, steps],
        "predicted": pred,
        "stationary": stats.stationary,
        "mean": stats.mean.tolist(),
        "rms": stats.rms.tolist(),
        "ratio_mean": stats.ratio_mean.tolist(),
        "ratio_rms": stats.ratio_rms.tolist(),
        "rms_within_10_percent": bool(np.all(np.abs(stats.ratio_rms - 1) < 0.1)),
        "mean_within_10_percent": bool(np.all(np.abs(stats.ratio_mean - 1) < 0.1)),
        "first_step_within_10_percent": first,
        "final_group_norms": run.group_norms[-1].tolist(),
        "final_effective_learning_rates": run.effective_learning_rates[-1].tolist(),
        "final_loss_window": float(run.loss[-window:].mean()),
        "train_accuracy": run.train_accuracy,
        "test_accuracy": run.test_accuracy,
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"equilibrium β={momentum} ηλ={eta_l2:g} batch={batch}: Δ mean {np.round(stats.mean, 4)}, rms "
        f"{np.round(stats.rms, 4)}, √(2ηλ/(1+β)) = {pred:.4f}, ratio(rms) {np.round(stats.ratio_rms, 3)}, "
        f"test acc {run.test_accuracy:.3f}, {row['seconds']:.0f} s"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="a smoke run (short, nothing written)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    equivalence = equivalence_rows(100 if args.small else 1000)
    directory = os.environ.get("NTK_L2_MNIST_DIR")
    data = load_mnist_or_digits(4000, 1000, directory, seed=0, flatten=False)
    full = load_mnist_or_digits(256, 1000, directory, seed=0, flatten=False)
    rates = (1e-2,) if args.small else (1e-3, 3e-3, 1e-2)
    sgd = []
    for momentum in (0.0, 0.9):
        for eta_l2 in rates:
            window = 50 if args.small else max(int(round(1 / eta_l2)), 500)
            steps = (100 if args.small else int(round(5 / eta_l2))) + window
            sgd.append(equilibrium_row(data, momentum, eta_l2, 64, steps, window))
    full_batch = [
        equilibrium_row(full, momentum, 1e-2, None, 150 if args.small else 1500, 50 if args.small else 500)
        for momentum in (0.0, 0.9)
    ]
    result = {
        "dataset": data.name,
        "equivalence": equivalence,
        "equilibrium_sgd": sgd,
        "equilibrium_full_batch": full_batch,
        "target": "equivalence <= 1e-8 (readout fixed/excluded); SGD RMS angular update within 10% of sqrt(2ηλ/(1+β))",
        "passed": all(r["max_relative_difference"] <= 1e-8 for r in equivalence if r["in_target"])
        and all(r["rms_within_10_percent"] for r in sgd),
        "seconds": time.perf_counter() - t0,
    }
    if args.small:
        print("small run: nothing written")
        return
    save_json(OUT, result)
    print(f"wrote {OUT} in {result['seconds']:.0f} s; passed: {result['passed']}")


if __name__ == "__main__":
    main()
