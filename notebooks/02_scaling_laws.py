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
# # The t* ∝ 1/(ηλ) law: theory and finite networks
#
# Lewkowycz & Gur-Ari (2020): the number of steps until a network reaches its best test
# accuracy scales as $t^* \approx c/(\eta\lambda)$. Here we measure it on the fully connected
# ReLU network (3 hidden layers, no biases, $k = 4$) on 512 real MNIST images, each run
# lasting $2/(\eta\lambda)$ steps as in the paper, three ways:
#
# 1. the infinite-width theory's **mean** prediction ($f_0 = 0$; exact discrete map, seconds),
# 2. the theory for **single networks**: initial outputs drawn from the NNGP and run
#    through the same map (the map is affine in $f_0$),
# 3. **finite networks** of width 512, trained in JAX (`ntk-l2 sweep --mode finite`).
#
# $t^*$ is the first step within 0.5 points of the run's best test accuracy
# (`derivations/laws.md`, L1). Conventions: `../shared/DESIGN.md` (loss normalized by
# $N = n\cdot c$, NTK parameterization). Data: `$NTK_L2_MNIST_DIR` (default
# `../../shared/data/mnist`), test-split protocol; embedded digits otherwise.
# `NTK_L2_SMALL=1` runs a reduced version (CI). Finite runs are cached in `../out/` and
# reused by `ntk-l2 sweep` with the same settings.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ntk_l2.data import load_mnist_or_digits
from ntk_l2.law_experiments import law_problem
from ntk_l2.laws import FiniteSweepConfig, finite_sweep, theory_sweep

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
N_TRAIN, N_TEST = (128, 200) if SMALL else (512, 1000)
L2S = (1e-2, 3e-2, 1e-1) if SMALL else (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
LRS = (1.0,) if SMALL else (0.5, 1.0)
FINITE = FiniteSweepConfig(width=64 if SMALL else 512, seeds=1, budget=2.0, n_records=30 if SMALL else 100)
OUT = Path("../out/notebooks/02" + ("_small" if SMALL else ""))

data = load_mnist_or_digits(N_TRAIN, N_TEST, os.environ.get("NTK_L2_MNIST_DIR", "../../shared/data/mnist"), seed=0)
problem = law_problem(data)
print(f"{data.name}: {N_TRAIN} train / {N_TEST} test points; λ ∈ {L2S}, η ∈ {LRS}")

# %% [markdown]
# ## The three sweeps

# %%
mean = theory_sweep(problem, L2S, LRS, budget=2.0)
single = theory_sweep(problem, L2S, LRS, budget=2.0, init_samples=2 if SMALL else 8)
finite = finite_sweep(data, L2S, LRS, FINITE, OUT / "finite")
print(f"{'λ':>7} {'η':>4} | {'t*ηλ mean':>9} {'acc':>5} | {'t*ηλ single':>11} {'acc':>5} | {'t*ηλ finite':>11} {'acc':>5}")
for m, s, f in zip(mean, single, finite):
    print(f"{m['l2']:7.0e} {m['lr']:4g} | {m['t_star_eta_l2']:9.3f} {100 * m['max_test_acc']:5.1f} | "
          f"{s['t_star_eta_l2']:11.3f} {100 * s['max_test_acc']:5.1f} | {f['t_star_eta_l2']:11.3f} {100 * f['max_test_acc']:5.1f}")

# %% [markdown]
# ## The paper's panels
#
# Left: $t^*$ against λ, a line per η (the dotted lines are $c/(\eta\lambda)$ with the median
# $c$); middle: the best test accuracy; right: single-network theory against the finite
# networks, accuracy over time for each λ at the largest η.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), constrained_layout=True)
styles = {"mean prediction": (mean, "s--"), "single-network theory": (single, "^-."), "finite, width %d" % FINITE.width: (finite, "o-")}
for j, (name, (runs, style)) in enumerate(styles.items()):
    for i, eta in enumerate(LRS):
        rs = [r for r in runs if r["lr"] == eta]
        lam = [r["l2"] for r in rs]
        t_star = [max(r["t_star"], 0.5) for r in rs]  # t* = 0 (nothing learned) drawn at 0.5
        axes[0].loglog(lam, t_star, style, color=f"C{j}", alpha=1 - 0.4 * i, label=f"{name}, η = {eta:g}")
        axes[1].semilogx(lam, [100 * r["max_test_acc"] for r in rs], style, color=f"C{j}", alpha=1 - 0.4 * i)
lam = np.asarray(L2S)
for i, eta in enumerate(LRS):
    c = np.median([r["t_star_eta_l2"] for r in finite if r["lr"] == eta])
    axes[0].loglog(lam, c / (eta * lam), "k:", lw=0.8)
axes[0].set(xlabel="λ", ylabel="t* (steps)", title="time to best test accuracy")
axes[0].legend(fontsize=6)
axes[1].set(xlabel="λ", ylabel="best test accuracy (%)", title="best test accuracy")
eta = LRS[-1]
for i, (s, f) in enumerate(zip([r for r in single if r["lr"] == eta], [r for r in finite if r["lr"] == eta])):
    axes[2].semilogx(np.maximum(s["steps"], 1), 100 * np.asarray(s["acc_test"], float), "--", color=f"C{i}")
    axes[2].semilogx(np.maximum(f["steps"], 1), 100 * np.array([np.nan if a is None else a for a in f["acc_test"]]), "-",
                     color=f"C{i}", label=f"λ = {s['l2']:g}")
axes[2].set(xlabel="step", ylabel="test accuracy (%)", title=f"η = {eta:g}: finite (solid) vs single-network theory (dashed)")
axes[2].legend(fontsize=7)
plt.show()

# %% [markdown]
# ## What the figure says
#
# - Where the network learns, $t^*\eta\lambda$ is nearly independent of η (the dynamics depend
#   on $\eta\lambda t$, L1) and changes slowly with λ: the law.
# - The mean prediction and a single network have *different* constants $c$. A single
#   network starts from a random function of variance $O(1)$ (the NNGP); L2 removes it only
#   at the rate $(1-\eta\lambda)^{k}$ per step, so its best accuracy comes late, when the
#   initial function has decayed, and the mean prediction's best comes early. The
#   single-network theory reproduces the finite networks' $t^*$ and accuracy.
# - In these conventions (loss normalized by $N = n\cdot c$, NTK parameterization) a kernel
#   mode of eigenvalue μ is learned only if $\mu/N \gg 2(k-1)\lambda$; for λ ≳ 3·10⁻² on 512
#   MNIST samples nothing is learned before the kernel has decayed, accuracy stays at chance
#   and $t^*$ is meaningless (drawn at 0.5). The paper's λ range corresponds to smaller λ
#   here (λ_here = λ_paper/c if the paper normalizes the loss by n alone).
