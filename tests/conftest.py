"""Shared fixtures: small random PSD kernels with a joint train/test structure."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every compiled XLA program holds a few memory mappings of its machine code (measured: ~3 per
    program), and the suite compiles thousands (hypothesis draws new shapes). One process then
    reaches the kernel's limit of 65,530 mappings and XLA's compiler crashes with a segmentation
    fault (seen at ~98% of the full suite). The programs of one module are not reused by the next.
    """
    yield
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()


@dataclass(frozen=True)
class Problem:
    k_train_train: np.ndarray
    k_test_train: np.ndarray
    k_test_test: np.ndarray
    y_train: np.ndarray
    fx_train_0: np.ndarray
    fx_test_0: np.ndarray


def make_problem(n: int = 24, m: int = 8, c: int = 3, seed: int = 0, scale: float = 1.0) -> Problem:
    """A joint PSD kernel from random features, split into train/test blocks."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n + m, 2 * (n + m)))
    k = scale * feats @ feats.T / feats.shape[1]
    return Problem(
        k_train_train=k[:n, :n],
        k_test_train=k[n:, :n],
        k_test_test=k[n:, n:],
        y_train=rng.normal(size=(n, c)),
        fx_train_0=rng.normal(size=(n, c)),
        fx_test_0=rng.normal(size=(m, c)),
    )


@pytest.fixture
def problem() -> Problem:
    return make_problem()


def relative_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="session")
def mnist_dir():
    """Directory of the real MNIST files, from NTK_L2_MNIST_DIR (set by .ci/run)."""
    path = os.environ.get("NTK_L2_MNIST_DIR")
    if not path or not os.path.isdir(path):
        pytest.skip("NTK_L2_MNIST_DIR is not set to a directory holding the MNIST IDX files")
    return path
