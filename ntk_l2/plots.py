"""Matplotlib figures (Agg backend; written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ntk_l2 import io  # noqa: E402


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
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
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
    try:
        return io.save_figure(path, fig, dpi=120)
    finally:
        plt.close(fig)
