"""A seeded generator of class-structured images: learnable, but not trivially."""

from __future__ import annotations

import numpy as np

from rwenas.data.dataset import Dataset, DatasetInfo, dataset_info, positive_int, seed_value


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
    train_size = positive_int(train_size, "synthetic train size")
    test_size = positive_int(test_size, "synthetic test size")
    seed = seed_value(seed)
    parts = []
    for offset, count in enumerate((train_size, test_size)):
        rng = np.random.default_rng([abs(seed), int(seed < 0), offset])
        labels = rng.permutation(np.arange(count) % info.num_classes)
        parts.append((_synthetic_images(labels, info, rng), labels.astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = parts
    classes = [f"class_{i}" for i in range(info.num_classes)]
    return Dataset.from_tensors("synthetic", train_x, train_y, test_x, test_y, classes)
