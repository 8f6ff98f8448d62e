"""The ``rwenas`` command line: thin sub-commands over the Python API.

User mistakes (:class:`rwenas.errors.RwenasError`) print one line on stderr and exit 2; an
interrupt exits 130. Tracebacks are kept for genuine bugs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rwenas import __version__
from rwenas.checks import (
    MAX_CHANNELS,
    MAX_GENERATIONS,
    MAX_IMAGE_SIZE,
    MAX_INCREMENT,
    MAX_LAYERS,
    MAX_MINUTES,
    MAX_POP_SIZE,
    MAX_RETRIES,
    MAX_SEED,
    MAX_THREADS,
    MAX_WORKERS,
    check_device,
    check_number,
    number_arg,
)
from rwenas.errors import ConfigError, RwenasError
from rwenas.study_commands import add_bench, add_study
from rwenas.train.commands import add_export, add_train

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one ``rwenas: error:`` line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"rwenas: error: {message}\n")


def _channels(text: str) -> int | tuple[int, ...]:
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
_positive_int = number_arg("value", integer=True, low=1)
_seed = number_arg("seed", integer=True, low=0, high=MAX_SEED)
_layers = number_arg("layers", integer=True, low=1, high=MAX_LAYERS)
_increment = number_arg("increment", integer=True, low=0, high=MAX_INCREMENT)
_image_size = number_arg("image size", integer=True, low=1, high=MAX_IMAGE_SIZE)
_threads = number_arg("threads", integer=True, low=1, high=MAX_THREADS)
_minutes = number_arg("max_minutes", low=0, low_open=True, high=MAX_MINUTES)
_stagnation = number_arg("stop_after_stagnation", integer=True, low=1, high=MAX_GENERATIONS)


def _device(text: str) -> str:
    try:
        return check_device(text, cuda_here=False)  # CUDA itself is checked where it is used
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_positive_float = number_arg("value", low=0, low_open=True)
_non_negative_float = number_arg("value", low=0)


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
    p.add_argument("--channels", type=_channels, help="initial channels (macro: C or C1,C2,C3)")
    p.add_argument("--layers", type=_layers, help="number of cells (micro)")
    p.add_argument("--increment", type=_increment,
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
    p.add_argument("--image-size", type=_image_size, help="image size (imagefolder)")
    p.add_argument("--train-size", type=_positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=_positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=_seed, default=0, help="seed of split, weights, classifiers")
    p.add_argument("--threads", type=_threads, help="torch threads (default: all cores)")


def add_rwe_args(p: argparse.ArgumentParser) -> None:
    """RWE options (defaults: the paper's classifier recipe)."""
    from rwenas.estimators.rwe import BN_MODES, INIT_METHODS

    p.add_argument("--init", choices=INIT_METHODS, help="backbone initialisation")
    p.add_argument("--bn-mode", choices=BN_MODES, help="BatchNorm of the frozen backbone")
    p.add_argument("--no-standardize", dest="standardize", action="store_false", default=None,
                   help="do not standardise features before the classifier")
    p.add_argument("--epochs", type=_positive_int, help="classifier epochs (default 30)")
    p.add_argument("--lr", type=_positive_float,
                   help="classifier learning rate (default 0.25)")
    p.add_argument("--batch-size", type=_positive_int, help="classifier batch (default 512)")
    p.add_argument("--folds", type=_positive_int, help="ensemble folds (default 5)")
    p.add_argument("--device", type=_device, help="auto (CUDA when present), cpu or cuda")


def rwe_config(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """RWEConfig from defaults, ``base`` (e.g. a config file) and the flags given."""
    from rwenas.estimators.rwe import RWEConfig

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
    p.add_argument("--layers", type=_layers, help="cells (micro; default 5)")
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
    from rwenas.report import write_figures
    from rwenas.search.config import resolve_config, validate_config
    from rwenas.search.initial import load_initial_population
    from rwenas.search.nsga2 import run_search

    if args.resume:
        if args.out or args.profile or args.config or args.initial_population:
            raise ConfigError("--resume continues a run as it was configured; drop --out, "
                              "--profile, --config and --initial-population")
        given = {k: v for k, v in overrides.items() if v is not None}
        return run_search(resume=args.resume, overrides=given, progress=not args.quiet,
                          trust_plugins=args.trust_plugins, retry_failed=args.retry_failed,
                          after=write_figures)
    if args.retry_failed:
        raise ConfigError("--retry-failed applies to --resume RUN_DIR")
    if not args.out:
        raise ConfigError("give --out RUN_DIR for a new search (or --resume RUN_DIR)")
    config = resolve_config(args.profile, args.config, overrides)
    if args.initial_population:
        config["initial_population"] = load_initial_population(
            args.initial_population, config["space"], config["pop_size"])
        validate_config(config)
    return run_search(config, args.out, force=args.force, progress=not args.quiet,
                      after=write_figures)


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
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: evaluate the failed architectures again")
    add_trust_arg(p)
    p.add_argument("--profile", choices=("paper", "quick"),
                   help="paper: SPEC settings on the full split; quick: a 2-core demo")
    p.add_argument("--config", metavar="FILE.toml", help="settings file (flags override it)")
    p.add_argument("--space", help="micro, macro, nb301 or package.module:Class")
    p.add_argument("--dataset", help="fashion-mnist, cifar10, cifar100, imagefolder, synthetic")
    p.add_argument("--data-dir", help="where dataset files are")
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--image-size", type=_image_size, help="image size (imagefolder)")
    p.add_argument("--train-size", type=_positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=_positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=_seed, help="run seed (default 0)")
    p.add_argument("--pop-size", type=number_arg("pop_size", integer=True, low=2,
                                                 high=MAX_POP_SIZE),
                   help="population size (paper: 20)")
    p.add_argument("--generations", type=number_arg("generations", integer=True, low=1,
                                                    high=MAX_GENERATIONS),
                   help="generations (paper: 30)")
    p.add_argument("--objectives",
                   help="comma-separated, all minimised: rwe, madds (default rwe,madds), "
                        "params, latency, latency_batch, latency_onnx, memory; a study "
                        "estimator (jacob_cov, synflow, naswot, …); or package.module:function")
    p.add_argument("--algorithm", choices=ALGORITHMS,
                   help="nsga2 (default), smsemoa, agemoea, nsga3, moead, or random (random "
                        "search at the same number of evaluations)")
    p.add_argument("--initial-population", metavar="FILE|RUN_DIR",
                   help="seed the first generation: a genomes file, or another run's front")
    p.add_argument("--max-minutes", type=_minutes,
                   help="stop at the first generation boundary after M minutes of search "
                        "(resumable; --resume with a larger M extends it)")
    p.add_argument("--stop-after-stagnation", type=_stagnation, metavar="K",
                   help="stop when the hypervolume has not improved for K generations")
    p.add_argument("--max-madds", type=_positive_float,
                   help="hard constraint: multiply-adds (M) <= X")
    p.add_argument("--max-params", type=_positive_float,
                   help="hard constraint: parameters (M) <= X")
    p.add_argument("--max-latency-ms", type=_positive_float,
                   help="hard constraint: batch-1 latency")
    p.add_argument("--latency-batch", type=_positive_int,
                   help="batch size of the latency_batch objective (default 64)")
    p.add_argument("--executor", choices=("local", "process", "ray"),
                   help="local (in-process), process (--workers N processes) or ray")
    p.add_argument("--workers", type=number_arg("workers", integer=True, low=1,
                                                high=MAX_WORKERS), help="parallel evaluations")
    p.add_argument("--threads", type=_threads, help="torch threads per evaluation")
    p.add_argument("--ray-address", help="join a Ray cluster: auto or HOST:PORT")
    p.add_argument("--gpus-per-eval", type=_non_negative_float,
                   help="GPUs per Ray evaluation (e.g. 0.25)")
    p.add_argument("--max-retries", type=number_arg("max_retries", integer=True, low=0,
                                                    high=MAX_RETRIES),
                   help="retries of a failed evaluation (default 2)")
    add_rwe_args(p)
    p.add_argument("--channels", type=_channels, help="search-network channels")
    p.add_argument("--layers", type=_layers, help="search-network cells (micro)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_search)


# -- report ---------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from rwenas.report.html import write_report

    print(write_report(args.run_dir, args.out, picks=args.pick or (), space=args.space,
                       trust_plugins=args.trust_plugins))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a run's self-contained HTML report from run.db")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds run.db)")
    p.add_argument("--out", metavar="FILE.html", help="default: RUN_DIR/report.html")
    p.add_argument("--space", help="the run's plugin space package.module:Class, to confirm "
                                   "that it may be imported")
    add_trust_arg(p)
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


class _OutputError(RwenasError):
    """Standard output cannot be written (a closed pipe, a full disk)."""


class _GuardedStdout:
    """Standard output whose failed writes raise :class:`_OutputError`: ``rwenas ... | head
    -1`` or ``> /dev/full`` end with one error line, not an ``OSError`` traceback."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _OutputError(f"cannot write to standard output: "
                               f"{exc.strerror or exc}") from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _OutputError(f"cannot write to standard output: "
                               f"{exc.strerror or exc}") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _silence_stdout(stream: Any) -> None:
    """Point a failed standard output at /dev/null, so that the interpreter's last flush of
    what is still buffered does not print a second error."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    real_stdout = sys.stdout
    if real_stdout is not None:
        sys.stdout = _GuardedStdout(real_stdout)  # type: ignore[assignment]
    try:
        code = int(args.handler(args) or 0)
        if real_stdout is not None:
            sys.stdout.flush()
        return code
    except _OutputError as exc:
        print(f"rwenas: error: {exc}", file=sys.stderr)
        _silence_stdout(real_stdout)
        return 2
    except RwenasError as exc:
        print(f"rwenas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rwenas: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = real_stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
