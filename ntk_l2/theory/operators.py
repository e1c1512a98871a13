"""Kernels the large-scale solvers read: an array in memory, or anything with the same three methods.

A kernel block (Θ_0, (n, n), or Θ_*X, (m, n)) is read in three ways (`derivations/large.md`, K6):
``matmul(q)`` (the block times a thin (cols, b) matrix, one pass over it: Krylov),
``row_blocks()`` (successive row slices and their rows: the dense solver's test predictions
and the checks) and ``load()`` (one fresh float64 array the caller owns and may overwrite: the
dense eigendecomposition in place). `ArrayKernel` serves an array; a stored kernel
(`ntk_l2.data.kernel_store`) serves the same methods from tiles on disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ntk_l2.theory import validation as _checks

Array = NDArray[np.float64]
ROWS_PER_BLOCK = 1024


@runtime_checkable
class KernelOperator(Protocol):
    """A kernel block the solvers read without holding a second copy of it."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def matmul(self, q: Array) -> Array: ...

    def row_blocks(self) -> Iterator[tuple[slice, Array]]: ...

    def load(self) -> Array: ...


@dataclass(frozen=True)
class ArrayKernel:
    """A kernel block held in memory, checked once (real dtype, finite, 2-D; ``rows``/``cols`` exact).

    ``load`` returns a copy (the caller's array is never modified), or the array itself when it is
    ``owned`` (a float64 conversion made here, which no caller sees); the other two read it in
    place. ``symmetrize``: a training kernel that passed V1's tolerance without being exactly
    symmetric is used as (K + Kᵀ)/2, as the engine does: ``matmul`` then returns
    (K q + Kᵀ q)/2 and ``load`` averages its copy in place (K6).
    """

    array: Array
    name: str = "k_train_train"
    eps: float = float(np.finfo(np.float64).eps)  # the precision the kernel arrived in (V1's tolerances)
    owned: bool = False
    symmetrize: bool = False
    block_rows: int = ROWS_PER_BLOCK

    @classmethod
    def checked(cls, value: Any, name: str, rows: int | None = None, cols: int | None = None) -> ArrayKernel:
        arr = _checks.as_float_array(value, name, ndim=2)
        want = (arr.shape[0] if rows is None else rows, arr.shape[1] if cols is None else cols)
        if arr.shape != want or 0 in arr.shape:
            raise ValueError(f"{name}: expected shape {want} with no empty axis, got {arr.shape}")
        owned = not np.shares_memory(arr, np.asarray(value))
        return cls(arr, name, _checks.input_eps(value), owned)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    def matmul(self, q: Array) -> Array:
        if self.symmetrize:
            return 0.5 * (self.array @ q + self.array.T @ q)
        return self.array @ q

    def row_blocks(self) -> Iterator[tuple[slice, Array]]:
        for start in range(0, self.shape[0], self.block_rows):
            rows = slice(start, min(start + self.block_rows, self.shape[0]))
            yield rows, self.array[rows]

    def load(self) -> Array:
        arr = self.array
        if not (self.owned and arr.flags.c_contiguous):
            arr = np.array(arr, dtype=np.float64, order="C", copy=True)
        if self.symmetrize:
            symmetrize_in_place(arr)
        return arr


def symmetrize_in_place(arr: Array) -> None:
    """arr ← (arr + arrᵀ)/2 for a square C-ordered array, block pair by block pair (no second copy)."""
    n, b = arr.shape[0], ROWS_PER_BLOCK
    for i in range(0, n, b):
        for j in range(i, n, b):
            mean = 0.5 * (arr[i : i + b, j : j + b] + arr[j : j + b, i : i + b].T)
            arr[i : i + b, j : j + b] = mean
            arr[j : j + b, i : i + b] = mean.T


def check_loaded(arr: Any, n: int, name: str) -> Array:
    """What an operator's ``load`` returned: a C-ordered float64 (n, n) array with finite entries,
    checked by row blocks (LAPACK, called without its own check, would loop on a NaN)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (n, n) or not arr.flags.c_contiguous:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')}{list(getattr(arr, 'shape', ()))}"
        raise ValueError(f"{name}: its load() must return a C-ordered float64 array of shape ({n}, {n}), got {got}")
    for start in range(0, n, ROWS_PER_BLOCK):
        if not np.all(np.isfinite(arr[start : start + ROWS_PER_BLOCK])):
            raise ValueError(f"{name}: its load() returned NaN or inf values (rows from {start})")
    return arr


def checked_product(product: Any, shape: tuple[int, int], name: str) -> Array:
    """What an operator's ``matmul`` returned: a finite float64 array of the expected shape."""
    out = np.asarray(product, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{name}: its matmul returned shape {out.shape}, expected {shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: its product with a finite block is not finite (NaN or inf entries in the kernel)")
    return out


def as_operator(value: Any, name: str, rows: int | None = None, cols: int | None = None) -> KernelOperator:
    """A `KernelOperator` as it is (its shape checked), or an array wrapped in a checked `ArrayKernel`."""
    if isinstance(value, KernelOperator) and not isinstance(value, np.ndarray):
        shape = tuple(value.shape)
        want = (shape[0] if rows is None else rows, shape[1] if cols is None else cols)
        if shape != want or 0 in shape:
            raise ValueError(f"{name}: expected shape {want} (non-empty), got {shape}")
        return value
    return ArrayKernel.checked(value, name, rows, cols)


def check_symmetric(kernel: KernelOperator, name: str, eps: float = float(np.finfo(np.float64).eps)) -> KernelOperator:
    """Refuse a training kernel that is not symmetric, to V1's tolerance for input precision ``eps``;
    return it, an `ArrayKernel` within the tolerance but not exactly symmetric marked ``symmetrize``.

    An `ArrayKernel` is compared with its transpose by row blocks (one row block and one column
    block in memory at a time). Any other operator, whose transpose cannot be read, is probed:
    for symmetric Θ_0, vᵀΘ_0 w = wᵀΘ_0 v for every v, w; two random probes from one product
    catch an asymmetric kernel with probability one (K6). (A stored kernel is exactly symmetric:
    its mirror tiles are the same file.)
    """
    n = kernel.shape[0]
    if kernel.shape != (n, n):
        raise ValueError(f"{name}: must be square, got shape {kernel.shape}")
    rtol = _checks.symmetry_rtol(eps)
    if isinstance(kernel, ArrayKernel):
        scale, asym = 0.0, 0.0
        for rows, block in kernel.row_blocks():
            scale = max(scale, float(np.max(np.abs(block))))
            asym = max(asym, float(np.max(np.abs(block - kernel.array[:, rows].T))))
        what = f"max |K - K^T| = {asym:.3g}"
    else:
        probes = np.random.default_rng(0).standard_normal((n, 2))
        out = checked_product(kernel.matmul(probes), (n, 2), name)
        scale = float(np.linalg.norm(out[:, 0])) / n  # ~ a typical entry, as the asymmetry below
        asym = abs(float(probes[:, 0] @ out[:, 1] - probes[:, 1] @ out[:, 0])) / n
        what = f"a probe v'Kw - w'Kv of {asym:.3g} (per entry)"
    if asym > rtol * max(scale, np.finfo(float).tiny):
        raise ValueError(f"{name}: must be symmetric, {what} (> {rtol:.3g} x the kernel's scale {scale:.3g})")
    if isinstance(kernel, ArrayKernel) and asym > 0.0:
        return dataclasses.replace(kernel, symmetrize=True)
    return kernel
