"""Tests of ntk_l2.data.datasets and ntk_l2.data.formats: Dataset, targets, digits, MNIST, CIFAR-10.

No test touches the network: downloads go through a monkeypatched `_download._fetch`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ntk_l2.data import datasets as data
from ntk_l2.data import download as _download
from ntk_l2.data import formats as datasets_io
from ntk_l2.data.datasets import (
    DATASETS,
    Dataset,
    _split,
    _subsets,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    one_hot_targets,
)
from ntk_l2.data.formats import KNOWN_CHECKSUMS, DownloadError, read_mnist, verify_checksum


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits(n_train=200, n_test=100, seed=3)


def _raw_digits():
    from sklearn.datasets import load_digits as sk

    raw = sk()
    return raw.data, raw.target


def test_shapes_and_dtypes(digits):
    assert digits.x_train.shape == (200, 64) and digits.x_test.shape == (100, 64)
    assert digits.y_train.shape == (200, 10) and digits.y_test.shape == (100, 10)
    assert digits.labels_train.shape == (200,) and digits.labels_test.shape == (100,)
    assert digits.input_shape == (64,) and digits.n_classes == 10 and digits.name == "digits"
    assert digits.x_train.dtype == digits.y_test.dtype == np.float64
    assert np.issubdtype(digits.labels_train.dtype, np.integer)


def test_defaults_and_rest():
    ds = load_digits()
    assert ds.x_train.shape[0] == 256 and ds.x_test.shape[0] == 512
    assert load_digits(n_train=1000, n_test=None).x_test.shape[0] == 797
    assert load_digits(n_train=None, n_test=100).x_train.shape[0] == 1697


def test_images_nhwc_and_float32():
    ds = load_digits(n_train=10, n_test=5, flatten=False, dtype=np.float32)
    assert ds.x_train.shape == (10, 8, 8, 1) and ds.input_shape == (8, 8, 1)
    assert ds.x_train.dtype == ds.y_train.dtype == ds.x_test.dtype == np.float32
    flat = load_digits(n_train=10, n_test=5)
    np.testing.assert_allclose(ds.x_train.reshape(10, -1), flat.x_train, rtol=1e-6, atol=1e-6)


def test_determinism_and_seed_dependence(digits):
    again = load_digits(n_train=200, n_test=100, seed=3)
    for field in ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test"):
        np.testing.assert_array_equal(getattr(digits, field), getattr(again, field))
    other = load_digits(n_train=200, n_test=100, seed=4)
    assert not np.array_equal(digits.labels_train, other.labels_train)


def test_split_disjoint_and_matches_source():
    idx_train, idx_test = _split(1797, 300, 400, seed=7)
    assert len(idx_train) == 300 and len(idx_test) == 400
    assert len(np.intersect1d(idx_train, idx_test)) == 0
    x, target = _raw_digits()
    ds = load_digits(n_train=300, n_test=400, seed=7, standardize=False)
    np.testing.assert_allclose(ds.x_train, x[idx_train] / 16.0)
    np.testing.assert_allclose(ds.x_test, x[idx_test] / 16.0)
    np.testing.assert_array_equal(ds.labels_train, target[idx_train])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # The digits images are all distinct, so disjoint indices mean disjoint rows.
    train_rows = {row.tobytes() for row in ds.x_train}
    assert not any(row.tobytes() in train_rows for row in ds.x_test)


def test_targets_centered(digits):
    for y, labels in ((digits.y_train, digits.labels_train), (digits.y_test, digits.labels_test)):
        np.testing.assert_allclose(y.sum(axis=1), 0.0, atol=1e-12)
        np.testing.assert_array_equal(np.argmax(y, axis=1), labels)


def test_standardization_uses_train_statistics(digits):
    mean, std = digits.x_train.mean(axis=0), digits.x_train.std(axis=0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    constant = std < 1e-8
    assert constant.any()  # border pixels are blank in the digits data
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-12)
    assert np.all(digits.x_test[:, constant] == 0.0)
    assert not np.allclose(digits.x_test.mean(axis=0)[~constant], 0.0, atol=1e-3)


def test_read_only_and_frozen(digits):
    with pytest.raises(ValueError, match="read-only"):
        digits.x_train[0, 0] = 1.0
    for field in ("y_train", "x_test", "y_test", "labels_train", "labels_test"):
        assert not getattr(digits, field).flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.name = "other"  # type: ignore[misc]


def test_dataset_validates_shapes():
    x, labels = np.zeros((3, 2)), np.array([0, 1, 1])
    y = one_hot_targets(labels, 2)
    with pytest.raises(ValueError, match="inconsistent train shapes"):
        Dataset(x, y[:2], x, y, labels, labels, 2, "toy")
    with pytest.raises(ValueError, match="labels_test"):
        Dataset(x, y, x, y, labels, labels.astype(float), 2, "toy")
    assert Dataset(x, y, x, y, labels, labels, 2, "toy").input_shape == (2,)


def test_one_hot_targets():
    labels = np.array([2, 0, 1, 2])
    plain = one_hot_targets(labels, 3, centered=False)
    np.testing.assert_array_equal(plain, np.eye(3)[labels])
    np.testing.assert_allclose(one_hot_targets(labels, 3), plain - 1.0 / 3.0)
    assert one_hot_targets(labels, 3, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="labels must lie in"):
        one_hot_targets([0, 3], 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        one_hot_targets([-1, 0], 3)
    with pytest.raises(ValueError, match="integer"):
        one_hot_targets([0.0, 1.0], 3)
    with pytest.raises(ValueError, match="n_classes"):
        one_hot_targets([0], 0)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"n_train": 0}, "n_train"),
        ({"n_train": -5}, "n_train"),
        ({"n_train": 2.5}, "n_train"),
        ({"n_test": "10"}, "n_test"),
        ({"n_test": 0}, "n_test"),
        ({"n_train": 1000, "n_test": 900}, "n_train \\+ n_test"),
        ({"n_train": 1797, "n_test": None}, "n_train \\+ n_test"),
        ({"n_train": None, "n_test": None}, "n_train and n_test"),
        ({"dtype": np.int32}, "dtype"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        load_digits(**kwargs)


def test_load_dataset_dispatch():
    assert "digits" in DATASETS
    ds = load_dataset("digits", n_train=20, n_test=10, seed=1)
    np.testing.assert_array_equal(ds.x_train, load_digits(n_train=20, n_test=10, seed=1).x_train)
    assert load_dataset("Digits", n_train=5, n_test=5).name == "digits"
    with pytest.raises(ValueError, match="unknown dataset 'mnist_typo'.*digits"):
        load_dataset("mnist_typo")


def test_dataset_rejects_mismatched_input_shapes():
    labels = np.array([0, 1])
    y = one_hot_targets(labels, 2)
    with pytest.raises(ValueError, match="inconsistent test shapes"):
        Dataset(np.zeros((2, 3)), y, np.zeros((2, 4)), y, labels, labels, 2, "toy")


# --------------------------------------------------------------------------- MNIST and CIFAR-10

T10K_IMAGES, T10K_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _write_mnist_pair(directory: Path, prefix: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return images, labels


def _digest(path: Path, algorithm: str) -> str:
    return _download.file_digest(path, algorithm)


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# Real MNIST (NTK_L2_MNIST_DIR, only the t10k files): the test-split protocol.


@pytest.fixture(scope="module")
def mnist_raw(mnist_dir):
    return read_mnist(Path(mnist_dir) / T10K_IMAGES, Path(mnist_dir) / T10K_LABELS)


def test_mnist_real_test_split_protocol(mnist_dir, mnist_raw):
    ds = load_mnist(n_train=512, data_dir=mnist_dir)
    assert ds.name == "mnist(test-split protocol)" and ds.n_classes == 10
    assert ds.x_train.shape == (512, 784) and ds.x_test.shape == (5000, 784)
    assert ds.y_train.shape == (512, 10) and ds.y_test.shape == (5000, 10)
    for labels in (ds.labels_train, ds.labels_test):
        assert labels.min() >= 0 and labels.max() <= 9 and len(np.unique(labels)) == 10
    np.testing.assert_allclose(ds.y_train.sum(axis=1), 0.0, atol=1e-12)
    # Provenance: raw rows of the first 5,000 images train, the last 5,000 test.
    images, labels = mnist_raw
    assert images.shape == (10000, 28, 28)
    idx_train, idx_test = _subsets(5000, 5000, 512, None, 0, "")
    raw = load_mnist(n_train=512, data_dir=mnist_dir, standardize=False)
    np.testing.assert_array_equal(np.rint(raw.x_train * 255), images[idx_train].reshape(512, -1))
    np.testing.assert_array_equal(np.rint(raw.x_test * 255), images[5000:].reshape(5000, -1))
    np.testing.assert_array_equal(raw.labels_train, labels[idx_train])
    np.testing.assert_array_equal(raw.labels_test, labels[5000:])
    first = {row.tobytes() for row in images[:5000].reshape(5000, -1)}
    train_rows = {row.tobytes() for row in np.rint(raw.x_train * 255).astype(np.uint8)}
    test_rows = {row.tobytes() for row in np.rint(raw.x_test * 255).astype(np.uint8)}
    assert train_rows <= first and not test_rows & first and not train_rows & test_rows
    # Standardization with training statistics.
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-10)


def test_mnist_real_deterministic_by_seed(mnist_dir):
    a = load_mnist(n_train=64, n_test=100, data_dir=mnist_dir, seed=5)
    b = load_mnist(n_train=64, n_test=100, data_dir=mnist_dir, seed=5)
    c = load_mnist(n_train=64, n_test=100, data_dir=mnist_dir, seed=6)
    for field in ("x_train", "x_test", "labels_train", "labels_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.labels_train, c.labels_train)
    nested = load_mnist(n_train=128, n_test=100, data_dir=mnist_dir, seed=5, standardize=False)
    small = load_mnist(n_train=64, n_test=100, data_dir=mnist_dir, seed=5, standardize=False)
    big_rows = {row.tobytes() for row in nested.x_train}
    assert all(row.tobytes() in big_rows for row in small.x_train)
    np.testing.assert_array_equal(nested.x_test, small.x_test)  # test subset ignores n_train
    images = load_mnist(n_train=8, n_test=4, data_dir=mnist_dir, flatten=False, dtype=np.float32)
    assert images.x_train.shape == (8, 28, 28, 1) and images.x_test.dtype == np.float32


def test_mnist_real_checksums(mnist_dir):
    for name in (T10K_IMAGES, T10K_LABELS):
        algorithm, expected = KNOWN_CHECKSUMS[name]
        assert algorithm == "sha256" and _digest(Path(mnist_dir) / name, algorithm) == expected
        assert (
            _digest(Path(mnist_dir) / name, "md5")
            == {T10K_IMAGES: "9fb629c4189551a2d022fa330f9573f3", T10K_LABELS: "ec29112dd5afa0611ce80d1b7f02629c"}[name]
        )
        verify_checksum(Path(mnist_dir) / name, KNOWN_CHECKSUMS)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(data_dir=mnist_dir, split="train/test")


def test_mnist_real_download_into_cache(mnist_dir, tmp_path, monkeypatch):
    calls = []

    def fetch(url, dest):
        calls.append(url)
        Path(dest).write_bytes((Path(mnist_dir) / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(_download, "_fetch", fetch)
    monkeypatch.setenv("NTK_L2_DATA", str(tmp_path))
    ds = load_mnist(n_train=32, n_test=50, split="test-only", download=True)
    assert _files(tmp_path) == ["mnist", f"mnist/{T10K_IMAGES}", f"mnist/{T10K_LABELS}"]
    assert calls == [datasets_io.MNIST_MIRRORS[0] + T10K_IMAGES, datasets_io.MNIST_MIRRORS[0] + T10K_LABELS]
    ref = load_mnist(n_train=32, n_test=50, data_dir=mnist_dir)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    load_mnist(n_train=32, split="test-only", download=True)  # cached: no new fetch
    assert len(calls) == 2


# Synthetic IDX files.


def test_mnist_synthetic_test_only_protocol(tmp_path):
    images, labels = _write_mnist_pair(tmp_path, "t10k", 40, seed=1)
    ds = load_mnist(n_train=6, n_test=None, data_dir=tmp_path, standardize=False, verify=False)
    assert ds.name == "mnist(test-split protocol)" and ds.x_test.shape == (20, 784)
    idx_train, _ = _subsets(20, 20, 6, None, 0, "")
    np.testing.assert_array_equal(np.rint(ds.x_train * 255), images[idx_train].reshape(6, -1))
    np.testing.assert_array_equal(np.rint(ds.x_test * 255), images[20:].reshape(20, -1))
    np.testing.assert_array_equal(ds.labels_test, labels[20:])
    with pytest.raises(ValueError, match="n_test must be at most 20"):
        load_mnist(n_train=6, n_test=21, data_dir=tmp_path, verify=False)


def test_mnist_synthetic_train_test_split(tmp_path):
    train_images, train_labels = _write_mnist_pair(tmp_path, "train", 30, seed=2)
    test_images, _ = _write_mnist_pair(tmp_path, "t10k", 12, seed=3)
    ds = load_mnist(n_train=7, n_test=None, data_dir=tmp_path, verify=False, standardize=False)
    assert ds.name == "mnist" and ds.x_train.shape == (7, 784) and ds.x_test.shape == (12, 784)
    idx_train, _ = _subsets(30, 12, 7, None, 0, "")
    np.testing.assert_array_equal(np.rint(ds.x_train * 255), train_images[idx_train].reshape(7, -1))
    np.testing.assert_array_equal(ds.labels_train, train_labels[idx_train])
    np.testing.assert_array_equal(np.rint(ds.x_test * 255), test_images.reshape(12, -1))
    forced = load_mnist(n_train=5, data_dir=tmp_path, verify=False, split="test-only")
    assert forced.name == "mnist(test-split protocol)" and forced.x_test.shape == (6, 784)
    (tmp_path / TRAIN_LABELS).unlink()
    with pytest.raises(ValueError, match="split 'auto' is ambiguous"):
        load_mnist(data_dir=tmp_path, verify=False)


def _corrupt(kind: str, directory: Path) -> str:
    """Write t10k files broken in one way; return the name the error must mention."""
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.arange(4, dtype=np.uint8)
    image_bytes, label_bytes = _idx(images), _idx(labels)
    blame = T10K_IMAGES
    if kind == "truncated":
        image_bytes = image_bytes[:-1]
    elif kind == "oversized":
        image_bytes += b"\0"
    elif kind == "bad magic":
        image_bytes = _idx(images, magic=0x00000801)
    elif kind == "not 28x28":
        image_bytes = _idx(np.zeros((4, 28, 27), np.uint8))
    elif kind == "count mismatch":
        label_bytes = _idx(labels[:3])
    elif kind == "label above 9":
        label_bytes, blame = _idx(np.array([0, 1, 10, 2], np.uint8)), T10K_LABELS
    elif kind == "short header":
        label_bytes, blame = b"\0\0\x08\x01\0\0", T10K_LABELS
    images_gz, labels_gz = gzip.compress(image_bytes), gzip.compress(label_bytes)
    if kind == "corrupt gzip":
        images_gz = images_gz[:10] + bytes(b ^ 0xFF for b in images_gz[10:30]) + images_gz[30:]
    elif kind == "truncated gzip":
        images_gz = images_gz[: len(images_gz) // 2]
    (directory / T10K_IMAGES).write_bytes(images_gz)
    (directory / T10K_LABELS).write_bytes(labels_gz)
    return blame


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", "truncated IDX payload of 3135 bytes, expected exactly 3136"),
        ("oversized", "oversized IDX payload"),
        ("bad magic", "bad IDX magic number 0x00000801, expected 0x00000803"),
        ("not 28x28", "must be 28x28"),
        ("count mismatch", "holds 4 images but .* holds 3 labels"),
        ("label above 9", "label 10 outside 0..9"),
        ("short header", "truncated IDX header"),
        ("corrupt gzip", "corrupt gzip data"),
        ("truncated gzip", "corrupt gzip data"),
    ],
)
def test_mnist_malformed_files(tmp_path, kind, message):
    blame = _corrupt(kind, tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        load_mnist(n_train=1, n_test=1, data_dir=tmp_path, verify=False)
    assert blame in str(info.value)


def test_mnist_checksum_mismatch_and_custom_table(tmp_path):
    _write_mnist_pair(tmp_path, "t10k", 10, seed=0)
    got = _digest(tmp_path / T10K_IMAGES, "sha256")
    with pytest.raises(
        ValueError,
        match=f"{T10K_IMAGES}: sha256 checksum mismatch: expected {KNOWN_CHECKSUMS[T10K_IMAGES][1]}, got {got}",
    ):
        load_mnist(n_train=2, data_dir=tmp_path)
    assert load_mnist(n_train=2, data_dir=tmp_path, verify=False).x_train.shape == (2, 784)
    verify_checksum(tmp_path / T10K_IMAGES, {T10K_IMAGES: ("sha256", got)})
    verify_checksum(tmp_path / T10K_IMAGES, {"other.gz": ("md5", "0" * 32)})  # not in table
    with pytest.raises(ValueError, match="md5 checksum mismatch: expected 0{32}"):
        verify_checksum(tmp_path / T10K_IMAGES, {T10K_IMAGES: ("md5", "0" * 32)})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"split": "both"}, ValueError, "split must be one of"),
        ({"standardize": "pixel"}, ValueError, "standardize must be"),
        ({"dtype": np.int64}, ValueError, "dtype must be"),
        ({"n_train": 0}, ValueError, "n_train must be a positive integer"),
        ({"n_test": 2.0}, ValueError, "n_test must be a positive integer"),
        ({}, FileNotFoundError, "MNIST files missing from .*download=True"),
        ({"split": "train/test"}, FileNotFoundError, "train-images-idx3-ubyte.gz"),
    ],
)
def test_mnist_bad_arguments_fail_before_reading(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        load_mnist(data_dir=tmp_path / "absent", **kwargs)


@pytest.fixture
def synthetic_mnist_bytes(tmp_path, monkeypatch):
    """Canonical t10k files with synthetic content, and a checksum table that accepts them."""
    source = tmp_path / "source"
    _write_mnist_pair(source, "t10k", 20, seed=4)
    table = dict(KNOWN_CHECKSUMS)
    for name in (T10K_IMAGES, T10K_LABELS):
        table[name] = ("sha256", _digest(source / name, "sha256"))
    monkeypatch.setattr(datasets_io, "KNOWN_CHECKSUMS", table)
    return source


def test_mnist_download_tries_mirrors_in_order(tmp_path, monkeypatch, synthetic_mnist_bytes):
    calls = []

    def fetch(url, dest):
        calls.append(url)
        if url.startswith(datasets_io.MNIST_MIRRORS[0]):
            raise urllib.error.URLError("mirror down")
        Path(dest).write_bytes((synthetic_mnist_bytes / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(_download, "_fetch", fetch)
    cache = tmp_path / "cache"
    ds = load_mnist(n_train=4, data_dir=cache, split="test-only", download=True)
    assert ds.name == "mnist(test-split protocol)" and ds.x_test.shape == (10, 784)
    assert _files(cache) == [T10K_IMAGES, T10K_LABELS]
    assert [u.rsplit("/", 1)[0] + "/" for u in calls] == [*datasets_io.MNIST_MIRRORS] * 2
    # split="auto" with download=True fetches the real training split too.
    with pytest.raises(DownloadError, match=f"{TRAIN_IMAGES}: download failed"):
        load_mnist(n_train=4, data_dir=cache, download=True)
    assert _files(cache) == [T10K_IMAGES, T10K_LABELS]


@pytest.mark.parametrize("failure", ["bad bytes", "network error", "partial write then error"])
def test_mnist_failed_download_leaves_nothing(tmp_path, monkeypatch, synthetic_mnist_bytes, failure):
    def fetch(url, dest):
        good = (synthetic_mnist_bytes / url.rsplit("/", 1)[1]).read_bytes()
        if failure == "bad bytes":
            Path(dest).write_bytes(good[:-1] + b"x")
        elif failure == "network error":
            raise urllib.error.URLError("no route to host")
        else:
            Path(dest).write_bytes(good[: len(good) // 2])
            raise ConnectionResetError("connection reset")

    monkeypatch.setattr(_download, "_fetch", fetch)
    cache = tmp_path / "cache"
    with pytest.raises(
        DownloadError, match=f"{T10K_IMAGES}: download failed from every mirror.*by hand and place it at"
    ) as info:
        load_mnist(n_train=4, data_dir=cache, split="test-only", download=True)
    assert all(url in str(info.value) for url in datasets_io.MNIST_MIRRORS)
    assert isinstance(info.value, OSError)
    assert _files(cache) == []


def test_download_verified_keeps_existing_cache_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(_download, "_fetch", lambda url, dest: Path(dest).write_bytes(b"wrong"))
    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(DownloadError, match="md5 mismatch"):
        _download.download_verified("f.bin", ["u1"], tmp_path, ("md5", "0" * 32))
    assert _files(tmp_path) == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == b"old"
    good = ("md5", hashlib.md5(b"wrong").hexdigest())
    assert _download.download_verified("f.bin", ["u1"], tmp_path, good).read_bytes() == b"wrong"


# CIFAR-10, synthetic files in the binary format.


def _cifar_records(n: int, seed: int) -> np.ndarray:
    records = np.random.default_rng(seed).integers(0, 256, size=(n, 3073), dtype=np.uint8)
    records[:, 0] = np.arange(n) % 10
    return records


def _write_cifar(directory: Path, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    batches = directory / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    train = [_cifar_records(n, seed) for seed in range(5)]
    for i, records in enumerate(train, start=1):
        (batches / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    test = _cifar_records(n, 9)
    (batches / "test_batch.bin").write_bytes(test.tobytes())
    (batches / "batches.meta.txt").write_text("airplane\nautomobile\n")
    return np.concatenate(train), test


def _nhwc(records: np.ndarray) -> np.ndarray:
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _tar(path: Path, source: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    return path


def test_cifar10_reader_layout_and_subsets(tmp_path):
    train, test = _write_cifar(tmp_path)
    ds = load_cifar10(n_train=30, n_test=None, data_dir=tmp_path, seed=2, standardize=False)
    assert ds.name == "cifar10" and ds.x_train.shape == (30, 32, 32, 3)
    assert ds.x_test.shape == (20, 32, 32, 3)
    idx_train, _ = _subsets(100, 20, 30, None, 2, "")
    assert idx_train.max() >= 20  # draws from several batches
    np.testing.assert_array_equal(np.rint(ds.x_train * 255), _nhwc(train[idx_train]))
    np.testing.assert_array_equal(ds.labels_train, train[idx_train, 0])
    np.testing.assert_array_equal(np.rint(ds.x_test * 255), _nhwc(test))
    # Plane layout: byte 1 + 32*row + col is red at (row, col), +1024 green, +2048 blue.
    record = train[idx_train[0]]
    for channel in range(3):
        assert np.rint(ds.x_train[0, 1, 2, channel] * 255) == record[1 + 1024 * channel + 32 + 2]
    same = load_cifar10(n_train=30, data_dir=tmp_path / "cifar-10-batches-bin", seed=2, standardize=False, flatten=True)
    np.testing.assert_array_equal(same.x_train, ds.x_train.reshape(30, -1))
    other = load_cifar10(n_train=30, data_dir=tmp_path, seed=3, standardize=False)
    assert not np.array_equal(other.x_train, ds.x_train)


def test_cifar10_standardization(tmp_path):
    _write_cifar(tmp_path)
    channel = load_cifar10(n_train=50, n_test=10, data_dir=tmp_path)
    np.testing.assert_allclose(channel.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(channel.x_train.std(axis=(0, 1, 2)), 1.0, rtol=1e-12)
    feature = load_cifar10(
        n_train=50, n_test=10, data_dir=tmp_path, standardize="feature", flatten=True, dtype=np.float32
    )
    assert feature.x_train.shape == (50, 3072) and feature.x_train.dtype == np.float32
    np.testing.assert_allclose(feature.x_train.std(axis=0), 1.0, rtol=1e-4)
    assert load_dataset("cifar10", n_train=5, n_test=5, data_dir=tmp_path).name == "cifar10"
    assert {"digits", "mnist", "cifar10"} <= set(DATASETS)


def test_cifar10_from_archive(tmp_path):
    train, _ = _write_cifar(tmp_path / "src")
    home = tmp_path / "home"
    home.mkdir()
    archive = _tar(home / "cifar-10-binary.tar.gz", tmp_path / "src")
    digest = _digest(archive, "md5")
    expected = "c32a1d4ab5d03f1284b67883e8d87530"
    with pytest.raises(
        ValueError, match=f"cifar-10-binary.tar.gz: md5 checksum mismatch: expected {expected}, got {digest}"
    ):
        load_cifar10(n_train=5, data_dir=home)
    assert _files(home) == ["cifar-10-binary.tar.gz"]  # nothing extracted
    ds = load_cifar10(n_train=100, n_test=3, data_dir=home, verify=False, standardize=False)
    np.testing.assert_array_equal(np.rint(ds.x_train * 255), _nhwc(train))
    assert not any(name.startswith(".") for name in _files(home))
    assert (home / "cifar-10-batches-bin" / "data_batch_5.bin").is_file()
    # The archive path itself, in a fresh directory.
    other = tmp_path / "other"
    other.mkdir()
    os.replace(archive, other / "renamed.tar.gz")
    ds2 = load_cifar10(n_train=100, n_test=3, data_dir=other / "renamed.tar.gz", verify=False, standardize=False)
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)


def _evil_member(kind: str) -> tarfile.TarInfo:
    name = {
        "parent": "../evil.bin",
        "nested parent": "cifar-10-batches-bin/../../evil.bin",
        "absolute": "/tmp/evil.bin",
        "symlink": "cifar-10-batches-bin/link",
        "hardlink": "cifar-10-batches-bin/hard",
        "fifo": "cifar-10-batches-bin/fifo",
    }[kind]
    info = tarfile.TarInfo(name)
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    return info


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("parent", "path leaves"),
        ("nested parent", "path leaves"),
        ("absolute", "absolute path"),
        ("symlink", "link"),
        ("hardlink", "link"),
        ("fifo", "special file"),
    ],
)
def test_cifar10_unsafe_archive_refused(tmp_path, kind, reason):
    _write_cifar(tmp_path / "src")
    home = tmp_path / "home"
    home.mkdir()
    archive = _tar(home / "cifar-10-binary.tar.gz", tmp_path / "src")
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        evil = _evil_member(kind)
        payload = b"pwned" if evil.isfile() else None
        if payload is not None:
            evil.size = len(payload)
        tar.addfile(evil, io.BytesIO(payload) if payload is not None else None)
    with pytest.raises(ValueError, match=f"refusing member '{evil.name}': {reason}"):
        load_cifar10(n_train=5, data_dir=home, verify=False)
    assert _files(home) == ["cifar-10-binary.tar.gz"]
    assert not (tmp_path / "evil.bin").exists()


@pytest.mark.parametrize(
    "defect, message",
    [
        ("short", "size 61459 bytes is not a positive multiple of the 3073-byte"),
        ("empty", "size 0 bytes"),
        ("label", "record 3 has label 10, outside 0..9"),
    ],
)
def test_cifar10_malformed_batches(tmp_path, defect, message):
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    data = bytearray(path.read_bytes())
    if defect == "short":
        data = data[:-1]
    elif defect == "empty":
        data = bytearray()
    else:
        data[3 * 3073] = 10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"data_batch_3.bin: {message}"):
        load_cifar10(n_train=5, data_dir=tmp_path)


def test_cifar10_missing_and_download(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found.*download=True"):
        load_cifar10(data_dir=tmp_path / "absent")
    _write_cifar(tmp_path / "src")
    archive = _tar(tmp_path / "good.tar.gz", tmp_path / "src")
    table = dict(KNOWN_CHECKSUMS, **{"cifar-10-binary.tar.gz": ("md5", _digest(archive, "md5"))})
    monkeypatch.setattr(datasets_io, "KNOWN_CHECKSUMS", table)
    monkeypatch.setattr(_download, "_fetch", lambda url, dest: Path(dest).write_bytes(b"junk"))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="cifar-10-binary.tar.gz: download failed"):
        load_cifar10(n_train=5, data_dir=cache, download=True)
    assert _files(cache) == []
    urls = []
    monkeypatch.setattr(
        _download, "_fetch", lambda url, dest: (urls.append(url), Path(dest).write_bytes(archive.read_bytes()))
    )
    ds = load_cifar10(n_train=5, n_test=4, data_dir=cache, download=True)
    assert urls == [datasets_io.CIFAR10_URL] and ds.x_test.shape == (4, 32, 32, 3)
    assert "cifar-10-binary.tar.gz" in _files(cache)
    with pytest.raises(ValueError, match="n_train must be at most 100"):
        load_cifar10(n_train=101, data_dir=cache)


def test_load_mnist_or_digits_falls_back_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="MNIST not found"):
        ds = data.load_mnist_or_digits(32, 16, data_dir=tmp_path)
    assert ds.name.startswith("digits") and ds.x_train.shape[0] == 32


def test_load_mnist_or_digits_reads_mnist(mnist_dir):
    assert data.load_mnist_or_digits(32, 16, data_dir=mnist_dir).name.startswith("mnist")
