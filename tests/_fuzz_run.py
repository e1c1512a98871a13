"""Running and judging a fuzzing case, and the run's bookkeeping.

`run_case` runs one case (``ntk-l2 predict`` in process, or a solver) under the `Watchdog`, and judges it:
accepted or refused as expected, a refusal in the documented form, no traceback, no modified input, no stray
or non-finite file, results as ``_fuzz_reference`` computes them. What it finds goes to `STATS`.

`STATS` and `WATCHDOG` are module state: the test sets them here (``_fuzz_run.STATS = Stats()``, ...), and
they must be read through this module, not imported by name (a copy would not follow the test's rebinding).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import ntk_l2
from ntk_l2.cli.commands import main

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _fuzz_cases import EXPECT_NAMES, INVALID, VALID, Case, api_name, cli_argv
    from _fuzz_files import IMMUTABLE, choose_out, release, snapshot, write_kernel_file
    from _fuzz_reference import check_api_result, check_results
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._fuzz_cases import EXPECT_NAMES, INVALID, VALID, Case, api_name, cli_argv
    from ._fuzz_files import IMMUTABLE, choose_out, release, snapshot, write_kernel_file
    from ._fuzz_reference import check_api_result, check_results

SHRINK = os.environ.get("NTK_L2_FUZZ_SHRINK", "") not in ("", "0")
CASE_TIMEOUT = float(os.environ.get("NTK_L2_FUZZ_CASE_TIMEOUT", "30"))
LOG = os.environ.get("NTK_L2_FUZZ_LOG")

PREFIX = "ntk-l2: error: "
HUGE_REFUSAL_SECONDS = 5.0
HUGE_REFUSAL_BYTES = 64 * 2**20


class Stats:
    """The run's counts, its violations (the smallest example of each kind) and notes; `report` sums them up."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.violations: dict[tuple, tuple[int, str, str]] = {}  # signature -> (size, category, report)
        self.violation_counts: Counter = Counter()
        self.soft: dict[tuple, str] = {}
        self.seconds = 0.0
        self.timing: Counter = Counter()
        self.current: list[str] = []  # the violations of the case being run

    def violate(self, case: Case, category: str, detail: str, signature: tuple = ()) -> None:
        sig = (category,) + signature
        self.violation_counts[category] += 1
        size = len(case.tags) * 100 + case.n * 10 + case.m + (50 if case.kind == "api" else 0)
        text = f"[{category}] {detail}\n{case.describe()}"
        self.current.append(f"[{category}] {detail}")
        if LOG:
            with open(LOG, "a") as log:
                log.write(text + "\n\n")
        if sig not in self.violations or size < self.violations[sig][0]:
            self.violations[sig] = (size, category, text)

    def report(self) -> str:
        lines = [
            f"fuzz: {self.counts['cases']} cases in {self.seconds:.1f} s "
            f"({1000 * self.seconds / max(self.counts['cases'], 1):.1f} ms/case): "
            f"accepted {self.counts['accepted']} (valid {self.counts['accepted valid']}, "
            f"either {self.counts['accepted either']}, invalid {self.counts['accepted invalid']}), "
            f"refused {self.counts['refused']} (valid {self.counts['refused valid']}, "
            f"either {self.counts['refused either']}, invalid {self.counts['refused invalid']}); "
            f"references checked {self.counts['reference checked']}; "
            f"cli {self.counts['cli']}, api {self.counts['api']}",
            f"tracebacks {self.violation_counts['traceback']}, non-finite outputs written "
            f"{self.violation_counts['non-finite output written']}, inputs modified "
            f"{self.violation_counts['input modified']}",
        ]
        lines.append(
            "ms/case by kind: "
            + ", ".join(
                f"{key} {1000 * self.timing[key] / self.counts['n ' + key]:.0f} (x{self.counts['n ' + key]})"
                for key in sorted(self.timing)
            )
        )
        if self.violation_counts:
            lines.append("violations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.violation_counts.items())))
            lines.append(f"{len(self.violations)} distinct (smallest example each):")
            for _, _, text in sorted(self.violations.values(), key=lambda x: (x[1], x[0])):
                lines.append(text)
        if self.soft:
            lines.append(f"notes (not failures): {len(self.soft)} distinct")
            lines += list(self.soft.values())[:20]
        return "\n".join(lines)


STATS = Stats()


class CaseTimeout(BaseException):
    """Raised asynchronously in a hung case; a BaseException, so that no `except Exception` swallows it."""


class Watchdog:
    """A case that hangs is interrupted (async exception), then the process is ended with a report."""

    def __init__(self, capman) -> None:
        self.capman = capman
        self.deadline: float | None = None
        self.case: Case | None = None
        self.fired = False
        self.stack = ""
        self.main = threading.main_thread().ident
        self.fd2 = os.dup(2)  # where stderr goes now (a case may redirect descriptor 2 meanwhile)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def arm(self, case: Case) -> None:
        with self.lock:
            self.case, self.fired, self.deadline = case, False, time.monotonic() + CASE_TIMEOUT

    def disarm(self) -> None:
        with self.lock:
            self.deadline = None
            if self.fired:  # not delivered yet? then never: it must not hit the harness
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.main), None)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                deadline = self.deadline
                if deadline is None or time.monotonic() < deadline:
                    continue
                if not self.fired:
                    self.fired = True
                    frame = sys._current_frames().get(self.main)
                    self.stack = "".join(traceback.format_stack(frame)[-6:]) if frame else "?"
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.main), ctypes.py_object(CaseTimeout))
                    self.deadline = time.monotonic() + 30
                    continue
            with contextlib.suppress(Exception):
                os.dup2(self.fd2, 2)
                if self.capman is not None:
                    self.capman.suspend_global_capture(in_=True)
            msg = f"\nfuzz: case hung for more than {CASE_TIMEOUT + 30:.0f} s, ending the process\n"
            msg += (self.case.describe() if self.case else "") + "\n" + STATS.report() + "\n"
            os.write(2, msg.encode())
            if LOG:
                with open(LOG, "a") as log:
                    log.write(msg)
            faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
            for d in list(IMMUTABLE):
                subprocess.run(["chattr", "-i", str(d)], capture_output=True)
            os._exit(70)


WATCHDOG: Watchdog | None = None


def _warnings_shown(records) -> list[str]:
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    return [f"{w.category.__name__}: {w.message}" for w in records if not issubclass(w.category, hidden)]


def _frame_signature(err: BaseException) -> tuple:
    tb = traceback.extract_tb(err.__traceback__)
    ours = [f for f in tb if "ntk_l2" in f.filename and "tests" not in f.filename]
    last = ours[-1] if ours else (tb[-1] if tb else None)
    where = f"{Path(last.filename).name}:{last.name}" if last else "?"
    return (type(err).__name__, where)


def _tb_text(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    frames = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in tb[-4:]]
    return f"{type(err).__name__}: {str(err)[:300]} at {' <- '.join(reversed(frames))}"


def run_case(case: Case, root: Path, index: int) -> None:
    """Run one case in its own directory under `root` and judge it (into `STATS`); keep the directory if it failed."""
    STATS.counts["cases"] += 1
    STATS.counts[case.kind] += 1
    casedir = root / f"case{index}"
    casedir.mkdir()
    STATS.current = []
    before_violations = sum(STATS.violation_counts.values())
    if WATCHDOG:
        WATCHDOG.arm(case)
    t0 = time.perf_counter()
    try:
        if case.kind == "cli":
            _run_cli(case, casedir)
        else:
            _run_api(case)
    except CaseTimeout:
        pass  # judged below
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        if WATCHDOG:
            WATCHDOG.disarm()
        release(casedir)
        key = f"{case.kind} {case.solver}"
        STATS.timing[key] += time.perf_counter() - t0
        STATS.counts["n " + key] += 1
        if WATCHDOG and WATCHDOG.fired:  # whatever the case reported after the interruption does not count
            STATS.violate(
                case,
                "hang",
                f"no answer after {CASE_TIMEOUT:g} s; main thread was at\n{WATCHDOG.stack}",
                (case.solver,),
            )
            WATCHDOG.fired = False
    if sum(STATS.violation_counts.values()) == before_violations:
        shutil.rmtree(casedir, ignore_errors=True)
    elif SHRINK:
        raise AssertionError("\n".join(STATS.current))


def _judge_acceptance(case: Case, accepted: bool, detail: str) -> None:
    level = EXPECT_NAMES[case.expect]
    STATS.counts["accepted" if accepted else "refused"] += 1
    STATS.counts[("accepted " if accepted else "refused ") + level] += 1
    if accepted and case.expect == INVALID:
        STATS.violate(
            case,
            "invalid input accepted",
            detail,
            tuple(sorted(t.split(" ")[0] for t in case.tags if not t.startswith("kernel"))),
        )
    if not accepted and case.expect == VALID:
        STATS.violate(
            case,
            "valid input refused",
            detail,
            (detail.split(":")[0], detail.split(":")[1][:25] if ":" in detail else ""),
        )


@contextlib.contextmanager
def _capture_fd2():
    """What C code (LSODA, XLA) writes to file descriptor 2 goes to a terminal too: capture it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        box = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            box["text"] = sink.read().decode(errors="replace")


def _run_cli(case: Case, casedir: Path) -> None:
    rng = np.random.default_rng(case.num["seed"] + 1)
    indir = casedir / "in"
    indir.mkdir()
    kernel = write_kernel_file(case, indir, rng)
    out = choose_out(case, casedir, kernel)
    argv = cli_argv(case, str(kernel), str(out))
    before = snapshot(casedir)
    stdout, stderr = io.StringIO(), io.StringIO()
    huge = case.file_form == "huge"
    if huge:
        tracemalloc.start()
    t0 = time.perf_counter()
    code: Any = None
    err: BaseException | None = None
    with (
        _capture_fd2() as fd2,
        warnings.catch_warnings(record=True) as records,
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = ("exit", exc.code)
        except BaseException as exc:  # noqa: BLE001 - any escape is a finding
            err = exc
    elapsed = time.perf_counter() - t0
    peak = 0
    if huge:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if WATCHDOG and WATCHDOG.fired:
        return  # a hang, judged in run_case
    shown = _warnings_shown(records)
    after = snapshot(casedir)
    err_lines = stderr.getvalue().splitlines() + fd2.get("text", "").splitlines()
    # the input file is never modified (bytes and mtime), whatever happened
    kernel_key = str(kernel)
    if kernel_key in before and before[kernel_key] != after.get(kernel_key):
        STATS.violate(
            case,
            "input modified",
            f"{kernel} changed: {before[kernel_key][:3]} -> {after.get(kernel_key, ('gone',))[:3]}",
            (case.out_form,),
        )
    if err is not None:
        STATS.violate(case, "traceback", _tb_text(err), _frame_signature(err))
        STATS.counts["refused"] += 1
        return
    exit_code = code[1] if isinstance(code, tuple) else code
    if isinstance(code, tuple):
        STATS.counts["argparse exit"] += 1
    new_files = {p: v for p, v in after.items() if p not in before and v[0] != "dir"}
    changed = {p: v for p, v in after.items() if p in before and before[p] != v}
    removed = [p for p in before if p not in after]
    if exit_code == 0:
        _judge_acceptance(case, True, "exit 0")
        out_key = str(out)
        if not os.path.isfile(out):
            STATS.violate(case, "exit 0 without output", f"{out} missing", ())
            return
        extra = [
            p
            for p in list(new_files) + list(changed) + removed
            if os.path.realpath(p) != os.path.realpath(out_key) and p != out_key
        ]
        if extra:
            STATS.violate(case, "stray files", f"created/changed/removed besides the output: {extra}", ())
        if shown:
            STATS.soft[("warning on success",) + tuple(shown[:1])] = (
                f"warning on a successful run: {shown[:2]} ({case.tags})"
            )
        _check_output_file(case, out)
        return
    # refusal
    internal = [line for line in err_lines if line.startswith(PREFIX + "internal error")]
    if internal:  # the general handler caught a crash: a traceback in one line is still a traceback
        STATS.violate(
            case, "traceback", internal[0][len(PREFIX) : 400], (internal[0][len(PREFIX) :].split(" — ")[0][:80],)
        )
        STATS.counts["refused"] += 1
        return
    _judge_acceptance(case, False, err_lines[0] if err_lines else f"exit {exit_code!r}")
    problems = []
    if exit_code != 2:
        problems.append(f"exit code {exit_code!r}")
    if len(err_lines) != 1 or not err_lines[0].startswith(PREFIX) or not err_lines[0][len(PREFIX) :].strip():
        problems.append(f"stderr {chr(10).join(err_lines)[:400]!r}")
    if shown:
        problems.append(f"warnings printed too: {shown[:3]}")
    if new_files or changed or removed:
        problems.append(f"files left/changed: new {sorted(new_files)} changed {sorted(changed)} removed {removed}")
    elif err_lines and case.expect == INVALID:
        text = err_lines[0][len(PREFIX) :]
        argparse_text = text.startswith(("argument ", "the following arguments", "unrecognized arguments"))
        if not argparse_text and not any(text.startswith(b) for b in case.blame | {"KERNEL"}):
            STATS.soft[("cli message", text.split(":")[0][:30])] = (
                f"CLI refusal not starting with a blamed name {sorted(case.blame)}: {err_lines[0][:200]!r}"
            )
    if problems:
        category = (
            "refusal not one line"
            if exit_code == 2 and not (new_files or changed or removed)
            else "refusal left files"
            if (new_files or changed or removed)
            else "refusal with wrong exit code"
        )
        STATS.violate(case, category, "; ".join(problems), (problems[0][:40],))
    if huge and (elapsed > HUGE_REFUSAL_SECONDS or peak > HUGE_REFUSAL_BYTES):
        STATS.violate(
            case,
            "huge declared size not refused quickly",
            f"{elapsed:.2f} s, peak traced {peak / 2**20:.0f} MiB",
            (case.huge[2],),
        )


def _check_output_file(case: Case, out: Path) -> None:
    """The file the CLI wrote: readable, every value finite, the results right."""
    try:
        with np.load(out, allow_pickle=False) as data:
            res = {key: np.asarray(data[key]) for key in data.files}
    except Exception as exc:  # noqa: BLE001
        STATS.violate(case, "unreadable output", _tb_text(exc), ())
        return
    bad = [key for key, v in res.items() if v.dtype.kind not in "fiub" or not np.all(np.isfinite(v))]
    if bad:
        STATS.violate(
            case,
            "non-finite output written",
            f"non-finite values in {bad}",
            tuple(sorted(t.split(" ")[0] for t in case.tags if not t.startswith("kernel"))),
        )
    check_results(STATS, case, res)


def _hash_inputs(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, v in values.items():
        if isinstance(v, np.ndarray):
            out[key] = (v.dtype.str, v.shape, v.tobytes() if v.dtype != object else repr(v.tolist()))
        else:
            out[key] = repr(v)
    return out


def _run_api(case: Case) -> None:
    a = case.arrays
    solver = case.solver
    passed = dict(a)
    before = _hash_inputs(passed)
    result: Any = None
    err: BaseException | None = None
    shown: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            if solver == "ensemble":
                fn = ntk_l2.gradient_descent_mse_l2_ensemble(
                    a.get("k_train_train"), a.get("nngp_train_train"), a.get("y_train"), case.lr, case.l2, case.degree
                )
                result = fn(case.times, a.get("k_test_train"), a.get("nngp_test_train"), a.get("nngp_test_test"))
            else:
                make = {
                    "closed": ntk_l2.gradient_descent_mse_l2,
                    "discrete": ntk_l2.gradient_descent_mse_l2_discrete,
                    "ode_mse": ntk_l2.gradient_descent_l2_ode,
                    "xent": ntk_l2.gradient_descent_l2_ode,
                }[solver]
                kwargs = dict(case.api_extra)
                if solver in ("ode_mse", "xent"):
                    kwargs.setdefault("loss", "mse" if solver == "ode_mse" else "xent")
                fn = make(a.get("k_train_train"), a.get("y_train"), case.lr, case.l2, case.degree, **kwargs)
                result = fn(case.times, a.get("fx_train_0", 0.0), a.get("fx_test_0"), a.get("k_test_train"))
        except BaseException as exc:  # noqa: BLE001
            err = exc
        shown = _warnings_shown(records)
    if WATCHDOG and WATCHDOG.fired:
        return  # a hang, judged in run_case
    if _hash_inputs(passed) != before:
        changed = [k for k in before if _hash_inputs({k: passed[k]})[k] != before[k]]
        STATS.violate(case, "input modified", f"arrays changed in place: {changed}", (solver,))
    if err is not None:
        if type(err) is not ValueError:
            STATS.violate(case, "traceback", _tb_text(err), _frame_signature(err))
            STATS.counts["refused"] += 1
            return
        msg = str(err)
        _judge_acceptance(case, False, msg[:200])
        names = case.blame | {api_name(case, b) for b in case.blame}
        if "\n" in msg or not any(
            msg.startswith(name) and msg[len(name) : len(name) + 1] in (":", " ") for name in names if name
        ):
            if case.expect != VALID:
                STATS.violate(
                    case,
                    "ValueError not naming the argument",
                    f"{msg[:300]!r} (expected one of {sorted(names)})",
                    (msg.split(":")[0][:40],),
                )
        return
    _judge_acceptance(case, True, "returned")
    if shown:
        STATS.soft[("warning on success",) + tuple(shown[:1])] = (
            f"warning on a successful call: {shown[:2]} ({case.tags})"
        )
    check_api_result(STATS, case, result)
