"""Cross-references between derivations/, the code and the tests stay valid.

Three kinds of reference are resolved, as `derivations/README.md` ("How the references are
checked") describes:

- every name a derivation says a formula is *implemented by* is a real object: written in full
  (`ntk_l2.finite.train.linearize`), relative to `ntk_l2.theory` or to the package of the
  module named before it (`discrete.stability_limit`, `network.partial_products`), or, bare, an
  attribute, parameter or local name of the object named before it;
- every test a derivation says a formula is *checked by* (`tests/test_x.py::test_name`,
  `::test_name` for the file named before it) is a test function of that file;
- every test in the index's "Label → code → test" table names the label it checks (C3, M7,
  …) in its source or docstring, or the quantity it asserts (`QUANTITY`, reviewed by hand).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = sorted((ROOT / "derivations").glob("*.md"))
README = ROOT / "derivations" / "README.md"

# Backticked names that belong to other libraries, not to ntk_l2.
EXTERNAL = {"jax", "jnp", "lax", "nt", "np", "scipy", "stax", "neural_tangents", "sklearn", "mpmath"}
NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*")
TEST_REF = re.compile(
    r"(?:tests/)?(test_[a-z_0-9]+\.py)?::([A-Za-z_0-9]+)(\[[^\]]*\])?"
    r"|(?:tests/)?(test_[a-z_0-9]+\.py)"
)
LABEL_RANGE = re.compile(r"^([A-Z]+)(\d+)(?:–\1?(\d+))?$")


@dataclass(frozen=True)
class Row:
    """One row of the index's "Label → code → test" table."""

    labels: tuple[str, ...]
    statement: str
    implemented: str
    checked: str

    @property
    def label(self) -> str:
        return self.labels[0] if len(self.labels) == 1 else f"{self.labels[0]}–{self.labels[-1]}"


def _labels(cell: str) -> tuple[str, ...]:
    """'M7–M9' -> ('M7', 'M8', 'M9'); 'F1' -> ('F1',)."""
    match = LABEL_RANGE.match(cell.strip())
    assert match, f"derivations/README.md: unreadable label {cell!r}"
    prefix, first, last = match.group(1), int(match.group(2)), int(match.group(3) or match.group(2))
    return tuple(f"{prefix}{i}" for i in range(first, last + 1))


@cache
def table_rows() -> tuple[Row, ...]:
    """The rows of the index's table, in order."""
    rows, in_table = [], False
    for line in README.read_text().splitlines():
        if line.startswith("| Label | Statement | Implemented by | Checked by |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 4, f"derivations/README.md: a table row needs 4 cells: {line}"
            rows.append(Row(_labels(cells[0]), *cells[1:]))
    assert rows, "derivations/README.md has no 'Label → code → test' table"
    return tuple(rows)


def implemented_blocks(doc: Path) -> list[str]:
    """The text of each "Implemented by" part of a document (each table cell of the index)."""
    if doc == README:
        return [row.implemented for row in table_rows()]
    text = doc.read_text()
    return [m.group(1) for m in re.finditer(r"Implemented by(.*?)(?=Checked by|\Z)", text, flags=re.S)]


# --- resolving names -------------------------------------------------------------------------


def _import(path: str) -> tuple[Any, Any]:
    """(object, module that holds it, or the module itself) for a dotted path; LookupError if none.

    A field of a dataclass counts as an attribute of its class, default or not."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        try:
            module = importlib.import_module(prefix)
        except ModuleNotFoundError as err:  # only the path itself may be missing, not a dependency
            if err.name is None or not prefix.startswith(err.name):
                raise
            continue
        obj = module
        for attr in parts[cut:]:
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
            elif dataclasses.is_dataclass(obj) and attr in {f.name for f in dataclasses.fields(obj)}:
                obj = None  # a field without a default: nothing further to resolve
            else:
                raise LookupError(path)
        return obj, obj if inspect.ismodule(obj) else module
    raise LookupError(path)


def _package(module: Any) -> str:
    name = module.__name__
    return name if hasattr(module, "__path__") else name.rpartition(".")[0]


def _locals(obj: Any) -> set[str]:
    """Parameters, fields, attributes and local names of a callable or class."""
    names: set[str] = set()
    target = getattr(obj, "fun", None) or getattr(obj, "__wrapped__", None) or obj
    for candidate in (obj,) if target is obj else (obj, target):
        try:
            names |= set(inspect.signature(candidate).parameters)
        except (TypeError, ValueError):
            pass
        if dataclasses.is_dataclass(candidate):
            names |= {f.name for f in dataclasses.fields(candidate)}
        code = getattr(candidate, "__code__", None)
        if code is not None:
            names |= set(code.co_varnames) | set(code.co_cellvars)
            names |= {c.co_name for c in code.co_consts if inspect.iscode(c)}
        names |= set(dir(candidate))
    return names


def resolve_block(text: str) -> list[str]:
    """The backticked names of one "Implemented by" block that resolve to nothing."""
    missing, module, obj = [], None, None
    for token in re.findall(r"`([^`]+)`", text):
        name = token.split("(")[0].strip()
        if not NAME.fullmatch(name) or name.split(".")[0] in EXTERNAL:
            continue
        if name.endswith(".py"):
            if not any(ROOT.glob(f"ntk_l2/**/{name}")):
                missing.append(token)
            continue
        if "." not in name and module is not None:
            if hasattr(module, name):
                obj = getattr(module, name)
            elif name not in _locals(obj):
                missing.append(f"{token} (in {module.__name__})")
            continue
        bases = ([_package(module)] if module is not None else []) + ["ntk_l2.theory", "ntk_l2"]
        candidates = [name] if name.startswith("ntk_l2") else [f"{base}.{name}" for base in bases]
        for candidate in candidates:
            try:
                obj, module = _import(candidate)
                break
            except LookupError:
                continue
        else:
            missing.append(token)
    return missing


@pytest.mark.parametrize("doc", DERIVATIONS, ids=lambda p: p.name)
def test_implemented_by_names_resolve(doc):
    missing = [name for block in implemented_blocks(doc) for name in resolve_block(block)]
    assert not missing, f"{doc.name}: 'Implemented by' names that resolve to nothing: {missing}"


@pytest.mark.parametrize("doc", DERIVATIONS, ids=lambda p: p.name)
def test_full_names_and_paths_resolve(doc):
    """Anywhere in a document: `ntk_l2.…` names import, and cited files exist."""
    text = doc.read_text()
    missing = []
    for token in re.findall(r"`(ntk_l2\.[A-Za-z_0-9.]+)", text):
        try:
            _import(token.rstrip("."))
        except LookupError:
            missing.append(token)
    for path in re.findall(r"\b((?:ntk_l2|tests|benchmarks|notebooks|derivations)/[A-Za-z_0-9/]+(?:\.[a-z]+)?)", text):
        candidates = [ROOT / path] + ([ROOT / f"{path}.py"] if "." not in Path(path).name else [])
        if not any(p.exists() for p in candidates):
            missing.append(path)
    for file in re.findall(r"`([A-Za-z_0-9]+\.py)`", text):  # a bare file name: somewhere in the repository
        if not any(any(ROOT.glob(f"{top}/**/{file}")) for top in ("ntk_l2", "tests", "benchmarks", "notebooks")):
            missing.append(file)
    for link in re.findall(r"\]\(([a-z_0-9]+\.md)(?:#[^)]*)?\)", text):
        if not (doc.parent / link).exists():
            missing.append(link)
    assert not missing, f"{doc.name}: names or files that do not exist: {missing}"


# --- resolving tests -------------------------------------------------------------------------


@cache
def sources_of_tests(file: str) -> dict[str, str]:
    """{test name: source} of the test functions (and Class::method) of tests/<file>."""
    path = ROOT / "tests" / file
    if not path.exists():
        return {}
    source = path.read_text()
    tree = ast.parse(source)
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found[node.name] = ast.get_source_segment(source, node) or ""
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    found[f"{node.name}::{item.name}"] = ast.get_source_segment(source, item) or ""
    return found


def cited_tests(text: str) -> list[tuple[str, str | None]]:
    """(file, test name or None for a whole file) for each test reference, in order; a bare
    `::name` belongs to the file named before it."""
    refs: list[tuple[str, str | None]] = []
    last: str | None = None
    for match in TEST_REF.finditer(text):
        file, name, whole = match.group(1), match.group(2), match.group(4)
        if whole:
            last = whole
            refs.append((whole, None))
            continue
        last = file or last
        assert last, f"'::{name}' without a test file before it"
        refs.append((last, name))
    return refs


@pytest.mark.parametrize("doc", DERIVATIONS, ids=lambda p: p.name)
def test_checked_by_tests_exist(doc):
    missing = []
    for file, name in cited_tests(doc.read_text()):
        if not (ROOT / "tests" / file).exists():
            missing.append(file)
        elif name is not None and name not in sources_of_tests(file):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc.name} cites missing tests: {missing}"


def test_the_reference_parsers_can_fail():
    """The resolvers report what is wrong, so that the tests above are not vacuous."""
    assert resolve_block("`discrete.gradient_descent_mse_l2_discrete`, `stability_limit`") == []
    assert resolve_block("`ntk_l2.compare.compare_width`") == ["ntk_l2.compare.compare_width"]
    assert resolve_block("`discrete.stability_limit`, `no_such_name`") == ["no_such_name (in ntk_l2.theory.discrete)"]
    assert cited_tests("`tests/test_discrete.py::test_a`, `::test_b[k1]`, `test_ode.py`") == [
        ("test_discrete.py", "test_a"),
        ("test_discrete.py", "test_b"),
        ("test_ode.py", None),
    ]
    assert "test_matches_step_by_step_loop" in sources_of_tests("test_discrete.py")
    assert "test_no_such_test" not in sources_of_tests("test_discrete.py")


# --- labels ----------------------------------------------------------------------------------

# For a cited test that does not name its label: a pattern for the quantity it asserts, checked
# against its source. Each entry was reviewed against the test's assertions (the comment says
# what it asserts); an entry goes once the test's docstring names the label.
QUANTITY: dict[tuple[str, str], str] = {
    # the map vs a dense step-by-step loop of D1–D3; the η → 0 limit against the closed form
    ("D1–D4", "test_discrete.py::test_matches_step_by_step_loop"): r"_loop\(p, eta, lam, k, steps\)",
    ("D1–D4", "test_discrete.py::test_small_steps_approach_gradient_flow"): r"gradient_descent_mse_l2\(",
    # refusal at 1.01× the limit, acceptance at 0.99×, 2N/μ_max at λ = 0
    ("D5", "test_discrete.py::test_unstable_learning_rate_is_rejected_with_limit"): r"stability limit",
    # D6a/D6c limits at t = 10^12, 10^15; D6d's work bound; the tail against the plain loop
    ("D6", "test_discrete.py::test_huge_times_reach_the_limits"): r"KernelRidge",
    ("D6", "test_discrete.py::test_work_bound_raises_one_line_before_any_loop"): r"max_loop_steps",
    ("D6", "test_discrete.py::test_property_tail_equals_loop"): r"_loop\(p, eta",
    # λ = 0 mean and covariance against neural-tangents' ensemble
    ("E1–E3", "test_ensemble.py::test_lambda_zero_matches_neural_tangents_ensemble"): r"gradient_descent_mse_ensemble",
    # the ODE against the closed form, constant and piecewise-constant λ (restart on the decayed kernel)
    ("O1–O3", "test_ode.py::test_constant_schedule_matches_closed_form"): r"gradient_descent_mse_l2\(",
    ("O1–O3", "test_ode.py::test_piecewise_schedule_matches_composed_closed_form"): r"PiecewiseConstant",
    # a linearized network's run against the degree-1 map with offsets (names C7, D1)
    ("F1", "test_train.py::test_linearized_network_matches_discrete_map_exactly"): r"linearized=True",
    # the sweep is the map run by run, t* by `time_to_best`; t*·η·λ within a factor 3 on MNIST
    ("L1", "test_laws.py::test_sweep_is_the_discrete_map_run_by_run"): r"time_to_best",
    ("L1", "test_laws.py::test_theory_obeys_the_t_star_law"): r"t_star_eta_l2",
    ("L1", "test_laws_dynamics.py::test_sweep_of_a_toy_dynamics_reads_t_star_off_its_curve_and_gives_the_law"): (
        r"t_star_eta_l2"
    ),
    # λ_opt = c/(ηT) from a run; the kernel-only argmax over a grid
    ("L2", "test_laws.py::test_optimal_l2_from_run"): r"optimal_l2_from_run",
    ("L2", "test_laws.py::test_optimal_l2_from_kernel_is_the_grid_argmax"): r"optimal_l2\(KernelDynamics",
    ("L2", "test_laws_dynamics.py::test_optimal_l2_of_a_toy_dynamics_is_the_peak_at_the_budget"): r"optimal_l2\(",
    # AutoL2's λ schedule replayed in a full-matrix loop of the map
    ("L3", "test_laws.py::test_autol2_theory_matches_the_map_with_its_own_schedule"): r"_direct_loop",
    ("L3", "test_laws_dynamics.py::test_finite_autol2_changes_each_seeds_l2_and_records_what_train_records"): (
        r"l2_records"
    ),
    # scaling a normalized convolution leaves the output unchanged (degree 0), the readout degree 1
    (
        "L5",
        "test_law_experiments.py::test_batchnorm_cnn_is_scale_invariant_in_its_convolutions",
    ): r"convolutional_batchnorm",
    # imbalance conserved by the flow (DL1), decaying as e^{−2ηλt} with L2 (DL2)
    (
        "DL0–DL2",
        "test_deep_linear.py::test_imbalance_conserved_by_gradient_flow",
    ): r"_max_rel_drift\(run, lambda t: 1\.0\)",
    ("DL0–DL2", "test_deep_linear.py::test_imbalance_decays_exactly_with_l2"): r"np\.exp\(-2 \* eta \* lam \* t\)",
    # one GD step against D_ij[(1−ηλ)² − η²ρ²P²/(w_i²w_j²)]
    ("DL3", "test_deep_linear.py::test_gradient_descent_step_contracts_imbalance"): r"eta\*\*2 \* rho\*\*2",
    # λ_max at chain minima smallest when balanced; Tr H closed form; first-order distance
    ("DL4–DL6", "test_deep_linear.py::test_balanced_point_is_the_flattest_minimum"): r"chain_top_eigenvalue_at_minimum",
    ("DL4–DL6", "test_deep_linear.py::test_hessian_trace_closed_form"): r"hessian_trace",
    ("DL4–DL6", "test_deep_linear.py::test_distance_to_minima_is_first_order_exact"): r"distance_to_minima",
    # depth 1 with L2 is scikit-learn's ridge with alpha = Nλ, flow and descent
    ("DL7–DL9", "test_deep_linear.py::test_depth_one_with_l2_is_ridge_regression"): r"Ridge\(alpha=y\.size \* lam",
    # the momentum map against the dense loop of the training rule
    ("M1–M4", "test_momentum_discrete.py::test_matches_dense_loop"): r"dense_loop\(",
    # the custom JVP: grad and jacfwd against differences of the loop; jit and vmap against eager
    ("M10", "test_momentum_discrete.py::test_gradients_match_finite_differences_of_the_loop"): r"jax\.jacfwd",
    ("M10", "test_momentum_discrete.py::test_jit_vmap_match_eager"): r"jax\.vmap",
    # the companion matrix's spectral radius is 1 at the limit
    ("M11", "test_momentum_discrete.py::test_stability_limit"): r"_companion_radius",
    # an (n, n, c, c) kernel Θ ⊗ I gives the (n, n) results through MF4's system
    ("MF3–MF4", "test_momentum_flow.py::test_output_kernel_layout"): r"Θ ⊗ I",
    # λ = 0 against neural-tangents' momentum ODE
    ("MF5", "test_momentum_flow.py::test_lambda_zero_matches_neural_tangents"): r"nt\.predict\.gradient_descent\(",
    # MF7: jit, adjoint gradients, vmap, unsorted and repeated times, one-line refusals
    ("MF7", "test_momentum_flow.py::test_jit_matches_eager"): r"jax\.jit",
    ("MF7", "test_momentum_flow.py::test_grad_matches_finite_differences"): r"jax\.grad",
    ("MF7", "test_momentum_flow.py::test_vmap_over_l2_and_times_equals_separate_calls"): r"jax\.vmap",
    ("MF7", "test_momentum_flow.py::test_unsorted_and_repeated_times"): r"repeats",
    ("MF7", "test_momentum_flow.py::test_invalid_inputs_one_line"): r'"\\n" not in',
    # the batch map and inclusion probabilities, through the exact average over all batch sequences
    ("S1–S3", "test_sgd.py::test_property_second_moment_equals_enumeration_of_all_batches"): r"enumerate_moments",
    # the mean over batches is the reference full-batch map; B = n has zero covariance
    ("S4", "test_sgd.py::test_mean_equals_the_reference_full_batch_map"): r"reference_map\(",
    ("S5", "test_sgd.py::test_full_batch_has_zero_covariance_and_is_the_full_batch_map"): r"cov_train",
    # the row, work and memory bounds and the argument checks, one line each
    ("S7", "test_sgd.py::test_too_large_problems_are_refused_before_any_work"): r"MAX_ROWS",
    ("S7", "test_sgd.py::test_bad_arguments_are_refused_in_one_line"): r'"\\n" not in',
    # symmetry and definiteness tolerances in float32 and float64
    ("V1–V2", "test_validation.py::test_float32_kernels_of_deficient_rank_are_accepted"): r"positive semi-definite",
    ("V1–V2", "test_validation.py::test_float64_tolerances_are_unchanged"): r"positive semi-definite",
    # the NNGP blocks and the joint NNGP refused through the CLI and the API
    ("V3", "test_validation.py::test_nngp_blocks_are_checked_exactly"): r"NNGP",
    ("V3", "test_validation.py::test_joint_nngp_check_through_the_api"): r"joint NNGP",
    # magnitude headroom (entries up to 1e150) and memory sizing before loading
    ("V4", "test_validation.py::test_extreme_values_never_give_non_finite_output"): r"entries up to",
    ("V4", "test_validation.py::test_request_that_cannot_fit_is_refused_before_loading"): r"--max-memory",
}


def _mentions(source: str, words: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![0-9])", source) for w in words)


def label_mismatches() -> list[str]:
    """Cited tests of the index's table whose source names neither a label of their row nor
    their reviewed quantity."""
    out = []
    for row in table_rows():
        for file, name in cited_tests(row.checked):
            if name is None:
                continue
            source = sources_of_tests(file).get(name, "")
            pattern = QUANTITY.get((row.label, f"{file}::{name}"))
            if _mentions(source, row.labels) or (pattern and re.search(pattern, source)):
                continue
            out.append(f"{row.label}: {file}::{name}")
    return out


def test_every_labelled_test_names_its_label_or_quantity():
    assert not label_mismatches(), "tests that name neither their label nor their quantity:\n" + "\n".join(
        label_mismatches()
    )


def test_reviewed_quantities_are_current():
    """Each reviewed entry is still cited in its row and still needed (its test does not name
    the label): entries are removed when the test's docstring gains the label."""
    cited = {(row.label, f"{f}::{n}"): row for row in table_rows() for f, n in cited_tests(row.checked) if n}
    stale = []
    for key in QUANTITY:
        row = cited.get(key)
        if row is None:
            stale.append(f"{key}: not cited")
        elif _mentions(sources_of_tests(key[1].split("::")[0]).get(key[1].split("::", 1)[1], ""), row.labels):
            stale.append(f"{key}: names its label, remove the entry")
    assert not stale, stale


def test_every_label_is_derived_in_its_document():
    """Each label of the table appears in a derivation document other than the index."""
    texts = "\n".join(p.read_text() for p in DERIVATIONS if p != README)
    missing = [label for row in table_rows() for label in row.labels if not _mentions(texts, (label,))]
    assert not missing, missing


def test_every_theory_module_cites_an_existing_derivation():
    for module in sorted((ROOT / "ntk_l2" / "theory").glob("[a-z]*.py")):
        if module.name == "__init__.py":
            continue
        cited = set(re.findall(r"derivations/([a-z_]+\.md)", module.read_text()))
        if module.stem in ("schedules",):  # plain data types, no formula
            continue
        assert cited, f"{module.name} cites no derivation"


def test_cited_derivations_exist():
    """Code, tests, benchmarks and notebooks cite only derivation documents that exist."""
    files = [
        *ROOT.glob("ntk_l2/**/*.py"),
        *ROOT.glob("tests/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("notebooks/*.py"),
        ROOT / "README.md",
    ]
    missing = [
        f"{f.relative_to(ROOT)}: derivations/{name}"
        for f in files
        if f.exists()
        for name in set(re.findall(r"derivations/([a-z_]+\.md)", f.read_text()))
        if not (ROOT / "derivations" / name).exists()
    ]
    assert not missing, missing
