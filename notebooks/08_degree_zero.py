# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scale-invariant networks: L2 as an effective learning rate
#
# A network Dense → ReLU → Dense → LayerNorm → fixed random readout is invariant under rescaling
# any of its trainable weight matrices: it is homogeneous of degree 0
# (`derivations/degree_zero.md`, Z1). Weight decay then cannot shrink the outputs; it shrinks the
# weights, so the kernel grows as $(1-\eta\lambda)^{-2s}$ and the effective learning rate with it
# (Z3). The degree-0 discrete map predicts the whole run, until the growing drive reaches the
# stability horizon (Z4). Here finite networks of growing width are trained with full-batch
# gradient descent and L2 and compared with the map started from each network's own initial
# outputs. Data: MNIST from `$NTK_L2_MNIST_DIR` (the committed outputs are a run on MNIST),
# embedded digits otherwise. `NTK_L2_SMALL=1` runs a reduced version (CI).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ntk_l2.data.datasets import load_mnist_or_digits
from ntk_l2.experiments.degree_zero import DegreeZeroConfig, drive_at, run_degree_zero

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
N_TRAIN, N_TEST = (64, 100) if SMALL else (256, 500)
WIDTHS = (64, 256) if SMALL else (256, 512, 1024, 2048)
SEEDS = 1 if SMALL else 2
OUT = Path("../out/notebooks/08" + ("_small" if SMALL else ""))
OUT.mkdir(parents=True, exist_ok=True)

ds = load_mnist_or_digits(N_TRAIN, N_TEST, os.environ.get("NTK_L2_MNIST_DIR"), seed=0, flatten=True)
cfg = DegreeZeroConfig(widths=WIDTHS, seeds=SEEDS)
print(ds.name, ds.x_train.shape, cfg)

# %% [markdown]
# ## Train the networks and run the map
#
# η is set so that the top mode's drive $\eta\mu_{max}/N$ starts at 0.2; with $\eta\lambda = 5\cdot10^{-3}$
# it grows to about 1 by step 160, inside the stability horizon (drive 2).

# %%
result, arrays = run_degree_zero(ds, cfg, progress=True)
norm = float(ds.y_train.size)
print(
    f"η = {result.learning_rate:.4g}, λ = {result.l2:.4g}, μ_max = {result.mu_max:.4g}, horizon = step {result.horizon}"
)
for w in WIDTHS:
    r = result.widths[str(w)]
    print(
        f"width {w}: median max error {r.median_rel_err_test_max:.3f} (seeds {np.round(r.rel_err_test_max, 3)}), "
        f"final accuracy network {np.round([a[-1] for a in r.acc_test_finite], 3)}, "
        f"theory {np.round([a[-1] for a in r.acc_test_theory], 3)}, kernel growth {np.round(r.kernel_ratio, 3)} "
        f"(theory {r.kernel_ratio_theory:.3f})"
    )
print("width exponent of the error:", result.width_exponent)

# %% [markdown]
# ## Outputs over time
#
# Two test outputs of seed 0 at each width (solid) against the degree-0 map from the same
# initial outputs (dashed), and the drive of the top mode.

# %%
steps = arrays[WIDTHS[0]]["steps"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for i, w in enumerate(WIDTHS):
    a = arrays[w]
    color = f"C{i}"
    axes[0].plot(steps, a["fx_test"][0, :, 0, 0], color=color, label=f"width {w}")
    axes[0].plot(steps, a["fx_test_theory"][0, :, 0, 0], color=color, ls="--")
    axes[1].plot(steps, a["fx_test"][0, :, 1, ds.labels_test[1]], color=color)
    axes[1].plot(steps, a["fx_test_theory"][0, :, 1, ds.labels_test[1]], color=color, ls="--")
axes[0].set(title="test point 0, output 0", xlabel="step")
axes[1].set(title="test point 1, output of its label", xlabel="step")
axes[0].legend(fontsize=8)
s = np.arange(result.horizon + 40)
axes[2].plot(s, drive_at(s, result.learning_rate, result.l2, result.mu_max, norm))
axes[2].axhline(2.0, color="k", lw=0.8)
axes[2].axvline(cfg.steps, color="gray", ls=":", label="end of the run")
axes[2].axvline(result.horizon, color="r", ls=":", label="stability horizon")
axes[2].set(title=r"drive $\beta_s\mu_{max}$ (Z4)", xlabel="step", yscale="log")
axes[2].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "outputs.png", dpi=120)

# %% [markdown]
# ## Error against width, accuracy
#
# The median over seeds of the max-over-time relative error of the test outputs falls as
# $n^{-1/2}$: the initial kernel's finite-width deviation, propagated through the run (Z5).

# %%
medians = np.asarray(result.median_rel_err_test_max)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for i, w in enumerate(WIDTHS):
    r = result.widths[str(w)]
    axes[0].plot(r.steps, np.median(np.asarray(r.rel_err_test), axis=0), color=f"C{i}", label=f"width {w}")
axes[0].set(title="relative error of the test outputs", xlabel="step")
axes[0].legend(fontsize=8)
widths = np.asarray(WIDTHS, float)
axes[1].loglog(widths, medians, "o-", label="median max error")
axes[1].loglog(widths, medians[0] * (widths / widths[0]) ** -0.5, "k:", label=r"$\propto n^{-1/2}$")
axes[1].axhline(0.1, color="r", lw=0.8, label="target 0.1")
axes[1].set(title="error against width", xlabel="width")
axes[1].legend(fontsize=8)
last = result.widths[str(WIDTHS[-1])]
axes[2].plot(last.steps, np.mean(np.asarray(last.acc_test_finite), axis=0), label=f"network, width {WIDTHS[-1]}")
axes[2].plot(last.steps, np.mean(np.asarray(last.acc_test_theory), axis=0), "--", label="degree-0 map")
axes[2].axhline(0.1, color="gray", lw=0.8, label="chance")
axes[2].set(title="test accuracy (mean over seeds)", xlabel="step", ylim=(0, 1))
axes[2].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "error_width.png", dpi=120)
