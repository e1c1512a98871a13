"""Architectures built with neural-tangents `stax`, with their homogeneity degree.

A network f(θ; x) is *positively homogeneous of degree k* in its trainable
parameters θ when, for every c > 0, ::

    f(cθ) = c^k f(θ),   hence   θ·∇f = k f   and   Θ(cθ) = c^{2(k−1)} Θ(θ).

With the NTK parameterization W = σ_w ω/√fan_in, b = σ_b β, trainable
θ = (ω, β), a network with L weight layers, no biases and a positively
homogeneous activation (ReLU, leaky ReLU, identity) has k = L. Biases or
erf/tanh break homogeneity and the degree is reported as None: builders never
claim a wrong k. Derivation: `derivations/homogeneity.md`; numerical checks:
`tests/test_arch.py`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.networks.nt import nt, stax

__all__ = [
    "Architecture",
    "ACTIVATIONS",
    "HOMOGENEOUS_ACTIVATIONS",
    "fully_connected",
    "convolutional",
    "measure_degree",
    "check_degree",
]

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "linear", "identity", "erf", "tanh")
HOMOGENEOUS_ACTIVATIONS: frozenset[str] = frozenset({"relu", "leaky_relu", "linear", "identity"})
_PARAMETERIZATIONS = ("ntk", "standard")
_PADDINGS = ("SAME", "VALID", "CIRCULAR")
_DENSE_PROBE_SHAPE = (16,)  # probe input for dense nets built without input_dim


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A stax network together with its homogeneity degree.

    Attributes:
      init_fn, apply_fn, kernel_fn: the neural-tangents triple.
      degree: k with f(cθ) = c^k f(θ) for all c > 0, or None when the network
        is not positively homogeneous in its trainable parameters.
      name: short human-readable description.
      input_shape: per-example input shape, e.g. (64,) or (8, 8, 1); None for a
        dense network that accepts any input dimension.
    """

    init_fn: Callable[..., Any]
    apply_fn: Callable[..., Any]
    kernel_fn: Callable[..., Any]
    degree: int | None
    name: str
    input_shape: tuple[int, ...] | None

    @property
    def homogeneous(self) -> bool:
        """Whether the network is positively homogeneous (degree is not None)."""
        return self.degree is not None

    @property
    def triple(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """`(init_fn, apply_fn, kernel_fn)`, as returned by `stax.serial`."""
        return self.init_fn, self.apply_fn, self.kernel_fn

    def ntk(self, x1: Any, x2: Any = None) -> np.ndarray:
        """The infinite-width NTK Θ(x1, x2) (Θ(x1, x1) when x2 is None), computed in float64.

        The theory runs in float64 (`derivations/conventions.md`); a kernel computed in float32
        is symmetric only to ~1e-7 relative and fails the solvers' input checks.
        """
        return self._kernel(x1, x2, "ntk")

    def nngp(self, x1: Any, x2: Any = None) -> np.ndarray:
        """The NNGP kernel K(x1, x2): the covariance of the outputs at initialization, float64."""
        return self._kernel(x1, x2, "nngp")

    def _kernel(self, x1: Any, x2: Any, name: str) -> np.ndarray:
        with enable_x64():
            a = jnp.asarray(np.asarray(x1, np.float64))
            b = None if x2 is None else jnp.asarray(np.asarray(x2, np.float64))
            return np.asarray(self.kernel_fn(a, b, name), np.float64)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        """Unpack like a stax triple: `init_fn, apply_fn, kernel_fn = arch`."""
        return iter(self.triple)


def _check_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_shape(name: str, shape: Sequence[int], ndim: int) -> None:
    if len(tuple(shape)) != ndim or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise ValueError(f"{name} must be {ndim} positive integers, got {shape!r}")


def _check_std(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not math.isfinite(value) or value <= 0:
        hint = " (use None for no bias)" if allow_none else ""
        raise ValueError(f"{name} must be a finite float > 0{hint}, got {value!r}")


def _common_checks(
    activation: str, W_std: float, b_std: float | None, readout_W_std: float, parameterization: str, leaky_slope: float
) -> str:
    act = activation.lower() if isinstance(activation, str) else activation
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    _check_std("W_std", W_std)
    _check_std("b_std", b_std, allow_none=True)
    _check_std("readout_W_std", readout_W_std)
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {_PARAMETERIZATIONS}, got {parameterization!r}")
    if not math.isfinite(leaky_slope):
        raise ValueError(f"leaky_slope must be finite, got {leaky_slope!r}")
    return act


def _activation_layer(act: str, leaky_slope: float) -> Any:
    if act == "relu":
        return stax.Relu()
    if act == "leaky_relu":
        return stax.LeakyRelu(leaky_slope)
    if act in ("linear", "identity"):
        return stax.Identity()
    if act == "erf":
        return stax.Erf()
    # tanh: stax 0.6.5 has no closed-form Tanh; Gauss-Hermite quadrature
    # (deg=25, nt's recommended start for smooth activations; its warning says so).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numerical Activation Layer")
        return stax.ElementwiseNumerical(jnp.tanh, deg=25, df=lambda x: 1.0 - jnp.tanh(x) ** 2)


def _assemble(
    hidden: list[Any],
    readout: list[Any],
    n_weight_layers: int,
    act: str,
    b_std: float | None,
    name: str,
    input_shape: tuple[int, ...] | None,
) -> Architecture:
    """Serialize the layers; degree = number of weight layers iff homogeneous."""
    homogeneous = b_std is None and act in HOMOGENEOUS_ACTIVATIONS
    degree = n_weight_layers if homogeneous else None
    name += "" if b_std is None else "-bias"
    return Architecture(*stax.serial(*hidden, *readout), degree=degree, name=name, input_shape=input_shape)


def fully_connected(
    depth: int,
    width: int = 512,
    out_dim: int = 10,
    *,
    activation: str = "relu",
    W_std: float = math.sqrt(2.0),
    b_std: float | None = None,
    readout_W_std: float = 1.0,
    leaky_slope: float = 0.1,
    parameterization: str = "ntk",
    input_dim: int | None = None,
) -> Architecture:
    """`depth` hidden layers Dense(width) + activation, then Dense(out_dim).

    Each Dense computes W h + b with W = σ_w ω/√fan_in and b = σ_b β in the
    NTK parameterization; trainable θ = (ω, β) ~ N(0, 1). Without biases and
    with relu / leaky_relu / linear, f(cθ) = c^k f(θ) with k = depth + 1,
    θ·∇f = k f and Θ(cθ) = c^{2(k−1)} Θ(θ) (see `derivations/homogeneity.md`,
    `tests/test_arch.py`); otherwise the degree is None.

    Args:
      depth: number of hidden layers (>= 1).
      width: hidden width (>= 1).
      out_dim: number of outputs (>= 1).
      activation: one of `ACTIVATIONS`.
      W_std: σ_w of the hidden layers; √2 preserves the ReLU forward variance.
      b_std: σ_b of every layer's bias; None (default) builds bias-free layers.
      readout_W_std: σ_w of the readout; 1.0 gives O(1) outputs at init and
        does not change the degree.
      leaky_slope: negative-side slope of "leaky_relu".
      parameterization: "ntk" (default) or "standard".
      input_dim: input dimension, recorded as `input_shape`; None = any.

    Returns:
      An `Architecture` with the stax triple and the degree k (or None).
    """
    for arg, value in (("depth", depth), ("width", width), ("out_dim", out_dim)):
        _check_int(arg, value)
    if input_dim is not None:
        _check_int("input_dim", input_dim)
    act = _common_checks(activation, W_std, b_std, readout_W_std, parameterization, leaky_slope)
    hidden = []
    for _ in range(depth):
        hidden += [
            stax.Dense(width, W_std=W_std, b_std=b_std, parameterization=parameterization),
            _activation_layer(act, leaky_slope),
        ]
    readout = [stax.Dense(out_dim, W_std=readout_W_std, b_std=b_std, parameterization=parameterization)]
    return _assemble(
        hidden,
        readout,
        depth + 1,
        act,
        b_std,
        f"fc-d{depth}-w{width}-{act}",
        None if input_dim is None else (int(input_dim),),
    )


def convolutional(
    depth: int,
    channels: int = 64,
    out_dim: int = 10,
    *,
    filter_shape: tuple[int, int] = (3, 3),
    activation: str = "relu",
    W_std: float = math.sqrt(2.0),
    b_std: float | None = None,
    readout_W_std: float = 1.0,
    leaky_slope: float = 0.1,
    padding: str = "SAME",
    parameterization: str = "ntk",
    input_shape: tuple[int, int, int] = (8, 8, 1),
    strides: tuple[int, int] = (1, 1),
) -> Architecture:
    """`depth` × [Conv(channels, filter_shape) + activation], Flatten, Dense(out_dim).

    Inputs are NHWC; `input_shape` is the per-example (H, W, C). The degree
    rule and equations are those of `fully_connected`: without biases and with
    a positively homogeneous activation, f(cθ) = c^k f(θ) with k = depth + 1
    (Flatten has no parameters), Θ(cθ) = c^{2(k−1)} Θ(θ).

    Args:
      depth: number of convolutional layers (>= 1).
      channels: channels of every convolution (>= 1).
      out_dim: number of outputs (>= 1).
      filter_shape: spatial filter shape, positive integers.
      activation, W_std, b_std, readout_W_std, leaky_slope, parameterization:
        as in `fully_connected`.
      padding: "SAME", "VALID" or "CIRCULAR".
      input_shape: per-example (height, width, channels).
      strides: spatial strides of every convolution (positive integers).

    Returns:
      An `Architecture` with the stax triple and the degree k (or None).
    """
    for arg, value in (("depth", depth), ("channels", channels), ("out_dim", out_dim)):
        _check_int(arg, value)
    _check_shape("filter_shape", filter_shape, 2)
    _check_shape("strides", strides, 2)
    _check_shape("input_shape", input_shape, 3)
    padding = padding.upper() if isinstance(padding, str) else padding
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    act = _common_checks(activation, W_std, b_std, readout_W_std, parameterization, leaky_slope)
    hidden = []
    for _ in range(depth):
        hidden += [
            stax.Conv(
                channels,
                tuple(filter_shape),
                strides=tuple(int(v) for v in strides),
                padding=padding,
                W_std=W_std,
                b_std=b_std,
                parameterization=parameterization,
            ),
            _activation_layer(act, leaky_slope),
        ]
    readout = [stax.Flatten(), stax.Dense(out_dim, W_std=readout_W_std, b_std=b_std, parameterization=parameterization)]
    return _assemble(
        hidden, readout, depth + 1, act, b_std, f"conv-d{depth}-c{channels}-{act}", tuple(int(d) for d in input_shape)
    )


def _close(a: jax.Array, b: jax.Array, rtol: float) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return bool(np.all(np.isfinite(a))) and float(np.max(np.abs(a - b))) <= rtol * scale


def measure_degree(
    init_fn: Callable[..., Any],
    apply_fn: Callable[..., Any],
    input_shape: Sequence[int],
    *,
    key: jax.Array | None = None,
    scales: Sequence[float] = (0.5, 2.0, 3.0),
    n_points: int = 4,
    rtol: float = 1e-6,
) -> int | None:
    """Numerically measure the homogeneity degree k of a stax network.

    On random parameters θ and `n_points` random inputs, in float64 (the global
    precision setting is restored on exit), checks for every c in `scales`::

        f(cθ) = c^k f(θ),   θ·∇f(θ) = k f(θ),   Θ(cθ) = c^{2(k−1)} Θ(θ),

    with Θ the empirical NTK (all output axes kept). k is estimated from the
    output norms at the scale farthest from 1 and rounded to an integer.

    Args:
      init_fn, apply_fn: the stax pair.
      input_shape: per-example input shape, e.g. (16,) or (8, 8, 1).
      key: PRNG key for θ and inputs; defaults to `jax.random.PRNGKey(0)`.
      scales: positive factors c ≠ 1 to test.
      n_points: number of random inputs.
      rtol: relative tolerance of every check (max-norm).

    Returns:
      The integer k if every check holds, else None. A departure from
      homogeneity below `rtol` (e.g. biases with b_std ≲ 1e-7) is not seen.
    """
    _check_int("n_points", n_points)
    if not scales or any(not (c > 0) or c == 1 for c in scales):
        raise ValueError(f"scales must be positive and != 1, got {scales!r}")
    key = jax.random.PRNGKey(0) if key is None else key
    with enable_x64():
        k_params, k_x = jax.random.split(key)
        _, params = init_fn(k_params, (-1, *input_shape))
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        x = jax.random.normal(k_x, (n_points, *input_shape), jnp.float64)

        def f(p: Any) -> jax.Array:
            return apply_fn(p, x)

        def scaled(c: float) -> Any:
            return jax.tree_util.tree_map(lambda p: c * p, params)

        f0 = f(params)
        norm0 = float(jnp.linalg.norm(f0))
        if not math.isfinite(norm0) or norm0 == 0.0:
            return None
        c_far = max(scales, key=lambda c: abs(math.log(c)))
        k_hat = math.log(float(jnp.linalg.norm(f(scaled(c_far)))) / norm0) / math.log(c_far)
        if not math.isfinite(k_hat):
            return None
        k = round(k_hat)
        if not all(_close(f(scaled(c)), c**k * f0, rtol) for c in scales):
            return None
        euler = jax.jvp(f, (params,), (params,))[1]  # θ·∇f
        if not _close(euler, k * f0, rtol):
            return None
        ntk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
        ntk0 = ntk_fn(x, None, params)
        if not all(_close(ntk_fn(x, None, scaled(c)), c ** (2 * (k - 1)) * ntk0, rtol) for c in scales):
            return None
    return k


def check_degree(arch: Architecture, *, key: jax.Array | None = None, input_shape: Sequence[int] | None = None) -> None:
    """Raise ValueError unless `measure_degree` confirms `arch.degree` exactly.

    A claimed k must verify f(cθ) = c^k f(θ), θ·∇f = k f and
    Θ(cθ) = c^{2(k−1)} Θ(θ); a claimed None must measure as None.

    Args:
      arch: the architecture to check.
      key: PRNG key passed to `measure_degree`.
      input_shape: per-example probe shape; defaults to `arch.input_shape`,
        or (16,) for a dense network built without `input_dim`.
    """
    shape = input_shape or arch.input_shape or _DENSE_PROBE_SHAPE
    measured = measure_degree(arch.init_fn, arch.apply_fn, shape, key=key)
    if measured != arch.degree:
        raise ValueError(f"{arch.name}: claimed degree {arch.degree}, measured {measured}")
