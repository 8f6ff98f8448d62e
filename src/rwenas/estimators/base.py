"""The estimator interface: anything that scores an architecture from a network factory.

Every estimator returns a :class:`Score` whose ``value`` is LOWER-IS-BETTER, so that a search
can minimise any of them: proxies whose paper says "higher is better" are negated into
``value``, while ``raw`` keeps the number exactly as its paper defines it (sign included).
A non-finite proxy is reported with ``value = +inf`` (the worst) and a ``RuntimeWarning``.

The helpers below are shared by the estimators: :func:`build_network` calls a factory under a
forked RNG seeded with ``seed`` (as :func:`rwenas.estimators.rwe.rwe` does), and
:func:`draw_batch` draws a seeded minibatch of the training split.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from rwenas.data import Split
from rwenas.errors import ConfigError

__all__ = ["Estimator", "Score", "build_network", "draw_batch", "make_score"]


@dataclass
class Score:
    """One estimate. ``value``: lower is better, for every estimator; ``raw``: the quantity as
    its paper defines it (sign as in the paper); ``seconds``: wall-clock time of the whole
    estimate (building the network included); ``name``: the estimator's name."""

    value: float
    raw: float
    seconds: float
    name: str

    @property
    def finite(self) -> bool:
        """Whether the estimate is usable (``value`` is not the +inf given to NaN/inf)."""
        return math.isfinite(self.value)


@runtime_checkable
class Estimator(Protocol):
    """Scores the network built by ``network_factory`` on ``split``; the same ``seed`` gives
    the same network, the same data batch and the same score."""

    name: str

    def score(self, network_factory: Callable[[], nn.Module], split: Split, *,
              seed: int = 0) -> Score:
        ...


def build_network(network_factory: Callable[[], nn.Module] | nn.Module, seed: int) -> nn.Module:
    """Call the factory with torch's RNG seeded by ``seed`` inside a forked RNG state (global
    state untouched). A module given instead of a factory is deep-copied (estimators modify
    the network they score)."""
    if isinstance(network_factory, nn.Module):
        return copy.deepcopy(network_factory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return network_factory()


def draw_batch(split: Split, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` training images and labels picked by a ``torch.Generator`` seeded with
    ``seed`` (without replacement; the whole training split if it is smaller)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    n = len(split.train_x)
    if n == 0:
        raise ConfigError("the training split is empty")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:batch_size]
    return split.train_x[idx], split.train_y[idx]


def make_score(name: str, raw: float, seconds: float, *, higher_is_better: bool) -> Score:
    """A :class:`Score` with ``value = -raw`` (higher-is-better proxies) or ``raw``; a NaN/inf
    ``raw`` gives ``value = +inf`` and a ``RuntimeWarning``."""
    raw = float(raw)
    if not math.isfinite(raw):
        warnings.warn(f"{name} is {raw}; its value is set to the worst, +inf", RuntimeWarning,
                      stacklevel=3)
        return Score(math.inf, raw, seconds, name)
    return Score(-raw if higher_is_better else raw, raw, seconds, name)
