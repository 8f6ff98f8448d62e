"""Datasets, loaded once into memory as compact tensors.

Every loader returns a :class:`Dataset` holding ``uint8`` images in ``N x C x H x W`` layout and
``int64`` labels, plus the per-channel mean/std of the training images. Normalised ``float32``
tensors are produced on demand (:meth:`Dataset.normalise`, :func:`search_split`,
:func:`test_split`). There is no per-sample Python in the hot paths: the idx and CIFAR formats
are parsed with :func:`numpy.frombuffer`, statistics come from per-channel histograms and
splits are tensor indexing.

Supported datasets (:data:`DATASET_NAMES`):

``fashion-mnist``
    The standard idx files (``train-images-idx3-ubyte.gz`` ...), gzipped or not, searched in
    ``data_dir/fashion-mnist/``, ``data_dir/`` and ``/usr/share/datasets/fashion-mnist/``
    (Debian package ``dataset-fashion-mnist``).
``cifar10`` / ``cifar100``
    The python-pickle releases (``cifar-10-batches-py/``, ``cifar-100-python/``) under
    ``data_dir`` (or ``data_dir`` pointing at that directory itself); an official tarball lying in
    ``data_dir`` is verified and extracted; ``download=True`` fetches it.
``imagefolder``
    ``data_dir/train/<class>/<image>`` and ``data_dir/val/`` (or ``test/``), decoded with Pillow
    and resized to ``image_size x image_size``; for small folders. Training with the ImageNet
    recipe streams the files instead (:mod:`rwenas.train.stream`; :func:`list_image_folder`
    lists them). ``imagenet`` is known to :func:`dataset_info` only.
``synthetic``
    A seeded generator of class-structured images (oriented stripes and a blob at a
    class-specific position, with jitter and noise): learnable, but not trivially.

Every problem caused by the files or the arguments raises :class:`~rwenas.errors.DataError` or
:class:`~rwenas.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import math
import operator
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rwenas.errors import ConfigError, DataError

__all__ = [
    "CIFAR10_CLASSES",
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "DatasetInfo",
    "ImageFolderFiles",
    "Split",
    "canonical_name",
    "channel_stats",
    "dataset_info",
    "default_data_dir",
    "download_file",
    "list_image_folder",
    "load_dataset",
    "make_synthetic",
    "read_idx",
    "search_split",
    "test_split",
    "verify_md5",
]

DATASET_NAMES = ("cifar10", "cifar100", "fashion-mnist", "imagefolder", "synthetic")
"""Names accepted by :func:`load_dataset`."""

_INFO_ONLY_NAMES = ("imagenet",)

_ALIASES = {
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "image-folder": "imagefolder",
    "image_folder": "imagefolder",
}

# (in_channels, image_size, num_classes) of the datasets with a fixed shape.
_FIXED_SHAPES = {
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "fashion-mnist": (1, 28, 10),
    "imagenet": (3, 224, 1000),
}

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

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
"""File endings (case-insensitive) that the ``imagefolder`` loader treats as images."""

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

_DOWNLOAD_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------------------------
# names and shapes
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException | str) -> str:
    """Return ``exc`` as a single line of text (whitespace collapsed)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, BaseException) and not text:
        text = type(exc).__name__
    return text


def _positive_int(value: object, what: str) -> int:
    """Return ``value`` as an ``int`` >= 1, or raise :class:`ConfigError`."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{what} must be a positive integer, got {number}")
    return number


def _seed_value(seed: object) -> int:
    """Return ``seed`` as a Python ``int`` (numpy integers accepted), or raise ConfigError."""
    if isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    try:
        return operator.index(seed)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"seed must be an integer, got {seed!r}") from None


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a dataset name (``"CIFAR-10"`` -> ``"cifar10"``).

    Accepts the names in :data:`DATASET_NAMES`, ``"imagenet"`` and a few common aliases;
    anything else raises :class:`ConfigError`.
    """
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES and key not in _INFO_ONLY_NAMES:
        choices = ", ".join((*DATASET_NAMES, *_INFO_ONLY_NAMES))
        raise ConfigError(f"unknown dataset {name!r} (known: {choices})")
    return key


@dataclass(frozen=True)
class DatasetInfo:
    """What is needed to build a network for a dataset, without loading any data."""

    name: str
    in_channels: int
    image_size: int
    """Images are ``image_size x image_size``."""
    num_classes: int

    def __post_init__(self) -> None:
        _positive_int(self.in_channels, "in_channels")
        _positive_int(self.image_size, "image_size")
        _positive_int(self.num_classes, "num_classes")


def _require_fixed(name: str, what: str, given: int | None, native: int) -> None:
    if given is not None and given != native:
        raise ConfigError(
            f"{name} has {what}={native}; {what}={given} is not supported for it "
            "(only imagefolder and synthetic can be shaped freely)"
        )


def dataset_info(
    name: str,
    *,
    image_size: int | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> DatasetInfo:
    """Return the shape of dataset ``name`` without loading it.

    ``cifar10`` is 3x32x32 with 10 classes, ``cifar100`` 3x32x32 with 100, ``fashion-mnist``
    1x28x28 with 10 and ``imagenet`` 3x224x224 with 1000 (its ``image_size`` may be overridden,
    as it is loaded through ``imagefolder``); an override that disagrees with a fixed shape raises
    :class:`ConfigError`. ``synthetic`` defaults to 1x28x28 with 10 classes and takes any
    override. ``imagefolder`` needs ``num_classes``, defaults to ``image_size=32`` and takes
    ``in_channels`` 3 (RGB, the default) or 1 (greyscale).
    """
    key = canonical_name(name)
    if image_size is not None:
        image_size = _positive_int(image_size, "image_size")
    if num_classes is not None:
        num_classes = _positive_int(num_classes, "num_classes")
    if in_channels is not None:
        in_channels = _positive_int(in_channels, "in_channels")

    if key in _FIXED_SHAPES:
        channels, size, classes = _FIXED_SHAPES[key]
        if key != "imagenet":
            _require_fixed(key, "image_size", image_size, size)
        elif image_size is not None:
            size = image_size
        _require_fixed(key, "num_classes", num_classes, classes)
        _require_fixed(key, "in_channels", in_channels, channels)
        return DatasetInfo(key, channels, size, classes)

    if key == "synthetic":
        size = 28 if image_size is None else image_size
        classes = 10 if num_classes is None else num_classes
        if size < 8:
            raise ConfigError(f"synthetic images need image_size >= 8, got {size}")
        if classes < 2:
            raise ConfigError(f"synthetic data needs num_classes >= 2, got {classes}")
        return DatasetInfo(key, 1 if in_channels is None else in_channels, size, classes)

    # imagefolder
    if num_classes is None:
        raise ConfigError(
            "imagefolder needs num_classes (the number of class directories under train/)"
        )
    if in_channels not in (None, 1, 3):
        raise ConfigError(f"imagefolder supports in_channels 1 or 3, got {in_channels}")
    return DatasetInfo(
        key, 3 if in_channels is None else in_channels, image_size or 32, num_classes
    )


# --------------------------------------------------------------------------------------------
# the in-memory dataset
# --------------------------------------------------------------------------------------------


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``uint8`` NCHW images, in [0, 1] units.

    Computed exactly from a 256-bin histogram per channel, so it needs no float copy of the
    images. A constant channel gets std 1.0 (so that normalising never divides by zero).
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(
            f"channel_stats needs uint8 N x C x H x W images, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise DataError("cannot compute mean/std of an empty set of images")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for channel in range(images.shape[1]):
        hist = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * values * values).sum() / total) - mean * mean
        std = math.sqrt(max(var, 0.0))
        means.append(mean)
        stds.append(std if std > 1e-12 else 1.0)
    return tuple(means), tuple(stds)


@dataclass(eq=False)
class Dataset:
    """A whole dataset in memory: ``uint8`` NCHW images, ``int64`` labels, channel statistics.

    ``mean``/``std`` are per channel, computed from the training images, in [0, 1] units. Build
    one from raw tensors with :meth:`from_tensors`, which computes them. The constructor checks
    shapes, dtypes and label ranges and raises :class:`DataError` when they are inconsistent.
    """

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        name = self.name
        for part in ("train", "test"):
            images = getattr(self, f"{part}_images")
            labels = getattr(self, f"{part}_labels")
            if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
                raise DataError(f"{name}: {part} images must be a uint8 tensor")
            if images.dim() != 4 or images.shape[2] != images.shape[3]:
                raise DataError(
                    f"{name}: {part} images must be N x C x H x W with H == W, "
                    f"got shape {tuple(images.shape)}"
                )
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
                raise DataError(f"{name}: {part} labels must be an int64 tensor")
            if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
                raise DataError(
                    f"{name}: {images.shape[0]} {part} images but {labels.shape[0]} labels"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise DataError(
                    f"{name}: {part} labels span {int(labels.min())}..{int(labels.max())}, "
                    f"outside 0..{self.num_classes - 1}"
                )
        if self.train_images.shape[0] == 0:
            raise DataError(f"{name}: the training set is empty")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DataError(
                f"{name}: train images are {tuple(self.train_images.shape[1:])} but test images "
                f"are {tuple(self.test_images.shape[1:])}"
            )
        if len(self.classes) != self.num_classes:
            raise DataError(
                f"{name}: {len(self.classes)} class names for {self.num_classes} classes"
            )
        channels = self.train_images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(f"{name}: mean/std need {channels} values (one per channel)")
        if any(not s > 0 for s in self.std):
            raise DataError(f"{name}: std must be positive, got {self.std}")

    @classmethod
    def from_tensors(
        cls,
        name: str,
        train_images: torch.Tensor | np.ndarray,
        train_labels: torch.Tensor | np.ndarray,
        test_images: torch.Tensor | np.ndarray,
        test_labels: torch.Tensor | np.ndarray,
        classes: Sequence[str],
    ) -> Dataset:
        """Build a :class:`Dataset`, computing mean/std from the training images."""
        tensors = []
        for value in (train_images, train_labels, test_images, test_labels):
            tensor = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            tensors.append(tensor)
        tr_x, tr_y, te_x, te_y = tensors
        if isinstance(tr_y, torch.Tensor) and not tr_y.is_floating_point():
            tr_y = tr_y.to(torch.int64)
        if isinstance(te_y, torch.Tensor) and not te_y.is_floating_point():
            te_y = te_y.to(torch.int64)
        if not isinstance(tr_x, torch.Tensor) or tr_x.dtype != torch.uint8 or tr_x.dim() != 4:
            raise DataError(f"{name}: train images must be a uint8 N x C x H x W tensor")
        mean, std = channel_stats(tr_x)
        return cls(name, tr_x, tr_y, te_x, te_y, len(classes), list(classes), mean, std)

    @property
    def info(self) -> DatasetInfo:
        """The shape of this dataset (channels, square image size, number of classes)."""
        return DatasetInfo(
            self.name,
            int(self.train_images.shape[1]),
            int(self.train_images.shape[2]),
            self.num_classes,
        )

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Return ``(x / 255 - mean) / std`` per channel as ``float32`` (same shape).

        Accepts ``N x C x H x W`` or a single ``C x H x W`` ``uint8`` tensor, on any device.
        """
        images = images_uint8
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            kind = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise ConfigError(f"normalise expects a uint8 image tensor, got {kind}")
        channels = len(self.mean)
        if images.dim() not in (3, 4) or images.shape[-3] != channels:
            raise ConfigError(
                f"normalise expects [N x] {channels} x H x W images, got {tuple(images.shape)}"
            )
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        out = images.to(torch.float32)
        return out.div_(255.0).sub_(mean).div_(std)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.train_images.shape)}, "
            f"test={tuple(self.test_images.shape)}, num_classes={self.num_classes}, "
            f"mean={tuple(round(m, 4) for m in self.mean)}, "
            f"std={tuple(round(s, 4) for s in self.std)})"
        )


# --------------------------------------------------------------------------------------------
# files, checksums, downloads
# --------------------------------------------------------------------------------------------


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
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from None
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
            f"could not download {url} ({_one_line(exc)}); download it by hand and put it at {dest}"
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


def _safe_extract(archive: Path, dest: Path) -> None:
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
        raise DataError(f"cannot extract {archive}: {_one_line(exc)}") from None


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (idx format)
# --------------------------------------------------------------------------------------------


def _read_maybe_gzip(path: Path) -> bytes:
    """Return the bytes of ``path``, gunzipped when the file is gzip data."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt gzip file {path}: {_one_line(exc)}") from None


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


def _load_fashion_mnist(data_dir: Path | None, download: bool) -> Dataset:
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


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickle format)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarSpec:
    name: str
    title: str
    dirname: str
    archive: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


_CIFAR_SPECS = {
    "cifar10": _CifarSpec(
        name="cifar10",
        title="CIFAR-10",
        dirname="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _CifarSpec(
        name="cifar100",
        title="CIFAR-100",
        dirname="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}

# Globals a CIFAR pickle may reference: numpy's array/dtype reconstruction, nothing else
# that could run code.
_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that only resolves numpy's array-reconstruction globals.

    The CIFAR batches are plain dicts of bytes, lists and numpy arrays, so nothing else is
    needed; refusing every other global keeps a malicious file from running code.
    """

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy.core.", "numpy._core.", 1)
        if (canonical, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        try:
            return getattr(importlib.import_module(canonical), name)
        except (ImportError, AttributeError):  # numpy < 2 has no numpy._core
            return getattr(importlib.import_module(module), name)


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return _CifarUnpickler(handle, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from None
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise DataError(
            f"corrupt pickle file {path}: {type(exc).__name__}: {_one_line(exc)}"
        ) from None


def _entry(obj: Any, key: str, path: Path) -> Any:
    """``obj[b"key"]`` (or ``obj["key"]``), with a clear error when absent."""
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict (got {type(obj).__name__})")
    for candidate in (key.encode(), key):
        if candidate in obj:
            return obj[candidate]
    keys = ", ".join(repr(k) for k in obj)
    raise DataError(f"{path} has no {key.encode()!r} entry (keys: {keys})")


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data = np.asarray(_entry(batch, "data", path))
    labels = np.asarray(_entry(batch, label_key, path))
    if data.dtype != np.uint8:
        if data.dtype.kind in "iu" and data.size and data.min() >= 0 and data.max() <= 255:
            data = data.astype(np.uint8)
        else:
            raise DataError(f"{path}: b'data' must hold uint8 pixels, got dtype {data.dtype}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' has shape {data.shape}, expected N x 3072")
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: {label_key.encode()!r} must be a list of integer labels")
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"label count mismatch in {path}: {data.shape[0]} images but {labels.shape[0]} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _locate_cifar(spec: _CifarSpec, base: Path) -> Path | None:
    nested = base / spec.dirname
    if nested.is_dir():
        return nested
    if base.is_dir() and all((base / f).is_file() for f in (spec.test_file, spec.meta_file)):
        return base  # data_dir points at the batches directory itself
    return None


def _load_cifar(spec: _CifarSpec, data_dir: Path | None, download: bool) -> Dataset:
    base = data_dir if data_dir is not None else default_data_dir()
    directory = _locate_cifar(spec, base)
    if directory is None:
        archive = base / spec.archive
        if not archive.is_file():
            if not download:
                raise DataError(
                    f"{spec.title} not found: expected {base / spec.dirname}/ "
                    f"({', '.join(spec.files)}); extract {spec.archive} from {spec.url} into "
                    f"{base}, or pass download=True"
                )
            download_file(spec.url, archive, spec.md5)
        else:
            verify_md5(archive, spec.md5)
        _safe_extract(archive, base)
        directory = _locate_cifar(spec, base)
        if directory is None:
            raise DataError(f"{archive} did not contain {spec.dirname}/")

    missing = [f for f in spec.files if not (directory / f).is_file()]
    if missing:
        raise DataError(f"incomplete {spec.title} in {directory}: missing {', '.join(missing)}")

    train = [_cifar_batch(directory / f, spec.label_key) for f in spec.train_files]
    test_x, test_y = _cifar_batch(directory / spec.test_file, spec.label_key)
    meta_path = directory / spec.meta_file
    names = _entry(_unpickle(meta_path), spec.names_key, meta_path)
    if not isinstance(names, list | tuple) or len(names) != spec.num_classes:
        count = len(names) if isinstance(names, list | tuple) else type(names).__name__
        raise DataError(
            f"{meta_path}: {spec.names_key.encode()!r} should list {spec.num_classes} class "
            f"names, got {count}"
        )
    classes = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    for path, labels in [
        *((directory / f, y) for f, (_, y) in zip(spec.train_files, train, strict=True)),
        (directory / spec.test_file, test_y),
    ]:
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise DataError(
                f"{path}: labels span {labels.min()}..{labels.max()}, outside "
                f"0..{spec.num_classes - 1}"
            )
    return Dataset.from_tensors(
        spec.name,
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        test_x,
        test_y,
        classes,
    )


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


def _class_dirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _image_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


@dataclass(frozen=True)
class ImageFolderFiles:
    """The image files of an ImageFolder (``train/<class>/*``, ``val/`` or ``test/``), in
    sorted order, with their class indices; nothing decoded."""

    classes: list[str]
    train_paths: list[Path]
    train_labels: list[int]
    test_paths: list[Path]
    test_labels: list[int]


def list_image_folder(data_dir: Path | str | None,
                      num_classes: int | None = None) -> ImageFolderFiles:
    """List and check an ImageFolder's files (one-line :class:`DataError` on any problem)."""
    if data_dir is None:
        raise ConfigError("imagefolder needs data_dir (containing train/ and val/ or test/)")
    data_dir = Path(data_dir).expanduser()
    train_root = data_dir / "train"
    if not train_root.is_dir():
        raise DataError(
            f"image folder {data_dir} has no train/ directory (expected "
            f"{train_root}/<class>/<image> and {data_dir}/val/<class>/<image>)"
        )
    test_root = next((data_dir / d for d in ("val", "test") if (data_dir / d).is_dir()), None)
    if test_root is None:
        raise DataError(f"image folder {data_dir} has no val/ (or test/) directory")

    train_classes = _class_dirs(train_root)
    test_classes = _class_dirs(test_root)
    if not train_classes:
        raise DataError(f"{train_root} has no class directories")
    if set(train_classes) != set(test_classes):
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(
            f"class directories differ between {train_root} and {test_root}: "
            f"only in train: {only_train or 'none'}, only in {test_root.name}: "
            f"{only_test or 'none'}"
        )
    classes = sorted(train_classes)
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f"{train_root} has {len(classes)} classes but num_classes={num_classes}")

    def collect(root_classes: dict[str, Path], root: Path) -> tuple[list[Path], list[int]]:
        paths: list[Path] = []
        labels: list[int] = []
        for index, cls in enumerate(classes):
            files = _image_files(root_classes[cls])
            paths.extend(files)
            labels.extend([index] * len(files))
        if not paths:
            raise DataError(f"{root} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        return paths, labels

    train_paths, train_labels = collect(train_classes, train_root)
    empty = [cls for cls in classes if not _image_files(train_classes[cls])]
    if empty:
        raise DataError(f"class directories without images in {train_root}: {', '.join(empty)}")
    test_paths, test_labels = collect(test_classes, test_root)
    return ImageFolderFiles(classes, train_paths, train_labels, test_paths, test_labels)


def _load_image_folder(
    data_dir: Path | None, image_size: int | None, num_classes: int | None, in_channels: int | None
) -> Dataset:
    if data_dir is None:
        raise ConfigError("imagefolder needs data_dir (containing train/ and val/ or test/)")
    size = 32 if image_size is None else _positive_int(image_size, "image_size")
    channels = 3 if in_channels is None else in_channels
    if channels not in (1, 3):
        raise ConfigError(f"imagefolder supports in_channels 1 or 3, got {channels}")
    files = list_image_folder(data_dir, num_classes)
    train_x = _decode_images(files.train_paths, size, channels)
    test_x = _decode_images(files.test_paths, size, channels)
    return Dataset.from_tensors(
        "imagefolder",
        train_x,
        torch.tensor(files.train_labels, dtype=torch.int64),
        test_x,
        torch.tensor(files.test_labels, dtype=torch.int64),
        files.classes,
    )


def _decode_images(paths: list[Path], size: int, channels: int) -> torch.Tensor:
    """Decode, convert and resize image files into one ``uint8`` N x C x size x size tensor."""
    from PIL import Image, UnidentifiedImageError  # lazy: only the imagefolder loader needs it

    mode = "RGB" if channels == 3 else "L"
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)

    def decode(item: tuple[int, Path]) -> None:
        index, path = item
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft(mode, (size, size))  # decode JPEGs at reduced scale: faster
                resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                pixels = np.asarray(resized, dtype=np.uint8)
        except (
            OSError,
            UnidentifiedImageError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
        ) as exc:
            raise DataError(f"cannot read image {path}: {_one_line(exc)}") from None
        out[index] = pixels.reshape(size, size, channels)

    workers = min(8, os.cpu_count() or 1)
    if workers > 1 and len(paths) > 64:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            list(pool.map(decode, enumerate(paths)))
    else:
        for item in enumerate(paths):
            decode(item)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------


def _synthetic_images(
    labels: np.ndarray,
    info: DatasetInfo,
    rng: np.random.Generator,
    chunk: int = 2048,
) -> np.ndarray:
    """Render one image per label: class-specific stripes + blob, jittered, with noise."""
    size, classes, channels = info.image_size, info.num_classes, info.in_channels
    k = np.arange(classes)
    # Class prototypes depend only on the class index (not on the seed).
    angle = np.pi * k / classes
    freq = 2.0 + 1.0 * (k % 3)  # cycles per image
    blob_angle = 2.0 * np.pi * ((k * 0.6180339887) % 1.0)
    blob_radius = 0.18 + 0.12 * ((k * 0.381966) % 1.0)
    blob_y = blob_radius * np.sin(blob_angle)
    blob_x = blob_radius * np.cos(blob_angle)
    colour = 0.6 + 0.4 * np.cos(
        2.0 * np.pi * (k[:, None] / classes + np.arange(channels)[None, :] / max(channels, 1))
    )
    if channels == 1:
        colour = np.ones((classes, 1))
    coords = (np.arange(size) + 0.5) / size - 0.5
    yy = coords[:, None]
    xx = coords[None, :]
    out = np.empty((labels.shape[0], channels, size, size), dtype=np.uint8)
    for start in range(0, labels.shape[0], chunk):
        y = labels[start : start + chunk]
        n = y.shape[0]
        phase = rng.uniform(-0.6 * np.pi, 0.6 * np.pi, n)[:, None, None]
        tilt = (angle[y] + rng.normal(0.0, 0.06, n))[:, None, None]
        proj = xx * np.cos(tilt) + yy * np.sin(tilt)
        stripes = np.sin(2.0 * np.pi * freq[y][:, None, None] * proj + phase)
        cy = (blob_y[y] + rng.normal(0.0, 0.06, n))[:, None, None]
        cx = (blob_x[y] + rng.normal(0.0, 0.06, n))[:, None, None]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * 0.1**2))
        contrast = rng.uniform(0.5, 1.0, n)[:, None, None]
        pattern = contrast * (0.22 * stripes + 0.4 * blob)  # n x H x W
        brightness = rng.uniform(0.3, 0.5, n)[:, None, None, None]
        image = brightness + pattern[:, None] * colour[y][:, :, None, None]
        image += rng.normal(0.0, 0.35, image.shape)
        out[start : start + n] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return out


def make_synthetic(
    train_size: int = 2000,
    test_size: int = 500,
    *,
    image_size: int | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    seed: int = 0,
) -> Dataset:
    """A deterministic, class-structured synthetic dataset (name ``"synthetic"``).

    Each class has its own stripe orientation/frequency, blob position and (for several
    channels) colour; each sample jitters these, varies contrast and brightness and adds strong
    pixel noise, so a linear model on raw pixels does well above chance but not perfectly.
    Classes are balanced. The same arguments always give the same tensors.
    """
    info = dataset_info(
        "synthetic", image_size=image_size, num_classes=num_classes, in_channels=in_channels
    )
    train_size = _positive_int(train_size, "synthetic train size")
    test_size = _positive_int(test_size, "synthetic test size")
    seed = _seed_value(seed)
    parts = []
    for offset, count in enumerate((train_size, test_size)):
        rng = np.random.default_rng([abs(seed), int(seed < 0), offset])
        labels = rng.permutation(np.arange(count) % info.num_classes)
        parts.append((_synthetic_images(labels, info, rng), labels.astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = parts
    classes = [f"class_{i}" for i in range(info.num_classes)]
    return Dataset.from_tensors("synthetic", train_x, train_y, test_x, test_y, classes)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    synthetic_size: tuple[int, int] = (2000, 500),
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) into memory.

    ``data_dir`` defaults to :func:`default_data_dir`. ``download`` lets the CIFAR and
    Fashion-MNIST loaders fetch missing files. ``image_size``, ``num_classes`` and
    ``in_channels`` shape ``synthetic`` and ``imagefolder`` data; for the fixed datasets they
    may only repeat the native values. ``seed`` and ``synthetic_size`` (train, test) only affect
    ``synthetic``.
    """
    key = canonical_name(name)
    if key in _INFO_ONLY_NAMES:
        raise ConfigError(
            f"{key} is loaded with name 'imagefolder' "
            "(data_dir/train/<class>/<image>, data_dir/val/<class>/<image>)"
        )
    path = Path(data_dir).expanduser() if data_dir is not None else None
    if key == "synthetic":
        if (
            not isinstance(synthetic_size, Sequence)
            or isinstance(synthetic_size, str)
            or len(synthetic_size) != 2
        ):
            raise ConfigError(
                f"synthetic_size must be a pair (train, test), got {synthetic_size!r}"
            )
        return make_synthetic(
            synthetic_size[0],
            synthetic_size[1],
            image_size=image_size,
            num_classes=num_classes,
            in_channels=in_channels,
            seed=seed,
        )
    if key == "imagefolder":
        if num_classes is not None:
            num_classes = _positive_int(num_classes, "num_classes")
        if in_channels is not None:
            in_channels = _positive_int(in_channels, "in_channels")
        return _load_image_folder(path, image_size, num_classes, in_channels)
    dataset_info(key, image_size=image_size, num_classes=num_classes, in_channels=in_channels)
    if key == "fashion-mnist":
        return _load_fashion_mnist(path, download)
    return _load_cifar(_CIFAR_SPECS[key], path, download)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Split:
    """Normalised ``float32`` images and ``int64`` labels for training and validation."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def __repr__(self) -> str:
        return f"Split(train={tuple(self.train_x.shape)}, val={tuple(self.val_x.shape)})"


def _subset_size(value: int | None, available: int, what: str) -> int:
    if value is None:
        return available
    size = _positive_int(value, what)
    if size > available:
        raise ConfigError(f"{what}={size} is larger than the {available} images available")
    return size


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed_value(seed))


def search_split(
    ds: Dataset,
    *,
    seed: int = 0,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float = 0.2,
) -> Split:
    """The seeded train/validation split of the TRAINING set used during the search.

    A ``torch.Generator``-seeded permutation of the training indices; its last
    ``round(val_fraction * N)`` entries are the validation part, the rest the training part.
    ``train_size`` / ``val_size`` keep only the first entries of each part (so a subsample is a
    prefix of the full split). The test set is never touched. Sizes larger than available raise
    :class:`ConfigError`.
    """
    if not isinstance(val_fraction, int | float) or not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    total = int(ds.train_images.shape[0])
    n_val = round(total * float(val_fraction))
    n_train = total - n_val
    if n_val < 1 or n_train < 1:
        raise ConfigError(
            f"cannot split {total} training images with val_fraction={val_fraction}: "
            "one part would be empty"
        )
    order = torch.randperm(total, generator=_generator(seed))
    train_idx = order[:n_train][: _subset_size(train_size, n_train, "train_size")]
    val_idx = order[n_train:][: _subset_size(val_size, n_val, "val_size")]
    return Split(
        ds.normalise(ds.train_images[train_idx]),
        ds.train_labels[train_idx],
        ds.normalise(ds.train_images[val_idx]),
        ds.train_labels[val_idx],
    )


def test_split(
    ds: Dataset,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> Split:
    """The full training set against the test set (``val_x``/``val_y`` hold the TEST set).

    Without sizes every image is used, in file order. ``train_size`` / ``test_size`` keep the
    first entries of a seeded permutation of the respective set.
    """
    n_train = int(ds.train_images.shape[0])
    n_test = int(ds.test_images.shape[0])
    if n_test == 0:
        raise DataError(f"{ds.name}: the test set is empty")

    generator = _generator(seed)

    def pick(count: int, size: int | None, what: str) -> torch.Tensor | slice:
        if size is None:
            return slice(None)
        keep = _subset_size(size, count, what)
        return torch.randperm(count, generator=generator)[:keep]

    train_idx = pick(n_train, train_size, "train_size")
    test_idx = pick(n_test, test_size, "test_size")
    return Split(
        ds.normalise(ds.train_images[train_idx]),
        ds.train_labels[train_idx],
        ds.normalise(ds.test_images[test_idx]),
        ds.test_labels[test_idx],
    )


test_split.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
