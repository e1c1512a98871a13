"""The look shared by every figure: column-width layouts, 8 pt fonts, mathtext labels, colours
that identify a width (or a λ) in every panel, and vector + raster output written atomically.

Figures are `matplotlib.figure.Figure` objects built without pyplot, so drawing one never changes
the backend or the figures of a notebook session; the style is applied with `matplotlib.rc_context`
while a figure is built and while it is saved, never globally.

Every figure is written twice beside each other, each file atomically (`ntk_l2.common.io.save_figure`):
``<name>.png`` at `PNG_DPI` dots per inch and ``<name>.pdf`` (vector, TrueType fonts embedded,
no creation date, so drawing the same data again gives the same bytes).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntk_l2.common import io

SINGLE_COLUMN = 3.4  # inches: one column of a two-column paper
DOUBLE_COLUMN = 7.0  # inches: the full text width
PNG_DPI = 300
VECTOR_SUFFIX = ".pdf"
BAND = "min–max over seeds"  # what the shaded bands and error bars span, said in every legend that shows one

STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "figure.titlesize": 8.5,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "legend.borderaxespad": 0.3,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.0,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "mathtext.fontset": "dejavusans",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "savefig.dpi": PNG_DPI,
}


@contextmanager
def style() -> Iterator[None]:
    """The figure style, for the time a figure is built or saved (nothing global changes)."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, Any]:
    """A constrained-layout figure of ``width`` × ``height`` inches (call inside `style`)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def vector_path(png: str | Path) -> Path:
    """The vector file written beside a figure's PNG."""
    return Path(png).with_suffix(VECTOR_SUFFIX)


def save(path: str | Path, fig: Figure) -> Path:
    """Write ``fig`` as ``path`` (PNG, `PNG_DPI`) and `vector_path` (PDF), each atomically; returns the PNG path."""
    png = Path(path)
    if png.suffix.lower() != ".png":
        raise ValueError(f"path: a figure is named <name>.png (its PDF goes beside it), got {png}")
    with style():
        tight = {"bbox_inches": "tight", "pad_inches": 0.02}  # trims the margin; never wider than the layout
        io.save_figure(png, fig, dpi=PNG_DPI, **tight)
        io.save_figure(vector_path(png), fig, metadata={"CreationDate": None}, **tight)
    return png


def ranked_colors(keys: Sequence[str], values: Sequence[float], cmap: str = "viridis") -> dict[str, Any]:
    """One colour per key, ordered by ``values`` along a sequential colour map (0.72 to 0.05 of
    viridis: no pale yellow, readable in print and in grey): the same width has the same colour in
    every panel of a figure, and the largest value is the darkest."""
    order = np.argsort(np.asarray(values, float), kind="stable")
    grid = np.linspace(0.72, 0.05, len(keys)) if len(keys) > 1 else np.array([0.3])
    colors = matplotlib.colormaps[cmap](grid)
    return {keys[i]: tuple(colors[rank]) for rank, i in enumerate(order)}


def floats(values: Any) -> np.ndarray:
    """Stored numbers (JSON lists, with null for undefined values) as a float array, null → NaN."""
    return np.array(values, dtype=float)


def median_band(per_seed: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, min, max) over axis 0 (seeds), ignoring NaN (a diverged seed); NaN where no seed is defined."""
    a = floats(per_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        return np.nanmedian(a, axis=0), np.nanmin(a, axis=0), np.nanmax(a, axis=0)


def sci(x: float) -> str:
    """A number as mathtext (inside $…$), 4 significant digits: 0, 0.5, 10.7, 10^{-2}, 2\\times10^{-3}
    (powers of ten below 0.1 and from 1000)."""
    if x == 0 or not math.isfinite(x) or 0.1 <= abs(x) < 1e3:
        return f"{x:.4g}"
    exponent = math.floor(math.log10(abs(x)))
    mantissa = x / 10.0**exponent
    if abs(mantissa - round(mantissa)) < 1e-9:
        mantissa = round(mantissa)
    head = "" if mantissa == 1 else f"{mantissa:.4g}\\times"
    return f"{head}10^{{{exponent}}}"


def time_scale(learning_rate: float, l2: float, momentum: float = 0.0) -> tuple[float, str] | None:
    """The time scale of L2 decay and its label: t = 1/(ηλ), or (1 − β)/(ηλ) with momentum β (the
    decay per step is then ηλ/(1 − β)); None without L2."""
    if not (l2 > 0 and learning_rate > 0):
        return None
    if momentum:
        return (1.0 - momentum) / (learning_rate * l2), r"$t = (1-\beta)/(\eta\lambda)$"
    return 1.0 / (learning_rate * l2), r"$t = 1/(\eta\lambda)$"


def mark_time(ax: Any, t: float, steps: Any, label: str | None = None, color: Any = "0.45") -> bool:
    """A thin vertical dotted line at step ``t``, drawn only where it falls inside the plotted steps
    (positive steps on a log axis); returns whether it was drawn."""
    s = floats(steps)
    s = s[np.isfinite(s) & (s > 0)] if ax.get_xscale() == "log" else s[np.isfinite(s)]
    inside = bool(s.size) and s.min() <= t <= s.max()
    if inside:
        ax.axvline(t, color=color, ls=":", lw=0.8, label=label)
    return inside


def panel_title(ax: Any, letter: str, text: str) -> None:
    """A panel's title, left-aligned after its letter: "(a) text"."""
    ax.set_title(f"({letter}) {text}", loc="left")


def log_ticks_at(ax: Any, values: Sequence[float]) -> None:
    """Label a log x axis at exactly ``values`` (e.g. the widths), plain integers, no minor labels."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(sorted(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
