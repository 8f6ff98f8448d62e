"""Streaming ImageFolder for the ImageNet recipe: crops of the original images, resize +
centre-crop evaluation, bounded memory, bit-exact resume, one-line errors."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from rwenas.build import resolve_architecture
from rwenas.data import load_dataset
from rwenas.errors import DataError
from rwenas.fit.augment import resized_crop_boxes
from rwenas.fit.recipes import ImageNetRecipe
from rwenas.train.run import train
from rwenas.train.stream import StreamData, _stream_seed, eval_resize

Image = pytest.importorskip("PIL.Image")

COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]])


def make_folder(root: Path, per_class: tuple[int, int], seed: int = 0, ext: str = "jpg") -> Path:
    """DIR/{train,val}/<class>/*: JPEGs of random sizes (24-160 px) and aspect ratios (up to
    about 1:3 either way), each class its own colour and stripe."""
    rng = np.random.default_rng(seed)
    for part, count in zip(("train", "val"), per_class, strict=True):
        for c, name in enumerate(("cat", "dog", "fox")):
            d = root / part / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = (int(v) for v in rng.integers(24, 160, 2))
                img = rng.integers(0, 60, (h, w, 3)) + COLOURS[c] * 0.7
                img[:, (w * c) // 3:(w * (c + 1)) // 3] = 255
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i}.{ext}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("stream"), (8, 3))


def _png(tmp_path: Path, w: int, h: int) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    root = tmp_path / "png"
    for part in ("train", "val"):
        (root / part / "a").mkdir(parents=True)
        Image.fromarray(pixels).save(root / part / "a" / "x.png")
    return root, pixels


def test_evaluation_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    # a 100x50 image at size 32: shorter side to round(32 * 256/224) = 37, keeping the aspect
    # ratio (74x37), then the central 32x32 (left 21, top round(2.5) = 2)
    assert eval_resize(224) == 256 and eval_resize(32) == 37
    root, pixels = _png(tmp_path, 100, 50)
    data = StreamData.from_folder(root, image_size=32, workers=0)
    (x, y), = list(data.test_loader(4))
    expected = Image.fromarray(pixels).resize((74, 37), Image.Resampling.BILINEAR)
    expected = np.array(expected.crop((21, 2, 53, 34)))
    assert x.dtype == torch.uint8 and x.shape == (1, 3, 32, 32) and y.tolist() == [0]
    assert torch.equal(x[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_training_crops_the_original_image(tmp_path):
    """Each image's crop box is drawn on the original image (torchvision's RandomResizedCrop
    parameters, seeded by run seed, epoch and image), then resized to the training size."""
    root, pixels = _png(tmp_path, 120, 60)
    data = StreamData.from_folder(root, image_size=16, workers=0)
    loader, _ = data.train_loader(2, seed=5, recipe=ImageNetRecipe())
    images = loader.loader.dataset
    crops = []
    for epoch in (0, 1):
        x, _ = images[(epoch, 0)]
        gen = torch.Generator().manual_seed(_stream_seed(5, epoch, 0))
        top, left, bh, bw = resized_crop_boxes(1, 60, 120, gen)[0].tolist()
        expected = Image.fromarray(pixels).resize(
            (16, 16), Image.Resampling.BILINEAR, box=(left, top, left + bw, top + bh))
        assert torch.equal(x, torch.from_numpy(np.array(expected)).permute(2, 0, 1))
        assert torch.equal(images[(epoch, 0)][0], x)  # deterministic
        crops.append(x)
    assert not torch.equal(crops[0], crops[1])  # a new crop every epoch


def test_epoch_batches_are_seeded_per_epoch(folder):
    data = StreamData.from_folder(folder, image_size=16, workers=0)
    _, sampler = data.train_loader(5, seed=3, recipe=ImageNetRecipe())
    assert len(sampler) == 5  # 24 images: 4 batches of 5 and one of 4
    first = list(sampler)
    assert first == list(sampler)
    assert sorted(i for b in first for _, i in b) == list(range(24))
    sampler.epoch = 1
    assert [i for b in sampler for _, i in b] != [i for b in first for _, i in b]


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """An epoch of training and test batches over N and 4N JPEGs: the streamed pipeline's
    peak traced memory stays at one batch's working set, while loading the same folders
    whole grows with N (so the measurement does see image memory). What the streamed data
    keeps per image is its path and label: ~40 bytes."""
    small = make_folder(tmp_path / "n", (12, 4), seed=1)
    large = make_folder(tmp_path / "4n", (48, 16), seed=2)

    def epoch(data: StreamData) -> None:
        loader, _ = data.train_loader(8, seed=0, recipe=ImageNetRecipe())
        for x, _ in loader:
            assert x.shape[1:] == (3, 64, 64)
        for x, _ in data.test_loader(8):
            assert x.shape[1:] == (3, 64, 64)

    streams = [StreamData.from_folder(r, image_size=64, workers=0, stats_images=8)
               for r in (small, large)]
    epoch(streams[0])  # warm up imports and caches outside the measurement
    stream = [_peak(lambda d=d: epoch(d)) for d in streams]
    whole = [_peak(lambda r=r: load_dataset("imagefolder", r, image_size=64))
             for r in (small, large)]
    # in memory: 4x the 48 images of 3x64x64 bytes (590 kB) for 192 images (2.4 MB)
    assert whole[1] - whole[0] > 3 * 48 * 3 * 64 * 64 * 0.9, whole
    # streamed (measured: 171 kB and 182 kB): flat, against 1.7 MB more in memory
    assert stream[1] - stream[0] < 0.05 * (whole[1] - whole[0]), (stream, whole)
    assert stream[1] < 1.25 * stream[0], stream
    for d in streams:
        kept = sum(a.nbytes for a in (d.train_files.buffer, d.train_files.offsets,
                                      d.test_files.buffer, d.test_files.offsets,
                                      d.train_labels, d.test_labels))
        assert kept < 64 * (len(d.train_labels) + len(d.test_labels))


def test_streamed_training_resumes_bit_for_bit(folder, tmp_path):
    """ImageNet recipe on a JPEG folder: 2 epochs straight (2 worker processes) equal 1 epoch,
    stop, and a resumed second epoch (decoded in the training process)."""
    arch = resolve_architecture("micro", arch="DARTS")
    recipe = ImageNetRecipe(epochs=2, warmup_epochs=1, batch_size=8, image_size=32,
                            channels=4, layers=3)
    kw = {"dataset": "imagefolder", "data_dir": folder, "seed": 1}
    straight = train(arch, recipe, out_dir=tmp_path / "a", workers=2, **kw)
    assert straight.result["data"]["streamed"] is True
    assert straight.result["data"]["train_images"] == 24
    first = train(arch, recipe, out_dir=tmp_path / "b", workers=0, stop_after=1, **kw)
    assert first.epochs_done == 1
    resumed = train(arch, recipe, out_dir=tmp_path / "b", workers=0, resume=True, **kw)
    assert resumed.completed
    assert resumed.history[-1] == {**straight.history[-1],
                                   "seconds": resumed.history[-1]["seconds"]}
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_broken_image_is_one_error_line(tmp_path):
    root = make_folder(tmp_path / "bad", (2, 1))
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError) as info:  # decoded in a worker process
        data = StreamData.from_folder(root, image_size=16, workers=1)
        loader, _ = data.train_loader(8, seed=0, recipe=ImageNetRecipe())
        list(loader)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot read image")
    assert "broken.jpg" in message
