"""Predictions from a kernel store (a directory written by ``ntk-l2 kernel``) or, with ``--solver dense``
or ``krylov``, from a kernel ``.npz``: the large-scale path behind ``ntk-l2 predict``.

The store's blocks are read as `ntk_l2.theory.operators.KernelOperator`s (`StoreBlock`): the Krylov
solver multiplies by them tile by tile (or from one copy in memory when that copy takes at most a
third of the memory limit), the dense solver loads the training kernel once and reads the test
kernel by rows (`derivations/large.md`, K6). Output keys: ``times`` (T,), ``fx_train`` (T, n, c),
``fx_test`` (T, m, c) and ``test_accuracy`` (T,) with test data, ``error_estimate`` (T,).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntk_l2.common import memory as _memory
from ntk_l2.common.metrics import accuracy
from ntk_l2.data.kernel_store import KernelStore
from ntk_l2.theory.operators import ArrayKernel, KernelOperator
from ntk_l2.theory.scale import DEFAULT_TOL, SOLVERS, ScalePrediction, TrainingRule, choose_solver, predict_at_scale
from ntk_l2.theory.scale_dense import check_dense_memory
from ntk_l2.theory.scale_krylov import DEFAULT_MAX_SIZE, check_krylov_memory, krylov_bytes

IN_MEMORY_SHARE = 3  # blocks are held in memory for the Krylov products when with the solver they take ≤ 1/3


@dataclass(frozen=True)
class StoreBlock:
    """One block of a kernel store as a `KernelOperator` (reads checked by the store)."""

    store: KernelStore
    name: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.store.shape(self.name)

    def matmul(self, q: np.ndarray) -> np.ndarray:
        return self.store.matmul(self.name, q)

    def row_blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        return self.store.row_blocks(self.name)

    def load(self) -> np.ndarray:
        return self.store.load(self.name)

    @property
    def block_rows(self) -> int:
        """Rows per `row_blocks` chunk: one tile-row."""
        return self.store.tile


def _operators(store: KernelStore, solver: str) -> tuple[KernelOperator, KernelOperator | None]:
    """The training and test blocks for ``solver``. For Krylov both are held in memory when together
    they take at most a third of the limit (a product is then a BLAS call instead of a pass over the
    tiles on disk); otherwise they are read from disk."""
    names = ["ntk_train_train"] + (["ntk_test_train"] if store.n_test else [])
    need = sum(store.nbytes(b) for b in names) + krylov_bytes(
        store.n_train, store.c, store.n_test, 100, DEFAULT_MAX_SIZE
    )
    in_memory = solver == "krylov" and IN_MEMORY_SHARE * need <= _memory.limit_bytes()
    blocks = [ArrayKernel(store.load(b), b) if in_memory else StoreBlock(store, b) for b in names]
    return blocks[0], (blocks[1] if len(blocks) > 1 else None)


@dataclass(frozen=True)
class StoreRequest:
    """What ``predict DIR`` computes: the dynamics, the solver and its tolerance."""

    dynamics: TrainingRule
    solver: str = "auto"
    tol: float = DEFAULT_TOL

    def check(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"--solver: must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.dynamics.momentum and not self.dynamics.discrete:
            raise ValueError("--momentum: at scale, momentum is predicted by the exact map; add --discrete")


def predict_store(
    path: str | os.PathLike, times: np.ndarray, request: StoreRequest, *, progress: bool | None = None
) -> tuple[dict[str, np.ndarray], ScalePrediction]:
    """Mean outputs of the store's training and test points at ``times`` (K1–K7), with accuracy.

    The solver ``auto`` is `ntk_l2.theory.scale.choose_solver` on the store's sizes and the memory
    limit in force. Returns the output arrays by key and the prediction (solver, size, estimate).
    """
    request.check()
    store = KernelStore.open(path)
    y_train, _, _, labels_test = store.targets()
    n, m, c = store.n_train, store.n_test, store.c
    if store.degree is not None and request.dynamics.degree != store.degree:
        raise ValueError(
            f"--degree: the store's network has degree {store.degree} (store.json), got {request.dynamics.degree}"
        )
    if labels_test.size and (labels_test.min() < 0 or labels_test.max() >= c):
        raise ValueError(f"KERNEL: {store.path}: test labels outside 0 … {c - 1}; the store is damaged")
    solver = request.solver
    if solver == "auto":
        solver = choose_solver(n, c, m, len(times))
    if solver == "dense":  # sized before anything is read (the solver checks again, with its operators)
        check_dense_memory(n, c, m, len(times), store.tile)
    else:
        check_krylov_memory(n, c, m, len(times))
    train, test = _operators(store, solver)
    res = predict_at_scale(
        train,
        y_train,
        times,
        request.dynamics,
        k_test_train=test,
        solver=solver,
        tol=request.tol,
        progress=progress,
    )
    out = {"times": res.times, "fx_train": res.fx_train, "error_estimate": res.error_estimate}
    if res.fx_test is not None:
        out.update(fx_test=res.fx_test, test_accuracy=np.asarray(accuracy(res.fx_test, labels_test), np.float64))
    return out, res


def predict_npz_at_scale(
    arrays: dict[str, np.ndarray], times: np.ndarray, request: StoreRequest
) -> tuple[dict[str, np.ndarray], ScalePrediction]:
    """The same for the arrays of a kernel ``.npz`` (``--solver dense`` or ``krylov``): mean outputs only."""
    request.check()
    if "nngp_train_train" in arrays:
        raise ValueError(
            f"--solver: the covariance over initializations (the NNGP blocks) is computed by the engine's "
            f"ensemble solver; drop --solver {request.solver} or the NNGP blocks"
        )
    if np.ndim(arrays["k_train_train"]) != 2:
        raise ValueError(f"--solver: {request.solver} takes (n, n) kernels; drop it for (n, n, c, c) kernels")
    res = predict_at_scale(
        arrays["k_train_train"],
        arrays["y_train"],
        times,
        request.dynamics,
        fx_train_0=arrays.get("fx_train_0", 0.0),
        k_test_train=arrays.get("k_test_train"),
        fx_test_0=arrays.get("fx_test_0"),
        solver=request.solver,
        tol=request.tol,
    )
    out = {"times": res.times, "fx_train": res.fx_train, "error_estimate": res.error_estimate}
    if res.fx_test is not None:
        out["fx_test"] = res.fx_test
    return out, res


def is_kernel_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory, read as a kernel store (`KernelStore.open` says what is
    wrong with one that is not); anything else is read as an ``.npz``."""
    return Path(path).is_dir()
