"""``rwenas bench build|add-search|show``: the ground truth of the estimator study."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rwenas.cli.args import (
    Parser,
    add_estimator_split_args,
    add_search_length_args,
    device_type,
    layers_type,
    positive_int,
    seed_type,
    set_threads,
    threads_type,
)
from rwenas.errors import ConfigError


def cmd_bench_build(args: argparse.Namespace) -> int:
    from rwenas.checks import check_device
    from rwenas.study.bench import BenchBudget, bench_summary, build_bench, format_summary

    check_device(args.device)  # CUDA asked for where there is none: before anything is written
    set_threads(args)
    budget = BenchBudget(channels=args.channels, layers=args.layers, epochs=args.epochs,
                         train_size=args.train_size, test_size=args.test_size,
                         batch_size=args.batch_size, lr=args.lr, device=args.device,
                         precision=args.precision)
    result = build_bench(args.bench_dir, space=args.space, dataset=args.dataset,
                         data_dir=args.data_dir, budget=budget, size=args.size,
                         retest=args.retest, sampler=args.sampler, seed=args.seed,
                         workers=args.workers, force=args.force, progress=not args.quiet,
                         time_limit=args.time_limit)
    print(f"trained {result['trained']} architecture(s) now")
    print(format_summary(bench_summary(args.bench_dir)))
    return 0


def cmd_bench_add_search(args: argparse.Namespace) -> int:
    from rwenas.study.bench import add_search

    set_threads(args)
    if not Path(args.bench_dir).is_dir():
        raise ConfigError(f"bench directory {args.bench_dir} does not exist")
    result = add_search(args.bench_dir, seeds=args.seeds, per_seed=args.per_seed,
                        generations=args.generations, pop_size=args.pop_size,
                        train_size=args.train_size, val_size=args.val_size,
                        estimator_seed=args.seed, progress=not args.quiet)
    per_seed = ", ".join(f"seed {s}: {n}" for s, n in result["per_seed"].items())
    print(f"added {result['added']} search-visited architecture(s) to the pool "
          f"({per_seed}); {result['search_size']} of source 'search' in all. "
          "`rwenas bench build` with the bench's settings trains them.")
    return 0


def cmd_bench_merge(args: argparse.Namespace) -> int:
    from rwenas.study.bench import bench_summary, format_merge, format_summary, merge_bench

    result = merge_bench(args.src_dir, args.dest_dir, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_merge(result))
    if not args.dry_run:
        print(format_summary(bench_summary(args.dest_dir)))
    return 0


def cmd_bench_retest(args: argparse.Namespace) -> int:
    from rwenas.study.retest import format_retest, retest_bench, retest_summary

    set_threads(args)
    if args.count is None:  # report only
        summary = retest_summary(args.out_dir)
    else:
        summary = retest_bench(args.bench_dir, args.out_dir, count=args.count,
                               sources=args.sources, seed=args.seed, workers=args.workers,
                               time_limit=args.time_limit, force=args.force,
                               progress=not args.quiet)
    _print_summary(summary, args.json, format_retest)
    return 0


def add_training_pace_args(p: argparse.ArgumentParser) -> None:
    """--workers, --threads and --time-limit of the commands that train bench architectures."""
    from rwenas.checks import MAX_WORKERS, number_arg

    p.add_argument("--workers", type=number_arg("workers", integer=True, low=1,
                                                high=MAX_WORKERS),
                   default=1, help="parallel training processes (default 1)")
    p.add_argument("--threads", type=threads_type, help="torch threads (workers=1)")
    p.add_argument("--time-limit", type=number_arg("time limit", low=0, low_open=True,
                                                   high=1e9),
                   metavar="SECONDS", help="start no training after this many seconds "
                   "(running ones finish and are kept; default: none)")


def cmd_bench_show(args: argparse.Namespace) -> int:
    from rwenas.study.bench import bench_summary, format_summary, parse_sources

    summary = bench_summary(args.bench_dir, parse_sources(args.sources))
    _print_summary(summary, args.json, format_summary)
    return 0


def _print_summary(summary: dict[str, Any], as_json: bool,
                   text: Callable[[dict[str, Any]], str]) -> None:
    """A summary as JSON (values JSON cannot hold as null) or as its text."""
    print(json.dumps(summary, indent=2, default=lambda o: None) if as_json else text(summary))


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="a trained ground truth: build or summarise a bench")
    bsub = p.add_subparsers(dest="bench_command", required=True, parser_class=Parser)

    from rwenas.checks import MAX_CHANNELS, number_arg
    from rwenas.fit.precision import PRECISIONS

    b = bsub.add_parser("build", help="train a sample of architectures (resumable)")
    b.add_argument("bench_dir", metavar="BENCH_DIR", help="bench directory (holds run.db); "
                   "an existing bench with the same settings is resumed")
    b.add_argument("--space", default="micro", help="micro, nb301, macro (default micro)")
    b.add_argument("--dataset", default="fashion-mnist", help="dataset (default fashion-mnist)")
    b.add_argument("--data-dir", help="where dataset files are")
    b.add_argument("--size", type=number_arg("size", integer=True, low=1, high=10**6),
                   default=30, help="architectures in the pool (default 30; may grow on resume)")
    b.add_argument("--sampler", choices=("uniform", "mixed"), default="mixed",
                   help="mixed: uniform + pooling/skip-heavy + convolution-heavy cells")
    b.add_argument("--retest", type=number_arg("retest", integer=True, low=0, high=10**6),
                   default=5, help="train the first N architectures twice (default 5)")
    b.add_argument("--channels", type=number_arg("channels", integer=True, low=1,
                                                 high=MAX_CHANNELS),
                   default=8, help="default 8")
    b.add_argument("--layers", type=layers_type, default=5, help="default 5")
    b.add_argument("--epochs", type=number_arg("epochs", integer=True, low=1, high=10**6),
                   default=3, help="default 3")
    b.add_argument("--train-size", type=positive_int,
                   help="training images (default all of the training set)")
    b.add_argument("--test-size", type=positive_int,
                   help="test images (default the whole test set)")
    b.add_argument("--batch-size", type=number_arg("batch size", integer=True, low=1,
                                                   high=10**6),
                   default=128, help="default 128")
    b.add_argument("--lr", type=number_arg("lr", low=0, low_open=True, high=1e6), default=0.05,
                   help="default 0.05 (cosine to 0)")
    b.add_argument("--device", type=device_type, default="cpu",
                   help="cpu, cuda or auto (default cpu)")
    b.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bfloat16 autocast where native; fp32 forces float32")
    b.add_argument("--seed", type=seed_type, default=0,
                   help="pool, data sub-sample and weights")
    add_training_pace_args(b)
    b.add_argument("--force", action="store_true", help="start an existing bench over")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(handler=cmd_bench_build)

    a = bsub.add_parser("add-search", help="add architectures visited by RWE-driven NSGA-II "
                        "searches to the pool (source 'search'); bench build trains them")
    a.add_argument("bench_dir", metavar="BENCH_DIR")
    a.add_argument("--seeds", type=positive_int, default=3,
                   help="searches, seeds 0..N-1 (default 3)")
    a.add_argument("--per-seed", type=positive_int, default=20,
                   help="architectures sampled across each search's generations (default 20)")
    add_search_length_args(a)
    add_estimator_split_args(a, "RWE")
    a.add_argument("--seed", type=seed_type, default=0,
                   help="RWE evaluation seed (default 0)")
    a.add_argument("--threads", type=positive_int, help="torch threads")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(handler=cmd_bench_add_search)

    m = bsub.add_parser("merge", help="copy into DEST_DIR the trainings of SRC_DIR it lacks "
                        "(the same bench trained elsewhere, e.g. on a GPU)")
    m.add_argument("src_dir", metavar="SRC_DIR", help="a copy of the bench, trained further")
    m.add_argument("dest_dir", metavar="DEST_DIR", help="the bench to complete; its finished "
                   "trainings are never overwritten")
    m.add_argument("--dry-run", action="store_true", help="report what would be copied, "
                   "write nothing")
    m.add_argument("--json", action="store_true", help="the counts as JSON")
    m.set_defaults(handler=cmd_bench_merge)

    r = bsub.add_parser("retest", help="train a sample of a bench's once-trained architectures "
                        "again into a separate store: the reliability of its single trainings "
                        "(the bench is only read)")
    r.add_argument("bench_dir", metavar="BENCH_DIR", help="the bench (or on-demand cache)")
    r.add_argument("out_dir", metavar="RETEST_DIR", help="the retest store (resumed when it "
                   "exists with the same settings)")
    r.add_argument("--count", type=number_arg("count", integer=True, low=1, high=10**6),
                   help="architectures to retest, a seeded uniform sample (may grow on "
                   "resume); without it, only report RETEST_DIR")
    r.add_argument("--sources", help="comma-separated sources to sample from (default all "
                   "pool sources; on_demand only when named)")
    r.add_argument("--seed", type=seed_type, default=0, help="the sample's seed (default 0)")
    add_training_pace_args(r)
    r.add_argument("--force", action="store_true", help="start an existing retest over")
    r.add_argument("--json", action="store_true")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(handler=cmd_bench_retest)

    s = bsub.add_parser("show", help="summarise a bench: size, sources, budget, reliability")
    s.add_argument("bench_dir", metavar="BENCH_DIR")
    s.add_argument("--sources", help="comma-separated sources (default all: uniform, light, "
                   "conv, search; on_demand only when named)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_bench_show)
