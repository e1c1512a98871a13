"""AutoL2 for scale-invariant networks (`ntk_l2.laws.autol2_si`, `derivations/autol2_si.md` SA3–SA6):
the rule's decisions on synthetic metric streams, its validation, and one run on a tiny
batch-normalized CNN."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ntk_l2.laws import AutoL2Run, FiniteDynamics, FiniteSweepConfig, compare_autol2
from ntk_l2.laws.autol2_si import AutoL2SIConfig, AutoL2SIRule, autol2_si
from ntk_l2.laws.dynamics import ControlledRun

ETA = 0.01


def drive(rule: AutoL2SIRule, metric, loss=None, l2: float | None = None, every: int = 10) -> list[float]:
    """Feed ``metric`` (and ``loss``, default the metric) at steps every, 2·every, …; the λ after each check."""
    lam = rule.config.l2_init if l2 is None else l2
    out = []
    for i, value in enumerate(metric):
        lam = rule.next_l2((i + 1) * every, float(value), float(value if loss is None else loss[i]), lam)
        out.append(lam)
    return out


def test_raises_on_a_plateau_and_holds_each_new_l2_sa4():
    """SA4 and the hold (SA3): a flat loss raises λ by ``factor`` once the window has passed, and
    the next raise waits ⌈min_wait/(ηλ)⌉ steps after it."""
    cfg = AutoL2SIConfig(l2_init=0.1, factor=2.0, l2_max=10.0, window=50, check_every=10, min_wait=0.5, tol=0.0)
    rule = AutoL2SIRule(cfg, ETA)
    lams = drive(rule, [1.0] * 200)
    changes = [(10 * (i + 1), b) for i, (a, b) in enumerate(zip([0.1] + lams, lams, strict=False)) if a != b]
    assert changes[0] == (60, 0.2)  # the window 20…60 is no better than the check at 10
    assert cfg.hold_steps(ETA, 0.2) == 250 and cfg.hold_steps(ETA, 0.4) == 125
    assert changes[1] == (60 + 250, pytest.approx(0.4))
    assert changes[2] == (310 + 130, pytest.approx(0.8))  # the first check after the hold of 125
    assert rule.reasons[:3] == ["raise"] * 3


def test_no_raise_while_the_metric_improves_by_more_than_tol():
    """SA4: a loss falling 5% per check (23% per window) never plateaus with tol = 1%; with tol = 0.5 it
    does at the first check that has a window after one earlier check (step 60)."""
    falling = 0.95 ** np.arange(100)
    assert set(drive(AutoL2SIRule(AutoL2SIConfig(window=50, check_every=10, tol=0.01), ETA), falling)) == {0.03}
    lams = drive(AutoL2SIRule(AutoL2SIConfig(window=50, check_every=10, tol=0.5), ETA), falling)
    assert lams[4] == 0.03 and lams[5] == pytest.approx(0.09)


def test_bound_then_settle_sa6():
    """SA4–SA6: raises stop at l2_max (the last one lands on it exactly), the next plateau starts
    the settle phase, and settling divides λ down to l2_min and not below."""
    cfg = AutoL2SIConfig(l2_init=0.1, factor=3.0, l2_max=0.5, l2_min=0.02, window=20, check_every=10, min_wait=0)
    rule = AutoL2SIRule(cfg, ETA)
    lams = drive(rule, [1.0] * 40)
    distinct = [lams[0]] + [b for a, b in zip(lams, lams[1:], strict=False) if a != b]
    assert distinct == pytest.approx([0.1, 0.3, 0.5, 0.5 / 3, 0.5 / 9, 0.02])
    assert rule.reasons == ["raise", "raise", "settle", "settle", "settle"]
    assert rule.phase == "settle" and min(lams) == 0.02
    # a loss still falling 5% per check: raised at τ = tol, never settled at τ = settle_tol = 0
    falling = AutoL2SIRule(AutoL2SIConfig(**{**cfg.__dict__, "tol": 0.5}), ETA)
    lams = drive(falling, 0.95 ** np.arange(40))
    assert lams[-1] == 0.5 and falling.reasons == ["raise", "raise"] and falling.phase == "raise"


def test_settle_at_switches_to_lowering():
    """SA6: from step ``settle_at`` a plateau lowers λ even below the bound."""
    cfg = AutoL2SIConfig(l2_init=0.1, factor=2.0, l2_max=1.0, window=20, check_every=10, min_wait=0, settle_at=35)
    rule = AutoL2SIRule(cfg, ETA)
    lams = drive(rule, [1.0] * 5)
    assert lams[2] == pytest.approx(0.2)  # step 30: the first plateau, still raising
    assert lams[4] == pytest.approx(0.1) and rule.reasons == ["raise", "settle"]  # step 50: settling


def test_a_loss_spike_steps_back_and_lowers_the_bound_sa5():
    """SA5: a loss rising more than ``spike``-fold between checks divides λ and caps later raises
    at the new λ; a loss that is NaN is a spike too; spikes during the hold of a spike are ignored."""
    cfg = AutoL2SIConfig(l2_init=0.1, factor=2.0, l2_max=10.0, window=20, check_every=10, min_wait=0.1, spike=2.0)
    rule = AutoL2SIRule(cfg, ETA)
    metric = [1.0, 0.9, 0.9, 0.9, 5.0, 30.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    lams = drive(rule, metric)
    assert lams[3] == pytest.approx(0.2)  # step 40: plateau, raise
    assert lams[4] == pytest.approx(0.1) and rule.bound == pytest.approx(0.1)  # step 50: 5.0 > 2·0.9
    assert lams[5] == pytest.approx(0.1)  # step 60: a second rise within the spike's hold (100 steps)
    assert rule.reasons[:2] == ["raise", "spike"]
    assert "raise" not in rule.reasons[2:]  # the plateau at the bound settles instead
    assert min(lams) < 0.1
    nan_rule = AutoL2SIRule(cfg, ETA)
    assert drive(nan_rule, [1.0, 1.0], loss=[1.0, math.nan])[-1] == pytest.approx(0.05)
    off = AutoL2SIRule(AutoL2SIConfig(l2_init=0.1, window=20, check_every=10, spike=math.inf), ETA)
    assert drive(off, [1.0, 100.0])[-1] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"l2_init": 0.0}, "l2_init"),
        ({"l2_max": math.inf}, "l2_max"),
        ({"l2_init": 2.0}, "l2_init"),
        ({"factor": 1.0}, "factor"),
        ({"window": 0}, "window"),
        ({"check_every": 300}, "check_every"),
        ({"metric": "accuracy"}, "metric"),
        ({"tol": 1.0}, "tol"),
        ({"settle_tol": -0.1}, "settle_tol"),
        ({"min_wait": -1.0}, "min_wait"),
        ({"spike": 1.0}, "spike"),
        ({"settle_at": -5}, "settle_at"),
        ({"window": 2.5}, "window"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:") as err:
        AutoL2SIConfig(**kwargs)
    assert "\n" not in str(err.value)


class _Replay:
    """A dynamics whose members' loss is flat: records what λ the controller set."""

    def run_l2_controller(self, learning_rate, steps, l2_init, record, controller):
        lam = np.full(2, l2_init)
        rows = []
        for s in record:
            lam = np.asarray(controller(int(s), np.array([0.5, 0.5]), np.array([1.0, 2.0]), lam), float)
            rows.append(lam.copy())
        acc = np.tile(np.linspace(0.1, 0.9, len(record)), (2, 1))
        return ControlledRun(np.asarray(record), np.array(rows).T, acc, acc, np.ones_like(acc))


def test_autol2_si_runs_one_rule_per_member_and_records_the_changes():
    """SA4 through the controller: each member's rule raises λ on its own plateau, the run records
    λ after each decision, every change as (step, member, λ) and its reason."""
    cfg = AutoL2SIConfig(l2_init=0.1, factor=2.0, l2_max=1.0, window=20, check_every=10, min_wait=0)
    run = autol2_si(_Replay(), ETA, 100, cfg)
    assert isinstance(run, AutoL2Run) and run.steps == tuple(range(0, 101, 10))
    assert run.changes[:2] == ((30, 0, 0.2), (30, 1, 0.2))
    assert run.config["reasons"][:2] == ["raise", "raise"] and run.config["rule"] == "autol2_si"
    assert run.l2[2] == 0.1 and run.l2[3] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="^steps:"):
        autol2_si(_Replay(), ETA, 0, cfg)
    with pytest.raises(ValueError, match="^record_every:"):
        autol2_si(_Replay(), ETA, 10, cfg, record_every=0)


def test_autol2_si_on_a_tiny_batchnorm_cnn():
    """SA4 end to end: a BN CNN on embedded digits, whose loss plateaus within the loose ``tol``,
    gets λ raised (each member by its own rule), trains, and is compared with a constant λ."""
    from ntk_l2.data.datasets import load_mnist_or_digits
    from ntk_l2.laws import constant_runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_mnist_or_digits(64, 64, None, seed=0, flatten=False)
    net = FiniteSweepConfig(arch="cnn", batchnorm=True, parameterization="standard", depth=1, width=4, seeds=2)
    dynamics = FiniteDynamics(ds, net, progress=False)
    cfg = AutoL2SIConfig(l2_init=0.01, factor=3.0, l2_max=0.3, window=40, check_every=10, tol=0.5, min_wait=0.1)
    run = autol2_si(dynamics, 0.05, 200, cfg)
    assert not run.diverged
    assert {m for _, m, _ in run.changes} == {0, 1}
    assert run.config["reasons"][0] == "raise" and max(run.l2) > cfg.l2_init
    assert max(run.l2) <= cfg.l2_max
    assert max(run.acc_test) > 0.3  # 10 classes: well above chance
    versus = compare_autol2(run, constant_runs(dynamics, 0.05, 200, (0.01,), 20))
    assert versus.max_test_acc == pytest.approx(max(run.acc_test))


def _sphere_loss_grad(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """∇ of the scale-invariant L(W) = ½‖A W/‖W‖ − b‖²: (I − ŵŵᵀ)Aᵀ(Aŵ − b)/‖W‖."""
    r = np.linalg.norm(w)
    u = w / r
    g = a.T @ (a @ u - b)
    return (g - u * (u @ g)) / r


def test_l2_on_a_scale_invariant_loss_is_a_growing_learning_rate_sa1_sa2():
    """SA1–SA2 (Li & Arora): with λ_s changing, V_s = W_s/c_s (c_s = Π(1 − ηλ_j)) follows gradient
    descent without L2 at η/(c_s c_{s+1}), and the gradient is orthogonal to W, so
    ‖W_{s+1}‖² = (1 − ηλ)²‖W_s‖² + η²‖∇L‖² exactly."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=6)
    eta, lams = 0.05, np.where(np.arange(200) < 100, 0.1, 0.3)
    w = v = rng.normal(size=4) * 3
    c = 1.0
    for lam in lams:
        grad = _sphere_loss_grad(w, a, b)
        unprojected = np.linalg.norm(a.T @ (a @ (w / np.linalg.norm(w)) - b))
        assert abs(grad @ w) < 1e-12 * unprojected  # W·∇L = 0 up to round-off
        w_next = (1 - eta * lam) * w - eta * grad
        assert np.linalg.norm(w_next) ** 2 == pytest.approx(
            (1 - eta * lam) ** 2 * (w @ w) + eta**2 * (grad @ grad), rel=1e-12
        )
        c_next = c * (1 - eta * lam)
        v = v - eta / (c * c_next) * _sphere_loss_grad(v, a, b)
        w, c = w_next, c_next
        np.testing.assert_allclose(w / c, v, rtol=1e-9)
    assert c**2 < 0.02  # the equivalent learning rate grew more than 50-fold


def test_the_angular_step_tends_to_sqrt_2_eta_lambda_sa3():
    """SA3: x = ‖W‖² under x' = (1 − ηλ)²x + η²G²/x (gradient of norm G/√x orthogonal to W) reaches
    θ² = η²G²/x² = 2ηλ − η²λ² whatever G, with x² − x*² ∝ e^{−4ηλs}: from x_0 = 100x*, θ is within
    1% of √(2ηλ) (x² within ≈2% of x*²) after ln(0.98·10⁴/0.02)/(4ηλ) ≈ 3.3/(ηλ) steps."""
    for eta, lam, grad_norm in ((0.01, 0.1, 0.3), (0.01, 1.0, 3.0), (0.1, 0.05, 1.0)):
        theta_star = math.sqrt(2 * eta * lam - (eta * lam) ** 2)
        x_star = eta * grad_norm / theta_star
        x = 100 * x_star
        steps = 0
        while abs(eta * grad_norm / x - theta_star) > 0.01 * theta_star:
            x = (1 - eta * lam) ** 2 * x + (eta * grad_norm) ** 2 / x
            steps += 1
        assert steps == pytest.approx(math.log((1e4 - 1) / 0.0201) / (4 * eta * lam), rel=0.03)
