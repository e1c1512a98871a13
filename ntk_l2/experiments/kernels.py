"""Kernels at scale: the NTK and NNGP of a whole dataset, computed tile by tile into a kernel store.

The store (`ntk_l2.data.kernel_store`) holds Θ(X, X), Θ(X*, X) and optionally K(X, X), K(X*, X),
K(X*, X*) as tiles of ``tile`` × ``tile`` entries. A *work unit* is one pair of point sets and one
tile position (I, J): a single call ``kernel_fn(x1, x2, ("nngp", "ntk"))`` in float64, x1 = rows
[I·tile, (I+1)·tile) of the first set and x2 = rows [J·tile, (J+1)·tile) of the second, gives the
NNGP and the NTK tile together. Units are listed in one deterministic order (train × train with
I ≤ J, test × train, then test × test), and

- devices: the units of a process run in groups of ``jax.local_device_count()``, one per device
  (``jax.pmap``); edge tiles are padded to the full tile (by repeating their last row) and cropped,
  so every call has the same shapes and a tile's values do not depend on the number of devices;
- processes: when ``jax.process_count()`` = P > 1 (``jax.distributed.initialize`` was called),
  process p computes the units of index ≡ p (mod P); all meet, then process 0 checks every tile
  and marks the store complete. OUT must be on a filesystem every process sees;
- resume: a tile that exists on disk is complete (atomic writes), so a killed run started again
  with the same arguments computes only the missing tiles (counted in `KernelRun.computed`).

A diagonal tile of a symmetric block is stored as (A + Aᵀ)/2, exactly symmetric. Neural-tangents
computes the diagonal Θ(x, x) through arccos of a correlation that rounds to 1 − O(ε), so its
diagonal carries a relative error of ~1e-8 in any batch (full or tiled); off the diagonal a tiled
kernel equals the full one to rounding (~1e-16 relative).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import enable_x64, multihost_utils

from ntk_l2.common.memory import check_fits, format_bytes
from ntk_l2.data.container import Dataset
from ntk_l2.data.kernel_store import SYMMETRIC, KernelStore, inputs_sha256
from ntk_l2.data.kernel_writer import KernelStoreWriter
from ntk_l2.networks.arch import Architecture, fully_connected

__all__ = ["KernelRun", "compute_kernel_store", "fc_kernel_architecture"]

# (tile, tile) float64 arrays per device: ~10 at the peak of one kernel_fn call (measured, fully connected,
# tiles of 1000 to 3000), plus the two results of the group written while the next one runs
_WORK_ARRAYS = 14
Unit = tuple[str, int, int, tuple[str, ...]]  # (pair, I, J, blocks still missing)
_LOCKS: dict[Path, Any] = {}  # OUT -> its open lock file, one per store this process computes


@dataclass(frozen=True)
class KernelRun:
    """A finished `compute_kernel_store`: the store and what this run did.

    ``computed``: tiles this process wrote; ``reused``: tiles of its share already on disk;
    ``computed_all``: tiles written by all processes; ``total``: tiles of the store.
    """

    store: KernelStore
    computed: int
    reused: int
    computed_all: int
    total: int
    process: int
    processes: int
    devices: int
    seconds: float

    def summary(self) -> str:
        """One line: blocks, sizes, tiles computed and reused, time."""
        s = self.store
        who = f" by process {self.process} of {self.processes}" if self.processes > 1 else ""
        return (
            f"kernel store {s.path}: {', '.join(s.blocks)}; n = {s.n_train}, m = {s.n_test}, tile {s.tile}; "
            f"{self.computed} tiles computed, {self.reused} reused{who} ({self.computed_all} computed in all, "
            f"{self.total} in the store) on {self.devices} device{'s' if self.devices > 1 else ''} in "
            f"{self.seconds:.1f} s"
        )


def fc_kernel_architecture(depth: int, out_dim: int) -> tuple[Architecture, dict[str, Any]]:
    """The fully connected network of ``ntk-l2 compare`` (bias-free ReLU, σ_w = √2, readout σ_w = 1,
    NTK parameterization, degree depth + 1) and its description for a store (width plays no part
    in the infinite-width kernels)."""
    arch = fully_connected(depth, out_dim=out_dim)
    description = {
        "name": "fc",
        "depth": depth,
        "activation": "relu",
        "W_std": math.sqrt(2.0),
        "b_std": None,
        "readout_W_std": 1.0,
        "parameterization": "ntk",
    }
    return arch, description


def _units(writer: KernelStoreWriter) -> list[tuple[str, int, int]]:
    """Every work unit (pair, I, J) in the store's tile order; a unit yields one tile of each block
    comparing ``pair`` (e.g. "train_train": ntk_train_train and nngp_train_train)."""
    seen: dict[tuple[str, int, int], None] = {}
    for block, i, j in writer.tiles():
        seen.setdefault((block.split("_", 1)[1], i, j), None)
    return list(seen)


def _tile_rows(x: np.ndarray, index: int, tile: int) -> np.ndarray:
    """Rows [index·tile, (index+1)·tile) of x, padded to ``tile`` rows by repeating the last one."""
    rows = x[index * tile : (index + 1) * tile]
    return np.pad(rows, [(0, tile - rows.shape[0])] + [(0, 0)] * (x.ndim - 1), mode="edge")


def _group_inputs(group: Sequence[Unit], xs: Mapping[str, np.ndarray], tile: int, devices: int) -> list[np.ndarray]:
    """(x1, x2) stacked over the devices; a short group repeats its last unit (results dropped)."""
    padded = list(group) + [group[-1]] * (devices - len(group))
    first = [_tile_rows(xs[pair.split("_")[0]], i, tile) for pair, i, _, _ in padded]
    second = [_tile_rows(xs[pair.split("_")[1]], j, tile) for pair, _, j, _ in padded]
    return [np.stack(first), np.stack(second)]


def _write_group(writer: KernelStoreWriter, group: Sequence[Unit], results: Any, bar: Any) -> int:
    """Crop and store the missing tiles of each unit of a computed group; returns the tiles written."""
    nngp, ntk = (np.asarray(r) for r in results)
    written = 0
    for k, (_, i, j, blocks) in enumerate(group):
        for block in blocks:
            rows, cols = writer.tile_shape(block, i, j)
            tile = (ntk if block.startswith("ntk") else nngp)[k, :rows, :cols]
            if block in SYMMETRIC and i == j:
                tile = (tile + tile.T) / 2  # exactly symmetric (float addition commutes)
            writer.write_tile(block, i, j, tile)
            written += 1
            bar.update(1)
    return written


def _compute(
    arch: Architecture, writer: KernelStoreWriter, xs: Mapping[str, np.ndarray], todo: list[Unit], bar: Any
) -> int:
    """Compute ``todo`` in groups of one unit per local device; the next group is dispatched before
    the previous one is written, so the disk writes overlap the computation."""
    devices = jax.local_devices()
    tile, size = writer.meta["tile"], len(devices)
    fn = jax.pmap(lambda a, b: tuple(arch.kernel_fn(a, b, ("nngp", "ntk"))), devices=devices)
    written, pending = 0, None
    with enable_x64():
        for start in range(0, len(todo), size):
            group = todo[start : start + size]
            launched = (group, fn(*_group_inputs(group, xs, tile, size)))
            if pending is not None:
                written += _write_group(writer, *pending, bar)
            pending = launched
        if pending is not None:
            written += _write_group(writer, *pending, bar)
    return written


def _check_resources(writer: KernelStoreWriter, d: int) -> None:
    """Refuse, before any tile is computed, a store the disk cannot hold or a group of tiles
    (one per local device) the memory cannot hold."""
    missing, where = writer.missing_tiles(), writer.path
    while not where.exists() and where != where.parent:  # a new store: the directory it will be made in
        where = where.parent
    need, free = writer.nbytes_missing(missing), shutil.disk_usage(where).free
    if need > free:
        raise ValueError(
            f"--out: the kernel store needs {format_bytes(need)} more on disk ({len(missing)} tiles), but "
            f"{where} has {format_bytes(free)} free; free space, choose another --out or pass --no-nngp"
        )
    t, devices = writer.meta["tile"], jax.local_device_count()
    check_fits(devices * 8 * (_WORK_ARRAYS * t * t + 2 * t * d), f"a group of {devices} tiles of {t}×{t}", "tile")


def _meet(failure: BaseException | None, what: str, value: int = 0) -> list[int]:
    """All processes meet (``process_allgather``, a barrier) and exchange one integer each; each
    raises its own failure, or a one-line error naming the processes that failed."""
    gathered = np.asarray(multihost_utils.process_allgather(np.array([failure is not None, value], np.int32)))
    gathered = gathered.reshape(-1, 2)
    if failure is not None:
        raise failure
    if gathered[:, 0].any():
        who = ", ".join(str(p) for p in np.flatnonzero(gathered[:, 0]))
        raise ValueError(f"--out: process {who} failed while {what} (its own message says why)")
    return gathered[:, 1].tolist()


def _prepare(out: Path, create: Callable[..., KernelStoreWriter], d: int, processes: int) -> KernelStoreWriter:
    """Create or resume the store after checking disk and memory (nothing is written if they do not
    suffice): process 0 first, then the others (which must see its store.json)."""
    if processes == 1:
        _check_resources(create(write=False), d)
        writer = create()
        _release(out)
        _LOCKS[out.resolve()] = writer.lock()  # held until the run ends (`_release`) or the process does
        return writer
    writer, failure = None, None
    if jax.process_index() == 0:
        try:
            _check_resources(create(write=False), d)
            writer = create()
        except (ValueError, OSError) as err:
            failure = err
    _meet(failure, "preparing the kernel store")
    if writer is None:
        try:
            if not KernelStore.is_store(out):
                raise ValueError(
                    f"--out: process 0's store.json is not visible in {out} here; OUT must be on a filesystem "
                    f"shared by every process"
                )
            writer = create()
        except (ValueError, OSError) as err:
            failure = err
    _meet(failure, "opening the kernel store")
    assert writer is not None
    return writer


def _release(out: Path) -> None:
    """Close the lock this process holds on ``out``, if any."""
    handle = _LOCKS.pop(out.resolve(), None)
    if handle is not None:
        handle.close()


def _progress_bar(total: int, progress: bool | None, devices: int) -> Any:
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    show = jax.process_index() == 0 and (progress if progress is not None else total > 4)
    desc = f"kernel tiles ({devices} device{'s' if devices > 1 else ''})"
    return tqdm(total=total, disable=not show, unit="tile", desc=desc, leave=False)


def compute_kernel_store(
    arch: Architecture,
    ds: Dataset,
    out: str | Path,
    *,
    tile: int = 1000,
    nngp: bool = True,
    progress: bool | None = None,
    architecture: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> KernelRun:
    """Compute the NTK (and with ``nngp`` the NNGP) blocks of ``ds`` under ``arch`` into the store ``out``.

    ``tile`` is clipped to n_train. ``architecture`` and ``dataset`` describe the run in store.json
    (default: the network's name and degree; the dataset's name and sizes): a store made with other
    descriptions, tile, blocks or inputs (x and labels, hashed) is refused, one with the same ones
    resumed. ``progress``: a tqdm bar on process 0 (default: for more than 4 tiles). With several
    processes (module docstring) every process calls this with the same arguments.
    """
    start = time.perf_counter()
    xs = {"train": np.asarray(ds.x_train, np.float64), "test": np.asarray(ds.x_test, np.float64)}
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile: must be an integer >= 1, got {tile!r}")
    out, process, processes = Path(out), jax.process_index(), jax.process_count()
    digest = inputs_sha256(xs["train"], xs["test"], ds.labels_train, ds.labels_test)

    def create(write: bool = True) -> KernelStoreWriter:
        return KernelStoreWriter.create(
            out,
            (ds.y_train, ds.y_test, ds.labels_train, ds.labels_test),
            tile=min(int(tile), xs["train"].shape[0]),
            nngp=nngp,
            architecture=architecture or {"name": arch.name, "degree": arch.degree},
            dataset=dataset or {"name": ds.name, "n_train": len(ds.labels_train), "n_test": len(ds.labels_test)},
            inputs_sha256=digest,
            degree=arch.degree,
            write=write,
        )

    writer = _prepare(out, create, int(np.prod(xs["train"].shape[1:])), processes)
    missing = set(writer.missing_tiles())
    todo, reused = [], 0
    for k, (pair, i, j) in enumerate(_units(writer)):
        if k % processes != process:
            continue
        blocks = tuple(b for b in writer.meta["blocks"] if b.endswith(pair) and (b, i, j) in missing)
        reused += sum(b.endswith(pair) for b in writer.meta["blocks"]) - len(blocks)
        if blocks:
            todo.append((pair, i, j, blocks))
    failure, computed = None, 0
    try:
        with _progress_bar(sum(len(u[3]) for u in todo), progress, jax.local_device_count()) as bar:
            computed = _compute(arch, writer, xs, todo, bar)
    except (ValueError, OSError) as err:
        if processes == 1:
            raise
        failure = err
    counts = _meet(failure, "computing its tiles", computed) if processes > 1 else [computed]
    store, failure = None, None
    if process == 0:  # every process has finished: check every tile and record the store complete
        try:
            store = writer.mark_complete()
        except (ValueError, OSError) as err:
            if processes == 1:
                raise
            failure = err
    if processes > 1:
        _meet(failure, "checking the finished store")
    _release(out)
    return KernelRun(
        store=store or KernelStore.open(out),
        computed=computed,
        reused=reused,
        computed_all=int(sum(counts)),
        total=len(writer.tiles()),
        process=process,
        processes=processes,
        devices=jax.local_device_count(),
        seconds=time.perf_counter() - start,
    )
