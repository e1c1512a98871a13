"""Cross-references between derivations/, the code and the tests stay valid."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = sorted((ROOT / "derivations").glob("*.md"))


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("doc", DERIVATIONS, ids=lambda p: p.name)
def test_cited_tests_exist(doc):
    for file, name in re.findall(r"(test_[a-z_0-9]+\.py)::([a-z_0-9]+)", doc.read_text()):
        path = ROOT / "tests" / file
        assert path.exists(), f"{doc.name} cites missing {file}"
        assert name in _test_names(path), f"{doc.name} cites missing test {file}::{name}"


def test_every_theory_module_cites_an_existing_derivation():
    for module in sorted((ROOT / "ntk_l2" / "theory").glob("[a-z]*.py")):
        if module.name == "__init__.py":
            continue
        cited = set(re.findall(r"derivations/([a-z_]+\.md)", module.read_text()))
        if module.stem in ("schedules",):  # plain data types, no formula
            continue
        assert cited, f"{module.name} cites no derivation"
        for name in cited:
            assert (ROOT / "derivations" / name).exists(), f"{module.name} cites missing derivations/{name}"
