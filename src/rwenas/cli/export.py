"""``rwenas export``: a trained checkpoint (or a search run's pick) to TorchScript and ONNX."""

from __future__ import annotations

import argparse

from rwenas.cli.args import add_trust_arg, non_negative_float, positive_int, seed_type
from rwenas.errors import ConfigError


def cmd_export(args: argparse.Namespace) -> int:
    from rwenas.train.export import export, export_from_run

    if args.from_run is not None or args.pick is not None:
        if args.source is not None or args.from_run is None or args.pick is None:
            raise ConfigError("export either a trained CHECKPOINT|DIR, or --from-run RUN_DIR "
                              "--pick L|M|S|knee|BUDGET|INDEX (the searched network)")
        res = export_from_run(args.from_run, args.pick, args.out, onnx=args.onnx,
                              batch_size=args.batch_size, seed=args.seed, atol=args.atol,
                              space=args.space, trust_plugins=args.trust_plugins)
    elif args.source is None:
        raise ConfigError("give a CHECKPOINT|DIR of `rwenas train`, or --from-run RUN_DIR "
                          "--pick …")
    else:
        res = export(args.source, args.out, onnx=args.onnx, batch_size=args.batch_size,
                     seed=args.seed, atol=args.atol, space=args.space,
                     trust_plugins=args.trust_plugins)
    ts = res.max_abs_diff.get("torchscript")
    print(f"torchscript: {res.torchscript}  (max |diff| {ts:.3g} on a batch of "
          f"{args.batch_size})")
    if res.onnx is not None:
        od = res.max_abs_diff.get("onnx")
        print(f"onnx: {res.onnx}  " + (f"(max |diff| {od:.3g})" if od is not None
                                       else "(outputs not compared: no onnxruntime)"))
    for note in res.notes:
        if note.startswith("ONNX skipped"):
            print(note)
    print(f"genotype: {res.genotype}")
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("export", help="export a trained network (TorchScript, ONNX, genotype)")
    p.add_argument("source", metavar="CHECKPOINT|DIR", nargs="?",
                   help="checkpoint.pt or a `rwenas train` output directory")
    p.add_argument("--from-run", metavar="RUN_DIR",
                   help="instead: export a search run's architecture as it was evaluated "
                        "(search setting, random weights), with --pick")
    p.add_argument("--pick", metavar="L|M|S|knee|BUDGET|INDEX",
                   help="front member of --from-run (as for `rwenas train`)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: DIR/export/, or "
                                                "RUN_DIR/export-PICK/)")
    onnx = p.add_mutually_exclusive_group()
    onnx.add_argument("--onnx", dest="onnx", action="store_const", const=True, default=None,
                      help="require ONNX (default: exported when the onnx package is "
                           "installed)")
    onnx.add_argument("--no-onnx", dest="onnx", action="store_const", const=False,
                      help="skip ONNX")
    p.add_argument("--batch-size", type=positive_int, default=4,
                   help="random batch the exports are checked on (default 4)")
    p.add_argument("--atol", type=non_negative_float, default=1e-4,
                   help="largest allowed |difference| of the logits (default 1e-4)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the check batch")
    p.add_argument("--space", help="the checkpoint's plugin space package.module:Class, to "
                                   "confirm that it may be imported")
    add_trust_arg(p)
    p.set_defaults(handler=cmd_export)
