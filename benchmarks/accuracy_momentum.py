"""Theory vs finite width with momentum and minibatch SGD, on real MNIST.

    NTK_L2_MNIST_DIR=/path/to/mnist python benchmarks/accuracy_momentum.py

512 MNIST training images, 1,000 test images (the test-split protocol when only the
t10k files are at hand), fully connected, 3 bias-free ReLU hidden layers (degree
k = 4), λ = 1e-3, 3 seeds, each seed's theory from its own f_0 (`ntk_l2.experiments.compare`):

  plain       gradient descent, η = η_0 = `stable_learning_rate` (half the D5 limit), 2/(ηλ) steps;
  momentum    heavy ball β = 0.9 with the effective step η/(1 − β) = η_0/4, 2(1 − β)/(ηλ) steps
              (the same span of L2 decay as plain), against the discrete momentum map (M1–M11);
  sgd         minibatch SGD, B = 128, the plain η and steps, against the full-batch map: the
              theory's mean over batch draws (`derivations/sgd.md`, S4);
  sgd_momentum  B = 128 with the momentum protocol, against the full-batch momentum map;
  momentum_full_step  width 256 only: β = 0.9 at the plain effective step, η = (1 − β)η_0 (about half
              the momentum stability limit, `--lr auto`), 154 steps — why the momentum protocol
              takes a quarter of it.

Prints every number and writes benchmarks/results/momentum.json (atomically). Each width
of each protocol is a resumable run in out/benchmarks/momentum/<protocol>/runs: a
second call reads finished runs back instead of training again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ntk_l2.common.io import save_json
from ntk_l2.data.datasets import load_mnist
from ntk_l2.experiments.compare import CompareConfig, infinite_width_kernels, run_comparison
from ntk_l2.theory import stable_learning_rate

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "out" / "benchmarks" / "momentum"
N_TRAIN, N_TEST, DEPTH, L2, SEEDS, BETA, BATCH = 512, 1000, 3, 1e-3, 3, 0.9, 128
WIDTHS = (256, 1024, 2048)
# Requirements on the momentum protocol at width 2048 (median over seeds).
BOUND_ERROR, EXPONENT_RANGE, BOUND_ACC_GAP, MIN_BEST_ACC = 0.12, (-0.65, -0.3), 0.015, 0.30


def protocols(eta_plain: float) -> dict[str, CompareConfig]:
    """The four compared protocols (see the module docstring)."""
    eta_mom = (1.0 - BETA) * eta_plain / 4.0
    steps_plain = int(round(2.0 / (eta_plain * L2)))
    steps_mom = int(round(2.0 * (1.0 - BETA) / (eta_mom * L2)))
    common = dict(depth=DEPTH, l2=L2, seeds=SEEDS, n_records=40)
    plain = dict(learning_rate=eta_plain, steps=steps_plain)
    mom = dict(learning_rate=eta_mom, steps=steps_mom, momentum=BETA)
    return {
        "plain": CompareConfig(widths=WIDTHS, **common, **plain),
        "momentum": CompareConfig(widths=WIDTHS, **common, **mom),
        "sgd": CompareConfig(widths=WIDTHS[-1:], batch_size=BATCH, **common, **plain),
        "sgd_momentum": CompareConfig(widths=WIDTHS[-1:], batch_size=BATCH, **common, **mom),
        "momentum_full_step": CompareConfig(
            widths=WIDTHS[:1], **common, momentum=BETA, learning_rate=(1.0 - BETA) * eta_plain, steps=steps_plain
        ),
    }


def figures(summary: dict) -> dict:
    """The reported numbers of one protocol: errors per width, exponent, accuracies at the widest."""
    widths = [int(w) for w in summary["widths"]]
    top = summary["widths"][str(widths[-1])]
    fin, th = np.asarray(top["acc_test_finite"], float), np.asarray(top["acc_test_theory"], float)
    out = {
        "config": summary["config"],
        "median_rel_err_test_max": dict(zip(map(str, widths), summary["median_rel_err_test_max"], strict=False)),
        "rel_err_test_max_per_seed": {str(w): summary["widths"][str(w)]["rel_err_test_max"] for w in widths},
        "width_exponent": summary["width_exponent"],
        "best_test_acc_finite": float(np.nanmax(fin)),
        "best_test_acc_theory": float(np.nanmax(th)),
        "best_test_acc_gap": float(abs(np.nanmax(fin) - np.nanmax(th))),
        "max_test_acc_gap_over_time": float(np.nanmax(np.abs(fin - th))),
        "diverged": any(any(summary["widths"][str(w)]["diverged"]) for w in widths),
        "continuous_theory": summary["continuous_theory"],
    }
    if "rel_err_test_max_continuous" in top:
        out["median_rel_err_test_max_continuous"] = float(np.median(top["rel_err_test_max_continuous"]))
    return out


def checks(momentum: dict) -> dict:
    """The momentum protocol's requirements, each with its measured value."""
    err = momentum["median_rel_err_test_max"][str(WIDTHS[-1])]
    p = momentum["width_exponent"]
    best = min(momentum["best_test_acc_finite"], momentum["best_test_acc_theory"])
    return {
        "error_at_2048": {"value": err, "bound": BOUND_ERROR, "passed": err <= BOUND_ERROR},
        "width_exponent": {
            "value": p,
            "range": list(EXPONENT_RANGE),
            "passed": EXPONENT_RANGE[0] <= p <= EXPONENT_RANGE[1],
        },
        "learning_regime": {"value": best, "bound": MIN_BEST_ACC, "passed": best >= MIN_BEST_ACC},
        "best_test_acc_gap": {
            "value": momentum["best_test_acc_gap"],
            "bound": BOUND_ACC_GAP,
            "passed": momentum["best_test_acc_gap"] <= BOUND_ACC_GAP,
        },
        "max_test_acc_gap_over_time": {
            "value": momentum["max_test_acc_gap_over_time"],
            "bound": BOUND_ACC_GAP,
            "passed": momentum["max_test_acc_gap_over_time"] <= BOUND_ACC_GAP,
        },
    }


def show(name: str, fig: dict) -> None:
    cfg = fig["config"]
    print(
        f"{name}: η = {cfg['learning_rate']:.6g}, β = {cfg['momentum']:g}, batch = {cfg['batch_size'] or 'full'}, "
        f"{cfg['steps']} steps"
    )
    for w, err in fig["median_rel_err_test_max"].items():
        print(
            f"  width {w:>5}: median max-over-time rel. error of fx_test {err:.4f} "
            f"(per seed {', '.join(f'{e:.4f}' for e in fig['rel_err_test_max_per_seed'][w])})"
        )
    if fig["width_exponent"] is not None:
        print(f"  width exponent {fig['width_exponent']:.3f}")
    if "median_rel_err_test_max_continuous" in fig:
        print(
            f"  vs the continuous theory ({fig['continuous_theory']}): {fig['median_rel_err_test_max_continuous']:.4f}"
        )
    print(
        f"  best test accuracy finite {100 * fig['best_test_acc_finite']:.2f}%, theory "
        f"{100 * fig['best_test_acc_theory']:.2f}% (gap {100 * fig['best_test_acc_gap']:.2f} points; "
        f"max gap over time {100 * fig['max_test_acc_gap_over_time']:.2f} points)"
    )


def main() -> None:
    # $NTK_L2_MNIST_DIR, else load_mnist's default ($NTK_L2_DATA/mnist or ~/.cache/ntk_l2/mnist)
    ds = load_mnist(n_train=N_TRAIN, n_test=N_TEST, data_dir=os.environ.get("NTK_L2_MNIST_DIR"), seed=0)
    probe = CompareConfig(depth=DEPTH, l2=L2)
    eta_plain = stable_learning_rate(infinite_width_kernels(ds, probe)["train"], ds.y_train.size, L2, DEPTH + 1)
    results: dict = {
        "dataset": ds.name,
        "n_train": N_TRAIN,
        "n_test": N_TEST,
        "depth": DEPTH,
        "l2": L2,
        "seeds": SEEDS,
        "eta_plain": eta_plain,
        "protocols": {},
    }
    for name, cfg in protocols(eta_plain).items():
        summary = run_comparison(ds, cfg, progress=sys.stderr.isatty(), out_dir=RUNS / name)
        results["protocols"][name] = fig = figures(summary.to_json())
        show(name, fig)
    results["checks_momentum"] = checks(results["protocols"]["momentum"])
    for key, check in results["checks_momentum"].items():
        limit = check.get("bound", check.get("range"))
        print(f"momentum {key}: {check['value']:.4f} (bound {limit}) {'passed' if check['passed'] else 'NOT MET'}")
    out = Path(__file__).parent / "results" / "momentum.json"
    save_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
