"""Resumable sweeps: every finished run is a JSON record plus an npz of arrays, written atomically
and verified when read back.

A run is named (``width2048``, ``l2=0.01_lr=1.0``, …; `run_name` writes every float exactly) and
carries its configuration: a JSON-serializable dict that includes a fingerprint of the data.
``<name>.npz`` is written first and ``<name>.json`` last, each atomically (`ntk_l2.common.io`), so a run
counts as finished exactly when its JSON exists. A killed sweep, run again, therefore skips what
it finished and produces the same results as an uninterrupted one: the summary a sweep returns is
always the one read back from disk (JSON round trip), whether it was just computed or found.

The JSON record is ``{"format", "name", "config", "summary", "arrays_sha256", "sha256"}``:
``arrays_sha256`` is the SHA-256 of the arrays (`arrays_checksum`: names, dtypes, shapes, bytes)
and ``sha256`` that of the canonical JSON of everything else in the record. `RunStore.load`
trusts a stored run only if the JSON parses into that structure, its checksum matches, the
stored name is the file's own (no file copied over another), the configuration is exactly the
requested one, and the npz reads back to arrays with the recorded checksum. Anything else,
including records of older versions (no checksum), is rejected: recomputed and overwritten with
an `InvalidRunWarning` naming the file and what failed, or, with ``on_invalid="raise"``, a
one-line ValueError. The checksums detect corruption, edits and swapped files; they are not a
signature (whoever edits a record can also recompute its checksums).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import io

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
FORMAT = 2  # the record layout; 1 (unnumbered) was {"config", "summary"} without checksums
_FIELDS = {"format", "name", "config", "summary", "arrays_sha256", "sha256"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
ON_INVALID = ("recompute", "raise")

Run = tuple[dict[str, Any], dict[str, np.ndarray]]
#: Reads a stored run's summary into what the caller uses (e.g. a record's ``from_json``); a
#: ValueError marks the stored run invalid (it is recomputed, or refused with ``on_invalid``).
Reader = Callable[[Mapping[str, Any]], Any]


class InvalidRunWarning(UserWarning):
    """A stored run failed verification: it is computed again and overwritten."""


def fingerprint(*arrays: Any) -> str:
    """A short SHA-256 of the arrays' dtypes, shapes and bytes (identifies a dataset)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def arrays_checksum(arrays: Mapping[str, Any]) -> str:
    """SHA-256 of named arrays: per name (sorted), a header line of name, dtype and shape, then
    the C-order bytes (whose length the header fixes)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        header = [name, repr(np.lib.format.dtype_to_descr(a.dtype)), list(a.shape)]
        digest.update(json.dumps(header).encode() + b"\n")
        digest.update(a.tobytes())
    return digest.hexdigest()


def run_name(**parts: Any) -> str:
    """An exact, readable run name: ``key=value`` joined by ``_``, floats as their shortest
    round-trip ``repr`` (``run_name(l2=0.01, lr=1.0)`` is ``l2=0.01_lr=1.0``), so two settings
    that differ in any digit never share a file."""

    def text(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return repr(float(value))
        return str(value)

    name = "_".join(f"{key}={text(value)}" for key, value in parts.items())
    if not _NAME.match(name):
        raise ValueError(f"name: a run name must be letters, digits and ._=+- , got {name!r}")
    return name


def settings(config: Any, added_later: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A dataclass configuration as a run's stored settings. Fields named in ``added_later``
    are left out while they hold the value given there (their default), so run directories
    written before those fields existed stay valid: same network, same settings."""
    added_later = added_later or {}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in added_later or added_later[k] != v}


def _canonical(config: Mapping[str, Any]) -> Any:
    """The configuration as it reads back from JSON (tuples → lists, keys sorted)."""
    return json.loads(json.dumps(config, sort_keys=True))


def _text(value: Any) -> str:
    """The canonical JSON text of a value: what is hashed and compared (NaN-safe, exact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _record_checksum(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(_text({k: v for k, v in record.items() if k != "sha256"}).encode()).hexdigest()


def _structure_problem(record: Any) -> str | None:
    """Why ``record`` is not a run record of this format, or None."""
    if not isinstance(record, dict):
        return f"is not a run record (a JSON {type(record).__name__}, not an object)"
    if "sha256" not in record and "format" not in record:
        return "has no checksum (written by an older version of ntk_l2)"
    if record.get("format") != FORMAT or isinstance(record.get("format"), bool):
        return f"has record format {record.get('format')!r}, expected {FORMAT}"
    if set(record) != _FIELDS:
        return f"has unexpected fields {sorted(set(record) - _FIELDS)}, lacks {sorted(_FIELDS - set(record))}"
    kinds = {"name": str, "config": dict, "summary": dict, "arrays_sha256": str, "sha256": str}
    for key, kind in kinds.items():
        if not isinstance(record[key], kind):
            return f"has a {key} of type {type(record[key]).__name__}, expected {kind.__name__}"
    if not (_HEX64.match(record["sha256"]) and _HEX64.match(record["arrays_sha256"])):
        return "has a checksum that is not 64 hex digits"
    return None


def _config_difference(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(stored) | set(requested) if _text(stored.get(k)) != _text(requested.get(k)))
    return f"was computed with another configuration (differs in {', '.join(keys)})"


def _read_arrays(path: Path) -> dict[str, np.ndarray] | str:
    """The arrays of an npz, or why they cannot be read."""
    if not path.exists():
        return f"has lost its arrays file {path.name}"
    try:
        with open(path, "rb") as handle:  # ours to close: np.load leaks its own handle on a bad zip
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                return f"has an arrays file {path.name} that is not an npz archive"
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except Exception as err:  # a damaged zip fails in many ways (BadZipFile, ValueError, EOFError, MemoryError…)
        return f"has an arrays file {path.name} that cannot be read ({type(err).__name__}: {err})"


@dataclass(frozen=True)
class RunStore:
    """Finished runs of one sweep, in ``directory``.

    ``on_invalid``: what to do with a stored run that fails verification (module docstring):
    "recompute" (default; an `InvalidRunWarning` names the file and the failure) or "raise"
    (a one-line ValueError naming the file; nothing is overwritten).
    """

    directory: Path
    on_invalid: str = "recompute"

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid: must be one of {ON_INVALID}, got {self.on_invalid!r}")

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not _NAME.match(name):
            raise ValueError(f"name: a run name must be letters, digits and ._=+- , got {name!r}")
        return self.directory / f"{name}.json", self.directory / f"{name}.npz"

    def _verified(self, name: str, config: Mapping[str, Any], read: Reader | None = None) -> Run | str | None:
        """The stored run if it verifies (and ``read`` accepts its summary); else why not (a string);
        None if there is no JSON (unfinished)."""
        json_path, npz_path = self._paths(name)
        if not json_path.exists():
            return None
        try:
            record = json.loads(json_path.read_bytes())
        except (OSError, ValueError, RecursionError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
            return f"is not valid JSON ({type(err).__name__}: {err})"
        problem = _structure_problem(record)
        if problem is not None:
            return problem
        if _record_checksum(record) != record["sha256"]:
            return "does not match its checksum (edited or corrupted)"
        if record["name"] != name:
            return f"holds the run {record['name']!r}, not {name!r} (a copied or swapped file)"
        if _text(record["config"]) != _text(_canonical(config)):
            return _config_difference(record["config"], _canonical(config))
        arrays = _read_arrays(npz_path)
        if isinstance(arrays, str):
            return arrays
        if arrays_checksum(arrays) != record["arrays_sha256"]:
            return f"has arrays in {npz_path.name} that do not match their checksum (edited, replaced or corrupted)"
        if read is not None:
            try:
                read(record["summary"])
            except ValueError as err:  # e.g. a field added since the run was stored
                return f"has a summary this version of ntk_l2 cannot read ({err})"
        return record["summary"], arrays

    def _reject(self, name: str, reason: str) -> None:
        """Report a stored run that failed verification: raise, or warn that it is recomputed."""
        where = self._paths(name)[0]
        reason = " ".join(reason.split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."  # it may quote the file's contents
        if self.on_invalid == "raise":
            raise ValueError(f"{where}: stored run {reason}; not trusted (delete it to recompute it)")
        warnings.warn(f"{where}: stored run {reason}; recomputing it", InvalidRunWarning, stacklevel=3)

    def load(self, name: str, config: Mapping[str, Any], read: Reader | None = None) -> Run | None:
        """The stored (summary, arrays) of a finished run with this configuration, verified (and
        its summary accepted by ``read``, e.g. a record's ``from_json``); None if the run is
        unfinished, or if it fails verification (after `on_invalid`'s warning or error)."""
        found = self._verified(name, config, read)
        if isinstance(found, str):
            self._reject(name, found)
            return None
        return found

    def save(
        self, name: str, config: Mapping[str, Any], summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Write the arrays, then the JSON record (with both checksums) that marks the run finished.
        A JSON already there is removed first, so a run killed while being replaced is unfinished."""
        json_path, npz_path = self._paths(name)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        for k, a in arrays.items():
            if a.dtype.hasobject:
                raise ValueError(f"arrays: {k!r} holds Python objects, which an npz cannot store without pickle")
        record: dict[str, Any] = {
            "format": FORMAT,
            "name": name,
            "config": _canonical(config),
            "summary": _canonical(summary),
            "arrays_sha256": arrays_checksum(arrays),
        }
        record["sha256"] = _record_checksum(record)
        json_path.unlink(missing_ok=True)
        io.save_npz(npz_path, **arrays)
        io.save_json(json_path, record)

    def run(
        self,
        name: str,
        config: Mapping[str, Any],
        compute: Callable[[], tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
        read: Reader | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray], bool]:
        """(summary, arrays, reused): the stored run if finished and verified (``read``: see
        `load`), else ``compute()`` saved and read back."""
        found = self.load(name, config, read)
        if found is not None:
            return found[0], found[1], True
        summary, arrays = compute()
        self.save(name, config, summary, arrays)
        stored = self._verified(name, config, read)
        if not isinstance(stored, tuple):
            raise RuntimeError(f"{self._paths(name)[0]}: the run just written does not read back: {stored}")
        return stored[0], stored[1], False
