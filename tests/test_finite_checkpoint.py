"""Checkpoints inside a run (ntk_l2.finite.checkpoint): a killed run resumes where it stopped, with the
results of an uninterrupted run; a checkpoint that is not this run's, or is corrupted, is ignored."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ntk_l2.finite.train as train_module
from ntk_l2 import fully_connected, load_digits
from ntk_l2.finite.checkpoint import CheckpointWarning, fingerprint, load_checkpoint, save_checkpoint
from ntk_l2.finite.loop import Carry
from ntk_l2.finite.recorder import Recorder
from ntk_l2.finite.rules import l2_rule
from ntk_l2.finite.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny():
    data = load_digits(n_train=24, n_test=8, seed=4)
    return data, fully_connected(2, width=32, out_dim=data.n_classes)


def _train(tiny, config, **kwargs):
    data, net = tiny
    return train(
        net.init_fn,
        net.apply_fn,
        data.x_train,
        data.y_train,
        config,
        x_test=data.x_test,
        labels_train=data.labels_train,
        labels_test=data.labels_test,
        seeds=(0, 1),
        **kwargs,
    )


def _assert_same(a, b):
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y, err_msg=name)


def _kill_after(monkeypatch, n: int) -> list[int]:
    """Make the run stop (KeyboardInterrupt) right after its n-th checkpoint is written; returns the saved steps."""
    real, saved = train_module.save_checkpoint, []

    def save_then_die(path, fp, step, *args):
        out = real(path, fp, step, *args)
        saved.append(step)
        if len(saved) == n:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    return saved


def _spy_segments(monkeypatch) -> list[tuple[int, int]]:
    """Record the (start, stop) of every compiled segment the loop runs."""
    real, segments = train_module.make_advance, []

    def spying(step, n_members):
        advance = real(step, n_members)

        def spy(carry, start, stop):
            segments.append((int(start), int(stop)))
            return advance(carry, start, stop)

        return spy

    monkeypatch.setattr(train_module, "make_advance", spying)
    return segments


CASES = {
    "sgd_momentum_l2_grid_ntk_float32": (
        dict(
            learning_rate=1.0,
            l2=(1e-3, 1e-2),
            steps=60,
            batch_size=8,
            momentum=0.5,
            record_steps=(0, 5, 10, 20, 40, 60),
            ntk_steps=(10, 60),
            n_probe=4,
        ),
        {},
        3,
        10,
    ),
    "nesterov_float64_every_7_steps": (
        dict(learning_rate=0.5, l2=1e-2, steps=50, n_records=8, momentum=0.9, nesterov=True, float64=True),
        dict(checkpoint_every=7),
        2,
        14,
    ),
    "diverging": (dict(learning_rate=300.0, steps=100, n_records=20, divergence_factor=100.0), {}, 2, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_run_resumes_from_its_last_checkpoint_to_the_uninterrupted_result(tiny, tmp_path, monkeypatch, case):
    fields, kwargs, kill_after, resume_at = CASES[case]
    config = TrainConfig(**fields)
    full = _train(tiny, config)
    path = tmp_path / "run.ckpt"
    saved = _kill_after(monkeypatch, kill_after)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, config, checkpoint=path, **kwargs)
    assert saved[-1] == resume_at and path.exists()
    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    segments = _spy_segments(monkeypatch)
    resumed = _train(tiny, config, checkpoint=path, **kwargs)
    assert segments and segments[0][0] == resume_at, f"resumed at {segments[:1]}, not from step {resume_at}"
    _assert_same(resumed, full)
    if case == "diverging":  # one member diverged at step 1, when the run was killed; the other at step 3
        np.testing.assert_array_equal(full.diverged_at, [3, 1])
    segments.clear()
    again = _train(tiny, config, checkpoint=path, **kwargs)  # a finished run's checkpoint: nothing to train
    assert segments == []
    _assert_same(again, full)


class _Rule:
    """A stateful controller (AutoL2-like): λ ×10 for every member at its third call; remembers its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, step, row):
        self.calls.append(step)
        return row["l2"] * 10 if len(self.calls) == 3 else None


def test_controller_is_replayed_on_resume_and_must_be_deterministic(tiny, tmp_path, monkeypatch):
    config = TrainConfig(learning_rate=1.0, l2=1e-3, steps=40, record_steps=(0, 10, 20, 30, 40), float64=True)
    reference = _Rule()
    full = _train(tiny, config, l2_controller=reference)
    assert full.l2_records[0, 1] == 1e-3 and full.l2_records[0, 2] == pytest.approx(1e-2)
    path = tmp_path / "auto.ckpt"
    _kill_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, config, checkpoint=path, l2_controller=_Rule())
    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    controller = _Rule()
    _assert_same(_train(tiny, config, checkpoint=path, l2_controller=controller), full)
    assert controller.calls == reference.calls == [0, 10, 20, 30, 40]

    def other(step, row):
        return row["l2"] * 2

    with pytest.raises(ValueError, match="l2_controller: replayed on the checkpoint's records"):
        _train(tiny, config, checkpoint=path, l2_controller=other)


def test_checkpoint_of_another_run_or_corrupted_is_ignored_with_a_warning(tiny, tmp_path):
    config = TrainConfig(learning_rate=1.0, l2=1e-3, steps=20, record_steps=(0, 10, 20))
    path = tmp_path / "run.ckpt"
    _train(tiny, TrainConfig(learning_rate=0.5, l2=1e-3, steps=20, record_steps=(0, 10, 20)), checkpoint=path)
    full = _train(tiny, config)
    with pytest.warns(CheckpointWarning, match="another run"):
        _assert_same(_train(tiny, config, checkpoint=path), full)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(CheckpointWarning, match="run.ckpt"):
        _assert_same(_train(tiny, config, checkpoint=path), full)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CheckpointWarning, match="starting from step 0"):
        _assert_same(_train(tiny, config, checkpoint=path), full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # the file is this run's again: trusted
        _assert_same(_train(tiny, config, checkpoint=path), full)


def _saved(tmp_path):
    carry = Carry(
        {"w": jnp.arange(6.0).reshape(1, 2, 3)},
        l2_rule(0.1, 0.0, 0.5).init({"w": jnp.zeros((1, 2, 3))}),
        None,
        jnp.zeros((1, 2), jnp.uint32),
    )
    recorder = Recorder.start(np.zeros((2, 3)), 1, 10.0)
    recorder.record(0, {"fx_train": np.ones((1, 2, 3)), "sq_norm": np.ones(1), "layer_norms": np.ones((1, 1))}, 0.0)
    path = save_checkpoint(tmp_path / "c.npz", "abc", 4, False, carry, recorder)
    return path, carry._replace(params0="θ_0"), recorder


def test_load_returns_the_saved_state_and_verifies_fingerprint_checksum_and_shapes(tmp_path):
    path, template, recorder = _saved(tmp_path)
    restored = load_checkpoint(path, "abc", template, recorder.y_train, 10.0)
    assert restored.step == 4 and not restored.done and restored.carry.params0 == "θ_0"
    np.testing.assert_array_equal(np.asarray(restored.carry.params["w"]), np.arange(6.0).reshape(1, 2, 3))
    assert restored.carry.rule_state.velocity["w"].shape == (1, 2, 3)
    np.testing.assert_array_equal(restored.recorder.rows[0]["fx_train"], recorder.rows[0]["fx_train"])
    assert load_checkpoint(tmp_path / "absent.npz", "abc", template, recorder.y_train, 10.0) is None
    with pytest.warns(CheckpointWarning, match="another run"):
        assert load_checkpoint(path, "abd", template, recorder.y_train, 10.0) is None
    with np.load(path) as z:
        arrays = dict(z)
    arrays["carry/1"] = arrays["carry/1"] + 1  # tampered, checksum kept
    np.savez(path, **arrays)
    with pytest.warns(CheckpointWarning, match="checksum"):
        assert load_checkpoint(path, "abc", template, recorder.y_train, 10.0) is None
    path, _, _ = _saved(tmp_path)
    wider = template._replace(params={"w": jnp.zeros((1, 2, 4))})
    with pytest.warns(CheckpointWarning, match="shapes"):
        assert load_checkpoint(path, "abc", wider, recorder.y_train, 10.0) is None
    np.savez(path, x=np.ones(2))
    with pytest.warns(CheckpointWarning, match="not a checkpoint"):
        assert load_checkpoint(path, "abc", template, recorder.y_train, 10.0) is None


def test_fingerprint_changes_with_any_setting_or_array_byte():
    base = fingerprint({"a": 1.0, "b": [1, 2]}, [np.zeros(3)])
    assert base == fingerprint({"b": [1, 2], "a": 1.0}, [np.zeros(3)])
    assert base != fingerprint({"a": 1.0 + 1e-16 * 2, "b": [1, 2]}, [np.zeros(3)])
    assert base != fingerprint({"a": 1.0, "b": [1, 2]}, [np.zeros(3, np.float32)])
    assert base != fingerprint({"a": 1.0, "b": [1, 2]}, [np.asarray([0.0, 0.0, 1e-300])])


def test_bad_checkpoint_arguments_are_named(tiny, tmp_path):
    config = TrainConfig(steps=4, record_steps=(0, 4))
    with pytest.raises(ValueError, match="checkpoint: learning_rate is a function"):
        _train(tiny, TrainConfig(learning_rate=lambda s: 1.0, steps=4), checkpoint=tmp_path / "c")
    with pytest.raises(ValueError, match="checkpoint: a custom rule"):
        _train(tiny, config, checkpoint=tmp_path / "c", rule=l2_rule(1.0))
    with pytest.raises(ValueError, match="checkpoint_every: needs a checkpoint"):
        _train(tiny, config, checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every: must be None or an integer >= 1"):
        _train(tiny, config, checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint: .* exists and is a directory"):
        _train(tiny, config, checkpoint=tmp_path)
