"""CIFAR-10 / CIFAR-100 in the python-pickle format, unpickled with an allow-list."""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.data.dataset import Dataset, one_line
from rwenas.data.download import default_data_dir, download_file, safe_extract, verify_md5
from rwenas.errors import DataError

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


CIFAR_SPECS = {
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
        raise DataError(f"cannot read {path}: {one_line(exc)}") from None
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise DataError(
            f"corrupt pickle file {path}: {type(exc).__name__}: {one_line(exc)}"
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


def load_cifar(spec: _CifarSpec, data_dir: Path | None, download: bool) -> Dataset:
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
        safe_extract(archive, base)
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
