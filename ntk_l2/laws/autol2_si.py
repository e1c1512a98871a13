"""AutoL2 for scale-invariant networks: λ raised while the effective learning rate is too low.

In a layer followed by a normalization the output does not depend on the weights' norm, so L2
cannot regularize the function through it: it shrinks ‖w‖ and raises the effective learning
rate η/‖w‖² (`derivations/autol2_si.md`, SA1). L2 at constant η is then gradient descent at an
exponentially growing learning rate (Li & Arora, 2020; SA2), λ sets how fast it grows, and the
angular step tends to √(2ηλ) after ~1/(ηλ) steps (SA3). The plain AutoL2 (`ntk_l2.laws.autol2`),
which only lowers λ, slows exactly the growth that makes such a network train.

This rule (`AutoL2SIConfig`, applied by one `AutoL2SIRule` per member) reads only the training
metric and loss (a `ntk_l2.laws.dynamics.Controller` sees no weight norms) and has two phases:

- *raise*: on a plateau of the metric, the effective learning rate is too low for progress, so
  λ is multiplied by ``factor``, up to the bound ``l2_max`` (SA4);
- a *spike* of the data loss between two checks (a rise by ``spike``×) means the effective learning
  rate crossed the edge of stability: λ is divided by ``factor`` and the bound lowered to it (SA5);
- *settle*: once the metric stops improving with λ at its bound (or from step ``settle_at``), λ is
  divided by ``factor`` on each such plateau, down to ``l2_min``: the equilibrium angular step √(2ηλ) shrinks, and
  the L2 on layers that are not scale-invariant (the readout) relaxes (SA6).

After each change λ is held for ⌈min_wait/(ηλ)⌉ steps, a fraction of the time the new λ needs to
act (SA3). The run (`autol2_si`) and its record are those of AutoL2 (`AutoL2Run`), so it is
compared with constant λ by `ntk_l2.laws.compare_autol2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ntk_l2.laws.autol2 import AutoL2Run
from ntk_l2.laws.dynamics import Dynamics
from ntk_l2.theory.validation import check_scalar

__all__ = ["AutoL2SIConfig", "AutoL2SIRule", "autol2_si"]

METRICS = ("train_error", "loss")


def _positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")


@dataclass(frozen=True)
class AutoL2SIConfig:
    """The raise-then-settle L2 schedule for scale-invariant networks (`derivations/autol2_si.md`, SA4–SA6).

    λ starts at ``l2_init``. Every ``check_every`` steps the metric ("loss": the data loss, or
    "train_error": 1 − train accuracy) is read. A *plateau at tolerance τ*: once ``window`` steps
    have passed since the last change of λ (and its hold), the best value over the last
    ``window`` steps is not below (1 − τ) times the best value before them. Phase *raise*: on a
    plateau at τ = ``tol`` (progress too slow) λ is multiplied by ``factor``, not above the bound
    (``l2_max``, lowered by spikes); with λ at the bound, a plateau at τ = ``settle_tol``
    (progress stopped) starts phase *settle*, where each such plateau divides λ by ``factor``,
    not below ``l2_min``. Phase settle also starts at step ``settle_at`` (None: only at the bound). A
    *spike*: the data loss rises more than ``spike``-fold between consecutive checks (or becomes
    non-finite): λ is divided by ``factor`` and the bound set to the new λ (``math.inf``: off).
    After each change λ is held for ⌈``min_wait``/(ηλ)⌉ steps (`hold_steps`).
    """

    l2_init: float = 0.03
    factor: float = 3.0
    l2_max: float = 1.0
    l2_min: float = 1e-4
    window: int = 200
    check_every: int = 20
    metric: str = "loss"
    tol: float = 0.01
    settle_tol: float = 0.0
    min_wait: float = 0.5
    spike: float = 2.0
    settle_at: int | None = None

    def __post_init__(self) -> None:
        for name in ("l2_init", "l2_max", "l2_min"):
            _positive(getattr(self, name), name)
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor) and self.factor > 1):
            raise ValueError(f"factor: must be finite and > 1, got {self.factor!r}")
        if not self.l2_min <= self.l2_init <= self.l2_max:
            raise ValueError(
                f"l2_init: must be in [l2_min, l2_max] = [{self.l2_min}, {self.l2_max}], got {self.l2_init}"
            )
        for name in ("window", "check_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.check_every > self.window:
            raise ValueError(f"check_every: must be <= window = {self.window}, got {self.check_every}")
        if self.metric not in METRICS:
            raise ValueError(f"metric: must be one of {METRICS}, got {self.metric!r}")
        for name in ("tol", "settle_tol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
                raise ValueError(f"{name}: must be in [0, 1), got {value!r}")
        if not (isinstance(self.min_wait, (int, float)) and math.isfinite(self.min_wait) and self.min_wait >= 0):
            raise ValueError(f"min_wait: must be finite and >= 0 (in units of 1/(ηλ)), got {self.min_wait!r}")
        if not (isinstance(self.spike, (int, float)) and not math.isnan(self.spike) and self.spike > 1):
            raise ValueError(f"spike: must be > 1 (math.inf: no spike test), got {self.spike!r}")
        if self.settle_at is not None and (
            isinstance(self.settle_at, bool) or not isinstance(self.settle_at, (int, np.integer)) or self.settle_at < 0
        ):
            raise ValueError(f"settle_at: must be None or an integer >= 0, got {self.settle_at!r}")

    def hold_steps(self, learning_rate: float, l2: float) -> int:
        """Steps λ is held after it changes to ``l2``: ⌈min_wait/(ηλ)⌉ (SA3: the new λ acts on
        ‖w‖ on the time scale 1/(ηλ))."""
        return int(math.ceil(self.min_wait / (learning_rate * l2))) if self.min_wait > 0 else 0


class AutoL2SIRule:
    """The decisions of `AutoL2SIConfig` for one member trained at η = ``learning_rate``.

    State: ``phase`` ("raise" or "settle"), ``bound`` (the largest λ still allowed: ``l2_max``,
    lowered by spikes) and ``reasons`` (one of "raise", "spike", "settle" per change, in order).
    """

    def __init__(self, config: AutoL2SIConfig, learning_rate: float):
        self.config = config
        self.learning_rate = check_scalar(learning_rate, "learning_rate", positive=True)
        self.phase, self.bound = "raise", config.l2_max
        self.history: list[tuple[int, float]] = []
        self.since, self.hold, self.spike_ready = 0, 0, 0
        self.last_loss = math.nan
        self.reasons: list[str] = []

    def _change(self, step: int, new: float, reason: str) -> float:
        self.since, self.hold = step, self.config.hold_steps(self.learning_rate, new)
        self.history = [h for h in self.history if h[0] == step]
        self.reasons.append(reason)
        return new

    def _plateau(self, step: int, tol: float) -> bool:
        """SA4, SA6: no relative improvement of ``tol`` over the last window since the last change."""
        cfg = self.config
        if step - self.since < max(cfg.window, self.hold):
            return False
        recent = [v for s, v in self.history if s > step - cfg.window]
        before = [v for s, v in self.history if s <= step - cfg.window]
        if not before or not recent:
            return False
        best_before = min(before)
        return min(recent) >= best_before - tol * abs(best_before)

    def next_l2(self, step: int, metric: float, loss: float, l2: float) -> float:
        """Record a check (the metric and the data loss, made under λ = ``l2``) and return the
        λ from now on: divided by ``factor`` on a spike of the loss (SA5), else on a plateau
        multiplied by ``factor`` up to the bound in phase raise (SA4), divided by it down to
        ``l2_min`` in phase settle (SA6), else ``l2``. A NaN metric counts as the worst value."""
        cfg = self.config
        metric = math.inf if math.isnan(metric) else float(metric)
        spiked = not math.isfinite(loss) or (math.isfinite(self.last_loss) and loss > cfg.spike * self.last_loss)
        self.last_loss = float(loss) if math.isfinite(loss) else math.inf
        self.history.append((step, metric))
        if spiked and step >= self.spike_ready and l2 > cfg.l2_min:
            new = max(l2 / cfg.factor, cfg.l2_min)
            self.bound = min(self.bound, new)
            out = self._change(step, new, "spike")
            self.spike_ready = step + self.hold
            return out
        if self.phase == "raise" and cfg.settle_at is not None and step >= cfg.settle_at:
            self.phase = "settle"
        # λ comes back from training in float32: "at the bound" up to its round-off
        raising = self.phase == "raise" and l2 < self.bound * (1 - 1e-6)
        if not self._plateau(step, cfg.tol if raising else cfg.settle_tol):
            return l2
        if raising:
            return self._change(step, min(l2 * cfg.factor, self.bound), "raise")
        self.phase = "settle"
        if l2 <= cfg.l2_min:
            return l2
        return self._change(step, max(l2 / cfg.factor, cfg.l2_min), "settle")


def autol2_si(
    dynamics: Dynamics,
    learning_rate: float,
    steps: int,
    config: AutoL2SIConfig = AutoL2SIConfig(),
    record_every: int | None = None,
) -> AutoL2Run:
    """The raise-then-settle schedule (`derivations/autol2_si.md`, SA4–SA6) for ``steps`` steps at
    η = ``learning_rate`` on ``dynamics``: every member starts at ``config.l2_init`` and follows
    its own metric and loss (`AutoL2SIRule`, checked every ``config.check_every`` steps).
    Recorded at the checks and every ``record_every`` steps (None: at the checks), as `AutoL2Run`
    (``config``: the `AutoL2SIConfig` fields and the per-change reasons under "reasons")."""
    eta = check_scalar(learning_rate, "learning_rate", positive=True)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: must be an integer >= 1, got {steps!r}")
    every = config.check_every if record_every is None else record_every
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"record_every: must be an integer >= 1, got {record_every!r}")
    record = np.union1d(np.arange(0, steps + 1, every), np.arange(0, steps + 1, config.check_every))
    record = np.union1d(record, [steps]).astype(np.int64)
    rules: list[AutoL2SIRule] = []
    changes: list[tuple[int, int, float]] = []
    reasons: list[str] = []

    def controller(step: int, error: NDArray, loss: NDArray, l2: NDArray) -> NDArray:
        if not rules:
            rules.extend(AutoL2SIRule(config, eta) for _ in range(l2.size))
        if step == 0 or step % config.check_every:
            return l2
        metric = error if config.metric == "train_error" else loss
        new = l2.astype(np.float64).copy()
        for i, rule in enumerate(rules):
            new[i] = rule.next_l2(step, float(metric[i]), float(loss[i]), float(l2[i]))
            if new[i] != l2[i]:
                changes.append((int(step), i, float(new[i])))
                reasons.append(rule.reasons[-1])
        return new

    run = dynamics.run_l2_controller(eta, int(steps), config.l2_init, record, controller)
    return AutoL2Run.from_controlled(
        run, changes, learning_rate, {**config.__dict__, "rule": "autol2_si", "reasons": list(reasons)}
    )
