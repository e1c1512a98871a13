"""Figures of every experiment, for a paper: PNG + PDF, column widths, mathtext, written atomically.

Each ``save_*`` draws one figure (`plot_style`: 8 pt fonts, 3.4 in single-column or 7 in
double-column layouts, one colour per width or λ) and writes ``<name>.png`` (300 dpi) and
``<name>.pdf`` beside it, each atomically; it returns the PNG's path. The ``*_figure`` functions
return the `matplotlib.figure.Figure` without writing anything. The comparison figure is drawn in
`plot_comparison` and the law figures in `plot_laws`; all are importable from here.

`replot` draws a result directory's figures again from what the experiment stored, without
recomputing: ``summary.json`` holds everything the comparison, demo and deep-linear figures need;
the law figures (sweep, optimal λ, AutoL2), whose summaries leave out the curves, store what they
draw beside the figure as ``<name>_data.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ntk_l2.experiments import plot_style as S
from ntk_l2.experiments.plot_comparison import comparison_figure
from ntk_l2.experiments.plot_laws import (
    _data_path,
    autol2_figure,
    laws_figure,
    optimal_l2_figure,
    save_autol2,
    save_laws,
    save_optimal_l2,
)

__all__ = [
    "comparison_figure",
    "dynamics_figure",
    "dynamics_title",
    "laws_figure",
    "autol2_figure",
    "optimal_l2_figure",
    "deep_linear_figure",
    "save_dynamics",
    "save_comparison",
    "save_laws",
    "save_autol2",
    "save_optimal_l2",
    "save_deep_linear",
    "figure_files",
    "replot",
]


def figure_files(png: str | Path) -> list[Path]:
    """The files one figure is written to: the PNG and the PDF beside it."""
    return [Path(png), S.vector_path(png)]


def dynamics_title(architecture: str, degree: int, learning_rate: float) -> str:
    """The demo's dynamics title (the same when the figure is drawn again by `replot`)."""
    return f"{architecture}, degree $k = {degree}$, $\\eta = {S.sci(learning_rate)}$"


def _number(text: str) -> float:
    """A λ label as a number (NaN if it is not one: drawn, but unmarked and ordered last)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def dynamics_figure(
    times: Sequence[float],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
    learning_rate: float | None = None,
) -> Figure:
    """Loss and accuracy against steps, one colour per λ (keys of ``curves``: λ as text), test solid,
    train dashed; with ``learning_rate`` a dotted line at t = 1/(ηλ) for each λ > 0 (null values,
    undefined accuracies, are not drawn)."""
    t = S.floats(times)
    shown = t > 0  # log axis
    lams = {label: _number(label) for label in curves}
    colors = S.ranked_colors(list(curves), list(lams.values()), cmap="plasma")
    with S.style():
        fig, ((ax_loss, ax_acc),) = S.new_figure(1, 2, S.DOUBLE_COLUMN, 2.6)
        for label, c in curves.items():
            color = colors[label]
            name = f"$\\lambda = {S.sci(lams[label])}$" if np.isfinite(lams[label]) else f"$\\lambda$ = {label}"
            ax_loss.plot(t[shown], S.floats(c["loss_train"])[shown], "--", color=color)
            ax_loss.plot(t[shown], S.floats(c["loss_test"])[shown], "-", color=color, label=name)
            ax_acc.plot(t[shown], 100 * S.floats(c["acc_train"])[shown], "--", color=color)
            ax_acc.plot(t[shown], 100 * S.floats(c["acc_test"])[shown], "-", color=color, label=name)
            known = learning_rate is not None and np.isfinite(lams[label])
            scale = S.time_scale(learning_rate, lams[label]) if known else None
            if scale is not None:
                for ax in (ax_loss, ax_acc):
                    S.mark_time(ax, scale[0], t[shown], color=color)
        top = max(np.nanmax(S.floats(c["loss_test"])) for c in curves.values())
        ax_loss.set_ylim(1e-3 * top, 1.5 * top)  # an interpolating train loss would squash the rest
        ax_loss.set(xscale="log", yscale="log", xlabel=r"step $t$", ylabel=r"MSE loss $\|f - Y\|^2/(2N)$")
        ax_acc.set(xscale="log", xlabel=r"step $t$", ylabel="accuracy (%)")
        marks = r"; dotted: $t = 1/(\eta\lambda)$" if learning_rate is not None else ""
        S.panel_title(ax_loss, "a", "loss (test solid, train dashed" + marks + ")")
        S.panel_title(ax_acc, "b", "accuracy")
        ax_loss.legend(loc="lower left")  # below the curves: the axis reaches 10^-3 of the top test loss
        if title:
            fig.suptitle(title)
    return fig


def save_dynamics(
    path: str | Path,
    times: Sequence[float],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
    learning_rate: float | None = None,
) -> Path:
    """`dynamics_figure`, written to ``path`` (PNG) and its PDF."""
    return S.save(path, dynamics_figure(times, curves, title, learning_rate))


def save_comparison(path: str | Path, summary: Mapping) -> Path:
    """`comparison_figure` of a `ntk_l2.experiments.compare.run_comparison` summary, written to
    ``path`` (PNG) and its PDF."""
    return S.save(path, comparison_figure(summary))


def deep_linear_figure(summary: Mapping, title: str = "") -> Figure:
    """The two phases of a deep linear run: loss above its minimum, layer imbalance ‖D‖, distance to
    the minima and Hessian top eigenvalue / trace against steps; dotted: the end of the
    optimization phase (median over seeds)."""
    steps = np.maximum(S.floats(summary["steps"]), 1.0)
    with S.style():
        fig, (axes,) = S.new_figure(1, 4, S.DOUBLE_COLUMN, 2.1)
        axes[0].loglog(steps, np.maximum(S.floats(summary["loss"]) - summary["min_loss"], 1e-300))
        axes[0].set(xlabel=r"step $t$", ylabel=r"$L - \min\,L$")
        S.panel_title(axes[0], "a", "loss above its minimum")
        axes[1].semilogx(steps, S.floats(summary["imbalance_norm"]))
        axes[1].set(xlabel=r"step $t$", ylabel=r"$\|D\|$")
        S.panel_title(axes[1], "b", "layer imbalance")
        axes[2].loglog(steps, np.maximum(S.floats(summary["distance_to_minima"]), 1e-300))
        axes[2].set(xlabel=r"step $t$", ylabel="distance")
        S.panel_title(axes[2], "c", "distance to minima")
        h = np.maximum(S.floats(summary["hessian_steps"]), 1.0)
        axes[3].semilogx(h, S.floats(summary["hessian_top"]), "o-", label="top eigenvalue")
        axes[3].semilogx(h, S.floats(summary["hessian_trace"]), "s--", mfc="none", label="trace")
        axes[3].set(xlabel=r"step $t$")
        S.panel_title(axes[3], "d", "Hessian")
        axes[3].legend()
        ends = S.floats(summary["optimization_phase_end"])
        if np.isfinite(ends).any():
            for ax in axes:
                ax.axvline(max(float(np.nanmedian(ends)), 1.0), color="0.45", ls=":", lw=0.8)
        cfg = summary["config"]
        reg = cfg["regularizer"] + ("" if cfg["regularizer"] == "none" else f" {cfg['strength']:g}")
        eta = S.sci(cfg["learning_rate"])
        fig.suptitle(
            title
            or f"deep linear, widths {tuple(cfg['widths'])}, {reg}, $\\eta = {eta}$ "
            f"({summary['method']}); dotted: end of the optimization phase"
        )
    return fig


def save_deep_linear(path: str | Path, summary: Mapping, title: str = "") -> Path:
    """`deep_linear_figure`, written to ``path`` (PNG) and its PDF."""
    return S.save(path, deep_linear_figure(summary, title))


def _stored_data(directory: Path, name: str, png: str) -> dict[str, Any]:
    """The figure data a law figure stored beside itself (`plot_laws._save_with_data`)."""
    path = _data_path(directory / png)
    if not path.is_file():
        raise ValueError(
            f"result_dir: {directory} holds a {name} result without {path.name} (written before figures "
            "stored their data); run the command again to draw it (finished runs are reused)"
        )
    from ntk_l2.experiments.results import read_json

    stored = read_json(path)
    if not isinstance(stored, dict) or stored.get("figure") != name or not isinstance(stored.get("data"), dict):
        raise ValueError(f"result_dir: {path} is not the figure data of a {name} figure")
    return stored["data"]


def _redraw_demo(d: Path, s: Mapping) -> list[Path]:
    """The demo's two figures from its summary.json (the comparison is ``s["comparison"]``)."""
    title = dynamics_title(s["architecture"], s["degree"], s["learning_rate"])
    return [
        S.save(d / "dynamics.png", dynamics_figure(s["times"], s["curves"], title, s["learning_rate"])),
        S.save(d / "comparison.png", comparison_figure(s["comparison"])),
    ]


def _redraw_law(name: str, png: str, draw: Callable[..., Figure]) -> Callable[[Path, Mapping], list[Path]]:
    """A redraw of the law figure ``png`` from the data stored beside it."""
    return lambda d, s: [S.save(d / png, draw(**_stored_data(d, name, png)))]


# (kind, how its summary.json is recognized, what draws its figures from the directory and summary)
_KINDS: tuple[tuple[str, Callable[[Mapping], bool], Callable[[Path, Mapping], list[Path]]], ...] = (
    ("demo", lambda s: "curves" in s and "comparison" in s, _redraw_demo),
    (
        "compare",
        lambda s: "widths" in s and "median_rel_err_test_max" in s,
        lambda d, s: [S.save(d / "comparison.png", comparison_figure(s))],
    ),
    (
        "deep-linear",
        lambda s: "hessian_steps" in s,
        lambda d, s: [S.save(d / "deep_linear.png", deep_linear_figure(s))],
    ),
    ("sweep", lambda s: "t_star_eta_l2_spread" in s, _redraw_law("laws", "laws.png", laws_figure)),
    ("optimal-l2", lambda s: "l2_opt_grid" in s, _redraw_law("optimal_l2", "optimal_l2.png", optimal_l2_figure)),
    ("autol2", lambda s: "autol2_changes" in s, _redraw_law("autol2", "autol2.png", autol2_figure)),
    ("schedule", lambda s: "learned" in s, _redraw_law("autol2", "schedule.png", autol2_figure)),
)


def replot(result_dir: str | Path) -> list[Path]:
    """Draw a result directory's figures again from its stored results, without recomputing
    anything; returns the files written (each figure's PNG and PDF).

    Known results: ``demo`` (dynamics.png, comparison.png), ``compare`` (comparison.png),
    ``deep-linear`` (deep_linear.png), from ``summary.json``; ``sweep`` (laws.png),
    ``optimal-l2`` (optimal_l2.png), ``autol2`` (autol2.png), ``schedule`` (schedule.png), from their
    ``<name>_data.json``.
    A summary with a ``kind`` is read by `ntk_l2.experiments.results.load_result` (every field
    checked); one written before results were typed is recognized by its keys. Anything else
    is refused with a one-line ValueError naming the directory.
    """
    from ntk_l2.experiments.results import read_summary, result_from_summary

    directory = Path(result_dir)
    path, summary = read_summary(directory)
    if "kind" in summary:  # a typed result: every field checked before it is drawn
        summary = result_from_summary(summary, path).to_json()
    for kind, recognize, redraw in _KINDS:
        if summary.get("kind", kind) == kind and recognize(summary):
            try:
                pngs = redraw(directory, summary)
            except (KeyError, TypeError, IndexError) as err:
                raise ValueError(
                    f"result_dir: {directory} is a {kind} result whose stored data the figure cannot "
                    f"read ({type(err).__name__}: {' '.join(str(err).split())})"
                ) from None
            return [f for png in pngs for f in figure_files(png)]
    known = ", ".join(kind for kind, _, _ in _KINDS)
    raise ValueError(f"result_dir: {directory}/summary.json is not the summary of a known result ({known})")
