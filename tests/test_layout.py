"""The package's layout: imports flow one way, from the top of these layers down, and no module
reaches into another subpackage's private names.

Read from the source (AST), not by importing, so a lazy import inside a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ntk_l2"

# Each subpackage may import only from subpackages of a strictly lower layer (and from itself).
LAYERS = {
    "common": 0,
    "theory": 1,
    "data": 2,
    "networks": 3,
    "finite": 4,
    "laws": 5,
    "deep_linear": 5,
    "experiments": 6,
    "cli": 7,
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported from it, line) for every ntk_l2 import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("ntk_l2"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("ntk_l2")]
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _violations() -> list[str]:
    problems = []
    for module, path in _modules():
        own = _subpackage(module)
        if own is None:
            continue  # ntk_l2/__init__.py (the public API, above every layer) and ntk_l2/_version.py
        for target, names, line in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            theirs = _subpackage(target)
            if theirs is None:
                # "from ntk_l2 import x": x is a subpackage (checked as such) or the top-level API (upward)
                subs = [n for n in names if n in LAYERS]
                if target != "ntk_l2" or len(subs) != len(names) or not names:
                    problems.append(f"{where}: {module} imports the top-level package {target} (upward)")
                    continue
                for sub in subs:
                    if sub != own and LAYERS[sub] >= LAYERS[own]:
                        problems.append(f"{where}: {module} ({own}) imports {sub} (not a lower layer)")
                continue
            if theirs == own:
                continue
            if LAYERS[theirs] >= LAYERS[own]:
                problems.append(f"{where}: {module} ({own}) imports {target} ({theirs}, not a lower layer)")
            private = [p for p in target.split(".")[2:] if p.startswith("_")] + [n for n in names if n.startswith("_")]
            if private:
                problems.append(f"{where}: {module} imports private {', '.join(private)} from subpackage {theirs}")
    return problems


def test_every_module_belongs_to_a_layer():
    top = {"ntk_l2", "ntk_l2._version"}  # the public API and the one version string
    loose = [str(p.relative_to(PACKAGE.parent)) for m, p in _modules() if m not in top and _subpackage(m) is None]
    assert loose == [], f"modules outside every subpackage: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


def test_imports_run_down_the_layers_and_not_into_private_names():
    problems = _violations()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("sub", sorted(LAYERS))
def test_each_subpackage_says_what_lives_there_and_what_it_may_import(sub):
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
    assert doc and "import" in doc.lower(), f"ntk_l2/{sub}/__init__.py needs a docstring naming what it may import"


def test_the_checker_catches_what_it_should(tmp_path, monkeypatch):
    """The checker itself can fail: an upward import and a private cross-package name are reported."""
    fake = tmp_path / "ntk_l2"
    for sub in LAYERS:
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text('"""May import nothing."""\n')
    (fake / "__init__.py").write_text("")
    (fake / "theory" / "bad.py").write_text("from ntk_l2.experiments import compare\n")
    (fake / "cli" / "bad.py").write_text("from ntk_l2.theory._engine import Problem\nfrom ntk_l2.laws import _x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake, raising=False)
    globals()["PACKAGE"], saved = fake, PACKAGE
    try:
        problems = _violations()
    finally:
        globals()["PACKAGE"] = saved
    assert any("theory/bad.py:1" in p and "not a lower layer" in p for p in problems)
    assert any("cli/bad.py:1" in p and "private _engine" in p for p in problems)
    assert any("cli/bad.py:2" in p and "private _x" in p for p in problems)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def _sizes(package: Path) -> tuple[list[str], list[str]]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES (def to last line)."""
    modules, functions = [], []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            modules.append(f"{path.relative_to(package.parent)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    functions.append(f"{path.relative_to(package.parent)}:{node.name}: {length} lines")
    return modules, functions


def test_no_module_over_400_lines_and_no_function_over_80():
    modules, functions = _sizes(PACKAGE)
    assert modules == [] and functions == [], "\n".join(modules + functions)


def test_the_size_check_catches_a_long_module_and_a_long_function(tmp_path):
    fake = tmp_path / "ntk_l2"
    fake.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (fake / "long.py").write_text(f"def f():\n{body}\n" + "\n" * MAX_MODULE_LINES)
    modules, functions = _sizes(fake)
    assert modules == [f"ntk_l2/long.py: {MAX_MODULE_LINES + MAX_FUNCTION_LINES + 1} lines"]
    assert functions == [f"ntk_l2/long.py:f: {MAX_FUNCTION_LINES + 1} lines"]
