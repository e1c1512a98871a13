"""Flatness and distance to the minima of deep linear networks (`derivations/deep_linear.md`, DL4–DL6).

The Hessian is that of the data loss L(W) = ‖X Pᵀ − Y‖²/(2N). Its trace has a
closed form, because f is linear in each layer separately (DL5):

    Tr H = (1/N) Σ_l ‖B_l‖_F² ‖A_l Xᵀ‖_F²,   A_l = W_{l−1}⋯W_1,  B_l = W_L⋯W_{l+1}.

At a minimum of a scalar chain the Hessian is (Σx²/n) g gᵀ with g_i = Π_{j≠i} w_j,
so its top eigenvalue is (Σx²/n) Σ_i Π_{j≠i} w_j², smallest on the manifold
Π w = p at the balanced point (DL4). The top eigenvalue in general comes from
the exact Hessian (small networks) or Lanczos on Hessian-vector products.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla
from jax.experimental import enable_x64
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike, NDArray

from ntk_l2.deep_linear.network import check_data, least_squares_product, loss_jax, partial_products, product

Array = NDArray[np.float64]
EXACT_MAX_PARAMS = 1500  # above this many weights the top eigenvalue uses Lanczos


def _flat_loss(weights, x, y):
    flat, unravel = ravel_pytree(tuple(jnp.asarray(w) for w in weights))
    return flat, (lambda v: loss_jax(unravel(v), jnp.asarray(x), jnp.asarray(y)))


def hessian(weights: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike) -> Array:
    """The exact Hessian of L over all weights (layer-major, row-major order), float64."""
    x, y = check_data(x, y)
    with enable_x64():
        flat, f = _flat_loss([np.asarray(w, np.float64) for w in weights], x, y)
        return np.asarray(jax.hessian(f)(flat))


def hessian_trace(weights: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike) -> Array:
    """Tr H = (1/N) Σ_l ‖B_l‖_F² ‖A_l Xᵀ‖_F² (exact; batched over the weights' leading axes)."""
    x, y = check_data(x, y)
    below, above = partial_products(weights)
    total = 0.0
    for a, b in zip(below, above, strict=False):
        ax = np.einsum("...ij,nj->...ni", a, x)
        total = total + np.sum(b**2, axis=(-2, -1)) * np.sum(ax**2, axis=(-2, -1))
    return np.asarray(total / y.size)


def hessian_top_eigenvalue(
    weights: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike, method: str = "auto", tol: float = 1e-10
) -> float:
    """The largest eigenvalue of H.

    Args:
      method: "exact" (eigvalsh of the full Hessian), "lanczos" (ARPACK on
        Hessian-vector products from JAX, to relative tolerance ``tol``) or
        "auto" (exact up to `EXACT_MAX_PARAMS` weights).
    """
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"method: must be 'auto', 'exact' or 'lanczos', got {method!r}")
    n_params = sum(np.asarray(w).size for w in weights)
    if method == "exact" or (method == "auto" and n_params <= EXACT_MAX_PARAMS):
        return float(np.linalg.eigvalsh(hessian(weights, x, y))[-1])
    x, y = check_data(x, y)
    with enable_x64():
        flat, f = _flat_loss([np.asarray(w, np.float64) for w in weights], x, y)
        hvp = jax.jit(lambda v: jax.jvp(jax.grad(f), (flat,), (v,))[1])
        op = spla.LinearOperator(
            (flat.size, flat.size), matvec=lambda v: np.asarray(hvp(jnp.asarray(v, jnp.float64))), dtype=np.float64
        )
        v0 = np.random.default_rng(0).standard_normal(flat.size)
        return float(spla.eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])


def chain_top_eigenvalue_at_minimum(values: ArrayLike, x_sq_mean: float = 1.0) -> Array:
    """(Σx²/n) Σ_i Π_{j≠i} w_j², the top Hessian eigenvalue of a scalar chain at a minimum (DL4)."""
    w2 = np.asarray(values, np.float64) ** 2
    depth = w2.shape[-1]
    return x_sq_mean * sum(np.prod(np.delete(w2, i, axis=-1), axis=-1) for i in range(depth))


def distance_to_minima(weights: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike) -> float:
    """Distance from W to the manifold of minima {P = P*} to first order: the length of the
    minimal-norm (Gauss–Newton) step δ with J δ = −vec(P − P*), J = ∂vec(P)/∂W (DL6).
    Exact to first order in ‖P − P*‖; 0 on the manifold."""
    x, y = check_data(x, y)
    ws = [np.asarray(w, np.float64) for w in weights]
    delta = (product(ws) - least_squares_product(x, y)).reshape(-1)
    if not np.any(delta):
        return 0.0
    below, above = partial_products(ws)
    # ∂P/∂W_l[a, b] = B_l[:, a] A_l[b, :]: the Jacobian columns of layer l are kron(B_l, A_lᵀ).
    jac = np.concatenate([np.kron(b, a.T) for a, b in zip(below, above, strict=False)], axis=1)
    step = np.linalg.lstsq(jac, delta, rcond=None)[0]
    return float(np.linalg.norm(step))
