"""Reduced training as an estimator (SPEC §7: 10 epochs, 16 channels, 8 layers).

The network is trained from scratch with :func:`rwenas.fit.loop.fit` on the split's training
part and scored on its validation part: ``value = raw =`` the validation error after the short
training (a fraction; lower is better). The recipe is plain SGD with a cosine schedule, no
auxiliary head, no drop path, no cutout, no crop and no flip ("no augmentation-heavy extras").

The network scale is not something an :class:`~rwenas.estimators.base.Estimator` controls (it
gets a network factory); :attr:`ShortTraining.network` says at which scale the factory should
build (``{"channels": 16, "layers": 8}``), and :mod:`rwenas.study` honours it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rwenas.data import Split
from rwenas.errors import ConfigError
from rwenas.estimators.base import Score, build_network, make_score

__all__ = ["ShortTraining", "short_recipe", "split_train_data"]


def short_recipe(epochs: int = 10, *, batch_size: int = 96, lr: float = 0.05,
                 weight_decay: float = 3e-4, **extra: Any):
    """A :class:`~rwenas.fit.recipes.Recipe` for short trainings: the ``search`` setting,
    cosine schedule, no auxiliary head, drop path, cutout, crop or flip."""
    from rwenas.fit.recipes import Recipe

    values: dict[str, Any] = dict(name="short", setting="search", epochs=int(epochs),
                                  batch_size=int(batch_size), lr=float(lr),
                                  weight_decay=float(weight_decay), auxiliary_weight=0.0,
                                  drop_path=0.0, cutout=0, crop_padding=0, flip=False,
                                  grad_clip=5.0)
    values.update(extra)
    try:
        return Recipe(**values)
    except TypeError as exc:
        raise ConfigError(f"bad short-training recipe: {exc}") from None


def split_train_data(split: Split, num_classes: int | None = None):
    """A :class:`~rwenas.fit.loop.TrainData` training on ``split``'s training part and
    testing on its validation part. The split's images are already normalised, so the
    statistics given to the trainer are mean 0, std 1."""
    from rwenas.fit.loop import TrainData

    channels = int(split.train_x.shape[1])
    if num_classes is None:
        num_classes = int(torch.cat([split.train_y, split.val_y]).max()) + 1
    return TrainData("split", split.train_x, split.train_y, split.val_x, split.val_y,
                     int(num_classes), (0.0,) * channels, (1.0,) * channels)


class ShortTraining:
    """Validation error after a short from-scratch training (lower is better).

    ``epochs``, ``lr``, ``batch_size``, ``weight_decay``: the recipe; ``channels`` and
    ``layers``: the scale the network should be built at (:attr:`network`; ``None`` keeps the
    factory's own); ``train_size``: train on the first N images of the split only;
    ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``; ``precision``: as in
    :func:`rwenas.fit.loop.fit`.
    """

    name = "short_training"

    def __init__(self, epochs: int = 10, channels: int | None = 16, layers: int | None = 8,
                 lr: float = 0.05, batch_size: int = 96, weight_decay: float = 3e-4,
                 train_size: int | None = None, device: str = "auto",
                 precision: str = "auto") -> None:
        self.recipe = short_recipe(epochs, batch_size=batch_size, lr=lr,
                                   weight_decay=weight_decay)
        for what, v in (("channels", channels), ("layers", layers), ("train_size", train_size)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"short_training {what} must be a positive integer, got {v!r}")
        self.channels = channels
        self.layers = layers
        self.train_size = train_size
        self.device = device
        self.precision = precision

    @property
    def network(self) -> dict[str, Any]:
        """Network-scale overrides for the factory (what SPEC §7 calls the reduced setting)."""
        return {k: v for k, v in (("channels", self.channels), ("layers", self.layers))
                if v is not None}

    def score(self, network_factory: Callable[[], nn.Module] | nn.Module, split: Split, *,
              seed: int = 0) -> Score:
        from rwenas.fit.loop import fit

        t0 = time.perf_counter()
        net = build_network(network_factory, seed)
        if self.train_size is not None:
            split = Split(split.train_x[: self.train_size], split.train_y[: self.train_size],
                          split.val_x, split.val_y)
        data = split_train_data(split)
        result = fit(net, data, self.recipe, seed=seed, device=self.device,
                     precision=self.precision, test_every_epoch=False)
        error = result.test_error
        return make_score(self.name, float("nan") if error is None else error,
                          time.perf_counter() - t0, higher_is_better=False)

    def __repr__(self) -> str:
        r = self.recipe
        return (f"ShortTraining(epochs={r.epochs}, channels={self.channels}, "
                f"layers={self.layers}, lr={r.lr}, batch_size={r.batch_size})")
