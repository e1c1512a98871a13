"""Sphinx configuration of the ntk_l2 API reference, built from the docstrings (autodoc, Google style via napoleon).

Build: ``python -m sphinx -b html docs docs/_build/html`` from the repository root (``tests/test_docs.py`` builds it
with ``-W --keep-going``, so any warning fails the tests). Offline: no intersphinx, no remote images. The
``command-help`` directive prints ``ntk-l2 --help`` and every subcommand's ``--help`` as the parser says them;
``submodules`` documents every public module of a package that has no ``__all__``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import pkgutil
from collections.abc import Iterator
from unittest import mock

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from ntk_l2 import __version__

project = "ntk_l2"
author = "ntk_l2 developers"
copyright = "ntk_l2 developers, Apache-2.0"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
toc_object_entries = False  # the contents list pages and modules; each page lists its own entries
default_role = None  # `name` in a docstring renders as emphasis, as the docstrings use it, not as a reference
nitpicky = False
language = "en"
highlight_language = "text"  # literal blocks in docstrings are formulas, not Python
html_theme = "alabaster"
html_theme_options = {"page_width": "1100px"}  # room for signatures and 80-column help text
html_title = f"ntk_l2 {release} API reference"
html_show_sourcelink = False

autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# numpy's typing aliases by name, not expanded into their unions of private protocols
autodoc_type_aliases = {"ArrayLike": "numpy.typing.ArrayLike", "DTypeLike": "numpy.typing.DTypeLike"}
autosummary_generate = False  # the tables link to the pages' own autodoc entries; no stub files are written
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as a field list, not a second description of each dataclass field
napoleon_use_rtype = False

# width of the --help text, as a terminal of this many columns would show it
HELP_COLUMNS = 80


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommand names of ``parser``, in the order ``--help`` lists them."""
    return [name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]


@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    with mock.patch.dict(os.environ, {"COLUMNS": str(HELP_COLUMNS)}):
        yield


def command_help(*argv: str) -> str:
    """What ``ntk-l2 ARGV --help`` prints; raises RuntimeError if it exits with a non-zero code."""
    from ntk_l2.cli import main

    out = io.StringIO()
    with _help_width(), contextlib.redirect_stdout(out):
        code = main([*argv, "--help"])
    if code != 0:
        raise RuntimeError(f"ntk-l2 {' '.join([*argv, '--help'])} exited with code {code}")
    return out.getvalue()


class CommandHelp(SphinxDirective):
    """``.. command-help::``: ``ntk-l2 --help``, then a rubric and ``ntk-l2 SUB --help`` for every subcommand."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from ntk_l2.cli.args import build_parser

        out: list[nodes.Node] = [_text_block(command_help())]
        for name in subcommands(build_parser()):
            out.append(nodes.rubric(text=f"ntk-l2 {name}"))
            out.append(_text_block(command_help(name)))
        return out


def _text_block(text: str) -> nodes.literal_block:
    """A literal block shown as plain text (no syntax highlighting)."""
    return nodes.literal_block(text, text, language="text")


class Submodules(SphinxDirective):
    """``.. submodules:: PACKAGE``: a section with ``automodule`` for each public module of PACKAGE (the names
    without a leading underscore, alphabetically), documenting what the module itself defines (``__all__`` ignored,
    so re-exports are described once, where they are defined). A new module gets its section without an edit."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.arguments[0])
        names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
        lines: list[str] = []
        for name in names:
            module = f"{package.__name__}.{name}"
            lines += [module, "-" * len(module), "", f".. automodule:: {module}", "   :ignore-module-all:", ""]
        holder = nodes.section()
        holder.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]), holder)
        return list(holder.children)


def skip_field_alias(app: Sphinx, what: str, name: str, obj: object, skip: bool, options: object) -> bool | None:
    """Skip a NamedTuple field's accessor, whose only docstring is "Alias for field number i" (the class docstring
    and signature describe the fields); leave every other member to autodoc's own rule (None)."""
    doc = getattr(obj, "__doc__", None)
    return True if isinstance(doc, str) and doc.startswith("Alias for field number") else None


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the ``command-help`` and ``submodules`` directives and the NamedTuple field filter."""
    app.add_directive("command-help", CommandHelp)
    app.add_directive("submodules", Submodules)
    app.connect("autodoc-skip-member", skip_field_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
