"""What the sub-commands share: the one-line-error parser, the argument types of the numbers
every command takes (validated once, in :mod:`rwenas.checks`), and the option groups for
architectures, networks, data and RWE."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from rwenas.checks import (
    MAX_CHANNELS,
    MAX_GENERATIONS,
    MAX_IMAGE_SIZE,
    MAX_INCREMENT,
    MAX_LAYERS,
    MAX_MINUTES,
    MAX_SEED,
    MAX_THREADS,
    check_device,
    check_number,
    number_arg,
)
from rwenas.errors import ConfigError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one ``rwenas: error:`` line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"rwenas: error: {message}\n")


def channels_type(text: str) -> int | tuple[int, ...]:
    parts = text.split(",")
    if len(parts) > 8:
        raise argparse.ArgumentTypeError(f"invalid channels {text[:40]!r}: give C or C1,C2,C3")
    try:
        values = tuple(int(check_number("channels", p, integer=True, low=1,
                                        high=MAX_CHANNELS)) for p in parts)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (give C or C1,C2,C3)") from None
    return values[0] if len(values) == 1 else values


#: argparse types of the numbers every command shares (see :mod:`rwenas.checks`).
positive_int = number_arg("value", integer=True, low=1)
seed_type = number_arg("seed", integer=True, low=0, high=MAX_SEED)
layers_type = number_arg("layers", integer=True, low=1, high=MAX_LAYERS)
increment_type = number_arg("increment", integer=True, low=0, high=MAX_INCREMENT)
image_size_type = number_arg("image size", integer=True, low=1, high=MAX_IMAGE_SIZE)
threads_type = number_arg("threads", integer=True, low=1, high=MAX_THREADS)
minutes_type = number_arg("max_minutes", low=0, low_open=True, high=MAX_MINUTES)
stagnation_type = number_arg("stop_after_stagnation", integer=True, low=1, high=MAX_GENERATIONS)


def device_type(text: str) -> str:
    try:
        return check_device(text, cuda_here=False)  # CUDA itself is checked where it is used
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


positive_float = number_arg("value", low=0, low_open=True)
non_negative_float = number_arg("value", low=0)
non_negative_int = number_arg("value", integer=True, low=0)


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    """--trust-plugins: import a plugin space (or objective function) named by a stored run
    or checkpoint."""
    p.add_argument("--trust-plugins", action="store_true",
                   help="import the plugin search space (package.module:Class) and objective "
                        "functions (package.module:function) a stored run names; that runs "
                        "their modules' code (default: only when --space / --objectives "
                        "names them again)")


def add_architecture_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--space and one of --genome / --genotype / --arch."""
    p.add_argument("--space", default="micro",
                   help="micro, macro, nb301 or a plugin package.module:Class (default micro)")
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--genome", help="integers separated by spaces, e.g. '3 0 4 1 ...'")
    group.add_argument("--genotype", metavar="FILE", help="genotype JSON file (DARTS layout)")
    group.add_argument("--arch", metavar="NAME",
                       help="published architecture: NASNet, AmoebaNet, DARTS, ENAS, NSGANet")


def add_network_args(p: argparse.ArgumentParser) -> None:
    """Overrides of the network setting."""
    p.add_argument("--setting", choices=("search", "validation", "imagenet"),
                   help="named network scale (default: search; imagenet for --dataset imagenet)")
    p.add_argument("--channels", type=channels_type, help="initial channels (macro: C or C1,C2,C3)")
    p.add_argument("--layers", type=layers_type, help="number of cells (micro)")
    p.add_argument("--increment", type=increment_type,
                   help="pyramid channel increment per cell (micro)")
    p.add_argument("--auxiliary", action="store_true", default=None, help="auxiliary head")
    p.add_argument("--se", action="store_true", default=None, help="squeeze-and-excitation")
    p.add_argument("--decoder", choices=("residual", "dense"),
                   help="macro phase decoder (default: residual for search, dense otherwise)")
    p.add_argument("--pad-first", action="store_true", default=None,
                   help="macro: pad the first 3x3 convolution (NSGA-Net does not)")


def network_overrides(args: argparse.Namespace, space_name: str) -> dict[str, Any]:
    """The network options given on the command line (None = not given)."""
    over = {"channels": args.channels, "layers": args.layers, "increment": args.increment,
            "auxiliary": args.auxiliary, "se": args.se, "decoder": getattr(args, "decoder", None),
            "pad_first": getattr(args, "pad_first", None)}
    macro_only = ("decoder", "pad_first")
    for opt in ("layers", "increment", "auxiliary", "se") if space_name == "macro" else macro_only:
        if over.pop(opt) is not None:
            raise ConfigError(f"--{opt.replace('_', '-')} does not apply to the {space_name} "
                              "space")
    return {k: v for k, v in over.items() if v is not None}


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Dataset selection and the search split."""
    p.add_argument("--dataset", default="fashion-mnist",
                   help="cifar10, cifar100, fashion-mnist, imagefolder or synthetic "
                        "(default fashion-mnist)")
    p.add_argument("--data-dir", help="where dataset files are (default $RWENAS_DATA_DIR or "
                                      "./data)")
    p.add_argument("--download", action="store_true", help="download missing CIFAR/"
                                                           "Fashion-MNIST files (md5-checked)")
    p.add_argument("--image-size", type=image_size_type, help="image size (imagefolder)")
    p.add_argument("--train-size", type=positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of split, weights, classifiers")
    p.add_argument("--threads", type=threads_type, help="torch threads (default: all cores)")


def add_estimator_split_args(p: argparse.ArgumentParser, who: str) -> None:
    """--train-size/--val-size of the search split at the study's 2000/500 defaults."""
    p.add_argument("--train-size", type=positive_int, default=2000,
                   help=f"{who} training images of the search split (default 2000)")
    p.add_argument("--val-size", type=positive_int, default=500,
                   help=f"{who} validation images (default 500)")


def add_search_length_args(p: argparse.ArgumentParser) -> None:
    """--generations/--pop-size of the study's short NSGA-II searches (10 each)."""
    p.add_argument("--generations", type=positive_int, default=10, help="default 10")
    p.add_argument("--pop-size", type=positive_int, default=10, help="default 10")


def add_rwe_args(p: argparse.ArgumentParser) -> None:
    """RWE options (defaults: the paper's classifier recipe)."""
    from rwenas.estimators.rwe import BN_MODES, INIT_METHODS

    p.add_argument("--init", choices=INIT_METHODS, help="backbone initialisation")
    p.add_argument("--bn-mode", choices=BN_MODES, help="BatchNorm of the frozen backbone")
    p.add_argument("--no-standardize", dest="standardize", action="store_false", default=None,
                   help="do not standardise features before the classifier")
    p.add_argument("--epochs", type=positive_int, help="classifier epochs (default 30)")
    p.add_argument("--lr", type=positive_float,
                   help="classifier learning rate (default 0.25)")
    p.add_argument("--batch-size", type=positive_int, help="classifier batch (default 512)")
    p.add_argument("--folds", type=positive_int, help="ensemble folds (default 5)")
    p.add_argument("--device", type=device_type, help="auto (CUDA when present), cpu or cuda")


def rwe_config(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """RWEConfig from defaults, ``base`` (e.g. a config file) and the flags given."""
    from rwenas.estimators.rwe import RWEConfig, default_inference_batch

    values = dict(base or {})
    for name in ("init", "bn_mode", "standardize", "epochs", "lr", "batch_size", "folds",
                 "device"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        config = RWEConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid RWE settings: {exc}") from None
    from rwenas.search.config import check_rwe

    check_rwe(config)
    check_device(config.device)
    if "inference_batch" not in values:  # larger on a GPU, where none is given
        config = dataclasses.replace(config,
                                     inference_batch=default_inference_batch(config.device))
    return config


def load_split(args: argparse.Namespace):
    """(dataset info, search split) for the data flags."""
    from rwenas.data import load_dataset, search_split

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset, args.data_dir, download=args.download,
                      image_size=args.image_size, seed=args.seed)
    split = search_split(ds, seed=args.seed, train_size=args.train_size,
                         val_size=args.val_size)
    return ds.info, split


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (when the command has it and it was given) to torch."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
