"""Atomic writes: a result file is either complete or absent, never half-written.

`check_output` refuses, before any work starts, an output that is one of the
inputs (same resolved path or same inode, so links are caught too) or that
cannot be written; `_atomic` writes to a temporary file beside the target and
renames it, so a failure (disk full, interrupted) leaves no partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], suffix: str, mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(
    path: str | os.PathLike,
    name: str = "--out",
    *,
    directory: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> Path:
    """Refuse an output ``path`` that is an input, has a file in its way, or cannot be written.

    ``directory``: the output is a directory (created later) rather than a file. Checks,
    without creating anything but a probe file that is removed at once: ``path`` is not any
    of ``inputs`` (resolved path or inode); it is not a directory (file) or a file
    (directory); its nearest existing ancestor is a directory that can be written.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise ValueError(
                f"{name}: {path} is the input {source}; choose another output path, inputs are never overwritten"
            )
    if path.exists() and path.is_dir() != directory:
        raise ValueError(f"{name}: {path} exists and is {'not ' if directory else ''}a directory")
    if path.is_symlink() and not directory:
        raise ValueError(f"{name}: {path} is a symbolic link; give the real path")
    target = path if directory and path.exists() else path.parent
    base = _nearest_existing(target)
    if not base.is_dir():
        raise ValueError(f"{name}: cannot create {path}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write in {base} (permission denied)")
    try:
        prefix = f".{path.name}." if base == path.parent and not directory else ".ntk_l2-write-probe."
        fd, probe = tempfile.mkstemp(dir=base, prefix=prefix, suffix=path.suffix)  # the name `_atomic` will use
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{name}: cannot write in {base} ({err.strerror or err})") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_floats(values: Any) -> list[float | None]:
    """Floats for JSON; NaN (e.g. the undefined accuracy of all-zero outputs) becomes null."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, np.float64)]


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez`` to exactly ``path`` (no suffix added), atomically."""
    return _atomic(path, lambda h: np.savez(h, **arrays), ".npz", "wb")


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Pretty JSON to ``path``, atomically."""
    return _atomic(path, lambda h: h.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"), ".json", "w")


def save_figure(path: str | os.PathLike, fig: Any, **kwargs: Any) -> Path:
    """``fig.savefig`` to ``path``, atomically (format from the suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic(path, lambda h: fig.savefig(h, format=fmt, **kwargs), f".{fmt}", "wb")
