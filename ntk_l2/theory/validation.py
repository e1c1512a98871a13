"""Input validation shared by every solver and file reader: one message style, one place.

Every check raises ``ValueError`` whose one-line message starts with the
argument's name, so the command line can print it as it is. What is checked
(`derivations/validation.md`, V1–V4):

- **dtype**: real numbers only — floating arrays (float16/32/64, long double)
  and integer arrays (exact up to 2^53). Bool, complex, string, bytes,
  datetime, timedelta, void and object arrays are refused, never converted.
- **shape**: exactly the expected one; nothing is broadcast except an explicit
  scalar for an initial output or an offset.
- **values**: finite, and |x| ≤ `MAX_ABS` = 1e150 so that the float64 solver
  keeps headroom for products of two entries (1e300 < 1.8e308).
- **kernels**: square, symmetric and positive semi-definite within tolerances
  scaled to the precision ε of the dtype they arrived in: |K − Kᵀ| ≤ max(1e-8, √ε)·max|K|
  and eigenvalues ≥ −max(1e-8, n·ε)·‖K‖ (rounding a PSD matrix to precision ε
  moves its eigenvalues by at most √n·ε·‖K‖; n·ε leaves room for the kernel's
  own accumulation error). So a float32 kernel of deficient rank is accepted and a
  float64 one is held to 1e-8.
- **results**: `check_finite_result` refuses non-finite predictions, naming the
  time and the eigenmode that overflowed.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# Relative tolerances for float64 input (with respect to the largest |entry| or the spectral norm);
# lower-precision input gets the looser `symmetry_rtol` / `negative_eigenvalue_rtol`.
SYMMETRY_RTOL = 1e-8
NEGATIVE_EIGENVALUE_RTOL = 1e-8
MAX_ABS = 1e150
MAX_DEGREE = 1000
_EXACT_INT = 2**53
_KIND_NAMES = {
    "b": "bool",
    "c": "complex",
    "U": "string",
    "S": "bytes",
    "O": "object",
    "M": "datetime",
    "m": "timedelta",
    "V": "structured/void",
}


def input_eps(value: Any) -> float:
    """Machine ε of the precision ``value`` arrived in (float64's for integers and Python numbers)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "f":
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)


def symmetry_rtol(eps: float) -> float:
    """max(1e-8, √ε): 1e-8 for float64 input, 3.5e-4 for float32."""
    return max(SYMMETRY_RTOL, float(np.sqrt(eps)))


def negative_eigenvalue_rtol(eps: float, n: int) -> float:
    """max(1e-8, n·ε): 1e-8 for float64 input, 6e-5 for a float32 kernel of size 512."""
    return max(NEGATIVE_EIGENVALUE_RTOL, n * eps)


def check_dtype(arr: np.ndarray, name: str) -> None:
    """Refuse anything but real floating or integer arrays (integers only where exact in float64)."""
    kind = arr.dtype.kind
    if kind in "iu":
        if arr.size and int(np.max(np.abs(arr.astype(np.float64)))) > _EXACT_INT:
            raise ValueError(f"{name}: integer entries beyond 2^53 are not exact in float64; pass floats")
        return
    if kind != "f":
        what = _KIND_NAMES.get(kind, str(arr.dtype))
        raise ValueError(f"{name}: must hold real numbers (a floating or integer dtype), got {what} dtype {arr.dtype}")


def as_float_array(value: Any, name: str, ndim: int | None = None, shape: tuple[int, ...] | None = None) -> Array:
    """A float64 copy-or-view of a real array: dtype, rank or exact shape, finite, |x| ≤ 1e150."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot be read as an array ({' '.join(str(err).split())})") from None
    check_dtype(raw, name)
    if shape is not None and raw.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {raw.shape}")
    if ndim is not None and raw.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {raw.shape}")
    with np.errstate(over="ignore"):
        arr = raw.astype(np.float64, copy=False)
    biggest = max(float(np.max(arr)), -float(np.min(arr))) if arr.size else 0.0  # NaN and ±inf propagate
    if not np.isfinite(biggest):
        finite = np.isfinite(arr)
        bad = int(arr.size - np.count_nonzero(finite))
        extra = " (beyond float64's range)" if np.isfinite(raw).all() else ""
        raise ValueError(f"{name}: contains {bad} NaN or inf value(s){extra}")
    if arr.size:
        if biggest > MAX_ABS:
            raise ValueError(
                f"{name}: entries up to {biggest:.3g} exceed {MAX_ABS:g}, beyond which float64 products "
                f"overflow; rescale the input (a kernel by s and the learning rate by 1/s)"
            )
    return arr


def check_kernel(k: Any, name: str = "k_train_train", size: int | None = None) -> Array:
    """A square, symmetric, finite kernel matrix (float64), symmetrized as (K + Kᵀ)/2.

    ``size``: the expected n (exact). Symmetry is held to `symmetry_rtol` of the input's precision.
    """
    arr = as_float_array(k, name, ndim=2)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name}: must be square, got shape {arr.shape}")
    if size is not None and arr.shape != (size, size):
        raise ValueError(f"{name}: expected shape {(size, size)}, got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: is empty")
    scale = max(float(np.max(arr)), -float(np.min(arr)))
    rtol = symmetry_rtol(input_eps(k))
    asym, symmetric = _symmetrize(arr)
    if asym > rtol * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"{name}: must be symmetric, max |K - K^T| = {asym:.3g} (> {rtol:.3g} x max |K| = {scale:.3g})"
        )
    return symmetric


_SYMMETRIZE_BLOCK = 64  # rows per block: the transposed block stays in cache (2x faster than K - Kᵀ at n = 2048)


def _symmetrize(arr: Array) -> tuple[float, Array]:
    """max |K − Kᵀ| and (K + Kᵀ)/2 (a fresh array), by blocks of rows, each against its transposed column block."""
    n = arr.shape[0]
    out = np.empty((n, n))
    asym = 0.0
    for i in range(0, n, _SYMMETRIZE_BLOCK):
        rows = arr[i : i + _SYMMETRIZE_BLOCK]
        cols = np.ascontiguousarray(arr[:, i : i + _SYMMETRIZE_BLOCK].T)
        block = np.subtract(rows, cols)
        asym = max(asym, float(np.max(block)), -float(np.min(block)))
        np.add(rows, cols, out=block)
        block *= 0.5
        out[i : i + _SYMMETRIZE_BLOCK] = block
    return asym, out


def check_eigenvalues(evals: Array, name: str = "k_train_train", eps: float = float(np.finfo(np.float64).eps)) -> Array:
    """Reject eigenvalues below −`negative_eigenvalue_rtol`(ε, n)·‖K‖; clip the round-off negatives to 0."""
    norm = float(np.max(np.abs(evals)))
    rtol = negative_eigenvalue_rtol(eps, evals.shape[0])
    most_negative = float(np.min(evals))
    if most_negative < -rtol * norm:
        raise ValueError(
            f"{name}: is not positive semi-definite: most negative eigenvalue {most_negative:.6g} "
            f"< -{rtol:.3g} x ||K|| = {-rtol * norm:.3g}"
        )
    return np.maximum(evals, 0.0)


def check_psd(k: Array, name: str, eps: float) -> None:
    """A symmetric matrix is positive semi-definite (eigenvalues, `check_eigenvalues`' tolerance)."""
    check_eigenvalues(np.linalg.eigvalsh(k), name, eps)


def check_scalar(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real scalar, optionally > 0 or ≥ 0 (bool, complex and strings refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raw = np.asarray(value) if not isinstance(value, str) else None
        if raw is None or raw.ndim != 0 or raw.dtype.kind not in "iuf":
            raise ValueError(f"{name}: must be a real number, got {value!r}")
        value = raw.item()
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value!r}")
    return value


def check_degree(value: Any, name: str = "degree") -> int:
    """A homogeneity degree: an integer ≥ 0 (floats equal to an integer accepted)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be an integer >= 0, got {value!r}")
    if isinstance(value, numbers.Integral):
        k = int(value)
    elif isinstance(value, numbers.Real) and np.isfinite(float(value)) and float(value).is_integer():
        k = int(value)
    else:
        raise ValueError(f"{name}: must be an integer >= 0, got {value!r}")
    if k < 0:
        raise ValueError(f"{name}: must be an integer >= 0, got {k}")
    if k > MAX_DEGREE:
        raise ValueError(f"{name}: must be at most {MAX_DEGREE} (weight layers of a homogeneous network), got {k:.6g}")
    return k


def check_times(t: Any, name: str = "t") -> tuple[Array, bool]:
    """Times in steps: real, ≥ 0, not NaN (``np.inf`` allowed: the t → ∞ limit).

    Returns the 1-D array of times and whether ``t`` was a scalar.
    """
    try:
        raw = np.asarray(t)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number or an array of numbers, got {t!r}") from None
    if raw.dtype.kind not in "iuf" or isinstance(t, (bool, np.bool_)):
        raise ValueError(f"{name}: must be a number or an array of real numbers, got dtype {raw.dtype}")
    arr = raw.astype(np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name}: must be a scalar or a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: no times given")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name}: contains NaN")
    if np.any(arr < 0):
        raise ValueError(f"{name}: times must be >= 0, got minimum {float(np.min(arr)):g}")
    return np.atleast_1d(arr), arr.ndim == 0


def check_outputs(value: Any, name: str, shape: tuple[int, ...]) -> Array:
    """Outputs or targets of exactly ``shape``; only a scalar is broadcast (f_0 = 0 is written ``0.0``)."""
    if np.ndim(value) == 0:
        return np.full(shape, as_float_array(value, name))
    return as_float_array(value, name, shape=shape)


def check_targets(y: Any, n: int, name: str = "y_train") -> Array:
    """Targets (n, c) matching a kernel of size n."""
    arr = as_float_array(y, name, ndim=2)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: has {arr.shape[0]} rows but the kernel is {n} x {n}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: has no output columns")
    return arr


def check_cross_kernel(k: Any, n: int, name: str = "k_test_train", rows: int | None = None) -> Array:
    """A test-train kernel block (m, n); with ``rows`` the exact m."""
    arr = as_float_array(k, name, ndim=2)
    if arr.shape[1] != n or (rows is not None and arr.shape[0] != rows):
        expected = f"({'m' if rows is None else rows}, {n})"
        raise ValueError(f"{name}: expected shape {expected} to match the other kernel blocks, got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: has no rows (no test points)")
    return arr


def check_finite_result(value: Array, name: str, times: Array, evals: Array | None = None) -> Array:
    """Refuse a non-finite prediction (T, ...) with the first time, and mode, where it overflowed.

    ``value`` is (T, n, ...) per time; with ``evals`` its axis 1 is the eigenmode.
    """
    finite = np.isfinite(value)
    if finite.all():
        return value
    t_idx = int(np.argmax(~finite.reshape(finite.shape[0], -1).all(axis=1)))
    where = f"at t = {times[t_idx]:g}"
    if evals is not None and value.ndim >= 2:
        bad_modes = ~finite[t_idx].reshape(finite.shape[1], -1).all(axis=1)
        mode = int(np.argmax(bad_modes))
        where += f", eigenmode {mode} (eigenvalue {evals[mode]:.6g})"
    raise ValueError(
        f"{name}: the prediction overflowed {where}; the way out: smaller learning_rate x t or "
        f"a rescaled kernel (divide it by s, multiply the learning rate by s)"
    )
