"""Resumable sweeps: every finished run is a JSON summary plus an npz of arrays, written atomically.

A run is named (``width2048``, ``l2=0.01_lr=1``, …) and carries its
configuration: a JSON-serializable dict that includes a fingerprint of the
data. ``<name>.npz`` is written first and ``<name>.json`` last, each
atomically (`ntk_l2.io`), so a run counts as finished exactly when its JSON
exists; a run whose stored configuration differs from the requested one is
computed again. A killed sweep, run again, therefore skips what it finished
and produces the same results as an uninterrupted one: the summary a sweep
returns is always the one read back from disk (JSON round trip), whether it
was just computed or found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ntk_l2 import io

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def fingerprint(*arrays: Any) -> str:
    """A short SHA-256 of the arrays' dtypes, shapes and bytes (identifies a dataset)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def settings(config: Any, added_later: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A dataclass configuration as a run's stored settings. Fields named in ``added_later``
    are left out while they hold the value given there (their default), so run directories
    written before those fields existed stay valid: same network, same settings."""
    added_later = added_later or {}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in added_later or added_later[k] != v}


def _canonical(config: Mapping[str, Any]) -> Any:
    """The configuration as it reads back from JSON (tuples → lists, keys sorted)."""
    return json.loads(json.dumps(config, sort_keys=True))


@dataclass(frozen=True)
class RunStore:
    """Finished runs of one sweep, in ``directory``."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not _NAME.match(name):
            raise ValueError(f"name: a run name must be letters, digits and ._=+- , got {name!r}")
        return self.directory / f"{name}.json", self.directory / f"{name}.npz"

    def load(self, name: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The stored (summary, arrays) of a finished run with this configuration, else None."""
        json_path, npz_path = self._paths(name)
        if not json_path.exists() or not npz_path.exists():
            return None
        record = json.loads(json_path.read_text())
        if record.get("config") != _canonical(config):
            return None
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return record["summary"], arrays

    def save(self, name: str, config: Mapping[str, Any], summary: Mapping[str, Any],
             arrays: Mapping[str, np.ndarray]) -> None:
        """Write the arrays, then the JSON that marks the run finished."""
        json_path, npz_path = self._paths(name)
        io.save_npz(npz_path, **{k: np.asarray(v) for k, v in arrays.items()})
        io.save_json(json_path, {"config": _canonical(config), "summary": summary})

    def run(self, name: str, config: Mapping[str, Any],
            compute: Callable[[], tuple[Mapping[str, Any], Mapping[str, np.ndarray]]]) -> tuple[dict[str, Any], dict[str, np.ndarray], bool]:
        """(summary, arrays, reused): the stored run if finished, else ``compute()`` saved and read back."""
        found = self.load(name, config)
        if found is not None:
            return found[0], found[1], True
        summary, arrays = compute()
        self.save(name, config, summary, arrays)
        stored = self.load(name, config)
        assert stored is not None  # just written
        return stored[0], stored[1], False
