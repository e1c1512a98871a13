"""The two phases of training a deep linear network with noise, and its wide limit at degree L.

Derivations: `derivations/deep_linear.md` (DL3, DL8, wide limit).
"""

from __future__ import annotations

import numpy as np
import pytest

from ntk_l2 import deep_linear as dl
from ntk_l2.data.datasets import load_digits
from ntk_l2.experiments.deep_linear_wide import wide_deep_linear

SEEDS = tuple(range(16))
# A scalar chain of depth 3 far from balance (w_i² = 4, 0.25, 1), on data with label noise so the
# minibatch residuals do not vanish at the minimum.
W0 = dl.chain([2.0, 0.5, 1.0])
DATA = dl.regression_data(64, 1, 1, teacher=[[2.0]], label_noise=0.5, seed=0)
NOISES = {
    "input noise σ=0.5, full batch": dl.DeepLinearConfig(
        learning_rate=0.1, steps=20_000, input_noise=0.5, n_records=100
    ),
    "minibatch SGD B=4": dl.DeepLinearConfig(learning_rate=0.05, steps=20_000, batch_size=4, n_records=100),
}


@pytest.mark.parametrize("name", NOISES)
def test_noise_shrinks_imbalance_after_the_loss_has_converged(name):
    x, y = DATA
    run = dl.gradient_descent(W0, x, y, NOISES[name], seeds=SEEDS)
    assert not run.diverged.any()
    imb = run.imbalance_norm  # (seed, record)
    # Decreases on average: the seed-mean at quarters of the run falls monotonically, and to below half.
    quarters = [np.searchsorted(run.steps, q * run.steps[-1]) for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    mean = imb.mean(axis=0)[quarters]
    assert np.all(np.diff(mean) < 0), mean
    assert mean[-1] < 0.5 * mean[0]
    # Two phases, seed by seed: the loss is within 1% of its initial excess over its floor (DL8) at least
    # ten times earlier than the imbalance has halved. The factor 10 is conservative: DL3 gives a
    # contraction rate η²E[ρ²]P²/(w_i²w_j²) per step at the floor against an optimization rate ~ η·curvature,
    # and the measured separation here is ≥ 300× (t_opt ≤ 14 steps, t_half ≥ 3,970 steps).
    for i in range(len(SEEDS)):
        t_opt = dl.optimization_phase_end(run.steps, run.loss[i])
        t_half = dl.imbalance_half_time(run.steps, imb[i])
        assert np.isfinite(t_opt) and np.isfinite(t_half)
        assert 10 * t_opt < t_half, (i, t_opt, t_half)


def test_without_noise_gradient_descent_freezes_the_imbalance():
    """The control: the same GD without noise converges (ρ → 0) and the imbalance stays put (DL3)."""
    x, y = DATA
    run = dl.gradient_descent(W0, x, y, dl.DeepLinearConfig(learning_rate=0.05, steps=20_000, n_records=50))
    assert run.loss[0, -1] == pytest.approx(dl.min_loss(x, y), rel=1e-10)
    assert abs(run.imbalance_norm[0, -1] / run.imbalance_norm[0, 0] - 1) < 0.01


def test_regularization_phase_moves_toward_the_flattest_minimum():
    """As the imbalance shrinks at a fixed product, the top Hessian eigenvalue falls toward the balanced value (DL4)."""
    x, y = DATA
    run = dl.gradient_descent(W0, x, y, NOISES["minibatch SGD B=4"], seeds=(0,))
    m = float(np.mean(x**2))
    first = np.searchsorted(run.steps, 100)  # after the optimization phase
    tops = [dl.hessian_top_eigenvalue(tuple(w[0, r] for w in run.weights), x, y) for r in (first, len(run.steps) - 1)]
    balanced = m * 3 * abs(float(run.product[0, -1, 0, 0])) ** (4 / 3)
    assert tops[1] < tops[0]
    assert tops[1] == pytest.approx(balanced, rel=0.05)  # imbalance down to ~0: nearly balanced


def test_phase_detection_on_known_curves():
    """DL8 on curves with known answers: the optimization phase ends when the loss is within a
    fraction of its floor, and the imbalance half time is the first step at half the start."""
    steps = np.arange(0.0, 1001.0)
    loss = 1.0 + 9.0 * np.exp(-steps / 10.0)  # floor 1, excess 9: within 1% at t = 10 ln 100 = 46.05
    assert dl.optimization_phase_end(steps, loss) == 47.0
    assert dl.optimization_phase_end(steps, loss, floor=1.0, fraction=0.5) == 7.0  # 10 ln 2 = 6.93
    assert np.isnan(dl.optimization_phase_end(steps, np.ones_like(steps)))
    imb = 3.0 * np.exp(-steps / 100.0)
    assert dl.imbalance_half_time(steps, imb) == 70.0  # 100 ln 2 = 69.3
    assert np.isnan(dl.imbalance_half_time(steps, np.full_like(steps, 3.0)))
    with pytest.raises(ValueError, match="fraction"):
        dl.optimization_phase_end(steps, loss, fraction=1.5)
    with pytest.raises(ValueError, match="loss"):
        dl.optimization_phase_end(steps, loss[:-1])


def test_wide_deep_linear_network_follows_the_theory_at_degree_depth():
    """A wide deep linear network (L = 3, NTK parameterization) trained with L2 vs the discrete map at k = L.

    Finite-width corrections to the outputs scale as width^{-1/2}: the error must fall with width, and at
    width 1024 stay below 0.1 (measured 0.05; 2× margin for seeds and platforms)."""
    ds = load_digits(128, 256)
    errs = {}
    for width in (256, 1024):
        summary, _ = wide_deep_linear(ds, depth=3, width=width, learning_rate=1.0, l2=1e-2, steps=100, seeds=2)
        assert summary.degree == 3 and summary.width == width
        errs[width] = float(np.median(summary.rel_err_test_max))
        # The NTK decays as (1 − ηλ)^{2(L−1)s} (discrete_time.md, D2), within finite-width fluctuations (5%).
        np.testing.assert_allclose(summary.kernel_ratio, summary.kernel_ratio_theory, rtol=0.05)
    assert errs[1024] < errs[256]
    assert errs[1024] < 0.1
    with pytest.raises(ValueError, match="depth"):
        wide_deep_linear(ds, depth=1, width=64, learning_rate=1.0, l2=1e-2, steps=10)
