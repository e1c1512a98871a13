"""Adversarial fuzzing of ``ntk-l2 predict`` and of the solvers called directly.

Hypothesis generates kernel files, flags and solver arguments, valid and
malformed (one or several malformations per case), and every case must end in
exactly one of

* a correct result: the documented shapes, every value finite, and where a
  closed form is known equal to an independent NumPy reference written here
  (gradient flow with λ = 0 or k = 1 in the eigenbasis, the discrete map by a
  plain step loop, a stiff ODE integration in the original basis for the other
  flows and for cross-entropy, the NNGP covariance by propagating the joint
  kernel through the affine map);
* a refusal: for the CLI exit code 2, exactly one stderr line starting
  ``ntk-l2: error: ``, no output file and no temp file left behind; for the API
  a ``ValueError`` whose message is one line starting with the name of an
  offending argument.

Never a traceback, a non-finite value in a written file, or a modified input
(the kernel file's bytes and mtime; the arrays passed to the API).

Environment:
  NTK_L2_FUZZ_EXAMPLES      cases (default 1000, the CI small mode; full run 20000)
  CI                        set: derandomized (fixed seed), no example database, at least 1000 cases
  NTK_L2_FUZZ_SHRINK=1      fail on the first bad case and let hypothesis shrink it,
                            instead of collecting every distinct failure of the run
  NTK_L2_FUZZ_CASE_TIMEOUT  seconds before a single case counts as hung (default 30; a case takes milliseconds)
  NTK_L2_FUZZ_LOG           append every violation (not only one per kind) to this file

The parts, beside this file: ``_fuzz_cases`` (the `Case` and its expectations), ``_fuzz_strategy`` and
``_fuzz_mutations`` (generating cases), ``_fuzz_files`` (kernel files, --out paths, snapshots),
``_fuzz_reference`` (the references and the checks of a result), ``_fuzz_run`` (running and judging a case,
the run's `Stats` and the `Watchdog`).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

import ntk_l2

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    import _fuzz_run
    from _fuzz_cases import Case
    from _fuzz_run import SHRINK, Stats, Watchdog, run_case
    from _fuzz_strategy import cases
except ImportError:  # pragma: no cover - tests/ made into a package
    from . import _fuzz_run
    from ._fuzz_cases import Case
    from ._fuzz_run import SHRINK, Stats, Watchdog, run_case
    from ._fuzz_strategy import cases

EXAMPLES = int(os.environ.get("NTK_L2_FUZZ_EXAMPLES", "1000"))
IN_CI = bool(os.environ.get("CI"))
CI_MIN_EXAMPLES = 1000  # the CI small mode


@pytest.fixture(scope="module")
def warm_jax():
    """Import-time and first-compile chatter of JAX happens here, not inside a captured case."""
    k = np.eye(2)
    ntk_l2.gradient_descent_mse_l2_discrete(k, np.ones((2, 1)), 0.5, 0.0, 2)([1.0])
    ntk_l2.gradient_descent_l2_ode(k, np.ones((2, 1)), 0.5, 0.0, 2)([1.0])


def test_fuzz_predict_and_solvers(tmp_path_factory, warm_jax, pytestconfig):
    stats = _fuzz_run.STATS = Stats()  # run_case and the watchdog read these through the module
    root = tmp_path_factory.mktemp("fuzz")
    watchdog = _fuzz_run.WATCHDOG = Watchdog(pytestconfig.pluginmanager.getplugin("capturemanager"))
    counter = iter(range(10**9))
    phases = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if SHRINK else ())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=IN_CI,
        database=None if IN_CI else settings().database,
        phases=phases,
        print_blob=SHRINK,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases())
    def fuzz(case: Case) -> None:
        run_case(case, root, next(counter))

    t0 = time.perf_counter()
    try:
        fuzz()
    finally:
        stats.seconds = time.perf_counter() - t0
        watchdog.stop.set()
        watchdog.thread.join()
        os.close(watchdog.fd2)
        _fuzz_run.WATCHDOG = None
    report = stats.report()
    print(report)
    assert stats.violation_counts["traceback"] == 0, report
    assert stats.violation_counts["non-finite output written"] == 0, report
    assert stats.violation_counts["input modified"] == 0, report
    assert not stats.violations, report
    assert stats.counts["accepted valid"] > 0 and stats.counts["refused invalid"] > 0, report
    # Hypothesis generates until max_examples examples have run to the end; it stops short only when the
    # strategy's space is exhausted (a 32-bit seed per case rules that out) or after 10 × max_examples calls,
    # which only invalid (filtered, assume()) or overrun (too much data) examples could cost: `cases` has
    # neither filters nor assumptions and draws a few dozen choices. So every one of EXAMPLES cases must run.
    minimum = max(EXAMPLES, CI_MIN_EXAMPLES) if IN_CI else EXAMPLES
    assert stats.counts["cases"] >= minimum, f"{stats.counts['cases']} cases run, {minimum} wanted\n{report}"
