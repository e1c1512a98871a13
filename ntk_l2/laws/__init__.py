"""The empirical laws of L2 (Lewkowycz & Gur-Ari, 2020): time to best accuracy t*, sweeps over
(λ, η), the optimal λ for a budget and the AutoL2 schedule, from the kernel or from finite
networks. Modules by role: `tstar` (t*, run lengths and summaries), `theory` (sweeps and λ_opt
from the kernel), `finite` (sweeps of finite networks), `autol2` (the AutoL2 rule, in theory
and on finite networks); every public name is exported here. May import `ntk_l2.common`,
`ntk_l2.theory`, `ntk_l2.data`, `ntk_l2.networks` and `ntk_l2.finite`; it writes no files
(`ntk_l2.experiments` does).
"""

from ntk_l2.laws.autol2 import AutoL2Config, autol2_finite, autol2_theory
from ntk_l2.laws.finite import ARCHS, PARAMETERIZATIONS, Compute, FiniteSweepConfig, RunHook, finite_sweep
from ntk_l2.laws.theory import LawProblem, optimal_l2_from_kernel, optimal_l2_from_run, theory_sweep
from ntk_l2.laws.tstar import (
    T_STAR_TOL,
    at_budget,
    log_steps,
    record_steps,
    run_length,
    run_summary,
    steps_to_reach,
    time_to_best,
)

__all__ = [
    "ARCHS",
    "AutoL2Config",
    "Compute",
    "FiniteSweepConfig",
    "LawProblem",
    "PARAMETERIZATIONS",
    "RunHook",
    "T_STAR_TOL",
    "at_budget",
    "autol2_finite",
    "autol2_theory",
    "finite_sweep",
    "log_steps",
    "optimal_l2_from_kernel",
    "optimal_l2_from_run",
    "record_steps",
    "run_length",
    "run_summary",
    "steps_to_reach",
    "theory_sweep",
    "time_to_best",
]
