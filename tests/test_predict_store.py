"""``ntk-l2 predict`` from a kernel store and with ``--solver`` (`derivations/large.md`, K5–K7)."""

from __future__ import annotations

import numpy as np
import pytest

from ntk_l2.cli.commands import main
from ntk_l2.data.kernel_store import KernelStore
from ntk_l2.theory import gradient_descent_mse_l2, gradient_descent_mse_l2_discrete

FLAGS = ["--lr", 0.5, "--l2", 1e-3, "--degree", 4, "--times", "1,10,100,1000"]
TIMES = np.array([1.0, 10.0, 100.0, 1000.0])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A kernel store of 300 embedded digits and 100 test digits (tiles of 128: edge tiles too)."""
    out = tmp_path_factory.mktemp("store") / "digits"
    assert main(["kernel", "--n-train", "300", "--n-test", "100", "--tile", "128", "--out", str(out)]) == 0
    return KernelStore.open(out)


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("solver", ["auto", "dense", "krylov"])
@pytest.mark.parametrize("discrete", [False, True])
def test_predict_from_a_store_equals_the_engine(store, tmp_path, capsys, solver, discrete):
    """K5–K7 through the command line: a store directory is predicted by the dense or the Krylov
    solver and gives the engine's outputs on the loaded kernel (to 1e-8 relative: Krylov at
    --tol 1e-10), with the error estimate and the test accuracy of the predicted outputs."""
    out = tmp_path / "p.npz"
    extra = ["--discrete"] if discrete else []
    code, stdout, _ = run(
        ["predict", store.path, *FLAGS, "--solver", solver, "--tol", 1e-10, "--out", out, *extra], capsys
    )
    assert code == 0, stdout
    expected = "krylov" if solver == "krylov" else "dense"
    assert f"wrote {out}: {expected} solver" in stdout
    k, kt = store.load("ntk_train_train"), store.load("ntk_test_train")
    y, _, _, labels = store.targets()
    solve = gradient_descent_mse_l2_discrete if discrete else gradient_descent_mse_l2
    fx_train, fx_test = solve(k, y, 0.5, 1e-3, 4)(TIMES, 0.0, 0.0, kt)
    with np.load(out) as res:
        assert set(res.files) == {"times", "fx_train", "fx_test", "error_estimate", "test_accuracy"}
        for got, want in ((res["fx_train"], fx_train), (res["fx_test"], fx_test)):
            assert np.max(np.abs(got - want)) <= 1e-8 * np.max(np.abs(want))
        assert np.all(res["error_estimate"] <= 1e-10)
        acc = np.mean(np.argmax(res["fx_test"], axis=-1) == labels, axis=-1)
        np.testing.assert_array_equal(res["test_accuracy"], acc)


def test_solver_flag_on_an_npz_and_what_it_refuses(store, tmp_path, capsys):
    """``--solver krylov`` on a kernel .npz gives the mean outputs with an estimate; with NNGP blocks
    (the covariance needs the engine) it is refused in one line, exit code 2, no output."""
    path = tmp_path / "k.npz"
    y = store.targets()[0]
    np.savez(path, k_train_train=store.load("ntk_train_train"), y_train=y, k_test_train=store.load("ntk_test_train"))
    out = tmp_path / "p.npz"
    code, stdout, _ = run(["predict", path, *FLAGS, "--solver", "krylov", "--out", out], capsys)
    assert code == 0 and "krylov solver" in stdout
    with np.load(out) as res:
        assert set(res.files) == {"times", "fx_train", "fx_test", "error_estimate"}
    np.savez(
        path,
        k_train_train=store.load("ntk_train_train"),
        y_train=y,
        k_test_train=store.load("ntk_test_train"),
        nngp_train_train=store.load("nngp_train_train"),
        nngp_test_train=store.load("nngp_test_train"),
        nngp_test_test=store.load("nngp_test_test"),
    )
    out = tmp_path / "q.npz"
    code, _, err = run(["predict", path, *FLAGS, "--solver", "dense", "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "--solver: the covariance over initializations" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--solver", "dense", "--max-memory", "1M"], "k_train_train: the dense solver for 300 + 100 points"),
        (["--solver", "krylov", "--max-memory", "100K"], "k_train_train: a Krylov space of up to 300 columns"),
        (["--loss", "xent"], "--loss: a kernel store predicts MSE"),
        (["--discrete", "--batch-size", "10"], "--batch-size: a kernel store predicts full-batch training"),
        (["--momentum", "0.9"], "--momentum: at scale, momentum is predicted by the exact map; add --discrete"),
    ],
)
def test_refusals_are_one_line_exit_2_before_any_work(store, tmp_path, capsys, flags, message):
    """A problem that cannot fit (K6, V4) and options the large-scale solvers do not cover: one line
    naming the argument, exit code 2, no output file, the store untouched."""
    before = sorted((p.name, p.stat().st_mtime_ns) for p in store.path.rglob("*"))
    out = tmp_path / "p.npz"
    code, _, err = run(["predict", store.path, *FLAGS, *flags, "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in store.path.rglob("*")) == before


def test_output_inside_the_store_and_incomplete_stores_are_refused(store, tmp_path, capsys):
    """Stores are never modified: an output inside one is refused; an incomplete store is named with
    the number of missing tiles and how to finish it."""
    code, _, err = run(["predict", store.path, *FLAGS, "--out", store.path / "p.npz"], capsys)
    assert code == 2 and "--out:" in err and "inside the kernel store" in err
    partial = tmp_path / "partial"
    assert main(["kernel", "--n-train", "200", "--n-test", "50", "--tile", "64", "--out", str(partial)]) == 0
    next(iter(sorted((partial / "tiles" / "ntk_train_train").glob("*.npy")))).unlink()
    code, _, err = run(["predict", partial, *FLAGS, "--out", tmp_path / "p.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "KERNEL:" in err and "1 of" in err and "tiles missing" in err


def test_store_degree_and_loop_bound_are_honoured(store, tmp_path, capsys):
    """The store records the network's degree: another --degree is refused; --max-loop-steps bounds
    the discrete map here as on a .npz."""
    out = tmp_path / "p.npz"
    flags = ["--lr", 0.5, "--l2", 1e-3, "--times", "0,1000"]
    code, _, err = run(["predict", store.path, *flags, "--degree", 2, "--out", out], capsys)
    assert code == 2 and "--degree: the store's network has degree 4" in err and not out.exists()
    loop = ["--discrete", "--max-loop-steps", 1000, "--times", "0,100000"]
    code, _, err = run(["predict", store.path, "--lr", 0.5, "--l2", 1e-3, "--degree", 4, *loop, "--out", out], capsys)
    assert code == 2 and err.startswith("ntk-l2: error: t:") and not out.exists()


def test_a_second_run_on_the_same_store_is_refused(tmp_path, capsys):
    """Two `kernel` runs on one OUT would race; while one holds the store's lock the other is refused
    in one line naming --out, exit code 2."""
    from ntk_l2.data.kernel_writer import KernelStoreWriter

    out = tmp_path / "k"
    argv = ["kernel", "--n-train", "64", "--n-test", "16", "--tile", "32", "--out", out]
    assert run(argv, capsys)[0] == 0
    handle = KernelStoreWriter(out, {}).lock()
    try:
        code, _, err = run(argv, capsys)
    finally:
        handle.close()
    assert code == 2 and err.count("\n") == 1 and "--out:" in err and "is being computed by another run" in err
    assert run(argv, capsys)[0] == 0  # released: the same command runs again (nothing left to compute)
