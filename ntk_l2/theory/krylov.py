"""Block Lanczos for the training kernel: predictions from matrix-vector products alone.

Implements (`derivations/large.md`, K1–K5). The starting block B = [Y, f_X(0)] (the c target
columns and the initial outputs, when not zero) spans the space every prediction is built
from: f_X(t) and f_*(t) depend on Θ_0 only through functions of Θ_0 applied to B (K1). Block
Lanczos with full reorthogonalization builds an orthonormal basis Q (n, r) of the block
Krylov space span{B, Θ_0 B, Θ_0² B, …} and the Rayleigh–Ritz matrix T = Qᵀ Θ_0 Q (K2).
Galerkin projection onto span(Q) is again a kernel problem, with r points (K3):

    kernel (r/n) T,  targets Qᵀ Y,  initial outputs Qᵀ f_X(0),  test kernel (r/n) Θ_*X Q,

whose normalization N' = r·c keeps every rate ημ/N of the original, so every solver of the
engine (closed form, discrete map, momentum) predicts it unchanged; f_X = Q f_X', f_* = f_*'.
The space grows until two successive sizes agree to ``tol`` (relative, at every requested
time, train and test outputs), and that difference is reported as the error estimate of the
prediction (K4): it bounds the error of the smaller space and, as the error falls
geometrically with the size, overestimates the error of the larger one that is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from ntk_l2.theory import validation as _checks
from ntk_l2.theory.operators import checked_product

Array = NDArray[np.float64]
MatMul = Callable[[Array], Array]

EPS = float(np.finfo(np.float64).eps)
DEFLATION_RTOL = 1e-10  # new directions below this fraction of ‖Θ_0‖ are dropped (K2: exhausted space)


@dataclass(frozen=True)
class KrylovSpace:
    """An orthonormal basis of a block Krylov space and the kernel projected on it (K2).

    Attributes:
      basis: Q, (n, r) with orthonormal columns; its first columns span the starting block.
      projected: T = Qᵀ Θ_0 Q, (r, r), symmetric.
      exhausted: True when the space is all of ℝⁿ (an invariant space found earlier is not:
        `BlockLanczos` goes on from a random block); the projection is then a change of basis.
    """

    basis: Array
    projected: Array
    exhausted: bool

    @property
    def size(self) -> int:
        return int(self.basis.shape[1])


class BlockLanczos:
    """Block Lanczos with full reorthogonalization on ``matmul(q) = Θ_0 q`` (K2).

    Each step multiplies the newest block by Θ_0 (one pass over the kernel), orthogonalizes
    the product against the whole basis twice (classical Gram–Schmidt, repeated), records the
    projections as columns of T = Qᵀ Θ_0 Q, and keeps the surviving directions (singular
    values above `DEFLATION_RTOL`·‖T‖) as the next block, orthogonalized once more as unit
    vectors (a residual far smaller than the product it came from, as a tight cluster of
    eigenvalues gives, otherwise keeps ~ε·‖product‖/‖residual‖ of the basis: 2.7e-12 measured).
    When nothing survives (an invariant space) it goes on from a random block. ``space(r)``
    returns the leading r columns.
    """

    def __init__(self, matmul: MatMul, start: Array, capacity: int, name: str = "k_train_train") -> None:
        n = start.shape[0]
        self.name = name
        self._matmul = matmul
        self._q = np.empty((n, max(1, min(capacity, n))))
        self._t = np.zeros((self._q.shape[1], self._q.shape[1]))
        self._size = 0
        self._block = slice(0, 0)
        self._scale = 0.0
        self.exhausted = False  # the space is all of ℝⁿ (or a start block of zeros)
        self.complete = False  # the capacity is reached and every product is known
        self.dropped = 0.0  # the largest direction deflation dropped, relative to ‖T‖ (K4's floor)
        self.restarts = 0  # random blocks added after the space became invariant (K2)
        self._append(start)

    @property
    def size(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return int(self._q.shape[1])

    def _append(self, w: Array) -> None:
        """Add the directions of w (already orthogonal to the basis) that survive deflation."""
        u, s, _ = np.linalg.svd(w, full_matrices=False)
        floor = DEFLATION_RTOL * self._scale if self._size else 0.0  # relative to ‖T‖, not to this block
        keep = int(np.count_nonzero(s > max(floor, np.finfo(float).tiny)))
        if keep < s.size and self._size:
            self.dropped = max(self.dropped, float(s[keep]) / max(self._scale, np.finfo(float).tiny))
        keep = min(keep, self.capacity - self._size)
        if keep == 0 and self._size and self._size < self.capacity:
            # an invariant space (K2): go on from random directions, so that the next, larger space
            # measures what the dropped residual still couples (K4) instead of claiming exactness
            self.restarts += 1
            rng = np.random.default_rng(self.restarts)
            u = rng.standard_normal((w.shape[0], min(w.shape[1], self.capacity - self._size)))
            keep = u.shape[1]
        if keep == 0:
            self.exhausted = True
            self._block = slice(self._size, self._size)
            return
        new = u[:, :keep]
        if self._size:  # directions far below the residual's scale lose orthogonality in the projection:
            basis = self._q[:, : self._size]  # one more pass on the unit vectors restores it to round-off
            new = np.linalg.qr(new - basis @ (basis.T @ new))[0]
        self._q[:, self._size : self._size + keep] = new
        self._block = slice(self._size, self._size + keep)
        self._size += keep

    def step(self) -> None:
        """One block step: Θ_0 times the newest block, projected out twice, deflated, appended.

        At full capacity the product of the last block still fills its columns of T, and no
        block is appended (``complete``)."""
        if self.exhausted or self.complete:
            return
        block, basis = self._block, self._q[:, : self._size]
        w = checked_product(
            self._matmul(np.ascontiguousarray(self._q[:, block])), (len(basis), block.stop - block.start), self.name
        )
        w = np.array(w, order="C")
        coeffs = basis.T @ w
        w -= basis @ coeffs
        again = basis.T @ w
        w -= basis @ again
        coeffs += again
        self._t[: self._size, block] = coeffs
        self._t[block, : self._size] = coeffs.T
        self._scale = max(self._scale, float(np.max(np.abs(coeffs))) if coeffs.size else 0.0)
        if self._size >= self.capacity:
            self.complete = True
            self.exhausted = self._size >= self._q.shape[0]
            return
        self._append(w)

    def space(self, limit: int | None = None) -> KrylovSpace:
        """The basis and projected kernel of every direction whose product with Θ_0 is known
        (the leading ``limit`` of them, when given).

        The newest block's product is not known yet (its columns of T are empty), so the space
        returned stops before it, unless the space is exhausted or complete.
        """
        known = self._size if self.exhausted or self.complete else self._block.start
        known = known if limit is None else min(known, limit)
        t = self._t[:known, :known]
        return KrylovSpace(self._q[:, :known], 0.5 * (t + t.T), self.exhausted)


def ritz_pairs(
    space: KrylovSpace, name: str = "k_train_train", eps: float = EPS, n: int | None = None
) -> tuple[Array, Array]:
    """Eigenvalues θ ≥ 0 and orthonormal eigenvectors S of T = Qᵀ Θ_0 Q (K3).

    T is positive semi-definite when Θ_0 is; negatives within V2's tolerance for a kernel of ``n``
    points in precision ``eps`` (the dense solver's) are clipped, larger ones are refused naming
    ``name``.
    """
    theta, s = scipy.linalg.eigh(space.projected, driver="evr", check_finite=False)
    top = float(np.max(np.abs(theta))) if theta.size else 0.0
    rtol = _checks.negative_eigenvalue_rtol(eps, space.basis.shape[0] if n is None else n)
    if theta.size and theta[0] < -rtol * top:
        raise ValueError(
            f"{name}: is not positive semi-definite (a Rayleigh quotient of {theta[0]:.6g} < -{rtol:.3g} x the "
            f"largest eigenvalue {top:.6g})"
        )
    return np.maximum(theta, 0.0), s


def start_block(*columns: Array) -> Array | None:
    """B = [Y, f_X(0), …]: the nonzero (n, c) blocks side by side (K1); None when all are zero."""
    parts = [np.asarray(c, np.float64) for c in columns if c is not None and np.any(c)]
    return np.concatenate(parts, axis=1) if parts else None
