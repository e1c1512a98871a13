"""Kernels at scale (`ntk_l2.experiments.kernels`, ``ntk-l2 kernel``): resumed after a deletion or a
SIGKILL, the same on 1 and 4 devices and with 2 processes, and the command line's refusals."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ntk_l2
from ntk_l2.cli.commands import main
from ntk_l2.common.memory import memory_limit
from ntk_l2.data.kernel_store import KernelStore
from ntk_l2.experiments import kernels
from ntk_l2.experiments.kernels import compute_kernel_store, fc_kernel_architecture

REPO = Path(__file__).resolve().parents[1]
N, M, TILE = 150, 45, 40
ARGV = ["kernel", "--n-train", N, "--n-test", M, "--tile", TILE, "--seed", 1]


@pytest.fixture(scope="module")
def digits():
    return ntk_l2.load_digits(N, M, seed=1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The store of ``ntk-l2 kernel ARGV`` computed by one process on one device."""
    out = tmp_path_factory.mktemp("one") / "k"
    assert main([str(a) for a in [*ARGV, "--out", out]]) == 0
    return KernelStore.open(out)


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _computed(summary: str) -> tuple[int, int]:
    match = re.search(r"; (\d+) tiles computed, (\d+) reused", summary)
    assert match, summary
    return int(match.group(1)), int(match.group(2))


def _assert_same_store(a: KernelStore, b: KernelStore, rtol: float = 0.0) -> None:
    assert a.blocks == b.blocks and (a.n_train, a.n_test, a.tile) == (b.n_train, b.n_test, b.tile)
    for block in a.blocks:
        x, y = a.load(block), b.load(block)
        assert np.abs(x - y).max() <= rtol * np.abs(x).max(), block
    for x, y in zip(a.targets(), b.targets(), strict=True):
        assert np.array_equal(x, y)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "NTK_L2_MNIST_DIR")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_a_resumed_store_computes_exactly_the_missing_tiles(reference, tmp_path, capsys):
    out = tmp_path / "k"
    shutil.copytree(reference.path, out)
    gone = [
        "ntk_train_train/r00001_c00002.npy",
        "nngp_test_train/r00000_c00003.npy",
        "nngp_test_test/r00001_c00001.npy",
    ]
    for name in gone:
        (out / "tiles" / name).unlink()
    code, stdout, _ = _run([*ARGV, "--out", out], capsys)
    assert code == 0 and _computed(stdout) == (3, 39 - 3)
    _assert_same_store(reference, KernelStore.open(out))  # bitwise
    code, stdout, _ = _run([*ARGV, "--out", out], capsys)
    assert code == 0 and _computed(stdout) == (0, 39)


def test_the_python_api_reports_its_counts(digits, tmp_path):
    arch, description = fc_kernel_architecture(3, 10)
    run = compute_kernel_store(arch, digits, tmp_path / "k", tile=64, nngp=False, progress=False)
    assert (run.computed, run.reused, run.total, run.processes) == (6 + 3, 0, 9, 1)
    assert run.store.blocks == ("ntk_train_train", "ntk_test_train") and run.store.degree == 4
    assert json.loads((tmp_path / "k" / "store.json").read_text())["complete"] is True
    (tmp_path / "k" / "tiles" / "ntk_test_train" / "r00000_c00002.npy").unlink()
    again = compute_kernel_store(arch, digits, tmp_path / "k", tile=64, nngp=False, progress=False)
    assert (again.computed, again.reused) == (1, 8)


def test_a_killed_run_resumes_to_the_clean_result(tmp_path, capsys):
    """SIGKILL in the middle of a run, then the same command: only the missing tiles, the same kernels."""
    argv = ["kernel", "--n-train", 1000, "--n-test", 300, "--tile", 50, "--no-nngp"]
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "ntk_l2.cli", *map(str, argv), "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("tiles/*/*.npy"))) < 30:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no tiles written within 120 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    on_disk = len(list(out.glob("tiles/*/*.npy")))
    total = 20 * 21 // 2 + 6 * 20
    assert 30 <= on_disk < total, on_disk
    with pytest.raises(ValueError, match=f"{total - on_disk} of {total} tiles missing"):
        KernelStore.open(out)
    code, stdout, _ = _run([*argv, "--out", out], capsys)
    assert code == 0 and _computed(stdout) == (total - on_disk, on_disk)
    assert not list(out.glob("tiles/*/.*")), "temporary files of the killed run left behind"
    clean = tmp_path / "clean"
    assert _run([*argv, "--out", clean], capsys)[0] == 0
    _assert_same_store(KernelStore.open(clean), KernelStore.open(out))


def test_four_devices_give_the_one_device_result(reference, tmp_path):
    out = tmp_path / "k4"
    script = textwrap.dedent(
        f"""
        import jax
        assert jax.local_device_count() == 4, jax.local_devices()
        from ntk_l2.cli.commands import main
        raise SystemExit(main({[str(a) for a in [*ARGV, "--out", out]]!r}))
        """
    )
    flags = "--xla_force_host_platform_device_count=4"
    result = subprocess.run(
        [sys.executable, "-c", script], env=_env(XLA_FLAGS=flags), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "on 4 devices" in result.stdout and _computed(result.stdout) == (39, 0)
    _assert_same_store(reference, KernelStore.open(out), rtol=1e-12)  # bitwise here; 1e-12 allowed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_tiles_and_give_the_one_process_result(reference, tmp_path):
    out, port = tmp_path / "k2", _free_port()
    argv = [*map(str, ARGV), "--out", str(out), "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ntk_l2.cli", *argv, "--process-id", str(p)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (_, stderr) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, stderr
    # units in order: train×train (4·5/2 = 10, two tiles each), test×train (8, two each), test×test (3, one each)
    units = [2] * 10 + [2] * 8 + [1] * 3
    for p, (stdout, _) in enumerate(outputs):
        assert f"by process {p} of 2 (39 computed in all" in stdout
        assert _computed(stdout) == (sum(units[p::2]), 0)
    assert json.loads((out / "store.json").read_text())["complete"] is True
    _assert_same_store(reference, KernelStore.open(out), rtol=1e-12)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--coordinator", "localhost:1234"], "--coordinator: give --coordinator, --num-processes and --process-id"),
        (
            ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
            "--coordinator: expected HOST:PORT",
        ),
        (
            ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id: must be below --num-processes (2)",
        ),
        (["--distributed", "auto", "--process-id", "0"], "--distributed: auto finds the processes itself"),
        (["--shifted-copies", "2"], "--shifted-copies: for --dataset mnist only"),
        (["--tile", "0"], "argument --tile: must be >= 1"),
        (["--arch", "cnn"], "argument --arch: invalid choice"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(tmp_path, capsys, extra, fragment):
    code, stdout, stderr = _run([*ARGV, "--out", tmp_path / "k", *extra], capsys)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith("ntk-l2: error: ")
    assert fragment in stderr, stderr
    assert not (tmp_path / "k").exists()


def test_refusals_of_the_command_leave_the_directory_alone(reference, tmp_path, capsys):
    out = tmp_path / "k"
    shutil.copytree(reference.path, out)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    for extra, fragment in (
        (["--depth", "2"], "(architecture.depth 3 there, 2 now)"),
        (["--no-nngp"], "(blocks ["),
        (["--seed", "2"], "(dataset.seed 1 there, 2 now)"),
    ):
        code, _, stderr = _run([*ARGV, "--out", out, *extra], capsys)
        assert code == 2 and stderr.count("\n") == 1 and fragment in stderr and "--out: " in stderr, stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    code, _, stderr = _run([*ARGV, "--out", tmp_path / "mine"], capsys)
    assert code == 2 and "is not a kernel store; give an empty or new directory" in stderr


def test_disk_and_memory_are_checked_before_any_tile(digits, tmp_path, monkeypatch):
    arch = fc_kernel_architecture(3, 10)[0]
    with memory_limit(1e5), pytest.raises(ValueError, match=r"tile: a group of 1 tiles of 40×40 needs about"):
        compute_kernel_store(arch, digits, tmp_path / "a", tile=TILE)
    monkeypatch.setattr(
        kernels.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=10**12, free=1000)
    )
    with pytest.raises(ValueError, match=r"--out: the kernel store needs .* more on disk \(39 tiles\)"):
        compute_kernel_store(arch, digits, tmp_path / "b", tile=TILE)
    assert sorted(tmp_path.iterdir()) == []  # refused before anything was written


def test_mnist_with_shifted_copies_through_the_command(mnist_dir, tmp_path, capsys):
    argv = ["kernel", "--dataset", "mnist", "--data-dir", mnist_dir, "--n-train", 40, "--n-test", 20]
    code, stdout, stderr = _run([*argv, "--shifted-copies", 2, "--tile", 64, "--out", tmp_path / "k"], capsys)
    assert code == 0, stderr
    store = KernelStore.open(tmp_path / "k")
    assert (store.n_train, store.n_test) == (120, 20) and _computed(stdout) == (2 * 3 + 2 * 2 + 1, 0)
    assert store.meta["dataset"]["name"] == "mnist(test-split protocol, +2 shifted copies)"
    assert store.meta["dataset"]["drawn_train"] == 40 and store.meta["dataset"]["shifted_copies"] == 2
    ds = ntk_l2.load_mnist(40, 20, data_dir=mnist_dir, shifted_copies=2)
    k = fc_kernel_architecture(3, 10)[0].ntk(ds.x_test, ds.x_train)
    assert np.abs(store.load("ntk_test_train") - k).max() <= 1e-12 * np.abs(k).max()
