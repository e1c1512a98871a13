"""Checksummed downloads: a cached file is either verified and complete, or absent.

A file is fetched from each mirror in turn into a temporary file in the target
directory, its digest is checked against the published one, and only then is
it moved into place with `os.replace` (atomic on one file system). On any
failure the temporary file is deleted, so the cache never holds a partial or
unverified file under a canonical name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DownloadError", "file_digest", "download_verified"]

_CHUNK = 1 << 20
_TIMEOUT = 60.0  # seconds without data before a mirror is abandoned


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file's bytes, e.g. `file_digest(p, "sha256")`."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Write the body of `url` to the existing file `dest` (replaced in tests)."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def download_verified(
    filename: str, urls: Sequence[str], directory: str | os.PathLike, checksum: tuple[str, str]
) -> Path:
    """Download `filename` into `directory`, trying each URL until one verifies.

    Args:
      filename: name of the file in `directory` (its final, canonical name).
      urls: full URLs of the file, tried in order.
      directory: target directory, created if needed.
      checksum: (algorithm, hex digest) the downloaded bytes must match.

    Returns:
      The path `directory / filename`, complete and verified.

    Raises:
      DownloadError: if every URL failed (network error or checksum mismatch);
        the message lists each URL's failure. Nothing is left in `directory`.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    algorithm, expected = checksum
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
        os.close(fd)
        try:
            _fetch(url, Path(tmp))
            got = file_digest(tmp, algorithm)
            if got != expected.lower():
                failures.append(f"{url}: {algorithm} mismatch, expected {expected}, got {got}")
                continue
            os.replace(tmp, directory / filename)
            return directory / filename
        except Exception as error:  # noqa: BLE001 - reported below, next mirror tried
            failures.append(f"{url}: {type(error).__name__}: {error}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DownloadError(
        f"{filename}: download failed from every mirror ({'; '.join(failures) or 'no URLs'}). "
        f"Download it by hand and place it at {directory / filename}"
    )
