"""Writing a kernel store (`ntk_l2.data.kernel_store`): create it or resume it, add tiles atomically.

`KernelStoreWriter.create` makes a new store in an absent or empty directory, or reopens the store
already there when it was made with the same settings and inputs (a resumed computation); any other
directory is refused with a one-line ValueError naming what differs, and nothing is deleted or
overwritten. `write_tile` stores one tile atomically (a temporary file beside it, then ``os.replace``),
so a killed run leaves only complete tiles; `missing_tiles` is what a resumed run still computes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import io
from ntk_l2.data.kernel_store import (
    FORMAT,
    SYMMETRIC,
    VERSION,
    KernelStore,
    block_names,
    block_shape,
    check_meta,
    npy_problem,
    read_store_json,
    target_shapes,
    tile_list,
    tile_path,
    tile_shape,
)

__all__ = ["KernelStoreWriter"]


def _save_npy(file: Path, array: np.ndarray) -> None:
    """``array`` to ``file`` as ``.npy``, atomically: a temporary file beside it, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_value(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: must be a JSON object of finite values ({err})") from None


def _difference(old: Any, new: Any, key: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted key, old, new) where two JSON values differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if found := _difference(old.get(k, "(absent)"), new.get(k, "(absent)"), f"{key}.{k}" if key else k):
                return found
        return None
    return None if old == new and type(old) is type(new) else (key, old, new)


@dataclass(frozen=True)
class KernelStoreWriter:
    """A store being computed: `create` makes or resumes it, `write_tile` adds a tile, `mark_complete`
    records that every tile is there. Never deletes or overwrites a store made with other settings."""

    path: Path
    meta: dict

    @classmethod
    def create(
        cls,
        out: str | os.PathLike,
        targets: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        *,
        tile: int,
        nngp: bool,
        architecture: Mapping[str, Any],
        dataset: Mapping[str, Any],
        inputs_sha256: str,
        degree: int | None,
        write: bool = True,
    ) -> KernelStoreWriter:
        """A new store in ``out`` (absent or empty), or the store already there if it was made with the
        same settings and inputs (a resumed computation): else a one-line ValueError naming what differs.

        ``targets`` = (y_train (n, c), y_test (m, c), labels_train (n,), labels_test (m,)). With
        ``write=False`` everything is checked and nothing written (a new store's tiles are all missing).
        """
        out = Path(out)
        y_train, y_test = (np.asarray(y, np.float64) for y in targets[:2])
        labels = [np.asarray(v) for v in targets[2:]]
        if y_train.ndim != 2 or y_test.shape[1:] != y_train.shape[1:] or any(v.dtype.kind not in "iu" for v in labels):
            raise ValueError(f"targets: need y (n, c), (m, c) and integer labels, got {y_train.shape}, {y_test.shape}")
        n, m = y_train.shape[0], y_test.shape[0]
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
            raise ValueError(f"tile: must be an integer >= 1, got {tile!r}")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "n_train": n,
            "n_test": m,
            "c": y_train.shape[1],
            "tile": int(tile),
            "blocks": list(block_names(m, bool(nngp))),
            "architecture": _json_value(dict(architecture), "architecture"),
            "dataset": _json_value(dict(dataset), "dataset"),
            "inputs_sha256": inputs_sha256,
            "degree": None if degree is None else int(degree),
            "complete": False,
        }
        check_meta(meta, out / "store.json")
        writer = cls(out, cls._existing(out, meta, write) or meta)
        if not write:
            return writer
        arrays = {"y_train": y_train, "y_test": y_test, "labels_train": labels[0], "labels_test": labels[1]}
        for name, (shape, kind) in target_shapes(meta).items():
            if npy_problem(out / f"{name}.npy", shape, kind):
                _save_npy(out / f"{name}.npy", arrays[name].astype(np.float64 if kind == "f" else np.int64))
        for block in meta["blocks"]:
            (out / "tiles" / block).mkdir(parents=True, exist_ok=True)
        return writer

    @staticmethod
    def _existing(out: Path, meta: dict[str, Any], write: bool) -> dict[str, Any] | None:
        """The meta of the store in ``out`` when it matches ``meta``; None for a new store (created
        with ``write``)."""
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a directory")
        if KernelStore.is_store(out):
            old = read_store_json(out / "store.json")
            same = {k: v for k, v in old.items() if k != "complete"}
            if found := _difference(same, {k: v for k, v in meta.items() if k != "complete"}):
                key, was, now = found
                what = "other inputs or labels" if key == "inputs_sha256" else f"{key} {was!r} there, {now!r} now"
                raise ValueError(
                    f"--out: {out} holds a kernel store made with other settings ({what}); run with that store's "
                    f"settings to resume it, or give another --out (a store is never overwritten)"
                )
            check_meta(old, out / "store.json")
            return old
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(f"--out: {out} is not a kernel store; give an empty or new directory")
        if write:
            out.mkdir(parents=True, exist_ok=True)
            io.save_json(out / "store.json", meta)
        return None

    def tiles(self) -> list[tuple[str, int, int]]:
        """Every tile (block, I, J): blocks in `BLOCKS` order, then I, then J (J ≥ I if symmetric)."""
        return tile_list(self.meta)

    def tile_shape(self, block: str, i: int, j: int) -> tuple[int, int]:
        """(rows, columns) of tile (I, J) of ``block``; edge tiles are smaller."""
        return tile_shape(self.meta, block, i, j)

    def missing_tiles(self) -> list[tuple[str, int, int]]:
        """The tiles not on disk, or whose file is not a complete ``.npy`` of the right shape."""
        return [t for t in self.tiles() if npy_problem(tile_path(self.path, *t), self.tile_shape(*t))]

    def write_tile(self, block: str, i: int, j: int, array: np.ndarray) -> Path:
        """Store tile (I, J) of ``block`` atomically; refuses a wrong shape or non-finite values."""
        rows, cols = (math.ceil(s / self.meta["tile"]) for s in block_shape(self.meta, block))
        if block not in self.meta["blocks"] or not (0 <= i < rows and (i if block in SYMMETRIC else 0) <= j < cols):
            raise ValueError(f"tile: ({block}, {i}, {j}) is not a tile of {self.path}")
        array, shape = np.asarray(array, np.float64), self.tile_shape(block, i, j)
        if array.shape != shape:
            raise ValueError(f"tile: ({block}, {i}, {j}) of {self.path} has shape {shape}, got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"KERNEL: tile ({block}, {i}, {j}) computed with non-finite values; not written")
        file = tile_path(self.path, block, i, j)
        _save_npy(file, array)
        return file

    def nbytes_missing(self, tiles: list[tuple[str, int, int]]) -> int:
        """Bytes on disk of ``tiles`` (data and a header of 128 bytes each)."""
        return sum(8 * math.prod(self.tile_shape(*t)) + 128 for t in tiles)

    def lock(self) -> Any:
        """Hold an exclusive lock on ``OUT/.lock`` (returned: keep it open while writing; closing it, or
        the process ending, releases it). A second run on the same OUT from this machine is refused in
        one line instead of racing with this one (and having its temporary files swept away)."""
        import fcntl

        handle = open(self.path / ".lock", "a")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ValueError(
                f"--out: {self.path} is being computed by another run (it holds {self.path / '.lock'}); wait for "
                f"it to finish, or give another directory"
            ) from None
        return handle

    def mark_complete(self) -> KernelStore:
        """Verify every tile (`KernelStore.open`), remove temporary files left by killed runs, and
        record ``complete: true`` in store.json. Call when no process writes any more."""
        store = KernelStore.open(self.path)
        for stale in (self.path / "tiles").glob("*/.*.tmp"):
            stale.unlink(missing_ok=True)
        if not self.meta.get("complete"):
            meta = dict(self.meta, complete=True)
            io.save_json(self.path / "store.json", meta)
            store = KernelStore.open(self.path)
        return store
