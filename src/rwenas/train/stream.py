"""An ImageFolder streamed from disk for the ImageNet recipe: bounded memory at any size.

Only the file list is held (as one compact byte buffer, so it costs ~40 bytes per image and
no Python object per image in every worker). ``DataLoader`` worker processes decode each
batch with Pillow:

* training: ``RandomResizedCrop`` on the *original* image (a box of 8-100 % of its area and
  aspect ratio 3/4-4/3, drawn as torchvision draws it, cropped and resized to the recipe's
  ``image_size`` by Pillow's antialiased bilinear filter); flip, colour jitter, normalisation
  (and cutout) then run on the batch in the main process
  (:meth:`rwenas.fit.augment.Augmenter.train_cropped`);
* test: resize the shorter side to ``round(image_size * 256 / 224)`` (256 for 224) keeping
  the aspect ratio, then the central ``image_size`` square.

Memory is bounded by the workers' prefetched batches, whatever the number of images.

Randomness and resume: epoch ``e`` visits the images in the permutation drawn by a generator
seeded with ``(seed, e)``; image ``i``'s crop box comes from a generator seeded with
``(seed, e, i)``; the batch-level flips and jitter come from the run's generator, which the
checkpoint stores. So an epoch's batches do not depend on the number of workers, and a run
resumed from its per-epoch checkpoint continues exactly as an uninterrupted one (the
granularity of a resume is the epoch, as for in-memory data).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rwenas.data import list_image_folder
from rwenas.errors import ConfigError, DataError
from rwenas.fit.augment import resized_crop_boxes

__all__ = ["PathTable", "StreamData", "StreamedImages", "default_workers", "eval_resize"]

#: The ImageNet evaluation resize: 256 for a 224 crop, scaled proportionally otherwise.
_RESIZE_RATIO = 256 / 224


def eval_resize(image_size: int) -> int:
    """The shorter side images are resized to before the central ``image_size`` crop."""
    return round(image_size * _RESIZE_RATIO)


def default_workers() -> int:
    """Decoding processes: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _stream_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & (2**63 - 1) for p in parts]).generate_state(
        1, np.uint64)[0] >> 1)


class PathTable:
    """File paths relative to one root, packed into one ``uint8`` buffer with offsets."""

    def __init__(self, root: Path, paths: Sequence[Path]) -> None:
        self.root = str(root)
        encoded = [os.fsencode(os.path.relpath(p, root)) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        rel = self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes()
        return os.path.join(self.root, os.fsdecode(rel))


class StreamedImages(torch.utils.data.Dataset):
    """Decodes image ``i`` for epoch ``e`` when asked for ``(e, i)`` (training) or ``i``
    (test), returning a ``uint8`` ``C x S x S`` tensor and its label."""

    def __init__(self, paths: PathTable, labels: np.ndarray, *, image_size: int,
                 channels: int, train: bool, seed: int = 0,
                 scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        self.paths = paths
        self.labels = labels
        self.size = int(image_size)
        self.mode = "RGB" if channels == 3 else "L"
        self.train = train
        self.seed = int(seed)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        epoch, index = item if self.train else (0, item)
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                out = self._train(image, epoch, index) if self.train else self._test(image)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError,
                Image.DecompressionBombError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read image {path}: {message}") from None
        pixels = np.asarray(out, dtype=np.uint8).reshape(self.size, self.size, -1)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1), int(self.labels[index])

    def _draft(self, image: Any, width: int, height: int) -> tuple[float, float]:
        """Let a JPEG decode at a reduced scale that still covers ``width x height`` pixels
        of the original; the factors that map original to decoded coordinates."""
        w0, h0 = image.size
        if image.format == "JPEG":
            image.draft(self.mode, (max(1, width), max(1, height)))
        return image.size[0] / w0, image.size[1] / h0

    def _train(self, image: Any, epoch: int, index: int) -> Any:
        from PIL import Image

        w0, h0 = image.size
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, index))
        top, left, bh, bw = resized_crop_boxes(1, h0, w0, gen, self.scale, self.ratio)[0].tolist()
        # The box must keep at least ``size`` pixels per side after a draft reduction.
        sx, sy = self._draft(image, math.ceil(w0 * self.size / bw),
                             math.ceil(h0 * self.size / bh))
        box = (left * sx, top * sy, (left + bw) * sx, (top + bh) * sy)
        return image.convert(self.mode).resize((self.size, self.size),
                                               Image.Resampling.BILINEAR, box=box)

    def _test(self, image: Any) -> Any:
        from PIL import Image

        resize = eval_resize(self.size)
        w0, h0 = image.size
        short = min(w0, h0)
        w, h = max(1, round(w0 * resize / short)), max(1, round(h0 * resize / short))
        self._draft(image, w, h)
        image = image.convert(self.mode).resize((w, h), Image.Resampling.BILINEAR)
        top, left = round((h - self.size) / 2), round((w - self.size) / 2)
        return image.crop((left, top, left + self.size, top + self.size))


class _OneLineErrors:
    """Iterates a loader, turning an image error raised in a worker process (which the
    ``DataLoader`` re-raises with the worker's whole traceback) back into one line."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.loader
        except DataError as exc:
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
            prefix = f"{DataError.__module__}.{DataError.__name__}: "
            raise DataError(last[len(prefix):] if last.startswith(prefix) else last) from None


class EpochBatches:
    """Batches of ``(epoch, index)`` over a seeded per-epoch permutation of ``indices``; a
    last batch of one image is dropped (BatchNorm needs two). ``epoch`` is set per epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size + (1 if self.n % self.batch_size >= 2 else 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, self.epoch, 1))
        order = torch.randperm(self.n, generator=gen)  # 8 bytes per image, not a list
        for step in range(len(self)):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size].tolist()
            yield [(self.epoch, i) for i in batch]


@dataclass(eq=False)
class StreamData:
    """An ImageFolder read from disk batch by batch (the streamed counterpart of
    :class:`rwenas.fit.loop.TrainData`): file lists, labels and channel statistics."""

    name: str
    train_files: PathTable = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_files: PathTable = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_channels: int
    image_size: int
    workers: int = field(default_factory=default_workers)

    streamed = True

    @classmethod
    def from_folder(cls, data_dir: str | Path, *, image_size: int, in_channels: int = 3,
                    train_size: int | None = None, test_size: int | None = None,
                    seed: int = 0, workers: int | None = None,
                    stats_images: int = 256) -> StreamData:
        """List ``data_dir`` (``train/<class>/*``, ``val/`` or ``test/``); ``train_size`` /
        ``test_size`` pick the same seeded sub-samples as the in-memory path; the channel
        mean/std come from ``stats_images`` seeded training images at the test transform."""
        if in_channels not in (1, 3):
            raise ConfigError(f"imagefolder supports in_channels 1 or 3, got {in_channels}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 0):
            raise ConfigError(f"workers must be a non-negative integer, got {workers!r}")
        files = list_image_folder(data_dir)
        root = Path(data_dir).expanduser()
        generator = torch.Generator().manual_seed(int(seed))

        def pick(count: int, size: int | None, what: str) -> np.ndarray:
            if size is None:
                return np.arange(count)
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(f"{what} must be a positive integer, got {size!r}")
            if size > count:
                raise ConfigError(f"{what}={size} is larger than the {count} images available")
            return torch.randperm(count, generator=generator)[:size].numpy()

        tr = pick(len(files.train_paths), train_size, "train_size")
        te = pick(len(files.test_paths), test_size, "test_size")
        data = cls("imagefolder",
                   PathTable(root, [files.train_paths[i] for i in tr]),
                   np.asarray(files.train_labels, dtype=np.int64)[tr],
                   PathTable(root, [files.test_paths[i] for i in te]),
                   np.asarray(files.test_labels, dtype=np.int64)[te],
                   len(files.classes), (0.0,) * in_channels, (1.0,) * in_channels,
                   in_channels, int(image_size),
                   default_workers() if workers is None else workers)
        data.mean, data.std = data._channel_stats(stats_images, seed)
        return data

    def _channel_stats(self, count: int, seed: int) -> tuple[tuple[float, ...],
                                                            tuple[float, ...]]:
        n = len(self.train_labels)
        gen = torch.Generator().manual_seed(_stream_seed(seed, 7))
        picked = torch.randperm(n, generator=gen)[:min(count, n)].tolist()
        images = StreamedImages(self.train_files, self.train_labels,
                                image_size=self.image_size, channels=self.in_channels,
                                train=False)
        total = np.zeros(self.in_channels)
        squares = np.zeros(self.in_channels)
        pixels = 0
        for x, _ in self._loader(torch.utils.data.Subset(images, picked), batch_size=32):
            v = x.double().div_(255.0)
            total += v.sum(dim=(0, 2, 3)).numpy()
            squares += v.square().sum(dim=(0, 2, 3)).numpy()
            pixels += v.shape[0] * v.shape[2] * v.shape[3]
        mean = total / pixels
        std = np.sqrt(np.maximum(squares / pixels - mean ** 2, 0.0))
        return (tuple(float(m) for m in mean),
                tuple(float(s) if s > 1e-12 else 1.0 for s in std))

    def _loader(self, dataset: Any, *, batch_size: int | None = None,
                batch_sampler: Any = None, pin_memory: bool = False):
        workers = self.workers
        return _OneLineErrors(torch.utils.data.DataLoader(
            dataset, batch_size=batch_size if batch_sampler is None else 1,
            batch_sampler=batch_sampler, shuffle=False, num_workers=workers,
            pin_memory=pin_memory, prefetch_factor=2 if workers > 0 else None))

    def train_loader(self, batch_size: int, seed: int, recipe: Any,
                     pin_memory: bool = False) -> tuple[Any, EpochBatches]:
        """The training batches (``uint8`` crops, labels) and their sampler (set its
        ``epoch`` before iterating)."""
        images = StreamedImages(self.train_files, self.train_labels,
                                image_size=self.image_size, channels=self.in_channels,
                                train=True, seed=seed, scale=recipe.crop_scale,
                                ratio=recipe.crop_ratio)
        sampler = EpochBatches(len(images), batch_size, seed)
        return self._loader(images, batch_sampler=sampler, pin_memory=pin_memory), sampler

    def test_loader(self, batch_size: int, pin_memory: bool = False) -> Any:
        """The test batches in file order (resized and centre-cropped ``uint8``, labels)."""
        images = StreamedImages(self.test_files, self.test_labels,
                                image_size=self.image_size, channels=self.in_channels,
                                train=False)
        return self._loader(images, batch_size=batch_size, pin_memory=pin_memory)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "train_images": len(self.train_labels),
                "test_images": len(self.test_labels), "in_channels": self.in_channels,
                "image_size": self.image_size, "num_classes": self.num_classes,
                "streamed": True}
