"""Datasets in the toolkit's conventions: the loaders, each returning a `Dataset` (`ntk_l2.data.container`).

Every loader returns a frozen `Dataset` whose arrays are read-only, with
targets one-hot minus 1/c (rows of mean zero, `derivations/conventions.md`) and integer labels
for accuracy. `load_dataset(name, ...)` dispatches by name:

- "digits": the embedded default, scikit-learn's handwritten digits (1797
  images of 8×8 pixels, 10 classes, shipped with scikit-learn: no network).
- "mnist": MNIST from its canonical IDX files (LeCun et al. 1998).
- "cifar10": CIFAR-10 from its canonical binary release (Krizhevsky 2009).

File formats, checksums and downloads live in `ntk_l2.data.formats`.
Subsets are deterministic functions of `seed`.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ntk_l2.data import formats as datasets_io
from ntk_l2.data.augment import nonzero_shifts
from ntk_l2.data.augment import shifted_copies as _shifted
from ntk_l2.data.container import Dataset, one_hot_targets

__all__ = ["Dataset", "DATASETS", "one_hot_targets", "load_digits", "load_mnist", "load_cifar10", "load_dataset"]

_DIGITS_SIZE = 1797  # images in sklearn.datasets.load_digits
_DIGITS_MAX = 16.0  # pixel values are integers in [0, 16]
_STD_FLOOR = 1e-8  # features with smaller train std are constant: set to 0


def _check_args(dtype: DTypeLike, n_train: Any, n_test: Any) -> None:
    """Checks shared by the loaders, made before any file is read."""
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {np.dtype(dtype)}")
    for value, argument in ((n_train, "n_train"), (n_test, "n_test")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{argument} must be a positive integer or None, got {value!r}")


def _split(
    n_total: int, n_train: int | None, n_test: int | None, seed: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Disjoint random train/test indices into range(n_total); None = the rest."""
    if n_train is None and n_test is None:
        raise ValueError("n_train and n_test cannot both be None")
    n_train = n_total - n_test if n_train is None else n_train
    n_test = n_total - n_train if n_test is None else n_test
    if n_train < 1 or n_test < 1 or n_train + n_test > n_total:
        raise ValueError(
            f"n_train + n_test must be at most {n_total} with both ≥ 1, got n_train={n_train}, n_test={n_test}"
        )
    perm = np.random.default_rng(seed).permutation(n_total)
    return np.sort(perm[:n_train]), np.sort(perm[n_train : n_train + n_test])


def _subsets(
    pool_train: int, pool_test: int, n_train: int | None, n_test: int | None, seed: int, context: str
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Sorted random subsets of range(pool_train), range(pool_test); None = all.

    One generator permutes each pool in turn: a subset depends only on the seed
    and its own size, and nests as it grows.
    """
    rng = np.random.default_rng(seed)
    subsets = []
    for size, pool, argument in ((n_train, pool_train, "n_train"), (n_test, pool_test, "n_test")):
        if size is not None and size > pool:
            raise ValueError(f"{argument} must be at most {pool} {context}, got {size}")
        perm = rng.permutation(pool)
        subsets.append(np.arange(pool) if size is None else np.sort(perm[:size]))
    return subsets[0], subsets[1]


def _standardize_mode(standardize: bool | str, default: str) -> str | None:
    if isinstance(standardize, (bool, np.bool_)):
        return default if standardize else None
    if standardize not in ("feature", "channel"):
        raise ValueError(f"standardize must be True, False, 'feature' or 'channel', got {standardize!r}")
    return str(standardize)


def _standardize(
    x_train: NDArray[np.float64], x_test: NDArray[np.float64], mode: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Standardize both splits with training statistics.

    "feature": mean and std over samples; "channel": over samples and pixels
    (NHWC). Entries whose training std is below 1e-8 become 0.
    """
    axes = 0 if mode == "feature" else tuple(range(x_train.ndim - 1))
    mean, std = x_train.mean(axis=axes), x_train.std(axis=axes)
    constant, std = std < _STD_FLOOR, np.maximum(std, _STD_FLOOR)
    x_train, x_test = (np.where(constant, 0.0, (v - mean) / std) for v in (x_train, x_test))
    return x_train, x_test


def _image_dataset(
    images_train: NDArray[np.uint8],
    labels_train: NDArray[np.integer],
    images_test: NDArray[np.uint8],
    labels_test: NDArray[np.integer],
    *,
    flatten: bool,
    mode: str | None,
    dtype: DTypeLike,
    name: str,
) -> Dataset:
    """A 10-class `Dataset` from uint8 NHWC images: /255, standardized, maybe flattened."""
    x_train, x_test = (np.asarray(v, np.float64) / 255.0 for v in (images_train, images_test))
    if mode is not None:
        x_train, x_test = _standardize(x_train, x_test, mode)
    if flatten:
        x_train, x_test = (v.reshape(v.shape[0], -1) for v in (x_train, x_test))
    return _ten_classes(x_train, labels_train, x_test, labels_test, dtype, name)


def _ten_classes(
    x_train: NDArray[np.float64],
    labels_train: NDArray[np.integer],
    x_test: NDArray[np.float64],
    labels_test: NDArray[np.integer],
    dtype: DTypeLike,
    name: str,
) -> Dataset:
    return Dataset(
        x_train=x_train.astype(dtype),
        y_train=one_hot_targets(labels_train, 10, dtype=dtype),
        x_test=x_test.astype(dtype),
        y_test=one_hot_targets(labels_test, 10, dtype=dtype),
        labels_train=labels_train,
        labels_test=labels_test,
        n_classes=10,
        name=name,
    )


def load_digits(
    n_train: int | None = 256,
    n_test: int | None = 512,
    *,
    seed: int = 0,
    flatten: bool = True,
    standardize: bool = True,
    dtype: DTypeLike = np.float64,
) -> Dataset:
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
    _check_args(dtype, n_train, n_test)
    idx_train, idx_test = _split(_DIGITS_SIZE, n_train, n_test, seed)
    from sklearn.datasets import load_digits as _sklearn_digits  # import only when used

    raw = _sklearn_digits()
    x, labels = np.asarray(raw.data, np.float64), np.asarray(raw.target, np.int64)
    x_train, x_test = x[idx_train], x[idx_test]
    if standardize:
        x_train, x_test = _standardize(x_train, x_test, "feature")
    else:
        x_train, x_test = x_train / _DIGITS_MAX, x_test / _DIGITS_MAX
    if not flatten:
        x_train, x_test = (v.reshape(-1, 8, 8, 1) for v in (x_train, x_test))
    return _ten_classes(x_train, labels[idx_train], x_test, labels[idx_test], dtype, "digits")


def load_mnist(
    n_train: int | None = 512,
    n_test: int | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    flatten: bool = True,
    standardize: bool | Literal["feature", "channel"] = True,
    dtype: DTypeLike = np.float64,
    split: Literal["auto", "train/test", "test-only"] = "auto",
    download: bool = False,
    verify: bool = True,
    shifted_copies: int = 0,
    max_shift: int = 2,
) -> Dataset:
    """MNIST (28×28 grayscale digits, 10 classes) from the canonical IDX gzip files.

    Splits: "train/test" draws training points from the 60,000 training images
    and test points from the 10,000 test images; "test-only" (the test-split
    protocol, when only the `t10k-*` files are at hand) draws training points
    from the first 5,000 test images and test points from the last 5,000, and
    names the dataset "mnist(test-split protocol)". `numpy.random.default_rng(seed)`
    permutes the train pool, then the test pool; the first `n_train` / `n_test`
    indices are kept, sorted.

    Args:
      n_train: training points; None takes the whole training pool.
      n_test: test points; None takes the whole test pool (10,000 or 5,000).
      data_dir: directory of the `*-ubyte.gz` files; default
        `$NTK_L2_DATA/mnist`, else `~/.cache/ntk_l2/mnist`.
      seed: seed of the subsets.
      flatten: inputs (n, 784); False gives NHWC images (n, 28, 28, 1).
      standardize: pixels are divided by 255, then True or "feature"
        standardizes each pixel with training mean and std (as `load_digits`),
        "channel" with one mean and std over all training pixels; False stops at [0, 1].
      dtype: floating dtype of inputs and targets (statistics in float64).
      split: "train/test", "test-only" or "auto": "train/test" if both training
        files are in `data_dir` (or `download`), else "test-only".
      download: fetch missing files from `datasets_io.MNIST_MIRRORS` (each
        verified against its published checksum before it is renamed into place).
      verify: check local files against `datasets_io.KNOWN_CHECKSUMS`.
      shifted_copies, max_shift: K ≥ 0 copies of each drawn training image, shifted by distinct
        random nonzero offsets in [−max_shift, max_shift]² with zero fill, on the raw pixels before
        the standardization (`ntk_l2.data.augment.shifted_copies`, seeded by ``seed``): (K + 1)·n_train
        training images whose statistics standardize both splits. The test set is unchanged.

    Returns:
      A `Dataset` named "mnist" or "mnist(test-split protocol)", targets one-hot minus 1/10;
      with copies the parentheses say so: "mnist(+3 shifted copies)",
      "mnist(test-split protocol, +3 shifted copies)".

    Raises:
      FileNotFoundError: if files are missing and `download` is False.
      ValueError: on bad arguments, a malformed file or a checksum mismatch.
      datasets_io.DownloadError: if no mirror delivers a verified file.
    """
    _check_args(dtype, n_train, n_test)
    nonzero_shifts(shifted_copies, max_shift, ("shifted_copies", "max_shift"))  # checked before any file is read
    mode = _standardize_mode(standardize, "feature")
    directory = datasets_io.default_data_dir("mnist") if data_dir is None else data_dir
    images_train, labels_train, images_test, labels_test, context, protocol = _mnist_pools(
        directory, split, download, verify
    )
    idx_train, idx_test = _subsets(len(labels_train), len(labels_test), n_train, n_test, seed, context)
    images_train, labels_train = images_train[idx_train, ..., None], labels_train[idx_train]
    if shifted_copies:
        images_train, labels_train = _shifted(images_train, labels_train, shifted_copies, max_shift, seed)
        protocol += [f"+{shifted_copies} shifted copies"]
    name = f"mnist({', '.join(protocol)})" if protocol else "mnist"
    return _image_dataset(
        images_train,
        labels_train,
        images_test[idx_test, ..., None],
        labels_test[idx_test],
        flatten=flatten,
        mode=mode,
        dtype=dtype,
        name=name,
    )


def _mnist_pools(directory: str | os.PathLike, split: str, download: bool, verify: bool) -> tuple[Any, ...]:
    """(train images, train labels, test images, test labels, context of errors, protocol names)
    of MNIST: the official split, or the halves of its test set ("test-split protocol")."""
    split, paths = datasets_io.locate_mnist(directory, split, download=download, verify=verify)
    images_test, labels_test = datasets_io.read_mnist(paths["test_images"], paths["test_labels"])
    if split == "train/test":
        images_train, labels_train = datasets_io.read_mnist(paths["train_images"], paths["train_labels"])
        return images_train, labels_train, images_test, labels_test, "for the MNIST training/test split", []
    half = images_test.shape[0] // 2
    pools = images_test[:half], labels_test[:half], images_test[half:], labels_test[half:]
    return *pools, "under the MNIST test-split protocol", ["test-split protocol"]


def load_cifar10(
    n_train: int | None = 512,
    n_test: int | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    flatten: bool = False,
    standardize: bool | Literal["feature", "channel"] = True,
    dtype: DTypeLike = np.float64,
    download: bool = False,
    verify: bool = True,
) -> Dataset:
    """CIFAR-10 (32×32 RGB images, 10 classes) from the canonical binary release.

    Reads `cifar-10-batches-bin/` (training: `data_batch_1..5.bin`, 50,000
    images; test: `test_batch.bin`, 10,000), or extracts it safely from
    `cifar-10-binary.tar.gz`. Subsets are drawn as in `load_mnist`.

    Args:
      n_train: training points; None takes all 50,000.
      n_test: test points; None takes all 10,000.
      data_dir: the extracted directory, a directory holding it or the archive,
        or the archive itself; default `$NTK_L2_DATA/cifar10`, else
        `~/.cache/ntk_l2/cifar10`.
      seed: seed of the subsets.
      flatten: inputs (n, 3072) in HWC order; False gives NHWC images (n, 32, 32, 3).
      standardize: pixels are divided by 255, then True or "channel"
        standardizes each colour channel with training mean and std over all
        pixels, "feature" each pixel and channel separately; False stops at [0, 1].
      dtype: floating dtype of inputs and targets (statistics in float64).
      download: fetch a missing archive from `datasets_io.CIFAR10_URL` (as in `load_mnist`).
      verify: check the archive against its published md5 before extracting.

    Returns:
      A `Dataset` named "cifar10" with targets one-hot minus 1/10.

    Raises:
      FileNotFoundError: if the data are missing and `download` is False.
      ValueError: on bad arguments, a malformed batch (size not a multiple of
        3073 bytes, label above 9), an unsafe archive member or a checksum mismatch.
      datasets_io.DownloadError: if the download fails.
    """
    _check_args(dtype, n_train, n_test)
    mode = _standardize_mode(standardize, "channel")
    directory = datasets_io.default_data_dir("cifar10") if data_dir is None else data_dir
    batches = datasets_io.locate_cifar10(directory, download=download, verify=verify)
    train_paths = [batches / name for name in datasets_io.CIFAR10_TRAIN]
    test_paths = [batches / datasets_io.CIFAR10_TEST]
    pool_train, pool_test = (sum(map(datasets_io.cifar10_count, paths)) for paths in (train_paths, test_paths))
    idx_train, idx_test = _subsets(pool_train, pool_test, n_train, n_test, seed, "for the CIFAR-10 training/test split")
    images_train, labels_train = datasets_io.read_cifar10(train_paths, idx_train)
    images_test, labels_test = datasets_io.read_cifar10(test_paths, idx_test)
    return _image_dataset(
        images_train, labels_train, images_test, labels_test, flatten=flatten, mode=mode, dtype=dtype, name="cifar10"
    )


_LOADERS: Mapping[str, Callable[..., Dataset]] = types.MappingProxyType(
    {"digits": load_digits, "mnist": load_mnist, "cifar10": load_cifar10}
)
DATASETS: tuple[str, ...] = tuple(_LOADERS)  # names `load_dataset` knows


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load a dataset by name, passing keyword arguments to its loader.

    Args:
      name: one of `DATASETS` (case-insensitive): "digits", "mnist", "cifar10".
      **kwargs: forwarded to the loader, e.g. `n_train`, `n_test`, `seed`.

    Raises:
      ValueError: if the name is unknown (the message lists `DATASETS`).
    """
    if (key := str(name).lower()) not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return _LOADERS[key](**kwargs)


def load_mnist_or_digits(
    n_train: int, n_test: int, data_dir: str | os.PathLike | None = None, seed: int = 0, flatten: bool = True
) -> Dataset:
    """MNIST from ``data_dir`` (default `$NTK_L2_MNIST_DIR`), else the embedded digits.

    For notebooks and demos that must run anywhere: when the MNIST files are not found, a
    `UserWarning` says so and the digits are returned; the dataset's ``name`` tells which.
    ``flatten=False`` keeps NHWC images (28×28 or 8×8) for convolutional networks.
    """
    import warnings

    directory = data_dir if data_dir is not None else os.environ.get("NTK_L2_MNIST_DIR")
    try:
        if directory is None:
            raise FileNotFoundError("no data_dir given and NTK_L2_MNIST_DIR is not set")
        return load_mnist(n_train=n_train, n_test=n_test, data_dir=directory, seed=seed, flatten=flatten)
    except FileNotFoundError as err:
        warnings.warn(f"MNIST not found ({err}); using the embedded digits", stacklevel=2)
        return load_digits(n_train=n_train, n_test=n_test, seed=seed, flatten=flatten)
