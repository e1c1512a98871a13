"""The `Dataset` container and its targets, one-hot minus 1/c (`derivations/conventions.md`).

Every loader of `ntk_l2.data.datasets` returns a frozen `Dataset` whose arrays are read-only,
with regression targets from `one_hot_targets` (rows of mean zero) and integer labels for accuracy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with regression targets and class labels.

    Attributes:
      x_train, x_test: float inputs, shapes ``(n, *input_shape)``, ``(m, *input_shape)``,
        flat (n, d) or NHWC images.
      y_train, y_test: float targets, shapes (n, n_classes), (m, n_classes).
      labels_train, labels_test: integer class labels, shapes (n,), (m,).
      n_classes: number of classes c.
      name: dataset name, as understood by `load_dataset`, possibly followed by
        the protocol in parentheses, e.g. "mnist(test-split protocol)".

    The constructor checks shapes and stores read-only views (no copy) of the arrays.
    """

    x_train: NDArray[np.floating]
    y_train: NDArray[np.floating]
    x_test: NDArray[np.floating]
    y_test: NDArray[np.floating]
    labels_train: NDArray[np.integer]
    labels_test: NDArray[np.integer]
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self)[:6]:
            view = np.asarray(getattr(self, field.name)).view()
            view.setflags(write=False)
            object.__setattr__(self, field.name, view)
        for split in ("train", "test"):
            x, y, labels = (getattr(self, f"{k}_{split}") for k in ("x", "y", "labels"))
            if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
                raise ValueError(f"x_{split} and y_{split} must be floating arrays")
            if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
                raise ValueError(f"labels_{split} must be a 1-D integer array")
            if (
                y.shape != (labels.shape[0], self.n_classes)
                or x.shape[0] != labels.shape[0]
                or x.shape[1:] != self.x_train.shape[1:]
            ):
                raise ValueError(
                    f"inconsistent {split} shapes: x {x.shape}, y {y.shape}, labels "
                    f"{labels.shape}, n_classes {self.n_classes}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (64,) flat or (8, 8, 1) NHWC."""
        return tuple(self.x_train.shape[1:])


def one_hot_targets(
    labels: ArrayLike, n_classes: int, *, centered: bool = True, dtype: DTypeLike = np.float64
) -> NDArray[np.floating]:
    """Regression targets from integer class labels.

    Args:
      labels: integer labels in [0, n_classes), shape (n,).
      n_classes: number of classes c ≥ 1.
      centered: subtract 1/c from every entry (the toolkit's convention), so that each
        row sums to zero; False gives plain one-hot vectors.
      dtype: floating dtype of the result.

    Returns:
      Array of shape (n, c): e_label − 1/c if centered, else e_label.

    Raises:
      ValueError: if labels are not 1-D integers in [0, n_classes).
    """
    labels = np.asarray(labels)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {labels.dtype} and shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]")
    targets = np.eye(n_classes, dtype=np.float64)[labels]
    if centered:
        targets -= 1.0 / n_classes
    return targets.astype(dtype, copy=False)
