"""Every paired notebook runs top to bottom in its small mode, and its committed
.ipynb (full run, with outputs) is in sync with the .py source."""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
from execute import execute, sources  # noqa: E402


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.stem)
def test_notebook_runs_in_small_mode(source):
    notebook = execute(source, small=True, timeout=600)
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.stem)
def test_committed_notebook_has_outputs_and_matches_source(source):
    committed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "commit the .ipynb of a full run"
    assert any(o.get("output_type") == "display_data" for c in code for o in c.outputs), "figures missing"
    paired = jupytext.read(source)
    assert [c.source for c in paired.cells] == [c.source for c in committed.cells], "re-run notebooks/execute.py"
