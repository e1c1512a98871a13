"""Layer imbalance of deep linear networks (`derivations/deep_linear.md`, DL1–DL3).

For matrix layers the imbalance between layers l and l+1 is

    D_l = W_{l+1}ᵀ W_{l+1} − W_l W_lᵀ      (d_l × d_l, l = 1 … L−1),

and for a scalar chain the pairwise differences w_i² − w_j². Under gradient
flow on any loss of the product P alone, every D_l is conserved (DL1); with L2
it decays as exp(−2ηλt) (DL2); a gradient-descent step with a non-zero
residual contracts it (DL3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.deep_linear.network import chain, product

Array = NDArray[np.float64]


def imbalance(weights: Sequence[ArrayLike]) -> tuple[Array, ...]:
    """(D_1, …, D_{L−1}), D_l = W_{l+1}ᵀW_{l+1} − W_l W_lᵀ, batched over leading axes."""
    ws = [np.asarray(w, np.float64) for w in weights]
    return tuple(np.swapaxes(b, -1, -2) @ b - a @ np.swapaxes(a, -1, -2) for a, b in zip(ws[:-1], ws[1:], strict=False))


def imbalance_norm(weights: Sequence[ArrayLike]) -> Array:
    """‖D‖ = (Σ_l ‖D_l‖_F²)^{1/2}, the size of the imbalance (0 for L = 1)."""
    parts = imbalance(weights)
    lead = np.asarray(weights[0]).shape[:-2]
    if not parts:
        return np.zeros(lead)
    return np.sqrt(sum(np.sum(d**2, axis=(-2, -1)) for d in parts))


def pairwise_imbalance(values: ArrayLike) -> Array:
    """w_i² − w_j² for a scalar chain (…, L) → (…, L, L)."""
    sq = np.asarray(values, np.float64) ** 2
    return sq[..., :, None] - sq[..., None, :]


def balanced_chain(target: float, depth: int) -> Array:
    """The balanced point of the scalar minima manifold Π w_i = target: every ``|w_i| = |target|^{1/L}``,
    the sign carried by the first weight."""
    if depth < 1:
        raise ValueError(f"depth: must be >= 1, got {depth!r}")
    w = np.full(depth, abs(float(target)) ** (1.0 / depth))
    w[0] *= -1.0 if target < 0 else 1.0
    return w


def rebalance(weights: Sequence[ArrayLike]) -> tuple[Array, ...]:
    """A scalar chain moved along its orbit of equal product to the balanced point (same product)."""
    p = float(np.asarray(product(weights)).reshape(-1)[0])
    return chain(balanced_chain(p, len(weights)))
