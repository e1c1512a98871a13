"""``ntk-l2`` command line: predict and demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_problem, relative_error
from ntk_l2.cli import main
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_ensemble


@pytest.fixture
def kernel_file(tmp_path):
    p = make_problem(n=10, m=4, c=2)
    nngp = make_problem(n=10, m=4, c=2, seed=7)
    path = tmp_path / "kernel.npz"
    np.savez(path, k_train_train=p.k_train_train, y_train=p.y_train, k_test_train=p.k_test_train,
             fx_train_0=p.fx_train_0, fx_test_0=p.fx_test_0, nngp_train_train=nngp.k_train_train,
             nngp_test_train=nngp.k_test_train, nngp_test_test=nngp.k_test_test)
    return path, p, nngp


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_writes_all_keys(kernel_file, tmp_path, capsys):
    path, p, nngp = kernel_file
    out = tmp_path / "out.npz"
    code, stdout, _ = run(["predict", path, "--lr", 0.5, "--l2", 1e-3, "--degree", 3, "--times", "0,10,100", "--out", out], capsys)
    assert code == 0 and "wrote" in stdout
    with np.load(out) as res:
        assert set(res.files) == {"times", "fx_train", "fx_test", "cov_test"}
        assert res["fx_train"].shape == (3, 10, 2) and res["fx_test"].shape == (3, 4, 2)
        assert res["cov_test"].shape == (3, 4, 4)
        fx_train, fx_test = gradient_descent_mse_l2(p.k_train_train, p.y_train, 0.5, 1e-3, 3)(
            np.array([0.0, 10.0, 100.0]), p.fx_train_0, p.fx_test_0, p.k_test_train)
        assert relative_error(res["fx_test"], fx_test) == 0.0
        ens = gradient_descent_mse_l2_ensemble(p.k_train_train, nngp.k_train_train, p.y_train, 0.5, 1e-3, 3)
        cov = ens(np.array([0.0, 10.0, 100.0]), p.k_test_train, nngp.k_test_train, nngp.k_test_test).covariance
        assert relative_error(res["cov_test"], cov) == 0.0


def test_predict_discrete_and_xent(tmp_path, capsys):
    p = make_problem(n=9, m=3, c=3)
    y = np.eye(3)[np.arange(9) % 3] - 1 / 3
    path = tmp_path / "k.npz"
    np.savez(path, k_train_train=p.k_train_train, y_train=y, k_test_train=p.k_test_train)
    for extra in (["--discrete"], ["--loss", "xent"]):
        out = tmp_path / f"out{len(extra)}.npz"
        code, _, err = run(["predict", path, "--lr", 1, "--l2", 1e-3, "--degree", 2, "--times", "0,5,50", "--out", out, *extra], capsys)
        assert code == 0, err
        with np.load(out) as res:
            assert res["fx_test"].shape == (3, 3, 3) and np.all(np.isfinite(res["fx_test"]))


BAD = [
    (lambda d: d.pop("y_train"), [], "y_train: required key missing"),
    (lambda d: d.update(k_train_train=np.ones((10, 9))), [], "k_train_train: must be square"),
    (lambda d: d.update(k_test_train=np.ones((4, 3))), [], "k_test_train: expected shape"),
    (lambda d: d.update(fx_train_0=np.full((10, 2), np.nan)), [], "fx_train_0: contains 20 NaN"),
    (lambda d: d.update(k_tset_train=np.ones((4, 10))), [], "k_tset_train: unknown key"),
    (lambda d: d.pop("nngp_test_test"), [], "nngp_test_test: needed with"),
    (lambda d: None, ["--l2", "-1"], "l2: must be >= 0"),
    (lambda d: None, ["--lr", "0"], "--lr: must be > 0"),
    (lambda d: None, ["--degree", "1.5"], "--degree: must be a whole number >= 0"),
    (lambda d: None, ["--times", "1,-2"], "--times: times must be numbers >= 0"),
    (lambda d: None, ["--times", "1,x"], "--times: expected comma-separated numbers"),
    (lambda d: None, ["--loss", "hinge"], "--loss: invalid choice"),
    (lambda d: None, ["--lr", "1e6", "--discrete"], "--discrete: the covariance"),
]


@pytest.mark.parametrize("edit,flags,message", BAD)
def test_bad_input_is_one_line_exit_2_no_output(kernel_file, tmp_path, capsys, edit, flags, message):
    path, _, _ = kernel_file
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "never.npz"
    args = {"--lr": "0.5", "--l2": "1e-3", "--degree": "2", "--times": "0,1"}
    for flag, value in zip(flags[::2], flags[1::2]):
        args[flag] = value
    argv = ["predict", bad] + [x for kv in args.items() for x in kv] + ["--out", out] + [f for f in flags if f == "--discrete"]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ntk-l2: error: ")
    assert message in err
    assert not out.exists() and list(tmp_path.glob(".never*")) == []


def test_unstable_discrete_learning_rate_reports_limit(tmp_path, capsys):
    p = make_problem(n=10, m=4, c=2)
    path = tmp_path / "k.npz"
    np.savez(path, k_train_train=p.k_train_train, y_train=p.y_train)
    code, _, err = run(["predict", path, "--lr", 1e4, "--l2", 0, "--degree", 2, "--times", "5", "--out", tmp_path / "o.npz", "--discrete"], capsys)
    assert code == 2 and "learning_rate: 10000 is beyond the discrete-time stability limit" in err
    assert "limit at step 0 is learning_rate <=" in err


def test_missing_kernel_file(tmp_path, capsys):
    code, _, err = run(["predict", tmp_path / "nope.npz", "--lr", 1, "--l2", 0, "--degree", 2, "--times", "1", "--out", tmp_path / "o.npz"], capsys)
    assert code == 2 and "KERNEL: no such file" in err


def test_console_script_runs_and_import_is_quiet():
    """`import ntk_l2` prints nothing (TensorFlow's C++ log lines included)."""
    result = subprocess.run([sys.executable, "-c", "import ntk_l2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""


def test_demo_small_writes_figure_and_summary(tmp_path, capsys):
    code, stdout, err = run(["demo", "--small", "--out", tmp_path / "demo"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert (tmp_path / "demo" / "dynamics.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "comparison.png").stat().st_size > 10_000
    cmp = summary["comparison"]
    assert set(cmp["widths"]) == {"64", "256"} and cmp["median_rel_err_test_max"][1] < cmp["median_rel_err_test_max"][0]
    assert summary["degree"] == 4 and set(summary["curves"]) == {"0", "0.0001", "0.001", "0.01"}
    best = summary["best_test_accuracy"]
    assert all(0.5 < acc <= 1.0 for acc in best.values())  # digits are easy: the theory must learn them


@pytest.mark.parametrize("argv,message", [
    (["predict", "k.npz", "--l2", "0", "--degree", "2", "--times", "1", "--out", "o.npz"], "--lr"),
    (["predict", "k.npz", "--lr", "abc", "--l2", "0", "--degree", "2", "--times", "1", "--out", "o.npz"], "--lr"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_are_one_line_exit_2(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ntk-l2: error: ") and message in err


def test_compare_writes_summary_with_the_documented_keys(tmp_path, capsys):
    code, stdout, err = run(["compare", "--dataset", "digits", "--n-train", 64, "--n-test", 64, "--depth", 2,
                             "--widths", "32,128", "--l2", 1e-2, "--steps", 20, "--seeds", 2, "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert set(summary["widths"]) == {"32", "128"} and isinstance(summary["width_exponent"], float)
    for w in summary["widths"].values():
        for key in ("rel_err_test_max", "rel_err_test_mean", "acc_test_finite", "acc_test_theory", "kernel_ratio"):
            assert key in w
        assert len(w["acc_test_finite"]) == len(w["steps"])
        assert len(w["kernel_ratio"]) == len(w["kernel_steps"]) == len(w["kernel_ratio_theory"]) >= 2
        assert set(w["kernel_steps"]) <= set(w["steps"]) and w["kernel_steps"][-1] == w["steps"][-1]
    assert (tmp_path / "cmp" / "comparison.png").exists()


def test_compare_bad_widths(tmp_path, capsys):
    code, _, err = run(["compare", "--widths", "0,12", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--widths: expected comma-separated positive integers" in err


def test_deep_linear_writes_summary_and_figure(tmp_path, capsys):
    code, stdout, err = run(["deep-linear", "--depth", 3, "--regularizer", "minibatch", "--strength", 4, "--steps", 3000,
                             "--seeds", 2, "--out", tmp_path / "dl"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "dl" / "summary.json").read_text())
    assert summary["depth"] == 3 and summary["method"] == "gd"
    for key in ("loss", "imbalance_norm", "distance_to_minima"):
        assert len(summary[key]) == len(summary["steps"])
    assert len(summary["hessian_top"]) == len(summary["hessian_trace"]) == len(summary["hessian_steps"])
    assert summary["imbalance_norm"][-1] < summary["imbalance_norm"][0]  # SGD noise shrinks it
    assert all(t is not None and t < 100 for t in summary["optimization_phase_end"])
    assert (tmp_path / "dl" / "deep_linear.png").exists() and "imbalance" in stdout
    # matrix layers, gradient flow with L2: the imbalance decays as exp(−2ηλt) (DL2)
    code, _, err = run(["deep-linear", "--widths", "3,4,2", "--regularizer", "l2", "--strength", 1e-2, "--method", "flow",
                        "--lr", 0.05, "--steps", 500, "--out", tmp_path / "flow"], capsys)
    assert code == 0, err
    flow = json.loads((tmp_path / "flow" / "summary.json").read_text())
    assert flow["imbalance_norm"][-1] / flow["imbalance_norm"][0] == pytest.approx(np.exp(-2 * 0.05 * 1e-2 * 500), rel=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--regularizer", "minibatch", "--strength", 2.5], "strength: the batch size must be an integer"),
    (["--regularizer", "minibatch", "--method", "flow"], "method: minibatch noise has no gradient-flow limit"),
    (["--regularizer", "l2", "--strength", -1], "strength: must be finite and > 0"),
    (["--widths", "3,0,2"], "--widths: expected comma-separated positive integers"),
    (["--depth", 0], "--depth: must be >= 1"),
])
def test_deep_linear_bad_input_is_one_line_exit_2_no_output(tmp_path, capsys, flags, message):
    code, _, err = run(["deep-linear", *flags, "--out", tmp_path / "x"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_compare_with_momentum_and_minibatches(tmp_path, capsys):
    code, stdout, err = run(["compare", "--dataset", "digits", "--n-train", 64, "--n-test", 64, "--depth", 2,
                             "--widths", "32,128", "--l2", 1e-2, "--seeds", 2, "--momentum", 0.9, "--batch-size", 16,
                             "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err
    assert "heavy-ball momentum 0.9" in stdout and "batches of 16" in stdout
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    cfg = summary["config"]
    assert cfg["momentum"] == 0.9 and cfg["batch_size"] == 16 and not cfg["nesterov"]
    # --lr auto: half the momentum stability limit with ηλ/(1 − β) ≤ 0.1; --steps auto: 2(1 − β)/(ηλ)
    assert cfg["learning_rate"] * 1e-2 / 0.1 <= 0.1 * (1 + 1e-12)
    assert cfg["steps"] == round(2 * 0.1 / (cfg["learning_rate"] * 1e-2))
    assert summary["continuous_theory"] == "momentum flow"
    code, stdout, err = run(["compare", "--dataset", "digits", "--n-train", 64, "--n-test", 64, "--depth", 2,
                             "--widths", "32", "--l2", 1e-2, "--steps", 10, "--seeds", 2, "--momentum", 0.5, "--nesterov",
                             "--out", tmp_path / "nag"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "nag" / "summary.json").read_text())
    assert summary["config"]["nesterov"] and summary["continuous_theory"] is None and "Nesterov momentum 0.5" in stdout


@pytest.mark.parametrize("flags, message", [
    (["--momentum", 1], "argument --momentum: must be in [0, 1), got '1'"),
    (["--momentum", -0.5], "argument --momentum: must be in [0, 1)"),
    (["--momentum", "nan"], "argument --momentum: must be finite"),
    (["--momentum", "fast"], "argument --momentum: expected a number"),
    (["--batch-size", 0], "argument --batch-size: must be >= 1"),
    (["--batch-size", 2.5], "argument --batch-size: expected a whole number"),
    (["--nesterov"], "--nesterov: needs --momentum > 0"),
    (["--batch-size", 65], "--batch-size: 65 exceeds the 64 training points (--n-train)"),
    (["--nesterov", "--momentum", 0.9, "--lr", 100.0], "learning_rate: learning_rate * l2 = 1 must be <="),
])
def test_compare_bad_optimizer_flags_are_one_line_exit_2_no_output(tmp_path, capsys, flags, message):
    code, _, err = run(["compare", "--dataset", "digits", "--n-train", 64, "--n-test", 32, "--widths", "16",
                        "--steps", 5, *flags, "--out", tmp_path / "x"], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()
