"""``ntk-l2 predict`` with momentum, Nesterov, minibatch SGD and (n, n, c, c) kernels."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_problem, relative_error
from ntk_l2.cli.commands import main
from ntk_l2.theory import (
    gradient_descent_mse_l2_discrete,
    gradient_descent_mse_l2_momentum,
    gradient_descent_mse_l2_sgd,
)


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def kernel_file(tmp_path):
    p = make_problem(n=10, m=4, c=2)
    path = tmp_path / "kernel.npz"
    np.savez(
        path,
        k_train_train=p.k_train_train,
        y_train=p.y_train,
        k_test_train=p.k_test_train,
        fx_train_0=p.fx_train_0,
        fx_test_0=p.fx_test_0,
    )
    return path, p


@pytest.mark.parametrize("nesterov", [False, True])
def test_predict_discrete_momentum_is_the_solver(kernel_file, tmp_path, capsys, nesterov):
    path, p = kernel_file
    out = tmp_path / "out.npz"
    flags = ["--nesterov"] if nesterov else []
    code, stdout, err = run(
        [
            "predict",
            path,
            "--lr",
            0.3,
            "--l2",
            1e-3,
            "--degree",
            3,
            "--times",
            "0,10,1000",
            "--discrete",
            "--momentum",
            0.9,
            *flags,
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    expected = gradient_descent_mse_l2_discrete(
        p.k_train_train, p.y_train, 0.3, 1e-3, 3, momentum=0.9, nesterov=nesterov
    )(np.array([0.0, 10.0, 1000.0]), p.fx_train_0, p.fx_test_0, p.k_test_train)
    with np.load(out) as res:
        assert relative_error(res["fx_train"], expected[0]) <= 1e-12
        assert relative_error(res["fx_test"], expected[1]) <= 1e-12


def test_predict_momentum_flow_is_the_solver(kernel_file, tmp_path, capsys):
    path, p = kernel_file
    out = tmp_path / "out.npz"
    code, _, err = run(
        [
            "predict",
            path,
            "--lr",
            0.3,
            "--l2",
            1e-3,
            "--degree",
            3,
            "--times",
            "0,5,50",
            "--momentum",
            0.5,
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    expected = gradient_descent_mse_l2_momentum(p.k_train_train, p.y_train, 0.3, 1e-3, 3, momentum=0.5)(
        np.array([0.0, 5.0, 50.0]), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    with np.load(out) as res:
        assert relative_error(res["fx_test"], expected[1]) <= 1e-12


def test_predict_sgd_writes_mean_variance_and_loss(kernel_file, tmp_path, capsys):
    path, p = kernel_file
    out = tmp_path / "out.npz"
    code, _, err = run(
        [
            "predict",
            path,
            "--lr",
            0.5,
            "--l2",
            1e-3,
            "--degree",
            2,
            "--times",
            "0,3,40",
            "--discrete",
            "--batch-size",
            4,
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    expected = gradient_descent_mse_l2_sgd(p.k_train_train, p.y_train, 0.5, 1e-3, 2, batch_size=4)(
        np.array([0, 3, 40]), p.fx_train_0, p.fx_test_0, p.k_test_train
    )
    with np.load(out) as res:
        assert set(res.files) == {"times", "fx_train", "fx_test", "var_train_sgd", "var_test_sgd", "loss_train_sgd"}
        assert relative_error(res["fx_test"], expected.mean_test) <= 1e-12
        assert relative_error(res["var_test_sgd"], expected.var_test) <= 1e-12
        assert relative_error(res["loss_train_sgd"], expected.loss) <= 1e-12
        assert np.all(res["var_train_sgd"][1:] > 0) and np.all(res["var_train_sgd"][0] == 0)


def test_predict_accepts_full_output_kernels(tmp_path, capsys):
    """A file with (n, n, c, c) kernels (cross-output terms): the solver's result, same keys and shapes."""
    p = make_problem(n=6, m=3, c=2, seed=4)
    eye = np.eye(2)
    path = tmp_path / "full.npz"
    np.savez(
        path,
        k_train_train=np.einsum("ij,ab->ijab", p.k_train_train, eye),
        y_train=p.y_train,
        k_test_train=np.einsum("ij,ab->ijab", p.k_test_train, eye),
    )
    out, flat = tmp_path / "out.npz", tmp_path / "flat.npz"
    np.savez(tmp_path / "plain.npz", k_train_train=p.k_train_train, y_train=p.y_train, k_test_train=p.k_test_train)
    base = ["--lr", 0.5, "--l2", 1e-3, "--degree", 2, "--times", "0,10,100"]
    assert run(["predict", path, *base, "--out", out], capsys)[0] == 0
    assert run(["predict", tmp_path / "plain.npz", *base, "--out", flat], capsys)[0] == 0
    with np.load(out) as a, np.load(flat) as b:
        assert a["fx_test"].shape == b["fx_test"].shape == (3, 3, 2)
        assert relative_error(a["fx_test"], b["fx_test"]) <= 1e-12


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--momentum", "1"], "--momentum: must be in [0, 1)"),
        (["--momentum", "-0.1"], "--momentum: must be in [0, 1)"),
        (["--nesterov"], "--nesterov: needs --momentum > 0"),
        (
            ["--momentum", "0.9", "--nesterov"],
            "--nesterov: the gradient-flow limit with momentum is the heavy-ball one",
        ),
        (["--batch-size", "4"], "--batch-size: minibatch SGD takes whole steps; add --discrete"),
        (["--batch-size", "0", "--discrete"], "--batch-size"),
        (["--batch-size", "11", "--discrete"], "batch_size"),
        (["--batch-size", "4", "--discrete", "--momentum", "0.5", "--nesterov"], "--nesterov: minibatch SGD"),
        (["--loss", "xent", "--momentum", "0.5"], "--momentum: cross-entropy is solved by the gradient-flow ODE only"),
    ],
)
def test_bad_optimizer_flags_are_one_line_exit_2_no_output(kernel_file, tmp_path, capsys, flags, message):
    path, _ = kernel_file
    out = tmp_path / "out.npz"
    code, _, err = run(
        ["predict", path, "--lr", 0.5, "--l2", 1e-3, "--degree", 2, "--times", "0,10", *flags, "--out", out], capsys
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
