"""Typed results of the experiments, and the loader of a result directory.

Every experiment returns a frozen `Result` and writes it, with its figures, to a result
directory as ``summary.json``: strict JSON (`ntk_l2.common.records`), with two keys besides
the fields, ``kind`` (which result it is) and ``schema_version`` (`SCHEMA_VERSION`, raised
whenever a field changes meaning or is removed). `load_result` reads any result directory
back into its class, every field checked.

The kinds and where their fields are documented (one class each; field comments give
shapes):

=================  ========================  ===============================================
kind               class                     written by
=================  ========================  ===============================================
``compare``        `ComparisonResult`        `ntk_l2.experiments.compare.run_comparison`
``demo``           `DemoResult`              `ntk_l2.experiments.demo.run_demo`
``deep-linear``    `DeepLinearResult`        `ntk_l2.experiments.deep_linear.run_experiment`
``sweep``          `SweepResult`             `ntk_l2.experiments.laws.run_sweep`
``optimal-l2``     `OptimalL2Result`         `ntk_l2.experiments.laws.run_optimal_l2`
``autol2``         `AutoL2Result`            `ntk_l2.experiments.laws.run_autol2`
=================  ========================  ===============================================

The law results live in `ntk_l2.experiments.results_laws`, the others in
`ntk_l2.experiments.results_compare`; their base, `Result`, with `SCHEMA_VERSION`, in
`ntk_l2.common.records`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ntk_l2.common.records import SCHEMA_VERSION, Result
from ntk_l2.experiments import results_compare, results_laws

__all__ = [
    "SCHEMA_VERSION",
    "Result",
    "load_result",
    "read_json",
    "read_summary",
    "result_from_summary",
    "result_kinds",
]


def result_kinds() -> dict[str, type[Result]]:
    """Every kind of result, by its ``kind``."""
    classes = [*results_compare.RESULTS, *results_laws.RESULTS]
    return {cls.KIND: cls for cls in classes}


def read_json(path: Path) -> Any:
    """A stored JSON file of a result directory, or a one-line ValueError naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"result_dir: {path} cannot be read ({type(err).__name__}: {reason})") from None


def read_summary(result_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """(path, contents) of ``result_dir/summary.json`` as stored, unchecked beyond being a JSON
    object; a one-line ValueError naming ``result_dir`` for a missing directory or file, a file
    that is not JSON, or JSON that is not an object."""
    directory = Path(result_dir)
    path = directory / "summary.json"
    if not directory.is_dir():
        raise ValueError(f"result_dir: {directory} is not a directory")
    if not path.is_file():
        raise ValueError(f"result_dir: {directory} is not a result directory (it has no summary.json)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"result_dir: {path} is not a result summary (a JSON {type(data).__name__})")
    return path, data


def result_from_summary(data: dict[str, Any], path: Path) -> Result:
    """The typed result of a summary read from ``path`` (`read_summary`), every field checked;
    refused in one line naming ``result_dir`` as `load_result` says."""
    if "kind" not in data or "schema_version" not in data:
        raise ValueError(
            f"result_dir: {path} has no kind and schema version (written by an older version of ntk_l2); "
            "run the command again to rewrite it (finished runs are reused)"
        )
    if data["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"result_dir: {path} has schema version {data['schema_version']!r}, this ntk_l2 reads {SCHEMA_VERSION}"
        )
    kinds = result_kinds()
    if data["kind"] not in kinds:
        raise ValueError(f"result_dir: {path} holds an unknown kind {data['kind']!r} (known: {', '.join(kinds)})")
    fields = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
    try:
        return kinds[data["kind"]].from_json(fields)
    except ValueError as err:
        raise ValueError(f"result_dir: {path}: {err}") from None


def load_result(result_dir: str | Path) -> Result:
    """The result stored in ``result_dir/summary.json``, as its class, every field checked.

    Refused with a one-line ValueError naming ``result_dir``: a directory without
    ``summary.json``, a file that is not a JSON object, a summary without ``kind`` and
    ``schema_version`` (written by an older version: run the command again, finished runs
    are reused), another schema version, an unknown kind, or a field of the wrong type.
    """
    path, data = read_summary(result_dir)
    return result_from_summary(data, path)
