"""The JAX engine every MSE solver shares: float64 inside, one ``predict_fn``.

For MSE the dynamics are linear, so in the eigenbasis of Θ_0 (z = Vᵀ(f_X − c),
y = Vᵀ(Y − c) for an output offset c) every solver reduces to per-mode
coefficients (`derivations/continuous_time.md`, C6–C7; `discrete_time.md`, D4;
`momentum.md`, M4):

    z(t)   = P(t) z(0) + Q(t) y
    f_*(t) = c_* + E(t) (f_*(0) − c_*) + Θ_*X V (W^z(t) z(0) + W^y(t) y).

A solver supplies ``coefficients(times) -> ModeCoefficients`` written in
``jax.numpy``; `make_predict_fn` turns it into a neural-tangents style
``predict_fn`` that works eagerly and under ``jax.jit``, ``jax.vmap``,
``jax.grad`` and ``jax.jacfwd`` (the momentum gradient flow, whose integrator is
differentiated by its adjoint, supports reverse mode only: ``jax.jacrev``).

**Precision and dtype policy.** Solvers compute in float64 whatever the global
``jax_enable_x64`` setting when called eagerly (an ``enable_x64`` scope inside).
A JAX trace cannot switch precision inside (JAX 0.5 refuses to lower float64
operations in a float32 trace), so under ``jit``/``vmap``/``grad`` the solvers
ask for x64 to be on around the transformation and say so in one line
otherwise. Results are ``jax.Array``s of dtype ``jnp.result_type`` of the
array inputs (kernel, targets, initial outputs, test kernel, offsets; Python
numbers do not count), with integers counting as float64: float32 inputs give
float32 results (computed in float64, rounded once), float64 inputs float64.

**Validation.** Concrete inputs are validated exactly as before
(`ntk_l2.theory.validation`, V1–V4), and non-finite results are refused naming
the time and the eigenmode. Traced values (inside a transformation) cannot be
inspected: their shapes and dtypes are checked, their values are not, and a
non-finite result comes back as inf/NaN.

**Output kernels.** A kernel of shape (n, n, c, c), as neural-tangents returns
with ``trace_axes=()``, is the (n·c) × (n·c) matrix Θ[(i,a),(j,b)]; the solvers
then work with one output column of n·c entries (N = n·c either way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from numpy.typing import ArrayLike

from ntk_l2.common import memory as _memory
from ntk_l2.theory import validation as _checks
from ntk_l2.theory._assembly import assemble, distinct
from ntk_l2.theory._inputs import (
    Layout,
    _factorize,
    _points,
    _targets,
    cross_kernel,
    is_traced,
    outputs,
    times_array,
)
from ntk_l2.theory.eigen import KernelEigen

Scalar = Any  # a Python float (concrete) or a traced float64 scalar
JArray = jax.Array

X64_MESSAGE = (
    "ntk_l2 solvers compute in float64, and JAX cannot switch precision inside a trace: enable x64 around "
    "the transformation (jax.config.update('jax_enable_x64', True), or call it inside "
    "`with jax.experimental.enable_x64():`)"
)


@contextlib.contextmanager
def float64(*inputs: Any) -> Iterator[None]:
    """Compute in float64: an ``enable_x64`` scope, refused (one line) for traced inputs without x64."""
    if is_traced(*inputs) and not jax.config.jax_enable_x64:
        raise ValueError(X64_MESSAGE)
    with enable_x64():
        yield


@dataclass(frozen=True)
class OutputFormat:
    """How results leave a solver (J3): their dtype, and JAX or NumPy arrays.

    JAX arrays when any input is one (or is traced), else NumPy arrays: a float64 JAX
    array handed to a caller without x64 would silently drop to float32 at its next
    operation, a NumPy array never does.
    """

    dtype: Any
    as_jax: bool

    def __call__(self, value: Any) -> Any:
        if self.as_jax or is_traced(value):
            return jnp.asarray(value).astype(self.dtype)
        return np.asarray(value).astype(self.dtype, copy=False)


def result_dtype(*values: Any, also: tuple[Any, ...] = ()) -> OutputFormat:
    """The output format of the policy above: dtype = result_type of the array ``values`` (integers as
    float64; Python numbers do not count), JAX arrays out when any of ``values`` or of ``also`` (times,
    η, λ: they decide the array type, not the dtype) is a JAX array."""
    dtypes, as_jax = [], any(isinstance(v, jax.Array) for v in jax.tree_util.tree_leaves(also))
    for v in values:
        if isinstance(v, OutputFormat):
            dtypes.append(np.dtype(v.dtype))
            as_jax = as_jax or v.as_jax
            continue
        as_jax = as_jax or isinstance(v, jax.Array)
        dtype = getattr(v, "dtype", None)
        if dtype is None or isinstance(v, KernelEigen):
            continue
        dtypes.append(np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64))
    return OutputFormat(np.result_type(*dtypes) if dtypes else np.dtype(np.float64), as_jax)


def scalar(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> Scalar:
    """A concrete scalar checked by `_checks.check_scalar` (a float), or a traced one as float64 (its shape
    and dtype checked; its value cannot be)."""
    if not is_traced(value):
        return _checks.check_scalar(value, name, positive=positive, nonnegative=nonnegative)
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name}: must be a scalar, got shape {tuple(jnp.shape(value))}")
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise ValueError(f"{name}: must be a real number, got dtype {value.dtype}")
    return jnp.asarray(value, jnp.float64)


def concrete(value: Scalar) -> float | None:
    """The value of a concrete scalar, None for a traced one: for branches that need a value."""
    return None if is_traced(value) else float(value)


@dataclass(frozen=True)
class Problem:
    """Everything a solver needs, checked: the factorization (float64; V is a NumPy array when the kernel
    was concrete, which every jax.numpy operation accepts), targets, η, λ, k."""

    evals: JArray
    evecs: Any
    y: JArray  # (rows, columns), float64
    eta: Scalar
    lam: Scalar
    degree: int
    layout: Layout
    dtype: OutputFormat
    traced_kernel: bool

    @property
    def norm(self) -> float:
        """N = Y.size, the normalization of the loss ‖f − Y‖²/(2N)."""
        return float(self.layout.n * self.layout.c)

    def to_eigenbasis(self, x: JArray) -> JArray:
        """Vᵀ x for x of shape (rows, ...)."""
        return jnp.tensordot(self.evecs.T, x, axes=1)


def solver_inputs(
    k_train_train: Any, y_train: ArrayLike, learning_rate: Any, l2: Any, degree: Any, kernel_name: str = "k_train_train"
) -> Problem:
    """Check the common solver arguments and factorize the kernel (inside a float64 scope).

    ``k_train_train`` is an (n, n) or (n, n, c, c) kernel, or a `KernelEigen` computed once
    (`ntk_l2.theory.eigh_kernel`) and shared by many solvers.
    """
    with float64(k_train_train, y_train, learning_rate, l2):
        y, n, c = _targets(y_train, _points(k_train_train))
        evals, evecs, full, traced = _factorize(k_train_train, n, c, kernel_name)
        eta = scalar(learning_rate, "learning_rate", positive=True)
        lam = scalar(l2, "l2", nonnegative=True)
    layout = Layout(n=n, c=c, full=full)
    return Problem(
        evals=evals,
        evecs=evecs,
        y=layout.flatten(y),
        eta=eta,
        lam=lam,
        degree=_checks.check_degree(degree),
        layout=layout,
        dtype=result_dtype(k_train_train, y_train, also=(learning_rate, l2)),
        traced_kernel=traced,
    )


@dataclass(frozen=True)
class ModeCoefficients:
    """P, Q, W^z, W^y of shape (T, rows) and E of shape (T,), float64 (possibly traced)."""

    p: JArray
    q: JArray
    wz: JArray
    wy: JArray
    e: JArray


def refuse_non_finite(value: Any, name: str, times: JArray, evals: JArray | None = None) -> None:
    """Raise the one-line ``ValueError`` of `_checks.check_finite_result` when a concrete result is not finite.

    ``value`` is an array, or a tuple of (T, rows) arrays checked as one stack (built only to
    name the time and the eigenmode of a failure)."""
    parts = value if isinstance(value, tuple) else (value,)
    if is_traced(parts, times):
        return
    arrays = [np.asarray(x) for x in parts]
    if all(np.isfinite(a).all() for a in arrays):
        return
    arr = arrays[0] if len(arrays) == 1 else np.stack(np.broadcast_arrays(*arrays), axis=-1)
    _checks.check_finite_result(arr, name, np.asarray(times), None if evals is None else np.asarray(evals))


def make_predict_fn(
    problem: Problem,
    coefficients: Callable[[JArray], ModeCoefficients],
    parse_times: Callable[[Any], tuple[JArray, bool]] = times_array,
) -> Callable[..., Any]:
    """Build ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None, *,
    offset_train=None, offset_test=None)`` from a solver's coefficients.

    Returns ``fx_train`` ((n, c), or (T, n, c) for an array ``t``), or
    ``(fx_train, fx_test)`` when ``fx_test_0`` or ``k_test_train`` is given.
    """
    lay = problem.layout

    def predict_fn(
        t: Any = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = None,
        k_test_train: Any = None,
        *,
        offset_train: Any = None,
        offset_test: Any = None,
    ):
        args = (
            t,
            fx_train_0,
            fx_test_0,
            k_test_train,
            offset_train,
            offset_test,
            problem.eta,
            problem.lam,
            problem.evals,
            problem.y,
        )
        with float64(*args):
            times, is_scalar = parse_times(t)
            times, order = distinct(times)
            f0 = outputs(fx_train_0, "fx_train_0", lay, lay.n)
            c_train = outputs(0.0 if offset_train is None else offset_train, "offset_train", lay, lay.n)
            with_test = fx_test_0 is not None or k_test_train is not None
            if with_test:  # validate everything before the solve
                if k_test_train is None:
                    raise ValueError("k_test_train: required to predict test outputs")
                k_xt, m = cross_kernel(k_test_train, lay)
                fs0 = outputs(0.0 if fx_test_0 is None else fx_test_0, "fx_test_0", lay, m)
                c_test = outputs(0.0 if offset_test is None else offset_test, "offset_test", lay, m)
            m_rows = k_xt.shape[0] if with_test else 0
            n_rows, cols = lay.rows, lay.columns
            _memory.check_fits(
                8.0 * times.size * (4 * n_rows + 3 * (n_rows + m_rows) * cols),
                f"predicting {times.size} time(s) for {lay.n} + {m_rows} points x {lay.c} outputs",
                "t",
            )
            dtype = result_dtype(
                problem.dtype,
                fx_train_0,
                fx_test_0,
                k_test_train,
                offset_train,
                offset_test,
                also=(t, problem.eta, problem.lam),
            )
            co = coefficients(times)
            refuse_non_finite((co.p, co.q), "fx_train", times, problem.evals)
            if with_test:
                refuse_non_finite((co.wz, co.wy, co.e[:, None]), "fx_test", times, problem.evals)
            test = (k_xt, fs0, c_test) if with_test else None
            fx_train, fx_test = assemble(
                problem, co, f0, c_train, test, numpy=not (dtype.as_jax or is_traced(co.p, co.wz, f0, c_train, test))
            )
            refuse_non_finite(fx_train, "fx_train", times)
            fx_train = dtype(lay.unflatten(fx_train[0] if is_scalar else fx_train[order]))
            if not with_test:
                return fx_train
            refuse_non_finite(fx_test, "fx_test", times)
            fx_test = dtype(lay.unflatten(fx_test[0] if is_scalar else fx_test[order], m))
            return fx_train, fx_test

    return predict_fn
