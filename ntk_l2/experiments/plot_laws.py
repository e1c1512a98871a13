"""The law figures: t* and accuracy against λ (`laws_figure`), AutoL2 against constant λ
(`autol2_figure`) and the optimal λ for a budget (`optimal_l2_figure`).

Each ``save_*`` writes its figure as in `ntk_l2.experiments.plots` (PNG + PDF, atomically) and,
since the law summaries leave out the curves, stores what it draws beside the figure as
``<name>_data.json``, from which `ntk_l2.experiments.plots.replot` draws it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ntk_l2.common import io
from ntk_l2.experiments import plot_style as S


def _runs_for_figure(runs: Sequence[Mapping] | None) -> list[dict[str, Any]] | None:
    """What the laws figure reads of each run (no curves)."""
    keep = ("l2", "lr", "t_star", "t_star_eta_l2", "max_test_acc", "budget_test_acc")
    return None if runs is None else [{k: r.get(k) for k in keep} for r in runs]


def laws_figure(
    runs: Sequence[Mapping],
    title: str = "",
    reference_acc: float | None = None,
    theory: Sequence[Mapping] | None = None,
) -> Figure:
    """The paper's three panels: t* vs λ (a colour per η, dotted c/(ηλ) with c the median t*ηλ),
    best test accuracy vs λ (with the λ = 0 reference), accuracy at the fixed budget vs λ; theory
    open markers, dashed, where given."""
    etas = sorted({r["lr"] for r in runs} | {r["lr"] for r in theory or []})
    color = {eta: f"C{i}" for i, eta in enumerate(etas)}
    with S.style():
        fig, ((ax_t, ax_best, ax_budget),) = S.new_figure(1, 3, S.DOUBLE_COLUMN, 2.5)
        for source, style, suffix in ((runs, "o-", ""), (theory or [], "s--", " (theory)")):
            for eta in sorted({r["lr"] for r in source}):
                rs = sorted((r for r in source if r["lr"] == eta), key=lambda r: r["l2"])
                lam, kw = (
                    [r["l2"] for r in rs],
                    {
                        "color": color[eta],
                        "mfc": "none" if suffix else None,
                        "label": f"$\\eta = {S.sci(eta)}$" + suffix,
                    },
                )
                ax_t.loglog(lam, S.floats([r["t_star"] for r in rs]), style, **kw)
                ax_best.semilogx(lam, 100 * S.floats([r["max_test_acc"] for r in rs]), style, **kw)
                if any(r.get("budget_test_acc") is not None for r in rs):
                    ax_budget.semilogx(lam, 100 * S.floats([r.get("budget_test_acc") for r in rs]), style, **kw)
        lams = np.array(sorted({r["l2"] for r in runs}))
        for eta in sorted({r["lr"] for r in runs}):
            c = np.nanmedian(S.floats([r["t_star_eta_l2"] for r in runs if r["lr"] == eta]))
            ax_t.loglog(lams, c / (eta * lams), ":", color=color[eta], lw=0.8)
        if not ax_budget.lines:
            ax_budget.text(0.5, 0.5, "no budget $T$ given", ha="center", va="center", transform=ax_budget.transAxes)
        if reference_acc is not None:
            ax_best.axhline(100 * reference_acc, color="k", lw=0.8, ls=":", label=r"$\lambda = 0$")
        ax_t.set(xlabel=r"$\lambda$", ylabel=r"$t^*$ (steps)")
        S.panel_title(ax_t, "a", r"$t^*$ vs $\lambda$ (dotted: $c/(\eta\lambda)$)")
        ax_best.set(xlabel=r"$\lambda$", ylabel="best test accuracy (%)")
        S.panel_title(ax_best, "b", "best test accuracy")
        ax_budget.set(xlabel=r"$\lambda$", ylabel="test accuracy at the budget (%)")
        S.panel_title(ax_budget, "c", "accuracy at a fixed budget $T$")
        for ax in (ax_t, ax_best, ax_budget):
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        if title:
            fig.suptitle(title)
    return fig


def _save_with_data(path: str | Path, name: str, draw: Callable[..., Figure], data: dict[str, Any]) -> Path:
    """Draw ``draw(**data)``, write it, and store ``data`` as ``<stem>_data.json`` for `replot`."""
    png = S.save(path, draw(**data))
    io.save_json(_data_path(png), {"figure": name, "data": json.loads(json.dumps(data, default=_plain))})
    return png


def _data_path(png: Path) -> Path:
    """Where a law figure's data is stored: ``<stem>_data.json`` beside its PNG."""
    return png.with_name(f"{png.stem}_data.json")


def _plain(value: Any) -> Any:
    """JSON for NumPy values in figure data."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"figure data: {type(value).__name__} is not JSON-serializable")


def save_laws(
    path: str | Path,
    runs: Sequence[Mapping],
    title: str = "",
    reference_acc: float | None = None,
    theory: Sequence[Mapping] | None = None,
) -> Path:
    """`laws_figure`, written to ``path`` (PNG) and its PDF, its data to ``<stem>_data.json``."""
    data = {
        "runs": _runs_for_figure(runs),
        "title": title,
        "reference_acc": reference_acc,
        "theory": _runs_for_figure(theory),
    }
    return _save_with_data(path, "laws", laws_figure, data)


def autol2_figure(autol2: Mapping, constant: Sequence[Mapping], title: str = "", label: str = "AutoL2") -> Figure:
    """Test accuracy and λ over time: AutoL2 or a λ schedule (black, ``label``) against constant-λ
    runs (a colour per λ)."""
    colors = S.ranked_colors([str(i) for i in range(len(constant))], [r["l2"] for r in constant], cmap="plasma")
    with S.style():
        fig, ((ax_acc, ax_l2),) = S.new_figure(1, 2, S.DOUBLE_COLUMN, 2.5)
        for i, run in enumerate(constant):
            ax_acc.semilogx(
                np.maximum(S.floats(run["steps"]), 1),
                100 * S.floats(run["acc_test"]),
                color=colors[str(i)],
                label=f"$\\lambda = {S.sci(run['l2'])}$",
            )
        steps = np.maximum(S.floats(autol2["steps"]), 1)
        ax_acc.semilogx(steps, 100 * S.floats(autol2["acc_test"]), "k-", lw=1.6, label=label)
        ax_l2.loglog(steps, S.floats(autol2["l2"]), "k-", lw=1.6)
        ax_acc.set(xlabel=r"step $t$", ylabel="test accuracy (%)")
        S.panel_title(ax_acc, "a", rf"{label} vs constant $\lambda$")
        ax_l2.set(xlabel=r"step $t$", ylabel=r"$\lambda_t$")
        S.panel_title(ax_l2, "b", f"{label}: " + r"$\lambda_t$")
        ax_acc.legend()
        if title:
            fig.suptitle(title)
    return fig


def save_autol2(
    path: str | Path, autol2: Mapping, constant: Sequence[Mapping], title: str = "", label: str = "AutoL2"
) -> Path:
    """`autol2_figure`, written to ``path`` (PNG) and its PDF, its data to ``<stem>_data.json``."""
    data = {
        "autol2": {k: autol2[k] for k in ("steps", "acc_test", "l2")},
        "constant": [{k: r[k] for k in ("l2", "steps", "acc_test")} for r in constant],
        "title": title,
        "label": label,
    }
    return _save_with_data(path, "autol2", autol2_figure, data)


def optimal_l2_figure(summary: Mapping, kernel: Mapping) -> Figure:
    """Accuracy at the budget T against λ (single column): the grid search, the kernel-only curve,
    and the three λ_opt (one run, kernel, grid) as vertical lines."""
    grid = summary["grid"]
    with S.style():
        fig, ((ax,),) = S.new_figure(1, 1, S.SINGLE_COLUMN, 2.6)
        ax.semilogx(
            [g["l2"] for g in grid],
            100 * S.floats([g["budget_test_acc"] for g in grid]),
            "o-",
            label=f"grid search ({summary['mode']})",
        )
        ax.semilogx(
            kernel["l2_grid"], 100 * S.floats(kernel["acc_grid"]), "k--", lw=0.9, label="theory from the kernel"
        )
        for key, color, name in (
            ("l2_opt_one_run", "C1", "one run"),
            ("l2_opt_kernel", "C2", "kernel" + (" (gradient)" if summary.get("method") == "gradient" else "")),
            ("l2_opt_grid", "C0", "grid"),
        ):
            ax.axvline(
                summary[key],
                color=color,
                ls=":",
                lw=0.9,
                label=f"$\\lambda_{{\\rm opt}}$, {name}: ${S.sci(float(f'{summary[key]:.2g}'))}$",
            )
        ax.set(xlabel=r"$\lambda$", ylabel=f"test accuracy at $T = {summary['budget_step']}$ (%)")
        ax.set_title(f"{summary['dataset']}: optimal $\\lambda$ for a budget ($\\eta = {S.sci(summary['lr'])}$)")
        ax.legend(loc="best")
    return fig


def save_optimal_l2(path: str | Path, summary: Mapping, kernel: Mapping) -> Path:
    """`optimal_l2_figure`, written to ``path`` (PNG) and its PDF, its data to ``<stem>_data.json``."""
    keys = ("grid", "mode", "dataset", "lr", "budget_step", "l2_opt_one_run", "l2_opt_kernel", "l2_opt_grid")
    picked = {**{k: summary[k] for k in keys}, "method": summary.get("method", "grid")}
    data = {"summary": picked, "kernel": {k: kernel[k] for k in ("l2_grid", "acc_grid")}}
    return _save_with_data(path, "optimal_l2", optimal_l2_figure, data)
