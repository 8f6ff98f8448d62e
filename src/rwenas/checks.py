"""Checks of the numbers a user gives, done once where they enter (flags, config files).

:func:`check_number` is the one place that decides whether a value is an integer or a finite
number within its range; :func:`number_arg` turns it into an ``argparse`` type, so that a flag
and the same setting in a TOML file are checked alike and fail with the same one-line message,
naming the setting, the bad value and the allowed range.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any

from rwenas.errors import ConfigError

#: Largest seed: NumPy's and pymoo's generators take seeds below 2**32.
MAX_SEED = 2**32 - 1

#: Upper bounds of network sizes given by hand. They are far beyond any network in the paper
#: (ImageNet: 48 channels, 14 cells), and low enough that a typo fails at once instead of
#: allocating terabytes or building for hours.
MAX_CHANNELS = 2048
MAX_LAYERS = 100
MAX_INCREMENT = 256
MAX_IMAGE_SIZE = 4096

#: Bounds of the search's own integers: beyond them a run would not start in a lifetime.
MAX_POP_SIZE = 100_000
MAX_GENERATIONS = 1_000_000
MAX_WORKERS = 1024
MAX_THREADS = 1024
MAX_RETRIES = 100
#: A search's time budget: a year of minutes (more is a typo, or no budget at all).
MAX_MINUTES = 525_600

#: Integers longer than this many digits are refused before Python converts them (a
#: 5,000-digit number takes noticeable time and means a typo, never a setting).
_MAX_DIGITS = 30


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"<= {_num(high)}"
    return ""


def check_number(name: str, value: Any, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 optional: bool = False) -> int | float | None:
    """``value`` as an ``int`` (``integer``) or a finite ``float`` within ``[low, high]``
    (``(low, high]`` with ``low_open``), else :class:`ConfigError` naming ``name``.

    Strings are parsed (so a flag and a TOML value go through the same check); booleans,
    NaN, infinities and integers of absurd length are refused. ``optional``: ``None`` passes.
    """
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a finite number"
    what = f"{kind} {_range_text(low, high, low_open)}".rstrip()
    bad = ConfigError(f"{name} must be {what}, got {_short(value)}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        text = value.strip()
        if len(text.lstrip("+-").lstrip("0")) > _MAX_DIGITS:
            raise bad
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise bad from None
    if integer:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise bad
        number: int | float = value
    else:
        if not isinstance(value, int | float):
            raise bad
        try:
            number = float(value)
        except OverflowError:
            raise bad from None
        if not math.isfinite(number):
            raise bad
    if low is not None and (number < low or (low_open and number == low)):
        raise bad
    if high is not None and number > high:
        raise bad
    return number


def number_arg(name: str, **limits: Any) -> Callable[[str], int | float]:
    """An ``argparse`` type for flag ``name`` that applies :func:`check_number`."""

    def parse(text: str) -> int | float:
        try:
            value = check_number(name, text, **limits)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        assert value is not None
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def check_text(name: str, value: Any, *, optional: bool = False) -> str | None:
    """``value`` if it is a string (``None`` too when ``optional``), else :class:`ConfigError`."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {_short(value)}")
    return value


_DEVICE = re.compile(r"(auto|cpu|mps|cuda)(:(\d{1,3}))?")


def check_device(device: Any, *, cuda_here: bool = True) -> str:
    """``device`` if it names a device torch can use: ``auto``, ``cpu``, ``mps``, ``cuda`` or
    ``cuda:N``. With ``cuda_here``, CUDA must be available in this process (not so for a Ray
    cluster, whose workers may have GPUs the driver lacks)."""
    text = check_text("device", device)
    assert text is not None
    match = _DEVICE.fullmatch(text.strip())
    if match is None or (match.group(2) and match.group(1) != "cuda"):
        raise ConfigError(f"unknown device {_short(device)} (known: auto, cpu, cuda, cuda:N, "
                          "mps)")
    if match.group(1) == "cuda" and cuda_here:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {text} requested but CUDA is not available here "
                              "(use --device cpu or auto)")
        index = int(match.group(3) or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {text}: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    return text.strip()
