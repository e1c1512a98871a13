"""Theory vs finite width (`ntk_l2/experiments/compare.py`): resumable per-width runs, the default η,
and the comparison on real MNIST in a small mode."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from ntk_l2.cli.commands import main
from ntk_l2.data import datasets as data
from ntk_l2.experiments import compare
from ntk_l2.experiments.compare import CompareConfig, run_comparison
from ntk_l2.networks import arch
from ntk_l2.theory import stability_limit, stable_learning_rate
from ntk_l2.theory.discrete import stability_limit as stability_limit_momentum

SMALL = CompareConfig(depth=2, widths=(32, 128), learning_rate=5.0, l2=1e-2, steps=12, seeds=2, n_records=6, n_probe=4)


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(n_train=48, n_test=40, seed=0)


def test_interrupted_comparison_resumes_to_the_uninterrupted_result(digits, tmp_path, monkeypatch):
    """A comparison killed after its first width, run again, trains only the missing
    width and returns exactly what an uninterrupted run returns."""
    full = run_comparison(digits, SMALL, out_dir=tmp_path / "full")
    real = compare.compare_width
    trained = []

    def killed_after_first(ds, cfg, width, *args):
        if trained:
            raise KeyboardInterrupt
        trained.append(width)
        return real(ds, cfg, width, *args)

    monkeypatch.setattr(compare, "compare_width", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(digits, SMALL, out_dir=tmp_path / "resumed")
    assert sorted(p.name for p in (tmp_path / "resumed" / "runs").iterdir()) == ["width32.json", "width32.npz"]

    calls = []
    monkeypatch.setattr(
        compare, "compare_width", lambda ds, cfg, width, *a: calls.append(width) or real(ds, cfg, width, *a)
    )
    resumed = run_comparison(digits, SMALL, out_dir=tmp_path / "resumed")
    assert calls == [128]

    def content(result):  # everything but where the figure was written
        return json.dumps(dataclasses.replace(result, figure=None).to_json(), sort_keys=True, allow_nan=False)

    assert content(resumed) == content(full)
    again = run_comparison(digits, SMALL, out_dir=tmp_path / "resumed")
    assert calls == [128] and again.to_json() == resumed.to_json()
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text()) == again.to_json()


def test_changed_settings_or_data_retrain(digits, tmp_path, monkeypatch):
    run_comparison(digits, SMALL, out_dir=tmp_path)
    real = compare.compare_width
    calls = []
    monkeypatch.setattr(
        compare, "compare_width", lambda ds, cfg, width, *a: calls.append(width) or real(ds, cfg, width, *a)
    )
    run_comparison(digits, CompareConfig(**{**SMALL.__dict__, "l2": 2e-2}), out_dir=tmp_path)
    other = data.load_digits(n_train=48, n_test=40, seed=1)
    run_comparison(other, SMALL, out_dir=tmp_path)
    assert calls == [32, 128, 32, 128]


def test_per_width_arrays_are_stored(digits, tmp_path):
    run_comparison(digits, SMALL, out_dir=tmp_path)
    with np.load(tmp_path / "runs" / "width128.npz") as npz:
        m, c = digits.y_test.shape
        assert npz["fx_test"].shape == npz["fx_test_theory_discrete"].shape == (2, len(npz["steps"]), m, c)
        # Theory and network start from the same outputs f_0.
        np.testing.assert_allclose(npz["fx_test_theory_discrete"][:, 0], npz["fx_test"][:, 0], rtol=1e-6, atol=1e-7)


def test_default_learning_rate_is_stable_and_caps_the_decay_per_step(digits):
    """F4: ½ × the D5 stability limit of the infinite-width kernel, and ηλ ≤ 0.1."""
    k = compare.infinite_width_kernels(digits, SMALL)["train"]
    mu = float(np.linalg.eigvalsh(k)[-1])
    n_out = digits.y_train.size
    for lam in (1e-5, 1e-2, 0.5):
        eta = stable_learning_rate(k, n_out, lam, 3)
        assert eta <= 0.5 * stability_limit(mu, float(n_out), lam, 3) * (1 + 1e-12)
        assert eta * lam <= 0.1 * (1 + 1e-12)
    assert stable_learning_rate(k, n_out, 0.0, 3) == pytest.approx(0.5 * stability_limit(mu, float(n_out), 0.0, 3))


def test_real_mnist_comparison_small_mode(mnist_dir, tmp_path):
    """F2 on the reference protocol (bias-free ReLU, 3 hidden layers, 512 MNIST samples from the
    test-split protocol, λ = 1e-2, t = 2/(ηλ) with ηλ = 0.1) at small widths and few
    test points so that it runs in CI. The full run is in the README.

    Bounds: widths 128 and 1024, 2 seeds, 200 test points. Over data seeds 0, 1, 2 the
    max-over-time error at width 1024 measured 0.125–0.152 (at 128: 0.35–0.43).
    Finite-width corrections scale as width^-1/2, so 0.25 leaves 1.6× headroom for
    seed noise while an error in the conventions (a factor in η, λ, N or the degree)
    gives errors of order 1. From 128 to 1024 the error must fall below 0.6× (expected
    8^-1/2 = 0.35; measured 0.35–0.44).
    """
    ds = data.load_mnist(data_dir=mnist_dir, n_train=512, n_test=200, seed=0)
    cfg = CompareConfig(depth=3, widths=(128, 1024), learning_rate=10.0, l2=1e-2, steps=20, seeds=2, n_records=8)
    summary = run_comparison(ds, cfg, out_dir=tmp_path)
    medians = summary.median_rel_err_test_max
    assert medians[1] < 0.25, medians
    assert medians[1] < 0.6 * medians[0], medians
    w = summary.widths["1024"]
    assert not any(w.diverged)
    gap = np.abs(np.asarray(w.acc_test_finite) - np.asarray(w.acc_test_theory))
    assert np.max(gap) <= 0.05, gap  # 10 of 200 test points
    # ‖Θ_t‖/‖Θ_0‖ against (1 − ηλ)^{2(k−1)t}: measured within 2.9% at width 1024 (the
    # kernel's own motion is O(width^-1/2)); 10% leaves room, a wrong k is off by ×e^{±4}.
    np.testing.assert_allclose(w.kernel_ratio, w.kernel_ratio_theory, rtol=0.1)


def test_compare_config_activation_is_checked():
    with pytest.raises(ValueError, match="activation"):
        CompareConfig(activation="tanh")
    assert CompareConfig(activation="linear").activation == "linear"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"momentum": 1.0}, "momentum: must be a number in [0, 1)"),
        ({"momentum": -0.1}, "momentum: must be a number in [0, 1)"),
        ({"momentum": float("nan")}, "momentum: must be a number in [0, 1)"),
        ({"momentum": True}, "momentum: must be a number in [0, 1)"),
        ({"nesterov": True}, "nesterov: only meaningful with momentum > 0"),
        ({"momentum": 0.9, "nesterov": 1}, "nesterov: must be True or False"),
        ({"batch_size": 0}, "batch_size: must be None or an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size: must be None or an integer >= 1"),
        ({"batch_size": True}, "batch_size: must be None or an integer >= 1"),
    ],
)
def test_compare_config_optimizer_fields_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CompareConfig(**kwargs)


def test_plain_gradient_descent_is_unchanged(digits, tmp_path):
    """momentum = 0, full batch: the stored run's settings carry none of the optimizer fields
    (runs stored before they existed stay valid), the theory is the plain map D1–D6 (the NumPy
    reference, to round-off: both float64, 1e-10 leaves a factor 1e4 over the measured ~1e-14),
    and the kernel and layer-norm theory are (1 − ηλ)^{2(k−1)t} and (1 − ηλ)^t exactly."""
    from ntk_l2.theory.reference.closed_form import gradient_descent_mse_l2 as flow_reference
    from ntk_l2.theory.reference.discrete import gradient_descent_mse_l2_discrete as discrete_reference

    cfg = CompareConfig(**{**SMALL.__dict__, "widths": (32,), "momentum": 0.0, "nesterov": False, "batch_size": None})
    summary = run_comparison(digits, cfg, out_dir=tmp_path)
    stored = json.loads((tmp_path / "runs" / "width32.json").read_text())["config"]
    assert not {"momentum", "nesterov", "batch_size"} & set(stored)
    assert summary.continuous_theory == "gradient flow"
    k = compare.infinite_width_kernels(digits, cfg)
    with np.load(tmp_path / "runs" / "width32.npz") as npz:
        steps, f0, fs0 = npz["steps"], npz["fx_train"][:, 0].astype(float), npz["fx_test"][:, 0].astype(float)
        for name, solver, times in (
            ("discrete", discrete_reference, steps),
            ("continuous", flow_reference, steps * 1.0),
        ):
            predict = solver(k["train"], digits.y_train, cfg.learning_rate, cfg.l2, cfg.depth + 1)
            ref = np.stack([predict(times, f0[i], fs0[i], k["test"])[1] for i in range(cfg.seeds)])
            got = npz[f"fx_test_theory_{name}"]
            assert np.max(np.abs(got - ref)) <= 1e-10 * np.max(np.abs(ref)), name
    w = summary.widths["32"]
    keep, k2 = 1.0 - cfg.learning_rate * cfg.l2, 2 * cfg.depth
    assert w.kernel_ratio_theory == tuple(keep ** (k2 * float(s)) for s in w.kernel_steps)
    assert w.layer_norm_ratio_theory == tuple(keep ** float(s) for s in w.steps)


@pytest.mark.parametrize("nesterov", [False, True])
def test_wide_network_tracks_the_momentum_theory(nesterov):
    """Depth 1 (k = 2), width 4096, β = 0.9 at half the momentum stability limit, 2(1 − β)/(ηλ)
    steps on 32 digits: the network follows the discrete momentum map M1–M11 from its own f_0
    (F2 and F3 with momentum).

    Measured max-over-time error 0.036 and 0.050 (2 seeds, both forms); the bound 0.1 is 2×
    that, and finite-width errors fall as width^-1/2 (0.15 at width 256). The plain map with the
    effective step η/(1 − β) — the momentum map's slow limit, the natural wrong model — misses by
    0.29–0.37, so the test tells the maps apart. The kernel ratio and the layer norms follow the
    momentum scale a_t (M5): measured within 0.15% and 0.01%; bounds 1%.
    """
    from ntk_l2.theory.discrete import gradient_descent_mse_l2_discrete

    ds = data.load_digits(n_train=32, n_test=32, seed=0)
    k = compare.infinite_width_kernels(ds, CompareConfig(depth=1))
    eta = stable_learning_rate(k["train"], ds.y_train.size, 1e-2, 2, momentum=0.9, nesterov=nesterov)
    cfg = CompareConfig(
        depth=1,
        widths=(4096,),
        learning_rate=eta,
        l2=1e-2,
        steps=int(round(0.2 / (eta * 1e-2))),
        seeds=2,
        n_records=10,
        momentum=0.9,
        nesterov=nesterov,
    )
    summary, arrays = compare.compare_width(ds, cfg, 4096, k)
    assert max(summary.rel_err_test_max) < 0.1, summary.rel_err_test_max
    assert (summary.rel_err_test_max_continuous is not None) == (not nesterov)  # no flow is derived for Nesterov
    assert ("rel_err_test_max_continuous" in summary.to_json()) == (not nesterov)  # absent, as always written
    wrong = gradient_descent_mse_l2_discrete(k["train"], ds.y_train, eta / (1 - cfg.momentum), cfg.l2, 2)
    for seed in range(cfg.seeds):
        f0, fs0 = arrays["fx_train"][seed, 0].astype(float), arrays["fx_test"][seed, 0].astype(float)
        miss = compare.relative_error(
            arrays["fx_test"][seed], np.asarray(wrong(arrays["steps"], f0, fs0, k["test"])[1])
        )
        assert np.max(miss) > 2 * summary.rel_err_test_max[seed]
    np.testing.assert_allclose(summary.kernel_ratio, summary.kernel_ratio_theory, rtol=0.01)
    np.testing.assert_allclose(np.asarray(summary.layer_norm_ratio)[:, 0], summary.layer_norm_ratio_theory, rtol=0.01)


def test_minibatch_runs_are_compared_with_the_full_batch_mean(digits):
    """SGD: the theory is the full-batch map (the mean over batch draws, S4), from the same f_0
    as the full-batch run (same seeds), while the network itself moves differently."""
    full, full_arrays = compare.compare_width(digits, SMALL, 32)
    sgd, sgd_arrays = compare.compare_width(digits, CompareConfig(**{**SMALL.__dict__, "batch_size": 16}), 32)
    np.testing.assert_array_equal(sgd_arrays["fx_test"][:, 0], full_arrays["fx_test"][:, 0])
    np.testing.assert_array_equal(sgd_arrays["fx_test_theory_discrete"], full_arrays["fx_test_theory_discrete"])
    assert not np.allclose(sgd_arrays["fx_test"][:, -1], full_arrays["fx_test"][:, -1])
    with pytest.raises(ValueError, match="batch_size"):
        compare.compare_width(digits, CompareConfig(**{**SMALL.__dict__, "batch_size": 49}), 32)


def test_default_learning_rate_with_momentum(digits):
    """F4 with momentum: ½ × the momentum stability limit (M11), and the effective decay per step
    ηλ/(1 − β) ≤ 0.1; at λ → 0 the heavy-ball limit is 2(1 + β)N/μ_max."""
    k = compare.infinite_width_kernels(digits, SMALL)["train"]
    mu, n_out = float(np.linalg.eigvalsh(k)[-1]), digits.y_train.size
    for beta, nesterov in ((0.5, False), (0.9, False), (0.9, True)):
        for lam in (1e-6, 1e-3, 1e-1):
            eta = stable_learning_rate(k, n_out, lam, 3, momentum=beta, nesterov=nesterov)
            assert eta <= 0.5 * stability_limit_momentum(mu, float(n_out), lam, 3, momentum=beta, nesterov=nesterov) * (
                1 + 1e-12
            )
            assert eta * lam / (1 - beta) <= 0.1 * (1 + 1e-12)
    assert stable_learning_rate(k, n_out, 0.0, 3, momentum=0.9) == pytest.approx(0.5 * 2 * 1.9 * n_out / mu, rel=1e-12)


def test_lr_auto_computes_the_infinite_width_kernel_once(tmp_path, monkeypatch, capsys):
    """``ntk-l2 compare --lr auto`` needs the infinite-width NTK twice, for η and for the theory:
    it is computed once (one `infinite_width_kernels`, two blocks, train and test) and the learning
    rate is the default rule's on that kernel."""
    kernel_sets, blocks = [], []
    real_kernels, real_ntk = compare.infinite_width_kernels, arch.Architecture.ntk

    def counted_kernels(ds, cfg):
        kernel_sets.append(cfg.depth)
        return real_kernels(ds, cfg)

    def counted_ntk(self, *args, **kwargs):
        blocks.append(len(args))
        return real_ntk(self, *args, **kwargs)

    monkeypatch.setattr(compare, "infinite_width_kernels", counted_kernels)
    monkeypatch.setattr(arch.Architecture, "ntk", counted_ntk)
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "digits", "--n-train", "32", "--n-test", "16", "--depth", "2"]
    argv += ["--widths", "32", "--l2", "1e-2", "--lr", "auto", "--steps", "4", "--seeds", "1", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert kernel_sets == [2] and blocks == [1, 2]  # Θ(X, X), then Θ(X_*, X): nothing computed twice
    stored = json.loads((out / "summary.json").read_text())
    ds = data.load_digits(n_train=32, n_test=16, seed=0)
    k = real_kernels(ds, CompareConfig(depth=2))
    assert stored["config"]["learning_rate"] == stable_learning_rate(k["train"], ds.y_train.size, 1e-2, 3)


def test_given_kernels_are_used_as_computed_and_checked(digits, monkeypatch):
    """run_comparison with the kernels given computes none and returns what it returns computing them;
    kernels of another data set are refused in one line naming ``kernels`` before any training."""
    cfg = CompareConfig(**{**SMALL.__dict__, "widths": (32,), "steps": 4, "seeds": 1, "n_records": 3})
    kernels = compare.infinite_width_kernels(digits, cfg)
    computed = run_comparison(digits, cfg)
    monkeypatch.setattr(compare, "infinite_width_kernels", lambda *a: pytest.fail("kernels computed again"))
    given = run_comparison(digits, cfg, kernels=kernels)
    assert given.to_json() == computed.to_json()
    monkeypatch.setattr(compare, "compare_width", lambda *a: pytest.fail("trained before checking the kernels"))
    other = data.load_digits(n_train=24, n_test=40, seed=0)
    for bad in ({"train": kernels["train"]}, (kernels["train"], kernels["test"])):
        with pytest.raises(ValueError, match=r"^kernels: expected a mapping with the blocks 'train' and 'test'"):
            run_comparison(digits, cfg, kernels=bad)
    small = {"train": kernels["train"][:24, :24], "test": kernels["test"][:, :24]}
    with pytest.raises(ValueError, match=r"^kernels: the train block has shape \(24, 24\), expected \(48, 48\)"):
        run_comparison(digits, cfg, kernels=small)
    with pytest.raises(ValueError, match=r"^kernels: the test block has shape"):
        run_comparison(other, cfg, kernels={"train": kernels["train"][:24, :24], "test": kernels["test"]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k_train_train": np.ones((3, 2))}, "k_train_train: must be square"),
        ({"k_train_train": np.full((2, 2), np.nan)}, "k_train_train: contains 4 NaN"),
        ({"l2": -1e-3}, "l2: must be >= 0"),
        ({"n_outputs": 0}, "n_outputs: must be an integer >= 1"),
        ({"degree": 1.5}, "degree: must be an integer >= 0"),
        ({"fraction": 0.0}, "fraction: must be in (0, 1]"),
        ({"fraction": 1.5}, "fraction: must be in (0, 1]"),
        ({"max_decay": 0.0}, "max_decay: must be > 0"),
        ({"momentum": 1.0}, "momentum: must be in [0, 1)"),
        ({"nesterov": True}, "nesterov: only meaningful with momentum > 0"),
    ],
)
def test_default_learning_rate_refuses_bad_input_in_one_line(kwargs, message):
    args = {"k_train_train": np.eye(2), "n_outputs": 4, "l2": 1e-2, "degree": 3, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        stable_learning_rate(**args)
    assert "\n" not in str(err.value)
