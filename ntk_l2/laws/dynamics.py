"""One interface for what the laws run on: the kernel theory or a finite network.

A `Dynamics` answers the two questions every law asks, whatever produces the answer:

- `Dynamics.accuracy_curve` (η, λ, steps): the test accuracy of training at constant (η, λ),
  recorded at the given steps (a `Curve`): what a sweep, t* and the optimal λ need;
- `Dynamics.run_l2_controller` (η, steps, λ_0, a `Controller`): training while a controller
  reads the training metrics at record steps and sets λ from then on (a `ControlledRun`):
  what AutoL2 needs.

`ntk_l2.laws.theory.KernelDynamics` answers them with the exact discrete map of the
infinite-width network, `ntk_l2.laws.finite.FiniteDynamics` by training a network. The
laws (`ntk_l2.laws.sweep`, `ntk_l2.laws.autol2`) are written once, against this protocol.
A dynamics has members: the seeds of a finite network, the NNGP draws of single networks
in theory, or the one mean prediction; curves average over them, a controller sets λ for
each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: ``controller(step, train_error, loss, l2) -> l2``: called at every record step with the
#: training error (1 − train accuracy), data loss and λ of each member (arrays of shape
#: (members,)), it returns the λ of each member from this step on.
Controller = Callable[[int, Array, Array, Array], Array]

__all__ = ["ControlledRun", "Controller", "Curve", "Dynamics"]


@dataclass(frozen=True, eq=False)
class Curve:
    """Test accuracy at constant (η, λ) at recorded ``steps`` (shape (R,)), averaged over the
    members that did not diverge (``acc_test``, (R,); NaN where none is defined).
    ``diverged``: some member diverged. ``arrays``: per-member records worth keeping with the
    run (e.g. ``acc_test`` of shape (members, R)); not part of the law."""

    steps: NDArray[np.int64]
    acc_test: Array
    diverged: bool = False
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ControlledRun:
    """Training under a λ controller, recorded at ``steps`` (R,): per member and record
    (shape (members, R)) the λ in force (``l2``, after the controller's decision at that
    record), ``acc_test``, ``acc_train`` and the data loss ``loss_train``; ``diverged``: some
    member diverged."""

    steps: NDArray[np.int64]
    l2: Array
    acc_test: Array
    acc_train: Array
    loss_train: Array
    diverged: bool = False


class Dynamics(Protocol):
    """What the laws run on (see the module docstring)."""

    def accuracy_curve(self, learning_rate: float, l2: float, steps: NDArray[np.int64]) -> Curve:
        """Train at constant η = ``learning_rate``, λ = ``l2`` up to ``steps[-1]``; the test
        accuracy at each of ``steps`` (increasing, from 0). A finite network's curve ends at
        the record where its last member diverged."""
        ...

    def run_l2_controller(
        self, learning_rate: float, steps: int, l2_init: float, record: NDArray[np.int64], controller: Controller
    ) -> ControlledRun:
        """Train ``steps`` steps at η = ``learning_rate`` from λ = ``l2_init``, recording at
        ``record`` (increasing, from 0, ending at ``steps``); at each record the controller
        sets each member's λ from then on."""
        ...
