"""Files, checksums and downloads: md5-verified fetching and safe tarball extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from rwenas.data.dataset import one_line
from rwenas.errors import DataError

_DOWNLOAD_TIMEOUT_S = 60.0


def default_data_dir() -> Path:
    """The data directory used when none is given: ``$RWENAS_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("RWENAS_DATA_DIR") or "data")


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from None
    return digest.hexdigest()


def verify_md5(path: str | Path, expected: str) -> None:
    """Raise :class:`DataError` unless the file at ``path`` has md5 ``expected``."""
    path = Path(path)
    actual = _md5_of(path)
    if actual != expected.lower():
        raise DataError(
            f"checksum mismatch for {path}: md5 {actual}, expected {expected} "
            "(the file is corrupt or incomplete; delete it and fetch it again)"
        )


def download_file(url: str, dest: str | Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (via a ``.part`` file) and verify its md5.

    Any network or file-system failure raises :class:`DataError` saying where to put the file
    by hand; a checksum mismatch removes the download and raises :class:`DataError`.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with (
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            part.open("wb") as handle,
        ):
            shutil.copyfileobj(response, handle, 1 << 20)
    except Exception as exc:  # network errors come in many types (URLError, HTTPException, ...)
        part.unlink(missing_ok=True)
        raise DataError(
            f"could not download {url} ({one_line(exc)}); download it by hand and put it at {dest}"
        ) from None
    if md5 is not None:
        try:
            verify_md5(part, md5)
        except DataError:
            part.unlink(missing_ok=True)
            raise DataError(
                f"download of {url} is corrupt (md5 mismatch); download it by hand and put it "
                f"at {dest}"
            ) from None
    part.replace(dest)
    return dest


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tarball into ``dest``, refusing links, devices and paths leaving ``dest``."""
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                target = (root / member.name).resolve()
                if not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"refusing to extract {archive}: member {member.name!r} is not a "
                        "regular file or directory"
                    )
                if os.path.isabs(member.name) or not target.is_relative_to(root):
                    raise DataError(
                        f"refusing to extract {archive}: member {member.name!r} points outside "
                        f"{dest}"
                    )
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(dest, members=members)  # members checked above
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot extract {archive}: {one_line(exc)}") from None
