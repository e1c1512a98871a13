"""Bounds on memory: a request is sized from its shapes and refused before anything is allocated.

`available_bytes` is what the machine can give now (``MemAvailable`` of
``/proc/meminfo``, else the free physical pages); `memory_limit` raises or
lowers the bound for a block of code (the command line's ``--max-memory``);
`check_fits` raises a one-line ``ValueError`` naming what would not fit.
The memory model of each request: `derivations/validation.md`, V4.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

_LIMIT: contextvars.ContextVar[float | None] = contextvars.ContextVar("ntk_l2_memory_limit", default=None)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def available_bytes() -> float:
    """Memory the machine can give now, in bytes (inf when the system does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def parse_bytes(text: str, name: str = "--max-memory") -> float:
    """'512M', '24G', '1.5T' or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{name}: expected a size such as 512M or 24G, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {text!r}")
    return value


def limit_bytes() -> float:
    """The bound in force: the one set by `memory_limit`, else `available_bytes`."""
    limit = _LIMIT.get()
    return available_bytes() if limit is None else limit


@contextlib.contextmanager
def memory_limit(nbytes: float | None) -> Iterator[None]:
    """Use ``nbytes`` as the bound inside the block (None: what the machine has)."""
    token = _LIMIT.set(nbytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def format_bytes(nbytes: float) -> str:
    """1.5 GiB, 300 MiB, …"""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} B"


def check_fits(nbytes: float, what: str, name: str) -> None:
    """Raise ``ValueError`` (``name: …``) when ``nbytes`` exceed the bound in force."""
    limit = limit_bytes()
    if nbytes > limit:
        set_by = "the limit set" if _LIMIT.get() is not None else "the memory available now"
        raise ValueError(
            f"{name}: {what} needs about {format_bytes(nbytes)}, more than {set_by} "
            f"({format_bytes(limit)}); ask for fewer points or times, or raise the limit "
            f"(--max-memory on the command line)"
        )
