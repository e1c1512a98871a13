"""The kernel store: NTK and NNGP blocks of 10⁴–10⁵ points, kept on disk as tiles.

A store is a directory::

    store.json                      format, version, n_train, n_test, c, tile, blocks, architecture,
                                    dataset, inputs_sha256, degree, complete (strict JSON)
    y_train.npy y_test.npy          targets (n, c), (m, c), float64
    labels_train.npy labels_test.npy  integer labels (n,), (m,)
    tiles/BLOCK/rIIIII_cJJJJJ.npy   rows [I·tile, (I+1)·tile) × columns [J·tile, (J+1)·tile) of BLOCK

Blocks: ``ntk_train_train`` Θ(X, X) (n, n), ``ntk_test_train`` Θ(X*, X) (m, n), and optionally
``nngp_train_train``, ``nngp_test_train``, ``nngp_test_test`` (m, m); the test blocks exist iff
m > 0. The symmetric blocks (X with X, X* with X*) store only the tiles with I ≤ J; a reader
mirrors them, tile (J, I) = tile (I, J)ᵀ. Each tile is a float64 C-order ``.npy`` written atomically
(temporary file beside it, then ``os.replace``), so a tile that exists is complete: the set of
tiles on disk is the record a resumed computation reads. `KernelStore` reads a finished store
(`open` verifies it, `load`, `row_blocks` and `matmul` stream it);
`ntk_l2.data.kernel_writer.KernelStoreWriter` creates or resumes one and writes its tiles
(`ntk_l2.experiments.kernels` computes them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BLOCKS",
    "FORMAT",
    "SYMMETRIC",
    "VERSION",
    "KernelStore",
    "block_names",
    "block_shape",
    "check_meta",
    "inputs_sha256",
    "npy_problem",
    "read_store_json",
    "target_shapes",
    "tile_list",
    "tile_path",
    "tile_shape",
]

FORMAT, VERSION = "ntk_l2.kernel_store", 1
BLOCKS = ("ntk_train_train", "ntk_test_train", "nngp_train_train", "nngp_test_train", "nngp_test_test")
SYMMETRIC = frozenset({"ntk_train_train", "nngp_train_train", "nngp_test_test"})
_FIELDS = {  # store.json: field -> accepted types
    "format": str,
    "version": int,
    "n_train": int,
    "n_test": int,
    "c": int,
    "tile": int,
    "blocks": list,
    "architecture": dict,
    "dataset": dict,
    "inputs_sha256": str,
    "degree": (int, type(None)),
    "complete": bool,
}


def block_names(n_test: int, nngp: bool) -> tuple[str, ...]:
    """The blocks of a store: the NTK always, the NNGP with ``nngp``, test blocks iff ``n_test`` > 0."""
    names = ("ntk_train_train", "ntk_test_train") + (BLOCKS[2:] if nngp else ())
    return tuple(b for b in names if n_test > 0 or "test" not in b)


def inputs_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' shapes, dtypes and bytes (float inputs as float64, C order)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        a = np.ascontiguousarray(a, np.float64 if np.issubdtype(a.dtype, np.floating) else np.int64)
        digest.update(f"{a.shape}{a.dtype.str};".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def block_shape(meta: Mapping[str, Any], block: str) -> tuple[int, int]:
    """(rows, columns) of ``block`` in the store described by ``meta``."""
    sizes = {"train": meta["n_train"], "test": meta["n_test"]}
    _, rows, cols = block.split("_")
    return sizes[rows], sizes[cols]


def tile_list(meta: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """Every tile (block, I, J) of the store, blocks in `BLOCKS` order, then rows, then columns."""
    tiles = []
    for block in (b for b in BLOCKS if b in meta["blocks"]):
        rows, cols = (math.ceil(s / meta["tile"]) for s in block_shape(meta, block))
        tiles += [(block, i, j) for i in range(rows) for j in range(i if block in SYMMETRIC else 0, cols)]
    return tiles


def tile_shape(meta: Mapping[str, Any], block: str, i: int, j: int) -> tuple[int, int]:
    """(rows, columns) of tile (I, J) of ``block``: ``tile`` × ``tile``, smaller at the last row or column."""
    (rows, cols), t = block_shape(meta, block), meta["tile"]
    return min(t, rows - i * t), min(t, cols - j * t)


def tile_path(path: Path, block: str, i: int, j: int) -> Path:
    """The file of tile (I, J) of ``block`` in the store at ``path``."""
    return path / "tiles" / block / f"r{i:05d}_c{j:05d}.npy"


def npy_problem(file: Path, shape: tuple[int, ...], kind: str = "f") -> str | None:
    """Why ``file`` is not a complete C-order ``.npy`` of ``shape`` (float64, or integers for kind
    "i"), or None. Reads only the header; the size on disk catches a truncated file."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            stored, fortran, dtype = read(handle)
            offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"unreadable ({' '.join(str(err).split())})"
    right = dtype == np.float64 if kind == "f" else (dtype.kind == "i" and dtype.isnative)
    if stored != shape or fortran or not right:
        return f"holds {dtype}{list(stored)}, expected {'float64' if kind == 'f' else 'integers'}{list(shape)}"
    if size != offset + dtype.itemsize * math.prod(shape):
        return f"truncated ({size} bytes, expected {offset + dtype.itemsize * math.prod(shape)})"
    return None


def read_store_json(file: Path) -> dict[str, Any]:
    """store.json as a dict, strict JSON (NaN and Infinity refused), or a one-line ValueError naming it."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        meta = json.loads(file.read_text(), parse_constant=refuse)
    except (OSError, ValueError) as err:
        raise ValueError(f"KERNEL: {file} cannot be read ({' '.join(str(err).split())})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"KERNEL: {file} is not a kernel store description (a JSON {type(meta).__name__})")
    return meta


def check_meta(meta: dict[str, Any], file: Path) -> None:
    """Every field of store.json present, of its type and consistent, or a one-line ValueError."""

    def bad(problem: str) -> ValueError:
        return ValueError(f"KERNEL: {file}: {problem}")

    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise bad(
            f"not a {FORMAT} of version {VERSION} (format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    for key, kind in _FIELDS.items():
        value = meta.get(key)
        if key not in meta or not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise bad(f"field {key!r} missing or not of type {getattr(kind, '__name__', 'int or null')}")
    for key, least in (("n_train", 1), ("n_test", 0), ("c", 1), ("tile", 1)):
        if meta[key] < least:
            raise bad(f"{key} must be >= {least}, got {meta[key]}")
    if meta["degree"] is not None and meta["degree"] < 0:
        raise bad(f"degree must be >= 0 or null, got {meta['degree']}")
    nngp = "nngp_train_train" in meta["blocks"]
    if meta["blocks"] != list(block_names(meta["n_test"], nngp)):
        raise bad(
            f"blocks {meta['blocks']} are not those of a store (expected {list(block_names(meta['n_test'], nngp))})"
        )
    if len(meta["inputs_sha256"]) != 64 or any(ch not in "0123456789abcdef" for ch in meta["inputs_sha256"]):
        raise bad("inputs_sha256 is not a SHA-256 hex digest")


def target_shapes(meta: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each target file's name: (shape, "f" for float64 or "i" for integers)."""
    n, m, c = meta["n_train"], meta["n_test"], meta["c"]
    return {"y_train": ((n, c), "f"), "y_test": ((m, c), "f"), "labels_train": ((n,), "i"), "labels_test": ((m,), "i")}


@dataclass(frozen=True)
class KernelStore:
    """A complete kernel store opened for reading (`open`); every read is checked, nothing is written.

    ``meta`` is the whole store.json; ``blocks`` the blocks present (`BLOCKS` order); ``degree`` the
    homogeneity degree k of the network (None: not homogeneous).
    """

    path: Path
    n_train: int
    n_test: int
    c: int
    tile: int
    blocks: tuple[str, ...]
    degree: int | None
    meta: dict

    @staticmethod
    def is_store(path: str | os.PathLike) -> bool:
        """Whether ``path`` is a directory holding a store.json (complete or not)."""
        return Path(path).is_dir() and (Path(path) / "store.json").is_file()

    @classmethod
    def open(cls, path: str | os.PathLike) -> KernelStore:
        """The store at ``path`` after checking store.json, the targets' and every tile's ``.npy`` header
        and size; a one-line ValueError starting "KERNEL: " otherwise (naming the missing or damaged
        tiles and how to finish them)."""
        path = Path(path)
        if not cls.is_store(path):
            raise ValueError(
                f"KERNEL: {path} is not a kernel store (no store.json); `ntk-l2 kernel --out DIR` makes one"
            )
        meta = read_store_json(path / "store.json")
        check_meta(meta, path / "store.json")
        for name, (shape, kind) in target_shapes(meta).items():
            if problem := npy_problem(path / f"{name}.npy", shape, kind):
                raise ValueError(
                    f"KERNEL: {path / f'{name}.npy'} {problem}; re-run `ntk-l2 kernel` with the same arguments"
                )
        tiles = tile_list(meta)
        problems = [(t, npy_problem(tile_path(path, *t), tile_shape(meta, *t))) for t in tiles]
        missing = [t for t, p in problems if p == "missing"]
        damaged = [(t, p) for t, p in problems if p not in (None, "missing")]
        if missing or damaged:
            parts = [f"{len(missing)} of {len(tiles)} tiles missing"] if missing else []
            if damaged:
                (block, i, j), problem = damaged[0]
                parts.append(f"{len(damaged)} damaged (e.g. {tile_path(path, block, i, j)} {problem})")
            raise ValueError(
                f"KERNEL: {path}: incomplete kernel store, {' and '.join(parts)}; re-running `ntk-l2 kernel` with "
                f"the same arguments resumes the computation (and recomputes damaged tiles)"
            )
        fields = (meta["n_train"], meta["n_test"], meta["c"], meta["tile"], tuple(meta["blocks"]), meta["degree"])
        return cls(path, *fields, meta)

    def targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(y_train (n, c), y_test (m, c), labels_train (n,), labels_test (m,)), shapes and finiteness checked."""
        arrays = []
        for name, (shape, kind) in target_shapes(self.meta).items():
            file = self.path / f"{name}.npy"
            try:
                a = np.load(file, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ValueError(f"KERNEL: {file} cannot be read ({' '.join(str(err).split())})") from None
            if a.shape != shape or a.dtype.kind != kind or (kind == "f" and not np.all(np.isfinite(a))):
                raise ValueError(
                    f"KERNEL: {file} is not {'finite float64' if kind == 'f' else 'integers'}{list(shape)}"
                )
            arrays.append(a)
        return arrays[0], arrays[1], arrays[2], arrays[3]

    def shape(self, block: str) -> tuple[int, int]:
        """(rows, columns) of ``block``."""
        if block not in self.blocks:
            raise ValueError(
                f"block: {block!r} is not in the kernel store {self.path} (it holds {', '.join(self.blocks)})"
            )
        return block_shape(self.meta, block)

    def nbytes(self, block: str) -> int:
        """Bytes of ``block`` in memory, 8 · rows · columns."""
        rows, cols = self.shape(block)
        return 8 * rows * cols

    def _tile(self, block: str, i: int, j: int) -> np.ndarray:
        """Tile (I, J) as stored, memory-mapped, header checked (I ≤ J for a symmetric block)."""
        file, shape = tile_path(self.path, block, i, j), tile_shape(self.meta, block, i, j)
        if problem := npy_problem(file, shape):
            raise ValueError(f"KERNEL: {file} {problem}; delete it and re-run `ntk-l2 kernel` with the same arguments")
        return np.load(file, mmap_mode="r", allow_pickle=False)

    def _piece(self, block: str, i: int, j: int, rows: slice) -> np.ndarray:
        """Rows ``rows`` (local to tile-row I) of the tile at tile-row I, tile-column J, mirrored if needed."""
        mirrored = block in SYMMETRIC and i > j
        tile = self._tile(block, j, i) if mirrored else self._tile(block, i, j)
        piece = np.asarray(tile[:, rows].T if mirrored else tile[rows])
        if not np.all(np.isfinite(piece)):
            raise ValueError(
                f"KERNEL: {tile_path(self.path, block, *((j, i) if mirrored else (i, j)))} holds non-finite values; "
                f"delete it and re-run `ntk-l2 kernel` with the same arguments"
            )
        return piece

    def load(self, block: str, rows: slice | None = None) -> np.ndarray:
        """``block`` (or its rows ``rows``, a slice of step 1) as one float64 C-order array, filled tile by tile."""
        n_rows, n_cols = self.shape(block)
        start, stop, step = (rows or slice(None)).indices(n_rows)
        if step != 1:
            raise ValueError(f"rows: must be a slice of step 1, got {rows!r}")
        stop, t = max(stop, start), self.tile
        out = np.empty((stop - start, n_cols), np.float64)
        for i in range(start // t, math.ceil(stop / t)):
            lo, hi = max(start, i * t), min(stop, (i + 1) * t)
            for j in range(math.ceil(n_cols / t)):
                out[lo - start : hi - start, j * t : (j + 1) * t] = self._piece(
                    block, i, j, slice(lo - i * t, hi - i * t)
                )
        return out

    def row_blocks(self, block: str) -> Iterator[tuple[slice, np.ndarray]]:
        """Successive tile-rows of ``block``: (row slice, rows (≤ tile, columns)), one in memory at a time."""
        n_rows, _ = self.shape(block)
        for start in range(0, n_rows, self.tile):
            rows = slice(start, min(start + self.tile, n_rows))
            yield rows, self.load(block, rows)

    def matmul(self, block: str, q: np.ndarray) -> np.ndarray:
        """``block @ q`` for q (columns,) or (columns, b), streamed tile by tile; a symmetric block's
        stored tile (I, J), I < J, serves both (I, J) and its mirror (J, I)."""
        n_rows, n_cols = self.shape(block)
        q = np.asarray(q, np.float64)
        if q.ndim not in (1, 2) or q.shape[0] != n_cols or not np.all(np.isfinite(q)):
            raise ValueError(f"q: must be finite with shape ({n_cols},) or ({n_cols}, b), got {q.shape}")
        out, t = np.zeros((n_rows, *q.shape[1:]), np.float64), self.tile
        for _, i, j in (tile for tile in tile_list(self.meta) if tile[0] == block):
            tile, ri, cj = self._tile(block, i, j), slice(i * t, (i + 1) * t), slice(j * t, (j + 1) * t)
            products = [(ri, tile @ q[cj])] + ([(cj, tile.T @ q[ri])] if block in SYMMETRIC and i < j else [])
            for rows, product in products:
                if not np.all(np.isfinite(product)):  # a NaN or inf in the tile shows in its product with finite q
                    raise ValueError(f"KERNEL: {tile_path(self.path, block, i, j)} holds non-finite values")
                out[rows] += product
        return out
