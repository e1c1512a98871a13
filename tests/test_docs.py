"""The API reference (docs/, Sphinx autodoc + napoleon) builds offline with warnings as errors and documents the
public API: every name of ``ntk_l2.__all__`` on the top-level page, linked to its description; every public name
of each subpackage on the subpackage's page; the command line's help for every subcommand.

The build runs once per session (about 10 s, most of it importing JAX, neural-tangents and TensorFlow).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

import ntk_l2

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ntk_l2"
BUILD_TIMEOUT_S = 600
# a warning line of Sphinx or docutils, and the lines that continue it (an exception's message)
WARNING = re.compile(r"(WARNING|ERROR|CRITICAL|SEVERE):")


@dataclass(frozen=True)
class Build:
    """One ``sphinx -W --keep-going -b html`` run: exit code, stderr, output directory and wall time."""

    returncode: int
    stderr: str = field(repr=False)
    out: Path
    seconds: float


class _Page(HTMLParser):
    """Every ``id`` of a page, and its links as (href, text) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []  # the <a> elements being read: href, text parts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a":
            self._open.append((str(found.get("href") or ""), []))

    def handle_data(self, data: str) -> None:
        for _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            href, parts = self._open.pop()
            self.links.append((href, "".join(parts).strip()))


def _page(build: Build, name: str) -> _Page:
    path = build.out / name
    assert path.is_file(), f"the build wrote no {name}"
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _warnings(stderr: str) -> str:
    """The warning lines of a build's stderr, each with up to 10 following lines (TensorFlow's noise left out)."""
    lines = stderr.splitlines()
    shown: list[str] = []
    for i, line in enumerate(lines):
        if WARNING.search(line):
            shown += lines[i : i + 11] + ["--"]
    return "\n".join(shown) or stderr[-5000:]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    out = tmp_path_factory.mktemp("docs-html")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(out / ".doctrees")]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "docs", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    return Build(result.returncode, result.stderr, out, time.perf_counter() - start)


def _literal_all(init: Path) -> list[str] | None:
    """The ``__all__`` list written in a package's ``__init__.py``, or None if it has none."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def _subpackages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py") if not p.parent.name.startswith("_"))


def _public_modules(subpackage: str) -> list[Path]:
    return sorted(p for p in (PACKAGE / subpackage).glob("*.py") if not p.name.startswith("_"))


def _public_definitions(module: Path) -> list[str]:
    """Functions and classes defined at the top level of a module, without a leading underscore."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    body = ast.parse(module.read_text(encoding="utf-8")).body
    return [node.name for node in body if isinstance(node, kinds) and not node.name.startswith("_")]


def _resolves(build: Build, page: str, href: str) -> bool:
    """Whether a link of ``page`` points at an element id (an entry) of a page of the build."""
    target, _, anchor = href.partition("#")
    target = target or page
    return bool(anchor) and "/" not in target and (build.out / target).is_file() and anchor in _page(build, target).ids


def test_docs_build_without_warnings(build):
    assert build.returncode == 0, (
        f"sphinx -W exited with {build.returncode} after {build.seconds:.0f} s:\n{_warnings(build.stderr)}"
    )


def test_every_subpackage_has_a_page_in_the_contents(build):
    contents = {href.split("#")[0] for href, _ in _page(build, "index.html").links}
    for name in ["ntk_l2", *_subpackages()]:
        assert f"{name}.html" in contents, f"docs/index.rst: no {name} in the contents"
        module = "ntk_l2" if name == "ntk_l2" else f"ntk_l2.{name}"
        assert f"module-{module}" in _page(build, f"{name}.html").ids, f"docs/{name}.rst does not document {module}"


def test_top_level_page_links_every_public_name_to_its_description(build):
    top = _page(build, "ntk_l2.html")
    for name in ntk_l2.__all__:
        hrefs = [href for href, text in top.links if text == name]
        assert hrefs, f"docs/ntk_l2.rst: no link named {name} (ntk_l2.{name}), or its target was not documented"
        described = [h for h in hrefs if _resolves(build, "ntk_l2.html", h)]
        assert described, f"ntk_l2.{name} links to {hrefs}, none of them an entry of the reference"


def test_packages_with_all_document_each_function_and_class_of_it(build):
    """A subpackage with ``__all__`` is documented as one module: each routine or class in it has its entry.
    (A constant or a type alias has one only when its definition carries a ``#:`` doc comment; not checked.)"""
    checked = 0
    for name in _subpackages():
        exported = _literal_all(PACKAGE / name / "__init__.py")
        if exported is None:
            continue
        ids = _page(build, f"{name}.html").ids
        module = importlib.import_module(f"ntk_l2.{name}")
        for public in exported:
            value = getattr(module, public)
            if inspect.isclass(value) or inspect.isroutine(value):
                assert f"ntk_l2.{name}.{public}" in ids, f"docs/{name}.rst: no entry for ntk_l2.{name}.{public}"
                checked += 1
    assert checked >= 50, f"only {checked} exported routines and classes found: the check lost its subject"


def test_packages_without_all_document_each_module_and_definition(build):
    """A subpackage without ``__all__`` is documented module by module: every public module, and each public
    function and class it defines (a missing docstring leaves a definition out, and fails here)."""
    checked = 0
    for name in _subpackages():
        if _literal_all(PACKAGE / name / "__init__.py") is not None:
            continue
        ids = _page(build, f"{name}.html").ids
        for path in _public_modules(name):
            module = f"ntk_l2.{name}.{path.stem}"
            assert f"module-{module}" in ids, f"docs/{name}.rst does not document {module}"
            for definition in _public_definitions(path):
                assert f"{module}.{definition}" in ids, f"docs/{name}.rst: no entry for {module}.{definition}"
                checked += 1
    assert checked >= 50, f"only {checked} definitions found: the check lost its subject"


def test_cli_page_shows_the_help_of_every_subcommand(build):
    from ntk_l2.cli.args import build_parser

    text = unescape((build.out / "cli.html").read_text(encoding="utf-8"))
    assert "ntk_l2.cli.main" in _page(build, "cli.html").ids
    assert "usage: ntk-l2 [-h] SUBCOMMAND" in text
    parser = build_parser()
    names = [n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices]
    assert len(names) >= 8
    for name in names:
        assert f"usage: ntk-l2 {name} [-h]" in text, f"docs/cli.html lacks `ntk-l2 {name} --help`"
