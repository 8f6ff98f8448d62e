"""The ``rwenas`` command line: thin sub-commands over the Python API.

User mistakes (:class:`rwenas.errors.RwenasError`) print one line on stderr and exit 2; an
interrupt exits 130. Tracebacks are kept for genuine bugs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rwenas import __version__
from rwenas.errors import ConfigError, RwenasError
from rwenas.study_commands import add_bench, add_study
from rwenas.train.commands import add_export, add_train

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one ``rwenas: error:`` line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"rwenas: error: {message}\n")


def _channels(text: str) -> int | tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid channels {text!r}: give C or C1,C2,C3") from None
    if any(p < 1 for p in parts):
        raise argparse.ArgumentTypeError("channels must be positive")
    return parts[0] if len(parts) == 1 else parts


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2 ** 31:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 2**31 - 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


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
    p.add_argument("--channels", type=_channels, help="initial channels (macro: C or C1,C2,C3)")
    p.add_argument("--layers", type=_positive_int, help="number of cells (micro)")
    p.add_argument("--increment", type=int, help="pyramid channel increment per cell (micro)")
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


# -- show -----------------------------------------------------------------------------------
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


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="decode an architecture and count its cost")
    add_architecture_args(p)
    add_network_args(p)
    p.add_argument("--dataset", default="cifar10",
                   choices=("cifar10", "cifar100", "fashion-mnist", "imagenet"),
                   help="input size and classes to count at (default cifar10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="OUT", help="draw the cells to OUT.svg|.png|.dot")
    p.set_defaults(handler=cmd_show)


# -- evaluate -------------------------------------------------------------------------------
def add_data_args(p: argparse.ArgumentParser) -> None:
    """Dataset selection and the search split."""
    p.add_argument("--dataset", default="fashion-mnist",
                   help="cifar10, cifar100, fashion-mnist, imagefolder or synthetic "
                        "(default fashion-mnist)")
    p.add_argument("--data-dir", help="where dataset files are (default $RWENAS_DATA_DIR or "
                                      "./data)")
    p.add_argument("--download", action="store_true", help="download missing CIFAR/"
                                                           "Fashion-MNIST files (md5-checked)")
    p.add_argument("--image-size", type=_positive_int, help="image size (imagefolder)")
    p.add_argument("--train-size", type=_positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=_positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=int, default=0, help="seed of split, weights, classifiers")
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: all cores)")


def add_rwe_args(p: argparse.ArgumentParser) -> None:
    """RWE options (defaults: the paper's classifier recipe)."""
    from rwenas.estimators.rwe import BN_MODES, INIT_METHODS

    p.add_argument("--init", choices=INIT_METHODS, help="backbone initialisation")
    p.add_argument("--bn-mode", choices=BN_MODES, help="BatchNorm of the frozen backbone")
    p.add_argument("--no-standardize", dest="standardize", action="store_false", default=None,
                   help="do not standardise features before the classifier")
    p.add_argument("--epochs", type=_positive_int, help="classifier epochs (default 30)")
    p.add_argument("--lr", type=float, help="classifier learning rate (default 0.25)")
    p.add_argument("--batch-size", type=_positive_int, help="classifier batch (default 512)")
    p.add_argument("--folds", type=_positive_int, help="ensemble folds (default 5)")
    p.add_argument("--device", help="auto (CUDA when present), cpu or cuda")


def rwe_config(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """RWEConfig from defaults, ``base`` (e.g. a config file) and the flags given."""
    from rwenas.estimators.rwe import RWEConfig

    values = dict(base or {})
    for name in ("init", "bn_mode", "standardize", "epochs", "lr", "batch_size", "folds",
                 "device"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return RWEConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid RWE settings: {exc}") from None


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


def read_genomes(path: str) -> list[str]:
    """Genomes from a file: one per line (blank lines and # comments skipped) or a JSON list."""
    from pathlib import Path

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read genomes file {path}: {exc.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"genomes file {path} is not valid JSON: {exc.msg}") from None
        return [" ".join(map(str, g)) if isinstance(g, list) else str(g) for g in data]
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    genomes = [ln for ln in lines if ln]
    if not genomes:
        raise ConfigError(f"genomes file {path} holds no genome")
    return genomes


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rwenas.evaluation import evaluate_genome
    from rwenas.spaces import get_space, parse_genome

    space = get_space(args.space)
    texts = [args.genome] if args.genome else read_genomes(args.genomes)
    genomes = [space.validate(parse_genome(t)) for t in texts]  # fail before loading data
    config = rwe_config(args)
    measure = [m.strip() for m in (args.measure or "").split(",") if m.strip()]
    unknown = sorted(set(measure) - {"latency", "latency_batch", "memory", "latency_onnx"})
    if unknown:
        raise ConfigError(f"unknown measurement(s) {', '.join(unknown)} "
                          "(known: latency, latency_batch, memory, latency_onnx)")
    if "latency_onnx" in measure:
        from rwenas.search.objectives import check_onnx

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


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Random-Weight Evaluation of genomes")
    p.add_argument("--space", default="micro", help="micro, macro, nb301 or package.module:Class")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--genome", help="integers separated by spaces")
    group.add_argument("--genomes", metavar="FILE", help="file with one genome per line")
    add_data_args(p)
    add_rwe_args(p)
    p.add_argument("--channels", type=_channels, help="network channels (default: search "
                                                      "setting)")
    p.add_argument("--layers", type=_positive_int, help="cells (micro; default 5)")
    p.set_defaults(increment=None, auxiliary=None, se=None, decoder=None, pad_first=None)
    p.add_argument("--measure", help="also measure: latency, latency_batch, memory, "
                                     "latency_onnx (comma-separated)")
    p.add_argument("--latency-batch", type=_positive_int, default=64,
                   help="batch of the latency_batch measurement (default 64)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_evaluate)


# -- search ---------------------------------------------------------------------------------
def _search_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as flags (None = not given), in the config's layout."""
    over: dict[str, Any] = {
        k: getattr(args, k) for k in (
            "space", "dataset", "data_dir", "image_size", "train_size", "val_size", "seed",
            "pop_size", "generations", "executor", "workers", "threads", "ray_address",
            "gpus_per_eval", "max_retries", "max_madds", "max_params", "max_latency_ms",
            "latency_batch", "algorithm", "max_minutes", "stop_after_stagnation")}
    over["download"] = True if args.download else None
    if args.objectives:
        over["objectives"] = [o.strip() for o in args.objectives.split(",") if o.strip()]
    network = {k: getattr(args, k) for k in ("channels", "layers") if getattr(args, k)}
    if network:
        over["network"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in network.items()}
    rwe = {k: getattr(args, k) for k in ("init", "bn_mode", "standardize", "epochs", "lr",
                                         "batch_size", "folds", "device")
           if getattr(args, k) is not None}
    if rwe:
        over["rwe"] = rwe
    return over


def cmd_search(args: argparse.Namespace) -> int:
    overrides = _search_overrides(args)
    try:
        result = _run_search_command(args, overrides)
    except KeyboardInterrupt:
        run_dir = args.resume or args.out
        print(f"rwenas: interrupted; every finished evaluation is stored in {run_dir}/run.db — "
              f"continue with: rwenas search --resume {run_dir}", file=sys.stderr)
        return 130
    _print_search_result(result)
    return 0


def _run_search_command(args: argparse.Namespace, overrides: dict[str, Any]):
    from rwenas.search.config import resolve_config, validate_config
    from rwenas.search.initial import load_initial_population
    from rwenas.search.nsga2 import run_search

    if args.resume:
        if args.out or args.profile or args.config or args.initial_population:
            raise ConfigError("--resume continues a run as it was configured; drop --out, "
                              "--profile, --config and --initial-population")
        given = {k: v for k, v in overrides.items() if v is not None}
        return run_search(resume=args.resume, overrides=given, progress=not args.quiet)
    if not args.out:
        raise ConfigError("give --out RUN_DIR for a new search (or --resume RUN_DIR)")
    config = resolve_config(args.profile, args.config, overrides)
    if args.initial_population:
        config["initial_population"] = load_initial_population(
            args.initial_population, config["space"], config["pop_size"])
        validate_config(config)
    return run_search(config, args.out, force=args.force, progress=not args.quiet)


def _print_search_result(result: Any) -> None:
    print(f"run {result.run_dir}: {result.evaluations} architectures evaluated, "
          f"{result.cache_hits} cache hits, final hypervolume {result.hypervolume:.4g}")
    print(f"front ({len(result.front)} architectures, non-dominated over everything "
          "evaluated):")
    objectives = list(getattr(result, "objectives", None) or [])
    for e in result.front:
        extra = e.get("extra") or {}
        err = extra.get("rwe_error")
        head = f"rwe_error {100 * err:6.2f}%" if err is not None else "  ".join(
            f"{o} {v:.4g}" for o, v in zip(objectives, e["objectives"], strict=False)
            if o not in ("madds", "params"))
        print(f"  {head}  madds {e['madds_m']:8.2f} M  params {e['params_m']:6.3f} M  "
              f"genome {' '.join(map(str, e['genome']))}")
    if getattr(result, "stopped", None):
        print(f"stopped early ({result.stopped}); continue with: rwenas search --resume "
              f"{result.run_dir} (give a larger --max-minutes or --stop-after-stagnation)")
    print(f"outputs: {result.run_dir}/report.html, front.json, front.csv, history.csv, "
          "front.png, hypervolume.png, run.db")


def _add_search(sub: argparse._SubParsersAction) -> None:
    from rwenas.search.algorithms import ALGORITHMS

    p = sub.add_parser("search", help="NSGA-II (or another algorithm) over RWE error and "
                                      "multiply-adds (or other objectives)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory of a new search")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--profile", choices=("paper", "quick"),
                   help="paper: SPEC settings on the full split; quick: a 2-core demo")
    p.add_argument("--config", metavar="FILE.toml", help="settings file (flags override it)")
    p.add_argument("--space", help="micro, macro, nb301 or package.module:Class")
    p.add_argument("--dataset", help="fashion-mnist, cifar10, cifar100, imagefolder, synthetic")
    p.add_argument("--data-dir", help="where dataset files are")
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--image-size", type=_positive_int, help="image size (imagefolder)")
    p.add_argument("--train-size", type=_positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=_positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=int, help="run seed (default 0)")
    p.add_argument("--pop-size", type=_positive_int, help="population size (paper: 20)")
    p.add_argument("--generations", type=_positive_int, help="generations (paper: 30)")
    p.add_argument("--objectives",
                   help="comma-separated, all minimised: rwe, madds (default rwe,madds), "
                        "params, latency, latency_batch, latency_onnx, memory; a study "
                        "estimator (jacob_cov, synflow, naswot, …); or package.module:function")
    p.add_argument("--algorithm", choices=ALGORITHMS,
                   help="nsga2 (default), smsemoa, agemoea, nsga3, moead, or random (random "
                        "search at the same number of evaluations)")
    p.add_argument("--initial-population", metavar="FILE|RUN_DIR",
                   help="seed the first generation: a genomes file, or another run's front")
    p.add_argument("--max-minutes", type=_positive_float,
                   help="stop at the first generation boundary after M minutes of search "
                        "(resumable; --resume with a larger M extends it)")
    p.add_argument("--stop-after-stagnation", type=_positive_int, metavar="K",
                   help="stop when the hypervolume has not improved for K generations")
    p.add_argument("--max-madds", type=float, help="hard constraint: multiply-adds (M) <= X")
    p.add_argument("--max-params", type=float, help="hard constraint: parameters (M) <= X")
    p.add_argument("--max-latency-ms", type=float, help="hard constraint: batch-1 latency")
    p.add_argument("--latency-batch", type=_positive_int,
                   help="batch size of the latency_batch objective (default 64)")
    p.add_argument("--executor", choices=("local", "process", "ray"),
                   help="local (in-process), process (--workers N processes) or ray")
    p.add_argument("--workers", type=_positive_int, help="parallel evaluations")
    p.add_argument("--threads", type=_positive_int, help="torch threads per evaluation")
    p.add_argument("--ray-address", help="join a Ray cluster: auto or HOST:PORT")
    p.add_argument("--gpus-per-eval", type=float, help="GPUs per Ray evaluation (e.g. 0.25)")
    p.add_argument("--max-retries", type=int, help="retries of a failed evaluation (default 2)")
    add_rwe_args(p)
    p.add_argument("--channels", type=_channels, help="search-network channels")
    p.add_argument("--layers", type=_positive_int, help="search-network cells (micro)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_search)


# -- report ---------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from rwenas.report.html import write_report

    print(write_report(args.run_dir, args.out, picks=args.pick or ()))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a run's self-contained HTML report from run.db")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds run.db)")
    p.add_argument("--out", metavar="FILE.html", help="default: RUN_DIR/report.html")
    p.add_argument("--pick", action="append", metavar="BUDGET",
                   help="also show the lowest-error member within a budget, e.g. "
                        "'madds<=10' (repeatable; L, M, S and the knee are always shown)")
    p.set_defaults(handler=cmd_report)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_show, _add_evaluate, _add_search, add_train, add_export, _add_report, add_bench,
    add_study]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rwenas", description="Multi-objective NAS with Random-Weight "
                     "Evaluation")
    parser.add_argument("--version", action="version", version=f"rwenas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    try:
        return int(args.handler(args) or 0)
    except RwenasError as exc:
        print(f"rwenas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rwenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
