"""``rwenas search``: start or resume a search; the report is written here, after the search."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rwenas.checks import MAX_GENERATIONS, MAX_POP_SIZE, MAX_RETRIES, MAX_WORKERS, number_arg
from rwenas.cli.args import (
    add_rwe_args,
    add_trust_arg,
    channels_type,
    image_size_type,
    layers_type,
    minutes_type,
    non_negative_float,
    positive_float,
    positive_int,
    seed_type,
    stagnation_type,
    threads_type,
)
from rwenas.errors import ConfigError


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


def add_search(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--image-size", type=image_size_type, help="image size (imagefolder)")
    p.add_argument("--train-size", type=positive_int, help="sub-sample the training split")
    p.add_argument("--val-size", type=positive_int, help="sub-sample the validation split")
    p.add_argument("--seed", type=seed_type, help="run seed (default 0)")
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
    p.add_argument("--max-minutes", type=minutes_type,
                   help="stop at the first generation boundary after M minutes of search "
                        "(resumable; --resume with a larger M extends it)")
    p.add_argument("--stop-after-stagnation", type=stagnation_type, metavar="K",
                   help="stop when the hypervolume has not improved for K generations")
    p.add_argument("--max-madds", type=positive_float,
                   help="hard constraint: multiply-adds (M) <= X")
    p.add_argument("--max-params", type=positive_float,
                   help="hard constraint: parameters (M) <= X")
    p.add_argument("--max-latency-ms", type=positive_float,
                   help="hard constraint: batch-1 latency")
    p.add_argument("--latency-batch", type=positive_int,
                   help="batch size of the latency_batch objective (default 64)")
    p.add_argument("--executor", choices=("local", "process", "ray"),
                   help="local (in-process), process (--workers N processes) or ray")
    p.add_argument("--workers", type=number_arg("workers", integer=True, low=1,
                                                high=MAX_WORKERS), help="parallel evaluations")
    p.add_argument("--threads", type=threads_type, help="torch threads per evaluation")
    p.add_argument("--ray-address", help="join a Ray cluster: auto or HOST:PORT")
    p.add_argument("--gpus-per-eval", type=non_negative_float,
                   help="GPUs per Ray evaluation (e.g. 0.25)")
    p.add_argument("--max-retries", type=number_arg("max_retries", integer=True, low=0,
                                                    high=MAX_RETRIES),
                   help="retries of a failed evaluation (default 2)")
    add_rwe_args(p)
    p.add_argument("--channels", type=channels_type, help="search-network channels")
    p.add_argument("--layers", type=layers_type, help="search-network cells (micro)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_search)
