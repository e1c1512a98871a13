"""Tests of ntk_l2.data: the Dataset container, targets and the digits loader."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ntk_l2.data import DATASETS, Dataset, _split, load_dataset, load_digits, one_hot_targets


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


@pytest.mark.parametrize("kwargs, argument", [
    ({"n_train": 0}, "n_train"),
    ({"n_train": -5}, "n_train"),
    ({"n_train": 2.5}, "n_train"),
    ({"n_test": "10"}, "n_test"),
    ({"n_test": 0}, "n_test"),
    ({"n_train": 1000, "n_test": 900}, "n_train \\+ n_test"),
    ({"n_train": 1797, "n_test": None}, "n_train \\+ n_test"),
    ({"n_train": None, "n_test": None}, "n_train and n_test"),
    ({"dtype": np.int32}, "dtype"),
])
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
