"""Enlarged training sets: copies of each image shifted by a few pixels (zero fill).

`shifted_copies` turns n raw images into (copies + 1)·n: the originals first, then copy 1 of
every image, then copy 2, … Copy r of image i is ``shift_image(image_i, offset_ir)`` with

    shifted[y, x] = image[y − dy, x − dx]   if 0 ≤ y − dy < H and 0 ≤ x − dx < W,   else 0,

for an offset (dy, dx) drawn uniformly among the nonzero integer offsets of [−s, s]² (s =
``max_shift``), distinct for the copies of one image: no copy repeats its original or another copy
(a repeated point would make the kernel matrix singular). Zero is black only on the raw pixels, so
the shift must come before any standardization: `ntk_l2.data.datasets.load_mnist` shifts the raw
uint8 images (``shifted_copies=K``) and then standardizes with the enlarged set's statistics.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["nonzero_shifts", "shift_image", "shift_offsets", "shifted_copies"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _shift_stack(images: NDArray, dy: int, dx: int) -> NDArray:
    """Every image of the stack (n, H, W, …) moved down by ``dy`` and right by ``dx``, zero fill."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def shift_image(image: NDArray, dy: int, dx: int) -> NDArray:
    """``image`` (H, W, …) moved down by ``dy`` and right by ``dx`` pixels, vacated pixels 0."""
    return _shift_stack(np.asarray(image)[None], int(dy), int(dx))[0]


def nonzero_shifts(copies: int, max_shift: int, names: tuple[str, str] = ("copies", "max_shift")) -> NDArray[np.int64]:
    """The (2s + 1)² − 1 nonzero offsets (dy, dx) of [−s, s]², s = ``max_shift``, after checking
    that ``copies`` (≥ 0) distinct ones exist; ``names`` are the arguments' names in the errors."""
    copies = _check_int(names[0], copies, 0)
    max_shift = _check_int(names[1], max_shift, 1)
    grid = np.arange(-max_shift, max_shift + 1)
    choices = np.array([(dy, dx) for dy in grid for dx in grid if dy or dx], np.int64)
    if copies > len(choices):
        raise ValueError(
            f"{names[0]} must be at most {len(choices)} for {names[1]}={max_shift} (distinct nonzero shifts), "
            f"got {copies}"
        )
    return choices


def shift_offsets(n: int, copies: int, max_shift: int = 2, seed: int = 0) -> NDArray[np.int64]:
    """Offsets (copies, n, 2) of `shifted_copies`: per image, ``copies`` distinct nonzero (dy, dx).

    Deterministic in ``seed``: image i's offsets are the first ``copies`` entries of a permutation
    of the (2s + 1)² − 1 nonzero offsets drawn by ``numpy.random.default_rng(seed)``.
    """
    n = _check_int("n", n, 0)
    choices = nonzero_shifts(copies, max_shift)
    rng = np.random.default_rng(seed)
    picks = np.argsort(rng.random((n, len(choices))), axis=1)[:, :copies]  # a random permutation per image
    return np.ascontiguousarray(choices[picks].transpose(1, 0, 2))


def shifted_copies(
    images: NDArray, labels: NDArray[np.integer], copies: int, max_shift: int = 2, seed: int = 0
) -> tuple[NDArray, NDArray[np.integer]]:
    """The images (n, H, W[, C]) and their labels enlarged to (copies + 1)·n by random shifts.

    Returns ``(images', labels')`` with ``images'[:n] = images`` and ``images'[r·n + i]`` image i
    shifted by ``shift_offsets(n, copies, max_shift, seed)[r − 1, i]`` (zero fill); labels repeat.

    Raises:
      ValueError: on images that are not a stack of 2-D images, a label count that differs, a
        negative ``copies`` or more copies than distinct nonzero shifts.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, H, W) or (n, H, W, C), got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    offsets = shift_offsets(images.shape[0], copies, max_shift, seed)
    out = np.empty((images.shape[0] * (len(offsets) + 1), *images.shape[1:]), images.dtype)
    out[: images.shape[0]] = images
    n = images.shape[0]
    for r, block in enumerate(offsets, start=1):
        for dy, dx in np.unique(block, axis=0):  # all images of this copy sharing one offset at once
            chosen = np.flatnonzero((block == (dy, dx)).all(axis=1))
            out[r * n + chosen] = _shift_stack(images[chosen], int(dy), int(dx))
    return out, np.tile(labels, len(offsets) + 1)
