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
# # Deep linear networks: layer imbalance, the two phases of training, and flat minima
#
# Ginsburg (2020) explains what L2 does where everything can be computed: deep linear
# networks y = W_L ⋯ W_1 x. Training has two phases. In the *optimization phase* the loss
# falls to a manifold of minima. In the *regularization phase* the trajectory slides along
# that manifold toward flatter points while the *layer imbalance*
# D_l = W_{l+1}ᵀW_{l+1} − W_l W_lᵀ shrinks; weight decay, input-noise augmentation and SGD
# noise all act alike there. Formulas: `derivations/deep_linear.md` (DL0–DL9).
# `NTK_L2_SMALL=1` runs a reduced version (CI).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from ntk_l2 import deep_linear as dl
from ntk_l2.data.datasets import load_digits
from ntk_l2.experiments.deep_linear_wide import wide_deep_linear

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
STEPS = 2_000 if SMALL else 20_000
SEEDS = tuple(range(2 if SMALL else 16))
# A scalar chain of depth 3, far from balance (w² = 4, 0.25, 1), fitting y = 2x + noise (64 samples, label noise 0.5).
x, y = dl.regression_data(64, 1, 1, teacher=[[2.0]], label_noise=0.5, seed=0)
w0 = dl.chain([2.0, 0.5, 1.0])
m = float(np.mean(x**2))
print(f"minimum loss {dl.min_loss(x, y):.4f}, least-squares product {dl.least_squares_product(x, y)[0, 0]:.4f}")

# %% [markdown]
# ## Without regularization: gradient flow conserves the imbalance (DL1)
#
# Under gradient flow on any loss of the product alone, every D_l is conserved, so the
# network converges to *the* minimum its initial imbalance selects. Integrated with
# Radau IIA at rtol 1e-12 over 10⁴ time units:

# %%
flow = dl.gradient_flow(w0, x, y, dl.DeepLinearConfig(learning_rate=1.0, steps=10_000, n_records=60))
pair = dl.pairwise_imbalance(dl.chain_values(flow.weights)[0])  # (record, L, L)
drift = np.max(np.abs(pair - pair[0]) / np.abs(pair[0] + np.eye(3)))
print(f"loss {flow.loss[0, 0]:.4f} -> {flow.loss[0, -1]:.6f}; max relative drift of w_i² − w_j²: {drift:.1e}")

# %% [markdown]
# ## The two phases with noise
#
# Gradient descent with noise keeps the minibatch residual ρ non-zero at the minimum, and
# each step contracts the imbalance by η²ρ²P²/(w_i²w_j²) (DL3). The loss reaches its floor
# in a few steps; the imbalance shrinks over thousands. Compared at η = 0.1: no
# regularization, L2 (λ = 1e-3), Gaussian input noise (σ = 0.5) and minibatch SGD (B = 16),
# 16 noise seeds; the three strengths are chosen so that each halves the imbalance in a few
# thousand steps.

# %%
ETA = 0.1
configs = {
    "none (GD)": dl.DeepLinearConfig(learning_rate=ETA, steps=STEPS, n_records=100),
    "L2, λ = 1e-3": dl.DeepLinearConfig(learning_rate=ETA, steps=STEPS, l2=1e-3, n_records=100),
    "input noise, σ = 0.5": dl.DeepLinearConfig(learning_rate=ETA, steps=STEPS, input_noise=0.5, n_records=100),
    "minibatch SGD, B = 16": dl.DeepLinearConfig(learning_rate=ETA, steps=STEPS, batch_size=16, n_records=100),
}
runs = {name: dl.gradient_descent(w0, x, y, cfg, seeds=SEEDS) for name, cfg in configs.items()}

fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
for i, (name, run) in enumerate(runs.items()):
    s = np.maximum(run.steps, 1)
    axes[0].loglog(s, run.loss.mean(0) - dl.min_loss(x, y) + 1e-12, color=f"C{i}", label=name)
    axes[1].semilogx(s, run.imbalance_norm.mean(0), color=f"C{i}", label=name)
    ends = [dl.optimization_phase_end(run.steps, r) for r in run.loss]
    axes[1].axvline(max(np.nanmedian(ends), 1), color=f"C{i}", ls=":", lw=1)
lam = configs["L2, λ = 1e-3"].l2
axes[1].semilogx(
    s,
    runs["none (GD)"].imbalance_norm[0, 0] * np.exp(-2 * ETA * lam * run.steps),
    "k--",
    lw=1,
    label="exp(−2ηλt) (gradient flow, DL2)",
)
axes[0].set(xlabel="step", ylabel="L − min L", title="loss above its minimum (mean over seeds)")
axes[1].set(xlabel="step", ylabel="‖D‖", title="layer imbalance (dotted: end of the optimization phase)")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=7)
# flatness along the way
for i, (name, run) in enumerate(runs.items()):
    picks = np.unique(np.round(np.linspace(0, len(run.steps) - 1, 15)).astype(int))
    top = [
        np.mean([dl.hessian_top_eigenvalue(tuple(w[k, r] for w in run.weights), x, y) for k in range(len(SEEDS))])
        for r in picks
    ]
    axes[2].semilogx(np.maximum(run.steps[picks], 1), top, "o-", color=f"C{i}", ms=3, label=name)
axes[2].set(xlabel="step", ylabel="top Hessian eigenvalue", title="sharpness (mean over seeds)")
plt.show()

for name, run in runs.items():
    t_opt = np.median([dl.optimization_phase_end(run.steps, r) for r in run.loss])
    halves = [dl.imbalance_half_time(run.steps, r) for r in run.imbalance_norm]
    half = f"{np.median(halves):6.0f}" if np.all(np.isfinite(halves)) else " never"
    ratio = np.mean(run.imbalance_norm[:, -1] / run.imbalance_norm[:, 0])
    print(
        f"{name:22s} optimization phase ends at step {t_opt:4.0f}; imbalance halved at step {half} (median); "
        f"final/initial imbalance {ratio:.3f}"
    )

# %% [markdown]
# Input noise and SGD noise shrink the imbalance only *after* the loss has reached its
# floor — the regularization phase — and L2 does the same on the same time scale, as
# exp(−2ηλt) (DL2; the dashed line is gradient flow's law). Without noise the imbalance
# freezes once the residual vanishes.

# %% [markdown]
# ## Flatness against imbalance
#
# At a minimum of a scalar chain the Hessian is rank one, with top eigenvalue
# m Σ_i Π_{j≠i} w_j² (DL4), smallest at the balanced point |w_i| = |p|^{1/L}. For depth 2 on
# the manifold w_1 w_2 = p this is m·√(D² + 4p²) with D = w_2² − w_1²: sharpness grows
# with imbalance. Below, the minima of depth 2 and the SGD trajectories of depth 3 (points
# after the optimization phase) against that law.

# %%
p = dl.least_squares_product(x, y)[0, 0]
fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
points = [np.array([a, p / a]) for a in (0.5, 0.8, 1.2, 1.5, 2.5)]
for w in points:  # exact Hessian at minima of the depth-2 chain
    axes[0].plot(w[1] ** 2 - w[0] ** 2, dl.hessian_top_eigenvalue(dl.chain(w), x, y), "o")
d_grid = np.linspace(-1.1, 1.1, 200) * max(abs(w[1] ** 2 - w[0] ** 2) for w in points)
axes[0].plot(d_grid, m * np.sqrt(d_grid**2 + 4 * p**2), "k-", lw=1, label="depth 2: m√(D² + 4p²)")
axes[0].set(xlabel="imbalance D = w₂² − w₁²", ylabel="top Hessian eigenvalue", title="depth 2: minima")
axes[0].legend(fontsize=8)
run = runs["minibatch SGD, B = 16"]
late = run.steps >= 100
vals = dl.chain_values(run.weights)[:, late]  # (seed, record, L)
top_law = dl.chain_top_eigenvalue_at_minimum(vals, m)
axes[1].scatter(
    run.imbalance_norm[:, late].ravel(), top_law.ravel(), s=4, alpha=0.4, label="SGD, after the optimization phase"
)
bal = m * 3 * abs(p) ** (4 / 3)
axes[1].axhline(bal, color="k", ls="--", lw=1, label="balanced minimum")
axes[1].set(xlabel="‖D‖", ylabel="m Σ_i Π_{j≠i} w_j²", title="depth 3, SGD: flatter as the imbalance shrinks")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Matrix layers
#
# The same with matrix layers, widths 4 → 8 → 8 → 3, SGD with batch 4 on a linear teacher
# with label noise: the imbalance norm ‖D‖ shrinks after the loss has converged, and the
# top Hessian eigenvalue (exact Hessian: 120 weights) with it.

# %%
net = dl.DeepLinear((4, 8, 8, 3))
xm, ym = dl.regression_data(64, 4, 3, label_noise=0.5, seed=1)
wm = tuple(w * 2.0 ** (i - 2) for i, w in enumerate(net.init(0), start=1))
mat = dl.gradient_descent(
    wm, xm, ym, dl.DeepLinearConfig(learning_rate=0.05, steps=STEPS, batch_size=4, n_records=60), seeds=SEEDS[:4]
)
picks = np.unique(np.round(np.linspace(0, len(mat.steps) - 1, 12)).astype(int))
top = [
    np.mean([dl.hessian_top_eigenvalue(tuple(w[k, r] for w in mat.weights), xm, ym) for k in range(mat.loss.shape[0])])
    for r in picks
]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), constrained_layout=True)
s = np.maximum(mat.steps, 1)
axes[0].loglog(s, mat.loss.mean(0) - dl.min_loss(xm, ym) + 1e-12)
axes[0].set(xlabel="step", ylabel="L − min L", title="loss above its minimum")
axes[1].semilogx(s, mat.imbalance_norm.mean(0))
axes[1].set(xlabel="step", ylabel="‖D‖", title="layer imbalance")
axes[2].semilogx(np.maximum(mat.steps[picks], 1), top, "o-")
axes[2].set(xlabel="step", ylabel="top Hessian eigenvalue", title="sharpness")
plt.show()

# %% [markdown]
# ## The wide limit: degree k = L
#
# A deep linear network is positively homogeneous of degree L. Wide, in the NTK
# parameterization and trained with L2, its outputs follow the theory engine's discrete map
# at k = L: here L = 3 on the embedded digits (λ = 1e-2, η = 1, 100 steps), two widths.

# %%
ds = load_digits(128, 256)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
for i, width in enumerate((128, 512) if SMALL else (256, 1024, 2048)):
    summary, arrays = wide_deep_linear(ds, depth=3, width=width, learning_rate=1.0, l2=1e-2, steps=100, seeds=2)
    axes[0].plot(summary.steps, summary.rel_err_test_mean, "o-", color=f"C{i}", label=f"width {width}")
    print(
        f"width {width:5d} (degree k = {summary.degree}): max-over-time relative error of the test outputs "
        f"(median over seeds) {np.median(summary.rel_err_test_max):.3f}"
    )
axes[0].set(xlabel="step", ylabel="‖f − f_theory‖ / ‖f_theory‖ (test)", title="finite width vs theory at k = L = 3")
axes[0].legend(fontsize=8)
fin, th = arrays["fx_test"][0, -1].ravel(), arrays["fx_test_theory_discrete"][0, -1].ravel()
axes[1].plot(th, fin, ".", ms=2)
axes[1].plot([th.min(), th.max()], [th.min(), th.max()], "k--", lw=1)
axes[1].set(xlabel="theory (k = 3)", ylabel=f"finite width {width}", title=f"test outputs at step {summary.steps[-1]}")
plt.show()
