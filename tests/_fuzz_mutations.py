"""The malformations of the arrays, one mutation each: (applies to a case?, apply) in `ARRAY_MUTATIONS`.

A mutation changes a valid `Case` (dropped, extra, reshaped, mistyped, non-finite, non-symmetric, non-PSD,
empty or mismatched arrays) and marks what it expects: `INVALID` with the names a refusal may blame, or
`EITHER` where accepting and refusing are both fair. The flag and argument malformations are in
``_fuzz_strategy``.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import strategies as st

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _fuzz_cases import (
        EITHER,
        INVALID,
        KERNEL_SLOTS,
        NNGP,
        VALID,
        api_name,
        draw_free,
        free,
        present_slots,
        psd_from_features,
        touch,
        uses_fx,
    )
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._fuzz_cases import (
        EITHER,
        INVALID,
        KERNEL_SLOTS,
        NNGP,
        VALID,
        api_name,
        draw_free,
        free,
        present_slots,
        psd_from_features,
        touch,
        uses_fx,
    )


def _m_drop(case, draw, rng):
    options = [k for k in case.arrays if k not in case.touched]
    if not options:
        return
    slot = draw(st.sampled_from(options))
    touch(case, slot)
    del case.arrays[slot]
    case.tags.append(f"drop {slot}")  # the consequences are judged in finalize


def _m_extra_key(case, draw, rng):
    name = draw(st.sampled_from(["k_tset_train", "K_TRAIN_TRAIN", "arr_0", "y_train ", "nngp", "../x"]))
    case.arrays[name] = np.ones((case.n, case.n))
    touch(case, name)
    case.mark(INVALID, f"extra key {name!r}", name)


def _m_rank(case, draw, rng):
    slot = draw(st.sampled_from(present_slots(case)))
    arr = np.asarray(case.arrays[slot])
    how = draw(st.sampled_from(["lead1", "trail1", "flat", "scalar", "row"]))
    if how == "lead1":
        new = arr[None]
    elif how == "trail1":
        new = arr[..., None]
    elif how == "flat":
        new = arr.ravel()
    elif how == "row":
        new = arr.reshape(1, -1) if arr.ndim != 2 or arr.shape[0] != 1 else arr.reshape(-1)
    else:
        new = np.asarray(arr.ravel()[0] if arr.size else 0.0, arr.dtype)
    if new.shape == arr.shape:
        return
    case.arrays[slot] = new
    touch(case, slot)
    if slot in ("fx_train_0", "fx_test_0") and new.ndim == 0:
        # a scalar initial output is documented for the API (broadcast); a file should hold (n, c)
        case.mark(VALID if case.kind == "api" else EITHER, f"{slot} as a scalar", slot)
    else:
        case.mark(INVALID, f"{slot} rank {arr.shape}->{new.shape}", api_name(case, slot))


def _m_broadcast(case, draw, rng):
    n, m, c = case.n, case.m, case.c
    fx = uses_fx(case)
    options = ["kxt_n1"]
    if c > 1 and fx:
        options.append("y_n1")
        if "fx_train_0" in case.arrays:
            options.append("fx_n1")
        if "fx_test_0" in case.arrays:
            options.append("fxs_m1")
    if n > 1:
        options += (
            ["k_11", "kxt_m1"]
            + (["fx_1c"] if fx else [])
            + (["nngp_xx_11"] if "nngp_train_train" in case.arrays else [])
        )
    if m > 1:
        options += (["fxs_1c"] if fx else []) + (
            ["nngp_sx_1n", "nngp_ss_11", "nngp_ss_m1"] if "nngp_test_test" in case.arrays else []
        )
    slots = {
        "y_n1": ("y_train", "fx_train_0"),
        "fx_n1": ("fx_train_0",),
        "fx_1c": ("fx_train_0",),
        "fxs_m1": ("fx_test_0",),
        "fxs_1c": ("fx_test_0", "k_test_train"),
        "k_11": ("k_train_train",),
        "kxt_m1": ("k_test_train",),
        "kxt_n1": ("k_test_train",),
        "nngp_xx_11": ("nngp_train_train",),
        "nngp_sx_1n": ("nngp_test_train",),
        "nngp_ss_11": ("nngp_test_test",),
        "nngp_ss_m1": ("nngp_test_test",),
    }
    how = draw_free(case, draw, {o: slots[o] for o in options})
    if how is None:
        return
    rows = lambda a, r: np.resize(np.asarray(a, np.float64), r)  # noqa: E731
    a = case.arrays
    if how == "y_n1":
        a["y_train"] = rows(a["y_train"], (n, 1))
        a.setdefault("fx_train_0", 0.5 * rng.normal(size=(n, c)))
        blame = ("y_train", "fx_train_0")
    elif how == "fx_n1":
        a["fx_train_0"], blame = rows(a["fx_train_0"], (n, 1)), ("fx_train_0",)
    elif how == "fx_1c":
        a["fx_train_0"], blame = rows(a.get("fx_train_0", np.zeros((n, c))), (1, c)), ("fx_train_0",)
    elif how == "fxs_m1":
        a["fx_test_0"], blame = rows(a["fx_test_0"], (m, 1)), ("fx_test_0",)
    elif how == "fxs_1c":
        a["fx_test_0"], blame = rows(a.get("fx_test_0", np.zeros((m, c))), (1, c)), ("fx_test_0",)
        a.setdefault("k_test_train", np.zeros((m, n)))
    elif how == "k_11":
        a["k_train_train"], blame = rows(a["k_train_train"], (1, 1)), ("k_train_train", "y_train")
    elif how == "kxt_m1":
        a["k_test_train"], blame = rows(a.get("k_test_train", np.ones((m, n))), (m, 1)), ("k_test_train",)
    elif how == "kxt_n1":
        a["k_test_train"], blame = rows(a.get("k_test_train", np.ones((m, n))), (m, n + 1)), ("k_test_train",)
    elif how == "nngp_xx_11":
        a["nngp_train_train"], blame = rows(a["nngp_train_train"], (1, 1)), ("nngp_train_train",)
    elif how == "nngp_sx_1n":
        a["nngp_test_train"], blame = rows(a["nngp_test_train"], (1, n)), ("nngp_test_train",)
    elif how == "nngp_ss_11":
        a["nngp_test_test"], blame = rows(a["nngp_test_test"], (1, 1)), ("nngp_test_test",)
    else:
        a["nngp_test_test"], blame = rows(a["nngp_test_test"], (m, 1)), ("nngp_test_test",)
    case.mark(INVALID, f"broadcastable shape {how}", *(api_name(case, b) for b in blame))


def _m_nonsquare(case, draw, rng):
    slot = draw(st.sampled_from(present_slots(case, KERNEL_SLOTS)))
    arr = np.asarray(case.arrays[slot], np.float64)
    case.arrays[slot] = np.concatenate([arr, arr[:, :1]], axis=1) if arr.ndim == 2 else arr[..., None]
    touch(case, slot)
    case.mark(INVALID, f"{slot} non-square", api_name(case, slot))


def _as_kernel(case, slot) -> np.ndarray | None:
    arr = case.arrays.get(slot)
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.size == 0:
        return None
    if arr.dtype.kind not in "fi":
        return None
    return np.asarray(arr, np.float64)


def _m_asym(case, draw, rng):
    options = [
        s for s in present_slots(case, KERNEL_SLOTS) if _as_kernel(case, s) is not None and case.arrays[s].shape[0] > 1
    ]
    if not options:
        return
    slot = draw(st.sampled_from(options))
    arr = _as_kernel(case, slot)
    noise = rng.normal(size=arr.shape)
    with np.errstate(all="ignore"):
        case.arrays[slot] = arr + 1e-3 * max(np.abs(arr).max(), 1.0) * (noise - noise.T)
    touch(case, slot)
    case.mark(INVALID, f"{slot} non-symmetric", api_name(case, slot))


def _m_not_psd(case, draw, rng):
    options = [s for s in present_slots(case, KERNEL_SLOTS) if _as_kernel(case, s) is not None]
    if not options:
        return
    slot = draw(st.sampled_from(options))
    arr = _as_kernel(case, slot)
    evals, evecs = np.linalg.eigh(arr)
    v = evecs[:, -1:]
    top = max(evals[-1], 1.0)
    case.arrays[slot] = arr - 2.5 * top * (v @ v.T)
    touch(case, slot)
    case.mark(INVALID, f"{slot} not PSD", api_name(case, slot))


def _m_joint_not_psd(case, draw, rng):
    """Each NNGP block PSD (even positive definite), the joint [[K_XX, K_X*], [K_*X, K_**]] not."""
    n, m = case.n, case.m
    if not free(case, *NNGP, "k_test_train"):
        return
    touch(case, *NNGP, "k_test_train")
    q, _ = np.linalg.qr(rng.normal(size=(max(n, m), max(n, m))))
    u = q[:m, :n]  # singular values 1 (orthonormal rows or columns)
    s = draw(st.sampled_from([1.0, 1e-3]))
    case.arrays["nngp_train_train"] = s * np.eye(n)
    case.arrays["nngp_test_train"] = 2.0 * s * u
    case.arrays["nngp_test_test"] = s * np.eye(m)
    if case.solver != "ensemble" or case.kind == "cli":
        case.arrays.setdefault("k_test_train", np.zeros((m, n)))
    case.mark(INVALID, "joint NNGP not PSD", *NNGP)


def _m_nonfinite(case, draw, rng):
    options = [s for s in present_slots(case) if case.arrays[s].size and case.arrays[s].dtype.kind in "fc"]
    if not options:
        return
    slot = draw(st.sampled_from(options))
    arr = np.array(case.arrays[slot], copy=True)
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    arr.flat[rng.integers(arr.size)] = value
    case.arrays[slot] = arr
    touch(case, slot)
    case.mark(INVALID, f"{value} in {slot}", api_name(case, slot))


def _m_dtype(case, draw, rng):
    slot = draw(st.sampled_from(present_slots(case)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = np.asarray(case.arrays[slot], np.float64)
    kind = draw(
        st.sampled_from(
            [
                "bool",
                "complex",
                "complex_real",
                "int",
                "float16",
                "float32",
                "object",
                "str",
                "bytes",
                "datetime64",
                "timedelta64",
                ">f4",
                "longdouble",
            ]
        )
    )
    api = api_name(case, slot)
    if kind == "bool":
        new, level = arr != 0, INVALID
    elif kind == "complex":
        new, level = arr + 1e-3j * rng.normal(size=arr.shape), INVALID
    elif kind == "complex_real":
        new, level = arr.astype(np.complex128), INVALID
    elif kind == "int":
        new, level = np.round(arr * 10).astype(np.int64), EITHER
    elif kind == "float16":
        with np.errstate(over="ignore"):
            new, level = arr.astype(np.float16), EITHER
    elif kind in ("float32", ">f4", "longdouble"):
        new, level = arr.astype({"float32": np.float32, ">f4": ">f4", "longdouble": np.longdouble}[kind]), VALID
    elif kind == "object":
        new, level = arr.astype(object), (INVALID if case.kind == "cli" else EITHER)
    elif kind == "str":
        new, level = arr.astype(str), INVALID
    elif kind == "bytes":
        new, level = arr.astype("S32"), INVALID
    elif kind == "datetime64":
        new, level = np.round(arr * 1000).astype(np.int64).astype("datetime64[s]"), INVALID
    else:
        new, level = np.round(arr * 1000).astype(np.int64).astype("timedelta64[ms]"), INVALID
    if kind in ("float32", ">f4") and slot in KERNEL_SLOTS + ("k_test_train", "nngp_test_train"):
        level = VALID  # float32 kernels (also of deficient rank): must be accepted
    if kind in ("int", "float16") and slot in ("k_test_train", "nngp_test_train", "y_train", "fx_train_0", "fx_test_0"):
        level = EITHER
    case.arrays[slot] = new
    touch(case, slot)
    case.mark(level, f"{slot} dtype {kind}", api)


def _m_extreme(case, draw, rng):
    options = [s for s in present_slots(case) if case.arrays[s].dtype.kind == "f"]
    if not options:
        return
    slot = draw(st.sampled_from(options))
    arr = np.asarray(case.arrays[slot], np.float64)
    how = draw(st.sampled_from(["x1e306", "x1e-300", "x1e-308", "set1e308"]))
    if how == "set1e308":
        arr = arr.copy()
        if arr.size:
            arr.flat[rng.integers(arr.size)] = 1e308
        if slot in KERNEL_SLOTS and arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
            arr = np.maximum(arr, arr.T)  # keep it symmetric (it is then not PSD in general)
    else:
        with np.errstate(over="ignore"):
            arr = arr * float(how[1:])
    case.arrays[slot] = arr
    touch(case, slot)
    joint = NNGP if slot in NNGP else ()  # a rescaled block changes the joint NNGP
    case.mark(EITHER, f"{slot} {how}", api_name(case, slot), "learning_rate", "l2", "--lr", *joint)


def _m_empty(case, draw, rng):
    n, m, c = case.n, case.m, case.c
    slots = {
        "n0": ("k_train_train", "y_train", "fx_train_0", "k_test_train", "nngp_train_train", "nngp_test_train"),
        "c0": ("y_train", "fx_train_0", "fx_test_0"),
        "m0": ("k_test_train", "fx_test_0", "nngp_test_train", "nngp_test_test"),
        "kxt_cols0": ("k_test_train",),
    }
    how = draw_free(case, draw, slots)
    if how is None:
        return
    a = case.arrays
    if how == "n0":
        for key, shape in (
            ("k_train_train", (0, 0)),
            ("y_train", (0, c)),
            ("fx_train_0", (0, c)),
            ("k_test_train", (m, 0)),
            ("nngp_train_train", (0, 0)),
            ("nngp_test_train", (m, 0)),
        ):
            if key in a or key in ("k_train_train", "y_train"):
                a[key] = np.zeros(shape)
        case.mark(INVALID, "n = 0", api_name(case, "k_train_train"), "y_train", *NNGP)
    elif how == "c0":
        for key, shape in (("y_train", (n, 0)), ("fx_train_0", (n, 0)), ("fx_test_0", (m, 0))):
            if key in a or key == "y_train":
                a[key] = np.zeros(shape)
        case.mark(INVALID, "c = 0", "y_train", "fx_train_0", "fx_test_0")
    elif how == "m0":
        a["k_test_train"] = np.zeros((0, n))
        for key, shape in (("fx_test_0", (0, c)), ("nngp_test_train", (0, n)), ("nngp_test_test", (0, 0))):
            if key in a:
                a[key] = np.zeros(shape)
        case.mark(EITHER, "m = 0", api_name(case, "k_test_train"), "fx_test_0", *NNGP)
    else:
        a["k_test_train"] = np.zeros((m, 0))
        case.mark(INVALID, "k_test_train (m, 0)", api_name(case, "k_test_train"))


def _m_size(case, draw, rng):
    n, m, c = case.n, case.m, case.c
    options = ["y_rows"] + (["fx_cols", "kxt_rows_vs_fxs"] if uses_fx(case) else [])
    options += ["nngp_xx_big"] if "nngp_train_train" in case.arrays else []
    options += ["nngp_ss_big"] if "nngp_test_test" in case.arrays else []
    slots = {
        "y_rows": ("y_train",),
        "fx_cols": ("fx_train_0",),
        "nngp_xx_big": ("nngp_train_train",),
        "nngp_ss_big": ("nngp_test_test",),
        "kxt_rows_vs_fxs": ("fx_test_0", "k_test_train"),
    }
    how = draw_free(case, draw, {o: slots[o] for o in options})
    if how is None:
        return
    a = case.arrays
    if how == "y_rows":
        a["y_train"], blame = np.ones((n + 1, c)), ("y_train", "k_train_train")
    elif how == "fx_cols":
        a["fx_train_0"], blame = np.ones((n, c + 1)), ("fx_train_0",)
    elif how == "nngp_xx_big":
        a["nngp_train_train"], blame = np.eye(n + 1), ("nngp_train_train",)
    elif how == "nngp_ss_big":
        a["nngp_test_test"], blame = np.eye(m + 1), ("nngp_test_test",)
    else:
        a.setdefault("k_test_train", np.ones((m, n)))
        a["fx_test_0"], blame = np.ones((m + 1, c)), ("fx_test_0", "k_test_train")
    case.mark(INVALID, f"size mismatch {how}", *(api_name(case, b) for b in blame))


def _m_add_nngp(case, draw, rng):
    """NNGP blocks where they do not belong (discrete, cross-entropy) or valid ones added."""
    n, m = case.n, case.m
    if not free(case, *NNGP):
        return
    touch(case, *NNGP)
    nngp = psd_from_features(rng, n + m, 2 * (n + m), 1.0)
    case.arrays.update(nngp_train_train=nngp[:n, :n], nngp_test_train=nngp[n:, :n], nngp_test_test=nngp[n:, n:])
    case.tags.append("nngp blocks added")  # judged in finalize


ARRAY_MUTATIONS = {
    "drop": (lambda c: bool(c.arrays), _m_drop),
    "extra_key": (lambda c: c.kind == "cli", _m_extra_key),
    "rank": (lambda c: bool(present_slots(c)), _m_rank),
    "broadcast": (lambda c: True, _m_broadcast),
    "nonsquare": (lambda c: bool(present_slots(c, KERNEL_SLOTS)), _m_nonsquare),
    "asym": (lambda c: bool(present_slots(c, KERNEL_SLOTS)), _m_asym),
    "not_psd": (lambda c: bool(present_slots(c, KERNEL_SLOTS)), _m_not_psd),
    "joint_not_psd": (lambda c: c.kind == "cli" and c.solver == "closed" or c.solver == "ensemble", _m_joint_not_psd),
    "nonfinite": (lambda c: bool(present_slots(c)), _m_nonfinite),
    "dtype": (lambda c: bool(present_slots(c)), _m_dtype),
    "dtype2": (lambda c: bool(present_slots(c)), _m_dtype),
    "extreme": (lambda c: bool(present_slots(c)), _m_extreme),
    "empty": (lambda c: True, _m_empty),
    "size": (lambda c: True, _m_size),
    "add_nngp": (lambda c: c.kind == "cli", _m_add_nngp),
}
