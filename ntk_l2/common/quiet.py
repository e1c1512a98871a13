"""Silence what native code writes straight to the process's file descriptors.

TensorFlow's C++ runtime (imported by neural-tangents) and ODEPACK's LSODA
(its Fortran warnings, f2py's callback notices) write to descriptors 1 and 2,
where Python-level redirection cannot catch them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def silenced_fds() -> Iterator[None]:
    """Redirect OS-level stdout and stderr to /dev/null inside the block."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:  # no such descriptor (embedded interpreters)
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
