"""``rwenas show``: an architecture's genotype, size and drawing."""

from __future__ import annotations

import argparse
import json

from rwenas.cli.args import add_architecture_args, add_network_args, network_overrides


def cmd_show(args: argparse.Namespace) -> int:
    from rwenas.build import build_network, resolve_architecture
    from rwenas.complexity import complexity
    from rwenas.data import dataset_info
    from rwenas.spaces import format_genome, get_space

    space = get_space(args.space)
    arch = resolve_architecture(space, genome=args.genome, genotype_file=args.genotype,
                                arch=args.arch)
    info = dataset_info(args.dataset)
    setting = args.setting or ("imagenet" if args.dataset == "imagenet" else "search")
    net = build_network(space, arch.genotype, in_channels=info.in_channels,
                        num_classes=info.num_classes, setting=setting,
                        **network_overrides(args, space.name))
    cx = complexity(net, (info.in_channels, info.image_size, info.image_size))
    drawn = None
    if args.draw:
        from rwenas.report.drawing import genotype_dot, render_dot

        drawn = render_dot(genotype_dot(arch.genotype, arch.label), args.draw)
    if args.json:
        out = {**arch.to_json(), "key": space.key(arch.genome) if arch.genome else None,
               "dataset": info.name, "setting": setting, "params_m": round(cx.params_m, 6),
               "madds_m": round(cx.madds_m, 6)}
        if drawn:
            out["drawing"] = str(drawn)
        print(json.dumps(out))
        return 0
    describe = getattr(space, "describe", None)
    print(describe(arch.genotype) if describe else arch.genotype)
    if arch.genome is not None:
        print(f"genome: {format_genome(arch.genome)}")
    print(f"dataset: {info.name} ({info.in_channels}x{info.image_size}x{info.image_size}), "
          f"setting: {setting}")
    print(f"params: {cx.params_m:.3f} M   multiply-adds: {cx.madds_m:.1f} M")
    if drawn:
        from pathlib import Path

        fallback = drawn.suffix != Path(args.draw).suffix
        print(f"drawing: {drawn}" + (" (Graphviz not installed: wrote DOT text)"
                                     if fallback else ""))
    return 0


def add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="decode an architecture and count its cost")
    add_architecture_args(p)
    add_network_args(p)
    p.add_argument("--dataset", default="cifar10",
                   choices=("cifar10", "cifar100", "fashion-mnist", "imagenet"),
                   help="input size and classes to count at (default cifar10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="OUT", help="draw the cells to OUT.svg|.png|.dot")
    p.set_defaults(handler=cmd_show)
