"""The last step of every solver: per-mode coefficients to outputs (`derivations/engine.md`, J1–J3).

f_X = c + V(P z_0 + Q z_y) and f_* = c_* + E(f_*(0) − c_*) + Θ_*X V(W^z z_0 + W^y z_y), with the
large products in NumPy's BLAS when everything is concrete, else in jax.numpy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.theory.eigen import apply_left


def assemble(problem: Any, co: Any, f0: Any, c_train: Any, test: tuple | None, *, numpy: bool) -> tuple[Any, Any]:
    """f_X = c + V(P z_0 + Q y), f_* = c_* + E(f_*(0) − c_*) + Θ_*X V(W^z z_0 + W^y y) (C6–C7, D4, M4).

    With ``numpy`` (every input concrete and the result leaving as NumPy) the products run in
    NumPy's BLAS, faster on CPU than XLA's for these large GEMMs; otherwise in jax.numpy.
    """
    cast = np.asarray if numpy else (lambda a: a)
    evecs = cast(problem.evecs)
    p, q, wz, wy, e = (cast(x) for x in (co.p, co.q, co.wz, co.wy, co.e))
    f0, c_train = cast(f0), cast(c_train)
    z0 = evecs.T @ (f0 - c_train)
    zy = evecs.T @ (cast(problem.y) - c_train)
    with np.errstate(over="ignore", invalid="ignore"):  # refused afterwards, naming time and mode
        fx_train = _plus(c_train, apply_left(evecs, _stack(p, z0, q, zy, numpy)), numpy)
        if test is None:
            return fx_train, None
        k_xt, fs0, c_test = (cast(x) for x in test)
        moved = _test_kernel_times_modes(k_xt, evecs, _stack(wz, z0, wy, zy, numpy))
        if numpy and not (np.any(fs0) or np.any(c_test)):
            return fx_train, moved
        return fx_train, c_test + e[:, None, None] * (fs0 - c_test) + moved


def _stack(p: Any, z0: Any, q: Any, zy: Any, numpy: bool) -> Any:
    """P z_0 + Q z_y over (T, rows, columns). In NumPy a zero z_0 (the usual f(0) = 0) skips its term:
    the same numbers, since the coefficients were checked finite, for less work."""
    if numpy and not np.any(z0):
        return q[..., None] * zy
    return p[..., None] * z0 + q[..., None] * zy


def _plus(offset: Any, moved: Any, numpy: bool) -> Any:
    """offset + moved, skipping a zero offset in NumPy (the same numbers)."""
    return moved if numpy and not np.any(offset) else offset + moved


def distinct(times: Any) -> tuple[Any, Any]:
    """Concrete times: the distinct ones (computed once each, so repeated times give identical
    outputs) and the index that restores the order asked for. Traced times: as they are."""
    if isinstance(times, jax.core.Tracer):
        return times, slice(None)
    values = np.asarray(times)
    if np.all(values[1:] > values[:-1]):  # already distinct and increasing: no reordering copy
        return times, slice(None)
    distinct, inverse = np.unique(values, return_inverse=True)
    return jnp.asarray(distinct), inverse


def _test_kernel_times_modes(k_xt: Any, evecs: Any, stack: Any) -> Any:
    """Θ_*X V s for a stack s (T, rows, columns), in the cheaper association order.

    (Θ_*X V) s costs m·n² + m·n·T·c flops; Θ_*X (V s) costs n²·T·c + m·n·T·c,
    less whenever T·c < m.
    """
    m, n = k_xt.shape[0], evecs.shape[0]
    if stack.size // n < m:
        return apply_left(k_xt, apply_left(evecs, stack))
    return apply_left(k_xt @ evecs, stack)
