"""Loss and accuracy of predicted outputs, in the toolkit's conventions."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def mse_loss(fx: ArrayLike, y: ArrayLike) -> NDArray[np.float64]:
    """L = ‖f − Y‖² / (2N), N = Y.size, over the last two axes (…, n, c)."""
    fx, y = np.asarray(fx, np.float64), np.asarray(y, np.float64)
    return np.sum((fx - y) ** 2, axis=(-2, -1)) / (2.0 * y.size)


def accuracy(fx: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Fraction of rows whose argmax equals the integer label, over (…, n, c).

    NaN where the outputs are identically zero (e.g. decayed below the float64
    range at very late times with L2): an argmax of all-zero outputs is
    undefined, not "class 0".
    """
    fx, labels = np.asarray(fx), np.asarray(labels)
    acc = np.mean(np.argmax(fx, axis=-1) == labels, axis=-1)
    return np.where(np.any(fx != 0, axis=(-2, -1)), acc, np.nan)
