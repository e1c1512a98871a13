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
# After a normalization (BatchNorm, LayerNorm) the output does not change when the weights of the
# layer before it are scaled. L2 on those weights cannot regularize the function; it shrinks ‖w‖
# and so raises the effective learning rate η/‖w‖² (`derivations/scale_invariant.md`).
#
# 1. **The equivalence** (Li & Arora 2019; SI1–SI3): gradient descent with L2 is, exactly,
#    gradient descent without L2 at the growing rate η̃_s = ηα^{−2s−1} (α = 1 − ηλ; with momentum
#    the root of x² − (1 + β − ηλ)x + β), as long as the readout is fixed or left out of L2.
# 2. **The equilibrium** (Wan et al. 2020; SI4–SI6): under SGD the norm settles where the
#    angular update per step is √(2ηλ/(1+β)), after ~1/(ηλ) steps.
#
# Data: MNIST from `$NTK_L2_MNIST_DIR` (the committed outputs are a run on MNIST), embedded digits
# otherwise. `NTK_L2_SMALL=1` runs a reduced version (CI).

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from ntk_l2.data.datasets import load_mnist_or_digits
from ntk_l2.finite.equilibrium import (
    EquilibriumConfig,
    predicted_angular_update,
    rescale_groups,
    train_equilibrium,
    window_statistics,
)
from ntk_l2.finite.scale_invariant import EquivalenceConfig, compare_trainings, exponential_learning_rates
from ntk_l2.networks.batchnorm import convolutional_batchnorm
from ntk_l2.networks.scale_invariant import layernorm_fc, scale_invariance_error, scale_invariant_mask

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
EQ_STEPS = 300 if SMALL else 1000  # equivalence runs (float64)
ETA_L2 = (1e-2,) if SMALL else (1e-3, 3e-3, 1e-2)  # equilibrium: the values of ηλ
N_TRAIN, N_FULL, N_TEST = (1000, 128, 500) if SMALL else (4000, 256, 1000)
CHANNELS, BATCH, LR = (4, 32, 1.0) if SMALL else (8, 64, 1.0)

# %% [markdown]
# ## The networks
#
# The batch-normalized CNN (`ntk_l2.networks.batchnorm.convolutional_batchnorm`: conv → BN → ReLU,
# twice, then a dense readout) and the layer-normalized fully connected network
# (`ntk_l2.networks.scale_invariant.layernorm_fc`). `scale_invariant_mask` marks every weight but
# the readout's; `scale_invariance_error` is max_c ‖f(cθ_G) − f(θ)‖/‖f(θ)‖ over each group G (and
# all at once). BatchNorm's ε = 1e-5 breaks the invariance at ~ε/Var(h): W_std = 1e3 (NTK
# parameterization) scales the pre-activations, not the parameters, and makes it negligible.

# %%
rng = np.random.default_rng(0)
x_small = rng.normal(size=(16, 8, 8, 1))
y_small = np.eye(10)[rng.integers(0, 10, 16)] - 0.1
networks = {
    "BN CNN": convolutional_batchnorm(2, 4, 10, W_std=1e3),
    "LN FC": layernorm_fc(2, 16, 10),
}
params0 = {}
with jax.experimental.enable_x64():
    for name, (init_fn, apply_fn) in networks.items():
        _, params0[name] = init_fn(jax.random.PRNGKey(0), (-1, 8, 8, 1))
        mask = scale_invariant_mask(params0[name])
        readout = jax.tree_util.tree_map(lambda m: not m, mask)
        print(
            f"{name}: scale-invariance error of the hidden layers "
            f"{scale_invariance_error(apply_fn, params0[name], x_small, mask):.1e}; "
            f"f(2θ_readout)/f(θ) − 1 = {scale_invariance_error(apply_fn, params0[name], x_small, readout, (2.0,)):.3f}"
        )
_, default_params = convolutional_batchnorm(2, 4, 10)[0](jax.random.PRNGKey(0), (-1, 8, 8, 1))
default_error = scale_invariance_error(
    networks["BN CNN"][1], default_params, x_small, scale_invariant_mask(default_params)
)
print(f"BN CNN with the default W_std = √2: error {default_error:.1e} (float32 and ε)")

# %% [markdown]
# ## 1. The equivalence: L2 = an exponentially growing learning rate
#
# Both trainings run in float64 on 16 random 8×8 inputs, full batch, `EQ_STEPS` steps: with L2 at
# rate η, and without L2 at η̃_s = ηα^{−2s−1}, started (for β > 0) from the velocity
# v̂_0 = −(1 − α)θ_0/(αη) (SI2). β = 0: η = 0.5, ηλ = 1e-3; β = 0.9: η = 0.05, ηλ = 1e-4 (then
# 1 − α ≈ ηλ/(1 − β) = 1e-3, the same growth e^{2} of η̃ over 1,000 steps). The readout is left out
# of L2 ("excluded", trained at η in both runs), fixed, or — the failing case — under L2 (SI3).

# %%
CASES = {0.0: (0.5, 1e-3), 0.9: (0.05, 1e-4)}
equivalence = {}
for name, (_, apply_fn) in networks.items():
    mask = scale_invariant_mask(params0[name])
    for beta, (eta, eta_l2) in CASES.items():
        for readout in ("excluded", "fixed", "l2"):
            config = EquivalenceConfig(eta, eta_l2 / eta, beta, steps=EQ_STEPS, readout=readout)
            equivalence[name, beta, readout] = compare_trainings(
                apply_fn, params0[name], x_small, y_small, mask, config
            )
print(f"{'network':8s} {'β':>4s} {'readout':9s} {'max rel. output difference':>28s}")
for (name, beta, readout), result in equivalence.items():
    print(f"{name:8s} {beta:4.1f} {readout:9s} {result.max_relative_difference:28.2e}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), constrained_layout=True)
res = equivalence["BN CNN", 0.0, "excluded"]
for k, color in zip(range(3), ("C0", "C1", "C2"), strict=True):
    axes[0].plot(
        res.steps, res.outputs_l2[:, k, 0], color=color, lw=3, alpha=0.4, label=f"x{k}, with L2" if k == 0 else None
    )
    axes[0].plot(res.steps, res.outputs_schedule[:, k, 0], "k:", label="no L2, η̃_s" if k == 0 else None)
axes[0].set(xlabel="step", ylabel="output f₀(x)", title="BN CNN, β = 0: outputs of the two runs")
axes[0].legend(fontsize=8)
for (name, beta, readout), result in equivalence.items():
    style = {"excluded": "-", "fixed": "--", "l2": ":"}[readout]
    color = {("BN CNN", 0.0): "C0", ("BN CNN", 0.9): "C1", ("LN FC", 0.0): "C2", ("LN FC", 0.9): "C3"}[name, beta]
    axes[1].semilogy(
        result.steps[1:], np.maximum(result.relative_difference[1:], 1e-17), style, color=color,
        label=f"{name}, β = {beta}, readout {readout}",
    )  # fmt: skip
axes[1].set(xlabel="step", ylabel="‖f̃ − f‖/‖f‖", title="relative difference of the outputs")
axes[1].legend(fontsize=6)
for beta, (eta, _) in CASES.items():
    alpha = equivalence["BN CNN", beta, "excluded"].alpha
    axes[2].semilogy(exponential_learning_rates(eta, alpha, EQ_STEPS) / eta, label=f"β = {beta}, α = {alpha:.6f}")
axes[2].set(xlabel="step s", ylabel="η̃_s / η", title="the equivalent learning rate ηα^{−2s−1}")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown]
# The outputs agree to rounding (1e-15 for LayerNorm; 1e-12–1e-10 for BatchNorm, its ε) when the
# readout is fixed or excluded. With L2 on the readout, which is not scale-invariant, the same
# schedule is wrong: the residual f − Y does not scale with the weights (SI3), and the difference
# grows like ηλs.
#
# ## 2. The equilibrium under SGD
#
# The batch-normalized CNN (`CHANNELS` channels, W_std = 1e3, each convolution rescaled to norm 1 at
# the start, which does not change the function) on MNIST, minibatches of `BATCH`, L2 on every
# parameter, η = 1, β ∈ {0, 0.9}, and each ηλ: 5/(ηλ) steps, then a window of max(1/(ηλ), 500)
# steps. Recorded at every step for each convolution: ‖w_t‖, η/‖w_t‖² and
# Δ_t = arccos(⟨w_t, w_{t+1}⟩/(‖w_t‖‖w_{t+1}‖)).

# %%
data = load_mnist_or_digits(N_TRAIN, N_TEST, os.environ.get("NTK_L2_MNIST_DIR"), seed=0, flatten=False)
full = load_mnist_or_digits(N_FULL, N_TEST, os.environ.get("NTK_L2_MNIST_DIR"), seed=0, flatten=False)
print(f"{data.name}: {N_TRAIN} training images (full batch: {N_FULL}), {N_TEST} test images")
init_fn, apply_fn = convolutional_batchnorm(2, CHANNELS, 10, W_std=1e3)
_, cnn_params = init_fn(jax.random.PRNGKey(0), (-1, *data.x_train.shape[1:]))
cnn_mask = scale_invariant_mask(cnn_params)
cnn_params = rescale_groups(cnn_params, cnn_mask, 1.0)


def run_equilibrium(dataset, beta, eta_l2, batch, steps):
    config = EquilibriumConfig(LR, eta_l2 / LR, beta, steps=steps, batch_size=batch)
    return train_equilibrium(
        apply_fn, cnn_params, dataset.x_train, dataset.y_train, cnn_mask, config,
        x_test=dataset.x_test, labels_test=dataset.labels_test,
    )  # fmt: skip


runs, windows = {}, {}
for beta in (0.0, 0.9):
    for eta_l2 in ETA_L2:
        window = 100 if SMALL else max(int(round(1 / eta_l2)), 500)
        steps = int(round(5 / eta_l2)) + window
        runs[beta, eta_l2] = run_equilibrium(data, beta, eta_l2, BATCH, steps)
        windows[beta, eta_l2] = window_statistics(runs[beta, eta_l2], steps - window)
print(
    f"{'β':>4s} {'ηλ':>6s} {'steps':>6s} {'Δ mean (conv1, conv2)':>24s} {'Δ RMS':>16s} "
    f"{'√(2ηλ/(1+β))':>13s}  ratio RMS  test acc"
)
for (beta, eta_l2), stats in windows.items():
    run = runs[beta, eta_l2]
    print(
        f"{beta:4.1f} {eta_l2:6.0e} {len(run.loss):6d} {np.array2string(stats.mean, precision=4):>24s} "
        f"{np.array2string(stats.rms, precision=4):>16s} {stats.predicted:13.4f}  "
        f"{np.array2string(stats.ratio_rms, precision=3)}  {run.test_accuracy:.3f}"
    )


# %%
def block_rms(values, block):
    """RMS over consecutive blocks of ``block`` steps (rows: steps, columns: groups)."""
    n = len(values) // block * block
    return np.sqrt((values[:n] ** 2).reshape(-1, block, values.shape[1]).mean(axis=1))


fig, axes = plt.subplots(2, 3, figsize=(17, 8), constrained_layout=True)
for row, beta in enumerate((0.0, 0.9)):
    for i, eta_l2 in enumerate(ETA_L2):
        run, color = runs[beta, eta_l2], f"C{i}"
        t = np.arange(len(run.group_norms)) * eta_l2
        axes[row, 0].semilogy(t, run.group_norms[:, 0], color=color, label=f"ηλ = {eta_l2:g}, conv1")
        axes[row, 0].semilogy(t, run.group_norms[:, 1], "--", color=color, label=f"ηλ = {eta_l2:g}, conv2")
        axes[row, 1].semilogy(t, run.effective_learning_rates[:, 0], color=color, label=f"ηλ = {eta_l2:g}")
        axes[row, 1].semilogy(t, run.effective_learning_rates[:, 1], "--", color=color)
        block = max(len(run.angular_updates) // 60, 5)
        rms = block_rms(run.angular_updates, block)
        tb = (np.arange(len(rms)) + 0.5) * block * eta_l2
        axes[row, 2].semilogy(tb, rms[:, 0], color=color, label=f"ηλ = {eta_l2:g}")
        axes[row, 2].semilogy(tb, rms[:, 1], "--", color=color)
        axes[row, 2].axhline(predicted_angular_update(LR, eta_l2 / LR, beta), color=color, lw=0.8, ls=":")
    axes[row, 0].set(xlabel="ηλ · step", ylabel="‖w‖", title=f"β = {beta}: weight norm per convolution")
    axes[row, 1].set(xlabel="ηλ · step", ylabel="η/‖w‖²", title=f"β = {beta}: effective learning rate")
    axes[row, 2].set(
        xlabel="ηλ · step", ylabel="Δ (rad)", title=f"β = {beta}: angular update (RMS per block) vs √(2ηλ/(1+β))"
    )
    axes[row, 0].legend(fontsize=7)
    axes[row, 2].legend(fontsize=7)
    for ax in axes[row]:
        ax.axvline(5, color="gray", lw=0.6)
plt.show()

# %% [markdown]
# Solid: first convolution, dashed: second; dotted horizontal lines: √(2ηλ/(1+β)); the vertical
# line marks 5/(ηλ) steps. In units of ηλ·step the curves of different ηλ nearly coincide: the
# equilibrium is reached in a time ∝ 1/(ηλ) (SI6), and with momentum faster, ~(1 − β)/(4ηλ).
#
# ### Full batch: no gradient noise
#
# The same network on `N_FULL` images with full-batch gradient descent, ηλ = 1e-2. Without noise
# the gradient shrinks as training converges; the norm follows it down, η/‖w‖² grows, and the
# stationary state of SI5 need not exist.

# %%
full_steps, full_window = (300, 100) if SMALL else (1500, 500)
full_runs = {beta: run_equilibrium(full, beta, 1e-2, None, full_steps) for beta in (0.0, 0.9)}
fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), constrained_layout=True)
for i, (beta, run) in enumerate(full_runs.items()):
    stats = window_statistics(run, full_steps - full_window)
    print(
        f"full batch, β = {beta}: Δ mean {np.array2string(stats.mean, precision=4)}, RMS "
        f"{np.array2string(stats.rms, precision=4)} vs {stats.predicted:.4f} (ratio RMS "
        f"{np.array2string(stats.ratio_rms, precision=3)}); train loss {run.loss[-1]:.4f}, "
        f"test acc {run.test_accuracy:.3f}"
    )
    sgd = runs[beta, 1e-2]
    axes[0].semilogy(run.loss, color=f"C{i}", label=f"full batch, β = {beta}")
    axes[0].semilogy(sgd.loss, color=f"C{i}", alpha=0.3, label=f"SGD, β = {beta}")
    axes[1].semilogy(run.effective_learning_rates[:, 1], color=f"C{i}", label=f"full batch, β = {beta}")
    axes[1].semilogy(sgd.effective_learning_rates[:, 1], color=f"C{i}", alpha=0.3, label=f"SGD, β = {beta}")
    axes[2].semilogy(run.angular_updates[:, 1], color=f"C{i}", lw=0.6, label=f"full batch, β = {beta}")
    axes[2].axhline(predicted_angular_update(LR, 1e-2 / LR, beta), color=f"C{i}", ls=":")
axes[0].set(xlabel="step", ylabel="data loss (batch)", title="loss")
axes[1].set(xlabel="step", ylabel="η/‖w‖² (conv2)", title="effective learning rate")
axes[2].set(xlabel="step", ylabel="Δ_t (conv2)", title="angular update per step, full batch")
for ax in axes:
    ax.legend(fontsize=7)
plt.show()
