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
# # A tour of the theory engine
#
# What does L2 regularization do to an infinitely wide network? For a network
# that is positively homogeneous of degree $k$ (here: 3 hidden ReLU layers, no
# biases, $k = 4$), gradient flow with learning rate $\eta$ and L2 strength
# $\lambda$ gives (`derivations/continuous_time.md`)
#
# $$\Theta_t = e^{-2(k-1)\eta\lambda t}\,\Theta_0, \qquad
#   \frac{df_X}{dt} = -\eta\,\Theta_t\,\frac{f_X - Y}{N} - k\eta\lambda f_X .$$
#
# The kernel shrinks, so learning stops after $t \sim 1/(\eta\lambda)$ steps, and
# the outputs then decay to zero. This notebook shows it on the embedded digits
# data, with the closed form, the discrete map and the ensemble variance.
# Set `NTK_L2_SMALL=1` for a quick run (CI does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import ntk_l2

SMALL = os.environ.get("NTK_L2_SMALL") == "1"
N_TRAIN, N_TEST = (64, 128) if SMALL else (512, 1000)
data = ntk_l2.load_digits(n_train=N_TRAIN, n_test=N_TEST, seed=0)
net = ntk_l2.fully_connected(depth=3, out_dim=data.n_classes)
ntk_l2.check_degree(net)  # measured numerically: f(cθ) = c^k f(θ), Θ(cθ) = c^{2(k-1)} Θ(θ)
k_train = net.kernel_fn(data.x_train, None, ("ntk", "nngp"))
k_test = net.kernel_fn(data.x_test, data.x_train, ("ntk", "nngp"))
nngp_test_test = net.kernel_fn(data.x_test, None, "nngp")
ntk_train, ntk_test = np.asarray(k_train.ntk, np.float64), np.asarray(k_test.ntk, np.float64)
print(f"{net.name}: degree k = {net.degree}, {N_TRAIN} train / {N_TEST} test digits")

# %% [markdown]
# ## Loss and accuracy for several λ
# Mean prediction (zero initial outputs), gradient flow, $\eta = 1$.

# %%
eta = 1.0
times = np.concatenate([[0.0], np.logspace(0, 6, 80)])
curves = {}
for lam in (0.0, 1e-4, 1e-3, 1e-2):
    predict = ntk_l2.gradient_descent_mse_l2(ntk_train, data.y_train, eta, lam, net.degree)
    fx_train, fx_test = predict(times, 0.0, None, ntk_test)
    curves[lam] = (ntk_l2.mse_loss(fx_test, data.y_test), ntk_l2.accuracy(fx_test, data.labels_test))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
for lam, (loss, acc) in curves.items():
    ax1.loglog(times[1:], loss[1:], label=f"λ = {lam:g}")
    ax2.semilogx(times[1:], 100 * acc[1:], label=f"λ = {lam:g}")
    if lam > 0:
        ax2.axvline(1 / (eta * lam), color="gray", lw=0.5, ls=":")
ax1.set(xlabel="step t", ylabel="test loss", title="test loss")
ax2.set(xlabel="step t", ylabel="test accuracy (%)", title="test accuracy (dotted: t = 1/(ηλ))")
ax2.legend()
plt.show()

# %% [markdown]
# With $\lambda > 0$ the best accuracy is reached around $t \sim c/(\eta\lambda)$ and
# then lost as the outputs decay: the time scale of the L2 laws.

# %%
for lam, (_loss, acc) in curves.items():
    best = int(np.nanargmax(acc))  # t = 0: all outputs 0, no prediction (NaN accuracy)
    print(
        f"λ = {lam:>6g}: best test accuracy {100 * acc[best]:.1f}% at t = {times[best]:.3g}"
        + (f"  (t·η·λ = {times[best] * eta * lam:.2f})" if lam else "")
    )

# %% [markdown]
# ## Finite learning rate: the discrete map
# Gradient descent with a large step follows the flow closely until the kernel
# has decayed; the exact map needs no loop over steps in Python.

# %%
lam, eta_gd = (
    1e-3,
    0.5 * ntk_l2.stability_limit(float(np.linalg.eigvalsh(ntk_train)[-1]), data.y_train.size, 1e-3, net.degree),
)
steps = np.unique(np.logspace(0, 4.5, 60).astype(int))
disc = ntk_l2.gradient_descent_mse_l2_discrete(ntk_train, data.y_train, eta_gd, lam, net.degree)(
    steps, 0.0, None, ntk_test
)[1]
flow = ntk_l2.gradient_descent_mse_l2(ntk_train, data.y_train, eta_gd, lam, net.degree)(
    steps.astype(float), 0.0, None, ntk_test
)[1]
plt.figure(figsize=(5.5, 3.5))
plt.semilogx(steps, 100 * ntk_l2.accuracy(disc, data.labels_test), label=f"discrete map, η = {eta_gd:.3g}")
plt.semilogx(steps, 100 * ntk_l2.accuracy(flow, data.labels_test), "--", label="gradient flow")
plt.xlabel("step")
plt.ylabel("test accuracy (%)")
plt.legend()
plt.show()

# %% [markdown]
# ## Spread over initializations
# The ensemble solver propagates the NNGP prior through the same dynamics: the
# variance of the test outputs shrinks during learning and then, with L2,
# decays with the outputs themselves.

# %%
ens = ntk_l2.gradient_descent_mse_l2_ensemble(
    ntk_train, np.asarray(k_train.nngp, np.float64), data.y_train, 1.0, 1e-3, net.degree
)
gauss = ens(times, ntk_test, np.asarray(k_test.nngp, np.float64), np.asarray(nngp_test_test, np.float64))
mean_var = np.mean(np.diagonal(gauss.covariance, axis1=1, axis2=2), axis=1)
plt.figure(figsize=(5.5, 3.5))
plt.loglog(times[1:], mean_var[1:])
plt.xlabel("step t")
plt.ylabel("mean test-output variance")
plt.title("λ = 1e-3")
plt.show()
