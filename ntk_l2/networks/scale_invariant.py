"""Scale-invariant networks: a layer-normalized fully connected network, the mask of the
parameters whose scaling leaves the output unchanged, and a numerical check of that invariance.

::

    Flatten → [Dense(width, no bias) → LayerNorm (no scale/shift) → ReLU] × depth → Dense(out_dim)

LayerNorm standardizes each example's pre-activations over the features,
LN(h) = (h − mean(h))/√(var(h) + ε). With ε = 0 (the default) LN(c h) = LN(h) for c > 0, so
scaling the weights W_l of one hidden layer leaves the output unchanged: f(θ with W_l → cW_l) =
f(θ), the hidden layers are scale-invariant (degree 0), the readout has degree 1
(`derivations/scale_invariant.md`, SI1). The batch-normalized CNN is
`ntk_l2.networks.batchnorm.convolutional_batchnorm` (reused here, not duplicated): its convolutions
are scale-invariant in the same way, up to BatchNorm's ε = 1e-5, whose relative effect
ε/Var(pre-activation) is made negligible in the NTK parameterization by a large ``W_std`` (the
pre-activations scale with W_std, the parameters and the dynamics do not: BN removes the factor).

`scale_invariant_mask` marks the scale-invariant leaves of both networks (all weights but the
readout's); `scale_invariance_error` measures max_c ‖f(c·θ_group) − f(θ)‖/‖f(θ)‖.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import stax as jstax

from ntk_l2.networks.nt import stax

__all__ = [
    "layer_norm",
    "layernorm_fc",
    "scale_invariance_error",
    "scale_invariant_groups",
    "scale_invariant_mask",
]

Params = Any


def layer_norm(epsilon: float = 0.0) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A stax layer LN(h) = (h − mean(h))/√(var(h) + ε) over the last axis, no learned scale or shift.

    With ε = 0, LN(c h) = LN(h) for every c > 0 exactly (`derivations/scale_invariant.md`, SI1).
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon: must be a finite number >= 0, got {epsilon!r}")

    def init_fn(rng: Any, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[()]]:
        return input_shape, ()

    def apply_fn(params: Params, h: Any, **kwargs: Any) -> Any:
        centered = h - jnp.mean(h, axis=-1, keepdims=True)
        return centered * jax.lax.rsqrt(jnp.mean(centered**2, axis=-1, keepdims=True) + epsilon)

    return init_fn, apply_fn


def layernorm_fc(
    depth: int,
    width: int = 256,
    out_dim: int = 10,
    *,
    W_std: float = math.sqrt(2.0),
    readout_W_std: float = 1.0,
    parameterization: str = "ntk",
    epsilon: float = 0.0,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The (init_fn, apply_fn) pair of the layer-normalized network of the module docstring.

    Dense layers are neural-tangents' ``stax.Dense`` without bias (``parameterization`` "ntk" or
    "standard", as in `ntk_l2.networks.batchnorm.convolutional_batchnorm`); inputs of any shape
    are flattened first. The hidden layers are scale-invariant for ε = 0 (SI1).
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth: must be an integer >= 1, got {depth!r}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width: must be an integer >= 1, got {width!r}")
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization: must be 'ntk' or 'standard', got {parameterization!r}")
    layers = [stax.Flatten()[:2]]
    for _ in range(depth):
        dense = stax.Dense(width, W_std=W_std, b_std=None, parameterization=parameterization)
        layers += [dense[:2], layer_norm(epsilon), stax.Relu()[:2]]
    layers.append(stax.Dense(out_dim, W_std=readout_W_std, b_std=None, parameterization=parameterization)[:2])
    return jstax.serial(*layers)


def _weighted_layers(params: Params) -> list[int]:
    """Indices of the layers of a serial network's params that hold at least one array."""
    if not isinstance(params, (list, tuple)):
        raise ValueError(f"params: must be the per-layer list of a serial network, got {type(params).__name__}")
    return [i for i, p in enumerate(params) if jax.tree_util.tree_leaves(p)]


def scale_invariant_mask(params: Params) -> Params:
    """A pytree of bools matching ``params``: True on the leaves of the scale-invariant layers.

    For the serial networks `layernorm_fc` and `ntk_l2.networks.batchnorm.convolutional_batchnorm`,
    every layer with weights except the last (the readout) feeds a normalization, so all its
    leaves are True; the readout's are False (`derivations/scale_invariant.md`, SI1). The mask
    is for optax-style masks (``optax.add_decayed_weights(l2, mask=...)``) and for the functions
    of `ntk_l2.finite.scale_invariant` and `ntk_l2.finite.equilibrium`; check it with
    `scale_invariance_error`.
    """
    layers = _weighted_layers(params)
    if len(layers) < 2:
        raise ValueError(f"params: need at least one hidden layer with weights and a readout, got {len(layers)}")
    readout = layers[-1]
    return [jax.tree_util.tree_map(lambda _, keep=(i != readout): keep, p) for i, p in enumerate(params)]


def scale_invariant_groups(params: Params, mask: Params) -> list[tuple[int, ...]]:
    """The scale-invariant groups: for each layer, the flat indices (in ``tree_leaves(params)``) of its True leaves."""
    leaves = jax.tree_util.tree_leaves(mask)
    if len(leaves) != len(jax.tree_util.tree_leaves(params)):
        raise ValueError("mask: must have one bool per leaf of params")
    groups, start = [], 0
    for p, m in zip(params, mask, strict=True):
        count = len(jax.tree_util.tree_leaves(p))
        chosen = tuple(start + j for j, keep in enumerate(jax.tree_util.tree_leaves(m)) if keep)
        if chosen:
            groups.append(chosen)
        start += count
    return groups


def scale_invariance_error(
    apply_fn: Callable[..., Any],
    params: Params,
    x: Any,
    mask: Params,
    scales: Sequence[float] = (0.1, 0.5, 2.0, 10.0),
) -> float:
    """max over groups G (each layer's masked leaves, and all of them at once) and c in ``scales`` of
    ‖f(θ with θ_G → cθ_G, x) − f(θ, x)‖/‖f(θ, x)‖ (Frobenius norms); 0 for an exactly
    scale-invariant network (`derivations/scale_invariant.md`, SI1)."""
    if not scales or any(not (math.isfinite(c) and c > 0) for c in scales):
        raise ValueError(f"scales: must be finite numbers > 0, got {scales!r}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    groups = scale_invariant_groups(params, mask)
    if not groups:
        raise ValueError("mask: marks no leaf")
    groups.append(tuple(i for g in groups for i in g))
    ref = np.asarray(apply_fn(params, x))
    norm = float(np.linalg.norm(ref))
    worst = 0.0
    for group in groups:
        for c in scales:
            scaled = [c * leaf if i in group else leaf for i, leaf in enumerate(leaves)]
            out = np.asarray(apply_fn(jax.tree_util.tree_unflatten(treedef, scaled), x))
            worst = max(worst, float(np.linalg.norm(out - ref)) / norm)
    return worst
