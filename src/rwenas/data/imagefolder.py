"""Image folders: ``train/<class>/<image>`` and ``val/`` (or ``test/``), decoded with Pillow."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rwenas.data.dataset import Dataset, one_line, positive_int
from rwenas.errors import ConfigError, DataError

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


def load_image_folder(
    data_dir: Path | None, image_size: int | None, num_classes: int | None, in_channels: int | None
) -> Dataset:
    if data_dir is None:
        raise ConfigError("imagefolder needs data_dir (containing train/ and val/ or test/)")
    size = 32 if image_size is None else positive_int(image_size, "image_size")
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
            raise DataError(f"cannot read image {path}: {one_line(exc)}") from None
        out[index] = pixels.reshape(size, size, channels)

    workers = min(8, os.cpu_count() or 1)
    if workers > 1 and len(paths) > 64:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            list(pool.map(decode, enumerate(paths)))
    else:
        for item in enumerate(paths):
            decode(item)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
