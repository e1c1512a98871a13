"""The recorder (ntk_l2.finite.recorder) alone: observations, divergence, probe NTK, saving and restoring."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_l2.finite.recorder import Recorder, accuracy, layer_norms, make_ntk_fn, make_observer, probe_ntk

Y = np.zeros((4, 2))


def _obs(fx_scale: np.ndarray) -> dict[str, np.ndarray]:
    """An observation of len(fx_scale) members whose outputs are all fx_scale[i] (loss = fx_scale²/2)."""
    m = len(fx_scale)
    fx = np.ones((m, 4, 2)) * np.asarray(fx_scale, float)[:, None, None]
    return {"fx_train": fx, "fx_test": fx[:, :1], "sq_norm": np.full(m, 4.0), "layer_norms": np.ones((m, 3))}


def test_observer_measures_outputs_norms_and_layer_norms():
    with enable_x64():
        params = [{"w": jnp.asarray([[[3.0, 0.0], [0.0, 4.0]]] * 2)}, (), {"b": jnp.asarray([[1.0, 0.0]] * 2)}]
        x = jnp.eye(2)
        obs = make_observer(lambda p, xs, p0: xs @ p[0]["w"] + p[2]["b"], x, 2 * x)(params, params)
        np.testing.assert_array_equal(np.asarray(obs["fx_train"][0]), [[4.0, 0.0], [1.0, 4.0]])
        np.testing.assert_array_equal(np.asarray(obs["fx_test"][1]), [[7.0, 0.0], [1.0, 8.0]])
        np.testing.assert_allclose(np.asarray(obs["sq_norm"]), [26.0, 26.0])
        np.testing.assert_allclose(np.asarray(obs["layer_norms"][0]), [5.0, 1.0])  # the empty layer is skipped
        one = jax.tree_util.tree_map(lambda a: a[0], params)
        np.testing.assert_allclose(np.asarray(layer_norms(one)), [5.0, 1.0])
        np.testing.assert_allclose(np.asarray(layer_norms(one[0])), [5.0])  # one layer, not a list of layers


def test_divergence_is_detected_recorded_and_masked():
    """Member 1 exceeds 100 × its first loss at step 20, member 2 is NaN at step 10: both NaN from there on."""
    rec = Recorder.start(Y, 3, divergence_factor=100.0)
    for step, scales in [(0, [1.0, 1.0, 1.0]), (10, [0.5, 5.0, np.nan]), (20, [0.2, 11.0, 1.0]), (30, [0.1, 1.0, 1.0])]:
        row = rec.record(step, _obs(np.asarray(scales)), 0.1)
    np.testing.assert_array_equal(rec.diverged_at, [-1, 20, 10])
    np.testing.assert_array_equal(rec.alive, [True, False, False])
    assert np.isnan(row["fx_train"][1:]).all() and not np.isnan(row["fx_train"][0]).any()
    assert row["loss_data"][0] == pytest.approx(0.5 * 0.01 * 8 / 8) and row["loss_l2"][0] == pytest.approx(0.2)
    assert not rec.finished
    rec.record(40, _obs(np.asarray([np.inf, 1.0, 1.0])), 0.1)
    assert rec.finished and rec.diverged_at[0] == 40


def test_to_arrays_and_back_continue_as_the_uninterrupted_record():
    stream = [(0, [1.0, 2.0]), (5, [0.5, 30.0]), (9, [0.4, 1.0]), (12, [0.3, 1.0])]

    def feed(rec, items):
        for step, scales in items:
            rec.record(step, _obs(np.asarray(scales)), np.asarray([0.1, 0.2]))
            rec.l2_rows.append(np.asarray([0.1, 0.2]) * step)
            rec.ntk_rows.append(np.full((2, 3, 3), float(step)))

    whole = Recorder.start(Y, 2, 10.0)
    feed(whole, stream)
    half = Recorder.start(Y, 2, 10.0)
    feed(half, stream[:2])
    resumed = Recorder.from_arrays({k: v.copy() for k, v in half.to_arrays().items()}, Y, 10.0)
    feed(resumed, stream[2:])
    kwargs = dict(
        ntk_steps=(9, 0), labels_train=np.zeros(4, int), labels_test=None, member_seed=np.arange(2), member_l2=None
    )
    a, b = whole.result(**kwargs), resumed.result(**kwargs)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.fx_train.shape == (2, 4, 4, 2) and a.l2_records.shape == (2, 4) and a.ntk_probe.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(a.ntk_steps, [9, 0])
    np.testing.assert_array_equal(a.diverged_at, [-1, 5])
    assert Recorder.from_arrays(Recorder.start(Y, 2, 1.0).to_arrays(), Y, 1.0).rows == []


def test_accuracy_is_nan_for_diverged_records():
    fx = np.zeros((2, 3, 4, 2))
    fx[..., 1] = 1.0
    fx[1, 2] = np.nan
    acc = accuracy(fx, np.asarray([1, 1, 0, 1]))
    np.testing.assert_array_equal(acc[0], [0.75] * 3)
    assert np.isnan(acc[1, 2]) and acc[1, 1] == 0.75
    assert accuracy(fx, None) is None and accuracy(None, np.zeros(4)) is None


def test_probe_ntk_of_a_linear_model_is_the_gram_matrix_times_identity():
    """f(θ, x) = x W: Θ_{(i,a),(j,b)} = (x_i · x_j) δ_ab, laid out as (p·c, p·c), per member."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    with enable_x64():
        params = {"w": jnp.ones((2, 4, 2))}
        theta = probe_ntk(make_ntk_fn(lambda p, xs, **kw: xs @ p["w"]), jnp.asarray(x), params)
    assert theta.shape == (2, 6, 6)
    expected = np.kron(x @ x.T, np.eye(2))
    np.testing.assert_allclose(theta[0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(theta[1], expected, rtol=1e-12, atol=1e-12)
