"""The laws' one interface, `ntk_l2.laws.Dynamics` (`ntk_l2/laws/dynamics.py`): the laws (sweep,
optimal λ, AutoL2 and its comparison) are written once against it, and the kernel theory
(`KernelDynamics`) and finite networks (`FiniteDynamics`) both implement it."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import make_problem
from ntk_l2.data import datasets as data
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.laws import (
    AutoL2Comparison,
    AutoL2Config,
    AutoL2Run,
    ControlledRun,
    Controller,
    Curve,
    Dynamics,
    FiniteDynamics,
    FiniteSweepConfig,
    KernelDynamics,
    LawProblem,
    LawRun,
    OptimalL2,
    autol2,
    autol2_scan,
    compare_autol2,
    constant_runs,
    log_steps,
    optimal_l2,
    sweep,
    time_to_best,
)


def effective_time(learning_rate: float, l2: float, step: float) -> float:
    """u = ηλt, rounded to 1e-9 so that the toy's sums and products are exact."""
    return round(learning_rate * l2 * step, 9)


def toy_accuracy(u: float) -> float:
    """The toy's test accuracy at effective time u: 0.5·u while u < 1, its peak 0.9 at u = 1,
    then 0.1 lost per unit of u (over-regularized), not below 0."""
    return 0.5 * u if u < 1 else max(0.9 - 0.1 * (u - 1), 0.0)


@dataclass
class Toy:
    """A `Dynamics` in a few lines: member i has effective time u_i = Σ_s speed_i·η·λ_s, test
    accuracy `toy_accuracy`(u_i) and training error max(1 − u_i, 0) (a plateau at 0 from u_i = 1)."""

    speeds: tuple[float, ...] = (1.0,)
    calls: list[tuple[float, float]] = field(default_factory=list)  # (λ, η) of each accuracy curve

    def accuracy_curve(self, learning_rate: float, l2: float, steps: NDArray[np.int64]) -> Curve:
        self.calls.append((l2, learning_rate))
        steps = np.asarray(steps, np.int64)
        acc = np.array([[toy_accuracy(effective_time(c * learning_rate, l2, s)) for s in steps] for c in self.speeds])
        return Curve(steps, acc.mean(axis=0), arrays={"acc_test": acc})

    def run_l2_controller(
        self, learning_rate: float, steps: int, l2_init: float, record: NDArray[np.int64], controller: Controller
    ) -> ControlledRun:
        speeds = np.asarray(self.speeds)
        u, lam = np.zeros(speeds.size), np.full(speeds.size, float(l2_init))
        rows: dict[str, list[np.ndarray]] = {"l2": [], "acc_test": [], "acc_train": [], "loss_train": []}
        todo = set(int(r) for r in record)
        for s in range(steps + 1):
            if s in todo:
                now = np.round(u, 9)
                error = np.maximum(1.0 - now, 0.0)
                lam = np.asarray(controller(s, error, error**2, lam.copy()), np.float64)
                rows["l2"].append(lam)
                rows["acc_test"].append(np.array([toy_accuracy(float(v)) for v in now]))
                rows["acc_train"].append(1.0 - error)
                rows["loss_train"].append(error**2)
            u = u + speeds * learning_rate * lam
        return ControlledRun(np.asarray(record, np.int64), **{k: np.stack(v, axis=1) for k, v in rows.items()})


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(n_train=48, n_test=40, seed=0)


def kernel_problem() -> LawProblem:
    """A small random kernel problem (degree 2) with the joint NNGP its initial outputs are drawn from."""
    p = make_problem(n=24, m=8, c=3, seed=1)
    joint = np.block([[p.k_train_train, p.k_test_train.T], [p.k_test_train, p.k_test_test]])
    labels_test = np.random.default_rng(2).integers(0, 3, size=8)
    return LawProblem(p.k_train_train, p.k_test_train, p.y_train, labels_test, 2, nngp=joint)


# (a) the laws are written once: a toy dynamics goes through them unchanged


def test_sweep_of_a_toy_dynamics_reads_t_star_off_its_curve_and_gives_the_law():
    """Accuracy a function of ηλt alone gives t* ∝ 1/(ηλ): t* is the first record with ηλt ≥ 1 (the
    peak), so t*·η·λ = 1 up to the spacing of the log-spaced records, for every (λ, η)."""
    toy = Toy()
    runs = sweep(toy, [1e-3, 1e-2], [0.5, 1.0])
    assert [(r.l2, r.lr) for r in runs] == [(1e-3, 0.5), (1e-3, 1.0), (1e-2, 0.5), (1e-2, 1.0)] == toy.calls
    for r in runs:
        assert r.steps[-1] == math.ceil(2.0 / (r.lr * r.l2)) and r.steps[0] == 0
        t_star = min(s for s in r.steps if effective_time(r.lr, r.l2, s) >= 1)
        assert r.t_star == t_star and r.t_star_eta_l2 == t_star * r.lr * r.l2
        assert r.max_test_acc == toy_accuracy(effective_time(r.lr, r.l2, t_star))
        assert 1.0 <= r.t_star_eta_l2 < 1.05 and r.budget_test_acc is None and not r.diverged
        assert r.acc_test == tuple(toy_accuracy(effective_time(r.lr, r.l2, s)) for s in r.steps)
    (late,) = sweep(toy, [1e-2], [1.0], budget=2.0, budget_step=500)
    assert late.steps[-1] == 500 and late.budget_test_acc == toy_accuracy(5.0) == 0.5


def test_optimal_l2_of_a_toy_dynamics_is_the_peak_at_the_budget():
    """The toy peaks at ηλT = 1: λ_opt = 1/(ηT) = 0.02 for η = 0.5, T = 100; on the default grid the
    smallest λ with ηλT ≥ 1; of two λ equally good at T, the larger."""
    toy = Toy()
    grid = (0.002, 0.0063, 0.02, 0.063, 0.2)
    best = optimal_l2(toy, 0.5, 100, grid)
    accs = tuple(toy_accuracy(effective_time(0.5, lam, 100)) for lam in grid)
    assert best == OptimalL2(0.02, 0.9, grid, accs) and accs[2] == max(accs)
    default = optimal_l2(toy, 0.5, 100)
    assert len(default.l2_grid) == 41 and default.l2_grid[-1] == pytest.approx(1.0)
    assert default.l2_opt == min(lam for lam in default.l2_grid if effective_time(0.5, lam, 100) >= 1)
    assert 0.02 <= default.l2_opt < 0.02 * (default.l2_grid[1] / default.l2_grid[0])
    tie = optimal_l2(toy, 0.5, 100, (0.016, 0.12))  # ηλT = 0.8 and 6: accuracy 0.4 both
    assert tie.acc_grid[0] == tie.acc_grid[1] and tie.l2_opt == 0.12


def test_autol2_on_a_toy_dynamics_divides_each_members_l2_on_its_own_plateau():
    """Window 20, checks every 10 steps, η = 1, λ₀ = 0.1: member 0 (speed 1) reaches training error
    0 at step 10, member 1 (speed 0.1) at step 100. λ is divided when the window's best is no
    better than the best before it: at 30, 50, 70 (member 0) and 120, 140, 160 (member 1), down
    to l2_min = 1e-4. The λ recorded at a check is the one in force after its decision."""
    cfg = AutoL2Config(l2_init=0.1, window=20, check_every=10, l2_min=1e-4)
    auto = autol2(Toy(speeds=(1.0, 0.1)), 1.0, 200, cfg)
    assert [(s, m) for s, m, _ in auto.changes] == [(30, 0), (50, 0), (70, 0), (120, 1), (140, 1), (160, 1)]
    assert [lam for *_, lam in auto.changes] == pytest.approx([1e-2, 1e-3, 1e-4] * 2, rel=1e-12)
    assert auto.steps == tuple(range(0, 201, 10)) and auto.lr == 1.0 and auto.config == cfg.__dict__

    def l2_after(member: int, step: int) -> float:
        return min([cfg.l2_init] + [lam for s, m, lam in auto.changes if m == member and s <= step])

    expected = [math.sqrt(l2_after(0, s) * l2_after(1, s)) for s in auto.steps]
    assert auto.l2 == pytest.approx(expected, rel=1e-12)  # the geometric mean over members
    assert auto.l2[:3] == (0.1, 0.1, 0.1)  # members that agree: the λ itself, exactly


def test_compare_autol2_and_the_scan_on_a_toy_dynamics():
    """AutoL2 from λ₀ = 0.1 peaks (0.9) at step 10; the best constant λ over 200 steps, 0.02, at step
    50 (records at every step): AutoL2 needs 0.2× its steps. From λ₀ = 1e-3 it never gets there.
    The scan records the constant runs at ~100 log-spaced steps: there the constant's t* is its
    first record past step 50."""
    toy, cfg = Toy(), AutoL2Config(l2_init=0.1, window=20, check_every=10, l2_min=1e-4)
    constant = constant_runs(toy, 1.0, 200, [0.002, 0.02], n_records=1000)
    assert [r.steps for r in constant] == [tuple(range(201))] * 2
    auto = autol2(toy, 1.0, 200, cfg)
    assert compare_autol2(auto, constant) == AutoL2Comparison(0.02, 0.9, 50.0, 10.0, 0.2, 0.9)
    slow = AutoL2Config(l2_init=1e-3, window=20, check_every=10, l2_min=1e-4)
    scan = autol2_scan(toy, 1.0, 200, [0.002, 0.02], [cfg, slow])
    t_star = min(s for s in log_steps(200, 100, (200,)) if effective_time(1.0, 0.02, s) >= 1)
    peak = toy_accuracy(effective_time(1.0, 0.02, t_star))  # its first record past step 50
    assert scan.rows[0] == AutoL2Comparison(0.02, peak, float(t_star), 10.0, 10.0 / t_star, 0.9)
    assert scan.rows[1].ratio is None and scan.rows[1].steps_to_best_constant_acc is None
    assert scan.best == 0 and scan.configs == (cfg.__dict__, slow.__dict__)


# (b) the kernel theory and finite networks implement the interface


@pytest.mark.parametrize("cls", [Toy, KernelDynamics, FiniteDynamics])
def test_dynamics_have_the_protocols_call_signatures(cls):
    for name in ("accuracy_curve", "run_l2_controller"):
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Dynamics, name)), (cls, name)


def _check_protocol(dynamics: Dynamics, members: int) -> None:
    """A curve at the asked steps; a controlled run that calls the controller at each record with
    each member's metrics and the λ in force, and records the λ it returns (halved at the last
    record: the run is the constant-λ curve, member by member, and ends with the new λ)."""
    steps = np.array([0, 2, 5, 10], np.int64)
    curve = dynamics.accuracy_curve(0.5, 0.01, steps)
    assert isinstance(curve, Curve) and curve.steps.tolist() == steps.tolist() and curve.acc_test.shape == (4,)
    assert np.all((curve.acc_test >= 0) & (curve.acc_test <= 1)) and not curve.diverged
    calls = []

    def halve_at_the_end(step: int, error: np.ndarray, loss: np.ndarray, l2: np.ndarray) -> np.ndarray:
        calls.append((step, error.shape, loss.shape, l2.tolist()))
        return l2 / 2 if step == 10 else l2

    run = dynamics.run_l2_controller(0.5, 10, 0.01, steps, halve_at_the_end)
    assert isinstance(run, ControlledRun) and run.steps.tolist() == steps.tolist() and not run.diverged
    assert all(getattr(run, k).shape == (members, 4) for k in ("l2", "acc_test", "acc_train", "loss_train"))
    assert calls == [(s, (members,), (members,), [0.01] * members) for s in steps.tolist()]
    np.testing.assert_array_equal(run.l2, [[0.01, 0.01, 0.01, 0.005]] * members)
    np.testing.assert_array_equal(run.acc_test, curve.arrays["acc_test"])


def test_toy_and_kernel_dynamics_answer_as_the_protocol_says():
    _check_protocol(Toy(speeds=(1.0, 3.0)), 2)
    _check_protocol(KernelDynamics(kernel_problem(), init_samples=2, seed=4), 2)


def test_finite_dynamics_answer_as_the_protocol_says(digits):
    _check_protocol(FiniteDynamics(digits, FiniteSweepConfig(depth=2, width=32, seeds=2, float64=True)), 2)


# (c), (d) on finite networks the laws are the training loop's records


def _tiny_network(digits, seeds: int) -> tuple[FiniteSweepConfig, tuple]:
    cfg = FiniteSweepConfig(depth=2, width=32, seeds=seeds, float64=True)
    return cfg, cfg.network(digits.n_classes, digits.input_shape)


def test_finite_sweep_is_the_training_run_recorded_at_the_same_steps(digits):
    """`sweep` on `FiniteDynamics` is `train` run directly at the same records, exactly (float64)."""
    cfg, (init_fn, apply_fn) = _tiny_network(digits, 2)
    kept = {}

    def keep(l2, lr, compute):
        run, arrays = compute()
        kept.update(arrays)
        return run

    (run,) = sweep(FiniteDynamics(digits, cfg), [0.05], [1.0], budget=2.0, n_records=12, keep=keep)
    record = log_steps(40, 12)
    direct = train(
        init_fn,
        apply_fn,
        digits.x_train,
        digits.y_train,
        TrainConfig(learning_rate=1.0, l2=0.05, steps=40, record_steps=tuple(int(s) for s in record), float64=True),
        x_test=digits.x_test,
        labels_test=digits.labels_test,
        seeds=(0, 1),
    )
    acc = np.mean(direct.acc_test, axis=0)
    assert run.steps == tuple(record.tolist()) == tuple(direct.steps.tolist()) and not run.diverged
    assert run.acc_test == tuple(acc.tolist())
    t_star, best = time_to_best(direct.steps, acc)
    assert (run.t_star, run.max_test_acc, run.t_star_eta_l2) == (t_star, best, t_star * 1.0 * 0.05)
    np.testing.assert_array_equal(kept["acc_test"], direct.acc_test)
    np.testing.assert_array_equal(kept["loss_data"], direct.loss_data)


def test_finite_autol2_changes_each_seeds_l2_and_records_what_train_records(digits):
    """Two seeds, each with its own AutoL2 rule (changes name the member, 0 or 1, at different
    steps). Replaying the changes through `train`'s ``l2_controller`` gives the same training,
    exactly, and `TrainResult.l2_records` (the λ in force after each record) per member, whose
    geometric mean over the seeds is the λ AutoL2 records."""
    cfg, (init_fn, apply_fn) = _tiny_network(digits, 2)
    auto_cfg = AutoL2Config(l2_init=1e-2, window=20, check_every=5, l2_min=1e-5)
    auto = autol2(FiniteDynamics(digits, cfg), 2.0, 150, auto_cfg)
    by_member = [[(s, lam) for s, m, lam in auto.changes if m == i] for i in (0, 1)]
    assert by_member[0] and by_member[1], auto.changes
    assert {s for s, _ in by_member[0]} != {s for s, _ in by_member[1]}, "the seeds should plateau apart"

    def l2_after(member: int, step: int) -> float:
        return ([auto_cfg.l2_init] + [lam for s, lam in by_member[member] if s <= step])[-1]

    def replay(step: int, row: dict) -> np.ndarray:
        assert np.asarray(row["l2"]).tolist() == [l2_after(i, step - 1) for i in (0, 1)]  # before the decision
        return np.array([l2_after(0, step), l2_after(1, step)])

    direct = train(
        init_fn,
        apply_fn,
        digits.x_train,
        digits.y_train,
        TrainConfig(learning_rate=2.0, l2=1e-2, steps=150, record_steps=auto.steps, float64=True),
        x_test=digits.x_test,
        labels_train=digits.labels_train,
        labels_test=digits.labels_test,
        seeds=(0, 1),
        l2_controller=replay,
    )
    lam = np.array([[l2_after(i, s) for s in auto.steps] for i in (0, 1)])
    np.testing.assert_array_equal(direct.l2_records, lam)
    assert auto.l2 == pytest.approx(np.sqrt(lam[0] * lam[1]).tolist(), rel=1e-12)
    np.testing.assert_array_equal(auto.acc_test, np.mean(direct.acc_test, axis=0))
    np.testing.assert_array_equal(auto.loss_train, np.mean(direct.loss_data, axis=0))


# (e) the keep hook


def test_keep_sees_each_pair_once_lambda_major_and_a_kept_run_is_not_computed():
    toy, stored, seen = Toy(), {}, []

    def keep(l2, lr, compute):
        seen.append((l2, lr))
        if (l2, lr) not in stored:
            run, arrays = compute()
            assert set(arrays) == {"acc_test"} and arrays["acc_test"].shape == (1, len(run.steps))
            stored[l2, lr] = run
        return stored[l2, lr]

    pairs = [(1e-3, 0.5), (1e-3, 1.0), (1e-2, 0.5), (1e-2, 1.0)]
    first = sweep(toy, [1e-3, 1e-2], [0.5, 1.0], keep=keep)
    assert seen == pairs == toy.calls
    again = sweep(toy, [1e-3, 1e-2], [0.5, 1.0], keep=keep)
    assert seen == pairs * 2 and toy.calls == pairs, "a kept run was computed again"
    assert again == first == sweep(Toy(), [1e-3, 1e-2], [0.5, 1.0])
    with pytest.raises(ValueError, match="^l2_values: "):
        sweep(toy, [1e-2, 0.0], [1.0], keep=keep)
    assert len(seen) == 8, "a bad pair must be refused before any run is asked for"


# (f) records round-trip through strict JSON


def _strict(record) -> dict:
    return json.loads(json.dumps(record.to_json(), allow_nan=False))


def test_law_records_round_trip_through_strict_json_with_nan():
    nan = math.nan
    run = LawRun(0.1, 1.0, nan, nan, nan, None, True, (0, 10, 20), (0.5, nan, nan))
    stored = _strict(run)
    assert stored["t_star"] is None and stored["acc_test"] == [0.5, None, None] and stored["budget_test_acc"] is None
    back = LawRun.from_json(stored)
    assert math.isnan(back.t_star) and math.isnan(back.t_star_eta_l2) and math.isnan(back.max_test_acc)
    assert back.budget_test_acc is None and back.diverged and back.steps == (0, 10, 20)
    assert back.acc_test[0] == 0.5 and all(math.isnan(a) for a in back.acc_test[1:])
    assert _strict(back) == stored
    cfg = AutoL2Config()
    auto = AutoL2Run(
        (0, 10), (0.1, 0.01), (nan, 0.5), (0.1, nan), (nan, 1.0), ((10, 1, 0.01),), 1.0, True, cfg.__dict__
    )
    stored = _strict(auto)
    back = AutoL2Run.from_json(stored)
    assert back.changes == ((10, 1, 0.01),) and type(back.changes[0][0]) is int and back.config == cfg.__dict__
    assert math.isnan(back.acc_test[0]) and math.isnan(back.acc_train[1]) and math.isnan(back.loss_train[0])
    assert back.l2 == auto.l2 and back.diverged and _strict(back) == stored
    opt = OptimalL2(0.02, 0.9, (0.02, 0.2), (0.9, nan))
    assert math.isnan(OptimalL2.from_json(_strict(opt)).acc_grid[1]) and _strict(opt)["acc_grid"] == [0.9, None]
    with pytest.raises(ValueError, match="LawRun.t_star"):
        LawRun.from_json({**_strict(run), "t_star": "soon"})
