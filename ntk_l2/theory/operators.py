"""Kernels the large-scale solvers read: an array in memory, or anything with the same three methods.

A kernel block (Θ_0, (n, n), or Θ_*X, (m, n)) is read in three ways (`derivations/large.md`, K6):
``matmul(q)`` (the block times a thin (cols, b) matrix, one pass over it: Krylov),
``row_blocks()`` (successive row slices and their rows: the dense solver's test predictions
and the checks) and ``load()`` (one fresh float64 array the caller owns and may overwrite: the
dense eigendecomposition in place). `ArrayKernel` serves an array; a stored kernel
(`ntk_l2.data.kernel_store`) serves the same methods from tiles on disk.
"""

from __future__ import annotations

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

    ``load`` returns a copy (the caller's array is never modified); the other two read it in place.
    """

    array: Array
    name: str = "k_train_train"
    eps: float = float(np.finfo(np.float64).eps)  # the precision the kernel arrived in (V1's tolerances)

    @classmethod
    def checked(cls, value: Any, name: str, rows: int | None = None, cols: int | None = None) -> ArrayKernel:
        arr = _checks.as_float_array(value, name, ndim=2)
        want = (arr.shape[0] if rows is None else rows, arr.shape[1] if cols is None else cols)
        if arr.shape != want or 0 in arr.shape:
            raise ValueError(f"{name}: expected shape {want} (non-empty), got {arr.shape}")
        return cls(arr, name, _checks.input_eps(value))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    def matmul(self, q: Array) -> Array:
        return self.array @ q

    def row_blocks(self) -> Iterator[tuple[slice, Array]]:
        for start in range(0, self.shape[0], ROWS_PER_BLOCK):
            rows = slice(start, min(start + ROWS_PER_BLOCK, self.shape[0]))
            yield rows, self.array[rows]

    def load(self) -> Array:
        return np.array(self.array, dtype=np.float64, order="C", copy=True)


def as_operator(value: Any, name: str, rows: int | None = None, cols: int | None = None) -> KernelOperator:
    """A `KernelOperator` as it is (its shape checked), or an array wrapped in a checked `ArrayKernel`."""
    if isinstance(value, KernelOperator) and not isinstance(value, np.ndarray):
        shape = tuple(value.shape)
        want = (shape[0] if rows is None else rows, shape[1] if cols is None else cols)
        if shape != want or 0 in shape:
            raise ValueError(f"{name}: expected shape {want} (non-empty), got {shape}")
        return value
    return ArrayKernel.checked(value, name, rows, cols)


def check_symmetric(kernel: KernelOperator, name: str, eps: float = float(np.finfo(np.float64).eps)) -> None:
    """Refuse a training kernel that is not symmetric, to V1's tolerance for input precision ``eps``.

    An `ArrayKernel` is compared with its transpose by row blocks (one row block and one column
    block in memory at a time). Any other operator, whose transpose cannot be read, is probed:
    for symmetric Θ_0, vᵀΘ_0 w = wᵀΘ_0 v for every v, w; two random probes from one product
    catch an asymmetric kernel with probability one (K6).
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
        out = kernel.matmul(probes)
        scale = float(np.linalg.norm(out[:, 0])) / n  # ~ a typical entry, as the asymmetry below
        asym = abs(float(probes[:, 0] @ out[:, 1] - probes[:, 1] @ out[:, 0])) / n
        what = f"a probe v'Kw - w'Kv of {asym:.3g} (per entry)"
    if asym > rtol * max(scale, np.finfo(float).tiny):
        raise ValueError(f"{name}: must be symmetric, {what} (> {rtol:.3g} x the kernel's scale {scale:.3g})")
