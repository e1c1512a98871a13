"""The measurements of `bench_scale.py`, each run in a fresh process so that its peak memory is its own.

``python benchmarks/bench_scale.py --child '{"mode": ..., ...}'`` calls `run_child`, which runs one
mode and prints one JSON line: the mode's results plus ``peak_kib`` (``ru_maxrss`` of the process,
KiB on Linux: imports included, see mode ``baseline``) and ``child_s`` (wall time of the mode).
Timings start once the inputs a mode is "given" are in memory; reading them is timed apart (``load_s``).
`bench_distributed` (item 6) starts ``ntk-l2 kernel`` processes itself: on 4 XLA host devices, as 2
processes of one cluster, and killed mid-way then resumed.
"""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEGREE = 4  # depth-3 fully connected ReLU network, bias-free: degree depth + 1
MAX_DECAY = 0.1  # stable_learning_rate's cap on ηλ
RETRY_LIMIT = 48 * 2**30  # --max-memory 48G, for a request refused by a memory estimate
BUDGET_S = 30.0  # repeat a timed call while the calls so far took less than this


def with_root() -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH, so that every process imports its package."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def log_times(lr: float, l2: float, discrete: bool, count: int = 100) -> np.ndarray:
    """``count`` log-spaced times from 1 to 2/(ηλ); for the discrete map, rounded to distinct integers."""
    times = np.logspace(0.0, np.log10(2.0 / (lr * l2)), count)
    return np.unique(np.rint(times)) if discrete else times


def eta_from_mu(mu_max: float, n_outputs: int, l2: float) -> float:
    """`ntk_l2.theory.stable_learning_rate`'s rule from a given μ_max: min(½ η_max, 0.1/λ) (F4)."""
    from ntk_l2.theory import stability_limit

    return min(0.5 * stability_limit(mu_max, float(n_outputs), l2, DEGREE), MAX_DECAY / l2)


def rule(lr: float, l2: float, discrete: bool = False) -> Any:
    """What is predicted: η, λ, degree 4, gradient flow (or the discrete map)."""
    from ntk_l2.theory.scale import TrainingRule

    return TrainingRule(lr, l2, DEGREE, discrete=discrete)


def _clock(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _best(fn: Any, budget: float = BUDGET_S) -> tuple[Any, dict]:
    """fn's result and its times: ``first_s`` (JIT compilation included), ``seconds`` the best of the
    first call and up to two more made while the calls so far took under ``budget`` seconds in all
    (the machine is shared: the best of a few calls is the least disturbed)."""
    out, first = _clock(fn)
    runs = [first]
    while len(runs) < 3 and sum(runs) < budget:
        out, seconds = _clock(fn)
        runs.append(seconds)
    return out, {"first_s": first, "seconds": min(runs), "calls": len(runs)}


def _open(spec: dict) -> Any:
    from ntk_l2.data.kernel_store import KernelStore

    return KernelStore.open(spec["store"])


def _arrays(store: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(Θ_XX, Θ_*X, Y, seconds to read them) from the store."""
    t0 = time.perf_counter()
    k_xx, k_sx = store.load("ntk_train_train"), store.load("ntk_test_train")
    return k_xx, k_sx, store.targets()[0], time.perf_counter() - t0


def _save(spec: dict, fx_test: np.ndarray) -> None:
    if spec.get("save"):
        np.save(spec["save"], np.asarray(fx_test, np.float64))


def mode_baseline(spec: dict) -> dict:
    """The imports every solver child makes, and nothing else: the floor under every peak."""
    import jax  # noqa: F401

    import ntk_l2.experiments.kernels
    import ntk_l2.theory.scale  # noqa: F401

    return {"package": str(Path(ntk_l2.experiments.kernels.__file__).parents[1])}


def mode_kernel(spec: dict) -> dict:
    """``ntk-l2 kernel ARGV`` in this process (imports before the clock); counts parsed from its summary."""
    import jax  # noqa: F401

    import ntk_l2.experiments.kernels  # noqa: F401
    from ntk_l2.cli.commands import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code, seconds = _clock(lambda: main(spec["argv"]))
    line = printed.getvalue().strip().splitlines()[-1]
    found = re.search(r"(\d+) tiles computed, (\d+) reused", line)
    if code != 0 or found is None:
        raise RuntimeError(f"ntk-l2 kernel failed: exit {code}, printed {line!r}")
    return {"seconds": seconds, "computed": int(found[1]), "reused": int(found[2]), "summary": line}


def mode_eta(spec: dict) -> dict:
    """η = stable_learning_rate(Θ_XX, n·c, λ, 4): μ_max by Lanczos (``eigsh``); for n ≤ 5,000 also by
    `stable_learning_rate` itself (a full ``eigvalsh``), which is then the η returned."""
    from scipy.sparse.linalg import eigsh

    from ntk_l2.theory import stable_learning_rate

    store = _open(spec)
    k_xx, n, c = store.load("ntk_train_train"), store.n_train, store.c
    mu = float(eigsh(k_xx, k=1, which="LA", tol=1e-12, return_eigenvectors=False)[0])
    out = {"mu_max": mu, "eta_lanczos": eta_from_mu(mu, n * c, spec["l2"])}
    out["eta"] = out["eta_lanczos"]
    if n <= 5000:
        out["eta"] = stable_learning_rate(k_xx, n * c, spec["l2"], DEGREE)
        out["eta_relative_difference"] = abs(out["eta"] - out["eta_lanczos"]) / out["eta"]
    return out


def mode_dense(spec: dict) -> dict:
    """`predict_dense` on the store's blocks read from disk, timed by `_best` (each call reads the blocks;
    ``load_s`` is one read of both, timed beforehand and dropped)."""
    from ntk_l2.experiments.predict_store import StoreBlock
    from ntk_l2.theory.scale import predict_dense

    store = _open(spec)
    load_s = _arrays(store)[3]  # the arrays are dropped at once: the solver reads its own copy
    times, y = log_times(spec["lr"], spec["l2"], False), store.targets()[0]
    blocks = StoreBlock(store, "ntk_train_train"), StoreBlock(store, "ntk_test_train")
    dyn = rule(spec["lr"], spec["l2"])
    res, timing = _best(lambda: predict_dense(blocks[0], y, times, dyn, k_test_train=blocks[1]))
    _save(spec, res.fx_test)
    return {**timing, "load_s": load_s, "times": len(times)}


def mode_krylov(spec: dict) -> dict:
    """`predict_krylov` (tol ``tol``, dimension capped at ``max_size``) with both blocks in memory, as
    ``ntk-l2 predict`` holds them when together they take at most a third of the memory limit (else the
    blocks are streamed from disk), timed by `_best`."""
    from ntk_l2.common import memory
    from ntk_l2.experiments.predict_store import IN_MEMORY_SHARE, StoreBlock
    from ntk_l2.theory.scale import predict_krylov

    store = _open(spec)
    nbytes = store.nbytes("ntk_train_train") + store.nbytes("ntk_test_train")
    in_memory = IN_MEMORY_SHARE * nbytes <= memory.limit_bytes()
    if in_memory:
        k_xx, k_sx, y, load_s = _arrays(store)
    else:
        k_xx, k_sx = StoreBlock(store, "ntk_train_train"), StoreBlock(store, "ntk_test_train")
        y, load_s = store.targets()[0], 0.0
    times, dyn, cap = log_times(spec["lr"], spec["l2"], False), rule(spec["lr"], spec["l2"]), spec.get("max_size")
    res, timing = _best(lambda: predict_krylov(k_xx, y, times, dyn, k_test_train=k_sx, tol=spec["tol"], max_size=cap))
    _save(spec, res.fx_test)
    return {
        **timing,
        "load_s": load_s,
        "in_memory": in_memory,
        "max_size": cap,
        "r": res.krylov_size,
        "c": int(y.shape[1]),
        "converged": res.converged,
        "max_error_estimate": res.max_error_estimate,
    }


def mode_nt(spec: dict) -> dict:
    """neural-tangents' ``gradient_descent_mse`` (λ = 0, x64, float64 arrays), timed by `_best`."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from ntk_l2.networks.nt import nt

    k_xx, k_sx, y, load_s = _arrays(_open(spec))
    times = log_times(spec["lr"], spec["l2_times"], False)

    def run() -> np.ndarray:
        fn = nt.predict.gradient_descent_mse(k_xx, y, learning_rate=spec["lr"], diag_reg=0.0)
        return np.asarray(fn(times, 0.0, 0.0, k_sx)[1])

    fx_test, timing = _best(run)
    _save(spec, fx_test)
    return {**timing, "load_s": load_s}


def mode_ours0(spec: dict) -> dict:
    """`predict_dense` at λ = 0 on the same arrays as mode ``nt`` (kernel given), timed by `_best`."""
    from ntk_l2.theory.scale import predict_dense

    k_xx, k_sx, y, load_s = _arrays(_open(spec))
    times, dyn = log_times(spec["lr"], spec["l2_times"], False), rule(spec["lr"], 0.0)
    res, timing = _best(lambda: predict_dense(k_xx, y, times, dyn, k_test_train=k_sx))
    _save(spec, res.fx_test)
    return {**timing, "load_s": load_s}


def _compare(dense: Any, kry: Any) -> dict:
    """Krylov against dense: max over times of the relative test and train errors, and whether the
    estimate bounds the true error (the larger of train and test, as the estimate is defined) at every time."""
    from ntk_l2.theory.scale_problem import relative_change

    test = relative_change(dense.fx_test, kry.fx_test)
    true = np.maximum(test, relative_change(dense.fx_train, kry.fx_train))
    return {
        "max_rel_error_test": float(test.max()),
        "max_rel_error": float(true.max()),
        "estimate_bounds_error": bool(np.all(kry.error_estimate >= true)),
        "times_not_bounded": int(np.sum(kry.error_estimate < true)),
        "min_estimate_over_error": float(np.min(kry.error_estimate / np.maximum(true, 1e-300))),
    }


def mode_accuracy(spec: dict) -> dict:
    """Krylov vs dense, kernel given in memory, at every λ of ``l2s``, gradient flow and the discrete map.
    One untimed warm-up of both solvers per dynamics (JIT compilation), then each case timed by `_best`."""
    from ntk_l2.theory import stable_learning_rate
    from ntk_l2.theory.scale import predict_dense, predict_krylov

    k_xx, k_sx, y, load_s = _arrays(_open(spec))
    n, c = y.shape
    cases = []
    for discrete in spec["discrete"]:
        for i, lam in enumerate(spec["l2s"]):
            eta = stable_learning_rate(k_xx, n * c, lam, DEGREE)
            times, dyn = log_times(eta, lam, discrete), rule(eta, lam, discrete)

            def dense(t=times, d=dyn):
                return predict_dense(k_xx, y, t, d, k_test_train=k_sx)

            def krylov(t=times, d=dyn):
                return predict_krylov(k_xx, y, t, d, k_test_train=k_sx, tol=spec["tol"])

            if i == 0:
                dense(), krylov()
            (d_res, d_t), (k_res, k_t) = _best(dense), _best(krylov)
            d_s, k_s = d_t["seconds"], k_t["seconds"]
            case = {"discrete": discrete, "l2": lam, "lr": eta, "times": len(times), "dense_s": d_s}
            case.update(krylov_s=k_s, ratio=d_s / k_s, r=k_res.krylov_size, converged=k_res.converged)
            case.update(max_error_estimate=k_res.max_error_estimate, **_compare(d_res, k_res))
            cases.append(case)
    return {"n": n, "c": c, "load_s": load_s, "tol": spec["tol"], "cases": cases}


def mode_large(spec: dict) -> dict:
    """``ntk-l2 predict DIR --solver auto``'s computation (`predict_store`): open, read, solve. A refusal
    (ValueError, e.g. the memory check) is recorded as ``completed: false`` with its message, and the
    request is made again as the message suggests, with the limit raised (``--max-memory``) to `RETRY_LIMIT`."""
    from ntk_l2.common.memory import memory_limit
    from ntk_l2.experiments.predict_store import StoreRequest, predict_store

    times = log_times(spec["lr"], spec["l2"], False)
    request = StoreRequest(rule(spec["lr"], spec["l2"]), "auto", spec["tol"])

    def run() -> dict:
        (out, res), seconds = _clock(lambda: predict_store(spec["store"], times, request, progress=False))
        fields = {"seconds": seconds, "solver": res.solver, "r": res.krylov_size, "converged": res.converged}
        return {
            **fields,
            "max_error_estimate": res.max_error_estimate,
            "test_accuracy": float(out["test_accuracy"][-1]),
        }

    try:
        return {"completed": True, **run()}
    except ValueError as err:
        refused = str(err)
    with memory_limit(RETRY_LIMIT):  # outside the handler: the refused attempt's arrays are released
        retry = {"max_memory_bytes": RETRY_LIMIT, **run()}
    return {"completed": False, "error": refused, "converged": False, "retry": retry}


def mode_stream(spec: dict) -> dict:
    """One product Θ_XX Q (Q: n × c) streamed tile by tile from the store (best of 2), and its bytes."""
    from ntk_l2.data.kernel_store import tile_list, tile_shape

    store = _open(spec)
    q = np.random.default_rng(0).standard_normal((store.n_train, store.c))
    runs = [_clock(lambda: store.matmul("ntk_train_train", q))[1] for _ in range(2)]
    tiles = [t for t in tile_list(store.meta) if t[0] == "ntk_train_train"]
    nbytes = sum(8 * np.prod(tile_shape(store.meta, *t)) for t in tiles)
    return {"seconds": min(runs), "bytes": int(nbytes), "gb_per_s": nbytes / min(runs) / 1e9}


MODES = {name[5:]: fn for name, fn in globals().items() if name.startswith("mode_")}


def run_child(spec: dict) -> None:
    """Run ``spec["mode"]`` and print its JSON line (with ``peak_kib``, ``child_s`` and ``load_average``)."""
    load = os.getloadavg()[0]  # the machine may be shared: its 1-minute load average when the child started
    out, seconds = _clock(lambda: MODES[spec["mode"]](spec))
    out.update(child_s=seconds, peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, load_average=load)
    print(json.dumps(out))


def _fresh(parent: Path, prefix: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}_", dir=parent))


def _tiles(store: Path) -> list[Path]:
    return sorted((store / "tiles").rglob("r*.npy"))


def _max_abs_difference(a: str | Path, b: str | Path) -> float:
    """Largest |difference| over every block of two stores of the same inputs (checked by their hash)."""
    from ntk_l2.data.kernel_store import KernelStore

    sa, sb = KernelStore.open(a), KernelStore.open(b)
    if sa.meta["inputs_sha256"] != sb.meta["inputs_sha256"] or sa.blocks != sb.blocks:
        raise RuntimeError(f"stores {a} and {b} do not hold the same inputs and blocks")
    return max(float(np.max(np.abs(sa.load(k) - sb.load(k)))) for k in sa.blocks)


def _two_processes(argv: list[str]) -> dict:
    """``ntk-l2 kernel ARGV`` as processes 0 and 1 of a 2-process cluster on this host (gloo collectives)."""
    with socket.socket() as sock:  # a free port for the coordinator
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id"]
    cmds = [[sys.executable, "-m", "ntk_l2.cli", *argv, *flags, str(i)] for i in range(2)]
    t0 = time.perf_counter()
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(c, stdout=pipe, stderr=pipe, text=True, env=with_root()) for c in cmds]
    outs = [p.communicate(timeout=900) for p in procs]
    seconds = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"2-process kernel failed: {[o[1][-1500:] for o in outs]}")
    return {"seconds": seconds, "summaries": [o[0].strip().splitlines()[-1] for o in outs]}


def _kill_and_resume(argv: Callable[[Path], list[str]], reference: Path, scratch: Path, child: Callable) -> dict:
    """SIGKILL a kernel run once a third of its tiles are on disk, run it again, count what the second run
    computes and compare every tile with an uninterrupted run's, byte for byte."""
    total = len(_tiles(reference))
    killed = _fresh(scratch, "killed")
    cmd, quiet = [sys.executable, "-m", "ntk_l2.cli", *argv(killed)], subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=quiet, stderr=quiet, env=with_root())
    deadline = time.monotonic() + 600
    while proc.poll() is None and len(_tiles(killed)) < total // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    was_killed = proc.poll() is None
    if was_killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = len(_tiles(killed))
    resumed = child({"mode": "kernel", "argv": argv(killed)})
    names = [p.relative_to(reference) for p in _tiles(reference)]
    equal = [p.relative_to(killed) for p in _tiles(killed)] == names and all(
        filecmp.cmp(reference / p, killed / p, shallow=False) for p in names
    )
    return {
        "tiles": total,
        "killed": was_killed,
        "tiles_on_disk_at_kill": at_kill,
        "computed_on_resume": resumed["computed"],
        "reused_on_resume": resumed["reused"],
        "bitwise_equal": bool(equal),
        "passed": bool(equal and was_killed and resumed["computed"] == total - at_kill),
    }


def bench_distributed(cfg: Any, ref: dict, scratch: Path, child: Callable) -> dict:
    """Item 6 at n = ``ref["n"]``: the store on 4 XLA host devices and as 2 processes against the one-device
    store ``ref`` (max |difference|, target ≤ 1e-12), and kill-and-resume with tiles of ``cfg.kill_tile``."""
    base = ref["n"]
    devices = _fresh(scratch, "devices4")
    four = child(
        {"mode": "kernel", "argv": cfg.kernel_argv(base, 0, devices)},
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    four["max_abs_difference"] = _max_abs_difference(ref["store"], devices)
    procs = _fresh(scratch, "processes2")
    two = _two_processes(cfg.kernel_argv(base, 0, procs)[:])
    two["max_abs_difference"] = _max_abs_difference(ref["store"], procs)
    reference = _fresh(scratch, f"tile{cfg.kill_tile}")
    child({"mode": "kernel", "argv": cfg.kernel_argv(base, 0, reference, cfg.kill_tile)})
    resume = _kill_and_resume(lambda d: cfg.kernel_argv(base, 0, d, cfg.kill_tile), reference, scratch, child)
    out = {"n": base, "devices4": four, "processes2": two, "kill_resume": resume}
    out["passed"] = four["max_abs_difference"] <= 1e-12 and two["max_abs_difference"] <= 1e-12 and resume["passed"]
    return out
