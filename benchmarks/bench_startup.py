"""How long a fresh process takes to show help or to import the package.

    python benchmarks/bench_startup.py

Each command runs in 5 fresh processes (after one unrecorded warm-up that fills the
file and bytecode caches); the best and the median wall time are reported against the
target. `ntk-l2` is the console script installed beside this Python (else
``python -m ntk_l2.cli``). Targets: ``ntk-l2 --help`` and ``ntk-l2 predict --help``
< 1.0 s (parsing imports neither JAX nor neural-tangents), the first theory name
(``ntk_l2.gradient_descent_mse_l2``, which imports JAX) < 1.5 s, ``import ntk_l2`` alone
< 0.5 s; ``import jax`` alone is timed as the floor of the theory check. The machine's
load average is recorded, since other processes slow a fresh start. Prints one line per check and
writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ntk_l2.common.io import save_json

RUNS = 5


def console_script() -> list[str]:
    """The installed ``ntk-l2`` next to this interpreter (no shell shim in between), else ``python -m``."""
    beside = Path(sys.executable).with_name("ntk-l2")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ntk-l2")
    return [found] if found else [sys.executable, "-m", "ntk_l2.cli"]


def checks() -> dict[str, tuple[list[str], float | None]]:
    """Name -> (command, target in seconds; None for a reference without a target)."""
    cli = console_script()
    return {
        "ntk-l2 --help": ([*cli, "--help"], 1.0),
        "ntk-l2 predict --help": ([*cli, "predict", "--help"], 1.0),
        "import ntk_l2; ntk_l2.gradient_descent_mse_l2": (
            [sys.executable, "-c", "import ntk_l2; ntk_l2.gradient_descent_mse_l2"],
            1.5,
        ),
        "import ntk_l2": ([sys.executable, "-c", "import ntk_l2"], 0.5),
        "reference: import jax": ([sys.executable, "-c", "import jax"], None),
    }


def time_command(command: list[str]) -> tuple[list[float], set[int], bool]:
    """Wall times of `RUNS` fresh runs, their exit codes, and whether every run was silent on stderr."""
    subprocess.run(command, capture_output=True, check=False)  # warm-up, not recorded
    seconds, codes, quiet = [], set(), True
    for _ in range(RUNS):
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds.append(time.perf_counter() - t0)
        codes.add(proc.returncode)
        quiet = quiet and proc.stderr == ""
    return seconds, codes, quiet


def main_bench() -> dict:
    results: dict = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": list(os.getloadavg()),
        "runs": RUNS,
        "checks": {},
    }
    for name, (command, target) in checks().items():
        seconds, codes, quiet = time_command(command)
        best, median = min(seconds), statistics.median(seconds)
        met = None if target is None else median < target and codes == {0}
        results["checks"][name] = {
            "command": command,
            "target_s": target,
            "best_s": best,
            "median_s": median,
            "runs_s": seconds,
            "exit_codes": sorted(codes),
            "stderr_empty": quiet,
            "meets_target": met,
        }
        verdict = (
            "no target: the floor of any JAX import"
            if target is None
            else f"target < {target:g} s: {'met' if met else 'MISSED'}"
        )
        print(
            f"{name}: best {best:.3f} s, median {median:.3f} s of {RUNS} fresh processes ({verdict}; "
            f"exit {sorted(codes)}{'' if quiet else ', stderr not empty'})"
        )
    results["load_average_after"] = list(os.getloadavg())
    print(
        f"load average before/after: {results['load_average_before'][0]:.2f} / {results['load_average_after'][0]:.2f} "
        f"on {results['cpus']} CPUs"
    )
    return results


if __name__ == "__main__":
    save_json(Path(__file__).parent / "results" / "startup.json", main_bench())
