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
# # λ and its schedule, optimized on the kernel
#
# The predicted test outputs after T steps are an exact, differentiable function of the λ used
# at every step (`derivations/optimize.md`, G1–G2). So the kernel can be asked directly which
# λ, or which λ(t), is best for a budget of T steps: minimize a smooth surrogate of the test
# error by gradient (G3–G5) instead of scanning a grid of predicted accuracies.
#
# Setting: the AutoL2 measurements of notebook 03 — the bias-free ReLU network with 3 hidden
# layers in the standard parameterization at width 512, 512 MNIST training and 1,000 test
# images, η = 0.05, single networks (4 NNGP draws of the initial outputs for λ_opt; schedules
# are learned on 32 and judged on 32 others). Data: MNIST from
# `$NTK_L2_MNIST_DIR` (the committed outputs are a run on MNIST), embedded digits otherwise.
# `NTK_L2_SMALL=1` runs a reduced version (CI).

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.data.datasets import load_mnist_or_digits
from ntk_l2.experiments.laws import law_problem, run_autol2
from ntk_l2.laws import (
    AutoL2Config,
    FiniteSweepConfig,
    KernelDynamics,
    Surrogate,
    autol2,
    compare_autol2,
    constant_runs,
    learn_schedule,
    optimal_l2,
    optimal_l2_gradient,
    run_schedule,
)
from ntk_l2.laws.surrogate import Members, objective

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
N_TRAIN, N_TEST = (96, 150) if SMALL else (512, 1000)
WIDTH, LR = (64, 0.1) if SMALL else (512, 0.05)
T, STEPS, SAMPLES = (120, 240, 2) if SMALL else (2000, 4000, 4)
SCHEDULE_SAMPLES, HELD_OUT = (2, 2) if SMALL else (32, 32)  # draws schedules learn on / are judged on
CONSTANT = (1e-3, 1e-2, 1e-1) if SMALL else (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CHOSEN = AutoL2Config(l2_init=0.03, window=50, metric="loss")  # notebook 03's setting, chosen from the kernel
OUT = Path("../out/notebooks/06" + ("_small" if SMALL else ""))

data = load_mnist_or_digits(N_TRAIN, N_TEST, os.environ.get("NTK_L2_MNIST_DIR"), seed=0)
problem = law_problem(data, 2 if SMALL else 3, "standard", WIDTH)
print(f"{data.name}: {N_TRAIN} train / {N_TEST} test points; width {WIDTH}, η = {LR}, T = {T}")

# %% [markdown]
# ## λ_opt by gradient, and the landscape it descends
#
# The surrogate (default: the smoothed test error 1 − mean softmax(f/τ)[label], τ = 0.01, G3) at
# step T as a function of λ, beside the exact predicted accuracy at T, on a fine grid; the
# points are the gradient search's evaluations (first its log-spaced starting points, then
# L-BFGS-B with exact gradients, G4).

# %%
surrogate = Surrogate(init_samples=SAMPLES)
opt = optimal_l2_gradient(problem, LR, T, surrogate)
grid = np.geomspace(1e-5, 0.5 / LR, 61 if SMALL else 161)
accuracy_grid = optimal_l2(KernelDynamics(problem, SAMPLES), LR, T, grid)
members = Members.of(problem, surrogate)
with enable_x64():
    surrogate_at_t = jax.jit(objective(members, T, surrogate))
    landscape = np.array([float(surrogate_at_t(jnp.full(T, lam), LR, members.data)) for lam in grid])

fig, (ax_s, ax_a) = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
ax_s.semilogx(grid, landscape, "k-", lw=1, label="surrogate at T")
path = np.array(opt.path)
ax_s.semilogx(path[: opt.starts, 0], path[: opt.starts, 2], "o", color="C0", label="starting points")
ax_s.semilogx(path[opt.starts :, 0], path[opt.starts :, 2], ".-", color="C3", label="L-BFGS-B path")
ax_s.set(xlabel="λ", ylabel="surrogate", title=f"the landscape in λ at T = {T}")
ax_s.legend()
ax_a.semilogx(grid, 100 * np.asarray(accuracy_grid.acc_grid), "k-", lw=1)
ax_a.axvline(opt.l2_opt, color="C3", ls="--", label=f"gradient λ_opt = {opt.l2_opt:.3g}")
ax_a.axvline(accuracy_grid.l2_opt, color="C0", ls=":", label=f"grid optimum {accuracy_grid.l2_opt:.3g}")
ax_a.set(xlabel="λ", ylabel="predicted test accuracy at T (%)", title="exact predicted accuracy")
ax_a.legend()
plt.show()
print(
    f"gradient: λ_opt = {opt.l2_opt:.4g} ({100 * opt.acc_at_budget:.2f}% at T) in {opt.seconds:.1f} s, "
    f"{len(opt.path)} evaluations; grid of {grid.size}: λ = {accuracy_grid.l2_opt:.4g} "
    f"({100 * accuracy_grid.acc_at_budget:.2f}%); ratio {opt.l2_opt / accuracy_grid.l2_opt:.2f}"
)

# %% [markdown]
# ## A learned schedule beside AutoL2, in theory
#
# Constant λ over 4,000 steps give the best constant run and its $t^*$. A piecewise-constant
# λ(t) on 8 log-spaced segments is learned by gradient through the exact map (G5), started
# from the constant optimum, in two ways: for the budget $t^*/2$ alone (then run for the whole
# 4,000 steps, its last λ held), and for the whole run with $t^*/2$ as a checkpoint (the mean
# of the surrogate at both: good early and at the end). Beside them, AutoL2 with the setting
# chosen from the kernel in notebook 03.
#
# The schedules are learned on 32 NNGP draws of the initial outputs and judged on 32 others
# (seed 1): a schedule judged on the draws it was learned on looks better than it is (with 4
# draws, 0.54× of the constant's steps on its own draws but 0.61× on others; G5). The budget
# t*/2 is that of the best constant λ on the learning draws; the comparison (constant runs,
# schedules, AutoL2) runs on the held-out draws.
#
# The grey curve is not a prediction but a bound: a schedule (one segment per 25 steps) fitted
# to the held-out draws themselves, the most a schedule the gradient finds can do there
# (`benchmarks/bench_optimize.py --part ceiling` starts it from 16 settings; all end at the same
# accuracy at t*/2).

# %%
learning = constant_runs(KernelDynamics(problem, SCHEDULE_SAMPLES), LR, STEPS, CONSTANT, 400)
budget = max(int(max(learning, key=lambda r: r.max_test_acc).t_star // 2), 8)
dynamics = KernelDynamics(problem, HELD_OUT, 1)
constant = constant_runs(dynamics, LR, STEPS, CONSTANT, 400)
best = max(constant, key=lambda r: r.max_test_acc)
schedule_surrogate = Surrogate(init_samples=SCHEDULE_SAMPLES)
learned = learn_schedule(problem, LR, budget, schedule_surrogate)
whole = learn_schedule(problem, LR, STEPS, schedule_surrogate, checkpoints=(budget,))
fitted = learn_schedule(  # on the held-out draws themselves: a bound, not a prediction
    problem, LR, budget, Surrogate(init_samples=HELD_OUT, seed=1), boundaries=tuple(range(25, budget, 25)) or None
)
runs = {
    f"schedule for T = {budget}": run_schedule(dynamics, learned.schedule, STEPS, record_every=10),
    f"schedule for {STEPS} steps, checkpoint {budget}": run_schedule(dynamics, whole.schedule, STEPS, record_every=10),
    "AutoL2 (chosen)": autol2(dynamics, LR, STEPS, CHOSEN),
    f"bound: fitted to these draws for T = {budget}": run_schedule(dynamics, fitted.schedule, STEPS, record_every=10),
}
rows = {name: compare_autol2(run, constant) for name, run in runs.items()}

fig, (ax_acc, ax_l2) = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
for i, run in enumerate(constant):
    ax_acc.semilogx(
        np.maximum(run.steps, 1), 100 * np.asarray(run.acc_test), color=f"C{i}", lw=0.8, label=f"λ = {run.l2:g}"
    )
for (name, run), style in zip(runs.items(), ("k-", "k-.", "k--", "0.6"), strict=True):
    ax_acc.semilogx(np.maximum(run.steps, 1), 100 * np.asarray(run.acc_test), style, lw=1.6, label=name)
    ax_l2.loglog(np.maximum(run.steps, 1), run.l2, style, lw=1.6, label=name)
ax_acc.axvline(budget, color="0.5", ls=":", lw=0.8)
ax_acc.set(xlabel="step", ylabel="predicted test accuracy (%)", ylim=(max(0, 100 * best.max_test_acc - 40), None))
ax_acc.legend(fontsize=7)
ax_l2.set(xlabel="step", ylabel="λ_t", title=f"λ(t); dotted: t*/2 = {budget}")
ax_l2.legend(fontsize=7)
plt.show()
for name, row in rows.items():
    reach = row.steps_to_best_constant_acc
    print(
        f"{name}: best {100 * row.max_test_acc:.2f}%, reaches the best constant λ = {row.best_constant_l2:g}'s "
        f"{100 * row.best_constant_acc:.2f}% (t* = {row.best_constant_steps:g}) "
        + (f"at step {reach:g} ({row.ratio:.2f}×)" if reach is not None else "never")
    )
print(
    f"predicted accuracy at T = {budget}: schedule {100 * learned.acc_at_budget:.2f}% on its "
    f"{SCHEDULE_SAMPLES} learning draws, {100 * learned.acc_at_budget_held_out:.2f}% on {SCHEDULE_SAMPLES} others; "
    f"constant λ_opt {100 * learned.constant.acc_at_budget:.2f}%"
)

# %% [markdown]
# ## The learned schedule on finite networks
#
# The same schedule (the JSON `ntk-l2 schedule` writes; `ntk-l2 autol2 --mode finite --schedule
# FILE` trains with it) trained on width-512 networks, against the constant runs and both AutoL2
# settings, as `benchmarks/bench_optimize.py --part finite` measures (runs kept and reused).

# %%
net = FiniteSweepConfig(width=WIDTH, parameterization="standard", depth=2 if SMALL else 3)
finite = {}
for name, config, schedule in (
    ("AutoL2, defaults (λ₀ = 0.1)", AutoL2Config(), None),
    ("AutoL2, chosen", CHOSEN, None),
    (f"schedule for T = {budget}", AutoL2Config(), learned.schedule),
    (f"schedule for {STEPS} steps, checkpoint {budget}", AutoL2Config(), whole.schedule),
):
    finite[name] = run_autol2(data, OUT / "finite", "finite", LR, STEPS, CONSTANT, config, net, schedule=schedule)
for name, r in finite.items():
    reach = r.autol2_steps_to_best_constant_acc
    print(
        f"{name}: best {100 * r.autol2_max_test_acc:.1f}%; best constant λ = {r.best_constant_l2:g}: "
        f"{100 * r.best_constant_acc:.1f}% at step {r.best_constant_steps:g}; "
        + (f"reached at step {reach:g} ({r.speedup_ratio:.2f}×)" if reach is not None else "never reached")
    )
from IPython.display import Image, display  # noqa: E402

display(Image(filename=finite[f"schedule for {STEPS} steps, checkpoint {budget}"].figure))
