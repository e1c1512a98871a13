"""Quiet access to neural-tangents.

neural-tangents imports TensorFlow, whose C++ runtime writes log lines straight
to file descriptor 2 ("computation placer already registered", oneDNN notes).
Python-level redirection cannot catch those, so the import runs with the
process's stdout/stderr descriptors pointed at /dev/null. Errors raised by the
import are re-raised unchanged after the descriptors are restored.

Use ``from ntk_l2.networks.nt import nt, stax`` everywhere instead of importing
neural_tangents directly.
"""

from __future__ import annotations

from ntk_l2.common.quiet import silenced_fds

with silenced_fds():
    import neural_tangents as nt  # noqa: E402
    from neural_tangents import stax  # noqa: E402

__all__ = ["nt", "stax", "silenced_fds"]
