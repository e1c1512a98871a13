"""Predictions from a kernel file: the engine behind ``ntk-l2 predict``.

Input keys: ``k_train_train`` (n, n), ``y_train`` (n, c); optional
``k_test_train`` (m, n), ``fx_train_0`` (n, c), ``fx_test_0`` (m, c), and for
the covariance over initializations ``nngp_train_train`` (n, n),
``nngp_test_train`` (m, n), ``nngp_test_test`` (m, m) (all three). Output keys:
``times`` (T,), ``fx_train`` (T, n, c), ``fx_test`` (T, m, c) with test data,
``cov_test`` (T, m, m) with NNGP blocks ((T, m, m, c, c) for output kernels), and
for minibatch SGD (``--batch-size``) the mean outputs as ``fx_train``/``fx_test``
with ``var_train_sgd`` (T, n, c), ``var_test_sgd`` (T, m, c) and ``loss_train_sgd``
(T,), the variance over batch draws and the expected training loss. Kernels may be
(n, n) matrices or (n, n, c, c) arrays with cross-output terms (then every kernel
block of the file has that form).

The file is inspected before anything is loaded: it must be a zip archive of
``.npy`` members (no pickles), with known keys, real dtypes and shapes that fit
together exactly; the memory the whole request needs is estimated from the
declared shapes and refused when it exceeds the limit (`_memory.check_fits`).
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntk_l2.common import memory as _memory
from ntk_l2.theory import (
    gradient_descent_l2_ode,
    gradient_descent_mse_l2,
    gradient_descent_mse_l2_discrete,
    gradient_descent_mse_l2_ensemble,
    gradient_descent_mse_l2_momentum,
    gradient_descent_mse_l2_sgd,
)
from ntk_l2.theory import validation as _checks

REQUIRED = ("k_train_train", "y_train")
OPTIONAL = ("k_test_train", "fx_train_0", "fx_test_0")
NNGP = ("nngp_train_train", "nngp_test_train", "nngp_test_test")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class KernelFile:
    """What a kernel ``.npz`` declares: its path and each member's shape and dtype."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(n, c, m): training points, outputs, test points (m = 0 without test data)."""
        n, c = self.shapes["y_train"]
        return n, c, self.shapes.get("k_test_train", (0, n))[0]


def _read_header(archive: zipfile.ZipFile, member: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    key = member[: -len(".npy")]
    try:
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except _READ_ERRORS as err:
        raise ValueError(f"{key}: unreadable array header in {path} ({' '.join(str(err).split())})") from None
    if dtype.hasobject:
        raise ValueError(f"{key}: holds Python objects (pickled data is never loaded); save real numbers")
    _checks.check_dtype(np.empty(0, dtype), key)
    return tuple(int(d) for d in shape), dtype


def inspect_kernel_file(path: str | os.PathLike) -> KernelFile:
    """Keys, shapes and dtypes of a kernel ``.npz`` from its headers alone (no data read)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"KERNEL: no such file: {path}" if not path.exists() else f"KERNEL: {path} is not a file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as err:
        raise ValueError(f"KERNEL: cannot read {path} ({err.strerror or err})") from None
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"KERNEL: {path} is a single .npy array; save the arrays by key with "
            f"np.savez(path, k_train_train=..., y_train=...)"
        )
    if not magic.startswith(b"PK"):
        raise ValueError(f"KERNEL: {path} is not an .npz archive (np.savez / np.savez_compressed)")
    shapes, dtypes = {}, {}
    try:
        archive = zipfile.ZipFile(path)
    except _READ_ERRORS as err:
        raise ValueError(f"KERNEL: cannot read {path} as an .npz archive ({' '.join(str(err).split())})") from None
    with archive:
        _check_directory(archive, path)
        for member in archive.namelist():
            key = member[: -len(".npy")] if member.endswith(".npy") else member
            _check_key(key, path)
            shapes[key], dtypes[key] = _read_header(archive, member, path)
    _check_keys(shapes, path)
    _check_shapes(shapes)
    return KernelFile(path, shapes, dtypes)


def _check_directory(archive: zipfile.ZipFile, path: Path) -> None:
    """The archive lists as many members as its end record declares: a corrupted central
    directory can otherwise hide members (read as a comment) and drop arrays silently."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65557))  # the end record (22 bytes) plus the longest comment
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    declared = struct.unpack("<H", tail[at + 10 : at + 12])[0] if at >= 0 and len(tail) >= at + 22 else None
    found = len(archive.infolist())
    if declared is None or (declared != 0xFFFF and declared != found):  # 0xFFFF: counted in the ZIP64 record
        raise ValueError(
            f"KERNEL: {path} is a damaged .npz archive (its directory lists {found} member(s), its end "
            f"record declares {declared})"
        )


def _check_key(key: str, path: Path) -> None:
    if key not in REQUIRED + OPTIONAL + NNGP:
        raise ValueError(f"{key}: unknown key in {path}; known keys: {', '.join(REQUIRED + OPTIONAL + NNGP)}")


def _check_keys(shapes: dict[str, Any], path: Path | str) -> None:
    """Required keys present, the NNGP blocks all or none, and what they need beside them."""
    missing = [k for k in REQUIRED if k not in shapes]
    if missing:
        raise ValueError(f"{missing[0]}: required key missing from {path}")
    present = [k for k in NNGP if k in shapes]
    if present and len(present) != len(NNGP):
        absent = [k for k in NNGP if k not in shapes][0]
        raise ValueError(f"{absent}: needed with {present[0]} for the covariance (give all three NNGP blocks)")
    if "fx_test_0" in shapes and "k_test_train" not in shapes:
        raise ValueError("fx_test_0: given without k_test_train")
    if present and "k_test_train" not in shapes:
        raise ValueError("k_test_train: needed with the NNGP blocks for the test covariance")


def _check_shapes(shapes: dict[str, tuple[int, ...]]) -> None:
    """Every declared shape exactly as the kernel and targets imply (scalars allowed for f_0).

    Kernels come as (n, n) matrices or, with cross-output terms, as (n, n, c, c) arrays
    (neural-tangents' ``trace_axes=()``); every kernel of a file then has that form.
    """
    k, y = shapes["k_train_train"], shapes["y_train"]
    if len(k) not in (2, 4) or k[0] != k[1] or k[0] == 0 or (len(k) == 4 and k[2] != k[3]):
        raise ValueError(
            f"k_train_train: must be square ((n, n), or (n, n, c, c) with output axes) and non-empty, got shape {k}"
        )
    if len(y) != 2 or y[0] != k[0] or y[1] == 0 or (len(k) == 4 and y[1] != k[2]):
        raise ValueError(
            f"y_train: expected shape ({k[0]}, {k[2] if len(k) == 4 else 'c'})"
            f"{'' if len(k) == 4 else ' with c >= 1'}, got {y}"
        )
    n, c = y
    extra = (c, c) if len(k) == 4 else ()
    kt = shapes.get("k_test_train")
    if kt is not None and (len(kt) != 2 + len(extra) or kt[1] != n or kt[0] == 0 or tuple(kt[2:]) != extra):
        raise ValueError(f"k_test_train: expected shape {('m', n) + extra} with m >= 1, got {kt}")
    m = kt[0] if kt is not None else 0
    expected = {
        "fx_train_0": (n, c),
        "fx_test_0": (m, c),
        "nngp_train_train": (n, n) + extra,
        "nngp_test_train": (m, n) + extra,
        "nngp_test_test": (m, m) + extra,
    }
    for key, shape in expected.items():
        got = shapes.get(key)
        if got is not None and got != shape and not (key.startswith("fx_") and got == ()):
            raise ValueError(f"{key}: expected shape {shape}, got {got}")


def request_bytes(info: KernelFile, n_times: int, discrete: bool, batch_size: int | None = None) -> float:
    """Estimated peak memory of a ``predict`` request, from the declared shapes.

    The stored arrays and their float64 copies, the eigendecomposition (kernel,
    symmetrized copy, eigenvectors, LAPACK workspace: ~5r² for r kernel rows, r = n,
    or n·c for an (n, n, c, c) kernel), the per-mode coefficients (4Tr, twice for the
    discrete map), the outputs with their intermediates (3T(n+m)c), with NNGP blocks
    the joint NNGP check ((n+m)² rows, twice) and the covariance (T(m rows)²), and for
    minibatch SGD the second moment of all outputs (3((n+m)c)² plus T of them).
    """
    n, c, m = info.sizes
    full = len(info.shapes["k_train_train"]) == 4
    r, rm = (n * c, m * c) if full else (n, m)
    stored = sum(int(np.prod(s, dtype=np.float64)) * (info.dtypes[k].itemsize + 8) for k, s in info.shapes.items())
    work = 5.0 * r * r + 2.0 * rm * r + (8 if discrete else 4) * n_times * r + 3.0 * n_times * (n + m) * c
    if "nngp_train_train" in info.shapes:
        work += 2.0 * (r + rm) ** 2 + 2.0 * r * r + float(n_times) * rm * rm
    if batch_size is not None:
        work += (3.0 + n_times) * float((n + m) * c) ** 2
    return stored + 8.0 * work


def load_kernel_file(path: str | os.PathLike, info: KernelFile | None = None) -> dict[str, np.ndarray]:
    """Read a kernel ``.npz`` inspected by `inspect_kernel_file` (no pickles); arrays as stored."""
    info = inspect_kernel_file(path) if info is None else info
    try:
        with np.load(info.path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except _READ_ERRORS as err:
        raise ValueError(
            f"KERNEL: cannot read the arrays of {info.path}, corrupt or truncated ({' '.join(str(err).split())})"
        ) from None
    for key, arr in arrays.items():
        if arr.shape != info.shapes[key]:
            raise ValueError(f"{key}: the data in {info.path} do not match its header")
    return arrays


@dataclass(frozen=True)
class Method:
    """Which dynamics ``ntk-l2 predict`` solves: the flags besides the kernel file."""

    learning_rate: float
    l2: float
    degree: int
    discrete: bool = False
    loss: str = "mse"
    momentum: float = 0.0
    nesterov: bool = False
    batch_size: int | None = None
    max_loop_steps: float | None = None

    def check(self, arrays: dict[str, Any]) -> None:
        """Refuse combinations no solver covers, naming the flag (before any work)."""
        if self.loss not in ("mse", "xent"):
            raise ValueError(f"--loss: must be mse or xent, got {self.loss!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"--momentum: must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("--nesterov: needs --momentum > 0")
        if self.nesterov and not self.discrete:
            raise ValueError("--nesterov: the gradient-flow limit with momentum is the heavy-ball one; add --discrete")
        if self.batch_size is not None and not self.discrete:
            raise ValueError("--batch-size: minibatch SGD takes whole steps; add --discrete")
        if self.batch_size is not None and self.nesterov:
            raise ValueError("--nesterov: minibatch SGD is predicted for heavy-ball momentum only")
        if self.loss == "xent" and (self.discrete or self.momentum):
            flag = "--discrete" if self.discrete else "--momentum"
            raise ValueError(
                f"{flag}: cross-entropy is solved by the gradient-flow ODE only; drop {flag} for --loss xent"
            )
        if "nngp_train_train" in arrays and (self.discrete or self.momentum or self.loss == "xent"):
            flag = "--loss xent" if self.loss == "xent" else ("--discrete" if self.discrete else "--momentum")
            raise ValueError(
                f"{flag}: the covariance over initializations (the NNGP blocks) is computed for gradient "
                f"flow with MSE only; drop {flag} or the NNGP blocks"
            )


def _solver(arrays: dict[str, Any], method: Method) -> Any:
    """The predict_fn for ``method`` (closed form, discrete map, momentum flow, ODE, or SGD)."""
    args = (arrays["k_train_train"], arrays["y_train"], method.learning_rate, method.l2, method.degree)
    if method.loss == "xent":
        return gradient_descent_l2_ode(*args, loss="xent")
    if method.discrete:
        loop = {} if method.max_loop_steps is None else {"max_loop_steps": method.max_loop_steps}
        return gradient_descent_mse_l2_discrete(*args, momentum=method.momentum, nesterov=method.nesterov, **loop)
    if method.momentum:
        return gradient_descent_mse_l2_momentum(*args, momentum=method.momentum)
    return gradient_descent_mse_l2(*args)


def _sgd(arrays: dict[str, Any], times: np.ndarray, how: Method, f0: Any, fs0: Any) -> dict[str, Any]:
    """Minibatch SGD: the mean over batch draws (the full-batch map, S4), the variance of every
    output over batch draws and the expected training loss (S5–S6)."""
    predict = gradient_descent_mse_l2_sgd(
        arrays["k_train_train"],
        arrays["y_train"],
        how.learning_rate,
        how.l2,
        how.degree,
        batch_size=how.batch_size,
        momentum=how.momentum,
    )
    res = predict(times, f0, fs0, arrays.get("k_test_train"))
    out = {"fx_train": res.mean_train, "var_train_sgd": res.var_train, "loss_train_sgd": res.loss}
    if res.mean_test is not None:
        out.update(fx_test=res.mean_test, var_test_sgd=res.var_test)
    return out


def predict_from_arrays(arrays: dict[str, np.ndarray], times: np.ndarray, **method: Any) -> dict[str, np.ndarray]:
    """Run the matching solver and return the output arrays by key (all finite, or ValueError).

    ``method``: the fields of `Method` (``learning_rate``, ``l2``, ``degree``, ``discrete``,
    ``loss``, ``momentum``, ``nesterov``, ``batch_size``, ``max_loop_steps``).
    """
    how = Method(**method)
    how.check(arrays)
    _check_keys(arrays, "the arrays")
    with_test = "k_test_train" in arrays
    out: dict[str, Any] = {"times": np.asarray(times, np.float64)}
    f0 = arrays.get("fx_train_0", 0.0)
    fs0 = arrays.get("fx_test_0", 0.0) if with_test else None
    if how.batch_size is not None:
        out.update(_sgd(arrays, times, how, f0, fs0))
    else:
        result = _solver(arrays, how)(times, f0, fs0, arrays.get("k_test_train"))
        if with_test:
            out["fx_train"], out["fx_test"] = result
        else:
            out["fx_train"] = result
    if "nngp_train_train" in arrays:
        ens = gradient_descent_mse_l2_ensemble(
            arrays["k_train_train"],
            arrays["nngp_train_train"],
            arrays["y_train"],
            how.learning_rate,
            how.l2,
            how.degree,
        )
        out["cov_test"] = ens(
            times, arrays["k_test_train"], arrays["nngp_test_train"], arrays["nngp_test_test"]
        ).covariance
    out = {key: np.asarray(value, np.float64) for key, value in out.items()}
    for key, value in out.items():
        if key != "times":  # t = inf (the limit) is a valid time
            _checks.check_finite_result(value, key, out["times"])
    return out


def predict_file(
    path: str | os.PathLike, times: np.ndarray, *, max_memory: float | None = None, **kwargs: Any
) -> dict[str, np.ndarray]:
    """`inspect_kernel_file`, the memory bound, `load_kernel_file`, `predict_from_arrays`."""
    info = inspect_kernel_file(path)
    with _memory.memory_limit(max_memory):
        _memory.check_fits(
            request_bytes(info, len(times), bool(kwargs.get("discrete")), kwargs.get("batch_size")),
            f"this request (n = {info.sizes[0]}, m = {info.sizes[2]}, {len(times)} times)",
            "KERNEL",
        )
        return predict_from_arrays(load_kernel_file(path, info), times, **kwargs)
