"""Packaging contract, read from the files (no network): dependency ranges in pyproject.toml with exact
pins only for the forced stack, every dependency pinned in constraints.txt, one version source,
LICENSE and CITATION.cff, py.typed shipped, and CI running the README's test command verbatim."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# neural-tangents 0.6.5 needs jax 0.5.x; tf2jax 0.3.6 and tensorflow 2.19.x come with that stack.
FORCED = {"jax", "jaxlib", "neural-tangents", "tf2jax", "tensorflow"}
VERSION_FILE = ROOT / "ntk_l2" / "_version.py"


def _requirements() -> list[Requirement]:
    """Runtime dependencies and every optional group."""
    raw = list(PROJECT["dependencies"])
    for group in PROJECT.get("optional-dependencies", {}).values():
        raw += group
    return [Requirement(r) for r in raw]


def _constraints() -> dict[str, Requirement]:
    """constraints.txt as {canonical name: requirement}; every line must be one exact pin."""
    pins: dict[str, Requirement] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt: {req.name} pinned twice"
        pins[name] = req
    return pins


def _declared_version() -> str:
    """The string assigned to __version__ in ntk_l2/_version.py."""
    match = re.search(r'^__version__\s*=\s*"([^"]+)"\s*$', VERSION_FILE.read_text(), re.M)
    assert match, "ntk_l2/_version.py must assign __version__ a string literal"
    return match.group(1)


def test_dependencies_are_ranges_except_the_forced_stack():
    requirements = _requirements()
    assert {canonicalize_name(r.name) for r in requirements} >= FORCED | {"numpy", "pytest", "ruff"}
    for req in requirements:
        operators = {spec.operator for spec in req.specifier}
        assert operators, f"{req.name} has no version bound"
        assert operators & {">=", "==", "~="}, f"{req.name} has no lower bound"
        if canonicalize_name(req.name) not in FORCED:
            assert not operators & {"==", "==="}, f"{req.name} is pinned exactly; pyproject states ranges"


def test_every_dependency_is_pinned_in_constraints_within_its_range():
    pins = _constraints()
    assert "ntk-l2" not in pins, "constraints.txt must not pin ntk_l2 itself"
    for req in _requirements():
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} has no line in constraints.txt"
        version = next(iter(pin.specifier)).version
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req.specifier}"


def test_version_is_defined_once():
    assert "version" not in PROJECT and PROJECT.get("dynamic") == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ntk_l2._version.__version__"}
    version = _declared_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    for path in sorted((ROOT / "ntk_l2").rglob("*.py")):
        if path == VERSION_FILE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            literal = isinstance(getattr(node, "value", None), ast.Constant)
            assert not ("__version__" in names and literal), f"{path.relative_to(ROOT)} defines __version__ again"


def test_package_version_comes_from_version_module():
    import ntk_l2
    from ntk_l2 import _version

    assert ntk_l2.__version__ == _version.__version__ == _declared_version()


def test_license_and_citation():
    license_text = (ROOT / "LICENSE").read_text()
    for phrase in ("Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE", "END OF TERMS"):
        assert phrase in license_text
    assert PROJECT["license"] == "Apache-2.0"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert str(citation["version"]) == _declared_version()
    assert str(citation["preferred-citation"]["version"]) == _declared_version()
    assert citation["license"] == "Apache-2.0"
    assert all(a.get("name") or a.get("family-names") for a in citation["authors"])
    cited = " ".join(str(ref.get("url", "")) for ref in citation["references"])
    for arxiv_id in ("2006.08643", "2007.09286", "1806.07572", "1912.02803"):
        assert arxiv_id in cited, f"CITATION.cff: no reference to arXiv:{arxiv_id}"


def test_py_typed_is_package_data():
    assert (ROOT / "ntk_l2" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["ntk_l2"]


def _readme_commands() -> list[str]:
    """Non-comment lines of the README's first ```bash block (the set-up commands)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no ```bash block"
    return [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_installs_use_the_constraints_file():
    installs = [c for c in _readme_commands() if c.startswith("pip install")]
    assert len(installs) == 2
    assert all("-c constraints.txt" in c for c in installs)


def test_ci_runs_the_readme_test_command_verbatim():
    tests = [c for c in _readme_commands() if "pytest" in c]
    assert len(tests) == 1, "the README's set-up block must hold exactly one test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests[0] in ci_lines, f".ci/run does not run {tests[0]!r}"
