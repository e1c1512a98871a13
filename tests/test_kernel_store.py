"""The kernel store (`ntk_l2.data.kernel_store`, `kernel_writer`): tiles assembled into the full kernels,
mirrored symmetric blocks, streamed reads, refusals of incomplete, damaged or foreign stores; and the
shifted copies that enlarge MNIST (`ntk_l2.data.augment`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import ntk_l2
from ntk_l2.data.augment import shift_offsets, shifted_copies
from ntk_l2.data.kernel_store import KernelStore, inputs_sha256
from ntk_l2.data.kernel_writer import KernelStoreWriter
from ntk_l2.experiments.kernels import compute_kernel_store, fc_kernel_architecture

N, M, TILE, DEPTH = 150, 45, 40, 3  # the tile divides neither n nor m


@pytest.fixture(scope="module")
def digits():
    return ntk_l2.load_digits(N, M, seed=3)


@pytest.fixture(scope="module")
def arch():
    return fc_kernel_architecture(DEPTH, 10)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, digits, arch):
    out = tmp_path_factory.mktemp("store") / "k"
    run = compute_kernel_store(arch[0], digits, out, tile=TILE, architecture=arch[1], progress=False)
    assert run.computed == run.total == 10 + 8 + 10 + 8 + 3 and run.reused == 0
    return out


@pytest.fixture
def store_copy(store_dir, tmp_path):
    shutil.copytree(store_dir, tmp_path / "k")
    return tmp_path / "k"


def _listing(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_tiles_assemble_the_full_kernels(store_dir, digits, arch):
    store = KernelStore.open(store_dir)
    assert (store.n_train, store.n_test, store.c, store.tile, store.degree) == (N, M, 10, TILE, DEPTH + 1)
    assert store.blocks == (
        "ntk_train_train",
        "ntk_test_train",
        "nngp_train_train",
        "nngp_test_train",
        "nngp_test_test",
    )
    net, x, xt = arch[0], digits.x_train, digits.x_test
    full = {
        "ntk_train_train": net.ntk(x),
        "ntk_test_train": net.ntk(xt, x),
        "nngp_train_train": net.nngp(x),
        "nngp_test_train": net.nngp(xt, x),
        "nngp_test_test": net.nngp(xt),
    }
    for block, reference in full.items():
        k = store.load(block)
        assert k.shape == reference.shape == store.shape(block) and k.dtype == np.float64 and k.flags.c_contiguous
        scale = np.abs(reference).max()
        off = ~np.eye(*k.shape, dtype=bool) if k.shape[0] == k.shape[1] else np.ones(k.shape, bool)
        assert np.abs(k - reference)[off].max() <= 1e-12 * scale, block
        if block.endswith(("train_train", "test_test")):
            assert np.array_equal(k, k.T), block  # diagonal tiles symmetrized, the others mirrored
            # On the diagonal, neural-tangents itself is exact only to ~1e-8 relative (arccos of a
            # correlation that rounds to 1 - O(eps)); both the full and the tiled kernels are that close
            # to the closed form: Θ(x, x) = (depth + 1)|x|²/d, K(x, x) = |x|²/d for this network.
            points = x if "train_train" in block else xt
            exact = np.sum(points**2, axis=1) / points.shape[1] * (DEPTH + 1 if block.startswith("ntk") else 1)
            assert np.abs(np.diag(k) - exact).max() <= 1e-7 * exact.max(), block
            assert np.abs(np.diag(reference) - exact).max() <= 1e-7 * exact.max(), block


def test_symmetric_blocks_store_only_the_upper_tiles(store_dir):
    names = sorted(p.name for p in (store_dir / "tiles" / "ntk_train_train").iterdir())
    assert names == [f"r{i:05d}_c{j:05d}.npy" for i in range(4) for j in range(i, 4)]
    assert len(list((store_dir / "tiles" / "ntk_test_train").iterdir())) == 2 * 4
    upper = np.load(store_dir / "tiles" / "ntk_train_train" / "r00001_c00003.npy")
    assert upper.shape == (TILE, N - 3 * TILE)  # the edge tile is cropped
    k = KernelStore.open(store_dir).load("ntk_train_train")
    assert np.array_equal(k[TILE : 2 * TILE, 3 * TILE :], upper) and np.array_equal(
        k[3 * TILE :, TILE : 2 * TILE], upper.T
    )


@pytest.mark.parametrize("block", ["ntk_train_train", "ntk_test_train", "nngp_test_test"])
def test_rows_row_blocks_and_matmul_agree_with_the_loaded_block(store_dir, block):
    store = KernelStore.open(store_dir)
    k = store.load(block)
    rows, cols = k.shape
    assert store.nbytes(block) == 8 * rows * cols
    for a, b in ((0, rows), (TILE - 3, TILE + 5), (TILE, 2 * TILE), (rows - 1, rows), (7, 7), (-10, None)):
        assert np.array_equal(store.load(block, slice(a, b)), k[a:b])
    pieces = list(store.row_blocks(block))
    assert [s.start for s, _ in pieces] == list(range(0, rows, TILE))
    assert np.array_equal(np.concatenate([p for _, p in pieces]), k)
    q = np.random.default_rng(0).normal(size=(cols, 3))
    scale = np.abs(k).max() * np.abs(q).sum(axis=0).max()
    assert np.abs(store.matmul(block, q) - k @ q).max() <= 1e-13 * scale
    assert np.abs(store.matmul(block, q[:, 0]) - k @ q[:, 0]).max() <= 1e-13 * scale
    with pytest.raises(ValueError, match="q: must be finite with shape"):
        store.matmul(block, q[:-1])
    with pytest.raises(ValueError, match="rows: must be a slice of step 1"):
        store.load(block, slice(0, 10, 2))


def test_targets_round_trip_and_unknown_blocks_are_named(store_dir, digits):
    store = KernelStore.open(store_dir)
    y_train, y_test, labels_train, labels_test = store.targets()
    assert np.array_equal(y_train, digits.y_train) and np.array_equal(y_test, digits.y_test)
    assert np.array_equal(labels_train, digits.labels_train) and np.array_equal(labels_test, digits.labels_test)
    assert KernelStore.is_store(store_dir) and not KernelStore.is_store(store_dir / "tiles")
    with pytest.raises(ValueError, match="block: 'ntk_test_test' is not in the kernel store"):
        store.load("ntk_test_test")


def test_an_incomplete_store_is_refused_naming_the_missing_tiles_and_left_untouched(store_copy):
    for name in ("r00000_c00002.npy", "r00003_c00003.npy"):
        (store_copy / "tiles" / "nngp_train_train" / name).unlink()
    before = _listing(store_copy)
    with pytest.raises(ValueError) as err:
        KernelStore.open(store_copy)
    message = str(err.value)
    assert message.startswith("KERNEL: ") and "\n" not in message
    assert (
        "2 of 39 tiles missing" in message and "re-running `ntk-l2 kernel` with the same arguments resumes" in message
    )
    assert _listing(store_copy) == before  # open never writes


def test_a_truncated_or_foreign_tile_is_caught_by_open(store_copy):
    tile = store_copy / "tiles" / "ntk_test_train" / "r00001_c00002.npy"
    data = tile.read_bytes()
    tile.write_bytes(data[: len(data) - 16])
    with pytest.raises(ValueError, match=r"KERNEL: .*1 damaged \(e\.g\. .*r00001_c00002\.npy truncated"):
        KernelStore.open(store_copy)
    np.save(tile, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"1 damaged .*holds float64\[3, 3\], expected float64\[5, 40\]"):
        KernelStore.open(store_copy)


def test_a_non_finite_tile_is_caught_by_load_and_matmul_naming_the_file(store_copy):
    tile = store_copy / "tiles" / "ntk_train_train" / "r00000_c00001.npy"
    bad = np.load(tile)
    bad[3, 4] = np.nan
    np.save(tile, bad)
    store = KernelStore.open(store_copy)  # the header is right: open reads headers only
    for read in (lambda: store.load("ntk_train_train"), lambda: store.matmul("ntk_train_train", np.ones(N))):
        with pytest.raises(ValueError, match=r"KERNEL: .*ntk_train_train/r00000_c00001\.npy holds non-finite values"):
            read()
    assert np.isfinite(store.load("ntk_train_train", slice(2 * TILE, N))).all()  # other rows stay readable


def test_a_damaged_store_json_is_refused(store_copy):
    meta = json.loads((store_copy / "store.json").read_text())
    for change, fragment in (
        ({"tile": "40"}, "field 'tile' missing or not of type int"),
        ({"version": 2}, "not a ntk_l2.kernel_store of version 1"),
        ({"blocks": ["ntk_train_train"]}, "are not those of a store"),
        ({"degree": True}, "field 'degree'"),
    ):
        (store_copy / "store.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=fragment):
            KernelStore.open(store_copy)
    (store_copy / "store.json").write_text('{"n_train": NaN}')
    with pytest.raises(ValueError, match="KERNEL: .*store.json cannot be read"):
        KernelStore.open(store_copy)
    with pytest.raises(ValueError, match="is not a kernel store \\(no store.json\\)"):
        KernelStore.open(store_copy / "tiles")


def _create(out, ds, *, tile=TILE, depth=DEPTH, x_train=None):
    x_train = ds.x_train if x_train is None else x_train
    return KernelStoreWriter.create(
        out,
        (ds.y_train, ds.y_test, ds.labels_train, ds.labels_test),
        tile=tile,
        nngp=True,
        architecture=fc_kernel_architecture(depth, 10)[1],
        dataset={"name": ds.name, "n_train": N, "n_test": M},
        inputs_sha256=inputs_sha256(x_train, ds.x_test, ds.labels_train, ds.labels_test),
        degree=depth + 1,
    )


def test_a_store_made_with_other_settings_or_inputs_is_refused_and_kept(store_copy, digits):
    assert _create(store_copy, digits).missing_tiles() == []  # the same settings: resumed
    before = _listing(store_copy)
    other_x = np.array(digits.x_train)
    other_x[0, 0] += 1e-9
    for kwargs, fragment in (
        ({"tile": 32}, "tile 40 there, 32 now"),
        ({"depth": 2}, "architecture.depth 3 there, 2 now"),
        ({"x_train": other_x}, "other inputs or labels"),
    ):
        with pytest.raises(ValueError) as err:
            _create(store_copy, digits, **kwargs)
        assert str(err.value).startswith(f"--out: {store_copy} holds a kernel store made with other settings")
        assert fragment in str(err.value) and "a store is never overwritten" in str(err.value)
    assert _listing(store_copy) == before


def test_an_out_that_is_not_a_store_is_refused(tmp_path, digits):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a kernel store; give an empty or new directory"):
        _create(tmp_path, digits)
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _create(tmp_path / "notes.txt", digits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    writer = _create(tmp_path / "empty", digits)
    assert len(writer.missing_tiles()) == len(writer.tiles()) == 39
    with pytest.raises(ValueError, match=r"has shape \(40, 40\), got \(40, 39\)"):
        writer.write_tile("ntk_train_train", 0, 0, np.zeros((40, 39)))
    with pytest.raises(ValueError, match="is not a tile of"):
        writer.write_tile("ntk_train_train", 1, 0, np.zeros((40, 40)))  # below the diagonal: never stored
    with pytest.raises(ValueError, match="non-finite values; not written"):
        writer.write_tile("ntk_train_train", 0, 0, np.full((40, 40), np.inf))
    assert not list((tmp_path / "empty" / "tiles").rglob("*.npy")) and not os.listdir(
        tmp_path / "empty" / "tiles" / "ntk_train_train"
    )


# --- shifted copies ------------------------------------------------------------------------------------


def _rolled(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """np.roll, then the wrapped rows and columns set to zero."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    out[:dy] = 0 if dy > 0 else out[:dy]
    out[out.shape[0] + dy :] = 0 if dy < 0 else out[out.shape[0] + dy :]
    out[:, :dx] = 0 if dx > 0 else out[:, :dx]
    out[:, out.shape[1] + dx :] = 0 if dx < 0 else out[:, out.shape[1] + dx :]
    return out


def test_shifted_copies_are_zero_filled_shifts_with_distinct_nonzero_offsets():
    rng = np.random.default_rng(1)
    images, labels = rng.integers(1, 256, (40, 12, 10, 1)).astype(np.uint8), rng.integers(0, 10, 40)
    big, big_labels = shifted_copies(images, labels, 3, max_shift=2, seed=5)
    assert big.shape == (160, 12, 10, 1) and big.dtype == np.uint8
    assert np.array_equal(big[:40], images) and np.array_equal(big_labels, np.tile(labels, 4))
    offsets = shift_offsets(40, 3, 2, 5)
    assert np.abs(offsets).max() == 2 and np.all(np.abs(offsets).sum(axis=2) > 0)
    assert all(len({tuple(o) for o in offsets[:, i]}) == 3 for i in range(40))  # distinct per image
    for r in range(3):
        for i in range(40):
            assert np.array_equal(big[(r + 1) * 40 + i], _rolled(images[i], *offsets[r, i])), (r, i)
    again, _ = shifted_copies(images, labels, 3, max_shift=2, seed=5)
    other, _ = shifted_copies(images, labels, 3, max_shift=2, seed=6)
    assert np.array_equal(again, big) and not np.array_equal(other, big)
    with pytest.raises(ValueError, match="copies must be at most 8 for max_shift=1"):
        shifted_copies(images, labels, 9, max_shift=1)


def test_mnist_with_shifted_copies(mnist_dir):
    plain = ntk_l2.load_mnist(60, 30, data_dir=mnist_dir, seed=2, standardize=False)
    big = ntk_l2.load_mnist(60, 30, data_dir=mnist_dir, seed=2, standardize=False, shifted_copies=3)
    assert big.name == "mnist(test-split protocol, +3 shifted copies)" and big.x_train.shape == (240, 784)
    assert np.array_equal(big.x_train[:60], plain.x_train) and np.array_equal(
        big.labels_train, np.tile(plain.labels_train, 4)
    )
    assert np.array_equal(big.x_test, plain.x_test) and np.array_equal(big.labels_test, plain.labels_test)
    offsets = shift_offsets(60, 3, 2, 2)
    originals = plain.x_train.reshape(60, 28, 28)
    for r, i in ((0, 0), (1, 17), (2, 59)):
        assert np.array_equal(big.x_train[(r + 1) * 60 + i].reshape(28, 28), _rolled(originals[i], *offsets[r, i]))
    standardized = ntk_l2.load_mnist(60, 30, data_dir=mnist_dir, seed=2, shifted_copies=3)
    mean = standardized.x_train.mean(axis=0)
    assert np.abs(mean).max() < 1e-12  # statistics of the enlarged training set
    with pytest.raises(ValueError, match="shifted_copies must be an integer >= 0"):
        ntk_l2.load_mnist(60, 30, data_dir=mnist_dir, shifted_copies=-1)
