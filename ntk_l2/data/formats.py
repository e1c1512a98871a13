"""Strict readers of the canonical MNIST and CIFAR-10 files, and where to find them.

- MNIST: IDX files, gzip-compressed (LeCun et al.; the four `*-ubyte.gz` files).
  An IDX file is a big-endian header — magic 0x0000080d (uint8 entries, d
  dimensions) and d uint32 sizes — followed by exactly prod(sizes) bytes.
- CIFAR-10: the *binary* release `cifar-10-binary.tar.gz` (Krizhevsky 2009),
  directory `cifar-10-batches-bin/`: records of 1 label byte followed by
  3 × 1024 bytes (red, green, blue planes, each 32 × 32 row-major). Nothing is
  ever unpickled.

Every malformed input raises `ValueError` naming the file (or archive member).
Local files with a canonical name are checked against `KNOWN_CHECKSUMS`;
downloads go through `ntk_l2.data.download` (temporary file, verify, rename).
"""

from __future__ import annotations

import gzip
import math
import os
import posixpath
import shutil
import tarfile
import tempfile
import types
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ntk_l2.data.download import DownloadError, download_verified, file_digest

__all__ = [
    "DownloadError",
    "KNOWN_CHECKSUMS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "CIFAR10_ARCHIVE",
    "CIFAR10_URL",
    "default_data_dir",
    "verify_checksum",
    "read_idx",
    "read_mnist",
    "read_cifar10",
    "cifar10_count",
    "safe_extract",
    "locate_mnist",
    "locate_cifar10",
]

# Published digests of the canonical files: filename -> (algorithm, hex digest).
KNOWN_CHECKSUMS: Mapping[str, tuple[str, str]] = types.MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": ("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": ("sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        "cifar-10-binary.tar.gz": ("md5", "c32a1d4ab5d03f1284b67883e8d87530"),
    }
)
MNIST_FILES: Mapping[str, str] = types.MappingProxyType(
    {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
)
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes
_N_CLASSES = 10
_SPLITS = ("train/test", "test-only")


def default_data_dir(dataset: str) -> Path:
    """Cache directory of a dataset: `$NTK_L2_DATA/<dataset>`, else `~/.cache/ntk_l2/<dataset>`."""
    return Path(os.environ.get("NTK_L2_DATA") or "~/.cache/ntk_l2").expanduser() / dataset


def verify_checksum(path: str | os.PathLike, checksums: Mapping[str, tuple[str, str]], name: str | None = None) -> None:
    """Check a file against `checksums[name or basename]`; names not in the table pass.

    Raises:
      ValueError: naming the file and both digests, if they differ.
    """
    path = Path(path)
    if (entry := checksums.get(name or path.name)) is None:
        return
    algorithm, expected = entry
    if (got := file_digest(path, algorithm)) != expected.lower():
        raise ValueError(
            f"{path}: {algorithm} checksum mismatch: expected {expected}, got {got}; "
            f"the file is not the canonical {name or path.name} (pass verify=False "
            f"to read it anyway)"
        )


def read_idx(path: str | os.PathLike, ndim: int) -> NDArray[np.uint8]:
    """Read an IDX file of uint8 entries and `ndim` dimensions (gzip if named *.gz).

    Returns:
      A read-only uint8 array of the shape stored in the header.

    Raises:
      ValueError: naming the file, on corrupt gzip data, a magic number other
        than 0x0800 + ndim, a truncated header or a payload whose length is not
        exactly the product of the dimensions.
    """
    path = Path(path)
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as handle:
        try:
            data = handle.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip data ({error})") from error
    header, magic = 4 + 4 * ndim, 0x800 + ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    if (got := int.from_bytes(data[:4], "big")) != magic:
        raise ValueError(f"{path}: bad IDX magic number 0x{got:08X}, expected 0x{magic:08X} (uint8, {ndim} dimensions)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if (payload := len(data) - header) != math.prod(dims):
        kind = "truncated" if payload < math.prod(dims) else "oversized"
        raise ValueError(
            f"{path}: {kind} IDX payload of {payload} bytes, expected exactly {math.prod(dims)} for dimensions {dims}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_mnist(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Read a pair of MNIST IDX files: images (n, 28, 28) uint8 and labels (n,) in 0..9.

    Raises:
      ValueError: on a malformed file (see `read_idx`), images that are not
        28 × 28, labels outside 0..9 or different image and label counts.
    """
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images must be 28x28, got {images.shape[1:]}")
    if labels.size and labels.max() >= _N_CLASSES:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..9")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    return images, labels.astype(np.int64)


def cifar10_count(path: str | os.PathLike) -> int:
    """Number of records in a CIFAR-10 binary batch, from its size.

    Raises:
      ValueError: naming the file, if its size is not a positive multiple of 3073.
    """
    size = Path(path).stat().st_size
    if size == 0 or size % _CIFAR10_RECORD:
        raise ValueError(
            f"{path}: size {size} bytes is not a positive multiple of the {_CIFAR10_RECORD}-byte CIFAR-10 record"
        )
    return size // _CIFAR10_RECORD


def read_cifar10(
    paths: Sequence[str | os.PathLike],
    indices: NDArray[np.integer] | None = None,
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Read records of CIFAR-10 binary batches, concatenated in the order of `paths`.

    Args:
      paths: batch files (`data_batch_*.bin`, `test_batch.bin`).
      indices: sorted indices into the concatenated records; None reads all.

    Returns:
      Images NHWC (n, 32, 32, 3) uint8 and labels (n,) int64.

    Raises:
      ValueError: naming the file, on a bad size or a label above 9 (every
        label of every file is checked, selected or not).
    """
    counts = [cifar10_count(p) for p in paths]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    indices = np.arange(offsets[-1]) if indices is None else np.asarray(indices)
    chunks = []
    for path, start, stop in zip(paths, offsets[:-1], offsets[1:], strict=True):
        records = np.fromfile(path, np.uint8).reshape(-1, _CIFAR10_RECORD)
        if (bad := np.flatnonzero(records[:, 0] >= _N_CLASSES)).size:
            raise ValueError(f"{path}: record {bad[0]} has label {records[bad[0], 0]}, outside 0..9")
        chunks.append(records[indices[(indices >= start) & (indices < stop)] - start])
    records = np.concatenate(chunks)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def _member_path(archive: Path, member: tarfile.TarInfo, target: Path) -> str:
    """Normalized relative path of a safe member; ValueError naming it otherwise."""
    name = member.name
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise ValueError(f"{archive}: refusing member {name!r}: {kind}")
    rel = posixpath.normpath(name)
    if name.startswith(("/", "\\")) or posixpath.isabs(rel) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: refusing member {name!r}: absolute path")
    if rel == ".." or rel.startswith("../") or not (target / rel).resolve().is_relative_to(target):
        raise ValueError(f"{archive}: refusing member {name!r}: path leaves {target}")
    return rel


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> None:
    """Extract a tar archive into `target`, all-or-nothing, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, paths
    leaving `target`, symbolic and hard links and special files are refused.
    Members are written to a temporary directory inside `target`, and each
    top-level entry is then renamed into place.

    Raises:
      ValueError: naming the member that is unsafe, or the archive if it is unreadable.
    """
    archive, target = Path(archive), Path(target).resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [(m, _member_path(archive, m, target)) for m in tar.getmembers()]
            staging = Path(tempfile.mkdtemp(dir=target, prefix=".extract-"))
            try:
                for member, rel in members:
                    if rel == ".":
                        continue
                    dest = staging / rel
                    if member.isdir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as source, open(dest, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                for entry in staging.iterdir():
                    os.replace(entry, target / entry.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{archive}: unreadable tar archive ({error})") from error


def _missing(directory: Path, names: Sequence[str]) -> list[str]:
    return [name for name in names if not (directory / name).is_file()]


def locate_mnist(
    data_dir: str | os.PathLike, split: str, *, download: bool, verify: bool
) -> tuple[str, dict[str, Path]]:
    """Find (or download) the MNIST files a split needs, and verify them.

    Args:
      data_dir: directory holding the canonical `*-ubyte.gz` files.
      split: "train/test" (all four files), "test-only" (the t10k files) or
        "auto": "train/test" if both training files are present or `download`,
        "test-only" if neither is present.
      download: fetch missing files from `MNIST_MIRRORS`.
      verify: check files against `KNOWN_CHECKSUMS` (downloads are always checked).

    Returns:
      The split used and the paths by key of `MNIST_FILES`.

    Raises:
      FileNotFoundError: if files are missing and `download` is False.
      ValueError: on a bad split, a lone training file under "auto" or a checksum mismatch.
    """
    directory = Path(data_dir).expanduser()
    if split == "auto":
        n_train = 2 - len(_missing(directory, [MNIST_FILES["train_images"], MNIST_FILES["train_labels"]]))
        if n_train == 1 and not download:
            raise ValueError(
                f"split 'auto' is ambiguous: {directory} holds only one of the two "
                f"MNIST training files; add the other or pass split='test-only'"
            )
        split = "train/test" if download or n_train == 2 else "test-only"
    elif split not in _SPLITS:
        raise ValueError(f"split must be one of 'auto', {', '.join(map(repr, _SPLITS))}, got {split!r}")
    keys = list(MNIST_FILES) if split == "train/test" else ["test_images", "test_labels"]
    missing = _missing(directory, [MNIST_FILES[k] for k in keys])
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST files missing from {directory}: {', '.join(missing)}. Pass download=True, "
            f"or place the canonical files there (e.g. from {MNIST_MIRRORS[0]}), or pass "
            f"data_dir= a directory holding them"
        )
    for name in missing:
        download_verified(name, [url + name for url in MNIST_MIRRORS], directory, KNOWN_CHECKSUMS[name])
    paths = {key: directory / MNIST_FILES[key] for key in keys}
    for path in paths.values():
        verify_checksum(path, KNOWN_CHECKSUMS if verify else {})
    return split, paths


def locate_cifar10(data_dir: str | os.PathLike, *, download: bool, verify: bool) -> Path:
    """Directory of the CIFAR-10 binary batches, extracting (or downloading) the archive.

    Looked up in order: `data_dir/cifar-10-batches-bin/`, `data_dir` itself,
    then the archive `data_dir/cifar-10-binary.tar.gz` (or `data_dir` if it
    is the archive), which is verified and extracted next to itself with
    `safe_extract`; with `download`, a missing archive is fetched first.

    Raises:
      FileNotFoundError: if neither batches nor archive are found and not `download`.
      ValueError: on a checksum mismatch, an unsafe or incomplete archive.
    """
    path = Path(data_dir).expanduser()
    archive, directory = (path, path.parent) if path.is_file() else (path / CIFAR10_ARCHIVE, path)
    needed = (*CIFAR10_TRAIN, CIFAR10_TEST)
    for candidate in (directory / CIFAR10_DIR, directory):
        if not _missing(candidate, needed):
            return candidate
    if (directory / CIFAR10_DIR).exists():
        raise FileNotFoundError(
            f"{directory / CIFAR10_DIR} is incomplete (missing "
            f"{', '.join(_missing(directory / CIFAR10_DIR, needed))}); "
            f"delete it to extract the archive again"
        )
    if not archive.is_file():
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {directory}: neither {CIFAR10_DIR}/ nor {CIFAR10_ARCHIVE}. "
                f"Pass download=True, or place {CIFAR10_ARCHIVE} (from {CIFAR10_URL}) or its "
                f"extracted {CIFAR10_DIR}/ there"
            )
        download_verified(CIFAR10_ARCHIVE, [CIFAR10_URL], directory, KNOWN_CHECKSUMS[CIFAR10_ARCHIVE])
    verify_checksum(archive, KNOWN_CHECKSUMS if verify else {}, name=CIFAR10_ARCHIVE)
    safe_extract(archive, directory)
    if missing := _missing(directory / CIFAR10_DIR, needed):
        raise ValueError(f"{archive}: archive lacks {CIFAR10_DIR}/{', '.join(missing)}")
    return directory / CIFAR10_DIR
