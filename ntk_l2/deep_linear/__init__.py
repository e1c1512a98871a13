"""Deep linear networks: layer imbalance, the two phases of training and flat minima.

Ginsburg (2020), "On regularization of gradient descent, layer imbalance and
flat minima": the baseline where everything can be computed. A deep linear
network of depth L is positively homogeneous of degree L, so its wide limit
is the theory engine at k = L (`ntk_l2.experiments.deep_linear_wide`). Formulas:
`derivations/deep_linear.md`.

May import `ntk_l2.common`, `ntk_l2.theory` and `ntk_l2.finite`; its experiments, which write
files, live in `ntk_l2.experiments.deep_linear`.
"""

from ntk_l2.deep_linear.dynamics import DeepLinearConfig, DeepLinearRun, gradient_descent, gradient_flow
from ntk_l2.deep_linear.flatness import (
    chain_top_eigenvalue_at_minimum,
    distance_to_minima,
    hessian,
    hessian_top_eigenvalue,
    hessian_trace,
)
from ntk_l2.deep_linear.imbalance import balanced_chain, imbalance, imbalance_norm, pairwise_imbalance, rebalance
from ntk_l2.deep_linear.network import (
    DeepLinear,
    chain,
    chain_values,
    least_squares_product,
    loss,
    min_loss,
    product,
    regression_data,
)
from ntk_l2.deep_linear.phases import imbalance_half_time, optimization_phase_end
from ntk_l2.deep_linear.ridge import ridge_flow, ridge_solution

__all__ = [
    "DeepLinear",
    "DeepLinearConfig",
    "DeepLinearRun",
    "balanced_chain",
    "chain",
    "chain_top_eigenvalue_at_minimum",
    "chain_values",
    "distance_to_minima",
    "gradient_descent",
    "gradient_flow",
    "hessian",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "imbalance",
    "imbalance_half_time",
    "imbalance_norm",
    "least_squares_product",
    "loss",
    "min_loss",
    "optimization_phase_end",
    "pairwise_imbalance",
    "product",
    "rebalance",
    "regression_data",
    "ridge_flow",
    "ridge_solution",
]
