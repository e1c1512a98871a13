"""Quiet access to neural-tangents.

neural-tangents imports TensorFlow, whose C++ runtime writes log lines straight
to file descriptor 2 ("computation placer already registered", oneDNN notes).
Python-level redirection cannot catch those, so the import runs with the
process's stdout/stderr descriptors pointed at /dev/null. Errors raised by the
import are re-raised unchanged after the descriptors are restored.

Use ``from ntk_l2._nt import nt, stax`` everywhere instead of importing
neural_tangents directly.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


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


with silenced_fds():
    import neural_tangents as nt  # noqa: E402
    from neural_tangents import stax  # noqa: E402

__all__ = ["nt", "stax", "silenced_fds"]
