"""Tests of the dataset layer: real file formats written in miniature, splits, error cases."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rwenas.data import (
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    Dataset,
    DatasetInfo,
    cifar,
    dataset_info,
    download,
    idx,
    load_dataset,
    read_idx,
    search_split,
    test_split,
    verify_md5,
)
from rwenas.errors import ConfigError, DataError

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------------------
# helpers writing the real formats
# ------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The idx encoding of a uint8 array: big-endian magic, dims, raw bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    payload = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def make_fashion(directory: Path, *, gz: bool = True, n_train: int = 12, n_test: int = 5):
    """Write a tiny Fashion-MNIST into ``directory``; return the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }
    suffix = ".gz" if gz else ""
    for stem, array in arrays.items():
        magic = 2051 if "images" in stem else 2049
        write_idx(directory / f"{stem}{suffix}", array, magic)
    return arrays


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(base: Path, *, per_batch: int = 4, n_test: int = 3) -> dict[str, np.ndarray]:
    """Write a tiny ``cifar-10-batches-py`` under ``base``; return all images/labels."""
    directory = base / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(2)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": b"training batch", b"data": x, b"labels": y}
        write_pickle(directory / f"data_batch_{i}", batch, protocol=2 if i % 2 else 5)
        xs.append(x)
        ys.extend(y)
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = [int(v) for v in rng.integers(0, 10, n_test)]
    write_pickle(directory / "test_batch", {b"data": tx, b"labels": ty})
    names = [n.encode() for n in cifar.CIFAR10_CLASSES]
    write_pickle(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {
        "train_x": np.concatenate(xs),
        "train_y": np.array(ys),
        "test_x": tx,
        "test_y": np.array(ty),
    }


def make_cifar100(base: Path) -> None:
    directory = base / "cifar-100-python"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, n in (("train", 7), ("test", 4)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        write_pickle(directory / name, batch)
    write_pickle(directory / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})


def make_image_folder(base: Path, classes=("cat", "dog", "emu"), per_class: int = 2) -> Path:
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}
    for split in ("train", "val"):
        for cls in classes:
            directory = base / split / cls
            directory.mkdir(parents=True)
            for i in range(per_class):
                # deliberately not square and not the target size
                Image.new("RGB", (10 + i, 7), colours.get(cls, (9, 9, 9))).save(
                    directory / f"{i}.png"
                )
            (directory / "notes.txt").write_text("not an image")
    return base


def one_line_error(exc_info: pytest.ExceptionInfo) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------------------
# dataset_info
# ------------------------------------------------------------------------------------------


def test_dataset_info_fixed_shapes() -> None:
    assert dataset_info("cifar10") == DatasetInfo("cifar10", 3, 32, 10)
    assert dataset_info("cifar100") == DatasetInfo("cifar100", 3, 32, 100)
    assert dataset_info("fashion-mnist") == DatasetInfo("fashion-mnist", 1, 28, 10)
    assert dataset_info("imagenet") == DatasetInfo("imagenet", 3, 224, 1000)
    assert dataset_info("imagenet", image_size=64).image_size == 64
    assert dataset_info("CIFAR-10").name == "cifar10"
    assert dataset_info("fashion_mnist", image_size=28).name == "fashion-mnist"
    assert set(DATASET_NAMES) == {
        "cifar10",
        "cifar100",
        "fashion-mnist",
        "imagefolder",
        "synthetic",
    }


def test_dataset_info_free_shapes() -> None:
    assert dataset_info("synthetic") == DatasetInfo("synthetic", 1, 28, 10)
    assert dataset_info("synthetic", image_size=16, num_classes=4, in_channels=3) == DatasetInfo(
        "synthetic", 3, 16, 4
    )
    assert dataset_info("imagefolder", num_classes=5) == DatasetInfo("imagefolder", 3, 32, 5)
    assert dataset_info("imagefolder", num_classes=5, image_size=64).image_size == 64


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mnist", {}, "unknown dataset"),
        ("cifar10", {"image_size": 64}, "image_size"),
        ("cifar100", {"num_classes": 10}, "num_classes"),
        ("fashion-mnist", {"in_channels": 3}, "in_channels"),
        ("imagefolder", {}, "num_classes"),
        ("imagefolder", {"num_classes": 3, "in_channels": 2}, "in_channels"),
        ("synthetic", {"image_size": 0}, "image_size"),
        ("synthetic", {"num_classes": 1}, "num_classes"),
        ("synthetic", {"image_size": 2.5}, "image_size"),
    ],
)
def test_dataset_info_rejects_bad_arguments(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc_info:
        dataset_info(name, **kwargs)
    one_line_error(exc_info)


# ------------------------------------------------------------------------------------------
# Fashion-MNIST / idx
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("nested", "gz"), [(True, True), (False, False), (False, True)])
def test_fashion_mnist_round_trip(tmp_path: Path, nested: bool, gz: bool) -> None:
    directory = tmp_path / "fashion-mnist" if nested else tmp_path
    arrays = make_fashion(directory, gz=gz)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.test_images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.train_labels.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.classes == list(FASHION_MNIST_CLASSES) and ds.num_classes == 10
    assert ds.info == DatasetInfo("fashion-mnist", 1, 28, 10)
    pixels = arrays["train-images-idx3-ubyte"].astype(np.float64) / 255
    assert ds.mean[0] == pytest.approx(pixels.mean(), abs=1e-12)
    assert ds.std[0] == pytest.approx(pixels.std(), abs=1e-12)


def test_fashion_mnist_prefers_data_dir_subdirectory(tmp_path: Path) -> None:
    make_fashion(tmp_path / "fashion-mnist", n_train=3)
    make_fashion(tmp_path, n_train=4)
    assert load_dataset("fashion-mnist", tmp_path).train_images.shape[0] == 3


def test_read_idx_truncated(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros((4, 28, 28), np.uint8), 2051)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload[:-100]))
    with pytest.raises(DataError, match="truncated") as exc_info:
        read_idx(path, 2051)
    assert str(path) in one_line_error(exc_info)


def test_read_idx_truncated_header_and_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes((2051).to_bytes(4, "big") + b"\0\0")
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, 2051)
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8), 2051) + b"junk")
    with pytest.raises(DataError, match="unexpected bytes"):
        read_idx(path, 2051)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8), 2049)
    with pytest.raises(DataError, match="bad magic number 2049") as exc_info:
        read_idx(path, 2051)
    assert str(path) in one_line_error(exc_info)
    assert read_idx(path, 2049).shape == (5,)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((9, 28, 28), np.uint8), 2051))[:-30])
    with pytest.raises(DataError, match="corrupt gzip") as exc_info:
        read_idx(path, 2051)
    assert str(path) in one_line_error(exc_info)


def test_fashion_mnist_label_count_mismatch(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), 2049)
    with pytest.raises(DataError, match="label count mismatch") as exc_info:
        load_dataset("fashion-mnist", tmp_path)
    assert "5 images but" in one_line_error(exc_info)


def test_fashion_mnist_bad_magic_in_place(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((12, 1, 1), np.uint8), 2051)
    with pytest.raises(DataError, match="bad magic"):
        load_dataset("fashion-mnist", tmp_path)


def test_fashion_mnist_wrong_image_size(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 32, 32), np.uint8), 2051)
    with pytest.raises(DataError, match=r"expected N x 28 x 28 images, got shape \(5, 32, 32\)"):
        load_dataset("fashion-mnist", tmp_path)


def test_fashion_mnist_incomplete_directory(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)


def test_fashion_mnist_missing_says_where(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(idx, "FASHION_MNIST_SYSTEM_DIRS", (tmp_path / "system",))
    with pytest.raises(DataError, match="Fashion-MNIST not found") as exc_info:
        load_dataset("fashion-mnist", tmp_path / "d")
    message = one_line_error(exc_info)
    assert str(tmp_path / "d" / "fashion-mnist") in message
    assert "train-images-idx3-ubyte.gz" in message


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(tmp_path: Path) -> None:
    start = time.perf_counter()
    ds = load_dataset("fashion-mnist", tmp_path)  # empty data_dir: falls back to the system copy
    elapsed = time.perf_counter() - start
    assert ds.train_images.shape == (60000, 1, 28, 28)
    assert ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)
    assert elapsed < 10  # normally ~0.5 s; generous for slow CI machines


# ------------------------------------------------------------------------------------------
# CIFAR
# ------------------------------------------------------------------------------------------


def test_cifar10_round_trip(tmp_path: Path) -> None:
    written = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_images.reshape(20, -1).numpy(), written["train_x"])
    np.testing.assert_array_equal(ds.train_labels.numpy(), written["train_y"])
    np.testing.assert_array_equal(ds.test_images.reshape(3, -1).numpy(), written["test_x"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), written["test_y"])
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values, row-major
    assert ds.train_images[0, 1, 0, 5] == written["train_x"][0, 1024 + 5]
    assert ds.classes == list(cifar.CIFAR10_CLASSES)
    assert ds.info == DatasetInfo("cifar10", 3, 32, 10)
    channels = written["train_x"].reshape(20, 3, -1).astype(np.float64) / 255
    assert ds.mean == pytest.approx(tuple(channels.mean(axis=(0, 2))), abs=1e-12)
    assert ds.std == pytest.approx(tuple(channels.std(axis=(0, 2))), abs=1e-12)


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it (SHORT_BINSTRING / BINSTRING)."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def py2_cifar_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the official CIFAR release is: Python 2, protocol 2, numpy 1."""
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
        + _py2_int(0) + b"tb"
    )  # fmt: skip
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85"
        + _py2_str(b"b") + b"\x87R"
        + b"(" + _py2_int(1) + _py2_int(images.shape[0]) + _py2_int(images.shape[1]) + b"\x86"
        + dtype + b"\x89" + _py2_str(images.tobytes()) + b"tb"
    )  # fmt: skip
    label_list = b"](" + b"".join(_py2_int(v) for v in labels) + b"e"
    return b"\x80\x02}(" + _py2_str(b"data") + array + _py2_str(b"labels") + label_list + b"u."


def test_cifar_reads_python2_pickles(tmp_path: Path) -> None:
    written = make_cifar10(tmp_path)
    directory = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 6)]
    (directory / "test_batch").write_bytes(py2_cifar_pickle(images, labels))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy 2's numpy.core deprecation
        ds = load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.test_images.reshape(6, -1).numpy(), images)
    assert ds.test_labels.tolist() == labels
    np.testing.assert_array_equal(ds.train_labels.numpy(), written["train_y"])


def test_cifar10_data_dir_pointing_at_batches(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path / "cifar-10-batches-py")
    assert ds.train_images.shape[0] == 20


def test_cifar100_round_trip(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    ds = load_dataset("cifar-100", tmp_path)
    assert ds.name == "cifar100" and ds.num_classes == 100
    assert ds.train_images.shape == (7, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    assert ds.classes[:2] == ["c0", "c1"] and len(ds.classes) == 100


def test_cifar_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR-10 not found") as exc_info:
        load_dataset("cifar10", tmp_path)
    message = one_line_error(exc_info)
    assert str(tmp_path / "cifar-10-batches-py") in message and "download=True" in message


def test_cifar_incomplete_directory(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_cifar_corrupt_pickle(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt pickle file") as exc_info:
        load_dataset("cifar10", tmp_path)
    assert str(path) in one_line_error(exc_info)
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match="corrupt pickle file"):
        load_dataset("cifar10", tmp_path)


def test_cifar_refuses_code_in_pickles(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match=r"refusing to load global \w+\.print"):
        load_dataset("cifar10", tmp_path)


def test_cifar_missing_keys(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    write_pickle(path, {b"data": np.zeros((4, 3072), np.uint8)})
    with pytest.raises(DataError, match="no b'labels' entry") as exc_info:
        load_dataset("cifar10", tmp_path)
    assert str(path) in one_line_error(exc_info)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    make_cifar10(tmp_path / "again")
    write_pickle(tmp_path / "again" / "cifar-10-batches-py" / "batches.meta", {b"other": 1})
    with pytest.raises(DataError, match="no b'label_names' entry"):
        load_dataset("cifar10", tmp_path / "again")
    assert meta.is_file()


def test_cifar_label_count_mismatch_and_bad_shape(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]})
    with pytest.raises(DataError, match=r"label count mismatch.*3 images but 2 labels"):
        load_dataset("cifar10", tmp_path)
    write_pickle(path, {b"data": np.zeros((3, 1024), np.uint8), b"labels": [1, 2, 3]})
    with pytest.raises(DataError, match="expected N x 3072"):
        load_dataset("cifar10", tmp_path)
    write_pickle(path, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2, 10]})
    with pytest.raises(DataError, match=r"outside 0..9"):
        load_dataset("cifar10", tmp_path)


def test_cifar_wrong_number_of_class_names(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    write_pickle(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"label_names": [b"a"]})
    with pytest.raises(DataError, match="should list 10 class names"):
        load_dataset("cifar10", tmp_path)


def test_cifar_rejects_other_shapes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("cifar10", tmp_path, image_size=64)


# ------------------------------------------------------------------------------------------
# downloads, checksums, archives
# ------------------------------------------------------------------------------------------


def cifar_tarball(tmp_path: Path) -> bytes:
    source = tmp_path / "source"
    make_cifar10(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buffer.getvalue()


def test_verify_md5(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"hello rwenas")
    verify_md5(path, hashlib.md5(b"hello rwenas").hexdigest())
    verify_md5(path, hashlib.md5(b"hello rwenas").hexdigest().upper())
    with pytest.raises(DataError, match="checksum mismatch") as exc_info:
        verify_md5(path, "0" * 32)
    assert str(path) in one_line_error(exc_info)
    with pytest.raises(DataError, match="cannot read"):
        verify_md5(tmp_path / "absent.bin", "0" * 32)


def test_failed_download_is_a_data_error(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="could not download") as exc_info:
        load_dataset("cifar10", tmp_path, download=True)
    message = one_line_error(exc_info)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message
    assert not list(tmp_path.iterdir())  # no partial file left behind

    monkeypatch.setattr(idx, "FASHION_MNIST_SYSTEM_DIRS", ())
    with pytest.raises(DataError, match=r"could not download .*train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path, download=True)


def test_download_extracts_and_loads(tmp_path: Path, monkeypatch) -> None:
    tarball = cifar_tarball(tmp_path)
    spec = dataclasses.replace(cifar.CIFAR_SPECS["cifar10"], md5=hashlib.md5(tarball).hexdigest())
    monkeypatch.setitem(cifar.CIFAR_SPECS, "cifar10", spec)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(tarball)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    target = tmp_path / "data"
    ds = load_dataset("cifar10", target, download=True)
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert ds.train_images.shape == (20, 3, 32, 32)
    assert (target / "cifar-10-python.tar.gz").is_file()


def test_download_with_bad_checksum(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"junk"))
    with pytest.raises(DataError, match="md5 mismatch") as exc_info:
        load_dataset("cifar10", tmp_path, download=True)
    assert "put it at" in one_line_error(exc_info)
    assert not list(tmp_path.iterdir())


def test_local_tarball_is_verified_and_extracted(tmp_path: Path, monkeypatch) -> None:
    tarball = cifar_tarball(tmp_path)
    target = tmp_path / "data"
    target.mkdir()
    (target / "cifar-10-python.tar.gz").write_bytes(tarball)
    with pytest.raises(DataError, match="checksum mismatch"):  # not the official md5
        load_dataset("cifar10", target)
    spec = dataclasses.replace(cifar.CIFAR_SPECS["cifar10"], md5=hashlib.md5(tarball).hexdigest())
    monkeypatch.setitem(cifar.CIFAR_SPECS, "cifar10", spec)
    assert load_dataset("cifar10", target).test_images.shape == (3, 3, 32, 32)


def test_extraction_refuses_path_traversal(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(buffer.getvalue())
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="points outside"):
        download.safe_extract(archive, dest)
    assert not (tmp_path / "escaped.txt").exists()


# ------------------------------------------------------------------------------------------
# image folders
# ------------------------------------------------------------------------------------------


def test_image_folder_round_trip(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    ds = load_dataset("imagefolder", tmp_path, image_size=8)
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert ds.train_images.shape == (6, 3, 8, 8) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (6, 3, 8, 8)
    assert ds.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    # solid colours survive the resize exactly
    assert ds.train_images[0, :, 4, 4].tolist() == [255, 0, 0]
    assert ds.train_images[3, :, 0, 0].tolist() == [0, 255, 0]
    assert ds.info == DatasetInfo("imagefolder", 3, 8, 3)
    assert load_dataset("imagefolder", tmp_path).train_images.shape[-1] == 32
    grey = load_dataset("imagefolder", tmp_path, image_size=4, in_channels=1)
    assert grey.train_images.shape == (6, 1, 4, 4)


def test_image_folder_accepts_test_directory(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "val").rename(tmp_path / "test")
    assert load_dataset("imagefolder", tmp_path, image_size=4).test_images.shape[0] == 6


def test_image_folder_unreadable_image(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot read image") as exc_info:
        load_dataset("imagefolder", tmp_path)
    assert str(bad) in one_line_error(exc_info)


def test_image_folder_mismatched_classes(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "val" / "emu").rename(tmp_path / "val" / "yak")
    with pytest.raises(DataError, match="class directories differ") as exc_info:
        load_dataset("imagefolder", tmp_path)
    message = one_line_error(exc_info)
    assert "emu" in message and "yak" in message


def test_image_folder_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train/ directory"):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_dataset("imagefolder")
    make_image_folder(tmp_path)
    with pytest.raises(DataError, match="num_classes=5"):
        load_dataset("imagefolder", tmp_path, num_classes=5)
    (tmp_path / "train" / "cat" / "0.png").unlink()
    (tmp_path / "train" / "cat" / "1.png").unlink()
    with pytest.raises(DataError, match=r"without images.*cat"):
        load_dataset("imagefolder", tmp_path)


def test_imagenet_is_info_only() -> None:
    with pytest.raises(ConfigError, match="imagefolder"):
        load_dataset("imagenet")


# ------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------


def test_synthetic_shapes_and_determinism() -> None:
    a = load_dataset("synthetic", synthetic_size=(300, 100), seed=3)
    b = load_dataset("synthetic", synthetic_size=(300, 100), seed=3)
    c = load_dataset("synthetic", synthetic_size=(300, 100), seed=4)
    assert a.name == "synthetic" and a.info == DatasetInfo("synthetic", 1, 28, 10)
    assert a.train_images.shape == (300, 1, 28, 28) and a.test_images.shape == (100, 1, 28, 28)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert torch.bincount(a.train_labels).tolist() == [30] * 10
    rgb = load_dataset(
        "synthetic", synthetic_size=(40, 8), image_size=16, num_classes=4, in_channels=3
    )
    assert rgb.train_images.shape == (40, 3, 16, 16) and rgb.num_classes == 4
    assert len(rgb.mean) == 3 and rgb.info == DatasetInfo("synthetic", 3, 16, 4)


def test_synthetic_is_learnable_but_not_trivial() -> None:
    ds = load_dataset("synthetic", synthetic_size=(2000, 500))
    x = ds.normalise(ds.train_images).flatten(1)
    xt = ds.normalise(ds.test_images).flatten(1)
    centroids = torch.stack([x[ds.train_labels == k].mean(0) for k in range(ds.num_classes)])
    accuracy = (torch.cdist(xt, centroids).argmin(1) == ds.test_labels).float().mean().item()
    chance = 1 / ds.num_classes
    assert 2 * chance < accuracy < 0.99


def test_synthetic_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="train size"):
        load_dataset("synthetic", synthetic_size=(0, 10))
    with pytest.raises(ConfigError, match="pair"):
        load_dataset("synthetic", synthetic_size=(10,))


# ------------------------------------------------------------------------------------------
# Dataset, normalisation
# ------------------------------------------------------------------------------------------


def tiny_dataset() -> Dataset:
    # channel 0 holds 0 and 255 in equal measure, channel 1 is 51 everywhere but one 102
    train = torch.zeros(2, 2, 2, 2, dtype=torch.uint8)
    train[0, 0] = 255
    train[:, 1] = 51
    train[1, 1, 1, 1] = 102
    test = torch.full((1, 2, 2, 2), 255, dtype=torch.uint8)
    labels = torch.tensor([0, 1])
    return Dataset.from_tensors("toy", train, labels, test, torch.tensor([1]), ["a", "b"])


def test_mean_std_and_normalise_by_hand() -> None:
    ds = tiny_dataset()
    assert ds.mean[0] == pytest.approx(0.5) and ds.std[0] == pytest.approx(0.5)
    # channel 1: seven pixels of 0.2 and one of 0.4 -> mean 0.225, var 0.0175 - ... by hand:
    values = np.array([0.2] * 7 + [0.4])
    assert ds.mean[1] == pytest.approx(0.225)
    assert ds.std[1] == pytest.approx(np.sqrt(((values - 0.225) ** 2).mean()))
    out = ds.normalise(ds.train_images)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 2, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    assert out[1, 0, 0, 0].item() == pytest.approx(-1.0)  # (0 - 0.5) / 0.5
    assert out[0, 1, 0, 0].item() == pytest.approx((0.2 - 0.225) / ds.std[1], rel=1e-5)
    single = ds.normalise(ds.test_images[0])
    assert single.shape == (2, 2, 2)
    assert single[1, 0, 0].item() == pytest.approx((1.0 - 0.225) / ds.std[1], rel=1e-5)
    # normalised training data has zero mean and unit std per channel
    assert out.mean(dim=(0, 2, 3)).abs().max().item() < 1e-6
    assert out.std(dim=(0, 2, 3), unbiased=False).tolist() == pytest.approx([1.0, 1.0])


def test_constant_channel_gets_unit_std() -> None:
    images = torch.full((3, 1, 2, 2), 7, dtype=torch.uint8)
    ds = Dataset.from_tensors(
        "flat",
        images,
        torch.zeros(3, dtype=torch.long),
        images,
        torch.zeros(3, dtype=torch.long),
        ["only"],
    )
    assert ds.std == (1.0,)
    assert torch.isfinite(ds.normalise(images)).all()


def test_normalise_rejects_wrong_input() -> None:
    ds = tiny_dataset()
    with pytest.raises(ConfigError, match="uint8"):
        ds.normalise(ds.train_images.float())
    with pytest.raises(ConfigError, match="2 x H x W"):
        ds.normalise(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_dataset_checks_consistency() -> None:
    x = torch.zeros(4, 1, 3, 3, dtype=torch.uint8)
    with pytest.raises(DataError, match="4 train images but 3 labels"):
        Dataset.from_tensors(
            "bad", x, torch.zeros(3, dtype=torch.long), x, torch.zeros(4, dtype=torch.long), ["a"]
        )
    with pytest.raises(DataError, match=r"outside 0..1"):
        Dataset.from_tensors(
            "bad", x, torch.full((4,), 2), x, torch.zeros(4, dtype=torch.long), ["a", "b"]
        )
    with pytest.raises(DataError, match="H == W"):
        y = torch.zeros(4, 1, 3, 4, dtype=torch.uint8)
        Dataset.from_tensors("bad", y, torch.zeros(4), y, torch.zeros(4), ["a"])


# ------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------


def indexed_dataset(n: int = 200, n_test: int = 10) -> Dataset:
    """Training image i is filled with the value i (test images with 255), label i % 4."""
    train = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    test = torch.full((n_test, 1, 4, 4), 255, dtype=torch.uint8)
    return Dataset.from_tensors(
        "indexed", train, torch.arange(n) % 4, test, torch.arange(n_test) % 4, list("abcd")
    )


def recover(ds: Dataset, x: torch.Tensor) -> torch.Tensor:
    """Undo normalisation: the uint8 value of each image's first pixel."""
    pixels = (x[:, 0, 0, 0].double() * ds.std[0] + ds.mean[0]) * 255
    return pixels.round().long()


def test_search_split_sizes_disjoint_and_complete() -> None:
    ds = indexed_dataset()
    split = search_split(ds, seed=0)
    assert split.train_x.shape == (160, 1, 4, 4) and split.val_x.shape == (40, 1, 4, 4)
    assert split.train_x.dtype == torch.float32 and split.train_y.dtype == torch.int64
    train_ids, val_ids = recover(ds, split.train_x), recover(ds, split.val_x)
    assert set(train_ids.tolist()).isdisjoint(val_ids.tolist())
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(200))  # no test images
    assert torch.equal(split.train_y, train_ids % 4) and torch.equal(split.val_y, val_ids % 4)
    expected = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    assert torch.equal(val_ids, expected[160:])  # the last 20 % of the seeded permutation


def test_search_split_determinism_and_seeds() -> None:
    ds = indexed_dataset()
    a, b, c = search_split(ds, seed=7), search_split(ds, seed=7), search_split(ds, seed=8)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(recover(ds, a.val_x), recover(ds, c.val_x))
    other = search_split(ds, seed=7, val_fraction=0.5)
    assert other.train_x.shape[0] == other.val_x.shape[0] == 100


def test_search_split_subsampling() -> None:
    ds = indexed_dataset()
    full = search_split(ds, seed=1)
    small = search_split(ds, seed=1, train_size=50, val_size=10)
    assert small.train_x.shape[0] == 50 and small.val_x.shape[0] == 10
    assert torch.equal(small.train_x, full.train_x[:50]) and torch.equal(
        small.val_y, full.val_y[:10]
    )
    with pytest.raises(ConfigError, match="train_size=161 is larger than the 160"):
        search_split(ds, train_size=161)
    with pytest.raises(ConfigError, match="val_size=41"):
        search_split(ds, val_size=41)
    with pytest.raises(ConfigError, match="val_size"):
        search_split(ds, val_size=0)
    for fraction in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="val_fraction"):
            search_split(ds, val_fraction=fraction)
    with pytest.raises(ConfigError, match="empty"):
        search_split(indexed_dataset(n=2), val_fraction=0.1)


def test_test_split() -> None:
    ds = indexed_dataset()
    split = test_split(ds)
    assert split.train_x.shape == (200, 1, 4, 4) and split.val_x.shape == (10, 1, 4, 4)
    assert torch.equal(split.train_x, ds.normalise(ds.train_images))
    assert torch.equal(split.val_x, ds.normalise(ds.test_images))
    assert torch.equal(split.val_y, ds.test_labels)
    small = test_split(ds, train_size=30, test_size=5, seed=2)
    assert small.train_x.shape[0] == 30 and small.val_y.shape[0] == 5
    assert torch.equal(small.train_x, test_split(ds, train_size=30, test_size=5, seed=2).train_x)
    ids = recover(ds, small.train_x)
    assert torch.equal(small.train_y, ids % 4) and len(set(ids.tolist())) == 30
    with pytest.raises(ConfigError, match="test_size=11"):
        test_split(ds, test_size=11)
