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

One module per source (:mod:`~rwenas.data.idx`, :mod:`~rwenas.data.cifar`,
:mod:`~rwenas.data.imagefolder`, :mod:`~rwenas.data.synthetic`), plus
:mod:`~rwenas.data.dataset` (names, shapes, the :class:`Dataset`), :mod:`~rwenas.data.download`
and :mod:`~rwenas.data.split`; this package's :func:`load_dataset` picks the loader.

Every problem caused by the files or the arguments raises :class:`~rwenas.errors.DataError` or
:class:`~rwenas.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rwenas.data.cifar import CIFAR10_CLASSES, CIFAR_SPECS, load_cifar
from rwenas.data.dataset import (
    DATASET_NAMES,
    INFO_ONLY_NAMES,
    Dataset,
    DatasetInfo,
    canonical_name,
    channel_stats,
    dataset_info,
    positive_int,
)
from rwenas.data.download import default_data_dir, download_file, verify_md5
from rwenas.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from rwenas.data.imagefolder import (
    IMAGE_EXTENSIONS,
    ImageFolderFiles,
    list_image_folder,
    load_image_folder,
)
from rwenas.data.split import Split, search_split, test_split
from rwenas.data.synthetic import make_synthetic
from rwenas.errors import ConfigError

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
    if key in INFO_ONLY_NAMES:
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
            num_classes = positive_int(num_classes, "num_classes")
        if in_channels is not None:
            in_channels = positive_int(in_channels, "in_channels")
        return load_image_folder(path, image_size, num_classes, in_channels)
    dataset_info(key, image_size=image_size, num_classes=num_classes, in_channels=in_channels)
    if key == "fashion-mnist":
        return load_fashion_mnist(path, download)
    return load_cifar(CIFAR_SPECS[key], path, download)
