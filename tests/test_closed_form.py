"""Closed-form gradient flow with L2 (derivations/continuous_time.md): the JAX solver
`ntk_l2.theory.closed_form` and its NumPy reference, each against independent solutions.

JAX-specific checks (transformations, the reference comparison, derivatives) live in
tests/test_closed_form_jax.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from jax.experimental import enable_x64
from scipy.integrate import solve_ivp

from conftest import make_problem, relative_error
from ntk_l2.networks.nt import nt, stax
from ntk_l2.theory.closed_form import gradient_descent_mse_l2
from ntk_l2.theory.reference.closed_form import gradient_descent_mse_l2 as reference_solver

SOLVERS = [pytest.param(gradient_descent_mse_l2, id="jax"), pytest.param(reference_solver, id="reference")]
TIMES = np.array([0.0, 0.5, 3.0, 40.0, 700.0, 5000.0])


@pytest.mark.parametrize("solver", SOLVERS)
def test_lambda_zero_matches_neural_tangents(solver, problem):
    """λ = 0 is nt.predict.gradient_descent_mse (C4), train and test outputs (C6), ≤ 1e-10."""
    eta = 0.8
    ours = solver(problem.k_train_train, problem.y_train, eta, 0.0, 3)(
        TIMES, problem.fx_train_0, problem.fx_test_0, problem.k_test_train
    )
    with enable_x64():
        theirs = nt.predict.gradient_descent_mse(problem.k_train_train, problem.y_train, learning_rate=eta)(
            TIMES, problem.fx_train_0, problem.fx_test_0, problem.k_test_train
        )
        theirs = [np.asarray(x) for x in theirs]
    for a, b in zip(ours, theirs, strict=False):
        assert relative_error(a, b) <= 1e-10


@pytest.mark.parametrize("solver", SOLVERS)
def test_lambda_zero_matches_neural_tangents_on_a_stax_kernel(solver):
    """Same check on a real neural-tangents NTK (bias-free ReLU net)."""
    rng = np.random.default_rng(1)
    _, _, kernel_fn = stax.serial(stax.Dense(128, b_std=None), stax.Relu(), stax.Dense(2, b_std=None))
    x = rng.normal(size=(26, 7))
    with enable_x64():
        k = np.asarray(kernel_fn(x, None, "ntk"))
        y = rng.normal(size=(20, 2))
        theirs = nt.predict.gradient_descent_mse(k[:20, :20], y, learning_rate=2.0)(TIMES, 0.0, 0.0, k[20:, :20])
        theirs = [np.asarray(t) for t in theirs]
    ours = solver(k[:20, :20], y, 2.0, 0.0, 2)(TIMES, 0.0, 0.0, k[20:, :20])
    for a, b in zip(ours, theirs, strict=False):
        assert relative_error(a, b) <= 1e-10


def _integrate_full_equations(p, eta, lam, k, times):
    """DOP853 at rtol 1e-13 on the full n·c + m·c system (C1, C2, test equation)."""
    n, c = p.y_train.shape
    m = p.k_test_train.shape[0]
    norm, g = p.y_train.size, eta * lam

    def rhs(t, state):
        f = state[: n * c].reshape(n, c)
        fs = state[n * c :].reshape(m, c)
        scale = np.exp(-2 * (k - 1) * g * t)
        r = (f - p.y_train) / norm
        return np.concatenate(
            [
                (-eta * scale * p.k_train_train @ r - k * g * f).ravel(),
                (-eta * scale * p.k_test_train @ r - k * g * fs).ravel(),
            ]
        )

    y0 = np.concatenate([p.fx_train_0.ravel(), p.fx_test_0.ravel()])
    sol = solve_ivp(rhs, (0, times[-1]), y0, t_eval=times, rtol=1e-13, atol=1e-15, method="DOP853")
    assert sol.success
    return sol.y[: n * c].T.reshape(-1, n, c), sol.y[n * c :].T.reshape(-1, m, c)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("lam", [1e-4, 3e-3])
def test_matches_high_accuracy_integration(k, lam, solver):
    """Closed form (C3–C6) vs integration of the full equations C1–C2 and the test equation
    (rtol 1e-13): ≤ 1e-8 relative.

    The integrator's own error is ~1e-12 here; 1e-8 is the accuracy the solvers promise.
    """
    p = make_problem(seed=k)
    eta = 1.5
    # k = 0: the kernel grows as e^{2ηλt}; stop at 1000 steps (growth ≤ e^9) so the
    # explicit reference integrator is not swamped by stiffness.
    times = np.array([0.0, 1.0, 30.0, 400.0, 1000.0 if k == 0 else 3000.0])
    ours = solver(p.k_train_train, p.y_train, eta, lam, k)(times, p.fx_train_0, p.fx_test_0, p.k_test_train)
    ref = _integrate_full_equations(p, eta, lam, k, times)
    for a, b in zip(ours, ref, strict=False):
        assert relative_error(a, b) <= 1e-8


@pytest.mark.parametrize("solver", SOLVERS)
def test_k1_infinite_time_is_kernel_ridge_regression(solver, problem):
    """k = 1, t → ∞: f = Θ(Θ + NλI)⁻¹Y on train, Θ_*X(Θ + NλI)⁻¹Y on test (C8), ≤ 1e-8.

    Independent solver: scikit-learn's KernelRidge with a precomputed kernel
    (it solves (K + αI) w = Y by Cholesky), α = Nλ.
    """
    from sklearn.kernel_ridge import KernelRidge

    lam, eta = 2e-3, 0.7
    n_out = problem.y_train.size
    krr = KernelRidge(alpha=n_out * lam, kernel="precomputed").fit(problem.k_train_train, problem.y_train)
    predict = solver(problem.k_train_train, problem.y_train, eta, lam, 1)
    for t in (np.inf, 1e9):
        fx_train, fx_test = predict(t, problem.fx_train_0, problem.fx_test_0, problem.k_test_train)
        assert relative_error(fx_train, krr.predict(problem.k_train_train)) <= 1e-8
        assert relative_error(fx_test, krr.predict(problem.k_test_train)) <= 1e-8


@pytest.mark.parametrize("solver", SOLVERS)
def test_offset_model_is_exact_linear_model(solver, problem):
    """f = c + h(θ), h linear (C7): prediction equals k = 1 dynamics of h with targets Y − c."""
    rng = np.random.default_rng(3)
    c_train, c_test = rng.normal(size=problem.fx_train_0.shape), rng.normal(size=problem.fx_test_0.shape)
    eta, lam = 1.0, 1e-2
    predict = solver(problem.k_train_train, problem.y_train, eta, lam, 1)
    with_offset = predict(
        TIMES, problem.fx_train_0, problem.fx_test_0, problem.k_test_train, offset_train=c_train, offset_test=c_test
    )
    shifted = solver(problem.k_train_train, problem.y_train - c_train, eta, lam, 1)(
        TIMES, problem.fx_train_0 - c_train, problem.fx_test_0 - c_test, problem.k_test_train
    )
    assert relative_error(with_offset[0], shifted[0] + c_train) <= 1e-13
    assert relative_error(with_offset[1], shifted[1] + c_test) <= 1e-13


@pytest.mark.parametrize("solver", SOLVERS)
def test_scalar_time_and_train_only_shapes(solver, problem):
    predict = solver(problem.k_train_train, problem.y_train, 1.0, 1e-3, 2)
    assert predict(10.0).shape == problem.y_train.shape
    assert predict(TIMES).shape == (TIMES.size,) + problem.y_train.shape
    fx_train, fx_test = predict(10.0, 0.0, None, problem.k_test_train)
    assert fx_test.shape == problem.fx_test_0.shape


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("k", [0, 2, 3])
def test_outputs_vanish_or_learn_in_the_limits(problem, k, solver):
    """k ≥ 2 with λ > 0 decays to 0 (the kernel dies, outputs shrink as e^{−kηλt});
    k = 0 keeps learning (the kernel grows) and fits the training targets."""
    predict = solver(problem.k_train_train, problem.y_train, 1.0, 1e-2, k)
    late = predict(np.array([1e6, np.inf]), problem.fx_train_0)
    assert np.all(np.isfinite(late))
    if k >= 2:
        assert np.max(np.abs(late)) < 1e-12
    else:
        assert relative_error(late[1], problem.y_train) < 1e-6


BAD_INPUTS = [
    (dict(k_train_train=np.ones((3, 4))), "k_train_train: must be square"),
    (dict(k_train_train=np.array([[1.0, 0.5], [0.2, 1.0]])), "k_train_train: must be symmetric"),
    (dict(k_train_train=np.array([[1.0, np.nan], [np.nan, 1.0]])), "k_train_train: contains 2 NaN"),
    (dict(k_train_train=np.array([[1.0, 2.0], [2.0, 1.0]])), r"most negative eigenvalue -1"),
    (dict(y_train=np.ones((3, 2))), "y_train: has 3 rows but the kernel is 2 x 2"),
    (dict(y_train=np.array([[np.inf], [0.0]])), "y_train: contains 1 NaN or inf"),
    (dict(learning_rate=0.0), "learning_rate: must be > 0"),
    (dict(l2=-1e-3), "l2: must be >= 0"),
    (dict(degree=-1), "degree: must be an integer >= 0"),
    (dict(degree=2.5), "degree: must be an integer >= 0"),
]
# The JAX engine also accepts (n, n, c, c) kernels, so a non-square kernel is reported with the
# shapes it accepts; targets of the wrong length are blamed on y_train, as by the reference.
JAX_SHAPE_MESSAGES = {0: r"k_train_train: expected shape \(2, 2\) .*got \(3, 4\)"}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", range(len(BAD_INPUTS)))
def test_bad_input_names_the_argument(case, solver):
    override, message = BAD_INPUTS[case]
    if solver is gradient_descent_mse_l2:
        message = JAX_SHAPE_MESSAGES.get(case, message)
    args = dict(k_train_train=np.eye(2), y_train=np.ones((2, 1)), learning_rate=1.0, l2=0.0, degree=2)
    args.update(override)
    with pytest.raises(ValueError, match=message) as err:
        solver(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_prediction_arguments_name_the_argument(solver, problem):
    predict = solver(problem.k_train_train, problem.y_train, 1.0, 1e-3, 2)
    with pytest.raises(ValueError, match="t: times must be >= 0"):
        predict(-1.0)
    with pytest.raises(ValueError, match="fx_train_0: expected shape"):
        predict(1.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k_test_train: expected shape"):
        predict(1.0, 0.0, None, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="fx_test_0: expected shape"):
        predict(1.0, 0.0, np.zeros((3, 3)), problem.k_test_train)


def test_accepts_jax_arrays_from_any_source(problem):
    """Kernels and targets as float32 jax arrays: the JAX solver returns float32 jax arrays, the float64
    result of their values rounded once; the reference returns that float64 result as NumPy."""
    import jax
    import jax.numpy as jnp

    k32 = problem.k_train_train.astype(np.float32)
    k32 = (k32 + k32.T) / 2
    y32 = problem.y_train.astype(np.float32)
    from_numpy = gradient_descent_mse_l2(k32.astype(np.float64), y32.astype(np.float64), 1.0, 1e-3, 2)(TIMES)
    from_jax = gradient_descent_mse_l2(jnp.asarray(k32), jnp.asarray(y32), 1.0, 1e-3, 2)(TIMES)
    assert isinstance(from_jax, jax.Array) and from_jax.dtype == np.float32
    assert relative_error(from_jax, from_numpy.astype(np.float32)) == 0.0
    from_reference = reference_solver(jnp.asarray(k32), jnp.asarray(y32), 1.0, 1e-3, 2)(TIMES)
    assert isinstance(from_reference, np.ndarray) and from_reference.dtype == np.float64
    assert relative_error(from_reference, from_numpy) <= 1e-14
