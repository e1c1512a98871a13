"""The default learning rate: a fraction of the stability limit, with a cap on the decay per step.

The rule of `derivations/finite_width.md` (F4), built on the discrete map's stability limit
(`derivations/discrete_time.md`, D5; with momentum `derivations/momentum.md`, M11 and M6). The
theory-vs-finite-width comparisons (``ntk-l2 compare --lr auto``, the demo) take their η from it.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ntk_l2.theory import validation as _checks
from ntk_l2.theory.discrete import stability_limit

__all__ = ["stable_learning_rate"]


def _check_arguments(n_outputs: Any, fraction: Any, max_decay: Any, momentum: Any, nesterov: Any) -> None:
    """One-line ValueErrors naming the argument, before any work."""
    if isinstance(n_outputs, (bool, np.bool_)) or not isinstance(n_outputs, numbers.Integral) or n_outputs < 1:
        raise ValueError(f"n_outputs: must be an integer >= 1 (N = n·c, the number of outputs), got {n_outputs!r}")
    if not 0.0 < _checks.check_scalar(fraction, "fraction") <= 1.0:
        raise ValueError(f"fraction: must be in (0, 1] (a fraction of the stability limit), got {fraction!r}")
    _checks.check_scalar(max_decay, "max_decay", positive=True)
    if not 0.0 <= _checks.check_scalar(momentum, "momentum") < 1.0:
        raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov: must be True or False, got {nesterov!r}")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov: only meaningful with momentum > 0")


def stable_learning_rate(
    k_train_train: Any,
    n_outputs: int,
    l2: float,
    degree: int,
    fraction: float = 0.5,
    max_decay: float = 0.1,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> float:
    """A default η: ``fraction`` × the discrete-time stability limit of the infinite-width
    kernel, capped so that the effective decay per step stays small (F4):

        η = min(fraction · η_max(μ_max, N, λ, k, β), max_decay · (1 − β)/λ)      (no cap at λ = 0)

    η_max is the limit of eq. D5, η(1 − ηλ)^{k−1}μ_max/N ≤ 1 + (1 − ηλ)^k, at β = 0; with
    momentum β the limit M11, about 2(1 + β)N/μ_max for heavy ball, itself capped where the
    parameter scale would oscillate (M6) (`ntk_l2.theory.discrete.stability_limit`). μ_max is
    the largest eigenvalue of ``k_train_train`` ((n, n)) and N = ``n_outputs`` = n·c.

    The cap keeps the effective decay per step ηλ/(1 − β) ≤ ``max_decay``: a run of
    2(1 − β)/(ηλ) steps is then at least 2/max_decay = 20 steps long, the weights shrink by at
    most 10% per step and the trajectory has enough checkpoints to compare; without it a large
    stability limit gives ηλ near 1 and runs of a handful of steps.

    Bad input (a kernel that is not square, symmetric and finite, λ < 0, a fraction outside
    (0, 1], …) is refused with a one-line ValueError naming the argument.
    """
    _checks.check_kernel(k_train_train, "k_train_train")
    lam = _checks.check_scalar(l2, "l2", nonnegative=True)
    k = _checks.check_degree(degree)
    _check_arguments(n_outputs, fraction, max_decay, momentum, nesterov)
    mu_max = float(np.linalg.eigvalsh(np.asarray(k_train_train, np.float64))[-1])
    eta = fraction * stability_limit(mu_max, float(n_outputs), lam, k, momentum=momentum, nesterov=nesterov)
    return min(eta, max_decay * (1.0 - momentum) / lam) if lam > 0 else eta
