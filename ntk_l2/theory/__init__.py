"""Infinite-width training dynamics with L2, one module per solver.

Every solver has the same interface: ``solver(k_train_train, y_train,
learning_rate, l2, degree)`` returns ``predict_fn(t, fx_train_0, fx_test_0,
k_test_train)``, like `neural_tangents.predict.gradient_descent_mse`.
"""

from ntk_l2.theory.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.theory.eigen import KernelEigen, eigh_kernel
from ntk_l2.theory.ensemble import Gaussian, gradient_descent_mse_l2_ensemble
from ntk_l2.theory.modes import mode_factors
from ntk_l2.theory.ode import gradient_descent_l2_ode
from ntk_l2.theory.schedules import PiecewiseConstant

__all__ = [
    "Gaussian",
    "KernelEigen",
    "PiecewiseConstant",
    "eigh_kernel",
    "gradient_descent_l2_ode",
    "gradient_descent_mse_l2",
    "gradient_descent_mse_l2_discrete",
    "gradient_descent_mse_l2_ensemble",
    "mode_factors",
    "stability_limit",
]
