"""The fuzzing's test case: what ``tests/test_fuzz.py`` generates and what it expects of it.

`Case` holds one call of ``ntk-l2 predict`` (``kind == "cli"``) or of a solver (``"api"``): the arrays, the
arguments as passed and their numeric meaning, and the verdict expected (`VALID`, `EITHER` or `INVALID`, with
the argument names a refusal may blame). The helpers the strategy and the mutations share live here, and so
does the last word on a generated case: the file and --out forms it may take and `finalize`, which derives
from the whole case (after every mutation) what it must be judged by.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np
from hypothesis import strategies as st

# (n, m, c): few shapes, so that the discrete solver's jit cache hits.
SHAPES = ((1, 1, 1), (3, 2, 2), (4, 1, 3), (6, 4, 3))
NNGP = ("nngp_train_train", "nngp_test_train", "nngp_test_test")
SLOTS = ("k_train_train", "y_train", "k_test_train", "fx_train_0", "fx_test_0") + NNGP
KERNEL_SLOTS = ("k_train_train", "nngp_train_train", "nngp_test_test")
VALID, EITHER, INVALID = 0, 1, 2
EXPECT_NAMES = {VALID: "valid", EITHER: "either", INVALID: "invalid"}


@dataclasses.dataclass(repr=False)
class Case:
    kind: str  # "cli" | "api"
    solver: str  # closed | discrete | ensemble (api) | ode_mse (api) | xent
    n: int
    m: int
    c: int
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    lr: Any = 1.0  # what is passed (API) ...
    l2: Any = 0.0
    degree: Any = 2
    times: Any = None
    num: dict[str, Any] = dataclasses.field(default_factory=dict)  # ... and its numeric meaning
    flags: dict[str, str | None] = dataclasses.field(default_factory=dict)  # CLI flag -> text (None: omitted)
    extra_argv: list[str] = dataclasses.field(default_factory=list)
    api_extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    scalar_t: bool = False
    file_form: str = "npz"
    huge: tuple | None = None
    out_form: str = "fresh"
    expect: int = VALID
    blame: set[str] = dataclasses.field(default_factory=set)
    tags: list[str] = dataclasses.field(default_factory=list)
    touched: set[str] = dataclasses.field(default_factory=set)  # slots/params/flags already mutated
    no_ref: bool = False
    probs: np.ndarray | None = None

    def mark(self, level: int, tag: str, *blame: str) -> None:
        self.expect = max(self.expect, level)
        self.tags.append(tag)
        if level != VALID:
            self.blame.update(blame)

    @property
    def loss(self) -> str:
        return "xent" if self.solver == "xent" else "mse"

    def describe(self) -> str:
        lines = [
            f"{self.kind} {self.solver} n={self.n} m={self.m} c={self.c} expect={EXPECT_NAMES[self.expect]} "
            f"blame={sorted(self.blame)} tags={self.tags}"
        ]
        for key, value in self.arrays.items():
            lines.append(f"  {key}: {_summary(value)}")
        if self.kind == "cli":
            lines.append(
                f"  file={self.file_form}{'' if self.huge is None else ' ' + repr(self.huge)} out={self.out_form}"
            )
            lines.append("  argv: " + " ".join(cli_argv(self, "KERNEL", "OUT")))
        else:
            lines.append(
                f"  lr={self.lr!r} l2={self.l2!r} degree={self.degree!r} t={self.times!r} extra={self.api_extra!r}"
            )
        return "\n".join(lines)

    __repr__ = describe


def _summary(value: Any) -> str:
    if isinstance(value, np.ndarray):
        with np.printoptions(precision=3, threshold=12, edgeitems=2, linewidth=200):
            body = " ".join(repr(value).split()) if value.size <= 12 else ""
        return f"{value.dtype.str} {value.shape} {body[:300]}"
    return repr(value)[:200]


def cli_argv(case: Case, kernel: str, out: str) -> list[str]:
    argv = ["predict", kernel]
    for flag, text in case.flags.items():
        if text is None:
            continue
        if flag == "--discrete":
            argv.append(flag)
        elif text.startswith("-") or text == "" or flag in case.num.get("eq_flags", ()):
            argv.append(f"{flag}={text}")
        else:
            argv += [flag, text]
    argv += ["--out", out]
    return argv + case.extra_argv


def psd_from_features(rng, size: int, rank: int, scale: float) -> np.ndarray:
    feats = rng.normal(size=(size, rank))
    return scale * feats @ feats.T / rank


def present_slots(case: Case, names=SLOTS) -> list[str]:
    """Slots present and not yet mutated (a second mutation could undo the first)."""
    return [k for k in names if k in case.arrays and isinstance(case.arrays[k], np.ndarray) and k not in case.touched]


def free(case: Case, *names: str) -> bool:
    return not (set(names) & case.touched)


def touch(case: Case, *names: str) -> None:
    case.touched.update(names)


def draw_free(case: Case, draw, slots: dict[str, tuple[str, ...]]) -> str | None:
    """Draw one of the options (keys of `slots`) whose names are all untouched, and touch them; None if none is."""
    options = [option for option, names in slots.items() if free(case, *names)]
    if not options:
        return None
    option = draw(st.sampled_from(options))
    touch(case, *slots[option])
    return option


def uses_fx(case: Case) -> bool:
    return not (case.kind == "api" and case.solver == "ensemble")


def api_name(case: Case, slot: str) -> str:
    if case.kind == "api" and case.solver == "ensemble":
        return {"k_train_train": "ntk_train_train", "k_test_train": "ntk_test_train"}.get(slot, slot)
    return slot


FILE_FORMS = (
    ["npz"] * 14
    + ["npz_compressed"] * 3
    + [
        "npy",
        "npy_named_npz",
        "text",
        "empty",
        "truncated",
        "corrupt",
        "corrupt_compressed",
        "huge",
        "huge",
        "short_data",
        "raw_member",
        "missing",
        "directory",
    ]
)
OUT_FORMS = ["fresh"] * 12 + [
    "existing_out",
    "missing_dir",
    "same",
    "same_dotdot",
    "same_via_dirlink",
    "hardlink",
    "symlink",
    "dangling_symlink",
    "readonly_dir",
    "parent_is_file",
    "is_dir",
    "long_name",
]


def file_expectations(case: Case, draw, rng) -> None:
    """What the CLI's kernel file form makes of the case (and the details of a damaged or huge file)."""
    form = case.file_form
    if form in (
        "npy",
        "npy_named_npz",
        "text",
        "empty",
        "truncated",
        "short_data",
        "raw_member",
        "missing",
        "directory",
    ):
        case.mark(INVALID, f"file {form}", "KERNEL")
    elif form in ("corrupt", "corrupt_compressed"):
        # a flipped byte may land in a field nobody reads (a time stamp): then the arrays are intact
        case.mark(EITHER, f"file {form}", "KERNEL")
        case.num["corrupt_at"] = [int(x) for x in rng.integers(0, 2**31, draw(st.integers(1, 3)))]
    elif form == "huge":
        keys = [k for k in present_slots(case) if case.arrays[k].dtype.kind == "f"] or ["k_train_train"]
        key = draw(st.sampled_from(keys))
        shape = draw(
            st.sampled_from(
                [
                    (10**5, 10**5),
                    (30_000, 30_000),
                    (10**7, 10**7),
                    (2**31, 2**31),
                    (1, 10**10),
                    (10**4, 10**4, 10**4),
                    (2**62, 4),
                ]
            )
        )
        descr = draw(st.sampled_from(["<f8", "<f4", "<c16", "|b1"]))
        case.huge = (key, shape, descr, draw(st.booleans()))
        case.mark(INVALID, f"huge declared {key} {shape} {descr}", "KERNEL", key)


def out_expectations(case: Case) -> None:
    """What the CLI's --out form makes of the case."""
    form = case.out_form
    if form in ("same", "same_dotdot", "same_via_dirlink", "readonly_dir", "parent_is_file", "is_dir", "long_name"):
        case.mark(INVALID, f"out {form}", "--out")
    elif form in ("hardlink", "symlink", "dangling_symlink", "missing_dir"):
        case.mark(EITHER, f"out {form}", "--out")


def finalize(case: Case) -> None:
    """The expectations that follow from the whole case, once every mutation is applied."""
    a = case.arrays
    names = set(a)
    if case.kind == "cli":
        for req in ("k_train_train", "y_train"):
            if req not in names:
                case.mark(INVALID, f"missing {req}", req)
        present = [k for k in NNGP if k in names]
        if present and len(present) < 3:
            case.mark(INVALID, "partial NNGP", *NNGP)
        if present and "k_test_train" not in names:
            case.mark(INVALID, "NNGP without k_test_train", "k_test_train", *NNGP)
        if present and case.solver == "discrete":
            case.mark(INVALID, "--discrete with NNGP", "--discrete", *NNGP)
        if present and case.solver == "xent":
            case.mark(INVALID, "xent with NNGP", "--loss", *NNGP)
        if "fx_test_0" in names and "k_test_train" not in names:
            case.mark(INVALID, "fx_test_0 without k_test_train", "fx_test_0", "k_test_train")
    else:
        for req in ("k_train_train", "y_train") + (
            ("k_test_train", "nngp_train_train", "nngp_test_train") if case.solver == "ensemble" else ()
        ):
            if req not in names:
                case.mark(INVALID, f"missing {req}", api_name(case, req))
        if case.solver != "ensemble" and "fx_test_0" in names and "k_test_train" not in names:
            case.mark(INVALID, "fx_test_0 without k_test_train", "fx_test_0", "k_test_train")
    if case.solver == "discrete":
        _discrete_expectations(case)
    if case.kind == "cli" and case.expect != INVALID and np.any(np.isinf(np.asarray(case.num["times"], float))):
        # t = inf is the documented limit, but the file must hold only finite values (times included)
        case.mark(EITHER, "--times with inf (file must stay finite)", "--times", "times", "t")
    if case.solver != "discrete" and case.expect != INVALID:
        with contextlib.suppress(Exception):
            growth = float(case.num["lr"]) * float(case.num["l2"]) * float(np.max(case.num["times"]))
            if int(case.num["degree"]) == 0 and growth > 10:
                # degree 0: Θ_t = e^{2ηλt} Θ_0 grows past e^20: stiff or beyond float range; a refusal
                # naming what to change is fair (a hang is not)
                case.mark(
                    EITHER,
                    "degree 0 kernel grows past e^20",
                    "t",
                    "--times",
                    "learning_rate",
                    "--lr",
                    "l2",
                    "--l2",
                    "times",
                    "fx_train",
                    "fx_test",
                    "mean",
                    "cov_test",
                    "covariance",
                )
    if case.solver in ("ode_mse", "xent") and case.expect != INVALID:
        times = case.num["times"]
        if case.kind == "api" and np.any(np.isinf(times)):
            case.mark(INVALID, "ODE with t = inf", "t")
    if case.solver == "xent" and (case.probs is None or "y_train" in case.touched):
        case.no_ref = True  # the targets the solver derives from a mutated y_train: not re-derived here


def _discrete_expectations(case: Case) -> None:
    """Stable map (by the step-0/step-S condition |α − β_s μ_max| ≤ 1): valid; unstable: refusal allowed."""
    times = np.atleast_1d(np.asarray(case.num["times"], np.float64))
    if np.any(~np.isfinite(times)) or np.any(times != np.round(times)):
        case.mark(INVALID, "discrete with non-integer or infinite steps", "t", "--times")
    if "k_train_train" not in case.arrays or "y_train" not in case.arrays:
        return
    if case.expect == INVALID:  # the step size may be what is refused first
        case.blame.update(("learning_rate", "l2", "--lr", "--l2"))
        return
    try:
        k = np.asarray(case.arrays["k_train_train"], np.float64)
        norm = np.asarray(case.arrays["y_train"]).size
        mu = float(np.linalg.eigvalsh((k + k.T) / 2)[-1]) if k.size else 0.0
        eta, lam, deg = float(case.num["lr"]), float(case.num["l2"]), int(case.num["degree"])
    except Exception:
        return
    blame = ("learning_rate", "l2", "--lr", "--l2", "t", "--times")
    if not np.isfinite(mu) or norm == 0:
        return
    keep = 1.0 - eta * lam
    if keep <= 0:
        case.mark(EITHER, "discrete with learning_rate * l2 >= 1", *blame)
        return
    steps = float(np.max(times)) if times.size else 0.0
    worst = max(steps - 1, 0) if deg == 0 else 0
    with np.errstate(over="ignore"):
        beta_mu = 0.0 if mu <= 0 else eta * mu / norm * np.exp((deg - 1) * (1 + 2 * worst) * np.log(keep))
    if not (keep**deg - beta_mu >= -1.0 + 1e-6):
        case.mark(EITHER, "discrete map unstable", *blame)
    if steps > 1e7:
        case.no_ref = True
