"""Datasets in the toolkit's conventions: a `Dataset` container and loaders.

Every loader returns a frozen `Dataset` whose arrays are read-only, with
targets one-hot minus 1/c (rows of mean zero, DESIGN §2) and integer labels
for accuracy. `load_dataset(name, ...)` dispatches by name; for now it knows
only the embedded default, scikit-learn's handwritten digits (1797 images of
8×8 pixels, 10 classes, shipped with scikit-learn: no network needed).
MNIST and CIFAR-10 readers slot into `_LOADERS`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Dataset", "DATASETS", "one_hot_targets", "load_digits", "load_dataset"]

_DIGITS_SIZE = 1797  # images in sklearn.datasets.load_digits
_DIGITS_MAX = 16.0  # pixel values are integers in [0, 16]
_STD_FLOOR = 1e-8  # features with smaller train std are constant: set to 0


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with regression targets and class labels.

    Attributes:
      x_train, x_test: float inputs, shapes (n, *input_shape), (m, *input_shape),
        flat (n, d) or NHWC images.
      y_train, y_test: float targets, shapes (n, n_classes), (m, n_classes).
      labels_train, labels_test: integer class labels, shapes (n,), (m,).
      n_classes: number of classes c.
      name: dataset name, as understood by `load_dataset`.

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
            if (y.shape != (labels.shape[0], self.n_classes) or x.shape[0] != labels.shape[0]
                    or x.shape[1:] != self.x_train.shape[1:]):
                raise ValueError(f"inconsistent {split} shapes: x {x.shape}, y {y.shape}, labels "
                                 f"{labels.shape}, n_classes {self.n_classes}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (64,) flat or (8, 8, 1) NHWC."""
        return tuple(self.x_train.shape[1:])


def one_hot_targets(labels: ArrayLike, n_classes: int, *, centered: bool = True,
                    dtype: DTypeLike = np.float64) -> NDArray[np.floating]:
    """Regression targets from integer class labels.

    Args:
      labels: integer labels in [0, n_classes), shape (n,).
      n_classes: number of classes c ≥ 1.
      centered: subtract 1/c from every entry (DESIGN convention), so that each
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
        raise ValueError(f"labels must be a 1-D integer array, got dtype {labels.dtype} "
                         f"and shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    targets = np.eye(n_classes, dtype=np.float64)[labels]
    if centered:
        targets -= 1.0 / n_classes
    return targets.astype(dtype, copy=False)


def _split(n_total: int, n_train: int | None, n_test: int | None,
           seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Disjoint random train/test indices into range(n_total); None = the rest."""
    if n_train is None and n_test is None:
        raise ValueError("n_train and n_test cannot both be None")
    for value, argument in ((n_train, "n_train"), (n_test, "n_test")):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1):
            raise ValueError(f"{argument} must be a positive integer or None, got {value!r}")
    n_train = n_total - n_test if n_train is None else n_train
    n_test = n_total - n_train if n_test is None else n_test
    if n_train < 1 or n_test < 1 or n_train + n_test > n_total:
        raise ValueError(f"n_train + n_test must be at most {n_total} with both ≥ 1, "
                         f"got n_train={n_train}, n_test={n_test}")
    perm = np.random.default_rng(seed).permutation(n_total)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + n_test])


def load_digits(n_train: int | None = 256, n_test: int | None = 512, *, seed: int = 0,
                flatten: bool = True, standardize: bool = True,
                dtype: DTypeLike = np.float64) -> Dataset:
    """scikit-learn's handwritten digits (1797 images 8×8, 10 classes).

    Split: of `numpy.random.default_rng(seed).permutation(1797)`, the first
    `n_train` indices train and the next `n_test` test (disjoint, deterministic).

    Args:
      n_train: training points; None takes all points not in the test set.
      n_test: test points; None takes all points not in the training set.
      seed: seed of the split.
      flatten: inputs of shape (n, 64); False gives NHWC images (n, 8, 8, 1).
      standardize: per pixel, subtract the training mean and divide by the
        training standard deviation, applied to train and test alike; pixels
        constant on the training set (std < 1e-8) are set to 0 in both. If
        False, pixels are scaled to [0, 1] (divided by 16).
      dtype: floating dtype of inputs and targets (statistics in float64).

    Returns:
      A `Dataset` named "digits" with targets one-hot minus 1/10.

    Raises:
      ValueError: on a bad count, n_train + n_test > 1797 or a non-float dtype.
    """
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {np.dtype(dtype)}")
    idx_train, idx_test = _split(_DIGITS_SIZE, n_train, n_test, seed)
    from sklearn.datasets import load_digits as _sklearn_digits  # import only when used

    raw = _sklearn_digits()
    x, labels = np.asarray(raw.data, np.float64), np.asarray(raw.target, np.int64)
    x_train, x_test = x[idx_train], x[idx_test]
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        constant, std = std < _STD_FLOOR, np.maximum(std, _STD_FLOOR)
        x_train, x_test = (np.where(constant, 0.0, (v - mean) / std) for v in (x_train, x_test))
    else:
        x_train, x_test = x_train / _DIGITS_MAX, x_test / _DIGITS_MAX
    if not flatten:
        x_train, x_test = (v.reshape(-1, 8, 8, 1) for v in (x_train, x_test))
    labels_train, labels_test = labels[idx_train], labels[idx_test]
    return Dataset(
        x_train=x_train.astype(dtype), y_train=one_hot_targets(labels_train, 10, dtype=dtype),
        x_test=x_test.astype(dtype), y_test=one_hot_targets(labels_test, 10, dtype=dtype),
        labels_train=labels_train, labels_test=labels_test, n_classes=10, name="digits")


_LOADERS: Mapping[str, Callable[..., Dataset]] = types.MappingProxyType({"digits": load_digits})
DATASETS: tuple[str, ...] = tuple(_LOADERS)  # names `load_dataset` knows


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load a dataset by name, passing keyword arguments to its loader.

    Args:
      name: one of `DATASETS` (case-insensitive); currently only "digits".
      **kwargs: forwarded to the loader, e.g. `n_train`, `n_test`, `seed`.

    Raises:
      ValueError: if the name is unknown (the message lists `DATASETS`).
    """
    if (key := str(name).lower()) not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return _LOADERS[key](**kwargs)
