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


def save_laws(path: str | Path, runs: Sequence[Mapping], title: str = "", reference_acc: float | None = None,
              theory: Sequence[Mapping] | None = None) -> Path:
    """The paper's three panels: t* vs λ (a line per η), best test accuracy vs λ (with the
    λ = 0 reference), accuracy at the fixed budget vs λ; theory dashed where given."""
    fig, axes = _subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    ax_t, ax_best, ax_budget = axes
    for source, style in ((runs, "o-"), (theory or [], "s--")):
        label = "" if source is runs else " (theory)"
        for i, eta in enumerate(sorted({r["lr"] for r in source})):
            rs = sorted((r for r in source if r["lr"] == eta), key=lambda r: r["l2"])
            lam = [r["l2"] for r in rs]
            ax_t.loglog(lam, [r["t_star"] for r in rs], style, color=f"C{i}", mfc="none" if label else None, label=f"η = {eta:g}{label}")
            ax_best.semilogx(lam, [100 * r["max_test_acc"] for r in rs], style, color=f"C{i}", mfc="none" if label else None, label=f"η = {eta:g}{label}")
            if any(r.get("budget_test_acc") is not None for r in rs):
                ax_budget.semilogx(lam, [np.nan if r["budget_test_acc"] is None else 100 * r["budget_test_acc"] for r in rs],
                                   style, color=f"C{i}", mfc="none" if label else None, label=f"η = {eta:g}{label}")
    lams = np.array(sorted({r["l2"] for r in runs}))
    for i, eta in enumerate(sorted({r["lr"] for r in runs})):
        c = np.nanmedian([r["t_star_eta_l2"] for r in runs if r["lr"] == eta])
        ax_t.loglog(lams, c / (eta * lams), ":", color=f"C{i}", lw=1)
    if not ax_budget.lines:
        ax_budget.text(0.5, 0.5, "no budget T given", ha="center", va="center", transform=ax_budget.transAxes)
    if reference_acc is not None:
        ax_best.axhline(100 * reference_acc, color="k", lw=0.8, ls=":", label="λ = 0")
    ax_t.set(xlabel="λ", ylabel="t* (steps)", title="t* vs λ (dotted: c/(ηλ), c = median t*ηλ)")
    ax_best.set(xlabel="λ", ylabel="best test accuracy (%)", title="best test accuracy")
    ax_budget.set(xlabel="λ", ylabel="test accuracy at the budget (%)", title="accuracy at a fixed budget T")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return io.save_figure(path, fig, dpi=110)


def save_autol2(path: str | Path, autol2: Mapping, constant: Sequence[Mapping], title: str = "") -> Path:
    """Test accuracy and λ over time: AutoL2 against constant-λ runs."""
    fig, (ax_acc, ax_l2) = _subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for i, run in enumerate(constant):
        ax_acc.semilogx(np.maximum(run["steps"], 1), 100 * np.array([np.nan if a is None else a for a in run["acc_test"]], float),
                        color=f"C{i}", lw=1, label=f"λ = {run['l2']:g}")
    ax_acc.semilogx(np.maximum(autol2["steps"], 1), 100 * np.asarray(autol2["acc_test"], float), "k-", lw=2, label="AutoL2")
    ax_l2.loglog(np.maximum(autol2["steps"], 1), autol2["l2"], "k-", lw=2)
    ax_acc.set(xlabel="step", ylabel="test accuracy (%)", title="AutoL2 vs constant λ")
    ax_l2.set(xlabel="step", ylabel="λ", title="AutoL2 schedule")
    ax_acc.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return io.save_figure(path, fig, dpi=110)


def save_optimal_l2(path: str | Path, summary: Mapping, kernel: Mapping) -> Path:
    """Accuracy at the budget T against λ: the grid search, the kernel-only curve, and the
    three λ_opt (one run, kernel, grid) as vertical lines."""
    fig, ax = _subplots(1, 1, figsize=(6.5, 4.2), constrained_layout=True)
    grid = summary["grid"]
    ax.semilogx([g["l2"] for g in grid], [np.nan if g["budget_test_acc"] is None else 100 * g["budget_test_acc"] for g in grid],
                "o-", label=f"grid search ({summary['mode']})")
    ax.semilogx(kernel["l2_grid"], 100 * np.asarray(kernel["acc_grid"], float), "k--", lw=1, label="theory from the kernel")
    for key, color, name in (("l2_opt_one_run", "C1", "one run"), ("l2_opt_kernel", "C2", "kernel"), ("l2_opt_grid", "C0", "grid")):
        ax.axvline(summary[key], color=color, ls=":", label=f"λ_opt {name}: {summary[key]:.2g}")
    ax.set(xlabel="λ", ylabel=f"test accuracy at T = {summary['budget_step']} (%)",
           title=f"{summary['dataset']}: optimal λ for a budget (η = {summary['lr']:g})")
    ax.legend(fontsize=7)
    return io.save_figure(path, fig, dpi=110)


def save_deep_linear(path: str | Path, summary: Mapping, title: str = "") -> Path:
    """The two phases of a deep linear run: loss above its minimum, layer imbalance, distance to
    the minima and Hessian top eigenvalue / trace against steps, with the end of the
    optimization phase (median over seeds) marked."""
    steps = np.maximum(np.asarray(summary["steps"], float), 1.0)
    arr = lambda key: np.array([np.nan if v is None else v for v in summary[key]], float)  # noqa: E731
    fig, axes = _subplots(1, 4, figsize=(15, 3.6), constrained_layout=True)
    axes[0].loglog(steps, np.maximum(arr("loss") - summary["min_loss"], 1e-300))
    axes[0].set(xlabel="step", ylabel="L − min L", title="loss above its minimum")
    axes[1].semilogx(steps, arr("imbalance_norm"))
    axes[1].set(xlabel="step", ylabel="‖D‖", title="layer imbalance")
    axes[2].loglog(steps, np.maximum(arr("distance_to_minima"), 1e-300))
    axes[2].set(xlabel="step", ylabel="distance", title="distance to the minima")
    h = np.maximum(np.asarray(summary["hessian_steps"], float), 1.0)
    axes[3].semilogx(h, arr("hessian_top"), "o-", label="top eigenvalue")
    axes[3].semilogx(h, arr("hessian_trace"), "s--", label="trace")
    axes[3].set(xlabel="step", title="flatness (Hessian)")
    axes[3].legend(fontsize=7)
    ends = np.array([np.nan if v is None else v for v in summary["optimization_phase_end"]], float)
    if np.isfinite(ends).any():
        for ax in axes:
            ax.axvline(max(float(np.nanmedian(ends)), 1.0), color="k", ls=":", lw=1)
    cfg = summary["config"]
    fig.suptitle(title or f"deep linear, widths {tuple(cfg['widths'])}, {cfg['regularizer']}"
                 + ("" if cfg["regularizer"] == "none" else f" {cfg['strength']:g}")
                 + f", η = {cfg['learning_rate']:g} ({summary['method']}); dotted: end of the optimization phase")
    return io.save_figure(path, fig, dpi=110)
