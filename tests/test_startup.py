"""Start-up: ``import ntk_l2`` and ``ntk-l2 --help`` stay light, quiet and complete.

Each check runs in a fresh interpreter, since the test process has long imported everything.
``import ntk_l2`` loads its public names on first use (PEP 562), so neither it nor parsing any
``--help`` may import JAX, neural-tangents or TensorFlow. Timings live in
``benchmarks/bench_startup.py``; here only what must hold on any machine is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "neural_tangents", "tensorflow")
# the public API as it was when the names became lazy: none may be lost
PUBLIC = [
    "Architecture",
    "Dataset",
    "Gaussian",
    "KernelEigen",
    "PiecewiseConstant",
    "SGDPrediction",
    "accuracy",
    "check_degree",
    "convolutional",
    "deep_linear",
    "eigh_kernel",
    "fully_connected",
    "gradient_descent_l2_ode",
    "gradient_descent_mse_l2",
    "gradient_descent_mse_l2_discrete",
    "gradient_descent_mse_l2_ensemble",
    "gradient_descent_mse_l2_momentum",
    "gradient_descent_mse_l2_sgd",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "measure_degree",
    "mode_factors",
    "mse_loss",
    "stability_limit",
]


def _fresh(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result


def _loaded_after(code: str) -> set[str]:
    """Top-level packages among `HEAVY` loaded by ``code`` in a fresh interpreter."""
    out = _fresh(code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    return set(json.loads(out.stdout.strip().splitlines()[-1])) & set(HEAVY)


def test_import_ntk_l2_prints_nothing_and_imports_no_framework():
    result = _fresh("import ntk_l2")
    assert result.stdout == "" and result.stderr == ""
    assert _loaded_after("import ntk_l2") == set()


def test_a_theory_name_imports_jax_but_not_neural_tangents():
    assert _loaded_after("import ntk_l2; ntk_l2.gradient_descent_mse_l2") == {"jax", "jaxlib"}


def test_every_help_parses_without_importing_a_framework():
    code = """
import contextlib, io
from ntk_l2.cli import args, main
parser = args.build_parser()
subs = [a for a in parser._actions if a.choices and a.dest == "command"][0].choices
for argv in [["--help"], *([name, "--help"] for name in subs)]:
    with contextlib.redirect_stdout(io.StringIO()) as text:
        assert main(argv) == 0, argv
    assert text.getvalue().startswith("usage: ntk-l2"), argv
assert len(subs) >= 7, sorted(subs)
"""
    assert _loaded_after(code) == set()


def test_every_public_name_resolves_lazily_to_its_definition():
    code = f"""
import importlib, types
import ntk_l2
assert ntk_l2.__all__ == {PUBLIC!r}, ntk_l2.__all__
assert set(ntk_l2.__all__) <= set(dir(ntk_l2))
modules = {{"gradient_descent_mse_l2": "ntk_l2.theory", "load_mnist": "ntk_l2.data.datasets",
            "fully_connected": "ntk_l2.networks.arch", "accuracy": "ntk_l2.common.metrics"}}
for name in ntk_l2.__all__:
    value = getattr(ntk_l2, name)
    assert value is not None, name
    if name in modules:
        assert value is getattr(importlib.import_module(modules[name]), name), name
assert isinstance(ntk_l2.deep_linear, types.ModuleType) and ntk_l2.deep_linear.__name__ == "ntk_l2.deep_linear"
assert ntk_l2.theory.gradient_descent_mse_l2 is ntk_l2.gradient_descent_mse_l2
assert isinstance(ntk_l2.__version__, str) and ntk_l2.__version__[:1].isdigit()
try:
    ntk_l2.no_such_name
except AttributeError as err:
    assert "no_such_name" in str(err)
else:
    raise AssertionError("an unknown name resolved")
from ntk_l2 import gradient_descent_mse_l2, load_digits  # the from-import form goes through __getattr__ too
"""
    _fresh(code)


def test_python_m_ntk_l2_cli_is_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "ntk_l2.cli", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: ntk-l2") and result.stderr == ""
    bad = subprocess.run(
        [sys.executable, "-m", "ntk_l2.cli", "frobnicate"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert bad.returncode == 2 and bad.stderr.startswith("ntk-l2: error: ") and bad.stderr.count("\n") == 1


def test_unknown_names_are_attribute_errors():
    import ntk_l2

    with pytest.raises(AttributeError, match="has no attribute 'gradient_descent'"):
        ntk_l2.gradient_descent  # noqa: B018
    assert not hasattr(ntk_l2, "quiet")  # a module of a subpackage is not a top-level name
