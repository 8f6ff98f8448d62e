"""``rwenas study correlation|tune|init``: the estimator study on a bench (or NAS-Bench-301);
``rwenas study table``: the paper's Table 1, measured end to end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rwenas.cli.args import (
    Parser,
    add_estimator_split_args,
    add_search_length_args,
    device_type,
    image_size_type,
    layers_type,
    positive_float,
    positive_int,
    seed_type,
    set_threads,
    threads_type,
)
from rwenas.errors import ConfigError


def _estimator_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    rwe = {k: getattr(args, "rwe_" + k) for k in ("epochs", "folds")
           if getattr(args, "rwe_" + k, None) is not None}
    short = {k: getattr(args, "short_" + k) for k in ("epochs", "channels", "layers")
             if getattr(args, "short_" + k, None) is not None}
    return {"rwe": rwe, "short_training": short}


def _provider(args: argparse.Namespace):
    from rwenas.study.providers import BenchProvider, NB301Provider

    if args.nb301_models:
        return NB301Provider(args.nb301_models)
    if args.device is not None:
        from rwenas.checks import check_device

        check_device(args.device)
    if not args.bench:
        raise ConfigError("give --bench BENCH_DIR (or --nb301-models DIR)")
    if not Path(args.bench).is_dir():
        raise ConfigError(f"bench directory {args.bench} does not exist")
    return BenchProvider(args.bench, cache_dir=args.cache, workers=args.workers,
                         progress=not args.quiet, device=args.device,
                         time_limit=args.time_limit)


def _search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"seeds": args.seeds, "generations": args.generations, "pop_size": args.pop_size,
            "dataset": args.dataset, "data_dir": args.data_dir, "train_size": args.train_size,
            "val_size": args.val_size, "estimator_seed": args.seed,
            "progress": not args.quiet, "out_dir": args.out,
            "score_store": _score_store(args) if args.bench else None}


def _print_rows(path: Path) -> None:
    print(path.read_text().rstrip())


def _check_bench(args: argparse.Namespace) -> None:
    if not args.bench:
        raise ConfigError("give --bench BENCH_DIR")
    if not Path(args.bench).is_dir():
        raise ConfigError(f"bench directory {args.bench} does not exist")


def cmd_study_correlation(args: argparse.Namespace) -> int:
    from rwenas.study.along_search import Unfinished, study_along_search
    from rwenas.study.bench import parse_sources
    from rwenas.study.estimators import resolve_estimators
    from rwenas.study.pool import correlate_pool

    set_threads(args)
    options = _estimator_options(args)
    estimators = resolve_estimators(args.estimators, options)  # fail early on a bad name
    if args.along_search:
        if args.tuned or args.half != "all" or args.rescore_seed is not None \
                or args.rwe_variants:
            raise ConfigError("--tuned, --rwe-variants, --half and --rescore-seed apply to "
                              "the pool study, not --along-search")
        provider = _provider(args)
        try:
            try:
                study_along_search(provider, estimators, driver=args.driver,
                                   estimator_options=options, **_search_kwargs(args))
            except Unfinished as exc:
                print(f"trained {provider.trained} architecture(s) on demand into "
                      f"{provider.cache_dir}; {exc.remaining} left at the time limit: run "
                      "the same command again to continue")
                if exc.rows:  # --out is required
                    print(f"partial results (generations 0-{exc.generations - 1} of every "
                          f"search) in {args.out}")
                    _print_rows(Path(args.out) / "study.md")
                return 0
            if provider.trained:
                print(f"trained {provider.trained} architecture(s) on demand into "
                      f"{provider.cache_dir} (a cache outside every pool)")
        finally:
            provider.close()
    else:
        _check_bench(args)
        sources = parse_sources(args.sources)
        note = ""
        if args.tuned:
            from rwenas.study.tune import load_tuned

            tuned, picked = load_tuned(args.tuned)
            if args.half != "confirmation":
                raise ConfigError("a tuned RWE is reported on the confirmation half only: "
                                  "add --half confirmation")
            if int(picked.get("split_seed", 0)) != args.split_seed:
                raise ConfigError(f"{args.tuned} was tuned with --split-seed "
                                  f"{picked.get('split_seed')}, not {args.split_seed}")
            if "rwe" not in estimators:
                raise ConfigError("--tuned replaces the estimator 'rwe'; include it in "
                                  "--estimators")
            # the shipped RWE stays beside the pick, so the confirmation half also tests
            # the tuning's decision: the paired interval of pick − shipped default
            shipped = estimators["rwe"]
            estimators = {"rwe": tuned, **({"rwe[default]": shipped}
                                           if picked["variant"] != "default" else {}),
                          **{k: v for k, v in estimators.items() if k != "rwe"}}
            note = (f"rwe = the variant {picked['variant']} ({picked.get('description', '')}),"
                    f" picked on the tuning half by rwenas study tune; rwe[default] = RWE at "
                    "its shipped defaults")
        if args.rwe_variants:
            from rwenas.study.tune import variant_estimators

            if "rwe" not in estimators:
                raise ConfigError("--rwe-variants are measured beside 'rwe' (the paired "
                                  "intervals are taken against it); include it in "
                                  "--estimators")
            extra = variant_estimators(args.rwe_variants, options["rwe"])
            # beside rwe, before the other estimators: the table reads default, variants, rest
            estimators = {"rwe": estimators["rwe"], **extra,
                          **{k: v for k, v in estimators.items() if k != "rwe"}}
        correlate_pool(args.bench, estimators, train_size=args.train_size,
                       val_size=args.val_size, seed=args.seed, out_dir=args.out,
                       progress=not args.quiet, sources=sources, half=args.half,
                       split_seed=args.split_seed, resamples=args.resamples, bins=args.bins,
                       note=note, score_store=_score_store(args),
                       retest_seed=args.rescore_seed)
    _print_rows(Path(args.out) / "study.md")
    return 0


def cmd_study_tune(args: argparse.Namespace) -> int:
    from rwenas.study.bench import parse_sources
    from rwenas.study.tune import tune_rwe

    set_threads(args)
    _check_bench(args)
    result = tune_rwe(args.bench, args.variants, budget=args.budget,
                      sources=parse_sources(args.sources), split_seed=args.split_seed,
                      seed=args.seed, resamples=args.resamples, out_dir=args.out,
                      progress=not args.quiet, score_store=_score_store(args))
    _print_rows(Path(args.out) / "tune.md")
    return 0 if result["picked"] is not None else 1


def cmd_study_init(args: argparse.Namespace) -> int:
    from rwenas.study.estimators import INIT_METHODS
    from rwenas.study.init_ablation import study_init

    set_threads(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods \
        else list(INIT_METHODS)
    if args.pool:
        from rwenas.study.bench import parse_sources
        from rwenas.study.init_ablation import study_init_pool

        _check_bench(args)
        study_init_pool(args.bench, methods=methods,
                        rwe_options=_estimator_options(args)["rwe"],
                        train_size=args.train_size, val_size=args.val_size, seed=args.seed,
                        out_dir=args.out, progress=not args.quiet,
                        sources=parse_sources(args.sources), half=args.half,
                        split_seed=args.split_seed, resamples=args.resamples,
                        score_store=_score_store(args))
    else:
        provider = _provider(args)
        try:
            study_init(provider, methods=methods, rwe_options=_estimator_options(args)["rwe"],
                       **_search_kwargs(args))
        finally:
            provider.close()
    _print_rows(Path(args.out) / "study.md")
    return 0


BUDGET_FIELDS = ("channels", "layers", "epochs", "train_size", "test_size", "batch_size", "lr",
                 "device", "precision")


def _table_budget(args: argparse.Namespace):
    """The training budget: the bench's defaults < ``--budget FILE`` (JSON or TOML with
    :class:`~rwenas.study.bench.BenchBudget` fields) < the flags given."""
    import dataclasses

    from rwenas.build import load_json_file
    from rwenas.search.config import load_toml
    from rwenas.study.bench import BenchBudget

    known = [f.name for f in dataclasses.fields(BenchBudget)]
    values: dict[str, Any] = {}
    if args.budget:
        data = load_toml(args.budget) if str(args.budget).endswith(".toml") \
            else load_json_file(args.budget, "budget")
        if not isinstance(data, dict):
            raise ConfigError(f"budget file {args.budget} must hold a table of settings")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"budget file {args.budget}: unknown setting(s) "
                              f"{', '.join(unknown)} (known: {', '.join(known)})")
        values.update(data)
    values.update({k: getattr(args, k) for k in BUDGET_FIELDS if getattr(args, k) is not None})
    return BenchBudget(**values)


def cmd_study_table(args: argparse.Namespace) -> int:
    from rwenas.checks import check_device
    from rwenas.study.table import TableSettings, build_table

    set_threads(args)
    budget = _table_budget(args)
    check_device(budget.device)  # CUDA asked for where there is none: before anything is written
    if args.bench and not Path(args.bench).is_dir():
        raise ConfigError(f"bench directory {args.bench} does not exist")
    network = {k: v for k, v in (("channels", args.search_channels),
                                 ("layers", args.search_layers)) if v is not None}
    rwe = {k: v for k, v in (("epochs", args.rwe_epochs), ("folds", args.rwe_folds))
           if v is not None}
    published = None
    if args.published is not None:
        text = args.published.strip()
        published = () if text.lower() == "none" else tuple(
            n.strip() for n in text.split(",") if n.strip())
    settings = TableSettings(
        space=args.space, dataset=args.dataset, data_dir=args.data_dir,
        image_size=args.image_size, seed=args.seed, seeds=args.seeds, pop_size=args.pop_size,
        generations=args.generations, search_train_size=args.search_train_size,
        search_val_size=args.search_val_size, search_network=network, rwe=rwe,
        proxy=args.proxy, samples=args.samples, match_tolerance=args.match_tolerance,
        published=published, budget=budget)
    result = build_table(args.out, settings, bench=args.bench, force=args.force,
                         progress=not args.quiet, workers=args.workers,
                         threads=args.threads, time_limit=args.time_limit,
                         searches_from=args.searches_from)
    if not result["complete"]:
        print(f"{result['remaining']} training(s) left; run the same command again to continue")
        return 0
    _print_rows(Path(result["files"]["md"]))
    return 0


def _add_study_common(p: argparse.ArgumentParser, along: bool) -> None:
    p.add_argument("--bench", metavar="BENCH_DIR", help="ground truth: a bench (rwenas bench "
                   "build); along a search, missing architectures are trained on demand into "
                   "a cache beside it (--cache), never into its pool")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (CSV, "
                   "study.md, PNG)")
    add_estimator_split_args(p, "estimator")
    p.add_argument("--seed", type=seed_type, default=0,
                   help="estimator and bootstrap seed (default 0)")
    p.add_argument("--rwe-epochs", type=positive_int, help="RWE classifier epochs")
    p.add_argument("--rwe-folds", type=positive_int, help="RWE ensemble folds")
    p.add_argument("--threads", type=positive_int, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if along:
        p.add_argument("--nb301-models", metavar="DIR", help="ground truth: the NAS-Bench-301 "
                       "surrogate (pip install nasbench301; nb301 space)")
        p.add_argument("--dataset", help="estimators' dataset (default: the bench's)")
        p.add_argument("--data-dir", help="where dataset files are")
        p.add_argument("--seeds", type=positive_int, default=5, help="searches (default 5)")
        add_search_length_args(p)
        p.add_argument("--workers", type=positive_int, default=1,
                       help="processes training missing architectures (default 1)")
        p.add_argument("--cache", metavar="DIR", help="where architectures missing from the "
                       "bench are trained on demand (default BENCH_DIR/on-demand)")
        p.add_argument("--device", type=device_type, help="where on-demand trainings run: "
                       "cpu, cuda or auto (default: the bench's; the budget stays the same)")
        p.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                       help="start no on-demand training after this many seconds; the "
                       "same command again continues (default: none)")


def _add_pool_args(p: argparse.ArgumentParser, half: bool = True) -> None:
    from rwenas.study.bench import HALVES

    p.add_argument("--sources", help="comma-separated pool sources: uniform, light, conv, "
                   "search (default all of them; on_demand only when named)")
    if half:
        p.add_argument("--half", choices=HALVES, default="all", help="all (default), or the "
                       "tuning or confirmation half (seeded, stratified by source)")
    p.add_argument("--split-seed", type=seed_type, default=0,
                   help="seed of the tuning/confirmation split (default 0)")
    p.add_argument("--resamples", type=positive_int, default=2000,
                   help="bootstrap resamples of architectures (default 2000)")
    p.add_argument("--score-cache", metavar="FILE",
                   help="SQLite file keeping every estimator score, so a re-run scores only "
                        "new architectures, and along searches does not score the searches "
                        "again (default BENCH/scores.db; 'none': keep nothing)")


def _score_store(args: argparse.Namespace) -> Path | None:
    """The score cache file of a study (``--score-cache``; default in the bench)."""
    if args.score_cache is None:
        return Path(args.bench) / "scores.db"
    return None if args.score_cache.lower() == "none" else Path(args.score_cache)


def add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="estimator study: rank correlation with ground truth")
    ssub = p.add_subparsers(dest="study_command", required=True, parser_class=Parser)

    c = ssub.add_parser("correlation", help="estimators vs. ground truth (pool or along "
                        "NSGA-II searches)")
    _add_study_common(c, along=True)
    c.add_argument("--estimators", default="cheap", help="comma-separated: rwe, synflow, "
                   "grasp, fisher, jacob_cov, snip, grad_norm, naswot, params, madds, "
                   "short_training; 'cheap' (default: all but short_training) or 'all'")
    c.add_argument("--along-search", action="store_true",
                   help="per generation along NSGA-II searches (Fig. 3) instead of the pool")
    c.add_argument("--driver", default="rwe", help="estimator driving the search (default rwe)")
    c.add_argument("--short-epochs", type=positive_int, help="short_training epochs (10)")
    c.add_argument("--short-channels", type=positive_int, help="short_training C (16)")
    c.add_argument("--short-layers", type=positive_int, help="short_training layers (8)")
    _add_pool_args(c)
    c.add_argument("--bins", type=positive_int, default=4,
                   help="MAdds bins for Spearman at equal cost (default 4: quartiles)")
    c.add_argument("--tuned", metavar="PICKED_JSON", help="replace 'rwe' by the variant "
                   "rwenas study tune picked (needs --half confirmation)")
    c.add_argument("--rwe-variants", metavar="NAMES", help="also measure these RWE "
                   "variants of rwenas study tune (comma-separated: l8, images-5k, inits-3, "
                   "...; 'all') as rwe[NAME], each against the default rwe; measurement "
                   "only: choose among them with rwenas study tune, on the tuning half")
    c.add_argument("--rescore-seed", type=seed_type, metavar="SEED", help="score every "
                   "estimator again with this seed (another search split, other random "
                   "weights) and report how well each agrees with itself")
    c.set_defaults(handler=cmd_study_correlation)

    t = ssub.add_parser("tune", help="measure RWE variants on the tuning half and pick the "
                        "best Spearman within a time budget")
    t.add_argument("--bench", metavar="BENCH_DIR", help="ground truth: a bench")
    t.add_argument("--out", required=True, metavar="DIR", help="output directory (tune.md, "
                   "tune.csv, picked.json)")
    t.add_argument("--variants", default="all", help="comma-separated variant names "
                   "(default all; see rwenas.study.tune.VARIANTS)")
    t.add_argument("--budget", type=positive_float, default=5.0,
                   help="seconds per architecture a variant may take (default 5)")
    t.add_argument("--seed", type=seed_type, default=0,
                   help="estimator and bootstrap seed (default 0)")
    t.add_argument("--threads", type=positive_int, help="torch threads")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_pool_args(t, half=False)  # always the tuning half
    t.set_defaults(handler=cmd_study_tune)

    _add_table(ssub)

    i = ssub.add_parser("init", help="RWE under the 5 initialisation methods along NSGA-II "
                        "searches, or on the bench pool with --pool (Fig. 4)")
    _add_study_common(i, along=True)
    i.add_argument("--methods", help="comma-separated subset of default, kaiming_normal, "
                   "kaiming_uniform, xavier_normal, xavier_uniform")
    i.add_argument("--pool", action="store_true", help="on the bench's pool (with --half, "
                   "--sources, intervals and paired differences against the default init) "
                   "instead of along searches")
    _add_pool_args(i)
    i.set_defaults(handler=cmd_study_init)


def _add_table(ssub: argparse._SubParsersAction) -> None:
    from rwenas.checks import (
        MAX_CHANNELS,
        MAX_GENERATIONS,
        MAX_POP_SIZE,
        MAX_WORKERS,
        number_arg,
    )
    from rwenas.fit.precision import PRECISIONS

    t = ssub.add_parser("table", help="Table 1, measured: RWE + NSGA-II, random search, "
                        "MAdds-matched random, a proxy-driven search and published cells, "
                        "all trained at one budget (resumable)")
    t.add_argument("--out", required=True, metavar="DIR", help="output directory (table.md, "
                   "table.csv, table.json, table.png; the searches and trainings); the same "
                   "command again continues it")
    t.add_argument("--space", default="micro", help="search space (default micro)")
    t.add_argument("--dataset", default="fashion-mnist", help="any dataset rwenas loads "
                   "(default fashion-mnist)")
    t.add_argument("--data-dir", help="where dataset files are")
    t.add_argument("--image-size", type=image_size_type, help="image size (imagefolder, "
                   "synthetic)")
    t.add_argument("--seed", type=seed_type, default=0, help="searches, data sub-samples, the "
                   "random sample and the training seeds (default 0)")
    t.add_argument("--seeds", type=number_arg("seeds", integer=True, low=2, high=1000),
                   default=2, help="trainings per architecture, different seeds (default 2)")
    t.add_argument("--pop-size", type=number_arg("pop_size", integer=True, low=2,
                                                 high=MAX_POP_SIZE),
                   default=20, help="search population (default 20, the paper's)")
    t.add_argument("--generations", type=number_arg("generations", integer=True, low=1,
                                                    high=MAX_GENERATIONS),
                   default=20, help="search generations, the first counted (default 20)")
    t.add_argument("--search-train-size", type=positive_int, default=2000,
                   help="RWE training images of the search split (default 2000)")
    t.add_argument("--search-val-size", type=positive_int, default=500,
                   help="RWE validation images of the search split (default 500)")
    t.add_argument("--search-channels", type=number_arg("channels", integer=True, low=1,
                                                        high=MAX_CHANNELS),
                   help="channels of the search-setting network (default: the space's)")
    t.add_argument("--search-layers", type=layers_type,
                   help="cells of the search-setting network (default: the space's)")
    t.add_argument("--rwe-epochs", type=positive_int, help="RWE classifier epochs")
    t.add_argument("--rwe-folds", type=positive_int, help="RWE ensemble folds")
    t.add_argument("--proxy", default="jacob_cov", help="zero-cost proxy driving row 4's "
                   "NSGA-II, with MAdds (default jacob_cov)")
    t.add_argument("--samples", type=number_arg("samples", integer=True, low=1, high=10**6),
                   default=2000, help="row 3: at most this many random architectures drawn "
                   "per pick to find one of matched MAdds (default 2000)")
    t.add_argument("--match-tolerance", type=number_arg("match-tolerance", low=0.0, high=1.0),
                   default=0.05, help="row 3: relative MAdds tolerance of a match (default "
                   "0.05)")
    t.add_argument("--published", help="comma-separated published cells of row 5 (default "
                   "DARTS,NSGANet,AmoebaNet,NASNet,ENAS; 'none' for no row 5)")
    t.add_argument("--budget", metavar="FILE", help="training budget as JSON or TOML "
                   "(BenchBudget fields); the flags below override it")
    t.add_argument("--channels", type=number_arg("channels", integer=True, low=1,
                                                 high=MAX_CHANNELS),
                   help="training budget: channels (default 8)")
    t.add_argument("--layers", type=layers_type, help="training budget: cells (default 5)")
    t.add_argument("--epochs", type=number_arg("epochs", integer=True, low=1, high=10**6),
                   help="training budget: epochs (default 3)")
    t.add_argument("--train-size", type=positive_int,
                   help="training budget: training images (default all)")
    t.add_argument("--test-size", type=positive_int,
                   help="test images (default: the whole test set)")
    t.add_argument("--batch-size", type=number_arg("batch size", integer=True, low=1,
                                                   high=10**6),
                   help="training budget: batch (default 128)")
    t.add_argument("--lr", type=number_arg("lr", low=0, low_open=True, high=1e6),
                   help="training budget: learning rate (default 0.05, cosine to 0)")
    t.add_argument("--device", type=device_type, help="where trainings run: cpu (default), "
                   "cuda or auto")
    t.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): bfloat16 autocast where native; fp32")
    t.add_argument("--bench", metavar="BENCH_DIR", help="reuse this bench's trainings of the "
                   "same architecture, budget, data and seed instead of training again")
    t.add_argument("--threads", type=threads_type, help="torch threads (of each worker)")
    t.add_argument("--workers", type=number_arg("workers", integer=True, low=1,
                                                high=MAX_WORKERS),
                   default=1, help="parallel training processes (default 1); the same "
                   "results as one")
    t.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="start no training after this many seconds (running ones finish and "
                   "are kept); the same command again continues (default: none)")
    t.add_argument("--searches-from", metavar="TABLE_DIR", help="start this table's searches "
                   "from those of another table with the same search settings (e.g. the "
                   "same table at another training budget); they continue here")
    t.add_argument("--force", action="store_true", help="start an existing table over")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(handler=cmd_study_table)
