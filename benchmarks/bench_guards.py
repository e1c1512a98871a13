"""How fast a request that cannot fit is refused, and that nothing was allocated for it.

    python benchmarks/bench_guards.py

An `.npz` of a few hundred bytes declares in its array headers a kernel that
cannot fit in memory: n = 2,000,000 (a 32 TB kernel) and n just above what
this machine has available now. `ntk-l2 predict` must refuse it with one line
and exit code 2 before reading any data. Measured: the time from the call to
the refusal inside a running process (target < 1 s), the peak resident memory
of that process before and after (nothing allocated), and the whole command as
a fresh process (which includes importing JAX and neural-tangents). Prints one
line per case and writes benchmarks/results/guards.json.
"""

from __future__ import annotations

import contextlib
import io
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from ntk_l2.cli.commands import main
from ntk_l2.common.io import save_json
from ntk_l2.common.memory import available_bytes


def declared_kernel(path: Path, n: int, c: int = 10) -> None:
    """Headers for an n x n kernel and (n, c) targets, followed by 64 bytes of data."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, shape in (("k_train_train", (n, n)), ("y_train", (n, c))):
            header = np.lib.format.header_data_from_array_1_0(np.empty(0))
            header["shape"] = shape
            with archive.open(f"{key}.npy", "w") as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                handle.write(b"\0" * 64)


def refuse(path: Path, out: Path) -> tuple[float, int, str]:
    argv = ["predict", str(path), "--lr", "1", "--l2", "1e-3", "--degree", "2", "--times", "0,10", "--out", str(out)]
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return time.perf_counter() - t0, code, err.getvalue()


def main_bench() -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        just_above = int(np.sqrt(available_bytes() / (5 * 8))) + 1  # 5n² doubles for the eigendecomposition alone
        for label, n in (("n_2e6", 2_000_000), ("n_just_above_available", just_above)):
            path = tmp / f"{label}.npz"
            declared_kernel(path, n)
            refuse(path, tmp / "warm.npz")  # first call: lazy imports
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            timings, codes, lines = [], set(), ""
            for _ in range(5):
                seconds, code, lines = refuse(path, tmp / "o.npz")
                timings.append(seconds)
                codes.add(code)
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ntk_l2.cli.commands",
                    *(
                        [
                            "predict",
                            str(path),
                            "--lr",
                            "1",
                            "--l2",
                            "1e-3",
                            "--degree",
                            "2",
                            "--times",
                            "0,10",
                            "--out",
                            str(tmp / "o.npz"),
                        ]
                    ),
                ],
                capture_output=True,
                text=True,
            )
            process_s = time.perf_counter() - t0
            results[label] = {
                "n": n,
                "file_bytes": path.stat().st_size,
                "refusal_median_s": float(np.median(timings)),
                "refusal_max_s": float(np.max(timings)),
                "exit_codes": sorted(codes),
                "one_line": lines.count("\n") == 1,
                "message": lines.strip(),
                "peak_rss_growth_kib": int(rss_after - rss_before),
                "output_written": (tmp / "o.npz").exists(),
                "fresh_process_s": process_s,
                "fresh_process_exit": proc.returncode,
                "target": "refusal_median_s < 1, exit 2, one line, no output",
            }
            r = results[label]
            print(
                f"{label}: n = {n:,}, refused in {1e3 * r['refusal_median_s']:.2f} ms (median of 5, max "
                f"{1e3 * r['refusal_max_s']:.2f} ms), exit {r['exit_codes']}, one line {r['one_line']}, "
                f"peak RSS growth {r['peak_rss_growth_kib']} KiB; fresh process {process_s:.2f} s "
                f"(exit {proc.returncode}, mostly imports)"
            )
    return results


if __name__ == "__main__":
    save_json(Path(__file__).parent / "results" / "guards.json", main_bench())
