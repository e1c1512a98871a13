"""Input validation shared by every solver: one message style, one place.

Every check raises ``ValueError`` whose message starts with the argument name,
so the CLI can print it as a one-line error.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# Relative tolerances (with respect to the largest |entry| or the spectral norm).
SYMMETRY_RTOL = 1e-8
NEGATIVE_EIGENVALUE_RTOL = 1e-8


def as_float_array(value: Any, name: str, ndim: int | None = None) -> Array:
    """Convert to a float64 numpy array; reject NaN/inf and wrong rank."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot be read as a float array ({err})") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} NaN or inf value(s)")
    return arr


def check_kernel(k: Any, name: str = "k_train_train") -> Array:
    """A square, symmetric, finite kernel matrix (float64)."""
    arr = as_float_array(k, name, ndim=2)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name}: must be square, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: is empty")
    scale = float(np.max(np.abs(arr)))
    work = arr - arr.T
    asym = float(np.max(np.abs(work)))
    if asym > SYMMETRY_RTOL * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"{name}: must be symmetric, max |K - K^T| = {asym:.3g} "
            f"(> {SYMMETRY_RTOL:g} x max |K| = {scale:.3g})"
        )
    np.add(arr, arr.T, out=work)  # reuse the buffer: (K + Kᵀ)/2, a fresh array
    work *= 0.5
    return work


def check_eigenvalues(evals: Array, name: str = "k_train_train") -> Array:
    """Reject eigenvalues below −1e-8·‖K‖; clip the round-off negatives to 0."""
    norm = float(np.max(np.abs(evals)))
    most_negative = float(np.min(evals))
    if most_negative < -NEGATIVE_EIGENVALUE_RTOL * norm:
        raise ValueError(
            f"{name}: is not positive semi-definite: most negative eigenvalue "
            f"{most_negative:.6g} < -{NEGATIVE_EIGENVALUE_RTOL:g} x ||K|| = {-NEGATIVE_EIGENVALUE_RTOL * norm:.3g}"
        )
    return np.maximum(evals, 0.0)


def check_scalar(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real scalar, optionally > 0 or ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(np.asarray(value).item())
        except (TypeError, ValueError):
            raise ValueError(f"{name}: must be a real number, got {value!r}") from None
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
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be an integer >= 0, got {value!r}")
    if isinstance(value, numbers.Integral):
        k = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        k = int(value)
    else:
        raise ValueError(f"{name}: must be an integer >= 0, got {value!r}")
    if k < 0:
        raise ValueError(f"{name}: must be an integer >= 0, got {k}")
    return k


def check_times(t: Any, name: str = "t") -> tuple[Array, bool]:
    """Times in steps: ≥ 0, not NaN (``np.inf`` allowed: the t → ∞ limit).

    Returns the 1-D array of times and whether ``t`` was a scalar.
    """
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number or an array of numbers, got {t!r}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name}: must be a scalar or a 1-D array, got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name}: contains NaN")
    if np.any(arr < 0):
        raise ValueError(f"{name}: times must be >= 0, got minimum {float(np.min(arr)):g}")
    return np.atleast_1d(arr), arr.ndim == 0


def check_outputs(value: Any, name: str, shape: tuple[int, ...]) -> Array:
    """Outputs or targets of a given shape; a scalar broadcasts."""
    arr = as_float_array(value, name)
    if arr.ndim == 0:
        return np.full(shape, float(arr))
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return arr


def check_targets(y: Any, n: int, name: str = "y_train") -> Array:
    """Targets (n, c) matching a kernel of size n."""
    arr = as_float_array(y, name, ndim=2)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: has {arr.shape[0]} rows but the kernel is {n} x {n}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: has no output columns")
    return arr


def check_cross_kernel(k: Any, n: int, name: str = "k_test_train") -> Array:
    """A test-train kernel block (m, n)."""
    arr = as_float_array(k, name, ndim=2)
    if arr.shape[1] != n:
        raise ValueError(f"{name}: expected shape (m, {n}) to match the training kernel, got {arr.shape}")
    return arr
