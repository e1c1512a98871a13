"""A convolutional network with batch normalization, for finite-width training only.

::

    [Conv(channels, 3×3, strides) → BatchNorm → ReLU] × depth → Flatten → Dense(out_dim)

neural-tangents' `stax` has no batch normalization, and no infinite-width kernel
describes it, so the network is an `(init_fn, apply_fn)` pair built from the
convolution and dense layers of `stax` (same parameterization as
`arch.convolutional`) and `jax.example_libraries.stax.BatchNorm` without learned
scale or shift. BatchNorm normalizes each channel over the batch and spatial
axes of the inputs it is given: training steps use the statistics of the
(full or mini) batch, and outputs on a test set use that set's own statistics
(no running averages; with 1,000 test images they match the training set's to
about 3%). Every convolution is followed by a normalization, so the output is
unchanged when the convolution weights are scaled: it is homogeneous of degree
1 (the readout) in all parameters, and L2 on the convolutions only raises their
effective learning rate (`derivations/laws.md`, L5: layers of degree 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from jax.example_libraries import stax as jstax

from ntk_l2.networks.nt import stax


def convolutional_batchnorm(
    depth: int,
    channels: int = 16,
    out_dim: int = 10,
    *,
    strides: tuple[int, int] = (2, 2),
    W_std: float = math.sqrt(2.0),
    readout_W_std: float = 1.0,
    parameterization: str = "ntk",
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The (init_fn, apply_fn) pair of the network above (NHWC inputs)."""
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth: must be an integer >= 1, got {depth!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels: must be an integer >= 1, got {channels!r}")
    layers = []
    for _ in range(depth):
        conv = stax.Conv(
            channels,
            (3, 3),
            strides=tuple(strides),
            padding="SAME",
            W_std=W_std,
            b_std=None,
            parameterization=parameterization,
        )
        layers += [conv[:2], jstax.BatchNorm(axis=(0, 1, 2), center=False, scale=False), stax.Relu()[:2]]
    layers += [
        stax.Flatten()[:2],
        stax.Dense(out_dim, W_std=readout_W_std, b_std=None, parameterization=parameterization)[:2],
    ]
    return jstax.serial(*layers)
