"""Matplotlib figures, written atomically.

Figures are built as `matplotlib.figure.Figure` objects, without pyplot, so that
saving one never changes the backend or the figures of a notebook session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ntk_l2 import io


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float], constrained_layout: bool = True):
    """Like `pyplot.subplots`, on a pyplot-free `Figure`."""
    fig = Figure(figsize=figsize, layout="constrained" if constrained_layout else None)
    return fig, fig.subplots(nrows, ncols)


def save_dynamics(
    path: str | Path,
    times: Sequence[float],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
) -> Path:
    """Loss and accuracy against steps, one line per λ (train dashed, test solid)."""
    t = np.asarray(times, dtype=float)
    curves = {label: {key: np.array([np.nan if v is None else v for v in vals], float) for key, vals in c.items()}
              for label, c in curves.items()}  # null (undefined accuracy) is not drawn
    shown = t > 0  # log axis
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        ax_loss.plot(t[shown], np.asarray(c["loss_train"])[shown], "--", color=color)
        ax_loss.plot(t[shown], np.asarray(c["loss_test"])[shown], "-", color=color, label=f"λ = {label}")
        ax_acc.plot(t[shown], 100 * np.asarray(c["acc_train"])[shown], "--", color=color)
        ax_acc.plot(t[shown], 100 * np.asarray(c["acc_test"])[shown], "-", color=color, label=f"λ = {label}")
    top = max(np.nanmax(np.asarray(c["loss_test"])) for c in curves.values())
    ax_loss.set_ylim(1e-3 * top, 1.5 * top)  # an interpolating train loss would squash the rest
    ax_loss.set(xscale="log", yscale="log", xlabel="step t", ylabel="MSE loss ‖f − Y‖²/(2N)", title="loss (test solid, train dashed)")
    ax_acc.set(xscale="log", xlabel="step t", ylabel="accuracy (%)", title="accuracy (test solid, train dashed)")
    ax_acc.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return io.save_figure(path, fig, dpi=120)


def save_comparison(path: str | Path, summary: Mapping) -> Path:
    """Theory vs finite width: error, accuracy, kernel decay, layer norms, error vs width."""
    widths = summary["widths"]
    fig, axes = _subplots(1, 5, figsize=(22, 4), constrained_layout=True)
    ax_err, ax_acc, ax_ker, ax_norm, ax_w = axes
    for i, (label, w) in enumerate(widths.items()):
        color = f"C{i}"
        steps = np.asarray(w["steps"], float)
        shown = steps > 0
        ax_err.plot(steps[shown], np.asarray(w["rel_err_test_mean"])[shown], color=color, label=f"width {label}")
        ax_acc.plot(steps, 100 * np.asarray(w["acc_test_finite"]), color=color, label=f"finite, width {label}")
        ax_ker.plot(w["kernel_steps"], w["kernel_ratio"], "o", color=color, ms=3, label=f"measured, width {label}")
        ratios = np.asarray(w["layer_norm_ratio"])
        ax_norm.plot(steps, ratios[:, 0], "o", color=color, ms=3, label=f"first layer, width {label}")
        ax_norm.plot(steps, ratios[:, -1], "s", color=color, ms=3, mfc="none", label=f"readout, width {label}")
    last = next(reversed(widths.values()))
    steps = np.asarray(last["steps"], float)
    ax_acc.plot(steps, 100 * np.asarray(last["acc_test_theory"]), "k--", label="theory (discrete)")
    # An exponential in t is a straight line on this log-linear axis: joining the points is exact.
    ax_ker.plot(last["kernel_steps"], last["kernel_ratio_theory"], "k-", label="(1 − ηλ)^{2(k−1)t}")
    ax_norm.plot(steps, last["layer_norm_ratio_theory"], "k-", label="(1 − ηλ)^t")
    ax_err.set(xscale="log", yscale="log", xlabel="step", ylabel="‖f* − f*_theory‖ / ‖f*_theory‖", title="test-output error (mean over seeds)")
    ax_acc.set(xlabel="step", ylabel="test accuracy (%)", title="test accuracy")
    ax_ker.set(yscale="log", xlabel="step", ylabel="‖Θ_t‖ / ‖Θ_0‖", title="kernel decay (probe set)")
    ax_norm.set(xlabel="step", ylabel="‖θ_l(t)‖ / ‖θ_l(0)‖", title="layer norms")
    ws = np.array([int(w) for w in widths], float)
    med = np.asarray(summary["median_rel_err_test_max"])
    ax_w.loglog(ws, med, "o-")
    if summary.get("width_exponent") is not None:
        ax_w.set_title(f"max-over-time error vs width: slope {summary['width_exponent']:.2f}")
    ax_w.set(xlabel="width", ylabel="median over seeds of max-over-time error")
    for ax in axes[:4]:
        ax.legend(fontsize=7)
    fig.suptitle(f"{summary['dataset']}: theory vs finite width (degree k = {summary['degree']})")
    return io.save_figure(path, fig, dpi=110)
