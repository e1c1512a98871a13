"""Reading the laws off a run's accuracy curve: t*, the run's length and its recorded steps.

- t*: the first recorded step at which test accuracy comes within ``tol`` (0.5 points) of its
  maximum over the run; the law is t* ≈ c/(ηλ), i.e. t*·η·λ ≈ c (`derivations/laws.md`, L1).
- A run of the laws lasts ⌈budget/(ηλ)⌉ steps (and to the budget T = ``budget_step`` if later),
  recorded at log-spaced steps (`log_steps`) that include T.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ntk_l2.finite.train import log_steps

Array = NDArray[np.float64]

#: The paper's tolerance for t*: within half a point of the best accuracy.
T_STAR_TOL = 0.005

__all__ = [
    "T_STAR_TOL",
    "log_steps",
    "record_steps",
    "run_length",
    "steps_to_reach",
    "time_to_best",
]


def time_to_best(steps: ArrayLike, acc: ArrayLike, tol: float = T_STAR_TOL) -> tuple[float, float]:
    """(t*, max accuracy): t* is the first recorded step with acc ≥ max(acc) − tol.

    NaN accuracies (diverged or undefined records) are ignored; all-NaN gives (nan, nan).
    """
    steps, acc = np.asarray(steps, np.float64), np.asarray(acc, np.float64)
    if steps.shape != acc.shape or steps.ndim != 1:
        raise ValueError(f"acc: expected the shape of steps {steps.shape}, got {acc.shape}")
    if not np.any(np.isfinite(acc)):
        return math.nan, math.nan
    best = float(np.nanmax(acc))
    first = int(np.argmax(np.nan_to_num(acc, nan=-np.inf) >= best - tol))
    return float(steps[first]), best


def run_length(budget: float, learning_rate: float, l2: float, budget_step: int | None) -> int:
    """Steps of one run of a sweep: ⌈budget/(ηλ)⌉, or ``budget_step`` (T) if later."""
    last = int(math.ceil(budget / (learning_rate * l2)))
    return last if budget_step is None else max(last, int(budget_step))


def record_steps(last: int, n_records: int, budget_step: int | None) -> NDArray[np.int64]:
    """The steps a run records: 0, about ``n_records`` log-spaced steps up to ``last``, and T = ``budget_step``."""
    return log_steps(last, n_records, () if budget_step is None else (int(budget_step),))


def steps_to_reach(
    steps: Sequence[float], acc: Sequence[float | None], target: float, tol: float = T_STAR_TOL
) -> float:
    """The first step whose accuracy is ≥ target − tol (NaN if never): how AutoL2 is compared
    with the best constant λ."""
    acc_arr = np.array([np.nan if a is None else a for a in acc], np.float64)
    hit = np.nonzero(np.nan_to_num(acc_arr, nan=-np.inf) >= target - tol)[0]
    return float(np.asarray(steps, float)[hit[0]]) if hit.size else math.nan
