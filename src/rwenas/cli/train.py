"""``rwenas train``: train an architecture from scratch (from a genome, a genotype, a
published cell or a search run's front), resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rwenas.cli.args import (
    add_trust_arg,
    channels_type,
    device_type,
    image_size_type,
    increment_type,
    layers_type,
    non_negative_float,
    non_negative_int,
    positive_int,
    seed_type,
    threads_type,
)
from rwenas.errors import ConfigError
from rwenas.fit.precision import PRECISIONS

#: ``rwenas train`` flag (dest) → recipe field.
RECIPE_FLAGS = {
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "momentum": "momentum",
    "weight_decay": "weight_decay", "grad_clip": "grad_clip",
    "auxiliary_weight": "auxiliary_weight", "cutout": "cutout", "drop_path": "drop_path",
    "label_smoothing": "label_smoothing", "warmup_epochs": "warmup_epochs",
    "final_lr": "final_lr", "crop_padding": "crop_padding", "color_jitter": "color_jitter",
    "flip": "flip", "channels": "channels", "layers": "layers", "increment": "increment",
    "image_size": "image_size", "decoder": "decoder",
}




def _recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, dest) for dest, field in RECIPE_FLAGS.items()
            if getattr(args, dest, None) is not None}


def _architecture_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("from_run", "genome", "genotype", "arch")
            if getattr(args, k) is not None}


def _resolve_new(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None, dict | None]:
    """(architecture, source, search config) from the architecture flags."""
    from rwenas.build import resolve_architecture
    from rwenas.train.pick import pick_from_run

    if args.pick is not None and args.from_run is None:
        raise ConfigError("--pick selects from a search run: give --from-run RUN_DIR too")
    if args.from_run is not None:
        if args.pick is None:
            raise ConfigError("give --pick L|M|S|knee|BUDGET|INDEX with --from-run (L: lowest "
                              "RWE error, M: middle, S: fewest multiply-adds, knee, or e.g. "
                              "'madds<=10')")
        picked = pick_from_run(args.from_run, args.pick, space=args.space,
                               trust_plugins=args.trust_plugins)
        if args.space is not None and args.space != picked.config["space"]:
            raise ConfigError(f"--space {args.space} differs from the search run's space "
                              f"{picked.config['space']}")
        return picked.architecture, picked.source(), picked.config
    if not _architecture_flags(args):
        raise ConfigError("give an architecture: --from-run RUN_DIR --pick "
                          "L|M|S|knee|BUDGET|INDEX, "
                          "--arch NAME, --genotype FILE or --genome '...'")
    arch = resolve_architecture(args.space or "micro", genome=args.genome,
                                genotype_file=args.genotype, arch=args.arch)
    return arch, None, None


def _stored_architecture(args: argparse.Namespace, stored: dict[str, Any]) -> Any:
    """The architecture of the run being resumed (flags, when given, must name the same)."""
    from rwenas.build import Architecture
    from rwenas.spaces import check_stored_space, get_space

    info = stored["architecture"]
    check_stored_space(info.get("space"), given=args.space, trust=args.trust_plugins,
                       where=f"the checkpoint in {args.out}")
    space = get_space(info["space"])
    genotype = space.genotype_from_json(info["genotype"])
    genome = tuple(info["genome"]) if info.get("genome") else None
    if _architecture_flags(args) or args.pick is not None:
        given, _, _ = _resolve_new(args)
        if (given.space.name != space.name
                or given.space.genotype_to_json(given.genotype) != info["genotype"]):
            raise ConfigError("the architecture given differs from the one of the run being "
                              "resumed; drop the architecture flags or use --force to start "
                              "over")
    elif args.space is not None and args.space != space.name:
        raise ConfigError(f"--space {args.space} differs from the resumed run's {space.name}")
    return Architecture(space, genotype, genome, str(info.get("label", "genotype"))), \
        info.get("source")


def cmd_train(args: argparse.Namespace) -> int:
    from rwenas.fit.checkpoint import CHECKPOINT_NAME
    from rwenas.fit.loop import RUN_FILES, no_checkpoint_message
    from rwenas.fit.recipes import Recipe, get_recipe
    from rwenas.train.run import read_run, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = _recipe_overrides(args)
    resuming = args.resume and (out / CHECKPOINT_NAME).exists()
    if args.resume and not resuming:  # refuse before loading anything; touch nothing
        raise ConfigError(no_checkpoint_message(
            out, [n for n in RUN_FILES if (out / n).exists()] if out.is_dir() else []))
    if resuming:
        stored = read_run(out)
        arch, source = _stored_architecture(args, stored)
        recipe = Recipe.from_dict(stored["recipe"])
        if args.recipe is not None and args.recipe != recipe.name:
            raise ConfigError(f"the run in {out} uses the {recipe.name} recipe, not "
                              f"{args.recipe}; drop --recipe or use --force to start over")
        recipe = recipe.replace(**overrides)
        data = stored.get("dataset") or {}
        dataset = args.dataset or data.get("name")
        data_dir = args.data_dir or data.get("data_dir")
        train_size = args.train_size if args.train_size is not None else data.get("train_size")
        test_size = args.test_size if args.test_size is not None else data.get("test_size")
        seed = args.seed if args.seed is not None else stored.get("seed", 0)
        precision = args.precision or stored.get("precision", "auto")
    else:
        arch, source, search = _resolve_new(args)
        recipe = get_recipe(args.recipe or "cifar", **overrides)
        searched = (search or {}).get("dataset")
        dataset = args.dataset or searched or (
            "imagefolder" if recipe.name == "imagenet" else "cifar10")
        data_dir = args.data_dir
        if data_dir is None and search and dataset == searched:
            data_dir = search.get("data_dir")
        train_size, test_size = args.train_size, args.test_size
        seed = args.seed if args.seed is not None else 0
        precision = args.precision or "auto"
    if not isinstance(precision, str) or precision not in PRECISIONS:  # a stored value
        raise ConfigError(f"the run in {out} stores an unknown precision {str(precision)[:40]!r}"
                          f" (known: {', '.join(PRECISIONS)}); give --precision")

    last = {"epoch": 0}

    def note(row: dict[str, Any]) -> None:
        last["epoch"] = row["epoch"]

    try:
        result = train(arch, recipe, out_dir=out, dataset=dataset, data_dir=data_dir,
                       download=args.download, train_size=train_size, test_size=test_size,
                       seed=seed, device=args.device or "auto",
                       precision=precision, resume=args.resume,
                       force=args.force, progress=not args.quiet, on_epoch_end=note,
                       source=source, workers=args.workers)
    except KeyboardInterrupt:
        if last["epoch"] or args.resume:
            done = f"after epoch {last['epoch']}" if last["epoch"] else "again"
            print(f"rwenas: interrupted {done}; continue with: rwenas train --out {out} "
                  "--resume", file=sys.stderr)
        else:  # no checkpoint yet: there is nothing to resume
            print("rwenas: interrupted before the first epoch ended; start again with the "
                  "same command and --force", file=sys.stderr)
        return 130
    res = result.result or {}
    top5 = (f"  top-5 error {100 * res['test_top5_error']:.2f}%"
            if res.get("test_top5_error") is not None else "")
    print(f"test error {100 * res.get('test_error', float('nan')):.2f}%{top5}  "
          f"params {result.params_m:.3f} M  madds {result.madds_m:.2f} M  "
          f"{result.epochs} epochs  {result.seconds:.1f} s  ({arch.label})")
    print(f"outputs: {out}/result.json, metrics.csv, curve.png, checkpoint.pt")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    from rwenas.checks import MAX_IMAGE_SIZE, MAX_WORKERS, number_arg

    p = sub.add_parser("train", help="train an architecture from scratch (validation stage, "
                                     "ImageNet transfer)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="output directory (checkpoint, metrics.csv, curve.png, result.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (refused if none)")
    p.add_argument("--force", action="store_true", help="overwrite a run in --out")
    arch = p.add_argument_group("architecture (one of)")
    group = arch.add_mutually_exclusive_group()
    group.add_argument("--from-run", metavar="RUN_DIR", help="a search run directory (with "
                       "--pick)")
    group.add_argument("--genome", help="integers separated by spaces")
    group.add_argument("--genotype", metavar="FILE", help="genotype JSON file")
    group.add_argument("--arch", metavar="NAME",
                       help="published architecture: NASNet, AmoebaNet, DARTS, ENAS, NSGANet")
    arch.add_argument("--pick", metavar="L|M|S|knee|BUDGET|INDEX",
                      help="front member of --from-run: L lowest RWE error, S fewest "
                           "multiply-adds, M middle by multiply-adds, knee (the knee of the "
                           "front), a budget like 'madds<=10' (lowest RWE error within it, "
                           "over any stored objective), or a front.json row")
    arch.add_argument("--space", help="micro, macro, nb301 or package.module:Class (default "
                                      "micro; --from-run: the run's)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="cifar10, cifar100, fashion-mnist, imagefolder or "
                      "synthetic (default: the search run's, else cifar10; imagenet recipe: "
                      "imagefolder)")
    data.add_argument("--data-dir", help="dataset files (imagefolder: DIR/train/<class>/, "
                      "DIR/val/<class>/)")
    data.add_argument("--download", action="store_true", help="download missing CIFAR/"
                      "Fashion-MNIST files")
    data.add_argument("--image-size", type=image_size_type,
                      help="training/test image size (imagenet recipe: 224)")
    data.add_argument("--train-size", type=positive_int, help="seeded sub-sample of the "
                      "training set")
    data.add_argument("--test-size", type=positive_int, help="seeded sub-sample of the test "
                      "set")
    data.add_argument("--workers", type=number_arg("workers", integer=True, low=0,
                                                   high=MAX_WORKERS),
                      help="processes decoding a streamed image folder (imagenet recipe; "
                           "default one per core, at most 8; 0: in the training process)")
    rec = p.add_argument_group("recipe (defaults: the recipe's; cifar = the paper's "
                               "validation setting)")
    rec.add_argument("--recipe", choices=("cifar", "imagenet"), help="default cifar")
    rec.add_argument("--epochs", type=positive_int, help="cifar 600, imagenet 250")
    rec.add_argument("--batch-size", type=positive_int, help="cifar 96, imagenet 1024")
    rec.add_argument("--lr", type=non_negative_float, help="SGD learning rate (cifar 0.025 "
                     "cosine to 0; imagenet 0.5 after warm-up, linear to 1e-5)")
    rec.add_argument("--momentum", type=non_negative_float, help="default 0.9")
    rec.add_argument("--weight-decay", type=non_negative_float, help="cifar 3e-4, imagenet "
                     "3e-5")
    rec.add_argument("--grad-clip", type=non_negative_float, help="gradient-norm clipping "
                     "(default 5; 0: none)")
    rec.add_argument("--auxiliary-weight", type=non_negative_float,
                     help="auxiliary-head loss weight (default 0.4; 0: no head)")
    rec.add_argument("--cutout", type=non_negative_int, help="cutout size (cifar 16; 0: none)")
    rec.add_argument("--drop-path", type=non_negative_float,
                     help="final drop-path probability, growing linearly (cifar 0.2)")
    rec.add_argument("--label-smoothing", type=non_negative_float, help="imagenet 0.1")
    rec.add_argument("--warmup-epochs", type=non_negative_float, help="imagenet 5")
    rec.add_argument("--final-lr", type=non_negative_float, help="imagenet 1e-5")
    rec.add_argument("--crop-padding", type=number_arg("crop padding", integer=True, low=0,
                                                        high=MAX_IMAGE_SIZE),
                     help="zero padding of the random crop (cifar 4; 0: no crop)")
    rec.add_argument("--color-jitter", type=non_negative_float,
                     help="brightness/contrast/saturation jitter (imagenet 0.4)")
    rec.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                     default=None, help="no horizontal flips")
    net = p.add_argument_group("network (defaults: the recipe's setting)")
    net.add_argument("--channels", type=channels_type, help="initial channels (cifar 34, imagenet "
                     "48; macro: C or C1,C2,C3)")
    net.add_argument("--layers", type=layers_type, help="cells (cifar 20, imagenet 14)")
    net.add_argument("--increment", type=increment_type,
                     help="pyramid channel increment per cell (cifar 4, imagenet 0)")
    net.add_argument("--decoder", choices=("residual", "dense"),
                     help="macro phase decoder (default dense, as NSGA-Net trains)")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=seed_type, help="seed of weights, shuffling, augmentation and "
                     "sub-samples (default 0)")
    run.add_argument("--device", type=device_type, help="auto (CUDA when present), cpu or cuda[:N]")
    run.add_argument("--precision", choices=PRECISIONS,
                     help="auto (default): bfloat16 autocast where the device computes it "
                     "natively (AMX/AVX512-BF16 CPUs, CUDA), else float32; fp32 forces float32")
    run.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                     help="same as --precision fp32")
    run.add_argument("--no-amp", dest="precision", action="store_const", const="fp32",
                     help=argparse.SUPPRESS)  # the old spelling of --fp32
    run.add_argument("--threads", type=threads_type, help="torch CPU threads")
    add_trust_arg(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train)
