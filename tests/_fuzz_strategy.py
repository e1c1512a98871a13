"""The hypothesis strategy `cases`: a valid case, then zero to three mutations of it.

`cases` builds a valid call (kernel, targets, initial outputs, NNGP blocks, η, λ, k and times, as arrays in
any memory layout for the API and as flag text in any spelling for the CLI), applies mutations drawn from
`MUTATIONS` (those of the arrays from ``_fuzz_mutations``, those of the flags and scalar arguments here),
chooses a file and an --out form for the CLI, and lets `finalize` settle the expectation.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from hypothesis import strategies as st

import ntk_l2

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _fuzz_cases import (
        EITHER,
        FILE_FORMS,
        INVALID,
        OUT_FORMS,
        SHAPES,
        VALID,
        Case,
        draw_free,
        file_expectations,
        finalize,
        free,
        out_expectations,
        psd_from_features,
        touch,
        uses_fx,
    )
    from _fuzz_mutations import ARRAY_MUTATIONS
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._fuzz_cases import (
        EITHER,
        FILE_FORMS,
        INVALID,
        OUT_FORMS,
        SHAPES,
        VALID,
        Case,
        draw_free,
        file_expectations,
        finalize,
        free,
        out_expectations,
        psd_from_features,
        touch,
        uses_fx,
    )
    from ._fuzz_mutations import ARRAY_MUTATIONS


def _layout(draw, arr: np.ndarray) -> np.ndarray:
    """Same values, different memory layout (Fortran, strided view, read-only)."""
    how = draw(st.sampled_from(["C", "C", "F", "strided", "readonly"]))
    if how == "F":
        return np.asfortranarray(arr)
    if how == "strided" and arr.ndim >= 1:
        big = np.zeros(tuple(2 * s for s in arr.shape), arr.dtype)
        big[tuple(slice(None, None, 2) for _ in arr.shape)] = arr
        return big[tuple(slice(None, None, 2) for _ in arr.shape)]
    if how == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
    return arr


@st.composite
def cases(draw) -> Case:
    """A valid case, zero to three mutations, the CLI's file and --out forms, then the final expectation."""
    kind = draw(st.sampled_from(["cli", "cli", "cli", "api", "api"]))
    if kind == "cli":
        solver = draw(st.sampled_from(["closed", "closed", "closed", "discrete", "discrete", "xent"]))
    else:
        solver = draw(st.sampled_from(["closed", "discrete", "ensemble", "ode_mse", "xent"]))
    n, m, c = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    case = Case(kind=kind, solver=solver, n=n, m=m, c=c)
    case.num["seed"] = seed
    _build_valid(case, draw, rng)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 1, 1, 2, 2, 3]))):
        options = [name for name, (applies, _) in MUTATIONS.items() if applies(case)]
        name = draw(st.sampled_from(options))
        MUTATIONS[name][1](case, draw, rng)
    if kind == "cli":
        case.file_form = draw(st.sampled_from(FILE_FORMS))
        case.out_form = draw(st.sampled_from(OUT_FORMS))
        file_expectations(case, draw, rng)
        out_expectations(case)
    finalize(case)
    return case


def _build_valid(case: Case, draw, rng) -> None:
    """The arrays and the arguments of a valid call (the arrays' memory layout and the flags' spelling vary)."""
    n, m, c = case.n, case.m, case.c
    variant = draw(st.sampled_from(["full", "full", "lowrank", "lowrank", "diag", "zero", "round_off_asym"]))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3]))
    if variant == "lowrank":
        joint = psd_from_features(rng, n + m, max(1, (n + m) // 3), scale)
    elif variant == "diag":
        joint = np.diag(rng.uniform(0.1, 2.0, n + m)) * scale
    elif variant == "zero":
        joint = np.zeros((n + m, n + m))
    else:
        joint = psd_from_features(rng, n + m, 2 * (n + m), scale)
    k = joint[:n, :n].copy()
    if variant == "round_off_asym":  # what a real kernel computation leaves: symmetric to 1e-14
        k = k + 1e-14 * np.abs(k).max() * rng.uniform(-1, 1, k.shape)
    case.tags.append(f"kernel:{variant}:{scale:g}")
    dtype = draw(st.sampled_from(["float64", "float64", "float64", "float32", ">f8"]))
    if dtype != "float64":
        case.tags.append(f"kernel dtype {dtype}")  # float32 of deficient rank must still be accepted
    with_test = case.solver == "ensemble" or draw(st.booleans())
    with_nngp = case.solver == "ensemble" or (
        case.kind == "cli" and case.solver == "closed" and with_test and draw(st.booleans())
    )
    arrays: dict[str, Any] = {"k_train_train": k.astype(dtype)}
    if case.solver == "xent":
        form = draw(st.sampled_from(["centered", "onehot", "probs"]))
        labels = rng.integers(0, c, n)
        onehot = np.eye(c)[labels]
        probs = rng.dirichlet(np.ones(c), n) if form == "probs" else onehot
        case.probs = probs
        arrays["y_train"] = onehot - 1.0 / c if form == "centered" else probs
        case.tags.append(f"y:{form}")
    else:
        arrays["y_train"] = rng.normal(size=(n, c))
    if uses_fx(case) and draw(st.booleans()):
        arrays["fx_train_0"] = 0.5 * rng.normal(size=(n, c))
    if with_test:
        arrays["k_test_train"] = joint[n:, :n].astype(dtype)
        if case.solver != "ensemble" and draw(st.booleans()):
            arrays["fx_test_0"] = 0.5 * rng.normal(size=(m, c))
    if with_nngp:
        nngp = psd_from_features(rng, n + m, draw(st.sampled_from([2 * (n + m), max(1, (n + m) // 2)])), 1.0)
        arrays["nngp_train_train"] = nngp[:n, :n].astype(dtype)
        arrays["nngp_test_train"] = nngp[n:, :n].astype(dtype)
        if case.kind == "cli" or draw(st.booleans()):
            arrays["nngp_test_test"] = nngp[n:, n:].astype(dtype)
    if case.kind == "api":
        arrays = {key: _layout(draw, value) for key, value in arrays.items()}
    case.arrays = arrays

    # η, λ, k, times
    kk = np.asarray(arrays["k_train_train"], np.float64)
    mu_max = float(np.linalg.eigvalsh((kk + kk.T) / 2)[-1]) if n else 0.0
    norm = n * c
    if draw(st.booleans()) and mu_max > 1e-12:
        lr = draw(st.sampled_from([0.1, 0.5, 0.9, 1.9])) * norm / mu_max
    else:
        lr = draw(st.sampled_from([1e-3, 0.5, 1.0, 10.0]))
    l2 = draw(st.sampled_from([0.0, 0.0, 1e-4, 1e-2, 0.2]))
    degree = draw(st.sampled_from([0, 1, 2, 2, 3, 4]))
    if case.solver == "discrete":
        pool = [0, 1, 2, 3, 7, 20, 50, 400, 5000]
    elif case.solver in ("closed", "ensemble"):
        pool = [0.0, 0.5, 1.0, 3.0, 10.0, 100.0, 1e3, 1e4, np.inf]
    else:
        pool = [0.0, 0.5, 1.0, 3.0, 10.0, 100.0]
    times = [float(t) for t in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))]
    case.num.update(lr=lr, l2=l2, degree=degree, times=np.array(times))
    case.lr, case.l2, case.degree = lr, l2, degree
    if case.kind == "api" and len(times) == 1 and draw(st.booleans()):
        case.times, case.scalar_t = times[0], True
    else:
        case.times = times if case.kind == "cli" or draw(st.booleans()) else np.array(times)
    if case.kind == "api":
        case.lr = draw(st.sampled_from([lr, lr, np.float64(lr), np.float32(lr) if np.float32(lr) == lr else lr]))
        case.degree = draw(st.sampled_from([degree, degree, float(degree), np.int64(degree)]))
    if case.kind == "cli":
        fmt = draw(st.sampled_from(["repr", "repr", "spaces", "g17"]))
        text = {
            "repr": lambda v: repr(float(v)),
            "spaces": lambda v: f" {float(v)!r} ",
            "g17": lambda v: format(float(v), ".17g"),
        }[fmt]
        case.flags = {
            "--lr": text(lr),
            "--l2": text(l2),
            "--degree": str(degree),
            "--times": ",".join(text(t) for t in times),
        }
        if case.solver == "discrete":
            case.flags["--discrete"] = ""
        if case.solver == "xent" or draw(st.booleans()):
            case.flags["--loss"] = case.loss
        order = list(case.flags)
        perm = draw(st.permutations(order))
        case.flags = {key: case.flags[key] for key in perm}
        if draw(st.booleans()):
            case.num["eq_flags"] = tuple(order)


# ---- the flag and scalar-argument mutations: (applies to case?, apply) ------------------------


CLI_BAD_FLAGS = {
    "--lr": ["0", "-1", "nan", "inf", "-inf", "abc", "", "1e400", "0x10", "-0"],
    "--l2": ["-1", "nan", "inf", "-inf", "x", "", "-1e-300"],
    "--degree": ["1.5", "-1", "nan", "inf", "abc", "", "2.5e0", "-1e-300"],
    "--times": ["", ",", "-1", "1,-2", "nan", "1,nan", "abc", "0x10", "1;2", "-inf", "1e400,-1"],
    "--loss": ["foo", "", "MSE", "xent ", "hinge"],
}
CLI_ODD_FLAGS = {  # (text, level for continuous MSE, level for discrete, level for xent)
    # a subnormal λ: the answer is that of λ = 0 up to t ~ 1e300; refusing it (naming --l2/l2) is fair too
    "--l2": [("-0.0", VALID, VALID, VALID), ("1e-320", EITHER, EITHER, EITHER)],
    "--degree": [
        ("2.0", VALID, VALID, VALID),
        ("-0", VALID, VALID, VALID),
        ("1e19", EITHER, EITHER, EITHER),
        ("1e300", EITHER, EITHER, EITHER),
        ("4e0", VALID, VALID, VALID),
    ],
    # t = inf is the documented limit, but a written file must hold only finite values (times included):
    # the CLI may refuse it
    "--times": [
        ("inf", EITHER, INVALID, INVALID),
        ("0,inf", EITHER, INVALID, INVALID),
        ("1e19", VALID, EITHER, EITHER),
        ("1,,2", EITHER, EITHER, EITHER),
        ("2.5", VALID, INVALID, VALID),
        ("1e-320", VALID, INVALID, VALID),
        ("1_0", EITHER, EITHER, EITHER),
        ("-0", VALID, VALID, VALID),
        ("1e6", VALID, VALID, EITHER),
    ],
    "--lr": [("1e6", VALID, EITHER, EITHER), ("1e-300", VALID, VALID, VALID)],
}


def _flag_api_name(flag: str) -> str:
    return {"--lr": "learning_rate", "--l2": "l2", "--degree": "degree", "--times": "t", "--loss": "loss"}[flag]


def _m_cli_flag(case, draw, rng):
    flag = draw_free(case, draw, {f: (f,) for f in sorted(CLI_BAD_FLAGS)})
    if flag is None:
        return
    odd = CLI_ODD_FLAGS.get(flag, [])
    if odd and draw(st.booleans()):
        text, cont, disc, xent = draw(st.sampled_from(odd))
        level = disc if case.solver == "discrete" else xent if case.solver == "xent" else cont
        case.flags[flag] = text
        if flag == "--times" and level != INVALID:
            try:
                case.num["times"] = np.array([float(x) for x in text.split(",") if x.strip()])
            except ValueError:
                case.no_ref = True
        elif flag == "--l2":
            case.num["l2"] = float(text)
        elif flag == "--lr":
            case.num["lr"] = float(text)
        elif flag == "--degree":
            case.num["degree"] = int(float(text)) if float(text) < 1e6 else float(text)
            case.no_ref = case.no_ref or float(text) >= 1e6
        case.mark(level, f"{flag} {text!r}", flag, _flag_api_name(flag))
    else:
        text = draw(st.sampled_from(CLI_BAD_FLAGS[flag]))
        case.flags[flag] = text
        case.mark(INVALID, f"{flag} {text!r}", flag, _flag_api_name(flag))


def _m_cli_argparse(case, draw, rng):
    how = draw(st.sampled_from(["omit", "unknown", "positional", "discrete_xent", "bare"]))
    needs = {"discrete_xent": ("--discrete", "--loss"), "bare": ("--times",)}.get(how, ())
    if not free(case, *needs):
        return
    touch(case, *needs)
    if how == "omit":
        flag = draw_free(case, draw, {f: (f,) for f in ["--lr", "--l2", "--degree", "--times"]})
        if flag is None:
            return
        case.flags[flag] = None
        case.mark(INVALID, f"omit {flag}", flag)
    elif how == "unknown":
        case.extra_argv += ["--bogus", "1"]
        case.mark(INVALID, "unknown flag", "--bogus")
    elif how == "positional":
        case.extra_argv.append("second.npz")
        case.mark(INVALID, "second positional", "KERNEL")
    elif how == "discrete_xent":
        case.flags["--discrete"] = ""
        case.flags["--loss"] = "xent"
        case.mark(INVALID, "--discrete with --loss xent", "--discrete", "--loss")
    else:
        case.flags["--times"] = None
        case.extra_argv.append("--times")
        case.mark(INVALID, "--times without value", "--times")


def _callable_nan(t):
    return float("nan")


def _callable_text(t):
    return "fast"


API_BAD_SCALARS = {
    "lr": [0.0, -1.0, np.nan, np.inf, -np.inf, "abc", None, 1j, True, [0.5, 1.0], np.array([0.5, 1.0])],
    "l2": [-1.0, np.nan, np.inf, "x", None, 1j, -1e-300, False],
    "degree": [1.5, -1, np.nan, np.inf, "2", None, True, 2 + 0j, -1.0],
    "t": [[], [[1.0]], [-1.0], [np.nan], "abc", [1.0, np.nan], [1j], [-np.inf], np.zeros((1, 1))],
}
API_ODD_SCALARS = {  # value, level (continuous closed form), level (discrete), level (ODE)
    "lr": [
        ("0.5", EITHER, EITHER, EITHER),
        (np.array(0.5), VALID, VALID, VALID),
        ([0.5], EITHER, EITHER, EITHER),
        (1e6, VALID, EITHER, EITHER),
    ],
    "l2": [(-0.0, VALID, VALID, VALID), (5e-324, EITHER, EITHER, EITHER), (np.float32(1e-2), VALID, VALID, VALID)],
    "degree": [
        (np.array(2), EITHER, EITHER, EITHER),
        (10**19, EITHER, EITHER, EITHER),
        (1e300, EITHER, EITHER, EITHER),
        (np.float32(3.0), VALID, VALID, VALID),
    ],
    "t": [
        (np.inf, VALID, INVALID, INVALID),
        (None, VALID, INVALID, INVALID),
        (1e19, VALID, EITHER, EITHER),
        ("1", EITHER, EITHER, EITHER),
        (True, EITHER, EITHER, EITHER),
        (-0.0, VALID, VALID, VALID),
        (np.array([1.0, 2.0], np.float32), VALID, VALID, VALID),
        (2.5, VALID, INVALID, VALID),
        ([], EITHER, EITHER, EITHER),
    ],
}


def _m_api_scalar(case, draw, rng):
    which = draw_free(case, draw, {w: (w,) for w in ["lr", "l2", "degree", "t"]})
    if which is None:
        return
    name = {"lr": "learning_rate", "l2": "l2", "degree": "degree", "t": "t"}[which]
    if draw(st.booleans()):
        value, cont, disc, ode = draw(st.sampled_from(API_ODD_SCALARS[which]))
        level = disc if case.solver == "discrete" else ode if case.solver in ("ode_mse", "xent") else cont
    else:
        value, level = draw(st.sampled_from(API_BAD_SCALARS[which])), INVALID
    if which == "t":
        case.times, case.scalar_t = value, np.ndim(value) == 0
        if level != INVALID:
            with contextlib.suppress(Exception):
                case.num["times"] = np.atleast_1d(np.asarray(np.inf if value is None else value, np.float64))
    else:
        setattr(case, which, value)
        if level != INVALID and which == "degree":
            case.num["degree"] = int(np.asarray(value).item()) if float(np.asarray(value).item()) < 1e6 else 0
            case.no_ref = case.no_ref or float(np.asarray(value).item()) >= 1e6
        elif level != INVALID:
            with contextlib.suppress(Exception):
                case.num[which] = float(np.asarray(value).item())
    case.mark(level, f"{which}={value!r}", name)


def _m_api_ode_extra(case, draw, rng):
    how = draw(st.sampled_from(["loss", "rtol", "atol", "lr_nan_fn", "lr_text_fn", "lr_neg_piece", "piece_ok"]))
    needs = {"loss": ("loss",), "rtol": ("rtol",), "atol": ("atol",), "lr_neg_piece": ("lr", "t")}.get(how, ("lr",))
    if not free(case, *needs):
        return
    touch(case, *needs)
    if how == "loss":
        value = draw(st.sampled_from(["foo", None, "MSE", 1]))
        case.api_extra["loss"] = value
        case.mark(INVALID, f"loss={value!r}", "loss")
    elif how in ("rtol", "atol"):
        value = draw(st.sampled_from([0.0, -1.0, np.nan, "x"]))
        case.api_extra[how] = value
        case.mark(INVALID, f"{how}={value!r}", how)
    elif how in ("lr_nan_fn", "lr_text_fn"):
        if not free(case, "t"):
            return
        touch(case, "t")  # a schedule is evaluated when integrating: make sure there is something to integrate
        case.lr = _callable_nan if how == "lr_nan_fn" else _callable_text
        case.times, case.scalar_t, case.num["times"] = [0.0, 1.0], False, np.array([0.0, 1.0])
        case.mark(INVALID, f"learning_rate schedule -> {case.lr(0.0)!r}", "learning_rate")
    elif how == "lr_neg_piece":
        case.lr = ntk_l2.PiecewiseConstant(boundaries=(0.25,), values=(case.num["lr"], -case.num["lr"]))
        case.times = [0.0, 1.0]
        case.scalar_t = False
        case.num["times"] = np.array([0.0, 1.0])
        case.mark(INVALID, "learning_rate piecewise, negative after t = 0.25", "learning_rate")
    else:
        case.lr = ntk_l2.PiecewiseConstant(boundaries=(0.75,), values=(case.num["lr"], case.num["lr"] / 2))
        case.no_ref = True
        case.tags.append("learning_rate piecewise (valid)")


MUTATIONS = {
    **ARRAY_MUTATIONS,
    "cli_flag": (lambda c: c.kind == "cli", _m_cli_flag),
    "cli_flag2": (lambda c: c.kind == "cli", _m_cli_flag),
    "cli_argparse": (lambda c: c.kind == "cli", _m_cli_argparse),
    "api_scalar": (lambda c: c.kind == "api", _m_api_scalar),
    "api_scalar2": (lambda c: c.kind == "api", _m_api_scalar),
    "api_ode_extra": (lambda c: c.kind == "api" and c.solver in ("ode_mse", "xent"), _m_api_ode_extra),
}
