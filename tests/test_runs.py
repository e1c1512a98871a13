"""The run store behind resumable sweeps (`ntk_l2/experiments/runs.py`)."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ntk_l2.experiments.runs import InvalidRunWarning, RunStore, arrays_checksum, fingerprint, run_name


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
    with pytest.warns(InvalidRunWarning, match=r"r\.json: .*configuration.*lr"):
        store.run("r", {"lr": 2.0}, compute)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="r.json"):
        RunStore(tmp_path, on_invalid="raise").run("r", {"lr": 1.0}, compute)


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


# --------------------------------------------------------------------------- verification

CONFIG = {"lr": 1.0, "widths": (1, 2), "data": "abc"}
ARRAYS = {"a": np.arange(5.0), "b": np.arange(6, dtype=np.int32).reshape(2, 3)}


def _rich_compute(calls: list | None = None, lr: float = 1.0):
    """A run with nested numbers, strings, booleans and None in its summary, two arrays."""

    def compute():
        if calls is not None:
            calls.append(1)
        return (
            {
                "value": 0.125 * lr,
                "acc": [0.5, 0.75, None],
                "n": 12,
                "ok": True,
                "label": "w1",
                "nested": {"t_star": 3.0, "steps": [0, 1, 10]},
            },
            {k: v * lr if v.dtype.kind == "f" else v for k, v in ARRAYS.items()},
        )

    return compute


def _fresh(tmp_path, config=CONFIG, lr: float = 1.0):
    """The run computed in a new, empty store: what a recomputation must equal."""
    return RunStore(tmp_path / "fresh").run("r", config, _rich_compute(lr=lr))


def _same(a, b) -> None:
    assert json.dumps(a[0], sort_keys=True) == json.dumps(b[0], sort_keys=True)
    assert sorted(a[1]) == sorted(b[1])
    for k in a[1]:
        assert a[1][k].dtype == b[1][k].dtype
        np.testing.assert_array_equal(a[1][k], b[1][k])


def _edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    record = edit(record)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _set(record, keys, value):
    target = record
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    return record


def _flip_array_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(ARRAYS["a"].tobytes())
    assert at > 0
    raw[at + 9] ^= 0x01
    path.write_bytes(bytes(raw))


def _old_format(d: Path) -> None:
    """What the previous version wrote: the config and summary only, no checksum."""
    record = json.loads((d / "r.json").read_text())
    (d / "r.json").write_text(json.dumps({"config": record["config"], "summary": record["summary"]}, indent=2))


def _swap(d: Path) -> None:
    """Another run's files (same settings, other name) copied over this one's."""
    RunStore(d).run("other", CONFIG, _rich_compute(lr=3.0))
    shutil.copy(d / "other.json", d / "r.json")
    shutil.copy(d / "other.npz", d / "r.npz")


TAMPERING = {
    "summary value": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["summary", "value"], 99.0)),
    "nested summary value": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["summary", "nested", "t_star"], 0.0)),
    "summary key removed": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["summary"], {"value": 0.125})),
    "config value": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["config", "data"], "xyz")),
    "name field": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["name"], "q")),
    "checksum field": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["sha256"], "0" * 64)),
    "arrays checksum field": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["arrays_sha256"], "0" * 64)),
    "npz replaced": lambda d: np.savez(d / "r.npz", a=np.zeros(5), b=ARRAYS["b"]),
    "npz array added": lambda d: np.savez(d / "r.npz", **ARRAYS, c=np.zeros(1)),
    "npz dtype changed": lambda d: np.savez(d / "r.npz", a=ARRAYS["a"].astype(np.float32), b=ARRAYS["b"]),
    "npz shape changed": lambda d: np.savez(d / "r.npz", a=ARRAYS["a"], b=ARRAYS["b"].reshape(3, 2)),
    "npz byte flipped": lambda d: _flip_array_byte(d / "r.npz"),
    "npz truncated": lambda d: (d / "r.npz").write_bytes((d / "r.npz").read_bytes()[:300]),
    "npz empty": lambda d: (d / "r.npz").write_bytes(b""),
    "npz not an archive": lambda d: np.save(d / "r.npz.npy", ARRAYS["a"]) or (d / "r.npz.npy").replace(d / "r.npz"),
    "npz pickled object": lambda d: np.savez(d / "r.npz", a=np.array([{"x": 1}], dtype=object), b=ARRAYS["b"]),
    "npz missing": lambda d: (d / "r.npz").unlink(),
    "json truncated": lambda d: (d / "r.json").write_bytes((d / "r.json").read_bytes()[:80]),
    "json empty": lambda d: (d / "r.json").write_bytes(b""),
    "json garbage": lambda d: (d / "r.json").write_bytes(b"\xff\xfe\x00garbage{\n"),
    "json a list": lambda d: (d / "r.json").write_text("[1, 2]"),
    "json null": lambda d: (d / "r.json").write_text("null"),
    "summary of the wrong type": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["summary"], [1, 2])),
    "config of the wrong type": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["config"], "lr=1")),
    "checksum of the wrong type": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["sha256"], 12)),
    "format changed": lambda d: _edit_json(d / "r.json", lambda r: _set(r, ["format"], 99)),
    "old format (no checksum)": _old_format,
    "swapped with another run": _swap,
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_or_corrupt_run_raises_in_strict_mode_and_is_recomputed_otherwise(tmp_path, how):
    d = tmp_path / "runs"
    calls: list = []
    RunStore(d).run("r", CONFIG, _rich_compute(calls))
    TAMPERING[how](d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(ValueError) as err:
        RunStore(d, on_invalid="raise").run("r", CONFIG, _rich_compute(calls))
    message = str(err.value)
    assert "\n" not in message and str(d / "r.json") in message, message
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before, "strict mode must not touch the files"
    assert len(calls) == 1
    with pytest.warns(InvalidRunWarning) as record:
        result = RunStore(d).run("r", CONFIG, _rich_compute(calls))
    assert len(record) == 1 and str(d / "r.json") in str(record[0].message)
    assert "\n" not in str(record[0].message)
    assert len(calls) == 2 and result[2] is False, "a run that fails verification is recomputed"
    _same(result, _fresh(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = RunStore(d, on_invalid="raise").run("r", CONFIG, _rich_compute(calls))
    assert len(calls) == 2 and again[2] is True, "the recomputed run was overwritten and now verifies"
    _same(again, result)


def test_copied_run_is_not_taken_for_another_width(tmp_path):
    """width1024's files copied over width256's: the stored name and configuration say so."""
    d = tmp_path / "runs"
    for w in (256, 1024):
        RunStore(d).run(f"width{w}", {"width": w}, lambda w=w: ({"err": 1.0 / w}, {"e": np.full(2, 1.0 / w)}))
    for suffix in (".json", ".npz"):
        shutil.copy(d / f"width1024{suffix}", d / f"width256{suffix}")
    with pytest.raises(ValueError, match="width256.json"):
        RunStore(d, on_invalid="raise").load("width256", {"width": 256})
    with pytest.warns(InvalidRunWarning, match="width1024"):
        summary, arrays, reused = RunStore(d).run(
            "width256", {"width": 256}, lambda: ({"err": 1 / 256}, {"e": np.full(2, 1 / 256)})
        )
    assert not reused and summary == {"err": 1 / 256} and arrays["e"][0] == 1 / 256


def test_edited_config_cannot_pass_for_the_requested_one(tmp_path):
    """A stored lr = 1 run whose config is edited to lr = 2 is not served for lr = 2."""
    d = tmp_path / "runs"
    RunStore(d).run("r", CONFIG, _rich_compute())
    _edit_json(d / "r.json", lambda r: _set(r, ["config", "lr"], 2.0))
    config2 = {**CONFIG, "lr": 2.0}
    with pytest.raises(ValueError, match="checksum"):
        RunStore(d, on_invalid="raise").load("r", config2)
    with pytest.warns(InvalidRunWarning):
        result = RunStore(d).run("r", config2, _rich_compute(lr=2.0))
    _same(result, _fresh(tmp_path, config2, lr=2.0))


def test_run_whose_json_exists_but_npz_does_not_is_rejected_not_skipped(tmp_path):
    d = tmp_path / "runs"
    RunStore(d).run("r", CONFIG, _rich_compute())
    (d / "r.npz").unlink()
    with pytest.raises(ValueError, match="r.npz"):
        RunStore(d, on_invalid="raise").load("r", CONFIG)


def test_nan_in_a_summary_verifies(tmp_path):
    """NaN (t* of a run that never had a defined accuracy) is stored as JSON NaN and checks out."""
    store = RunStore(tmp_path, on_invalid="raise")
    store.run("r", {"lam": 1.0}, lambda: ({"t_star": float("nan")}, {"x": np.full(2, np.nan)}))
    summary, arrays, reused = store.run("r", {"lam": 1.0}, lambda: pytest.fail("recomputed"))
    assert reused and np.isnan(summary["t_star"]) and np.isnan(arrays["x"]).all()


def test_record_holds_the_checksums(tmp_path):
    RunStore(tmp_path).run("r", CONFIG, _rich_compute())
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record) == {"format", "name", "config", "summary", "arrays_sha256", "sha256"}
    assert record["name"] == "r" and record["config"]["widths"] == [1, 2]
    assert record["arrays_sha256"] == arrays_checksum(ARRAYS)
    assert all(len(record[k]) == 64 for k in ("arrays_sha256", "sha256"))


def test_arrays_checksum_sees_names_dtypes_shapes_and_bytes():
    base = arrays_checksum(ARRAYS)
    assert base == arrays_checksum({"b": ARRAYS["b"], "a": ARRAYS["a"].copy()})
    assert base != arrays_checksum({"A": ARRAYS["a"], "b": ARRAYS["b"]})
    assert base != arrays_checksum({"a": ARRAYS["a"].astype(np.float32), "b": ARRAYS["b"]})
    assert base != arrays_checksum({"a": ARRAYS["a"], "b": ARRAYS["b"].reshape(3, 2)})
    assert base != arrays_checksum({"a": ARRAYS["a"] + 1e-300, "b": ARRAYS["b"]})
    assert base != arrays_checksum({**ARRAYS, "c": np.zeros(0)})


def test_bad_on_invalid_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="on_invalid: "):
        RunStore(tmp_path, on_invalid="ignore")


def test_object_arrays_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="arrays: "):
        RunStore(tmp_path).save("r", {}, {}, {"x": np.array([{}], dtype=object)})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- random tampering


def _stored_run() -> tuple[dict[str, bytes], tuple]:
    with tempfile.TemporaryDirectory() as d:
        result = RunStore(d).run("r", CONFIG, _rich_compute())
        return {n: (Path(d) / n).read_bytes() for n in ("r.json", "r.npz")}, result


STORED, ORIGINAL = _stored_run()


def _load_tampered(files: dict[str, bytes]):
    """load() in strict mode on these file contents: ("detected", message) or ("passed", result)."""
    with tempfile.TemporaryDirectory() as d:
        for n, raw in files.items():
            (Path(d) / n).write_bytes(raw)
        try:
            found = RunStore(d, on_invalid="raise").load("r", CONFIG)
        except ValueError as err:
            assert "\n" not in str(err) and str(Path(d) / "r.json") in str(err)
            return "detected", str(err)
        assert found is not None
        return "passed", found


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(["r.json", "r.npz"]), where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_any_flipped_byte_is_detected_or_changes_nothing(which, where, mask):
    """A flipped byte either fails verification or left the data untouched: JSON whitespace
    (space ↔ tab), an exponent's e ↔ E, or zip metadata outside the arrays (e.g. a timestamp)."""
    raw = bytearray(STORED[which])
    raw[int(where * len(raw))] ^= mask
    outcome, found = _load_tampered({**STORED, which: bytes(raw)})
    if outcome == "passed":
        _same((*found, True), ORIGINAL)


def _numbers(obj, path=()):
    """Paths of every number (not bool) in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, path + (i,))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path


NUMBER_PATHS = list(_numbers(json.loads(STORED["r.json"])))


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(NUMBER_PATHS),
    value=st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_any_edited_number_of_the_record_is_detected(path, value):
    record = json.loads(STORED["r.json"])
    old = record
    for k in path[:-1]:
        old = old[k]
    assume(json.dumps(old[path[-1]]) != json.dumps(value))
    _set(record, list(path), value)
    edited = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    outcome, message = _load_tampered({**STORED, "r.json": edited})
    assert outcome == "detected", f"editing {path} to {value!r} was not detected"


# --------------------------------------------------------------------------- exact names


def test_names_keep_every_digit_and_stay_readable():
    assert run_name(l2=0.01, lr=1.0) == "l2=0.01_lr=1.0"
    assert run_name(l2=1e-5, lr=0.5) == "l2=1e-05_lr=0.5"
    assert run_name(width=256) == "width=256"
    assert run_name(l2=0.0100000001, lr=1.0) != run_name(l2=0.01, lr=1.0)


@given(a=st.floats(min_value=1e-300, max_value=1e300), b=st.floats(min_value=1e-300, max_value=1e300))
def test_run_names_of_different_floats_differ(a, b):
    name_a, name_b = run_name(l2=a, lr=1.0), run_name(l2=b, lr=1.0)
    assert (name_a == name_b) == (a == b)
    assert float(name_a.split("=")[1].split("_")[0]) == a
    RunStore(Path("unused"))._paths(name_a)  # a valid run name


def test_colliding_l2_values_are_two_runs_that_both_resume(tmp_path):
    """λ = 0.01 and 0.0100000001 agreed to six digits: once one file that each overwrote."""
    store = RunStore(tmp_path)
    calls: list = []
    for _ in range(2):
        for lam in (0.01, 0.0100000001):
            store.run(run_name(l2=lam, lr=1.0), {"l2": lam}, lambda lam=lam: calls.append(lam) or ({"l2": lam}, {}))
    assert calls == [0.01, 0.0100000001] and len(list(tmp_path.glob("*.json"))) == 2


def test_run_name_refuses_what_is_not_a_name():
    with pytest.raises(ValueError, match="name: "):
        run_name(label="a/b")


def test_stored_summary_the_reader_refuses_is_recomputed_or_refused(tmp_path):
    """A run stored by an older version (valid checksums, but a summary without a field the typed
    result now has) is not trusted: with a reader it is recomputed after a warning that names the
    file and the missing field, or refused with ``on_invalid="raise"``."""
    from ntk_l2.laws import LawRun

    store = RunStore(tmp_path)
    config = {"l2": 0.1}
    old = {"l2": 0.1, "lr": 1.0, "t_star": 3.0, "t_star_eta_l2": 0.3, "max_test_acc": 0.5, "diverged": False}
    store.save("r", config, old, {"a": np.zeros(2)})  # no budget_test_acc: written before it existed
    assert store.run("r", config, lambda: pytest.fail("must be read back"))[2]  # without a reader: trusted
    new = LawRun(0.1, 1.0, 3.0, 0.3, 0.5, None, False)
    with pytest.raises(ValueError, match=r"r\.json: stored run has a summary .* budget_test_acc is missing"):
        RunStore(tmp_path, on_invalid="raise").run("r", config, lambda: (new.to_json(), {}), LawRun.from_json)
    with pytest.warns(InvalidRunWarning, match="budget_test_acc is missing"):
        summary, _, reused = store.run("r", config, lambda: (new.to_json(), {"a": np.ones(2)}), LawRun.from_json)
    assert not reused and LawRun.from_json(summary) == new
    assert store.run("r", config, lambda: pytest.fail("now current"), LawRun.from_json)[2]
