"""The NumPy implementation of the MSE solvers: the reference the JAX engine is tested against.

The same equations as the JAX solvers in `ntk_l2.theory` (closed form C1–C6,
discrete map D1–D6, ensemble E1–E3), written in NumPy/SciPy with concrete
branching. Tests compare every JAX solver with these to round-off; the
50-digit mpmath reference (`tests/_mp_reference.py`) checks both.
"""

from ntk_l2.theory.reference.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.reference.discrete import gradient_descent_mse_l2_discrete
from ntk_l2.theory.reference.ensemble import gradient_descent_mse_l2_ensemble

__all__ = ["gradient_descent_mse_l2", "gradient_descent_mse_l2_discrete", "gradient_descent_mse_l2_ensemble"]
