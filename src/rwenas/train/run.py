"""``rwenas train``'s Python side: an architecture (:class:`rwenas.build.Architecture`), a
recipe and a dataset name → the network built at the recipe's setting, trained by
:func:`rwenas.fit.loop.fit` in a resumable output directory; and the way back from a run's
description to its network."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rwenas.errors import ConfigError
from rwenas.fit.checkpoint import CheckpointError, load_checkpoint
from rwenas.fit.loop import EpochCallback, TrainData, TrainResult, fit, seed_all
from rwenas.fit.recipes import CifarRecipe, Recipe

__all__ = ["build_for_recipe", "network_from_run", "read_run", "train"]


# -- architectures → networks ---------------------------------------------------------------------
_MICRO_ONLY = ("layers", "increment")


def build_for_recipe(architecture: Any, recipe: Recipe, *, in_channels: int,
                     num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``architecture`` at ``recipe.setting`` with the recipe's overrides, and
    the resolved network options (JSON-able; :func:`network_from_run` rebuilds from them).

    Macro networks take only ``channels`` and ``decoder``; they have no auxiliary head and no
    drop path, so those recipe values do not apply to them.
    """
    from rwenas.build import build_network, preset

    space = architecture.space
    options = preset(space, recipe.setting)
    if space.name == "macro":
        given = [name for name in _MICRO_ONLY if getattr(recipe, name) is not None]
        if given:
            raise ConfigError(f"{', '.join('--' + g for g in given)} does not apply to the "
                              "macro space")
        overrides: dict[str, Any] = {"channels": recipe.channels, "decoder": recipe.decoder}
    else:
        if recipe.decoder is not None:
            raise ConfigError("--decoder applies to the macro space only")
        overrides = {"channels": recipe.channels, "layers": recipe.layers,
                     "increment": recipe.increment,
                     "auxiliary": recipe.auxiliary_weight > 0, "drop_path": 0.0}
    options.update({k: v for k, v in overrides.items() if v is not None})
    net = build_network(space, architecture.genotype, in_channels=in_channels,
                        num_classes=num_classes, setting=recipe.setting, **options)
    resolved = {"setting": recipe.setting,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
                "in_channels": in_channels, "num_classes": num_classes}
    return net, resolved


def network_from_run(run: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    """Rebuild the (untrained) network and its architecture from a run description (the
    ``run`` of a checkpoint or ``config.json``)."""
    from rwenas.build import Architecture, build_network
    from rwenas.spaces import get_space

    try:
        arch = run["architecture"]
        options = dict(run["network"])
        space = get_space(arch["space"])
        genotype = space.genotype_from_json(arch["genotype"])
        setting = options.pop("setting")
        in_channels = options.pop("in_channels")
        num_classes = options.pop("num_classes")
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"the run description lacks the network ({exc})") from None
    if isinstance(options.get("channels"), list):
        options["channels"] = tuple(options["channels"])
    if space.name == "macro":
        # Runs recorded before these options existed trained the residual decoder with a
        # padded first convolution; rebuild exactly that.
        options.setdefault("decoder", "residual")
        options.setdefault("pad_first", True)
    net = build_network(space, genotype, in_channels=in_channels, num_classes=num_classes,
                        setting=setting, **options)
    genome = arch.get("genome")
    architecture = Architecture(space, genotype, tuple(genome) if genome else None,
                                str(arch.get("label", "genotype")))
    return net, architecture


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """The run description stored in a training output directory's checkpoint."""
    return load_checkpoint(out_dir)["run"]


def train(architecture: Any, recipe: Recipe | None = None, *, out_dir: str | Path | None = None,
          dataset: str = "cifar10", data_dir: str | Path | None = None, download: bool = False,
          train_size: int | None = None, test_size: int | None = None, seed: int = 0,
          device: str | torch.device = "auto", precision: str = "auto", resume: bool = False,
          force: bool = False, progress: bool = False, stop_after: int | None = None,
          on_epoch_end: EpochCallback | None = None, data: Any = None,
          source: Mapping[str, Any] | None = None, stream: bool | None = None,
          workers: int | None = None) -> TrainResult:
    """Train ``architecture`` (a :class:`rwenas.build.Architecture`) from scratch.

    The dataset (``cifar10``, ``cifar100``, ``fashion-mnist``, ``imagefolder`` or
    ``synthetic``; or an already loaded :class:`rwenas.data.Dataset` as ``data``) is loaded
    whole; the network trains on the training set (or a seeded ``train_size`` sub-sample)
    and is evaluated on the test set (``test_size``) every epoch. ``imagefolder`` and
    ``synthetic`` images are loaded at ``recipe.image_size``. ``source`` (e.g. the search run
    and front row it was picked from) is recorded. See :func:`fit` for the rest.

    ``stream``: read an ``imagefolder`` from disk batch by batch in ``workers`` processes
    (default one per core, at most 8) instead of loading it whole
    (:class:`rwenas.train.stream.StreamData`: bounded memory, random resized crops of the
    original images, resize + centre-crop evaluation). The default streams exactly when an
    ``imagefolder`` is trained with a random-resized-crop recipe (the ImageNet recipe).
    """
    from rwenas.data import canonical_name, load_dataset

    recipe = recipe if recipe is not None else CifarRecipe()
    if stream is None:
        stream = data is None and canonical_name(dataset) == "imagefolder" \
            and recipe.resized_crop
    if stream:
        from rwenas.train.stream import StreamData

        if data is not None or canonical_name(dataset) != "imagefolder":
            raise ConfigError("only an imagefolder given by its directory can be streamed")
        if data_dir is None:
            raise ConfigError("imagefolder needs data_dir (containing train/ and val/ or "
                              "test/)")
        train_data: Any = StreamData.from_folder(
            data_dir, image_size=recipe.image_size or 224, train_size=train_size,
            test_size=test_size, seed=seed, workers=workers)
    else:
        if data is None:
            shaped = canonical_name(dataset) in ("imagefolder", "synthetic")
            data = load_dataset(dataset, data_dir, download=download, seed=seed,
                                image_size=recipe.image_size if shaped else None)
        train_data = TrainData.from_dataset(data, train_size=train_size, test_size=test_size,
                                            seed=seed)
    seed_all(seed)
    net, network = build_for_recipe(architecture, recipe, in_channels=train_data.in_channels,
                                    num_classes=train_data.num_classes)
    run = {
        "architecture": {**architecture.to_json(), "source": dict(source) if source else None},
        "network": network,
        "dataset": {"name": train_data.name,
                    "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
                    "train_size": train_size, "test_size": test_size},
    }
    title = f"{architecture.label} on {train_data.name} ({recipe.name} recipe)"
    return fit(net, train_data, recipe, seed=seed, device=device, precision=precision,
               out_dir=out_dir,
               run=run, resume=resume, force=force, progress=progress, stop_after=stop_after,
               on_epoch_end=on_epoch_end, title=title)
