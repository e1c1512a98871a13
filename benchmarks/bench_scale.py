"""Kernels and predictions at scale: time and peak memory of each step, each in a fresh process.

    python benchmarks/bench_scale.py [--small] [--scratch DIR] [--data-dir DIR] [--no-distributed]
                                     [--resume | --only {predict,accuracy,large,distributed}]

Data: real MNIST (`NTK_L2_MNIST_DIR`, test-split protocol: n ≤ 5,000 drawn training points, m = 1,000
test points), enlarged by shifted copies (``--shifted-copies 1`` → n = 10,000, ``3`` → 20,000);
depth-3 fully connected ReLU network (degree 4), NTK only (``--no-nngp``), tiles of 1,000.

1. Kernel: ``ntk-l2 kernel`` for n = 1,000, 2,000, 5,000, 10,000, 20,000 (a complete store in
   ``--scratch`` is reused with its earlier timing).
2. Prediction on each store, 100 log-spaced times from 1 to 2/(ηλ), λ = 1e-3, η = stable_learning_rate,
   gradient flow: dense (store read from disk), Krylov (tol 1e-8), and for n ≤ 5,000 neural-tangents'
   ``gradient_descent_mse`` at λ = 0 against our dense solver at λ = 0 (kernel given, x64).
3. Krylov vs dense at n = 5,000, λ ∈ {1e-4, 1e-3, 1e-2, 1e-1}, flow and discrete map: max relative
   test error ≤ 1e-6, estimate ≥ true error at every time, time ratio dense/Krylov ≥ 5 (kernel given).
4. n = 20,000: kernel and ``predict --solver auto`` (Krylov) complete, each peak ≤ 12 GiB (a request
   refused by its memory estimate is recorded, then made again with ``--max-memory 48G``).
5. Cost model fitted to 1–2 and projections to n = 60,000 (all of MNIST, m = 10,000), here and on 8 GPUs.
6. Distributed equality at n = 2,000 (4 XLA host devices; 2 processes) and kill-and-resume.

Every peak is ``ru_maxrss`` of a fresh child process (`_scale_child`). ``--small``: n ∈ {500, 1000},
digits when MNIST is absent, seconds; results go to ``scale_small.*``. Writes benchmarks/results/
scale.json, scale.md (table) and scale.png (time vs n with the fitted cost model). ``--resume`` keeps the
stages an interrupted run saved; ``--only STAGE`` measures one stage again on the recorded stores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # this checkout's package, whatever else is installed
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
from _scale_child import bench_distributed, run_child, with_root  # noqa: E402

from ntk_l2.common.io import save_json  # noqa: E402
from ntk_l2.theory.scale_problem import relative_change  # noqa: E402

RESULTS = Path(__file__).parent / "results"
L2, TOL, PEAK_TARGET_KIB = 1e-3, 1e-8, 12 * 2**20
KRYLOV_CAP = 4096  # max_size of item 2's Krylov runs, which sizes the solver's memory check (never reached:
# r is reported); the solver's own default cap is the same


SIZES = {  # stores, m, tile; accuracy_n, nt_max, dense_max, dist_n, kill_tile (see Config)
    "full": (((1000, 0), (2000, 0), (5000, 0), (5000, 1), (5000, 3)), 1000, 1000, 5000, 5000, 10_000, 2000, 250),
    "small": (((500, 0), (1000, 0)), 500, 250, 1000, 1000, 1000, 500, 100),
}


@dataclass(frozen=True)
class Config:
    """What one run measures: the stores (drawn n, shifted copies of each), test points m and tile; the n of
    item 3 (accuracy_n) and of item 6 (dist_n, kill-and-resume with tiles of kill_tile); nt and dense up to
    nt_max and dense_max."""

    name: str
    dataset: str
    data_dir: str | None
    stores: tuple[tuple[int, int], ...]
    m: int
    tile: int
    accuracy_n: int
    nt_max: int
    dense_max: int
    dist_n: int
    kill_tile: int

    def kernel_argv(self, base: int, copies: int, out: Path, tile: int | None = None) -> list[str]:
        """``ntk-l2 kernel`` arguments for ``base`` drawn points and ``copies`` shifted copies of each."""
        argv = ["kernel", "--dataset", self.dataset, "--n-train", str(base), "--n-test", str(self.m)]
        argv += ["--data-dir", self.data_dir] if self.data_dir else []
        argv += ["--shifted-copies", str(copies)] if copies else []
        return argv + ["--tile", str(tile or self.tile), "--no-nngp", "--out", str(out)]


def config(small: bool, data_dir: str | None) -> Config:
    """Full: real MNIST (refused without it); small: MNIST when found, else the embedded digits."""
    mnist = bool(data_dir) and (Path(data_dir) / "t10k-images-idx3-ubyte.gz").is_file()
    if not (small or mnist):
        raise SystemExit(f"--data-dir: the MNIST files are not in {data_dir!r} (set NTK_L2_MNIST_DIR)")
    key = "small" if small else "full"
    name = "scale_small" if small else "scale"
    return Config(name, "mnist" if mnist else "digits", data_dir if mnist else None, *SIZES[key])


def child(spec: dict, env: dict | None = None) -> dict:
    """Run one measurement in a fresh process; its JSON line, or a RuntimeError with its stderr's end."""
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**with_root(), **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {spec['mode']} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def ensure_store(cfg: Config, scratch: Path, base: int, copies: int, previous: dict) -> dict:
    """The store of (base, copies): a complete one recorded in the previous results is reused with its
    entry; otherwise it is computed into a new directory."""
    from ntk_l2.data.kernel_store import KernelStore

    stem = f"{cfg.dataset}_n{base}x{copies + 1}_m{cfg.m}_t{cfg.tile}"
    for out in [scratch / stem, *sorted(scratch.glob(f"{stem}_*"))]:
        if str(out) in previous and KernelStore.is_store(out):
            try:
                KernelStore.open(out)
            except ValueError:
                continue  # incomplete or damaged
            print(f"kernel n = {base * (copies + 1)}: reused {out}")
            return {**previous[str(out)], "reused": True}
    out, k = scratch / stem, 1
    while out.exists():
        k += 1
        out = scratch / f"{stem}_{k}"
    argv = cfg.kernel_argv(base, copies, out)
    res = child({"mode": "kernel", "argv": argv})
    command = "ntk-l2 " + " ".join(argv).replace(cfg.data_dir or "\0", "$NTK_L2_MNIST_DIR")
    entry = {"n": base * (copies + 1), "m": cfg.m, "store": str(out), "command": command, **res}
    print(f"kernel n = {entry['n']}: {res['seconds']:.1f} s, peak {gib(res['peak_kib'])}")
    return {**entry, "reused": False}


def bench_store(cfg: Config, entry: dict, scratch: Path) -> dict:
    """Item 2 on one store: η, dense (n ≤ dense_max), Krylov, and for n ≤ nt_max nt vs ours at λ = 0."""
    n, store = entry["n"], entry["store"]
    eta = child({"mode": "eta", "store": store, "l2": L2})
    spec = {"store": store, "lr": eta["eta"], "l2": L2, "tol": TOL}
    row = {"n": n, "eta": eta}
    if n <= cfg.dense_max:
        row["dense"] = child({**spec, "mode": "dense", "save": str(scratch / f"fx_dense_{n}.npy")})
    kry = {**spec, "mode": "krylov", "max_size": KRYLOV_CAP, "save": str(scratch / f"fx_krylov_{n}.npy")}
    row["krylov"] = child(kry)
    if "dense" in row:
        a, b = (np.load(scratch / f"fx_{s}_{n}.npy") for s in ("dense", "krylov"))
        row["krylov"]["max_rel_error_test"] = float(np.max(relative_change(a, b)))
    if n <= cfg.nt_max:
        zero = {**spec, "l2_times": L2}
        row["nt"] = child({**zero, "mode": "nt", "save": str(scratch / f"fx_nt_{n}.npy")})
        row["ours_l2_0"] = child({**zero, "mode": "ours0", "save": str(scratch / f"fx_ours0_{n}.npy")})
        a, b = (np.load(scratch / f"fx_{s}_{n}.npy") for s in ("nt", "ours0"))
        row["ours_l2_0"]["ratio_to_nt"] = row["ours_l2_0"]["seconds"] / row["nt"]["seconds"]
        row["ours_l2_0"]["max_rel_difference_to_nt"] = float(np.max(relative_change(a, b)))
    print(
        f"predictions n = {n}: "
        + ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in row.items() if k != "n" and "seconds" in v)
    )
    return row


def gemm_gflops(size: int = 4096) -> float:
    """This machine's float64 matrix product rate (numpy, all cores), best of 3, GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((size, size))
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


def bench_accuracy(cfg: Config, stores: dict) -> dict:
    """Item 3: Krylov vs dense at n = accuracy_n, kernel given, every λ, flow and discrete map."""
    spec = {"mode": "accuracy", "store": stores[cfg.accuracy_n], "tol": TOL, "l2s": [1e-4, 1e-3, 1e-2, 1e-1]}
    res = child({**spec, "discrete": [False, True]})
    for case in res["cases"]:
        case["passed"] = case["max_rel_error_test"] <= 1e-6 and case["estimate_bounds_error"] and case["ratio"] >= 5
    res["targets"] = "max_rel_error_test <= 1e-6, estimate >= true error at every time, ratio >= 5"
    return res


def bench_large(entry: dict, row: dict) -> dict:
    """Item 4 on the largest store: ``predict --solver auto`` (`predict_store`), the Python API's Krylov
    run of item 2 beside it, and one product streamed from disk (for item 5)."""
    res = child({"mode": "large", "store": entry["store"], "lr": row["eta"]["eta"], "l2": L2, "tol": TOL})
    res["stream"] = child({"mode": "stream", "store": entry["store"]})
    res.update(n=entry["n"], kernel_peak_kib=entry["peak_kib"], krylov_api=row["krylov"])
    peaks = [entry["peak_kib"], res.get("peak_kib", 0)]
    res["passed"] = bool(res["completed"] and res["converged"] and max(peaks) <= PEAK_TARGET_KIB)
    return res


def pairs(n: int, m: int, tile: int) -> int:
    """Kernel entries computed: whole tiles (edges padded), the upper tiles of Θ_XX and every tile of Θ_*X."""
    t, u = -(-n // tile), -(-m // tile)
    return tile * tile * (t * (t + 1) // 2 + u * t)


def fit(y: list[float], columns: list[list[float]]) -> list[float]:
    """y ≈ Σ_j c_j x_j with c ≥ 0, least squares of the relative residuals."""
    from scipy.optimize import nnls

    a = np.asarray(columns, float).T / np.asarray(y, float)[:, None]
    return nnls(a, np.ones(len(y)))[0].tolist()


def store_bytes(n: int, m: int, tile: int, nngp: bool) -> int:
    """Bytes of a store's tiles (float64; symmetric blocks keep their upper tiles)."""
    from ntk_l2.data.kernel_store import block_names, tile_list, tile_shape

    meta = {"n_train": n, "n_test": m, "tile": tile, "blocks": list(block_names(m, nngp))}
    return sum(8 * int(np.prod(tile_shape(meta, *t))) for t in tile_list(meta))


def measured(res: dict) -> dict[str, list[tuple[int, float, int]]]:
    """(n, seconds, r) of each series: kernel (``ntk-l2 kernel``), dense (from the store), Krylov (read +
    solve) and neural-tangents (kernel given); r is the Krylov dimension (0 elsewhere)."""
    rows = res["predict"]
    return {
        "kernel": [(e["n"], e["seconds"], 0) for e in res["kernel"]],
        "dense": [(p["n"], p["dense"]["seconds"], 0) for p in rows if "dense" in p],
        "Krylov": [(p["n"], p["krylov"]["seconds"] + p["krylov"]["load_s"], p["krylov"]["r"]) for p in rows],
        "neural-tangents": [(p["n"], p["nt"]["seconds"], 0) for p in rows if "nt" in p],
    }


def modelled(cm: dict, name: str, n: float, m: int, tile: int) -> float:
    """The fitted cost model's time for ``name`` at n (kernel: m test points; Krylov: r ≈ α·n^β)."""
    if name == "kernel":
        return cm["kernel"][0] * pairs(int(n), m, tile) + cm["kernel"][1]
    if name == "Krylov":
        alpha, beta = cm["krylov_r_fit"]
        return cm["Krylov"][0] * n * n * alpha * n**beta + cm["Krylov"][1]
    return cm[name][0] * n**3 + cm[name][1]


def cost_model(cfg: Config, res: dict, n_big: int = 60_000, m_big: int = 10_000) -> dict:
    """Item 5: t ≈ a·pairs + a0 (kernel), b·n³ + b0 (dense, nt), κ·n²·r + k0 (Krylov), fitted; and
    projections to n_big (labelled "projection") on this machine and on 8 A100 GPUs."""
    series = measured(res)
    columns = {"kernel": lambda n, r: pairs(n, cfg.m, cfg.tile), "Krylov": lambda n, r: n * n * r}
    cm = {
        name: fit(
            [t for _, t, _ in pts], [[columns.get(name, lambda n, r: n**3)(n, r) for n, _, r in pts], [1.0] * len(pts)]
        )
        for name, pts in series.items()
    }
    kry = series["Krylov"]
    big = [(n, r) for n, _, r in kry if n >= 2000] or [(n, r) for n, _, r in kry]
    beta, log_alpha = np.polyfit(np.log([n for n, _ in big]), np.log([r for _, r in big]), 1)
    cm.update(krylov_r={str(n): r for n, _, r in kry}, krylov_r_fit=[float(np.exp(log_alpha)), float(beta)])
    cm["units"] = "kernel [s/pair, s], dense and neural-tangents [s/n³, s], Krylov [s/(n²·r), s], r ≈ α·n^β: [α, β]"
    r_big, c, stream = float(np.exp(log_alpha) * n_big**beta), res["predict"][0]["krylov"]["c"], res["large"]["stream"]
    train_bytes, ntk_bytes = store_bytes(n_big, 0, 1000, False), store_bytes(n_big, m_big, 1000, False)
    checks = int(np.ceil(np.log(max(r_big / (4 * c), 1.0)) / np.log(1.25))) + 1  # passes over Θ_*X
    stream_s = (r_big / c * train_bytes + checks * (ntk_bytes - train_bytes)) / (stream["gb_per_s"] * 1e9)
    gpu = res["gemm_gflops"] * 1e9 / (8 * 19.5e12)
    cm["projection"] = {
        "n": n_big,
        "m": m_big,
        "kernel_s": modelled(cm, "kernel", n_big, m_big, 1000),
        "store_bytes_ntk": ntk_bytes,
        "store_bytes_ntk_nngp": store_bytes(n_big, m_big, 1000, True),
        "krylov_r": r_big,
        "krylov_disk_s": stream_s + cm["Krylov"][1],
        "krylov_disk_assumption": f"{r_big / c:.0f} products streaming the NTK block at the {stream['gb_per_s']:.2f} "
        f"GB/s measured at n = {res['large']['n']:,} (page cache warm)",
        "dense": f"does not fit: 2n² float64 = {16.0 * n_big**2 / 1e9:.1f} GB > 24 GiB",
        "dense_s_if_it_fit": modelled(cm, "dense", n_big, m_big, 1000),
        "gpu8_factor": gpu,
        "gpu8_kernel_s": cm["kernel"][0] * pairs(n_big, m_big, 1000) * gpu,
        "gpu8_krylov_s": cm["Krylov"][0] * n_big**2 * r_big * gpu,
        "gpu8_assumption": f"8 × A100 at FP64 tensor-core peak 19.5 TFLOP/s, each at the fraction of its peak that "
        f"this CPU reaches of its numpy float64 GEMM rate ({res['gemm_gflops']:.1f} GFLOP/s, taken as its peak): "
        f"times × {gpu:.2e}, no transfer or communication cost",
    }
    return cm


def gib(kib: float) -> str:
    return f"{kib / 2**20:.2f} GiB"


HEADER = "n | kernel time | kernel peak | dense time | dense peak | Krylov time (r) | Krylov peak | nt time | nt peak"


def table_rows(res: dict) -> list[list[str]]:
    """The rows of `HEADER` (Krylov time: blocks read + solve)."""
    rows = []
    for e, p in zip(res["kernel"], res["predict"], strict=True):
        d, k, nt = p.get("dense"), p["krylov"], p.get("nt")
        kernel = f"{e['seconds']:.1f} s" + (" (reused)" if e.get("reused") else "")
        rows.append([f"{e['n']:,}", kernel, gib(e["peak_kib"])])
        rows[-1] += [f"{d['seconds']:.1f} s", gib(d["peak_kib"])] if d else ["not run", "–"]
        rows[-1] += [f"{k['seconds'] + k['load_s']:.1f} s ({k['r']})", gib(k["peak_kib"])]
        rows[-1] += [f"{nt['seconds']:.2f} s", gib(nt["peak_kib"])] if nt else ["–", "–"]
    return rows


def projection_lines(res: dict) -> list[str]:
    cm, pr = res["cost_model"], res["cost_model"]["projection"]
    (a, a0), (b, b0), (k, k0), (t, t0), rf = (cm[s] for s in (*measured(res), "krylov_r_fit"))
    return [
        f"cost model: kernel {a:.3g} s/pair + {a0:.1f} s; dense {b:.3g}·n³ + {b0:.1f} s; Krylov {k:.3g}·n²·r + "
        f"{k0:.1f} s with r ≈ {rf[0]:.3g}·n^{rf[1]:.2f}; neural-tangents {t:.3g}·n³ + {t0:.1f} s",
        f"projection, n = {pr['n']:,}, m = {pr['m']:,}, this machine: kernel {pr['kernel_s'] / 3600:.1f} h, store "
        f"{pr['store_bytes_ntk'] / 1e9:.1f} GB (NTK; {pr['store_bytes_ntk_nngp'] / 1e9:.1f} GB with the NNGP), "
        f"Krylov from disk {pr['krylov_disk_s'] / 60:.0f} min (r ≈ {pr['krylov_r']:.0f}: "
        f"{pr['krylov_disk_assumption']}); dense {pr['dense']}",
        f"projection, n = {pr['n']:,}, 8 GPUs: kernel {pr['gpu8_kernel_s']:.2g} s, Krylov {pr['gpu8_krylov_s']:.2g} s "
        f"({pr['gpu8_assumption']})",
    ]


def print_table(res: dict) -> None:
    rows = [HEADER.split(" | "), *table_rows(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows))
    for p in (p for p in res["predict"] if "nt" in p):
        o = p["ours_l2_0"]
        print(
            f"n = {p['n']:,}, λ = 0, kernel given: ours {o['seconds']:.2f} s vs neural-tangents "
            f"{p['nt']['seconds']:.2f} s, ratio {o['ratio_to_nt']:.2f}, max relative difference "
            f"{o['max_rel_difference_to_nt']:.1e}"
        )
    acc = res["accuracy"]
    for c in acc["cases"]:
        print(
            f"n = {acc['n']:,} {'discrete' if c['discrete'] else 'flow'} λ = {c['l2']:g}: Krylov vs dense "
            f"{c['max_rel_error_test']:.1e}, estimate ≥ error {c['estimate_bounds_error']}, dense {c['dense_s']:.1f} "
            f"s / Krylov {c['krylov_s']:.2f} s = {c['ratio']:.1f}× (r = {c['r']}), passed {c['passed']}"
        )
    lg, api = res["large"], res["large"]["krylov_api"]
    run = lg if lg["completed"] else lg["retry"]
    done = f"{run['solver']} r = {run['r']}, {run['seconds']:.1f} s"
    if not lg["completed"]:
        done = f"refused ({lg['error']}); with --max-memory {run['max_memory_bytes'] / 2**30:.0f}G: {done}"
    print(
        f"n = {lg['n']:,} predict --solver auto: {done}, peak {gib(lg['peak_kib'])} (kernel peak "
        f"{gib(lg['kernel_peak_kib'])}; target ≤ 12 GiB), passed {lg['passed']}; predict_krylov(max_size="
        f"{api['max_size']}): r = {api['r']}, {api['load_s'] + api['seconds']:.1f} s, peak {gib(api['peak_kib'])}"
    )
    if "distributed" in res:
        d = res["distributed"]
        print(
            f"distributed n = {d['n']:,}: 4 devices max |Δ| {d['devices4']['max_abs_difference']:.1e}, 2 processes "
            f"{d['processes2']['max_abs_difference']:.1e}; kill-and-resume {d['kill_resume']}"
        )
    print("\n".join(projection_lines(res)))


def markdown(res: dict) -> str:
    lines = [f"| {HEADER} |", "|" + " --- |" * len(HEADER.split(" | "))]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(res)]
    return "\n".join(lines + [""] + [f"- {line}" for line in projection_lines(res)]) + "\n"


def plot(cfg: Config, res: dict, path: Path) -> None:
    """Time vs n, log-log: measured points and the fitted cost model, extended to n = 60,000."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.logspace(np.log10(res["kernel"][0]["n"]), np.log10(60_000), 60)
    fig, ax = plt.subplots(figsize=(7, 5))
    for k, (name, points) in enumerate(measured(res).items()):
        ax.loglog([n for n, *_ in points], [t for _, t, _ in points], "o", color=f"C{k}", label=name)
        ax.loglog(grid, [modelled(res["cost_model"], name, n, cfg.m, cfg.tile) for n in grid], "--", color=f"C{k}")
    title = f"{cfg.dataset}, m = {cfg.m:,}: measured (points)\nfitted cost model (dashed; projection beyond the points)"
    ax.set(xlabel="training points n", ylabel="wall time (s)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="n ∈ {500, 1000} (smoke test, not the targets)")
    parser.add_argument("--scratch", default="/tmp/ntk_l2_bench_scale", help="directory of the kernel stores")
    parser.add_argument("--data-dir", default=os.environ.get("NTK_L2_MNIST_DIR"), help="MNIST files")
    parser.add_argument("--no-distributed", action="store_true", help="skip item 6")
    parser.add_argument("--resume", action="store_true", help="keep the stages of an interrupted run's results")
    parser.add_argument("--only", choices=("predict", "accuracy", "large", "distributed"), help="re-run one stage")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    cfg, scratch = config(args.small, args.data_dir), Path(args.scratch) / ("small" if args.small else "full")
    scratch.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{cfg.name}.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    previous = {e["store"]: e for e in old.get("kernel", [])}
    if args.only:  # the earlier results, with one stage measured again
        results = {**old, f"{args.only}_rerun_load_average": os.getloadavg()}
    else:
        config_ = {**cfg.__dict__, "data_dir": "$NTK_L2_MNIST_DIR" if cfg.data_dir else None}
        results = {"config": config_, "load_average_start": os.getloadavg(), "cores": os.cpu_count()}
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        results.update(package={"root": str(ROOT), "head": head.strip()}, gemm_gflops=gemm_gflops())
        results["baseline"] = child({"mode": "baseline"})
        results["kernel"] = [ensure_store(cfg, scratch, base, k, previous) for base, k in cfg.stores]
    stores = {e["n"]: e for e in results["kernel"]}
    stages = {
        "predict": lambda: [bench_store(cfg, e, scratch) for e in results["kernel"]],
        "accuracy": lambda: bench_accuracy(cfg, {n: e["store"] for n, e in stores.items()}),
        "large": lambda: bench_large(results["kernel"][-1], results["predict"][-1]),
        "distributed": lambda: bench_distributed(cfg, stores[cfg.dist_n], scratch / "distributed", child),
    }
    for key, run in stages.items():
        if (key == "distributed" and args.no_distributed) or args.only not in (None, key):
            continue
        kept = args.resume and old.get("partial") and key in old and old["kernel"] == results["kernel"]
        results[key] = old[key] if kept else run()
        save_json(out, {**results, "partial": True})  # a later failure keeps what was measured (--resume)
    results["cost_model"] = cost_model(cfg, results)
    results.setdefault("load_average_end", os.getloadavg())  # --only keeps the full run's
    save_json(out, results)
    print_table(results)
    (RESULTS / f"{cfg.name}.md").write_text(markdown(results))
    plot(cfg, results, RESULTS / f"{cfg.name}.png")
    print(f"wrote {out}, {cfg.name}.md, {cfg.name}.png")


if __name__ == "__main__":
    main()
