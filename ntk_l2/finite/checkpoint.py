"""Checkpoints inside a training run: a killed run resumes from its last checkpoint, not from step 0.

A checkpoint is one ``.npz`` file written atomically (`ntk_l2.common.io.save_npz`: complete or
absent) holding the step s reached, θ_s, the rule's state (step count, velocity, λ), every
member's minibatch key, the records so far (`ntk_l2.finite.recorder.Recorder.to_arrays`), a
``fingerprint`` of the run and a ``checksum``::

    fingerprint = SHA-256(canonical JSON of the config, record steps, seeds and options; dtype,
                          shape and bytes of the data, of θ_0 and of f(θ_0; X))
    checksum    = SHA-256(the metadata (format, fingerprint, s, whether the run had ended), and
                          the name, dtype, shape and bytes of every array)

θ_0 is not stored: it is recomputed from the seeds, and the fingerprint checks it. Loading
verifies both; a checkpoint that cannot be read, was written by another run (fingerprint) or
is corrupted (checksum, array shapes) is ignored with a `CheckpointWarning` and the run starts
from step 0, overwriting it with its own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.common.io import save_npz
from ntk_l2.finite.loop import Carry
from ntk_l2.finite.recorder import Recorder

FORMAT = 1


class CheckpointWarning(UserWarning):
    """A checkpoint was ignored (unreadable, another run's, or corrupted); the run starts from step 0."""


class Restored(NamedTuple):
    """A verified checkpoint: the loop's carry, the records, the step reached and whether the run had ended."""

    carry: Carry
    recorder: Recorder
    step: int
    done: bool


def _digest_arrays(digest: Any, named: Sequence[tuple[str, Any]]) -> None:
    for name, value in named:
        a = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())


def fingerprint(settings: dict[str, Any], arrays: Sequence[Any]) -> str:
    """SHA-256 hex of the settings (canonical JSON: numbers exactly) and of each array (dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, allow_nan=True).encode())
    _digest_arrays(digest, [(str(i), a) for i, a in enumerate(arrays)])
    return digest.hexdigest()


def _checksum(meta: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(meta.encode())
    _digest_arrays(digest, sorted(arrays.items()))
    return digest.hexdigest()


def _stored(carry: Carry) -> Carry:
    """The part of the carry a checkpoint holds: θ_0 is recomputed."""
    return carry._replace(params0=None)


def save_checkpoint(
    path: str | os.PathLike, run_fingerprint: str, step: int, done: bool, carry: Carry, recorder: Recorder
) -> Path:
    """Write the checkpoint of a run at ``step`` (``done``: the run has ended) atomically to ``path``."""
    arrays = {f"carry/{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(_stored(carry)))}
    arrays.update({f"rec/{k}": np.asarray(v) for k, v in recorder.to_arrays().items()})
    meta = json.dumps(
        {"format": FORMAT, "fingerprint": run_fingerprint, "step": int(step), "done": bool(done)}, sort_keys=True
    )
    return save_npz(path, meta=np.asarray(meta), checksum=np.asarray(_checksum(meta, arrays)), **arrays)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "meta" not in arrays or "checksum" not in arrays:
        raise ValueError("it is not a checkpoint of ntk_l2.finite.train (no meta or checksum)")
    meta_text, checksum = str(arrays.pop("meta")[()]), str(arrays.pop("checksum")[()])
    if checksum != _checksum(meta_text, arrays):
        raise ValueError("its checksum does not match its contents (corrupted)")
    return json.loads(meta_text), arrays


def load_checkpoint(
    path: str | os.PathLike, run_fingerprint: str, template: Carry, y_train: Any, divergence_factor: float
) -> Restored | None:
    """The verified checkpoint at ``path`` of the run ``run_fingerprint``, or None (no file, or a
    `CheckpointWarning`: the module docstring says when). ``template`` is the run's initial carry:
    the stored arrays must have its structure, shapes and dtypes; θ_0 is taken from it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        meta, arrays = _read(path)
        if meta.get("format") != FORMAT or meta.get("fingerprint") != run_fingerprint:
            raise ValueError("it was written by another run (configuration, data, seeds or network differ)")
        like = jax.tree_util.tree_leaves(_stored(template))
        leaves = [arrays.get(f"carry/{i}") for i in range(len(like))]
        n_stored = len([k for k in arrays if k.startswith("carry/")])
        if n_stored != len(like) or any(
            a is None or a.shape != np.shape(t) or a.dtype != t.dtype for a, t in zip(leaves, like, strict=True)
        ):
            raise ValueError("its state does not have the shapes of this run's")
        treedef = jax.tree_util.tree_structure(_stored(template))
        carry = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])._replace(
            params0=template.params0
        )
        rec = {k[len("rec/") :]: v for k, v in arrays.items() if k.startswith("rec/")}
        recorder = Recorder.from_arrays(rec, y_train, divergence_factor)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        warnings.warn(f"checkpoint: ignoring {path}: {err}; starting from step 0", CheckpointWarning, stacklevel=3)
        return None
    return Restored(carry, recorder, int(meta["step"]), bool(meta["done"]))
