"""Nothing silently wrong, nothing lost: each failure an adversarial user found, reproduced and refused.

Every case asserts the promise of the command line (one line ``ntk-l2: error: …``,
exit code 2, no output file, no leftover temporary file, the input unchanged) or
of the API (a one-line ``ValueError`` naming the argument).
"""

from __future__ import annotations

import errno
import hashlib
import os
import zipfile

import numpy as np
import pytest

from conftest import make_problem
from ntk_l2 import gradient_descent_mse_l2, gradient_descent_mse_l2_discrete, gradient_descent_mse_l2_ensemble
from ntk_l2.cli.commands import main
from ntk_l2.theory.reference import gradient_descent_mse_l2 as reference_closed_form

ARGS = ["--lr", "0.5", "--l2", "1e-3", "--degree", "2", "--times", "0,1,10"]


def _digest(path) -> tuple[str, int]:
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns


def _arrays(n=6, m=3, c=2, nngp=True) -> dict[str, np.ndarray]:
    p = make_problem(n=n, m=m, c=c)
    arrays = {"k_train_train": p.k_train_train, "y_train": p.y_train, "k_test_train": p.k_test_train}
    if nngp:
        q = make_problem(n=n, m=m, c=c, seed=3)
        arrays.update(nngp_train_train=q.k_train_train, nngp_test_train=q.k_test_train, nngp_test_test=q.k_test_test)
    return arrays


def refused(tmp_path, capsys, argv, message, out=None, inputs=()):
    """Run the command line; assert the one-line refusal, no output, untouched inputs."""
    out = tmp_path / "out.npz" if out is None else out
    existed = os.path.lexists(out)
    before = [_digest(p) for p in inputs]
    code = main([str(a) for a in argv] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("ntk-l2: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert [_digest(p) for p in inputs] == before
    if not existed:
        assert not os.path.lexists(out)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    return err


def _save(tmp_path, name="k.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# --- silently wrong results -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("nngp_test_train", lambda a: a["nngp_test_train"][:1], "nngp_test_train: expected shape (3, 6)"),
        ("y_train", lambda a: a["y_train"][:, :1].repeat(1, 1)[:, 0], "y_train: expected shape (6, c)"),
        (
            "nngp_test_test",
            lambda a: a["nngp_test_test"] + np.triu(np.ones((3, 3)), 1),
            "nngp_test_test: must be symmetric",
        ),
        (
            "nngp_train_train",
            lambda a: a["nngp_train_train"] - 10 * np.eye(6),
            "nngp_train_train: is not positive semi-definite",
        ),
        ("nngp_test_train", lambda a: 5 * a["nngp_test_train"], "nngp_test_train: the joint NNGP kernel"),
    ],
)
def test_nngp_blocks_are_checked_exactly(tmp_path, capsys, key, value, message):
    """A broadcastable NNGP block once gave a covariance off by 7.2; asymmetric, non-PSD and jointly
    non-PSD blocks were accepted."""
    arrays = _arrays()
    arrays[key] = value(arrays)
    path = _save(tmp_path, **arrays)
    refused(tmp_path, capsys, ["predict", path, *ARGS], message, inputs=[path])


def test_joint_nngp_check_through_the_api():
    a = _arrays()
    ens = gradient_descent_mse_l2_ensemble(a["k_train_train"], a["nngp_train_train"], a["y_train"], 0.5, 1e-3, 2)
    with pytest.raises(ValueError, match="^nngp_test_train: the joint NNGP kernel"):
        ens(1.0, a["k_test_train"], 5 * a["nngp_test_train"], a["nngp_test_test"])
    with pytest.raises(ValueError, match=r"^nngp_test_train: expected shape \(3, 6\)"):
        ens(1.0, a["k_test_train"], a["nngp_test_train"][:1])
    good = ens(np.array([0.0, 10.0]), a["k_test_train"], a["nngp_test_train"], a["nngp_test_test"])
    assert np.all(np.linalg.eigvalsh(good.covariance) > -1e-12)  # a valid joint NNGP propagates to a covariance


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink", "relative"])
def test_output_that_is_the_input_is_refused(tmp_path, capsys, how, monkeypatch):
    """``--out`` equal to the input once overwrote the user's kernel; now by path or inode, refused."""
    path = _save(tmp_path, **_arrays(nngp=False))
    out = {
        "same": path,
        "hardlink": tmp_path / "hard.npz",
        "symlink": tmp_path / "soft.npz",
        "relative": tmp_path / "sub" / ".." / "k.npz",
    }[how]
    if how == "hardlink":
        os.link(path, out)
    elif how == "symlink":
        os.symlink(path, out)
    elif how == "relative":
        (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    inputs = [path, out] if how in ("hardlink", "symlink") else [path]  # links: existing, and left as they were
    refused(tmp_path, capsys, ["predict", path, *ARGS], "is the input", out=out, inputs=inputs)


@pytest.mark.parametrize(
    "dtype,message",
    [
        (np.complex128, "complex dtype"),
        (np.bool_, "bool dtype"),
        ("U3", "string dtype"),
        ("datetime64[s]", "datetime dtype"),
        ("S4", "bytes dtype"),
        ("m8[s]", "timedelta dtype"),
    ],
)
def test_non_real_dtypes_are_refused(tmp_path, capsys, dtype, message):
    """Complex arrays were cut to their real part; bool, string and datetime arrays read as numbers."""
    arrays = _arrays(nngp=False)
    arrays["y_train"] = np.ones((6, 2), dtype=dtype) if dtype != "U3" else np.full((6, 2), "1.0")
    path = _save(tmp_path, **arrays)
    refused(
        tmp_path,
        capsys,
        ["predict", path, *ARGS],
        f"y_train: must hold real numbers (a floating or integer dtype), got {message}",
        inputs=[path],
    )
    with pytest.raises(ValueError, match="^y_train: must hold real numbers"):
        gradient_descent_mse_l2(arrays["k_train_train"], arrays["y_train"], 0.5, 1e-3, 2)


def test_object_arrays_are_never_unpickled(tmp_path, capsys):
    arrays = _arrays(nngp=False)
    path = tmp_path / "k.npz"
    np.savez(path, **{**arrays, "y_train": np.array([[1.0, object()]] * 6, dtype=object)}, allow_pickle=True)
    refused(tmp_path, capsys, ["predict", path, *ARGS], "y_train: holds Python objects", inputs=[path])


def test_integer_arrays_are_real_numbers(tmp_path, capsys):
    a = _arrays(nngp=False)
    path = _save(tmp_path, k_train_train=np.eye(6, dtype=np.int64) * 3, y_train=np.ones((6, 2), np.int32))
    assert main(["predict", str(path), *ARGS, "--out", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as res:
        ref = gradient_descent_mse_l2(3.0 * np.eye(6), np.ones((6, 2)), 0.5, 1e-3, 2)(np.array([0.0, 1.0, 10.0]))
        np.testing.assert_array_equal(res["fx_train"], ref)
    assert a  # the float problem is untouched by the integer one


@pytest.mark.parametrize("scale,discrete", [(1e308, False), (1e308, True), (1e200, False)])
def test_extreme_values_never_give_non_finite_output(tmp_path, capsys, scale, discrete):
    """Entries near 1e308 overflowed in the solver and an all-NaN result was written with exit code 0."""
    arrays = _arrays(nngp=False)
    arrays["k_train_train"] = arrays["k_train_train"] * scale / np.max(arrays["k_train_train"])
    path = _save(tmp_path, **arrays)
    refused(
        tmp_path,
        capsys,
        ["predict", path, *ARGS] + (["--discrete"] if discrete else []),
        "k_train_train: entries up to",
        inputs=[path],
    )


def test_overflowing_prediction_names_time_and_way_out():
    """Within the input bounds a prediction can still overflow (Θ_*X Θ⁻¹ y with μ = 1e-200 and
    Θ_*X = 1e150): refused with the time and the way out."""
    predict = gradient_descent_mse_l2(np.diag([1.0, 1e-200]), np.ones((2, 1)), 1.0, 0.0, 2)
    with pytest.raises(ValueError, match="^fx_test: the prediction overflowed at t = inf; the way out"):
        predict(np.array([0.0, np.inf]), 0.0, None, np.array([[0.0, 1e150]]))


# --- tracebacks where one line is promised -------------------------------------------------------


def _corrupt_files(tmp_path):
    good = _save(tmp_path, "good.npz", **_arrays(nngp=False))
    raw = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "garbage": os.urandom(300),
        "text": b"k_train_train = [[1, 0], [0, 1]]\n",
        "zip-garbage": b"PK\x03\x04" + os.urandom(200),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.npz"
        paths[name].write_bytes(content)
    npy = tmp_path / "plain.npy"
    np.save(npy, _arrays()["k_train_train"])
    paths["plain-npy"] = npy
    flipped = bytearray(raw)
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("k_train_train.npy")
    flipped[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # a byte of the kernel's data
    paths["compressed-bitflip"] = tmp_path / "flip.npz"
    paths["compressed-bitflip"].write_bytes(bytes(flipped))
    good.unlink()
    return paths


def test_corrupt_truncated_empty_and_plain_npy_files(tmp_path, capsys):
    for name, path in _corrupt_files(tmp_path).items():
        code = main(["predict", str(path), *ARGS, "--out", str(tmp_path / "o.npz")])
        err = capsys.readouterr().err
        if name == "compressed-bitflip" and code == 0:  # np.savez stores, does not compress: a flipped data byte
            (tmp_path / "o.npz").unlink()  # is a different valid kernel (or refused as non-PSD)
            continue
        assert code == 2 and err.count("\n") == 1 and err.startswith("ntk-l2: error: "), (name, err)
        assert "KERNEL" in err or "k_train_train" in err, (name, err)
        assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(
    "where,message",
    [
        ("file-parent", "is not a directory"),
        ("is-dir", "exists and is a directory"),
        ("proc", "cannot write in"),
    ],
)
def test_unwritable_outputs_are_refused_before_work(tmp_path, capsys, where, message, monkeypatch):
    path = _save(tmp_path, **_arrays(nngp=False))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    out = {"file-parent": tmp_path / "afile" / "o.npz", "is-dir": tmp_path / "adir", "proc": "/proc/ntk_l2_o.npz"}[
        where
    ]
    import ntk_l2.experiments.predict_file

    monkeypatch.setattr(
        ntk_l2.experiments.predict_file, "predict_file", lambda *a, **k: pytest.fail("worked before checking")
    )
    refused(tmp_path, capsys, ["predict", path, *ARGS], message, out=out, inputs=[path])


def test_full_disk_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    path = _save(tmp_path, **_arrays(nngp=False))

    def full(handle, **arrays):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    refused(tmp_path, capsys, ["predict", path, *ARGS], "No space left on device", inputs=[path])


def test_compare_checks_its_output_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    import ntk_l2.experiments.compare

    monkeypatch.setattr(
        ntk_l2.experiments.compare, "run_comparison", lambda *a, **k: pytest.fail("trained before checking")
    )
    code = main(["compare", "--n-train", "32", "--n-test", "32", "--widths", "16", "--out", str(tmp_path / "afile")])
    err = capsys.readouterr().err
    assert code == 2 and "--out:" in err and "exists and is not a directory" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["compare", "--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "--data-dir: mnist files not found"),
        (["compare", "--l2", "0"], "--steps: auto is 2/(ηλ)"),
        (["compare", "--widths", "64,64"], "--widths: values repeat"),
        (["compare", "--steps", "0"], "--steps: must be >= 1"),
        (["compare", "--seeds", "0"], "--seeds: must be >= 1"),
        (["sweep", "--l2", "1e-3,-1e-3"], "--l2: expected comma-separated positive numbers"),
        (["sweep", "--lr", "nan"], "--lr: expected comma-separated positive numbers"),
        (["autol2", "--steps", "0"], "--steps: must be >= 1"),
        (["autol2", "--steps", "10", "--window", "0"], "--window: must be >= 1"),
        (["optimal-l2", "--budget-step", "-5"], "--budget-step: must be >= 1"),
        (["deep-linear", "--seeds", "0"], "--seeds: must be >= 1"),
        (["predict", "k.npz", *ARGS[:-2], "--times", ""], "--times: expected a comma-separated list"),
        (["predict", "k.npz", *ARGS, "--max-memory", "lots"], "--max-memory: expected a size"),
    ],
)
def test_degenerate_settings_are_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main(argv + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_xent_at_time_zero(tmp_path, capsys):
    """``--loss xent --times 0`` ended in a traceback; t = 0 is the initial outputs."""
    a = _arrays(nngp=False)
    path = _save(tmp_path, k_train_train=a["k_train_train"], y_train=np.eye(2)[np.arange(6) % 2] - 0.5)
    assert (
        main(
            [
                "predict",
                str(path),
                "--lr",
                "0.5",
                "--l2",
                "1e-3",
                "--degree",
                "2",
                "--times",
                "0",
                "--loss",
                "xent",
                "--out",
                str(tmp_path / "o.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "o.npz") as res:
        np.testing.assert_array_equal(res["fx_train"], np.zeros((1, 6, 2)))


def test_internal_errors_are_one_line_with_a_report_pointer(tmp_path, capsys, monkeypatch):
    path = _save(tmp_path, **_arrays(nngp=False))
    import ntk_l2.experiments.predict_file

    monkeypatch.setattr(ntk_l2.experiments.predict_file, "predict_from_arrays", lambda *a, **k: 1 / 0)
    err = refused(tmp_path, capsys, ["predict", path, *ARGS], "internal error: ZeroDivisionError", inputs=[path])
    report = err.rsplit(" ", 1)[-1].strip()
    assert "please report it" in err and "ZeroDivisionError" in open(report).read()
    os.unlink(report)


# --- bounds on memory ------------------------------------------------------------------------------


def _huge_declared_kernel(path, n=2_000_000):
    """An .npz of a few hundred bytes whose header declares an n x n float64 kernel (32 TB at n = 2e6)."""
    with zipfile.ZipFile(path, "w") as z:
        for key, shape in (("k_train_train", (n, n)), ("y_train", (n, 10))):
            header = np.lib.format.header_data_from_array_1_0(np.empty(0))
            header["shape"] = shape
            with z.open(f"{key}.npy", "w") as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                handle.write(b"\0" * 64)


def test_request_that_cannot_fit_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    path = tmp_path / "huge.npz"
    _huge_declared_kernel(path)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("loaded before the memory check"))
    err = refused(tmp_path, capsys, ["predict", path, *ARGS], "KERNEL: this request (n = 2000000", inputs=[path])
    assert "needs about" in err and "--max-memory" in err


def test_max_memory_lowers_and_raises_the_bound(tmp_path, capsys):
    path = _save(tmp_path, **_arrays(nngp=False))
    refused(
        tmp_path,
        capsys,
        ["predict", path, *ARGS, "--max-memory", "1K"],
        "more than the limit set (1 KiB)",
        inputs=[path],
    )
    assert main(["predict", str(path), *ARGS, "--max-memory", "1G", "--out", str(tmp_path / "o.npz")]) == 0


def test_api_refuses_an_output_stack_larger_than_memory():
    p = make_problem(n=4, m=2, c=1)
    predict = gradient_descent_mse_l2(p.k_train_train, p.y_train[:, :1], 0.5, 1e-3, 2)
    from ntk_l2.common.memory import memory_limit

    with memory_limit(1e4), pytest.raises(ValueError, match="^t: predicting 1000 time"):
        predict(np.arange(1000.0))


# --- too strict ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,rank", [(10, 1), (100, 11), (512, 51), (512, 256)])
def test_float32_kernels_of_deficient_rank_are_accepted(n, rank):
    """Round-off of a float32 Gram matrix gives eigenvalues near −1e-7·‖K‖ (n·ε₃₂ = 6e-5 at n = 512):
    valid, and the float64 bound of 1e-8 rejected them."""
    rng = np.random.default_rng(n + rank)
    a = rng.standard_normal((n, rank)).astype(np.float32)
    a[:, 0] += 3.0
    k = a @ a.T
    y = rng.standard_normal((n, 2))
    for solver in (gradient_descent_mse_l2, gradient_descent_mse_l2_discrete):
        out = solver(k, y, 0.5 * y.size / float(np.linalg.eigvalsh(k.astype(np.float64))[-1]), 1e-3, 2)(10.0)
        assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="^k_train_train: is not positive semi-definite"):
        gradient_descent_mse_l2(k.astype(np.float64) - 1e-3 * np.abs(k).max() * np.eye(n), y, 0.5, 1e-3, 2)


def test_float64_tolerances_are_unchanged():
    k = np.diag([1.0, 0.0]) - 2e-8 * np.eye(2)
    with pytest.raises(ValueError, match="^k_train_train: is not positive semi-definite"):
        gradient_descent_mse_l2(k, np.ones((2, 1)), 0.5, 0.0, 2)
    gradient_descent_mse_l2(np.diag([1.0, 0.0]) - 5e-9 * np.eye(2), np.ones((2, 1)), 0.5, 0.0, 2)


# --- found by the fuzzing test (tests/test_fuzz.py), each reproduced here ---------------------------

K2, Y2 = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])


def test_repeated_times_in_the_ode():
    from ntk_l2 import gradient_descent_l2_ode

    for loss in ("mse", "xent"):
        out = gradient_descent_l2_ode(K2, Y2, 1.0, 0.0, 2, loss=loss)([3.0, 0.0, 3.0])
        np.testing.assert_array_equal(out[0], out[2])
        np.testing.assert_array_equal(out[1], 0.0)
        assert np.all(out[0] != 0.0)


def test_infinite_time_is_the_limit_in_the_api_and_refused_by_the_file_writer(tmp_path, capsys):
    """t = ∞ is the limit (even where a mode's rate 1/a overflows), but an output file holds
    finite numbers only: the command line refuses ``inf`` and points to a large finite time.

    A subnormal eigenvalue (1e-320) is a learnable mode in the NumPy reference (f → Y), but XLA
    flushes subnormal numbers to zero, so in the JAX solvers it is a null mode and keeps its
    initial output (0), the pseudo-inverse convention: a kernel with a normal largest eigenvalue
    cannot resolve eigenvalues 1e292 times below its round-off anyway. Both are finite."""
    kernel, y = np.diag([1.0, 1e-320]), np.array([[1.0], [-1.0]])
    np.testing.assert_array_equal(reference_closed_form(kernel, y, 1.0, 0.0, 2)(np.inf), [[1.0], [-1.0]])
    np.testing.assert_array_equal(gradient_descent_mse_l2(kernel, y, 1.0, 0.0, 2)(np.inf), [[1.0], [0.0]])
    np.testing.assert_array_equal(gradient_descent_mse_l2(np.diag([1.0, 1e-300]), y, 1.0, 0.0, 2)(np.inf), y)
    path = _save(tmp_path, k_train_train=K2, y_train=Y2)
    refused(
        tmp_path,
        capsys,
        ["predict", path, "--lr", "0.5", "--l2", "0", "--degree", "2", "--times", "0,inf"],
        "--times: inf cannot be written",
        inputs=[path],
    )
    assert (
        main(
            [
                "predict",
                str(path),
                "--lr",
                "0.5",
                "--l2",
                "0",
                "--degree",
                "2",
                "--times",
                "0,1e300",
                "--out",
                str(tmp_path / "o.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "o.npz") as res:
        np.testing.assert_allclose(res["fx_train"][1], Y2, rtol=0, atol=1e-14)


def test_damaged_zip_directory_cannot_hide_an_array(tmp_path, capsys):
    """A corrupted comment length in one central-directory record made zipfile read the next
    member as a comment: k_test_train vanished and the prediction ran without it."""
    a = _arrays(n=4, m=1, nngp=False)
    path = _save(tmp_path, **a)
    raw = bytearray(path.read_bytes())
    second = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 1)
    raw[second + 32] = 46 + len("k_test_train.npy")  # swallow the following record
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as z:
        assert len(z.namelist()) == 2  # the damage zipfile itself does not see
    refused(tmp_path, capsys, ["predict", path, *ARGS], "is a damaged .npz archive", inputs=[path])


def test_subnormal_l2_is_refused_in_one_line():
    with pytest.raises(ValueError, match="^l2: learning_rate \\* l2 = .* is too small for the closed form"):
        gradient_descent_mse_l2(K2, Y2, 10.0, 5e-324, 2)(3.0)


def test_zero_kernel_with_a_growing_degree_zero_kernel_is_inert():
    """Θ = 0, k = 0, λ > 0: β_s overflows after a few thousand steps, but the null modes never feel it."""
    out = gradient_descent_mse_l2_discrete(np.zeros((2, 2)), Y2, 0.5, 0.2, 0)(np.array([5000]), Y2 * 0.5)
    np.testing.assert_array_equal(out[0], Y2 * 0.5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"learning_rate": True}, "^learning_rate: must be a real number"),
        ({"l2": False}, "^l2: must be a real number"),
        ({"l2": -1.0}, "^l2: must be >= 0"),
        ({"learning_rate": -1.0}, "^learning_rate: must be > 0"),
        ({"learning_rate": lambda t: "fast"}, "^learning_rate: schedule gave 'fast'"),
        ({"degree": 1e300}, "^degree: must be at most"),
    ],
)
def test_ode_arguments_are_checked_up_front(kwargs, message):
    from ntk_l2 import gradient_descent_l2_ode

    args = {"learning_rate": 1.0, "l2": 0.0, "degree": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        gradient_descent_l2_ode(K2, Y2, **args, loss="xent")([0.0, 1.0])


def test_ode_that_cannot_be_followed_is_refused_quietly(capfd, monkeypatch):
    """k = 0 with λ > 0 under cross-entropy: the kernel grows as e^{2ηλt} and LSODA stalls; the
    integration is bounded, refused with a ``t:`` line, and ODEPACK's own prints are silenced."""
    from ntk_l2 import gradient_descent_l2_ode
    from ntk_l2.theory import ode

    monkeypatch.setattr(ode, "MAX_EVALUATIONS", 20_000)
    with pytest.raises(ValueError, match="^t: the ODE needs more than 20000 evaluations"):
        gradient_descent_l2_ode(K2, Y2, 10.0, 0.2, 0, loss="xent")(1000.0)
    assert capfd.readouterr() == ("", "")
