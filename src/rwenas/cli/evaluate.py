"""``rwenas evaluate``: the RWE error (and other objectives) of one genome or a file of them."""

from __future__ import annotations

import argparse
import json
import sys

from rwenas.cli.args import (
    add_data_args,
    add_rwe_args,
    channels_type,
    layers_type,
    load_split,
    network_overrides,
    positive_int,
    rwe_config,
)
from rwenas.errors import ConfigError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rwenas.evaluation import evaluate_genome
    from rwenas.search.initial import read_genomes_file
    from rwenas.spaces import get_space, parse_genome

    space = get_space(args.space)
    texts = [args.genome] if args.genome is not None else read_genomes_file(args.genomes)
    genomes = [space.validate(parse_genome(t)) for t in texts]  # fail before loading data
    config = rwe_config(args)
    measure = [m.strip() for m in (args.measure or "").split(",") if m.strip()]
    unknown = sorted(set(measure) - {"latency", "latency_batch", "memory", "latency_onnx"})
    if unknown:
        raise ConfigError(f"unknown measurement(s) {', '.join(unknown)} "
                          "(known: latency, latency_batch, memory, latency_onnx)")
    if "latency_onnx" in measure:
        from rwenas.objectives import check_onnx

        check_onnx()
    info, split = load_split(args)
    results = []
    for g in genomes:
        ev = evaluate_genome(space, g, split, info, config=config, seed=args.seed,
                             network=network_overrides(args, space.name), measure=measure,
                             latency_batch=args.latency_batch)
        results.append(ev)
        if not args.json:
            extra = "".join(f"  {name} {getattr(ev, fld):.2f}" for name, fld in (
                ("latency_ms", "latency_ms"), ("latency_b_ms", "latency_batch_ms"),
                ("memory_mb", "memory_mb"), ("latency_onnx_ms", "latency_onnx_ms"))
                if getattr(ev, fld) is not None)
            print(f"rwe_error {100 * ev.rwe_error:6.2f}%  madds {ev.madds_m:8.2f} M  "
                  f"params {ev.params_m:6.3f} M{extra}  {ev.seconds:6.1f} s  genome {ev.genome}",
                  flush=True)
            if ev.warning:
                print(f"  warning: {ev.warning}", file=sys.stderr)
    if args.json:
        print(json.dumps([ev.to_dict() for ev in results]))
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Random-Weight Evaluation of genomes")
    p.add_argument("--space", default="micro", help="micro, macro, nb301 or package.module:Class")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--genome", help="integers separated by spaces")
    group.add_argument("--genomes", metavar="FILE", help="file with one genome per line")
    add_data_args(p)
    add_rwe_args(p)
    p.add_argument("--channels", type=channels_type, help="network channels (default: search "
                                                      "setting)")
    p.add_argument("--layers", type=layers_type, help="cells (micro; default 5)")
    p.set_defaults(increment=None, auxiliary=None, se=None, decoder=None, pad_first=None)
    p.add_argument("--measure", help="also measure: latency, latency_batch, memory, "
                                     "latency_onnx (comma-separated)")
    p.add_argument("--latency-batch", type=positive_int, default=64,
                   help="batch of the latency_batch measurement (default 64)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_evaluate)
