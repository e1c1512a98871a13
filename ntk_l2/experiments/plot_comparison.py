"""The theory-vs-finite-width figure of `ntk_l2.experiments.compare` (double column, six panels).

(a) test-output error against the discrete theory, (b) test accuracy, finite and theory, per width,
(c) kernel ratio ‖Θ_t‖/‖Θ_0‖, (d) layer norms ‖θ_l(t)‖/‖θ_l(0)‖, (e) max-over-time error against
width with the fitted exponent, (f) the key. Finite networks are drawn as the median over seeds
with a min–max band; each width has one colour in every panel. The theory of (b) starts from
each seed's own f_0, so it is drawn per width; the decays of (c) and (d) do not depend on the
width (a_t^{2(k−1)} and a_t, a_t = (1 − ηλ)^t without momentum, `derivations/momentum.md` M5 with
it), and are drawn once, saying so, when the stored values agree across widths. A dotted line
marks the L2 time scale t = 1/(ηλ) ((1 − β)/(ηλ) with momentum) where it lies within the run.
Results stored before the per-seed values (``*_seeds``) existed are drawn as means, labelled so.
The summary is a `ntk_l2.experiments.results_compare.Comparison` record or its JSON (``summary.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ntk_l2.common.records import Record
from ntk_l2.experiments import plot_style as S

ERROR_LABEL = r"$\|f_t - f_t^{\rm theory}\|\,/\,\|f_t^{\rm theory}\|$"


def _over_seeds(w: Mapping, per_seed: str, mean: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(median, min, max) over seeds from ``w[per_seed]``; (mean, None, None) from an older result."""
    if per_seed in w:
        return S.median_band(w[per_seed])
    return S.floats(w[mean]), None, None


def _line_band(
    ax: Any, x: Any, mid: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None, color: Any, **kwargs: Any
) -> None:
    """A line and, when given, its band from ``lo`` to ``hi`` in a lighter shade of the same colour."""
    x = S.floats(x)
    ax.plot(x, mid, color=color, **kwargs)
    if lo is not None:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def _decay_labels(cfg: Mapping) -> tuple[str, str]:
    """Mathtext labels of the kernel and parameter decays: (1 − ηλ)^… without momentum, a_t^… with it."""
    if cfg.get("momentum", 0.0):
        return r"$a_t^{2(k-1)}$", r"$a_t$"
    return r"$(1-\eta\lambda)^{2(k-1)t}$", r"$(1-\eta\lambda)^{t}$"


def _theory_lines(ax: Any, widths: Mapping, colors: Mapping, steps_key: str, key: str, label: str) -> None:
    """One black line labelled "every width" when the stored theory is the same for all widths; else
    one dashed line per width in its colour."""
    curves = {lab: (S.floats(w[steps_key]), S.floats(w[key])) for lab, w in widths.items()}
    first_t, first_v = next(iter(curves.values()))
    same = all(
        t.shape == first_t.shape and np.array_equal(t, first_t) and np.allclose(v, first_v, rtol=1e-12, atol=0)
        for t, v in curves.values()
    )
    if same:
        ax.plot(first_t, first_v, "k-", lw=0.9, label=f"{label}\nevery width")
        return
    for lab, (t, v) in curves.items():
        ax.plot(t, v, "--", color=colors[lab], lw=0.9, label=f"{label}, width {lab}")


def _panel_error(ax: Any, widths: Mapping, colors: Mapping) -> bool:
    """(a) The relative test-output error against the discrete theory per width, log-log; returns
    whether per-seed values were drawn (median and band) rather than means."""
    per_seed = True
    for lab, w in widths.items():
        steps = S.floats(w["steps"])
        shown = steps > 0  # log axis
        errors = w.get("rel_err_test", {}).get("discrete")
        mid, lo, hi = S.median_band(errors) if errors is not None else (S.floats(w["rel_err_test_mean"]), None, None)
        per_seed &= lo is not None
        _line_band(
            ax,
            steps[shown],
            mid[shown],
            None if lo is None else lo[shown],
            None if hi is None else hi[shown],
            colors[lab],
        )
    ax.set(xscale="log", yscale="log", xlabel=r"step $t$", ylabel=ERROR_LABEL)
    S.panel_title(ax, "a", "test-output error vs theory")
    return per_seed


def _panel_accuracy(ax: Any, widths: Mapping, colors: Mapping) -> bool:
    """(b) Test accuracy per width: the finite networks solid with their band, the theory from the
    same seeds' f_0 dashed; returns whether per-seed values were drawn."""
    per_seed = True
    for lab, w in widths.items():
        steps = S.floats(w["steps"])
        mid, lo, hi = _over_seeds(w, "acc_test_finite_seeds", "acc_test_finite")
        _line_band(
            ax, steps, 100 * mid, None if lo is None else 100 * lo, None if hi is None else 100 * hi, colors[lab]
        )
        th, _, _ = _over_seeds(w, "acc_test_theory_seeds", "acc_test_theory")
        ax.plot(steps, 100 * th, "--", color=colors[lab], lw=0.9)
        per_seed &= lo is not None
    ax.set(xlabel=r"step $t$", ylabel="test accuracy (%)")
    S.panel_title(ax, "b", "test accuracy (dashed: theory)")
    return per_seed


def _panel_kernel(ax: Any, widths: Mapping, colors: Mapping, label: str) -> bool:
    """(c) The probe-set kernel ratio at the kernel steps (markers, min–max bars) against the
    decay ``label``; returns whether per-seed values were drawn."""
    per_seed = True
    for lab, w in widths.items():
        mid, lo, hi = _over_seeds(w, "kernel_ratio_seeds", "kernel_ratio")
        err = None if lo is None else np.vstack([mid - lo, hi - mid])
        ax.errorbar(S.floats(w["kernel_steps"]), mid, yerr=err, fmt="o", color=colors[lab], ms=3, lw=0.8, capsize=1.5)
        per_seed &= lo is not None
    _theory_lines(ax, widths, colors, "kernel_steps", "kernel_ratio_theory", label)
    ax.set(yscale="log", xlabel=r"step $t$", ylabel=r"$\|\Theta_t\|\,/\,\|\Theta_0\|$")
    S.panel_title(ax, "c", "kernel decay (probe set)")
    ax.legend(loc="lower left")  # the decays run from the top left: the lower left stays free
    return per_seed


def _panel_norms(ax: Any, widths: Mapping, colors: Mapping, label: str) -> bool:
    """(d) First-layer and readout norm ratios per width against the decay ``label``; returns whether
    per-seed values were drawn."""
    per_seed = True
    for lab, w in widths.items():
        steps = S.floats(w["steps"])
        mid, lo, hi = _over_seeds(w, "layer_norm_ratio_seeds", "layer_norm_ratio")  # (record, layer)
        for layer, marker, fill in ((0, "o", None), (-1, "s", "none")):
            _line_band(
                ax,
                steps,
                mid[:, layer],
                None if lo is None else lo[:, layer],
                None if hi is None else hi[:, layer],
                colors[lab],
                marker=marker,
                ms=2.5,
                mfc=fill,
            )
        per_seed &= lo is not None
    _theory_lines(ax, widths, colors, "steps", "layer_norm_ratio_theory", label)
    ax.plot([], [], "o-", color="0.4", ms=2.5, label="first layer")
    ax.plot([], [], "s-", color="0.4", ms=2.5, mfc="none", label="readout layer")
    ax.set(xlabel=r"step $t$", ylabel=r"$\|\theta_\ell(t)\|\,/\,\|\theta_\ell(0)\|$")
    S.panel_title(ax, "d", "layer norms")
    ax.legend(loc="upper right")  # above a convex decay
    return per_seed


def _panel_width(ax: Any, summary: Mapping, colors: Mapping) -> None:
    """Median over seeds of the max-over-time error against width, min–max error bars, the fitted
    power law and the expected slope −1/2 (`derivations/finite_width.md`, F2)."""
    labels = sorted(summary["widths"], key=int)
    ws = np.array([int(lab) for lab in labels], float)
    order = [str(w) for w in summary.get("config", {}).get("widths", summary["widths"])]  # the medians' order
    stored = dict(zip(order, summary["median_rel_err_test_max"], strict=False))
    med = S.floats([stored[lab] for lab in labels])
    for lab, x, m in zip(labels, ws, med, strict=True):
        per_seed = S.floats(summary["widths"][lab]["rel_err_test_max"])
        err = [[m - np.nanmin(per_seed)], [np.nanmax(per_seed) - m]]
        ax.errorbar([x], [m], yerr=err, fmt="o", color=colors[lab], ms=3.5, lw=0.8, capsize=1.5)
    p = summary.get("width_exponent")
    ok = np.isfinite(med) & (med > 0)
    if p is not None and ok.sum() > 1:
        logw, logm = np.log(ws[ok]), np.log(med[ok])
        grid = np.geomspace(ws[ok].min(), ws[ok].max(), 20)
        ax.plot(
            grid,
            np.exp(logm.mean() + p * (np.log(grid) - logw.mean())),
            "k-",
            lw=0.9,
            label=f"fit: $\\propto w^{{{p:.2f}}}$",
        )
        ax.plot(
            grid,
            np.exp(logm.mean() - 0.5 * (np.log(grid) - logw.mean())),
            ":",
            color="0.45",
            lw=0.9,
            label=r"$\propto w^{-1/2}$ (expected)",
        )
        ax.legend(loc="lower left")
    ax.set(xscale="log", yscale="log", xlabel=r"width $w$", ylabel=r"max over $t$ of the error")
    S.log_ticks_at(ax, ws)
    S.panel_title(ax, "e", "error vs width")


def _spread_text(per_seed: Mapping[str, bool]) -> str:
    """What the finite-network lines are, per panel: medians with bands, or (older results) means."""
    medians = [p for p, ok in per_seed.items() if ok]
    means = [p for p, ok in per_seed.items() if not ok]
    if not means:
        return "finite network: median over seeds"
    return (
        f"finite network: median over seeds,\n{S.BAND}, in ({', '.join(medians)});\n"
        f"mean over seeds in ({', '.join(means)}):\nper-seed values not stored"
    )


def _key(ax: Any, widths: Mapping, colors: Mapping, per_seed: Mapping[str, bool], marked: str | None) -> None:
    """Panel (f): what the colours, line styles and bands mean."""
    ax.axis("off")
    handles = [Line2D([], [], color=colors[lab], lw=2, label=f"width {lab}") for lab in widths]
    handles += [Line2D([], [], color="0.3", label=_spread_text(per_seed))]
    if any(per_seed.values()):
        handles += [Patch(color="0.3", alpha=0.18, lw=0, label=f"bands, error bars: {S.BAND}")]
    theory = "theory (discrete map) from each\nwidth's own initial outputs $f_0$"
    handles += [
        Line2D([], [], color="0.3", ls="--", label=theory),
        Line2D([], [], color="k", label="infinite-width decay; drawn once\nwhen the same for every width"),
    ]
    if marked:
        handles += [Line2D([], [], color="0.45", ls=":", label=marked)]
    ax.legend(handles=handles, loc="center left", fontsize=6.5, borderaxespad=0.0, labelspacing=0.6)


def _title(summary: Mapping) -> str:
    """The data set, degree, η, λ and the optimizer (momentum, minibatches), in mathtext."""
    cfg = summary.get("config", {})
    parts = [
        f"$k = {summary['degree']}$",
        f"$\\eta = {S.sci(cfg['learning_rate'])}$",
        f"$\\lambda = {S.sci(cfg['l2'])}$",
    ]
    if cfg.get("momentum"):
        parts.append(f"{'Nesterov' if cfg.get('nesterov') else 'heavy-ball'} momentum $\\beta = {cfg['momentum']:g}$")
    if cfg.get("batch_size"):
        parts.append(f"batches of {cfg['batch_size']} (theory: the full-batch mean)")
    return f"{summary['dataset']}: theory vs finite width (" + ", ".join(parts) + ")"


def comparison_figure(summary: Mapping[str, Any] | Record) -> Figure:
    """The figure of a `ntk_l2.experiments.compare.run_comparison` result or its JSON (module docstring)."""
    if isinstance(summary, Record):
        summary = summary.to_json()
    widths = dict(sorted(summary["widths"].items(), key=lambda item: int(item[0])))  # JSON sorts keys as text
    cfg = summary.get("config", {})
    colors = S.ranked_colors(list(widths), [int(lab) for lab in widths])
    kernel_label, scale_label = _decay_labels(cfg)
    with S.style():
        fig, axes = S.new_figure(2, 3, S.DOUBLE_COLUMN, 4.4)
        (ax_err, ax_acc, ax_ker), (ax_norm, ax_w, ax_key) = axes
        per_seed = {
            "a": _panel_error(ax_err, widths, colors),
            "b": _panel_accuracy(ax_acc, widths, colors),
            "c": _panel_kernel(ax_ker, widths, colors, kernel_label),
            "d": _panel_norms(ax_norm, widths, colors, scale_label),
            "e": True,
        }
        _panel_width(ax_w, summary, colors)
        scale = S.time_scale(cfg.get("learning_rate", 0.0), cfg.get("l2", 0.0), cfg.get("momentum", 0.0))
        marked = None
        if scale is not None:
            t, label = scale
            steps = next(iter(widths.values()))["steps"]
            drawn = [S.mark_time(ax, t, steps) for ax in (ax_err, ax_acc, ax_ker, ax_norm)]
            marked = label if any(drawn) else None
        _key(ax_key, widths, colors, per_seed, marked)
        fig.suptitle(_title(summary))
    return fig
