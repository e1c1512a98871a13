"""The empirical laws of L2 (Lewkowycz & Gur-Ari, 2020): time to best accuracy t*, sweeps over
(λ, η), the optimal λ for a budget and the AutoL2 schedule, written once against one interface,
`Dynamics`, that the kernel theory (`KernelDynamics`) and finite networks (`FiniteDynamics`)
both implement.

Modules by role: `dynamics` (the interface), `theory` (the kernel problem and its dynamics),
`finite` (the swept network and its dynamics), `tstar` (t*, run lengths and records), `sweep`
(sweeps and the optimal λ), `autol2` (everything AutoL2), `autol2_si` (an AutoL2 for
scale-invariant networks, which can raise λ), `surrogate` (the smooth stand-in for the test
error and its exact gradient), `optimize` (λ, η and a λ schedule by gradient on the kernel),
`schedule` (a λ schedule and training with it); every public name is exported here.
Results are frozen records (`LawRun`, `OptimalL2`, `AutoL2Run`, `AutoL2Comparison`,
`AutoL2Scan`) with ``to_json``. May import `ntk_l2.common`, `ntk_l2.theory`, `ntk_l2.data`,
`ntk_l2.networks` and `ntk_l2.finite`; it writes no files (`ntk_l2.experiments` does).
"""

from ntk_l2.laws.autol2 import (
    AutoL2Comparison,
    AutoL2Config,
    AutoL2Run,
    AutoL2Scan,
    autol2,
    autol2_scan,
    autol2_t_star,
    compare_autol2,
    constant_runs,
)
from ntk_l2.laws.autol2_si import AutoL2SIConfig, AutoL2SIRule, autol2_si
from ntk_l2.laws.dynamics import ControlledRun, Controller, Curve, Dynamics
from ntk_l2.laws.finite import ARCHS, PARAMETERIZATIONS, FiniteDynamics, FiniteSweepConfig
from ntk_l2.laws.optimize import GradientOptimum, LearnedSchedule, learn_schedule, optimal_l2_gradient
from ntk_l2.laws.schedule import L2Schedule, log_segments, run_schedule
from ntk_l2.laws.surrogate import Surrogate
from ntk_l2.laws.sweep import (
    Compute,
    KeepRun,
    LawRun,
    OptimalL2,
    at_budget,
    optimal_l2,
    optimal_l2_from_run,
    sweep,
    theory_sweep,
)
from ntk_l2.laws.theory import KernelDynamics, LawProblem
from ntk_l2.laws.tstar import T_STAR_TOL, log_steps, record_steps, run_length, steps_to_reach, time_to_best

__all__ = [
    "ARCHS",
    "PARAMETERIZATIONS",
    "T_STAR_TOL",
    "AutoL2Comparison",
    "AutoL2Config",
    "AutoL2Run",
    "AutoL2SIConfig",
    "AutoL2SIRule",
    "AutoL2Scan",
    "Compute",
    "ControlledRun",
    "Controller",
    "Curve",
    "Dynamics",
    "FiniteDynamics",
    "FiniteSweepConfig",
    "GradientOptimum",
    "KeepRun",
    "KernelDynamics",
    "L2Schedule",
    "LawProblem",
    "LawRun",
    "LearnedSchedule",
    "OptimalL2",
    "Surrogate",
    "at_budget",
    "autol2",
    "autol2_scan",
    "autol2_si",
    "autol2_t_star",
    "compare_autol2",
    "constant_runs",
    "learn_schedule",
    "log_segments",
    "log_steps",
    "optimal_l2",
    "optimal_l2_from_run",
    "optimal_l2_gradient",
    "record_steps",
    "run_length",
    "run_schedule",
    "steps_to_reach",
    "sweep",
    "theory_sweep",
    "time_to_best",
]
