"""A network of degree 0: scale-invariant in every trainable parameter, with its infinite-width NTK.

The network (`derivations/degree_zero.md`, Z1–Z2)::

    h = Dense_L(ReLU(Dense_{L−1}(… ReLU(Dense_1(x)) …)))     bias-free, width n, NTK parameterization
    z = LayerNorm(h) = (h − mean(h)) / √(var(h) + ε)           over the n features, no scale/shift
    f = σ_r z R / √n                                           R ~ N(0, 1)^{n×c}, fixed (not trained)

Trainable θ = (ω_1, …, ω_L). h is positively homogeneous in each ω_l separately, and the
LayerNorm divides out its scale, so f(c_1ω_1, …, c_Lω_L) = f(θ) for all c_l > 0 (up to ε = 1e-12
against var(h)): f(cθ) = c⁰f(θ), the package's degree k = 0 (Z1), hence θ·∇f = 0 and
Θ(cθ) = c^{−2}Θ(θ). The readout R is not a parameter at all: it is a constant of ``apply_fn``,
drawn once from ``readout_seed``, so no gradient, no L2 and no NTK term ever touches it.

Its NTK (Z2): neural-tangents' Dense readout gives σ_r²(Θ_z + K_z), the NTK of the hidden
layers plus the readout's own gradient; without training the readout only the first term is
left, Θ = σ_r² Θ_z ⊗ I_c, with Θ_z, K_z the NTK and NNGP of LayerNorm(h) (stax.LayerNorm over the
feature axis, which divides both by √(K_h(x, x)K_h(x', x'))). The output covariance at
initialization is still σ_r² K_z ⊗ I_c (R is random).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.networks.arch import Architecture
from ntk_l2.networks.nt import nt, stax

__all__ = [
    "DegreeZeroKernel",
    "InvarianceCheck",
    "degree_zero_network",
    "fixed_readout",
    "measure_invariance",
    "readout_kernel",
]

_GETS = ("nngp", "ntk")


class DegreeZeroKernel(NamedTuple):
    """The output kernels of `degree_zero_network` without the readout's own term (Z2)."""

    nngp: Any
    ntk: Any


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (0 < value < math.inf):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


def fixed_readout(width: int, out_dim: int, readout_seed: int) -> np.ndarray:
    """R ~ N(0, 1)^{width × out_dim}, drawn with ``jax.random.PRNGKey(readout_seed)`` (float64 NumPy)."""
    _check_int("width", width)
    _check_int("out_dim", out_dim)
    if isinstance(readout_seed, bool) or not isinstance(readout_seed, (int, np.integer)) or readout_seed < 0:
        raise ValueError(f"readout_seed: must be an integer >= 0, got {readout_seed!r}")
    key = jax.random.PRNGKey(int(readout_seed))
    return np.asarray(jax.random.normal(key, (int(width), int(out_dim)), jnp.float32), np.float64)


def readout_kernel(nngp_z: Any, ntk_z: Any, readout_W_std: float) -> DegreeZeroKernel:
    """(K, Θ) = (σ_r² K_z, σ_r² Θ_z): the outputs' NNGP and the NTK of the trainable parameters
    behind a fixed NTK-parameterized readout of σ_w = σ_r (`derivations/degree_zero.md`, Z2).

    A trained readout would add its own gradient, Θ = σ_r²(Θ_z + K_z) as `stax.Dense` computes it.
    """
    _check_positive("readout_W_std", readout_W_std)
    scale = float(readout_W_std) ** 2
    return DegreeZeroKernel(nngp=scale * nngp_z, ntk=scale * ntk_z)


def _body(depth: int, width: int, W_std: float) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """[Dense(width, σ_w) → ReLU] × depth → Dense(width, 1) → LayerNorm over features, no biases."""
    layers: list[Any] = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=W_std), stax.Relu()]
    layers += [stax.Dense(width, W_std=1.0), stax.LayerNorm(axis=-1)]
    return stax.serial(*layers)


def degree_zero_network(
    depth: int = 1,
    width: int = 512,
    out_dim: int = 10,
    *,
    W_std: float = math.sqrt(2.0),
    readout_W_std: float = 0.25,
    readout_seed: int = 0,
    input_dim: int | None = None,
) -> Architecture:
    """The scale-invariant network of the module docstring, as an `Architecture` with degree 0 (Z1).

    ``init_fn``/``apply_fn`` hold and take the trainable weights only (the stax layout of the body:
    L = depth + 1 Dense layers, ω ~ N(0, 1)); ``apply_fn(θ, x)`` returns σ_r LayerNorm(h) R/√n with
    the fixed readout `fixed_readout` (width, out_dim, readout_seed). ``kernel_fn(x1, x2, get)``
    returns the infinite-width kernels of Z2 (`readout_kernel`): ``get`` "ntk", "nngp", or a tuple
    / None for a `DegreeZeroKernel`. Training it with `ntk_l2.finite.train.train` trains θ only,
    and its L2 decays θ only.

    Args:
      depth: number of Dense → ReLU blocks before the last Dense (>= 1).
      width: n, every hidden width and the normalized features (>= 1).
      out_dim: number of outputs c (>= 1).
      W_std: σ_w of the Dense → ReLU blocks (any value: the LayerNorm removes every scale).
      readout_W_std: σ_r of the fixed readout; Θ and K scale as σ_r².
      readout_seed: seed of R.
      input_dim: input dimension, recorded as ``input_shape``; None = any.
    """
    _check_int("depth", depth)
    _check_int("width", width)
    _check_int("out_dim", out_dim)
    _check_positive("W_std", W_std)
    _check_positive("readout_W_std", readout_W_std)
    if input_dim is not None:
        _check_int("input_dim", input_dim)
    readout = fixed_readout(width, out_dim, readout_seed)
    sigma_r = float(readout_W_std)
    init_body, apply_body, kernel_body = _body(int(depth), int(width), float(W_std))

    def apply_fn(params: Any, x: Any, **kwargs: Any) -> Any:
        """f(θ, x) = σ_r LayerNorm(h(θ, x)) R / √n; R is a constant (Z1)."""
        z = apply_body(params, x, **kwargs)
        return (sigma_r / math.sqrt(width)) * (z @ jnp.asarray(readout, z.dtype))

    def init_fn(rng: Any, input_shape: Any) -> tuple[tuple[int, ...], Any]:
        """(output shape, trainable θ): the body's parameters; R is not among them."""
        shape, params = init_body(rng, input_shape)
        return (*tuple(shape)[:-1], int(out_dim)), params

    def kernel_fn(x1: Any, x2: Any = None, get: Any = None, **kwargs: Any) -> Any:
        """Infinite-width (K, Θ) without the readout's own term (Z2), per output (⊗ I_c)."""
        names = (get,) if isinstance(get, str) else (_GETS if get is None else tuple(get))
        if not names or any(n not in _GETS for n in names):
            raise ValueError(f"get: must be 'nngp', 'ntk', a tuple of them or None, got {get!r}")
        body = kernel_body(x1, x2, ("nngp", "ntk"), **kwargs)
        kernel = readout_kernel(body.nngp, body.ntk, sigma_r)
        if isinstance(get, str):
            return getattr(kernel, get)
        return kernel

    name = f"ln-d{depth}-w{width}-readout{sigma_r:g}"
    shape = None if input_dim is None else (int(input_dim),)
    return Architecture(init_fn, apply_fn, kernel_fn, degree=0, name=name, input_shape=shape)


@dataclass(frozen=True)
class InvarianceCheck:
    """Measured homogeneity of a network (`measure_invariance`), every deviation relative (max-norm).

    Attributes:
      degree: k̂ = log(‖f(cθ)‖/‖f(θ)‖)/log c at the scale farthest from 1, not rounded.
      global_scale: max over c of max|f(cθ) − f(θ)| / max|f(θ)|.
      layer_scale: the same with each weight layer scaled by its own random factor in [0.25, 4].
      euler: max|θ·∇f(θ)| / max|f(θ)| (0 for degree 0; θ·∇f = k f).
      kernel_scale: max over c of max|c²Θ(cθ) − Θ(θ)| / max|Θ(θ)| (Θ(cθ) = c^{2(k−1)}Θ(θ) at k = 0).
    """

    degree: float
    global_scale: float
    layer_scale: float
    euler: float
    kernel_scale: float


def _relative(a: Any, b: Any) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def measure_invariance(
    arch: Architecture,
    input_shape: tuple[int, ...],
    *,
    key: Any = None,
    scales: tuple[float, ...] = (0.5, 2.0, 3.0),
    n_points: int = 4,
) -> InvarianceCheck:
    """Measure f(cθ) = f(θ), per-layer invariance, θ·∇f = 0 and Θ(cθ) = c^{−2}Θ(θ) (Z1), in float64.

    `ntk_l2.networks.arch.measure_degree` compares θ·∇f with k f relative to max|k f|, which is 0
    at k = 0, so it cannot confirm degree 0; here every deviation is relative to max|f(θ)| or
    max|Θ(θ)|. On random θ and ``n_points`` random inputs of ``input_shape``; the empirical NTK
    (all output pairs) by `nt.empirical_ntk_fn` with JACOBIAN_CONTRACTION.
    """
    _check_int("n_points", n_points)
    if not scales or any(not (0 < c < math.inf) or c == 1 for c in scales):
        raise ValueError(f"scales: must be positive, finite and != 1, got {scales!r}")
    key = jax.random.PRNGKey(0) if key is None else key
    with enable_x64():
        k_params, k_x, k_layers = jax.random.split(key, 3)
        _, params = arch.init_fn(k_params, (-1, *input_shape))
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        x = jax.random.normal(k_x, (n_points, *input_shape), jnp.float64)

        def f(p: Any) -> Any:
            return arch.apply_fn(p, x)

        def scaled(c: float) -> Any:
            return jax.tree_util.tree_map(lambda p: c * p, params)

        f0 = f(params)
        c_far = max(scales, key=lambda c: abs(math.log(c)))
        degree = math.log(float(jnp.linalg.norm(f(scaled(c_far))) / jnp.linalg.norm(f0))) / math.log(c_far)
        factors = np.exp(np.asarray(jax.random.uniform(k_layers, (len(params),), minval=-1.4, maxval=1.4)))
        per_layer = [
            jax.tree_util.tree_map(lambda p, c=c: c * p, layer) for layer, c in zip(params, factors, strict=True)
        ]
        ntk_fn = nt.empirical_ntk_fn(
            arch.apply_fn, trace_axes=(), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION
        )
        ntk0 = ntk_fn(x, None, params)
        return InvarianceCheck(
            degree=degree,
            global_scale=max(_relative(f(scaled(c)), f0) for c in scales),
            layer_scale=_relative(f(type(params)(per_layer)), f0),
            euler=float(jnp.max(jnp.abs(jax.jvp(f, (params,), (params,))[1])) / jnp.max(jnp.abs(f0))),
            kernel_scale=max(_relative(c**2 * ntk_fn(x, None, scaled(c)), ntk0) for c in scales),
        )
