"""ntk_l2: training dynamics of wide neural networks under L2 regularization.

Give it a kernel (from neural-tangents or any PSD matrix) and get the predicted
outputs of a wide network trained with learning rate η and L2 strength λ.
Conventions and equations: ``derivations/``.

The public names are loaded on first use (PEP 562): ``import ntk_l2`` imports
neither JAX nor neural-tangents nor TensorFlow; ``ntk_l2.gradient_descent_mse_l2``
imports the theory (JAX), ``ntk_l2.fully_connected`` neural-tangents. Subpackages
(``ntk_l2.theory``, ``ntk_l2.deep_linear``, …) are reachable as attributes too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ntk_l2._version import __version__ as __version__  # re-exported

# public name -> module defining it; read on first access by `__getattr__`
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("Architecture", "check_degree", "convolutional", "fully_connected", "measure_degree"), "ntk_l2.networks.arch"
    ),
    **dict.fromkeys(("Dataset", "load_cifar10", "load_dataset", "load_digits", "load_mnist"), "ntk_l2.data.datasets"),
    **dict.fromkeys(("accuracy", "mse_loss"), "ntk_l2.common.metrics"),
    **dict.fromkeys(
        (
            "Gaussian",
            "KernelEigen",
            "PiecewiseConstant",
            "SGDPrediction",
            "eigh_kernel",
            "gradient_descent_l2_ode",
            "gradient_descent_mse_l2",
            "gradient_descent_mse_l2_discrete",
            "gradient_descent_mse_l2_ensemble",
            "gradient_descent_mse_l2_momentum",
            "gradient_descent_mse_l2_sgd",
            "mode_factors",
            "stability_limit",
        ),
        "ntk_l2.theory",
    ),
}
# subpackages reachable as attributes without an explicit import (``ntk_l2.deep_linear`` is public)
_SUBPACKAGES = frozenset(
    ("cli", "common", "data", "deep_linear", "experiments", "finite", "laws", "networks", "theory")
)

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

if TYPE_CHECKING:  # what static checkers and IDEs see; at run time `__getattr__` loads these on first use
    from ntk_l2 import deep_linear
    from ntk_l2.common.metrics import accuracy, mse_loss
    from ntk_l2.data.datasets import Dataset, load_cifar10, load_dataset, load_digits, load_mnist
    from ntk_l2.networks.arch import Architecture, check_degree, convolutional, fully_connected, measure_degree
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


def __getattr__(name: str) -> Any:
    """Import the module of a public name (or a subpackage) on first access and cache the value."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes and every public name, loaded or not."""
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
