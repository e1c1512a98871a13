"""The initial outputs of single networks: draws from the NNGP.

At initialization a wide network's outputs on the training and test points are a Gaussian
process: (f_X(0), f_*(0)) ~ N(0, K) for the joint NNGP K of the (n + m) points, independently
for each of the c outputs (`derivations/laws.md`, L1 "Single networks"). Predictions for single networks
start from such draws; the mean prediction starts from f_0 = 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.theory.validation import check_scalar

__all__ = ["sample_initial_outputs"]


def sample_initial_outputs(
    nngp: ArrayLike, n_train: int, n_outputs: int, n_samples: int, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """S = ``n_samples`` draws of (f_X(0), f_*(0)), shapes (S, n, c) and (S, m, c).

    ``nngp`` is the joint (n + m) × (n + m) NNGP of the training points (first ``n_train``)
    and the test points. Each draw is f = V diag(√max(ν, 0)) ξ with K = V diag(ν) Vᵀ and
    ξ ~ N(0, I) of shape (n + m, c), so Cov(f) = K for each output (eigenvalues below zero by
    round-off are clipped). The same ``seed`` gives the same draws.
    """
    k = np.asarray(nngp, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"nngp: expected a square matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("nngp: has non-finite entries")
    if not 1 <= int(n_train) <= k.shape[0]:
        raise ValueError(f"n_train: must be in [1, {k.shape[0]}] (the NNGP's size), got {n_train!r}")
    if int(n_samples) < 1:
        raise ValueError(f"init_samples: must be >= 1 to draw initial outputs (0: the mean), got {n_samples}")
    c = int(check_scalar(n_outputs, "n_outputs", positive=True))
    rng = np.random.default_rng(seed)
    evals, evecs = np.linalg.eigh(k)
    root = evecs * np.sqrt(np.clip(evals, 0.0, None))
    draws = np.einsum("ij,sjc->sic", root, rng.standard_normal((int(n_samples), len(evals), c)))
    return draws[:, : int(n_train)], draws[:, int(n_train) :]
