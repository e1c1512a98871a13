"""The inputs every MSE solver shares, checked and shaped (`derivations/engine.md`, J1–J2).

Concrete values are validated by `ntk_l2.theory.validation` (V1–V4); traced values (inside
``jax.jit``, ``jax.vmap``, ``jax.grad``) have only their shapes and dtypes checked. An
(n, n, c, c) kernel becomes the (n·c) × (n·c) matrix Θ[(i,a),(j,b)] (`Layout`, `full_to_matrix`);
the training kernel is factorized once (`ntk_l2.theory.eigen.eigh_kernel`) or given as a
`KernelEigen`. The engine (`ntk_l2.theory._engine`) builds its ``Problem`` and ``predict_fn`` on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.theory import validation as _checks
from ntk_l2.theory.eigen import KernelEigen, eigh_kernel

JArray = jax.Array


def is_traced(*values: Any) -> bool:
    """True when any leaf of ``values`` is a JAX tracer (inside jit, vmap, grad, ...)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(values))


@dataclass(frozen=True)
class Layout:
    """How outputs map to the kernel's rows: (n, c) outputs, and whether the kernel is full (n·c rows)."""

    n: int
    c: int
    full: bool

    @property
    def rows(self) -> int:
        return self.n * self.c if self.full else self.n

    @property
    def columns(self) -> int:
        return 1 if self.full else self.c

    def flatten(self, f: JArray) -> JArray:
        """(..., n, c) outputs to the solver's (..., rows, columns)."""
        return f.reshape(*f.shape[:-2], self.rows, self.columns) if self.full else f

    def unflatten(self, f: JArray, points: int | None = None) -> JArray:
        """The solver's (..., rows, columns) back to (..., points, c)."""
        points = self.n if points is None else points
        return f.reshape(*f.shape[:-2], points, self.c) if self.full else f


def full_to_matrix(kernel: Any) -> Any:
    """(n, m, c, c) output kernel Θ[i, j, a, b] to the (n·c, m·c) matrix Θ[(i,a),(j,b)]."""
    n, m, c, _ = kernel.shape
    lib = jnp if isinstance(kernel, jax.Array) else np
    return lib.transpose(kernel, (0, 2, 1, 3)).reshape(n * c, m * c)


def _targets(y_train: Any, n: int | None) -> tuple[JArray, int, int]:
    if is_traced(y_train):
        if jnp.ndim(y_train) != 2 or (n is not None and y_train.shape[0] != n):
            raise ValueError(
                f"y_train: expected shape ({n if n is not None else 'n'}, c), got {tuple(jnp.shape(y_train))}"
            )
        return jnp.asarray(y_train, jnp.float64), int(y_train.shape[0]), int(y_train.shape[1])
    if np.ndim(y_train) != 2:
        raise ValueError(f"y_train: expected a 2-D array (n, c), got shape {np.shape(y_train)}")
    y = _checks.check_targets(y_train, int(np.shape(y_train)[0]) if n is None else n)
    return jnp.asarray(y, jnp.float64), y.shape[0], y.shape[1]


def _points(kernel: Any) -> int | None:
    """n from a well-formed (n, n) or (n, n, c, c) kernel, so that targets of another length are
    blamed on ``y_train``; None when the kernel's own shape is wrong (then it is blamed)."""
    if isinstance(kernel, KernelEigen):
        return None
    shape = tuple(np.shape(kernel))
    if (len(shape) == 2 and shape[0] == shape[1]) or (
        len(shape) == 4 and shape[0] == shape[1] and shape[2] == shape[3]
    ):
        return int(shape[0]) or None
    return None


def _factorize(kernel: Any, layout_n: int, c: int, name: str) -> tuple[JArray, JArray, bool, bool]:
    """(evals, evecs, full, traced) of a (n, n) or (n, n, c, c) kernel, or of a given `KernelEigen`."""
    if isinstance(kernel, KernelEigen):
        evals = _checks.as_float_array(kernel.evals, f"{name} (KernelEigen.evals)", ndim=1)
        size = evals.shape[0]
        if size not in (layout_n, layout_n * c):
            raise ValueError(
                f"{name}: a factorization of size {size} does not match {layout_n} training points "
                f"(expected {layout_n}, or {layout_n * c} for an (n, n, c, c) kernel)"
            )
        evecs = _checks.as_float_array(kernel.evecs, f"{name} (KernelEigen.evecs)", shape=(size, size))
        if np.any(evals < 0):
            raise ValueError(
                f"{name}: a KernelEigen needs eigenvalues >= 0 (as eigh_kernel returns), got {float(np.min(evals)):.6g}"
            )
        return jnp.asarray(evals), evecs, size != layout_n, False
    shape = tuple(np.shape(kernel))
    full = len(shape) == 4
    expected = (layout_n, layout_n, c, c) if full else (layout_n, layout_n)
    if shape != expected:
        raise ValueError(
            f"{name}: expected shape {expected if full else (layout_n, layout_n)} "
            f"(or ({layout_n}, {layout_n}, {c}, {c}) with output axes), got {shape}"
        )
    if is_traced(kernel):
        matrix = full_to_matrix(jnp.asarray(kernel, jnp.float64)) if full else jnp.asarray(kernel, jnp.float64)
        evals, evecs = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
        return jnp.maximum(evals, 0.0), evecs, full, True
    if full:
        raw = _checks.as_float_array(kernel, name, ndim=4)
        eig = eigh_kernel(full_to_matrix(raw), name)
    else:
        eig = eigh_kernel(kernel, name)
    return jnp.asarray(eig.evals), eig.evecs, full, False  # V stays in NumPy: no device copy of n² numbers


def times_array(t: Any, name: str = "t") -> tuple[JArray, bool]:
    """Times as float64 (T,), and whether a scalar was given: checked when concrete (≥ 0, not NaN)."""
    if is_traced(t):
        if jnp.ndim(t) > 1:
            raise ValueError(f"{name}: must be a scalar or a 1-D array, got shape {tuple(jnp.shape(t))}")
        return jnp.atleast_1d(jnp.asarray(t, jnp.float64)), jnp.ndim(t) == 0
    times, is_scalar = _checks.check_times(np.inf if t is None else t, name)
    return jnp.asarray(times, jnp.float64), is_scalar


def outputs(value: Any, name: str, layout: Layout, points: int) -> JArray:
    """Initial outputs or offsets of shape (points, c) (a scalar broadcasts), flattened to the solver's layout."""
    shape = (points, layout.c)
    if is_traced(value):
        if jnp.ndim(value) != 0 and tuple(jnp.shape(value)) != shape:
            raise ValueError(f"{name}: expected shape {shape} or a scalar, got {tuple(jnp.shape(value))}")
        arr = jnp.broadcast_to(jnp.asarray(value, jnp.float64), shape)
    else:
        arr = jnp.asarray(_checks.check_outputs(value, name, shape))
    return arr.reshape(points * layout.c, 1) if layout.full else arr


def cross_kernel(
    k_test_train: Any, layout: Layout, name: str = "k_test_train", rows: int | None = None
) -> tuple[JArray, int]:
    """Θ_*X as an (m, n) or, for an (m, n, c, c) kernel, an (m·c, n·c) float64 matrix (NumPy when concrete); and m."""
    shape = tuple(np.shape(k_test_train))
    if layout.full:
        if len(shape) != 4 or shape[1:] != (layout.n, layout.c, layout.c) or (rows is not None and shape[0] != rows):
            raise ValueError(
                f"{name}: with an (n, n, c, c) training kernel expected shape "
                f"({rows if rows is not None else 'm'}, {layout.n}, {layout.c}, {layout.c}), got {shape}"
            )
        if is_traced(k_test_train):
            return full_to_matrix(jnp.asarray(k_test_train, jnp.float64)), shape[0]
        raw = _checks.as_float_array(k_test_train, name, ndim=4)
        return full_to_matrix(raw), shape[0]
    if is_traced(k_test_train):
        if len(shape) != 2 or shape[1] != layout.n or (rows is not None and shape[0] != rows):
            raise ValueError(f"{name}: expected shape ({rows if rows is not None else 'm'}, {layout.n}), got {shape}")
        return jnp.asarray(k_test_train, jnp.float64), shape[0]
    k_xt = _checks.check_cross_kernel(k_test_train, layout.n, name, rows=rows)
    return k_xt, k_xt.shape[0]
