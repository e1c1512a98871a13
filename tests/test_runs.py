"""The run store behind resumable sweeps (`ntk_l2/runs.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from ntk_l2.runs import RunStore, fingerprint


def _compute(value):
    calls = []

    def compute():
        calls.append(1)
        return {"value": value, "pair": (1, 2)}, {"a": np.arange(3.0) * value}

    return compute, calls


def test_finished_run_is_read_back_not_recomputed(tmp_path):
    store = RunStore(tmp_path)
    compute, calls = _compute(2.0)
    first = store.run("r1", {"lr": 1.0, "widths": (1, 2)}, compute)
    second = store.run("r1", {"lr": 1.0, "widths": (1, 2)}, compute)
    assert len(calls) == 1 and first[2] is False and second[2] is True
    # The summary returned is the JSON round trip in both cases (tuples become lists).
    assert first[0] == second[0] == {"value": 2.0, "pair": [1, 2]}
    np.testing.assert_array_equal(first[1]["a"], second[1]["a"])


def test_changed_configuration_is_recomputed(tmp_path):
    store = RunStore(tmp_path)
    compute, calls = _compute(1.0)
    store.run("r", {"lr": 1.0}, compute)
    store.run("r", {"lr": 2.0}, compute)
    assert len(calls) == 2


def test_run_without_its_json_counts_as_unfinished(tmp_path):
    """The npz is written first: a sweep killed between the two files redoes the run."""
    store = RunStore(tmp_path)
    compute, calls = _compute(1.0)
    store.run("r", {"x": 1}, compute)
    (tmp_path / "r.json").unlink()
    assert store.load("r", {"x": 1}) is None
    store.run("r", {"x": 1}, compute)
    assert len(calls) == 2


def test_failed_compute_leaves_no_files(tmp_path):
    store = RunStore(tmp_path)

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.run("r", {}, boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a b"])
def test_bad_run_name_is_rejected(tmp_path, name):
    with pytest.raises(ValueError, match="name: "):
        RunStore(tmp_path).load(name, {})


def test_fingerprint_sees_values_shapes_and_dtypes():
    a = np.arange(6.0)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a) != fingerprint(a.astype(np.float32))
    b = a.copy()
    b[3] += 1e-12
    assert fingerprint(a) != fingerprint(b)


def test_saved_files_get_ordinary_permissions(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the result must have the umask's mode."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        RunStore(tmp_path).save("r", {}, {"a": 1}, {"x": np.zeros(2)})
    finally:
        os.umask(old)
    for name in ("r.json", "r.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
