"""The large-scale solvers (`derivations/large.md`, K1–K7): Krylov and dense against the engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntk_l2.common.memory import memory_limit
from ntk_l2.theory import KernelEigen, gradient_descent_mse_l2, gradient_descent_mse_l2_discrete, stable_learning_rate
from ntk_l2.theory.operators import ArrayKernel
from ntk_l2.theory.scale import TrainingRule, choose_solver, predict_at_scale, predict_dense, predict_krylov
from ntk_l2.theory.scale_problem import relative_change


@pytest.fixture(scope="module")
def digits_kernels():
    """The depth-3 NTK of 1,000 embedded digits (degree 4) and of 797 test digits."""
    import ntk_l2
    from ntk_l2.networks.arch import fully_connected

    ds = ntk_l2.load_digits(n_train=1000)
    net = fully_connected(depth=3)
    return net.ntk(ds.x_train), net.ntk(ds.x_test, ds.x_train), ds.y_train, net.degree


def _engine(k, kt, y, how: TrainingRule, times, f0=0.0, fs0=0.0):
    args = (k, y, how.learning_rate, how.l2, how.degree)
    if how.discrete:
        return gradient_descent_mse_l2_discrete(*args, momentum=how.momentum)(times, f0, fs0, kt)
    return gradient_descent_mse_l2(*args)(times, f0, fs0, kt)


def _true_error(res, ref_train, ref_test):
    return np.maximum(relative_change(ref_train, res.fx_train), relative_change(ref_test, res.fx_test))


@pytest.mark.parametrize("lam", [1e-4, 1e-2])
@pytest.mark.parametrize("discrete,momentum", [(False, 0.0), (True, 0.0), (True, 0.9)])
def test_krylov_matches_dense_on_a_real_kernel(digits_kernels, lam, discrete, momentum):
    """K1–K3: on a real NTK the Krylov prediction at 100 times up to 2/(ηλ) equals the engine's
    dense one to 1e-6 (the issue's bound; it reaches ~1e-13 here), for gradient flow, the discrete
    map and heavy-ball momentum, with initial outputs; and its error estimate (K4) is at least the
    true error at every time."""
    k, kt, y, degree = digits_kernels
    n, c = y.shape
    eta = stable_learning_rate(k, n * c, lam, degree, momentum=momentum)
    stop = 2 * (1 - momentum) / (eta * lam)
    times = np.unique(np.round(np.logspace(0, np.log10(stop), 100)))
    rng = np.random.default_rng(1)
    f0, fs0 = 0.1 * rng.standard_normal(y.shape), 0.1 * rng.standard_normal((kt.shape[0], c))
    how = TrainingRule(eta, lam, degree, discrete=discrete, momentum=momentum)
    res = predict_krylov(k, y, times, how, fx_train_0=f0, k_test_train=kt, fx_test_0=fs0, tol=1e-9)
    ref_train, ref_test = _engine(k, kt, y, how, times, f0, fs0)
    err = _true_error(res, ref_train, ref_test)
    assert res.converged and res.solver == "krylov" and res.krylov_size < n
    assert err.max() <= 1e-6
    assert np.all(res.error_estimate >= err)


def test_padding_and_projection_change_nothing():
    """K3: modes of eigenvalue 0 with zero targets, initial outputs and test-kernel columns change
    no output; and a Krylov space that exhausts the problem (n = 24, c = 8: three blocks) gives the
    dense prediction to round-off, with an estimate at the round-off floor."""
    rng = np.random.default_rng(0)
    n, c, m = 24, 8, 5
    a = rng.standard_normal((n, n))
    k, kt, y = a @ a.T / n, rng.standard_normal((m, n)), rng.standard_normal((n, c))
    eig = KernelEigen(*np.linalg.eigh(k))
    times = np.array([0.0, 3.0, 50.0])
    plain = gradient_descent_mse_l2(eig, y, 0.5, 1e-2, 3)(times, 0.0, 0.0, kt)
    size = 32
    padded_evals = np.concatenate([eig.evals * size / n, np.zeros(size - n)])
    padded_evecs = np.eye(size)
    padded_evecs[:n, :n] = eig.evecs
    basis = np.eye(size)[:, :n]
    pred = gradient_descent_mse_l2(KernelEigen(padded_evals, padded_evecs), basis @ y, 0.5, 1e-2, 3)
    train, test = pred(times, 0.0, 0.0, kt @ basis.T * size / n)
    np.testing.assert_allclose(train[:, :n], plain[0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(train[:, n:], 0.0)
    np.testing.assert_allclose(test, plain[1], rtol=0, atol=1e-12)
    res = predict_krylov(k, y, times, TrainingRule(0.5, 1e-2, 3), k_test_train=kt)
    assert res.krylov_size == n and res.converged
    assert _true_error(res, *plain).max() <= 1e-12
    np.testing.assert_allclose(res.error_estimate, 1e-12)


def _random_kernel(rng, n, decay, gap):
    """A PSD kernel with eigenvalues μ_i = (i + 1)^(−decay), a top one `gap` times larger."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    mu = (np.arange(n) + 1.0) ** -decay
    mu[0] *= gap
    return (q * mu) @ q.T


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(40, 160),
    c=st.sampled_from([1, 3]),
    decay=st.floats(0.0, 2.5),
    gap=st.sampled_from([1.0, 30.0]),
    log_lam=st.floats(-5.0, 0.0),
    degree=st.sampled_from([1, 2, 4]),
    tol=st.sampled_from([1e-4, 1e-7, 1e-10]),
    discrete=st.booleans(),
)
def test_property_krylov_error_estimate_bounds_the_true_error(seed, n, c, decay, gap, log_lam, degree, tol, discrete):
    """K4, on kernels chosen to be hard: flat (decay 0) to fast-decaying spectra, with or without an
    isolated top eigenvalue, λ over five decades, tolerances from 1e-4 to 1e-10. The estimate
    reported at every time is at least the true error there (measured against the dense engine),
    and a converged prediction is within 10·tol + round-off of it."""
    rng = np.random.default_rng(seed)
    k = _random_kernel(rng, n, decay, gap)
    kt = _random_kernel(rng, n, decay, gap)[: n // 4 + 1]
    y = rng.standard_normal((n, c))
    lam = 10.0**log_lam
    eta = stable_learning_rate(k, n * c, lam, degree)
    stop = 2 / (eta * lam)
    times = np.unique(np.round(np.logspace(0, np.log10(stop), 30)))
    how = TrainingRule(eta, lam, degree, discrete=discrete)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = predict_krylov(k, y, times, how, k_test_train=kt, tol=tol)
    err = _true_error(res, *_engine(k, kt, y, how, times))
    assert np.all(res.error_estimate >= err), (err.max(), res.max_error_estimate, res.krylov_size)
    assert err.max() <= 10 * tol + 1e-11


def test_dense_solver_equals_the_engine_and_leaves_the_input_alone(digits_kernels):
    """K5: the in-place dense solver (one copy, syevr, test rows in chunks) gives the engine's
    outputs to 1e-11, does not touch the caller's arrays, and reports the round-off floor max(10·n·ε, 1e-12)."""
    k, kt, y, degree = digits_kernels
    k_before, kt_before = k.copy(), kt.copy()
    how = TrainingRule(0.5, 1e-3, degree)
    times = np.logspace(0, 4, 20)
    res = predict_dense(k, y, times, how, k_test_train=kt, fx_train_0=0.05, fx_test_0=-0.05)
    ref = _engine(k, kt, y, how, times, 0.05, -0.05)
    assert _true_error(res, *ref).max() <= 1e-11
    np.testing.assert_array_equal(k, k_before)
    np.testing.assert_array_equal(kt, kt_before)
    assert res.solver == "dense" and res.krylov_size == k.shape[0]
    np.testing.assert_allclose(res.error_estimate, max(10 * k.shape[0] * np.finfo(float).eps, 1e-12))


class Counting(ArrayKernel):
    """An ArrayKernel that counts how it is read (a stand-in for a kernel on disk)."""

    calls: dict

    def __init__(self, array, name="k"):
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "eps", float(np.finfo(float).eps))
        object.__setattr__(self, "calls", {"matmul": 0, "load": 0, "rows": 0})

    def matmul(self, q):
        self.calls["matmul"] += 1
        return super().matmul(q)

    def load(self):
        self.calls["load"] += 1
        return super().load()

    def row_blocks(self):
        self.calls["rows"] += 1
        return super().row_blocks()


def test_operators_are_read_without_a_second_copy(digits_kernels):
    """K6: the Krylov solver only multiplies (never loads the kernel); the dense solver loads the
    training kernel once and reads the test kernel by row blocks; an operator that is not
    symmetric is caught by the probe, an array by rows against columns."""
    k, kt, y, degree = digits_kernels
    how, times = TrainingRule(0.5, 1e-2, degree), np.array([10.0, 100.0])
    train, test = Counting(k), Counting(kt)
    predict_krylov(train, y, times, how, k_test_train=test)
    assert train.calls["load"] == 0 and train.calls["matmul"] > 0 and test.calls["load"] == 0
    train, test = Counting(k), Counting(kt)
    predict_dense(train, y, times, how, k_test_train=test)
    assert train.calls["load"] == 1 and test.calls["load"] == 0 and test.calls["rows"] == 1
    skewed = k.copy()
    skewed[0, 1] += 1e-3 * np.abs(k).max()
    with pytest.raises(ValueError, match=r"^k_train_train: must be symmetric"):
        predict_krylov(skewed, y, times, how)
    skewed = k + 1e-3 * np.abs(k).max() * np.triu(np.ones_like(k))
    with pytest.raises(ValueError, match=r"^k_train_train: must be symmetric, a probe"):
        predict_krylov(_ProductsOnly(skewed), y, times, how)


class _ProductsOnly:
    """A kernel known only through its three methods (like a stored kernel)."""

    def __init__(self, array):
        self._a = ArrayKernel(array)

    @property
    def shape(self):
        return self._a.shape

    def matmul(self, q):
        return self._a.matmul(q)

    def row_blocks(self):
        return self._a.row_blocks()

    def load(self):
        return self._a.load()


def test_requests_that_cannot_fit_are_refused_before_reading(digits_kernels):
    """K6, V4: a memory bound below the need refuses in one line naming the argument, before
    the kernel is read (no product, no load)."""
    k, kt, y, degree = digits_kernels
    how, times = TrainingRule(0.5, 1e-2, degree), np.array([10.0])
    for solve, what in ((predict_dense, "the dense solver"), (predict_krylov, "a Krylov space")):
        train = Counting(k)
        with (
            memory_limit(1e6),
            pytest.raises(ValueError, match=rf"^k_train_train: {what} .*needs about .* more than the limit set"),
        ):
            solve(train, y, times, how, k_test_train=kt)
        assert train.calls == {"matmul": 0, "load": 0, "rows": 0}


def test_auto_choice_and_unconverged_warning(digits_kernels):
    """K7: auto is dense for small n, Krylov for large n or when 2n² numbers do not fit; a Krylov
    space capped below convergence warns and says so in the result."""
    assert choose_solver(1000, 10, 100, 100) == "dense"
    assert choose_solver(20_000, 10, 100, 100) == "krylov"
    with memory_limit(50e6):
        assert choose_solver(2000, 10, 100, 100) == "krylov"
    k, kt, y, degree = digits_kernels
    res = predict_at_scale(k, y, np.array([100.0]), TrainingRule(0.5, 1e-4, degree), solver="auto")
    assert res.solver == "dense"
    with pytest.warns(RuntimeWarning, match=r"^max_size: the Krylov space reached"):
        res = predict_krylov(k, y, np.logspace(0, 5, 10), TrainingRule(0.5, 1e-4, degree), max_size=20, tol=1e-12)
    assert not res.converged and res.krylov_size == 20 and res.max_error_estimate > 1e-12
    with pytest.raises(ValueError, match=r"^solver: must be one of auto, dense, krylov"):
        predict_at_scale(k, y, 1.0, TrainingRule(0.5, 1e-4, degree), solver="lanczos")


def test_kernels_the_engine_accepts_are_accepted_and_solved_alike(digits_kernels):
    """V1–V2 as in the engine: a kernel within the symmetry tolerance but not exactly symmetric is
    solved as (K + Kᵀ)/2 (as the engine does), and a float32 Gram matrix of deficient rank, whose
    round-off eigenvalues are negative, is accepted by the Krylov solver as by the dense one."""
    k, kt, y, degree = digits_kernels
    how, times = TrainingRule(0.5, 1e-3, degree), np.array([10.0, 1000.0])
    skewed = k.copy()
    skewed[0, 1] += 5e-9 * np.abs(k).max()
    ref = _engine(skewed, kt, y, how, times)
    for solve in (predict_dense, predict_krylov):
        assert _true_error(solve(skewed, y, times, how, k_test_train=kt), *ref).max() <= 1e-10
    x = np.random.default_rng(0).standard_normal((200, 20)).astype(np.float32)
    gram, yy = x @ x.T, np.random.default_rng(1).standard_normal((200, 3))
    ref = gradient_descent_mse_l2(gram, yy, 0.1, 1e-3, 2)(times)
    for solve in (predict_dense, predict_krylov):
        res = solve(gram, yy, times, TrainingRule(0.1, 1e-3, 2))
        assert relative_change(ref, res.fx_train).max() <= 1e-6


def test_operators_returning_bad_values_are_refused(digits_kernels):
    """K6: what an operator returns is checked: a load() of NaN or of float32, a product of NaN or of
    the wrong shape give one line naming the kernel, not a LAPACK hang or a float32 answer."""
    k, _, y, degree = digits_kernels
    how, times = TrainingRule(0.5, 1e-3, degree), np.array([10.0])

    class Bad(_ProductsOnly):
        def __init__(self, array, load=None, product=None):
            super().__init__(array)
            self._load, self._product = load, product

        def load(self):
            return self._load if self._load is not None else super().load()

        def matmul(self, q):
            return self._product(q) if self._product is not None else super().matmul(q)

    nan = np.full_like(k, np.nan)
    with pytest.raises(ValueError, match=r"^k_train_train: its load\(\) returned NaN"):
        predict_dense(Bad(k, load=nan), y, times, how)
    with pytest.raises(ValueError, match=r"^k_train_train: its load\(\) must return a C-ordered float64"):
        predict_dense(Bad(k, load=k.astype(np.float32)), y, times, how)
    calls = {"n": 0}

    def nan_later(q):  # the symmetry probe passes; the Krylov products then turn NaN
        calls["n"] += 1
        return k @ q if calls["n"] == 1 else np.full((k.shape[0], q.shape[1]), np.nan)

    with pytest.raises(ValueError, match=r"^k_train_train: its product with a finite block is not finite"):
        predict_krylov(Bad(k, product=nan_later), y, times, how)
    with pytest.raises(ValueError, match=r"^k_train_train: its matmul returned shape"):
        predict_krylov(Bad(k, product=lambda q: (k @ q)[:-1]), y, times, how)
