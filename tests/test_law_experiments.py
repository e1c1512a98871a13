"""The laws on finite networks and the sweep / optimal-l2 / autol2 commands
(`ntk_l2/laws/`, `ntk_l2/experiments/laws.py`, `ntk_l2/cli/commands.py`)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error
from ntk_l2.cli.commands import main
from ntk_l2.data import datasets as data
from ntk_l2.experiments.laws import finite_sweep
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.laws import AutoL2Config, FiniteDynamics, FiniteSweepConfig, LawRun, autol2
from ntk_l2.networks import arch

TINY = FiniteSweepConfig(depth=2, width=32, seeds=2, n_records=12)
RUN_KEYS = {"l2", "lr", "t_star", "t_star_eta_l2", "max_test_acc", "budget_test_acc", "diverged"}


def as_json(runs) -> str:
    """Runs as the strict JSON a sweep's records are stored as (NaN as null): equal runs, equal text."""
    return json.dumps([r.to_json() for r in runs], sort_keys=True, allow_nan=False)


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(n_train=48, n_test=40, seed=0)


def test_killed_sweep_resumes_to_the_uninterrupted_result(digits, tmp_path, monkeypatch):
    full = finite_sweep(digits, [0.05, 0.1], [1.0], TINY, tmp_path / "full")
    import ntk_l2.finite.train as train_module  # finite_sweep imports train from it at call time

    real = train_module.train
    calls = []

    def killed_after_first(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        finite_sweep(digits, [0.05, 0.1], [1.0], TINY, tmp_path / "resumed")
    monkeypatch.setattr(train_module, "train", lambda *a, **k: calls.append(2) or real(*a, **k))
    resumed = finite_sweep(digits, [0.05, 0.1], [1.0], TINY, tmp_path / "resumed")
    assert calls == [1, 2], "the finished run must be read back, only the killed one trained"
    assert as_json(resumed) == as_json(full)
    for run in full:
        assert isinstance(run, LawRun) and RUN_KEYS <= set(run.to_json())
        assert run.steps[-1] == int(np.ceil(2.0 / (run.lr * run.l2)))


def test_l2_controller_equals_the_same_schedule_given_in_advance(digits):
    """A controller that switches λ at step 20 trains exactly like the schedule λ(s) that
    switches at step 20 (float64; same operations, 1e-12)."""
    net = arch.fully_connected(2, width=32, out_dim=10)
    record = (0, 10, 20, 30, 40)
    common = dict(learning_rate=1.0, steps=40, record_steps=record, float64=True)

    def controller(step, row):
        assert row["fx_train"].shape[0] == 2
        return np.full(2, 1e-3) if step == 20 else None

    dynamic = train(
        net.init_fn,
        net.apply_fn,
        digits.x_train,
        digits.y_train,
        TrainConfig(l2=0.05, **common),
        seeds=(0, 1),
        l2_controller=controller,
    )
    fixed = train(
        net.init_fn,
        net.apply_fn,
        digits.x_train,
        digits.y_train,
        TrainConfig(l2=lambda s: jnp.where(s < 20, 0.05, 1e-3), **common),
        seeds=(0, 1),
    )
    assert relative_error(dynamic.fx_train, fixed.fx_train) < 1e-12
    np.testing.assert_array_equal(dynamic.l2_records, [[0.05, 0.05, 1e-3, 1e-3, 1e-3]] * 2)


def test_autol2_finite_divides_l2_on_plateaus_and_without_changes_is_constant(digits):
    one_seed = FiniteDynamics(digits, FiniteSweepConfig(depth=2, width=32, seeds=1, float64=True))
    for metric in ("loss", "train_error"):  # the loss keeps creeping down here; the training error plateaus
        cfg = AutoL2Config(l2_init=0.05, window=20, check_every=5, l2_min=1e-4, metric=metric)
        res = autol2(one_seed, 1.0, 120, cfg)
        lam = np.asarray(res.l2)
        assert lam[0] == 0.05 and np.all(np.diff(lam) <= 0) and lam[-1] >= 1e-4
        assert metric == "loss" or res.changes, "λ never changed on a plateau: the rule is not tested"
        for step, _, new in res.changes:
            assert np.isclose(lam[res.steps.index(step)], new)
    frozen = autol2(one_seed, 1.0, 60, AutoL2Config(l2_init=1e-3, l2_min=1e-3, window=20, check_every=5))
    net = arch.fully_connected(2, width=32, out_dim=10)
    const = train(
        net.init_fn,
        net.apply_fn,
        digits.x_train,
        digits.y_train,
        TrainConfig(learning_rate=1.0, l2=1e-3, steps=60, record_steps=frozen.steps, float64=True),
        x_test=digits.x_test,
        labels_test=digits.labels_test,
        seeds=(0,),
    )
    assert frozen.changes == () and frozen.l2 == (1e-3,) * len(frozen.steps)
    np.testing.assert_allclose(frozen.acc_test, const.acc_test[0], atol=0)


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("mode", ["theory", "finite"])
def test_sweep_command_writes_the_documented_summary(mode, tmp_path, capsys):
    code, stdout, err = _run(
        [
            "sweep",
            "--mode",
            mode,
            "--dataset",
            "digits",
            "--n-train",
            48,
            "--n-test",
            40,
            "--depth",
            2,
            "--width",
            32,
            "--l2",
            "0.05,0.1",
            "--lr",
            "1",
            "--budget-step",
            30,
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["runs"]) == 2 and all(RUN_KEYS <= set(r) for r in summary["runs"])
    assert all(r["budget_test_acc"] is not None for r in summary["runs"])
    assert (tmp_path / "laws.png").exists() and "t*ηλ varies by a factor" in stdout
    if mode == "finite":
        assert summary["theory_runs"] and len(list((tmp_path / "runs").glob("*.json"))) == 2


def test_optimal_l2_and_autol2_commands(tmp_path, capsys):
    code, stdout, err = _run(
        [
            "optimal-l2",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            64,
            "--lr",
            1,
            "--budget-step",
            200,
            "--probe-l2",
            0.05,
            "--grid",
            "1e-4,1e-3,1e-2,1e-1",
            "--out",
            tmp_path / "opt",
        ],
        capsys,
    )
    assert code == 0, err
    s = json.loads((tmp_path / "opt" / "summary.json").read_text())
    assert s["l2_opt_one_run"] == pytest.approx(s["probe"]["t_star"] * 0.05 / 200)
    assert {"l2_opt_kernel", "l2_opt_grid", "acc_at_budget_grid", "acc_at_budget_one_run"} <= set(s)
    code, stdout, err = _run(
        [
            "autol2",
            "--dataset",
            "digits",
            "--n-train",
            64,
            "--n-test",
            64,
            "--lr",
            1,
            "--steps",
            300,
            "--constant-l2",
            "1e-3,1e-2",
            "--window",
            20,
            "--check-every",
            5,
            "--l2-init",
            0.05,
            "--out",
            tmp_path / "auto",
        ],
        capsys,
    )
    assert code == 0, err

    def strict(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}, which is not JSON")

    s = json.loads((tmp_path / "auto" / "summary.json").read_text(), parse_constant=strict)
    assert {"best_constant_l2", "best_constant_steps", "autol2_steps_to_best_constant_acc", "speedup_ratio"} <= set(s)
    assert (tmp_path / "auto" / "autol2.png").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sweep", "--l2", "0,1e-3", "--out", "x"], "--l2: expected comma-separated positive numbers"),
        (["sweep", "--lr", "a", "--out", "x"], "--lr: expected comma-separated positive numbers"),
        (
            [
                "autol2",
                "--mode",
                "theory",
                "--n-train",
                32,
                "--n-test",
                32,
                "--steps",
                10,
                "--init-samples",
                -1,
                "--out",
                "x",
            ],
            "--init-samples: must be >= 0",
        ),
        (["autol2", "--mode", "theory", "--steps", 10, "--min-wait", -1, "--out", "x"], "--min-wait: must be >= 0"),
    ],
)
def test_bad_law_flags_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith("ntk-l2: error: ") and message in err
    assert not (tmp_path / "x").exists()


def test_standard_parameterization_kernel_is_the_mean_empirical_ntk():
    """L4: in the standard parameterization the theory's kernel is the width-dependent NTK that
    neural-tangents computes for the given width; the empirical NTK of finite networks of that
    width averages to it. 8 seeds at width 256: relative fluctuations ~ (8·256)^{-1/2}·O(3) ≈ 7%,
    measured 4.4%; bound 10%. The NTK-parameterization kernel is checked the same way."""
    import jax
    from jax.experimental import enable_x64

    from ntk_l2.experiments.laws import law_problem
    from ntk_l2.networks.nt import nt

    ds = data.load_digits(n_train=8, n_test=8, seed=0)
    for par in ("standard", "ntk"):
        problem = law_problem(ds, depth=2, parameterization=par, width=256)
        net = arch.fully_connected(2, width=256, out_dim=ds.n_classes, parameterization=par)
        ntk_fn = nt.empirical_ntk_fn(
            net.apply_fn, trace_axes=(), implementation=nt.NtkImplementation.NTK_VECTOR_PRODUCTS
        )
        empirical = []
        with enable_x64():
            for seed in range(8):
                _, params = net.init_fn(jax.random.PRNGKey(seed), (-1, ds.x_train.shape[1]))
                params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
                e = np.asarray(ntk_fn(jnp.asarray(ds.x_train), None, params))  # (n, n, c, c)
                empirical.append(np.einsum("ijcc->ij", e) / e.shape[-1])
        assert relative_error(np.mean(empirical, axis=0), problem.k_train_train) < 0.10, par
    sp, ntk = law_problem(ds, 2, "standard", 256), law_problem(ds, 2, "ntk", 256)
    assert np.trace(sp.k_train_train) > 50 * np.trace(ntk.k_train_train)  # grows with the width (~ width/σ²)


def test_standard_parameterization_runs_through_the_sweep_command(tmp_path, capsys):
    code, stdout, err = _run(
        [
            "sweep",
            "--mode",
            "finite",
            "--parameterization",
            "standard",
            "--dataset",
            "digits",
            "--n-train",
            48,
            "--n-test",
            40,
            "--depth",
            2,
            "--width",
            32,
            "--l2",
            "0.05,0.1",
            "--lr",
            "0.02",
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parameterization"] == "standard" and summary["finite"]["parameterization"] == "standard"
    assert RUN_KEYS <= set(summary["runs"][0])
    with pytest.raises(ValueError, match="parameterization"):
        FiniteSweepConfig(parameterization="mup")


def test_batchnorm_cnn_is_scale_invariant_in_its_convolutions():
    """With a normalization after every convolution, scaling a convolution's weights leaves the
    outputs unchanged (those layers have degree 0, `ntk_l2/networks/batchnorm.py`); the readout has degree 1."""
    import jax

    from ntk_l2.networks.batchnorm import convolutional_batchnorm

    init_fn, apply_fn = convolutional_batchnorm(2, 6, 3, parameterization="standard")
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 12, 12, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (20, 12, 12, 1))
    out = np.asarray(apply_fn(params, x))
    scale = lambda i, c: [jax.tree_util.tree_map(lambda a: c * a, p) if j == i else p for j, p in enumerate(params)]  # noqa: E731
    conv_layers = [i for i, p in enumerate(params) if isinstance(p, tuple) and p and getattr(p[0], "ndim", 0) == 4]
    assert len(conv_layers) == 2
    for i in conv_layers:
        np.testing.assert_allclose(np.asarray(apply_fn(scale(i, 3.0), x)), out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply_fn(scale(len(params) - 1, 3.0), x)), 3 * out, rtol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        convolutional_batchnorm(2, 0)


def test_cnn_sweeps_with_and_without_batchnorm(tmp_path, capsys):
    common = [
        "sweep",
        "--mode",
        "finite",
        "--arch",
        "cnn",
        "--dataset",
        "digits",
        "--n-train",
        48,
        "--n-test",
        40,
        "--depth",
        2,
        "--width",
        4,
        "--l2",
        "0.05,0.1",
        "--lr",
        "0.5",
    ]
    code, _, err = _run(common + ["--out", tmp_path / "plain"], capsys)
    assert code == 0, err
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert plain["finite"]["arch"] == "cnn" and plain["theory_runs"]  # homogeneous CNN: the theory is overlaid
    code, _, err = _run(common + ["--batchnorm", "--out", tmp_path / "bn"], capsys)
    assert code == 0, err
    bn = json.loads((tmp_path / "bn" / "summary.json").read_text())
    assert bn["finite"]["batchnorm"] and bn["theory_runs"] is None and bn["reference_max_test_acc"] is None
    assert all(RUN_KEYS <= set(r) for r in bn["runs"]) and (tmp_path / "bn" / "laws.png").exists()
    code, _, err = _run(["sweep", "--mode", "theory", "--arch", "cnn", "--batchnorm", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no theory for batch normalization" in err
    code, _, err = _run(
        ["autol2", "--mode", "theory", "--arch", "cnn", "--batchnorm", "--steps", 10, "--out", tmp_path / "y"], capsys
    )
    assert code == 2 and "no theory for batch normalization" in err and not (tmp_path / "y").exists()
    auto = [
        "autol2",
        "--mode",
        "finite",
        "--arch",
        "cnn",
        "--batchnorm",
        "--dataset",
        "digits",
        "--n-train",
        48,
        "--n-test",
        40,
        "--depth",
        2,
        "--width",
        4,
        "--lr",
        "0.5",
        "--steps",
        60,
        "--constant-l2",
        "0.01,0.1",
        "--window",
        20,
        "--check-every",
        5,
        "--out",
        tmp_path / "auto",
    ]
    code, _, err = _run(auto, capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert s["finite"]["batchnorm"] and [r["l2"] for r in s["constant"]] == [0.01, 0.1]
    assert "AutoL2: trained" in err
    code, _, err = _run(auto, capsys)  # run again: every run, AutoL2's included, is read back, not retrained
    assert code == 0 and "AutoL2: finished earlier" in err and "trained;" not in err
    assert json.loads((tmp_path / "auto" / "summary.json").read_text()) == s
    with pytest.raises(ValueError, match="batchnorm"):
        FiniteSweepConfig(batchnorm=True)
    with pytest.raises(ValueError, match="NHWC"):
        FiniteSweepConfig(arch="cnn").network(10, (64,))


def test_autol2_theory_scan_agrees_with_the_autol2_command_in_theory(tmp_path):
    """The scan that picks AutoL2's settings from the kernel (`autol2_scan` on `KernelDynamics`)
    reports, for each configuration, what `run_autol2` in theory mode reports for it alone (same
    map, same records, same draws of f_0): the reach step and the ratio to the best constant
    run's t*, exactly."""
    from ntk_l2.experiments.laws import law_problem, run_autol2
    from ntk_l2.laws import KernelDynamics, autol2_scan

    ds = data.load_digits(n_train=64, n_test=64, seed=0)
    problem = law_problem(ds, depth=2, parameterization="standard", width=64)  # η = 0.25: half its stability limit
    configs = [AutoL2Config(l2_init=0.03, window=20, check_every=10, metric=m) for m in ("train_error", "loss")]
    grid = [1e-3, 3e-3, 1e-2]
    scan = autol2_scan(KernelDynamics(problem, 2), 0.25, 400, grid, configs)
    assert len(scan.rows) == 2 and scan.configs == tuple(c.__dict__ for c in configs)
    assert len({(r.best_constant_l2, r.best_constant_acc, r.best_constant_steps) for r in scan.rows}) == 1
    assert scan.rows[0].best_constant_l2 in grid
    assert any(r.ratio is not None for r in scan.rows), "no configuration reaches the constant: a weak test"
    for cfg, row in zip(configs, scan.rows, strict=True):
        alone = run_autol2(
            ds,
            tmp_path / cfg.metric,
            "theory",
            0.25,
            400,
            grid,
            cfg,
            FiniteSweepConfig(depth=2, width=64, parameterization="standard"),
            init_samples=2,
        )
        assert alone.best_constant_l2 == row.best_constant_l2
        assert alone.best_constant_steps == row.best_constant_steps
        assert alone.autol2_steps_to_best_constant_acc == row.steps_to_best_constant_acc
        assert alone.speedup_ratio == row.ratio
        assert alone.autol2_max_test_acc == pytest.approx(row.max_test_acc, abs=0)
    ratios = [np.inf if r.ratio is None else r.ratio for r in scan.rows]
    assert scan.best == (int(np.argmin(ratios)) if np.isfinite(min(ratios)) else None)


def test_autol2_when_the_best_constant_run_learns_nothing_is_a_one_line_error(tmp_path, capsys):
    """Theory from single-network f_0 over 2 steps: every constant λ is best at step 0, so there is
    no t* to compare AutoL2 with. Once a traceback (a None ratio formatted), on every rerun too."""
    from ntk_l2.experiments.laws import run_autol2

    argv = [
        "autol2",
        "--mode",
        "theory",
        "--n-train",
        32,
        "--n-test",
        32,
        "--steps",
        2,
        "--init-samples",
        4,
        "--constant-l2",
        "1e-3,1e-2",
        "--out",
        tmp_path / "auto",
    ]
    for _ in range(2):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.startswith("ntk-l2: error: steps: ") and err.count("\n") == 1, err
        assert "step 0" in err and "--steps" in err
    assert not (tmp_path / "auto" / "summary.json").exists()
    ds = data.load_digits(n_train=32, n_test=32, seed=0)
    with pytest.raises(ValueError, match=r"^steps: .*step 0.*--steps"):
        run_autol2(ds, tmp_path / "api", "theory", 1.0, 2, [1e-3, 1e-2], init_samples=4)


def test_l2_values_equal_to_six_digits_are_separate_resumable_runs(digits, tmp_path, monkeypatch):
    """λ = 0.05 and 0.05 + 1e-10 once shared the file l2=0.05_lr=1 and retrained on every rerun."""
    import ntk_l2.finite.train as train_module

    lams = [0.05, 0.05 + 1e-10]
    first = finite_sweep(digits, lams, [1.0], TINY, tmp_path)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    assert [r.l2 for r in first] == lams
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("a stored run was retrained"))
    again = finite_sweep(digits, lams, [1.0], TINY, tmp_path)
    assert as_json(again) == as_json(first)


def test_tampered_sweep_run_is_retrained_to_the_untampered_result(digits, tmp_path):
    from ntk_l2.experiments.runs import InvalidRunWarning

    full = finite_sweep(digits, [0.05, 0.1], [1.0], TINY, tmp_path)
    (path,) = [p for p in (tmp_path / "runs").glob("*.json") if json.loads(p.read_text())["config"]["l2"] == 0.1]
    record = json.loads(path.read_text())
    record["summary"]["max_test_acc"] = 1.0
    path.write_text(json.dumps(record))
    with pytest.warns(InvalidRunWarning, match=path.name):
        again = finite_sweep(digits, [0.05, 0.1], [1.0], TINY, tmp_path)
    assert as_json(again) == as_json(full)


def test_laws_sweep_on_finite_networks_gets_each_run_through_its_keep_hook(digits, monkeypatch):
    """`ntk_l2.laws.sweep` on `FiniteDynamics` writes nothing: each pair's run comes from
    ``keep(l2, lr, compute)``, λ-major, every pair checked before any run. A hook returning kept
    runs trains nothing; one returning ``compute()[0]`` gives the sweep without a hook, and
    ``compute`` hands it the arrays to keep."""
    import ntk_l2.finite.train as train_module
    from ntk_l2 import laws

    dynamics = laws.FiniteDynamics(digits, TINY)

    def tiny_sweep(l2s, lrs, keep=None):
        return laws.sweep(dynamics, l2s, lrs, TINY.budget, TINY.budget_step, n_records=TINY.n_records, keep=keep)

    seen = []

    def kept(l2, lr, compute):
        seen.append((l2, lr))
        return LawRun(l2, lr, 3.0, 3.0 * l2 * lr, 0.5, None, False)

    real = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("a kept run was trained"))
    out = tiny_sweep([0.05, 0.1], [1.0, 0.5], kept)
    assert seen == [(0.05, 1.0), (0.05, 0.5), (0.1, 1.0), (0.1, 0.5)]
    assert all(type(v) is float for pair in seen for v in pair)
    assert out == tuple(LawRun(lam, eta, 3.0, 3.0 * lam * eta, 0.5, None, False) for lam, eta in seen)
    with pytest.raises(ValueError, match="^l2_values: "):
        tiny_sweep([0.05, 0.0], [1.0], kept)
    assert len(seen) == 4, "a bad pair must be refused before the good ones run"
    monkeypatch.setattr(train_module, "train", real)
    arrays = []

    def computed(l2, lr, compute):
        run, kept_arrays = compute()
        arrays.append(kept_arrays)
        return run

    hooked = tiny_sweep([0.1], [1.0], computed)
    assert as_json(hooked) == as_json(tiny_sweep([0.1], [1.0]))
    assert set(arrays[0]) == {"steps", "acc_test", "loss_data"} and arrays[0]["acc_test"].shape[0] == TINY.seeds
    assert list(hooked[0].steps) == arrays[0]["steps"].tolist()
