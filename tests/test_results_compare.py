"""Typed results of compare, demo and deep-linear (`ntk_l2/experiments/results_compare.py`) and the loader
(`ntk_l2/experiments/results.py`): strict-JSON round trips, small real runs read back as their class, and
summaries the loader refuses in one line naming the result directory."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntk_l2.common.records import Record
from ntk_l2.data import datasets as data
from ntk_l2.experiments.compare import CompareConfig, run_comparison
from ntk_l2.experiments.deep_linear import DeepLinearExperiment, run_experiment
from ntk_l2.experiments.demo import DemoConfig, run_demo
from ntk_l2.experiments.results import SCHEMA_VERSION, Result, load_result
from ntk_l2.experiments.results_compare import (
    ComparisonResult,
    DeepLinearResult,
    DemoComparison,
    DemoResult,
    WidthComparison,
)


def _same(a: Any, b: Any) -> bool:
    """Equal values and types, NaN equal to NaN (a record read back holds new NaN objects)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Record):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _strict(text: str) -> Any:
    """JSON text that must be strict: NaN and Infinity are refused."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Result, Path]]:
    """Small real runs of each kind: (result returned, its directory)."""
    root = tmp_path_factory.mktemp("results")
    digits = data.load_digits(n_train=48, n_test=40, seed=0)
    cfg = CompareConfig(depth=2, widths=(32, 64), learning_rate=5.0, l2=1e-2, steps=6, seeds=2, n_records=4, n_probe=4)
    demo = DemoConfig(n_train=48, n_test=40, depth=2, n_times=8, max_time=1e3, widths=(32,), seeds=1, compare_l2=5e-2)
    experiment = DeepLinearExperiment(steps=300, seeds=2, n_records=12, n_hessian=4)
    return {
        "compare": (run_comparison(digits, cfg, out_dir=root / "compare"), root / "compare"),
        "demo": (run_demo(root / "demo", demo), root / "demo"),
        "deep-linear": (run_experiment(experiment, root / "deep_linear"), root / "deep_linear"),
    }


KINDS = {"compare": ComparisonResult, "demo": DemoResult, "deep-linear": DeepLinearResult}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_real_result_round_trips_through_strict_json(runs, kind):
    """from_json(to_json(r)) is r (NaN for NaN), the dict is strict JSON, and summary.json holds exactly
    it: the fields, kind and schema_version."""
    result, directory = runs[kind]
    assert type(result) is KINDS[kind] and result.KIND == kind
    text = json.dumps(result.to_json(), allow_nan=False)
    back = KINDS[kind].from_json(json.loads(text))
    assert _same(back, result)
    assert back.to_json() == result.to_json()
    stored = _strict((directory / "summary.json").read_text())
    assert stored == result.to_json()
    fields = {f.name for f in dataclasses.fields(result)}
    assert set(stored) == fields | {"kind", "schema_version"} and stored["kind"] == kind
    assert stored["schema_version"] == SCHEMA_VERSION
    assert Path(stored["figure"]).is_file() and Path(stored["figure"]).parent == directory


@pytest.mark.parametrize("kind", list(KINDS))
def test_load_result_reads_each_kind_back_as_its_class(runs, kind):
    result, directory = runs[kind]
    loaded = load_result(directory)
    assert type(loaded) is KINDS[kind]
    assert _same(loaded, result)


def test_the_fields_are_typed_values_not_json_lists(runs):
    """Arrays are tuples of Python numbers, nested records are records; undefined floats are NaN."""
    compare, _ = runs["compare"]
    assert set(compare.widths) == {"32", "64"} and isinstance(compare.widths["32"], WidthComparison)
    w = compare.widths["64"]
    assert w.width == 64 and isinstance(w.steps, tuple) and all(type(s) is int for s in w.steps)
    assert len(w.layer_norm_ratio_seeds) == 2 and len(w.layer_norm_ratio_seeds[0]) == len(w.steps)
    assert all(type(v) is float for row in w.acc_test_finite_seeds for v in row)
    assert isinstance(compare.width_exponent, float) and compare.continuous_theory == "gradient flow"
    demo, _ = runs["demo"]
    assert isinstance(demo.comparison, DemoComparison) and demo.comparison.widths_list == (32,)
    assert demo.comparison.width_exponent is None  # a single width
    assert set(demo.curves) == set(demo.best_test_accuracy) == {"0", "0.0001", "0.001", "0.01"}
    deep, _ = runs["deep-linear"]
    assert deep.config["widths"] == [1, 1, 1, 1] and deep.depth == 3 and len(deep.diverged) == 2
    assert all(type(t) is float for t in deep.optimization_phase_end + deep.imbalance_half_time)


def test_absent_continuous_theory_is_absent_in_json_and_none_in_the_record(runs):
    """Where no continuous theory applies its two per-width keys are left out (not null), as always."""
    compare, _ = runs["compare"]
    present = compare.widths["32"]
    assert present.to_json()["rel_err_test_max_continuous"] == list(present.rel_err_test_max_continuous)
    absent = dataclasses.replace(present, rel_err_test_max_continuous=None, acc_test_theory_continuous=None)
    stored = absent.to_json()
    assert "rel_err_test_max_continuous" not in stored and "acc_test_theory_continuous" not in stored
    assert _same(WidthComparison.from_json(stored), absent)


# (what is done to summary.json, what the one-line error must say)
MUTATIONS = [
    (lambda s: s.update(n_train="48"), "ComparisonResult.n_train: expected int, got str '48'"),
    (lambda s: s["widths"]["32"]["steps"].__setitem__(0, 0.5), "ComparisonResult.widths.32.steps[0]: expected int"),
    (lambda s: s["widths"]["32"].update(diverged=[0, 1]), "ComparisonResult.widths.32.diverged[0]: expected bool"),
    (lambda s: s.update(width_exponent="steep"), "ComparisonResult.width_exponent: expected float | NoneType"),
    (lambda s: s.pop("degree"), "ComparisonResult: the field degree is missing"),
    (lambda s: s["widths"]["64"].pop("kernel_ratio"), "ComparisonResult.widths.64: the field kernel_ratio is missing"),
    (lambda s: s.update(bogus=1), "ComparisonResult: unknown field(s) bogus"),
    (lambda s: s.update(kind="comparison"), "holds an unknown kind 'comparison'"),
    (lambda s: s.update(schema_version=SCHEMA_VERSION + 1), f"has schema version {SCHEMA_VERSION + 1}"),
    (lambda s: s.pop("kind"), "has no kind and schema version"),
    (lambda s: [s.pop("kind"), s.pop("schema_version")], "has no kind and schema version"),
]


@pytest.mark.parametrize("mutate, message", MUTATIONS)
def test_load_result_refuses_a_bad_summary_in_one_line_naming_the_directory(runs, tmp_path, mutate, message):
    _, directory = runs["compare"]
    summary = json.loads((directory / "summary.json").read_text())
    mutate(summary)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError) as err:
        load_result(bad)
    text = str(err.value)
    assert "\n" not in text and text.startswith("result_dir: ") and str(bad) in text
    assert message in text, text


def test_load_result_refuses_what_is_not_a_result_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{")
    for path, message in (
        (tmp_path / "empty", "it has no summary.json"),
        (tmp_path / "file", "is not a directory"),
        (tmp_path / "missing", "is not a directory"),
        (tmp_path / "broken", "cannot be read"),
    ):
        with pytest.raises(ValueError, match=r"^result_dir: ") as err:
            load_result(path)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_result_refuses_another_kind_or_schema_version():
    """Result.from_json takes to_json's dict (kind and schema_version checked) or the fields alone."""
    deep = DeepLinearResult.from_json(_deep_linear_json())
    fields_only = {k: v for k, v in deep.to_json().items() if k not in ("kind", "schema_version")}
    assert _same(DeepLinearResult.from_json(fields_only), deep)
    assert math.isnan(deep.loss[2]) and math.isnan(deep.optimization_phase_end[0]) and deep.figure is None
    with pytest.raises(ValueError, match=r"^ComparisonResult.kind: expected 'compare', got 'deep-linear'$"):
        ComparisonResult.from_json(deep.to_json())
    with pytest.raises(ValueError, match=r"^DeepLinearResult.schema_version: expected 1, got 0$"):
        DeepLinearResult.from_json({**deep.to_json(), "schema_version": 0})


def _deep_linear_json() -> dict[str, Any]:
    return {
        "kind": "deep-linear",
        "schema_version": SCHEMA_VERSION,
        "config": {"widths": [1, 1, 1]},
        "depth": 2,
        "method": "gd",
        "min_loss": 0.1,
        "steps": [0, 1, 2],
        "loss": [1.0, 0.5, None],
        "imbalance_norm": [2.0, 1.5, 1.0],
        "distance_to_minima": [1.0, 0.1, 0.01],
        "hessian_steps": [0, 2],
        "hessian_top": [1.0, 2.0],
        "hessian_trace": [1.5, 2.5],
        "optimization_phase_end": [None, 2.0],
        "imbalance_half_time": [2.0, 2.0],
        "imbalance_ratio_final": [0.5, 0.5],
        "diverged": [False, False],
        "figure": None,
    }


# --- the Record round trip on generated values -------------------------------------------------------


@dataclass(frozen=True)
class _Inner(Record):
    x: float
    flag: bool


@dataclass(frozen=True)
class _Sample(Record):
    n: int
    name: str
    values: tuple[float, ...]
    grid: tuple[tuple[float, ...], ...]
    maybe: float | None
    pair: tuple[int, str]
    inner: dict[str, _Inner]
    items: tuple[_Inner, ...]
    free: dict[str, Any]


FLOATS = st.floats(allow_nan=True, allow_infinity=True)
INNER = st.builds(_Inner, x=FLOATS, flag=st.booleans())
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
SAMPLES = st.builds(
    _Sample,
    n=st.integers(),
    name=st.text(),
    values=st.lists(FLOATS).map(tuple),
    grid=st.lists(st.lists(FLOATS, max_size=3).map(tuple), max_size=3).map(tuple),
    maybe=st.none() | FLOATS,
    pair=st.tuples(st.integers(), st.text()),
    inner=st.dictionaries(st.text(), INNER, max_size=3),
    items=st.lists(INNER, max_size=3).map(tuple),
    free=st.dictionaries(st.text(), st.recursive(JSON_LEAVES, lambda c: st.lists(c, max_size=3), max_leaves=6)),
)


def _read_back(value: Any, hint_optional: bool = False) -> Any:
    """What a value becomes through strict JSON: a non-finite float is NaN (None in a ``float | None``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if hint_optional else math.nan
    return value


@settings(max_examples=200, deadline=None)
@given(SAMPLES)
def test_property_records_round_trip_through_strict_json(sample):
    """Any record: to_json is strict JSON, and from_json gives the record back, each non-finite float as
    NaN (None in a field typed float | None): equal to the record itself when every float is finite."""
    text = json.dumps(sample.to_json(), allow_nan=False)
    back = _Sample.from_json(json.loads(text))
    expected = dataclasses.replace(
        sample,
        values=tuple(_read_back(v) for v in sample.values),
        grid=tuple(tuple(_read_back(v) for v in row) for row in sample.grid),
        maybe=_read_back(sample.maybe, hint_optional=True),
        inner={k: dataclasses.replace(v, x=_read_back(v.x)) for k, v in sample.inner.items()},
        items=tuple(dataclasses.replace(v, x=_read_back(v.x)) for v in sample.items),
    )
    assert _same(back, expected)
    assert back.to_json() == sample.to_json()
    finite = all(
        math.isfinite(v)
        for v in (*sample.values, *(v for row in sample.grid for v in row), *(i.x for i in sample.items))
    ) and all(math.isfinite(i.x) for i in sample.inner.values())
    if finite and (sample.maybe is None or math.isfinite(sample.maybe)):
        assert back == sample


@settings(max_examples=50, deadline=None)
@given(st.builds(DeepLinearResult, config=st.dictionaries(st.text(), st.integers() | st.text(), max_size=3)))
def test_property_a_result_round_trips_with_its_kind(result):
    """A generated DeepLinearResult (every field from its type hint) reads back from to_json, kind and all."""
    text = json.dumps(result.to_json(), allow_nan=False)
    back = DeepLinearResult.from_json(json.loads(text))
    assert back.to_json() == result.to_json()
    assert json.loads(text)["kind"] == "deep-linear"
