"""Depth 1 with L2 is ridge regression (`derivations/deep_linear.md`, DL9).

For L = 1, L(W) + (λ/2)‖W‖² is a quadratic with minimizer

    W* = Yᵀ X (XᵀX + Nλ I)⁻¹,

and gradient flow follows W(t) = W* + (W_0 − W*) exp(−η t (XᵀX/N + λ I)).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from ntk_l2.deep_linear.network import check_data


def ridge_solution(x: ArrayLike, y: ArrayLike, l2: float) -> NDArray[np.float64]:
    """W* = Yᵀ X (XᵀX + Nλ I)⁻¹, (d_out, d_in)."""
    x, y = check_data(x, y)
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2: must be finite and >= 0, got {l2!r}")
    gram = x.T @ x + y.size * l2 * np.eye(x.shape[1])
    return scipy.linalg.solve(gram, x.T @ y, assume_a="sym").T


def ridge_flow(
    w0: ArrayLike, x: ArrayLike, y: ArrayLike, l2: float, learning_rate: float, t: float
) -> NDArray[np.float64]:
    """W(t) of gradient flow for L = 1: W* + (W_0 − W*) expm(−η t (XᵀX/N + λ I))."""
    x, y = check_data(x, y)
    w_star = ridge_solution(x, y, l2)
    a = x.T @ x / y.size + l2 * np.eye(x.shape[1])
    return w_star + (np.asarray(w0, np.float64) - w_star) @ scipy.linalg.expm(-learning_rate * t * a)
