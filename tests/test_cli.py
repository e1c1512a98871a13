"""``ntk-l2`` command line: predict, demo, compare, deep-linear; help texts, one-line failures, downloads."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_problem, relative_error
from ntk_l2.cli.commands import main
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_ensemble


@pytest.fixture
def kernel_file(tmp_path):
    p = make_problem(n=10, m=4, c=2)
    nngp = make_problem(n=10, m=4, c=2, seed=7)
    path = tmp_path / "kernel.npz"
    np.savez(
        path,
        k_train_train=p.k_train_train,
        y_train=p.y_train,
        k_test_train=p.k_test_train,
        fx_train_0=p.fx_train_0,
        fx_test_0=p.fx_test_0,
        nngp_train_train=nngp.k_train_train,
        nngp_test_train=nngp.k_test_train,
        nngp_test_test=nngp.k_test_test,
    )
    return path, p, nngp


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_writes_all_keys(kernel_file, tmp_path, capsys):
    path, p, nngp = kernel_file
    out = tmp_path / "out.npz"
    code, stdout, _ = run(
        ["predict", path, "--lr", 0.5, "--l2", 1e-3, "--degree", 3, "--times", "0,10,100", "--out", out], capsys
    )
    assert code == 0 and "wrote" in stdout
    with np.load(out) as res:
        assert set(res.files) == {"times", "fx_train", "fx_test", "cov_test"}
        assert res["fx_train"].shape == (3, 10, 2) and res["fx_test"].shape == (3, 4, 2)
        assert res["cov_test"].shape == (3, 4, 4)
        fx_train, fx_test = gradient_descent_mse_l2(p.k_train_train, p.y_train, 0.5, 1e-3, 3)(
            np.array([0.0, 10.0, 100.0]), p.fx_train_0, p.fx_test_0, p.k_test_train
        )
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
        code, _, err = run(
            ["predict", path, "--lr", 1, "--l2", 1e-3, "--degree", 2, "--times", "0,5,50", "--out", out, *extra], capsys
        )
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
    for flag, value in zip(flags[::2], flags[1::2], strict=False):
        args[flag] = value
    argv = (
        ["predict", bad]
        + [x for kv in args.items() for x in kv]
        + ["--out", out]
        + [f for f in flags if f == "--discrete"]
    )
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ntk-l2: error: ")
    assert message in err
    assert not out.exists() and list(tmp_path.glob(".never*")) == []


def test_unstable_discrete_learning_rate_reports_limit(tmp_path, capsys):
    p = make_problem(n=10, m=4, c=2)
    path = tmp_path / "k.npz"
    np.savez(path, k_train_train=p.k_train_train, y_train=p.y_train)
    code, _, err = run(
        [
            "predict",
            path,
            "--lr",
            1e4,
            "--l2",
            0,
            "--degree",
            2,
            "--times",
            "5",
            "--out",
            tmp_path / "o.npz",
            "--discrete",
        ],
        capsys,
    )
    assert code == 2 and "learning_rate: 10000 is beyond the discrete-time stability limit" in err
    assert "limit at step 0 is learning_rate <=" in err


def test_missing_kernel_file(tmp_path, capsys):
    code, _, err = run(
        [
            "predict",
            tmp_path / "nope.npz",
            "--lr",
            1,
            "--l2",
            0,
            "--degree",
            2,
            "--times",
            "1",
            "--out",
            tmp_path / "o.npz",
        ],
        capsys,
    )
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


@pytest.mark.parametrize(
    "argv,message",
    [
        (["predict", "k.npz", "--l2", "0", "--degree", "2", "--times", "1", "--out", "o.npz"], "--lr"),
        (["predict", "k.npz", "--lr", "abc", "--l2", "0", "--degree", "2", "--times", "1", "--out", "o.npz"], "--lr"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_exit_2(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ntk-l2: error: ") and message in err


def test_compare_writes_summary_with_the_documented_keys(tmp_path, capsys):
    code, stdout, err = run(
        [
            "compare",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            64,
            "--depth",
            2,
            "--widths",
            "32,128",
            "--l2",
            1e-2,
            "--steps",
            20,
            "--seeds",
            2,
            "--out",
            tmp_path / "cmp",
        ],
        capsys,
    )
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
    code, stdout, err = run(
        [
            "deep-linear",
            "--depth",
            3,
            "--regularizer",
            "minibatch",
            "--strength",
            4,
            "--steps",
            3000,
            "--seeds",
            2,
            "--out",
            tmp_path / "dl",
        ],
        capsys,
    )
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
    code, _, err = run(
        [
            "deep-linear",
            "--widths",
            "3,4,2",
            "--regularizer",
            "l2",
            "--strength",
            1e-2,
            "--method",
            "flow",
            "--lr",
            0.05,
            "--steps",
            500,
            "--out",
            tmp_path / "flow",
        ],
        capsys,
    )
    assert code == 0, err
    flow = json.loads((tmp_path / "flow" / "summary.json").read_text())
    assert flow["imbalance_norm"][-1] / flow["imbalance_norm"][0] == pytest.approx(
        np.exp(-2 * 0.05 * 1e-2 * 500), rel=1e-6
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--regularizer", "minibatch", "--strength", 2.5], "strength: the batch size must be an integer"),
        (["--regularizer", "minibatch", "--method", "flow"], "method: minibatch noise has no gradient-flow limit"),
        (["--regularizer", "l2", "--strength", -1], "strength: must be finite and > 0"),
        (["--widths", "3,0,2"], "--widths: expected comma-separated positive integers"),
        (["--depth", 0], "--depth: must be >= 1"),
    ],
)
def test_deep_linear_bad_input_is_one_line_exit_2_no_output(tmp_path, capsys, flags, message):
    code, _, err = run(["deep-linear", *flags, "--out", tmp_path / "x"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_compare_with_momentum_and_minibatches(tmp_path, capsys):
    code, stdout, err = run(
        [
            "compare",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            64,
            "--depth",
            2,
            "--widths",
            "32,128",
            "--l2",
            1e-2,
            "--seeds",
            2,
            "--momentum",
            0.9,
            "--batch-size",
            16,
            "--out",
            tmp_path / "cmp",
        ],
        capsys,
    )
    assert code == 0, err
    assert "heavy-ball momentum 0.9" in stdout and "batches of 16" in stdout
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    cfg = summary["config"]
    assert cfg["momentum"] == 0.9 and cfg["batch_size"] == 16 and not cfg["nesterov"]
    # --lr auto: half the momentum stability limit with ηλ/(1 − β) ≤ 0.1; --steps auto: 2(1 − β)/(ηλ)
    assert cfg["learning_rate"] * 1e-2 / 0.1 <= 0.1 * (1 + 1e-12)
    assert cfg["steps"] == round(2 * 0.1 / (cfg["learning_rate"] * 1e-2))
    assert summary["continuous_theory"] == "momentum flow"
    code, stdout, err = run(
        [
            "compare",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            64,
            "--depth",
            2,
            "--widths",
            "32",
            "--l2",
            1e-2,
            "--steps",
            10,
            "--seeds",
            2,
            "--momentum",
            0.5,
            "--nesterov",
            "--out",
            tmp_path / "nag",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "nag" / "summary.json").read_text())
    assert summary["config"]["nesterov"] and summary["continuous_theory"] is None and "Nesterov momentum 0.5" in stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--momentum", 1], "argument --momentum: must be in [0, 1), got '1'"),
        (["--momentum", -0.5], "argument --momentum: must be in [0, 1)"),
        (["--momentum", "nan"], "argument --momentum: must be finite"),
        (["--momentum", "fast"], "argument --momentum: expected a number"),
        (["--batch-size", 0], "argument --batch-size: must be >= 1"),
        (["--batch-size", 2.5], "argument --batch-size: expected a whole number"),
        (["--nesterov"], "--nesterov: needs --momentum > 0"),
        (["--batch-size", 65], "--batch-size: 65 exceeds the 64 training points (--n-train)"),
        (["--nesterov", "--momentum", 0.9, "--lr", 100.0], "learning_rate: learning_rate * l2 = 1 must be <="),
    ],
)
def test_compare_bad_optimizer_flags_are_one_line_exit_2_no_output(tmp_path, capsys, flags, message):
    code, _, err = run(
        [
            "compare",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            32,
            "--widths",
            "16",
            "--steps",
            5,
            *flags,
            "--out",
            tmp_path / "x",
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


# --- help texts, one-line failures in a fresh process, downloads -------------------------------------


def _all_parsers():
    """(name, parser) for the top-level parser and every subcommand."""
    from ntk_l2.cli.args import build_parser

    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    return [("ntk-l2", parser), *subs[0].choices.items()]


def test_every_flag_has_a_help_text_that_shows_its_default():
    from ntk_l2.cli.args import help_with_default

    parsers = _all_parsers()
    assert {name for name, _ in parsers} >= {
        "predict",
        "demo",
        "compare",
        "sweep",
        "optimal-l2",
        "autol2",
        "deep-linear",
    }
    checked = 0
    for name, parser in parsers:
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            flag = f"{name} {'/'.join(action.option_strings) or action.dest}"
            text = help_with_default(action)
            assert action.help and action.help.strip(), f"{flag}: no help text"
            if action.option_strings:
                assert "(required)" in text if action.required else "default" in text, f"{flag}: {text!r}"
                assert "None" not in text, f"{flag}: a None default needs words: {text!r}"
            checked += 1
        rendered = parser.format_help()  # the %-formatting of every help line works
        flags = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        assert "(default: " in rendered or name == "ntk-l2" or not flags  # `plot DIR` has no optional flag
    assert checked > 60


def test_help_shows_defaults_as_they_are_typed(capsys):
    assert main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 256,1024,2048)" in text and "(default: auto)" in text and "(default: 0.01)" in text
    assert "--float64 train in float64 instead of float32 (default: off)" in text
    assert "(required)" in text


def _fresh_cli(argv, env=None):
    """``python -m ntk_l2.cli ARGV`` in a fresh interpreter."""
    import os

    full_env = {k: v for k, v in os.environ.items() if k not in ("NTK_L2_MNIST_DIR", "NTK_L2_DATA")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ntk_l2.cli", *map(str, argv)], capture_output=True, text=True, timeout=300, env=full_env
    )


def _assert_one_line_failure(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ntk-l2: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_missing_mnist_is_one_line_naming_the_flag_and_the_ways_out(tmp_path):
    result = _fresh_cli(
        ["compare", "--dataset", "mnist", "--out", tmp_path / "cmp"], env={"NTK_L2_DATA": str(tmp_path)}
    )
    _assert_one_line_failure(
        result,
        "--data-dir: mnist files not found",
        str(tmp_path / "mnist"),
        "--download",
        "NTK_L2_MNIST_DIR",
        "t10k-images-idx3-ubyte.gz",
    )
    assert not (tmp_path / "cmp").exists()


def test_missing_kernel_file_is_one_line_in_a_fresh_process(tmp_path):
    result = _fresh_cli(
        [
            "predict",
            tmp_path / "absent.npz",
            "--lr",
            1,
            "--l2",
            0,
            "--degree",
            2,
            "--times",
            1,
            "--out",
            tmp_path / "o.npz",
        ]
    )
    _assert_one_line_failure(result, "KERNEL: no such file", "absent.npz")


@pytest.mark.parametrize("sub", ["predict", "compare"])
def test_unwritable_out_is_one_line_in_a_fresh_process(tmp_path, sub):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "o.npz"  # below a regular file: no one can write there, not even root
    argv = (
        ["predict", tmp_path / "k.npz", "--lr", 1, "--l2", 0, "--degree", 2, "--times", 1]
        if sub == "predict"
        else ["compare", "--n-train", 32]
    )
    result = _fresh_cli([*argv, "--out", out])
    _assert_one_line_failure(result, "--out: cannot create", "is not a directory")


def test_ntk_l2_mnist_dir_is_the_default_data_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NTK_L2_MNIST_DIR", str(tmp_path / "from_env"))
    code, _, err = run(["compare", "--dataset", "mnist", "--out", tmp_path / "cmp"], capsys)
    assert code == 2 and f"missing from {tmp_path / 'from_env'}" in err and err.count("\n") == 1


def _offline(url, dest):
    import urllib.error

    raise urllib.error.URLError(f"offline test: no network for {url}")


def test_download_offline_is_one_line_naming_the_hosts_and_the_manual_way(tmp_path, capsys, monkeypatch):
    import ntk_l2.data.download

    monkeypatch.setattr(ntk_l2.data.download, "_fetch", _offline)  # never the network
    data_dir = tmp_path / "mnist"
    code, out, err = run(
        ["compare", "--dataset", "mnist", "--download", "--data-dir", data_dir, "--out", tmp_path / "cmp"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith("ntk-l2: error: --download: could not fetch mnist from ossci-datasets.s3.amazonaws.com"), err
    assert "offline test: no network" in err and f"in {data_dir} by hand" in err and "NTK_L2_MNIST_DIR" in err
    assert [p for p in data_dir.iterdir()] == []  # no partial file left


def _mnist_bytes(n, seed):
    import gzip

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)

    def idx(array):
        header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        return gzip.compress(header + array.tobytes())

    return idx(images), idx(labels)


def test_download_fetches_verified_files_and_the_command_runs_on_them(tmp_path, capsys, monkeypatch):
    import hashlib

    import ntk_l2.data.download
    import ntk_l2.data.formats

    served = {}
    for prefix, n, seed in (("train", 60, 0), ("t10k", 40, 1)):
        served[f"{prefix}-images-idx3-ubyte.gz"], served[f"{prefix}-labels-idx1-ubyte.gz"] = _mnist_bytes(n, seed)
    requested = []

    def fetch(url, dest):
        requested.append(url)
        dest.write_bytes(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(ntk_l2.data.download, "_fetch", fetch)
    monkeypatch.setattr(
        ntk_l2.data.formats,
        "KNOWN_CHECKSUMS",
        {name: ("sha256", hashlib.sha256(data).hexdigest()) for name, data in served.items()},
    )
    data_dir = tmp_path / "mnist"
    code, out, err = run(
        [
            "sweep",
            "--mode",
            "theory",
            "--dataset",
            "mnist",
            "--download",
            "--data-dir",
            data_dir,
            "--n-train",
            30,
            "--n-test",
            20,
            "--depth",
            1,
            "--l2",
            "0.1",
            "--lr",
            "1",
            "--out",
            tmp_path / "sweep",
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(served)
    assert len(requested) == 4 and all(u.startswith(ntk_l2.data.formats.MNIST_MIRRORS[0]) for u in requested)
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["dataset"] == "mnist" and summary["n_train"] == 30 and summary["n_test"] == 20


def test_plot_redraws_a_result_directory(tmp_path, capsys):
    """`ntk-l2 plot DIR` draws the same figure files again from the stored results, byte for byte;
    a directory that holds no results is refused in one line with exit code 2."""
    assert main(["deep-linear", "--steps", "200", "--seeds", "2", "--out", str(tmp_path / "dl")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "dl").glob("deep_linear.*")}
    assert {".png", ".pdf"} <= {Path(name).suffix for name in before}
    for name in before:
        (tmp_path / "dl" / name).unlink()
    assert main(["plot", str(tmp_path / "dl")]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "dl").glob("deep_linear.*")} == before
    capsys.readouterr()
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a result directory" in err[0]
