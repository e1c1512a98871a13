"""Infinite-width training dynamics with L2: JAX solvers behind one interface.

Every MSE solver has the same interface: ``solver(k_train_train, y_train,
learning_rate, l2, degree, ...)`` returns ``predict_fn(t, fx_train_0,
fx_test_0, k_test_train)``, like `neural_tangents.predict.gradient_descent_mse`.
The solvers are JAX functions computing in float64 (`_engine`): they work under
``jax.jit``, ``jax.vmap`` and ``jax.grad``, accept (n, n) or (n, n, c, c)
kernels, and accept a `KernelEigen` (`eigh_kernel`) so that many (λ, η) share one
factorization. `ntk_l2.theory.reference` holds the NumPy implementation the
tests compare them with; `gradient_descent_l2_ode` (schedules, cross-entropy) is
a SciPy integrator. For 10^4–10^5 training points, `predict_at_scale` predicts from kernels
given as arrays or as operators read from disk (a Krylov solver from kernel products, or a dense
solver holding the kernel once; `ntk_l2.theory.scale`).

May import `ntk_l2.common` only: the theory knows nothing of networks, data or files.
"""

from ntk_l2.theory.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.discrete import check_discrete_stability, gradient_descent_mse_l2_discrete, stability_limit
from ntk_l2.theory.eigen import KernelEigen, eigh_kernel
from ntk_l2.theory.ensemble import Gaussian, gradient_descent_mse_l2_ensemble
from ntk_l2.theory.modes import mode_factors
from ntk_l2.theory.momentum_flow import gradient_descent_mse_l2_momentum
from ntk_l2.theory.ode import gradient_descent_l2_ode
from ntk_l2.theory.scale import ScalePrediction, TrainingRule, predict_at_scale
from ntk_l2.theory.schedules import PiecewiseConstant
from ntk_l2.theory.sgd import SGDPrediction, gradient_descent_mse_l2_sgd
from ntk_l2.theory.stability import stable_learning_rate

__all__ = [
    "Gaussian",
    "KernelEigen",
    "PiecewiseConstant",
    "SGDPrediction",
    "ScalePrediction",
    "TrainingRule",
    "check_discrete_stability",
    "eigh_kernel",
    "gradient_descent_l2_ode",
    "gradient_descent_mse_l2",
    "gradient_descent_mse_l2_discrete",
    "gradient_descent_mse_l2_ensemble",
    "gradient_descent_mse_l2_momentum",
    "gradient_descent_mse_l2_sgd",
    "mode_factors",
    "predict_at_scale",
    "stability_limit",
    "stable_learning_rate",
]
