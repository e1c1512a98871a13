"""Eigendecomposition of the training kernel: the one O(n³) step of every solver.

Θ_0 = V diag(μ) Vᵀ, μ ≥ 0 (round-off negatives clipped, real negatives
rejected). Everything else is diagonal in this basis
(`derivations/continuous_time.md`, section 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from ntk_l2.common.memory import check_fits
from ntk_l2.theory.validation import check_eigenvalues, check_kernel, input_eps

Array = NDArray[np.float64]


@dataclass(frozen=True)
class KernelEigen:
    """Θ_0 = V diag(μ) Vᵀ with μ ≥ 0, ascending.

    Attributes:
      evals: (n,) eigenvalues μ.
      evecs: (n, n) orthonormal eigenvectors V (columns).
    """

    evals: Array
    evecs: Array

    @property
    def size(self) -> int:
        return int(self.evals.shape[0])

    def to_eigenbasis(self, x: Array) -> Array:
        """Vᵀ x for x of shape (n, ...)."""
        return np.tensordot(self.evecs.T, x, axes=1)

    def from_eigenbasis(self, z: Array) -> Array:
        """V z for z of shape (..., n, c): the inverse of `to_eigenbasis`."""
        return apply_left(self.evecs, z)


def apply_left(matrix: Array, stack: Array) -> Array:
    """matrix @ stack[i] for a stack (..., n, c), as one matrix product.

    Folding the leading axes into the columns turns T thin products into a
    single (m, n) x (n, T·c) GEMM, several times faster than a batched matmul.
    NumPy arrays stay in NumPy; anything else (JAX arrays, tracers) goes through jax.numpy.
    """
    if stack.ndim == 2:
        return matrix @ stack
    xp = np if isinstance(stack, np.ndarray) and isinstance(matrix, np.ndarray) else jnp
    lead, (n, c) = stack.shape[:-2], stack.shape[-2:]
    folded = xp.moveaxis(stack.reshape(-1, n, c), 0, 1).reshape(n, -1)  # (n, T·c)
    out = (matrix @ folded).reshape(matrix.shape[0], -1, c)
    return xp.moveaxis(out, 1, 0).reshape(*lead, matrix.shape[0], c)


def eigh_kernel(k_train_train: ArrayLike, name: str = "k_train_train") -> KernelEigen:
    """Validate and diagonalize a PSD kernel (LAPACK ``syevd``, float64).

    Symmetry and definiteness are held to tolerances scaled to the precision the
    kernel arrived in (`ntk_l2.theory.validation`): a float32 kernel of deficient rank passes.
    """
    n = int(np.shape(k_train_train)[0]) if np.ndim(k_train_train) == 2 else 0
    check_fits(8.0 * 4 * n * n, f"the eigendecomposition of a {n} x {n} kernel", name)
    kernel = check_kernel(k_train_train, name)
    # kernel is symmetric, so its transpose is the same matrix in Fortran order: LAPACK works on it without a copy
    evals, evecs = scipy.linalg.eigh(kernel.T, driver="evd", check_finite=False, overwrite_a=True)
    return KernelEigen(evals=check_eigenvalues(evals, name, input_eps(k_train_train)), evecs=evecs)
