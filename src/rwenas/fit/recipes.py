"""Training recipes of the validation stage (CIFAR-style) and of the ImageNet transfer.

A recipe is every hyper-parameter of a from-scratch training run: optimiser, schedule,
regularisation, augmentation and the network scale. :class:`CifarRecipe` defaults to the
paper's validation setting (SPEC §4: NSGA-Net/DARTS CIFAR training), :class:`ImageNetRecipe`
to the mobile ImageNet transfer (SPEC §7, DARTS ImageNet). Every field can be overridden::

    recipe = CifarRecipe(epochs=2, batch_size=128)
    recipe = recipe.replace(cutout=0)

``channels`` / ``layers`` / ``increment`` left at ``None`` take the values of the network
setting (``validation``: 34 channels, 20 cells, increment 4; ``imagenet``: 48 channels, 14
cells, three stride-2 stem convolutions; see :data:`rwenas.build.PRESETS`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rwenas.errors import ConfigError
from rwenas.fit.schedules import SCHEDULES

__all__ = ["RECIPES", "CifarRecipe", "ImageNetRecipe", "Recipe", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """All hyper-parameters of one training run (defaults: the CIFAR validation setting)."""

    name: str = "cifar"
    #: Network setting of :data:`rwenas.build.PRESETS` the network is built at.
    setting: str = "validation"
    channels: int | tuple[int, ...] | None = None
    layers: int | None = None
    increment: int | None = None
    #: Macro phase decoder, ``residual`` or ``dense`` (``None``: the setting's, dense).
    decoder: str | None = None
    # optimisation
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    #: Clip the gradient norm to this value (0: no clipping).
    grad_clip: float = 5.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    # regularisation
    #: Weight of the auxiliary head's loss (0: the network is built without the head).
    auxiliary_weight: float = 0.4
    #: Final drop-path probability; epoch ``e`` uses ``drop_path * e / epochs``.
    drop_path: float = 0.2
    label_smoothing: float = 0.0
    # augmentation (on batched tensors, see rwenas.fit.augment)
    #: Zero padding of the random crop (0: no crop). Ignored with ``resized_crop``.
    crop_padding: int = 4
    flip: bool = True
    #: Side of the cutout square (0: no cutout).
    cutout: int = 16
    #: Random resized crop (ImageNet style) instead of the padded crop.
    resized_crop: bool = False
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    #: Brightness, contrast and saturation jitter strength (0: none).
    color_jitter: float = 0.0
    #: Training/test image size (``None``: the dataset's; imagefolder loads at this size).
    image_size: int | None = None
    #: Report top-5 error as well as top-1.
    top5: bool = False

    kind: ClassVar[str] = "recipe"

    def __post_init__(self) -> None:
        for name in ("channels", "crop_scale", "crop_ratio"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self._check()

    # -- checks ---------------------------------------------------------------------------------
    def _check(self) -> None:
        def positive_int(name: str, allow_none: bool = False, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            ok = isinstance(value, int) and not isinstance(value, bool) and (
                value >= 0 if allow_zero else value >= 1)
            if not ok:
                need = "a non-negative" if allow_zero else "a positive"
                raise ConfigError(f"recipe {name} must be {need} integer, got {value!r}")

        def number(name: str, low: float = 0.0, high: float = math.inf,
                   high_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < low or value > high \
                    or (high_open and value >= high):
                bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
                raise ConfigError(f"recipe {name} must be a number in {bound}, got {value!r}")

        for name in ("epochs", "batch_size"):
            positive_int(name)
        positive_int("layers", allow_none=True)
        positive_int("image_size", allow_none=True)
        positive_int("increment", allow_none=True, allow_zero=True)
        positive_int("crop_padding", allow_zero=True)
        positive_int("cutout", allow_zero=True)
        channels = self.channels
        if channels is not None:
            parts = channels if isinstance(channels, tuple) else (channels,)
            if not parts or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                for c in parts):
                raise ConfigError(f"recipe channels must be positive integers, got {channels!r}")
        for name in ("lr", "weight_decay", "grad_clip", "auxiliary_weight", "final_lr",
                     "color_jitter"):
            number(name)
        number("momentum", 0.0, 1.0, high_open=True)
        number("drop_path", 0.0, 1.0, high_open=True)
        number("label_smoothing", 0.0, 1.0, high_open=True)
        number("warmup_epochs", 0.0, float(self.epochs), high_open=True)
        if self.decoder not in (None, "residual", "dense"):
            raise ConfigError(f"recipe decoder must be residual or dense, got {self.decoder!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r} (known: "
                              f"{', '.join(SCHEDULES)})")
        for name in ("crop_scale", "crop_ratio"):
            pair = getattr(self, name)
            if (not isinstance(pair, tuple) or len(pair) != 2
                    or not all(isinstance(v, int | float) and v > 0 for v in pair)
                    or pair[0] > pair[1]):
                raise ConfigError(f"recipe {name} must be two positive numbers (low, high), "
                                  f"got {pair!r}")
        if self.crop_scale[1] > 1.0:
            raise ConfigError(f"recipe crop_scale must not exceed 1, got {self.crop_scale}")
        if not isinstance(self.flip, bool) or not isinstance(self.resized_crop, bool) \
                or not isinstance(self.top5, bool):
            raise ConfigError("recipe flip, resized_crop and top5 must be true or false")

    # -- conversions ----------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` (``None`` values are ignored: "not given")."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown recipe field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe of :meth:`to_dict` (the class follows ``data["name"]``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a recipe must be a mapping, got {type(data).__name__}")
        base = RECIPES.get(str(data.get("name", "cifar")), Recipe)
        known = {f.name for f in dataclasses.fields(base)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown recipe field(s): {', '.join(unknown)}")
        return base(**dict(data))


@dataclass(frozen=True)
class CifarRecipe(Recipe):
    """The validation setting (paper/NSGA-Net CIFAR-10): 600 epochs, batch 96, SGD lr 0.025
    cosine to 0, momentum 0.9, weight decay 3e-4, gradient clipping 5, auxiliary weight 0.4,
    drop path 0.2, cutout 16, 4-pixel padded random crop and horizontal flip; network at the
    ``validation`` setting (20 cells, 34 channels, increment 4)."""

    kind: ClassVar[str] = "cifar"


@dataclass(frozen=True)
class ImageNetRecipe(Recipe):
    """Mobile ImageNet transfer (SPEC §7, DARTS ImageNet): 250 epochs, batch 1024, SGD lr 0.5
    with 5 linear warm-up epochs then linear decay to 1e-5, momentum 0.9, weight decay 3e-5,
    label smoothing 0.1, auxiliary weight 0.4, gradient clipping 5, random resized crop
    (scale 0.08-1, ratio 3/4-4/3) to 224, flip, colour jitter 0.4; top-1 and top-5 error;
    network at the ``imagenet`` setting (14 cells, 48 channels, 8x down-sampling stem)."""

    name: str = "imagenet"
    setting: str = "imagenet"
    epochs: int = 250
    batch_size: int = 1024
    lr: float = 0.5
    weight_decay: float = 3e-5
    schedule: str = "warmup_linear"
    warmup_epochs: float = 5.0
    final_lr: float = 1e-5
    drop_path: float = 0.0
    label_smoothing: float = 0.1
    crop_padding: int = 0
    cutout: int = 0
    resized_crop: bool = True
    color_jitter: float = 0.4
    image_size: int | None = 224
    top5: bool = True

    kind: ClassVar[str] = "imagenet"


#: Recipes by name (``rwenas train --recipe``).
RECIPES: dict[str, type[Recipe]] = {"cifar": CifarRecipe, "imagenet": ImageNetRecipe}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with ``overrides`` (``None`` = keep the default)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]().replace(**overrides)
