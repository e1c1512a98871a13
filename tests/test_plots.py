"""Figures (`ntk_l2/experiments/plots.py`, `plot_comparison.py`, `plot_style.py`): PNG + PDF written
atomically at column widths, mathtext labels, the comparison's medians, bands, per-width theory and
time-scale marks, and `replot` drawing a result directory's figures again from its stored results."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from ntk_l2.common import io
from ntk_l2.data import datasets as data
from ntk_l2.experiments import plot_style, plots
from ntk_l2.experiments.compare import CompareConfig, run_comparison

# the smallest comparison of tests/test_compare.py: about 20 s on 2 cores, most of it compilation
SMALL = CompareConfig(depth=2, widths=(32, 128), learning_rate=5.0, l2=1e-2, steps=12, seeds=2, n_records=6, n_probe=4)


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """A compare result directory as ``ntk-l2 compare`` writes it: runs/, comparison.png/.pdf, summary.json."""
    out = tmp_path_factory.mktemp("compare")
    run_comparison(data.load_digits(n_train=48, n_test=40, seed=0), SMALL, out_dir=out)  # writes the figure too
    return out


@pytest.fixture(scope="module")
def summary(compare_dir):
    return json.loads((compare_dir / "summary.json").read_text())


def _dynamics():
    t = np.concatenate([[0.0], np.logspace(0, 4, 30)])
    curves = {}
    for lam in (0.0, 1e-3, 1e-2):
        loss = 0.5 * np.exp(-t / 50) + 0.1 + 0.2 * (1 - np.exp(-lam * t))
        curves[f"{lam:g}"] = {
            "loss_train": (0.5 * loss).tolist(),
            "loss_test": loss.tolist(),
            "acc_train": (1 - loss).tolist(),
            "acc_test": [None] + (0.9 - loss[1:]).tolist(),
        }
    return t.tolist(), curves


def _runs(shift=0.0):
    return [
        {
            "l2": lam,
            "lr": eta,
            "t_star": (1.3 + shift) / (eta * lam),
            "t_star_eta_l2": 1.3 + shift,
            "max_test_acc": 0.9 - lam + shift,
            "budget_test_acc": 0.8 - lam,
            "steps": [0, 1],
            "acc_test": [0.1, 0.2],
        }
        for eta in (0.5, 1.0)
        for lam in (1e-3, 1e-2, 1e-1)
    ]


def _autol2():
    steps = np.unique(np.round(np.logspace(0, 3, 30))).astype(int).tolist()
    auto = {
        "steps": steps,
        "acc_test": np.linspace(0.3, 0.9, len(steps)).tolist(),
        "l2": np.where(np.asarray(steps) < 100, 1e-2, 1e-3).tolist(),
    }
    constant = [
        {"l2": lam, "steps": steps, "acc_test": np.linspace(0.3, 0.85, len(steps)).tolist()} for lam in (1e-3, 1e-2)
    ]
    return auto, constant


def _optimal():
    grid = [{"l2": lam, "budget_test_acc": 0.8 - (np.log10(lam) + 2.5) ** 2 / 20} for lam in np.logspace(-4, -1, 7)]
    summary = {
        "grid": grid,
        "mode": "theory",
        "dataset": "digits",
        "lr": 1.0,
        "budget_step": 500,
        "l2_opt_one_run": 2.6e-3,
        "l2_opt_kernel": 3.1e-3,
        "l2_opt_grid": 3.16e-3,
    }
    return summary, {"l2_grid": [1e-4, 1e-3, 1e-2, 1e-1], "acc_grid": [0.6, 0.78, 0.77, 0.6]}


def _deep_linear():
    steps = np.unique(np.round(np.logspace(0, 3, 20))).astype(int)
    decay = np.exp(-steps / 100.0)
    return {
        "config": {"widths": [1, 1, 1, 1], "regularizer": "l2", "strength": 0.01, "learning_rate": 0.05},
        "method": "gd",
        "min_loss": 0.2,
        "steps": steps.tolist(),
        "loss": (0.2 + decay).tolist(),
        "imbalance_norm": (3 * decay).tolist(),
        "distance_to_minima": decay.tolist(),
        "hessian_steps": steps[::5].tolist(),
        "hessian_top": [4.0, 9.0, 10.0, 10.5],
        "hessian_trace": [5.0, 9.5, 10.2, 10.6],
        "optimization_phase_end": [5.0, None],
        "imbalance_half_time": [70.0, 71.0],
        "diverged": [False, False],
    }


def _figures(summary):
    """Every figure kind, built from small data (``summary``: the quick comparison)."""
    t, curves = _dynamics()
    auto, constant = _autol2()
    return {
        "dynamics": plots.dynamics_figure(t, curves, plots.dynamics_title("fc", 4, 1.0), learning_rate=1.0),
        "comparison": plots.comparison_figure(summary),
        "laws": plots.laws_figure(_runs(), "digits: a sweep", reference_acc=0.85, theory=_runs(0.1)),
        "autol2": plots.autol2_figure(auto, constant, "digits: AutoL2"),
        "optimal_l2": plots.optimal_l2_figure(*_optimal()),
        "deep_linear": plots.deep_linear_figure(_deep_linear()),
    }


def _texts(fig) -> list[Text]:
    FigureCanvasAgg(fig).draw()  # lays out and renders: tick labels exist, every mathtext string parses
    return [t for t in fig.findobj(Text) if t.get_text().strip()]


def _outside_math(text: str) -> str:
    parts = re.split(r"(?<!\\)\$", text)
    return "".join(parts[::2])


def _axes_with_title(fig, start: str):
    return next(ax for ax in fig.axes if ax.get_title(loc="left").startswith(start))


def test_every_figure_is_png_and_pdf_at_column_width(tmp_path, summary):
    """Each save_* writes <name>.png (≥ 200 dpi, at most the 7 in text width) and a PDF beside it,
    leaving no temporary file; a figure named otherwise than .png is refused."""
    t, curves = _dynamics()
    auto, constant = _autol2()
    written = [
        plots.save_dynamics(tmp_path / "dynamics.png", t, curves, "demo", learning_rate=1.0),
        plots.save_comparison(tmp_path / "comparison.png", summary),
        plots.save_laws(tmp_path / "laws.png", _runs(), "a sweep", 0.85, _runs(0.1)),
        plots.save_autol2(tmp_path / "autol2.png", auto, constant, "AutoL2"),
        plots.save_optimal_l2(tmp_path / "optimal_l2.png", *_optimal()),
        plots.save_deep_linear(tmp_path / "deep_linear.png", _deep_linear()),
    ]
    for png in written:
        pdf = png.with_suffix(".pdf")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-", png
        with Image.open(png) as image:
            dpi = image.info["dpi"][0]
            assert dpi >= 200, (png, dpi)
            assert image.size[0] / dpi <= plot_style.DOUBLE_COLUMN + 0.05, (png, image.size)
    with Image.open(tmp_path / "optimal_l2.png") as image:
        assert image.size[0] / plot_style.PNG_DPI <= plot_style.SINGLE_COLUMN + 0.05  # a single-column figure
    assert not list(tmp_path.glob(".*")), "temporary files left behind"
    with pytest.raises(ValueError, match="path: a figure is named <name>.png"):
        plots.save_deep_linear(tmp_path / "deep_linear.svg", _deep_linear())


def test_labels_are_mathtext_and_fonts_are_paper_sized(summary):
    """No raw pseudo-TeX (^{, _{, ‖) or Greek letters outside $…$; the math is real mathtext
    (the canvas draws it); every text is 6–9 pt."""
    for name, fig in _figures(summary).items():
        texts = _texts(fig)
        assert any("$" in t.get_text() for t in texts), name
        for t in texts:
            outside = _outside_math(t.get_text())
            assert not re.search(r"\^\{|_\{|‖|[ηλθΘβ]", outside), (name, t.get_text())
            assert 6 <= t.get_fontsize() <= 9, (name, t.get_text(), t.get_fontsize())


def test_comparison_draws_medians_with_min_max_bands(summary):
    """Panel (a) is the median over seeds of the stored per-seed errors (not their mean), with a
    band from their min to their max, for each width in its own colour."""
    s = copy.deepcopy(summary)
    w = s["widths"]["32"]
    base = np.asarray(w["rel_err_test"]["discrete"])
    w["rel_err_test"]["discrete"] = [(base[0] * 1.0).tolist(), (base[0] * 1.1).tolist(), (base[0] * 3.0).tolist()]
    ax = _axes_with_title(plots.comparison_figure(s), "(a)")
    steps = np.asarray(w["steps"], float)
    expected = 1.1 * base[0][steps > 0]
    lines = [line for line in ax.lines if len(line.get_ydata()) == len(expected)]
    assert any(np.allclose(line.get_ydata(), expected) for line in lines)
    assert not any(np.allclose(line.get_ydata(), np.mean([1.0, 1.1, 3.0]) * base[0][steps > 0]) for line in lines)
    low, high = base[0][steps > 0], 3.0 * base[0][steps > 0]

    def spans(collection) -> bool:
        ys = collection.get_paths()[0].vertices[:, 1]
        return all(np.isclose(ys, v, rtol=1e-9).any() for v in np.concatenate([low, high]))

    assert sum(spans(c) for c in ax.collections) == 1  # the band of width 32 runs from min to max over seeds


def test_comparison_theory_lines_and_labels(summary):
    """The width-independent decays are drawn once, labelled "every width", as (1 − ηλ)^… without
    momentum and a_t^… with it; a stored theory that differs between widths gets a line per width;
    the accuracy theory is drawn per width (dashed, in the width's colour)."""
    fig = plots.comparison_figure(summary)
    kernel = [t.get_text() for t in _axes_with_title(fig, "(c)").get_legend().get_texts()]
    norms = [t.get_text() for t in _axes_with_title(fig, "(d)").get_legend().get_texts()]
    assert kernel == [r"$(1-\eta\lambda)^{2(k-1)t}$" + "\nevery width"]
    assert r"$(1-\eta\lambda)^{t}$" + "\nevery width" in norms
    accuracy = _axes_with_title(fig, "(b)")
    assert sum(line.get_linestyle() == "--" for line in accuracy.lines) == len(summary["widths"])

    momentum = copy.deepcopy(summary)
    momentum["config"]["momentum"] = 0.5
    fig = plots.comparison_figure(momentum)
    assert [t.get_text() for t in _axes_with_title(fig, "(c)").get_legend().get_texts()] == [
        r"$a_t^{2(k-1)}$" + "\nevery width"
    ]
    assert r"$a_t$" + "\nevery width" in [t.get_text() for t in _axes_with_title(fig, "(d)").get_legend().get_texts()]

    differing = copy.deepcopy(summary)
    differing["widths"]["32"]["kernel_ratio_theory"] = [2 * v for v in differing["widths"]["32"]["kernel_ratio_theory"]]
    legend = _axes_with_title(plots.comparison_figure(differing), "(c)").get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [r"$(1-\eta\lambda)^{2(k-1)t}$, width 32", r"$(1-\eta\lambda)^{2(k-1)t}$, width 128"]


def _vertical_lines(ax):
    return [line for line in ax.lines if len(set(np.atleast_1d(line.get_xdata()))) == 1 and line.get_linestyle() == ":"]


def test_time_scale_is_marked_only_inside_the_run(summary):
    """t = 1/(ηλ) = 20 lies beyond the 12 steps of the quick run: no mark. With λ = 0.02 it is 10:
    marked in the four time panels and named in the key; with momentum β it is (1 − β)/(ηλ)."""
    fig = plots.comparison_figure(summary)
    assert not any(_vertical_lines(ax) for ax in fig.axes)
    inside = copy.deepcopy(summary)
    inside["config"]["l2"] = 0.02
    fig = plots.comparison_figure(inside)
    for letter in "abcd":
        assert [line.get_xdata()[0] for line in _vertical_lines(_axes_with_title(fig, f"({letter})"))] == [
            pytest.approx(10.0)
        ]
    key = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert r"$t = 1/(\eta\lambda)$" in key
    inside["config"]["momentum"] = 0.5
    fig = plots.comparison_figure(inside)
    assert [line.get_xdata()[0] for line in _vertical_lines(_axes_with_title(fig, "(a)"))] == [pytest.approx(5.0)]
    assert r"$t = (1-\beta)/(\eta\lambda)$" in [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]


def test_older_results_without_per_seed_values_are_drawn_as_means(summary):
    old = copy.deepcopy(summary)
    for w in old["widths"].values():
        for key in ("acc_test_finite_seeds", "acc_test_theory_seeds", "kernel_ratio_seeds", "layer_norm_ratio_seeds"):
            del w[key]
    fig = plots.comparison_figure(old)
    key = " ".join(t.get_text() for t in fig.axes[-1].get_legend().get_texts())
    assert "mean over seeds in (b, c, d)" in key and "median over seeds" in key
    acc = _axes_with_title(fig, "(b)")
    w = old["widths"]["128"]
    assert any(np.allclose(line.get_ydata(), 100 * np.asarray(w["acc_test_finite"], float)) for line in acc.lines)


def _figure_files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix in (".png", ".pdf")}


def test_replot_redraws_a_compare_directory_identically(compare_dir, tmp_path):
    """Deleting the figures and calling replot gives back the same files, byte for byte, from
    summary.json alone (the runs are not touched)."""
    before = _figure_files(compare_dir)
    assert set(before) == {"comparison.png", "comparison.pdf"}
    runs = {p.name: p.stat().st_mtime_ns for p in (compare_dir / "runs").iterdir()}
    for name in before:
        (compare_dir / name).unlink()
    written = plots.replot(compare_dir)
    assert sorted(p.name for p in written) == sorted(before)
    assert _figure_files(compare_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in (compare_dir / "runs").iterdir()} == runs


def test_replot_deep_linear_and_law_results(tmp_path):
    """A deep-linear directory redraws from summary.json; a sweep from laws_data.json, which
    save_laws stores beside its figure; a sweep without it is refused in one line."""
    dl = tmp_path / "dl"
    summary = _deep_linear()
    plots.save_deep_linear(dl / "deep_linear.png", summary)
    io.save_json(dl / "summary.json", summary)
    before = _figure_files(dl)
    assert sorted(p.name for p in plots.replot(dl)) == sorted(before) and _figure_files(dl) == before

    sweep = tmp_path / "sweep"
    plots.save_laws(sweep / "laws.png", _runs(), "a sweep", 0.85, _runs(0.1))
    io.save_json(sweep / "summary.json", {"mode": "finite", "runs": _runs(), "t_star_eta_l2_spread": 1.0})
    before = _figure_files(sweep)
    assert sorted(p.name for p in plots.replot(sweep)) == ["laws.pdf", "laws.png"] and _figure_files(sweep) == before
    (sweep / "laws_data.json").unlink()
    with pytest.raises(ValueError) as err:
        plots.replot(sweep)
    assert "\n" not in str(err.value) and str(sweep) in str(err.value) and "laws_data.json" in str(err.value)


@pytest.mark.parametrize("content", [None, "", "not json", "[1, 2]", json.dumps({"something": "else"})])
def test_replot_refuses_what_is_not_a_result_directory_in_one_line(tmp_path, content):
    directory = tmp_path / "not_a_result"
    directory.mkdir()
    if content is not None:
        (directory / "summary.json").write_text(content)
    with pytest.raises(ValueError) as err:
        plots.replot(directory)
    message = str(err.value)
    assert "\n" not in message and message.startswith("result_dir: ") and str(directory) in message
    assert not list(directory.glob("*.png"))


def test_replot_refuses_a_file_and_a_missing_directory(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for path in (tmp_path / "file.txt", tmp_path / "missing"):
        with pytest.raises(ValueError, match=r"^result_dir: .* is not a directory$"):
            plots.replot(path)
