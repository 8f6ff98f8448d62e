"""Fashion-MNIST in the idx format (``train-images-idx3-ubyte.gz`` ...), gzipped or not."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from rwenas.data.dataset import Dataset, one_line
from rwenas.data.download import default_data_dir, download_file
from rwenas.errors import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
"""System-wide Fashion-MNIST locations, searched after ``data_dir`` (Debian's package)."""

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# stem -> md5 of the official gzipped file
_FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83fd310",
}

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def _read_maybe_gzip(path: Path) -> bytes:
    """Return the bytes of ``path``, gunzipped when the file is gzip data."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt gzip file {path}: {one_line(exc)}") from None


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Parse an idx ``ubyte`` file (gzipped or not) into a ``uint8`` array of its dimensions.

    ``expected_magic`` is :data:`IDX_IMAGES_MAGIC` (2051, 3-d images) or
    :data:`IDX_LABELS_MAGIC` (2049, 1-d labels). A wrong magic number, a header that does not
    fit, or a data size that differs from the header (truncated or padded files) raise
    :class:`DataError` naming the file.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise DataError(f"idx file {path} is truncated: {len(raw)} bytes, no header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = {IDX_IMAGES_MAGIC: "idx3-ubyte images", IDX_LABELS_MAGIC: "idx1-ubyte labels"}
        raise DataError(
            f"bad magic number {magic} in {path} (expected {expected_magic}, "
            f"{kind.get(expected_magic, 'idx')}); not an idx file of the right kind"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"idx file {path} is truncated inside its header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    found = len(raw) - header
    if found < expected:
        raise DataError(
            f"idx file {path} is truncated: header says {'x'.join(map(str, dims))} = "
            f"{expected} bytes of data, file has {found}"
        )
    if found > expected:
        raise DataError(
            f"idx file {path} has {found - expected} unexpected bytes after the "
            f"{'x'.join(map(str, dims))} data its header describes"
        )
    # copy: frombuffer over bytes is read-only, and torch wants writable memory
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(dims).copy()


def _find_fashion_files(directory: Path) -> dict[str, Path] | None:
    """The four idx files in ``directory``; ``None`` when none is there; error if only some."""
    found: dict[str, Path] = {}
    for stem in _FASHION_MNIST_FILES:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
    if not found:
        return None
    missing = [f"{stem}.gz" for stem in _FASHION_MNIST_FILES if stem not in found]
    if missing:
        raise DataError(f"incomplete Fashion-MNIST in {directory}: missing {', '.join(missing)}")
    return found


def load_fashion_mnist(data_dir: Path | None, download: bool) -> Dataset:
    base = data_dir if data_dir is not None else default_data_dir()
    candidates = [base / "fashion-mnist", base, *FASHION_MNIST_SYSTEM_DIRS]
    files = None
    for directory in candidates:
        files = _find_fashion_files(directory)
        if files is not None:
            break
    if files is None:
        target = base / "fashion-mnist"
        if not download:
            names = ", ".join(f"{stem}.gz" for stem in _FASHION_MNIST_FILES)
            looked = ", ".join(str(d) for d in candidates)
            raise DataError(
                f"Fashion-MNIST not found (looked in {looked}); put {names} in {target}, "
                "pass download=True, or install the Debian package dataset-fashion-mnist"
            )
        for stem, md5 in _FASHION_MNIST_FILES.items():
            download_file(f"{FASHION_MNIST_URL}{stem}.gz", target / f"{stem}.gz", md5)
        files = _find_fashion_files(target)
        assert files is not None

    arrays = {}
    for stem, path in files.items():
        magic = IDX_IMAGES_MAGIC if "images" in stem else IDX_LABELS_MAGIC
        array = read_idx(path, magic)
        if magic == IDX_IMAGES_MAGIC and (array.ndim != 3 or array.shape[1:] != (28, 28)):
            raise DataError(f"{path}: expected N x 28 x 28 images, got shape {array.shape}")
        if magic == IDX_LABELS_MAGIC and array.ndim != 1:
            raise DataError(f"{path}: expected a 1-d label vector, got shape {array.shape}")
        arrays[stem] = array
    for split in ("train", "t10k"):
        images = arrays[f"{split}-images-idx3-ubyte"]
        labels = arrays[f"{split}-labels-idx1-ubyte"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"label count mismatch: {files[f'{split}-images-idx3-ubyte']} has "
                f"{images.shape[0]} images but {files[f'{split}-labels-idx1-ubyte']} has "
                f"{labels.shape[0]} labels"
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(
                f"{files[f'{split}-labels-idx1-ubyte']}: label {int(labels.max())} out of "
                f"range 0..{len(FASHION_MNIST_CLASSES) - 1}"
            )
    return Dataset.from_tensors(
        "fashion-mnist",
        arrays["train-images-idx3-ubyte"][:, None],
        arrays["train-labels-idx1-ubyte"].astype(np.int64),
        arrays["t10k-images-idx3-ubyte"][:, None],
        arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
        FASHION_MNIST_CLASSES,
    )
