"""Atomic writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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
