"""ntk_l2: training dynamics of wide neural networks under L2 regularization.

Give it a kernel (from neural-tangents or any PSD matrix) and get the predicted
outputs of a wide network trained with learning rate η and L2 strength λ.
Conventions and equations: ``derivations/``.
"""

from ntk_l2 import deep_linear
from ntk_l2.arch import Architecture, check_degree, convolutional, fully_connected, measure_degree
from ntk_l2.data import Dataset, load_cifar10, load_dataset, load_digits, load_mnist
from ntk_l2.metrics import accuracy, mse_loss
from ntk_l2.theory import (
    Gaussian,
    KernelEigen,
    PiecewiseConstant,
    SGDPrediction,
    eigh_kernel,
    gradient_descent_l2_ode,
    gradient_descent_mse_l2,
    gradient_descent_mse_l2_discrete,
    gradient_descent_mse_l2_ensemble,
    gradient_descent_mse_l2_momentum,
    gradient_descent_mse_l2_sgd,
    mode_factors,
    stability_limit,
)

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "Dataset",
    "Gaussian",
    "KernelEigen",
    "PiecewiseConstant",
    "SGDPrediction",
    "accuracy",
    "check_degree",
    "convolutional",
    "deep_linear",
    "eigh_kernel",
    "fully_connected",
    "gradient_descent_l2_ode",
    "gradient_descent_mse_l2",
    "gradient_descent_mse_l2_discrete",
    "gradient_descent_mse_l2_ensemble",
    "gradient_descent_mse_l2_momentum",
    "gradient_descent_mse_l2_sgd",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "measure_degree",
    "mode_factors",
    "mse_loss",
    "stability_limit",
]
