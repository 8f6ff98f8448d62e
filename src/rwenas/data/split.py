"""The search split (a seeded train/validation split of the training images) and the test
split, as normalised float tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rwenas.data.dataset import Dataset, positive_int, seed_value
from rwenas.errors import ConfigError, DataError


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
    size = positive_int(value, what)
    if size > available:
        raise ConfigError(f"{what}={size} is larger than the {available} images available")
    return size


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_value(seed))


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
