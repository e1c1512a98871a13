"""The fuzzing's files: writing a case's kernel file, choosing its --out path, snapshots of a directory.

`write_kernel_file` writes the arrays in the case's file form (a valid ``.npz`` or a damaged, mislabelled,
huge-declared, missing one); `choose_out` makes the --out path of its out form (fresh, existing, the input
itself by several routes, links, a read-only or missing directory, ...). Directories made read-only are
recorded in `IMMUTABLE` (root needs ``chattr +i``) until `release` gives them back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _fuzz_cases import Case
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._fuzz_cases import Case


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _huge_npy(shape, descr: str, fortran: bool) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    buf.write(b"\x00" * 256)
    return buf.getvalue()


def write_kernel_file(case: Case, indir: Path, rng) -> Path:
    form = case.file_form
    path = indir / ("kernel.npy" if form == "npy" else "kernel.npz")
    arrays = case.arrays
    if form in ("npz", "corrupt", "truncated"):
        np.savez(path, **arrays)
    elif form in ("npz_compressed", "corrupt_compressed"):
        np.savez_compressed(path, **arrays)
    elif form in ("npy", "npy_named_npz"):
        first = next(iter(arrays.values()), np.zeros((2, 2)))
        np.save(path, first, allow_pickle=True)
    elif form == "text":
        first = np.asarray(next(iter(arrays.values()), np.zeros((2, 2))))
        path.write_text("k_train_train\n" + " ".join(map(str, first.ravel())) + "\n")
    elif form == "empty":
        path.write_bytes(b"")
    elif form in ("huge", "short_data", "raw_member"):
        target = case.huge[0] if case.huge else next(iter(arrays), "k_train_train")
        with zipfile.ZipFile(path, "w") as zf:
            for key, arr in arrays.items():
                if key == target and form == "huge":
                    _, shape, descr, fortran = case.huge
                    zf.writestr(key + ".npy", _huge_npy(shape, descr, fortran))
                elif key == target and form == "short_data":
                    zf.writestr(key + ".npy", _npy_bytes(arr)[:-8])
                elif key == target and form == "raw_member":
                    zf.writestr(key + ".npy", b"0.5")
                else:
                    zf.writestr(key + ".npy", _npy_bytes(arr))
            if form == "huge" and target not in arrays:
                _, shape, descr, fortran = case.huge
                zf.writestr(target + ".npy", _huge_npy(shape, descr, fortran))
    elif form == "missing":
        pass
    elif form == "directory":
        path.mkdir()
    else:  # pragma: no cover
        raise AssertionError(form)
    if form == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(rng.integers(0, len(data)))])
    if form in ("corrupt", "corrupt_compressed"):
        data = bytearray(path.read_bytes())
        for at in case.num["corrupt_at"]:
            data[at % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))
    return path


IMMUTABLE: set[Path] = set()


def _make_readonly(directory: Path) -> None:
    os.chmod(directory, 0o555)
    if os.geteuid() == 0 and shutil.which("chattr"):  # root ignores modes; an immutable dir it cannot write
        if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0:
            IMMUTABLE.add(directory)


def release(directory: Path) -> None:
    for d in list(IMMUTABLE):
        if d == directory or directory in d.parents:
            subprocess.run(["chattr", "-i", str(d)], capture_output=True)
            IMMUTABLE.discard(d)
    for root, dirs, _ in os.walk(directory):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, d), 0o755)


def choose_out(case: Case, casedir: Path, kernel: Path) -> Path:
    outdir = casedir / "out"
    outdir.mkdir()
    form = case.out_form
    if form == "fresh":
        return outdir / "result.npz"
    if form == "existing_out":
        (outdir / "result.npz").write_bytes(b"stale result")
        return outdir / "result.npz"
    if form == "missing_dir":
        return outdir / "new" / "sub" / "result.npz"
    if form == "same":
        return kernel
    if form == "same_dotdot":
        return casedir / "in" / ".." / "in" / kernel.name
    if form == "same_via_dirlink":
        (outdir / "link").symlink_to(casedir / "in", target_is_directory=True)
        return outdir / "link" / kernel.name
    if form == "hardlink":
        out = outdir / "result.npz"
        if kernel.is_file():
            os.link(kernel, out)
        return out
    if form == "symlink":
        out = outdir / "result.npz"
        out.symlink_to(kernel)
        return out
    if form == "dangling_symlink":
        out = outdir / "result.npz"
        out.symlink_to(outdir / "nowhere" / "x.npz")
        return out
    if form == "readonly_dir":
        ro = outdir / "ro"
        ro.mkdir()
        _make_readonly(ro)
        return ro / "result.npz"
    if form == "parent_is_file":
        (outdir / "file").write_text("x")
        return outdir / "file" / "result.npz"
    if form == "is_dir":
        (outdir / "result.npz").mkdir()
        return outdir / "result.npz"
    if form == "long_name":
        return outdir / ("r" * 300 + ".npz")
    raise AssertionError(form)  # pragma: no cover


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: (kind, size, mtime_ns, sha256 of files)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            if os.path.islink(p):
                snap[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                snap[p] = ("dir",)
            else:
                with open(p, "rb") as f:
                    snap[p] = ("file", st_.st_size, st_.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return snap
