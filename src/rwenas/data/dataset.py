"""Dataset names and shapes (:func:`dataset_info`, without loading anything) and the
in-memory :class:`Dataset` every loader returns."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rwenas.errors import ConfigError, DataError

DATASET_NAMES = ("cifar10", "cifar100", "fashion-mnist", "imagefolder", "synthetic")
"""Names accepted by :func:`load_dataset`."""

INFO_ONLY_NAMES = ("imagenet",)

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


def one_line(exc: BaseException | str) -> str:
    """Return ``exc`` as a single line of text (whitespace collapsed)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, BaseException) and not text:
        text = type(exc).__name__
    return text


def positive_int(value: object, what: str) -> int:
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


def seed_value(seed: object) -> int:
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
    if key not in DATASET_NAMES and key not in INFO_ONLY_NAMES:
        choices = ", ".join((*DATASET_NAMES, *INFO_ONLY_NAMES))
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
        positive_int(self.in_channels, "in_channels")
        positive_int(self.image_size, "image_size")
        positive_int(self.num_classes, "num_classes")


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
        image_size = positive_int(image_size, "image_size")
    if num_classes is not None:
        num_classes = positive_int(num_classes, "num_classes")
    if in_channels is not None:
        in_channels = positive_int(in_channels, "in_channels")

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
