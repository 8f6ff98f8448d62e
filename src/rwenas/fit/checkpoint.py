"""Training checkpoints: atomic writes, safe loading, complete random-number state.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data, so it is
read back with ``torch.load(weights_only=True)`` (no arbitrary unpickling). It is written to a
temporary file in the same directory, flushed to disk and moved over the old one with
``os.replace``: a crash while saving leaves the previous checkpoint intact.

Every problem with a checkpoint file — missing, empty, truncated, random bytes, a PyTorch file
of another structure, a newer format — raises :class:`CheckpointError` with one line.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from rwenas.errors import RwenasError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng",
    "load_checkpoint",
    "resolve_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "rwenas-train-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RwenasError):
    """A checkpoint is missing, corrupt, truncated or not an rwenas training checkpoint."""


# -- atomic files ---------------------------------------------------------------------------------
def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, and move it over
    ``path`` with ``os.replace``: a crash leaves the old file (or none), never half of one."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``state`` atomically (tmp file in the same directory + ``os.replace``)."""
    return _atomic_write(path, lambda f: torch.save(dict(state), f))


# -- random-number state ---------------------------------------------------------------------------
def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random-number state a training run draws from, as tensors and plain types:
    torch's CPU generator, ``generator`` (the run's own, for shuffling and augmentation),
    CUDA's generators when present, Python's ``random`` and NumPy's legacy global state."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state() if generator is not None else None,
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "cached": float(np_cached)},
    }


def restore_rng(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Undo :func:`capture_rng` (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))


# -- loading ---------------------------------------------------------------------------------------
def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint file, or the checkpoint of a training output directory."""
    path = Path(source)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        where = f"in {source}" if Path(source).is_dir() else f"at {source}"
        raise CheckpointError(f"no checkpoint {where}")
    return path


def _first_line(exc: BaseException, limit: int = 120) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "model": Mapping, "optimizer": Mapping, "rng": Mapping, "history": list,
    "run": str, "elapsed": (int, float),
}


def load_checkpoint(source: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint (file or output directory): ``torch.load`` with
    ``weights_only=True`` onto the CPU, then the structure is verified. Any problem raises
    :class:`CheckpointError` with a one-line message."""
    path = resolve_checkpoint(source)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (not a complete "
                              "PyTorch archive)")
    try:  # the zip records' CRC-32 sums catch flipped bits that torch.load would not
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt "
                              f"({_first_line(exc)})") from None
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch in "
                              f"{damaged.rsplit('/', 1)[-1]!r})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(f"{path} holds Python objects other than tensors and plain "
                                  "data: not an rwenas checkpoint (refusing to unpickle it)"
                                  ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt ({_first_line(exc)})") from None
    except Exception as exc:  # torch raises RuntimeError/ValueError/EOFError/... on bad bytes
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt "
                              f"({_first_line(exc)})") from None
    if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rwenas training checkpoint (a PyTorch file "
                              "of another structure)")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; this rwenas "
                              f"reads version {CHECKPOINT_VERSION} (upgrade rwenas)")
    for key, kind in _REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path} is incomplete: it has no {key!r} entry")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"checkpoint {path} is damaged: {key!r} is a "
                                  f"{type(state[key]).__name__}")
    rng = state["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or not isinstance(rng.get("python"),
                                                                          Mapping) \
            or not isinstance(rng.get("numpy"), Mapping):
        raise CheckpointError(f"checkpoint {path} is damaged: its random-number state is "
                              "incomplete")
    try:
        run = json.loads(state["run"])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} is damaged: its run description is not "
                              "JSON") from None
    if not isinstance(run, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its run description is not an "
                              "object")
    out = dict(state)
    out["run"] = run
    out["path"] = str(path)
    return out
