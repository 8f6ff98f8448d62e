"""A bench's reliability measured afterwards, without touching it (``rwenas bench retest``).

A bench's truth is the mean of an architecture's trainings, and only the architectures the
build retested (``--retest N``, the first N of the sampled pool) were trained twice; the
others — search-visited members, an on-demand cache's architectures — hold one training, of
unknown reliability. Retesting them inside the bench would change their truth (one run
becomes the mean of two) and every table read from it, so a retest goes to a *separate*
store: a uniform random sample of ``count`` once-trained architectures (prefix-stable in
``count``, seeded), each trained again exactly as the bench would have retested it (same
budget, data and the second-run seed :func:`~rwenas.study.bench.arch_seed` ``(seed, key,
1)``). Their test–retest Spearman against the bench's first runs is the reliability of the
bench's single trainings in that population; the bench itself is only read.

The store (``kind = "bench-retest"``) names the bench it retests and its settings; a resume
continues the same sample, and ``count`` may grow. The sample is drawn from the bench as it is
at each call: a bench that has grown since draws from its new population, and the report
keeps every retest already stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError
from rwenas.study.bench import (
    Bench,
    arch_seed,
    bench_records,
    changed_settings,
    parse_sources,
    retest_correlation,
    run_jobs,
)

KIND = "bench-retest"


def retest_sample(records: Sequence[dict[str, Any]], count: int, seed: int
                  ) -> list[dict[str, Any]]:
    """``count`` of the once-trained ``records``, drawn uniformly with ``seed``; the draw
    of a smaller count is a prefix of a larger one's (the order is one permutation)."""
    once = sorted((r for r in records if not r["retest_acc"]), key=lambda r: r["key"])
    order = np.random.default_rng(seed).permutation(len(once))
    return [once[i] for i in order[:count]]


def _config(bench_dir: Path, bench_config: dict[str, Any], sources: Sequence[str],
            seed: int) -> dict[str, Any]:
    return {"kind": KIND, "bench": str(bench_dir), "bench_config": bench_config,
            "sources": list(sources), "seed": int(seed)}


def _open_store(out_dir: Path, config: dict[str, Any], force: bool) -> Any:
    from rwenas.search.store import DB_NAME, RunStore

    if (out_dir / DB_NAME).is_file() and not force:
        store = RunStore.open(out_dir)
        old = store.config
        if old.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{out_dir} holds no bench retest (its kind is "
                              f"{old.get('kind')!r}); choose another directory")
        changed = [k for k in ("sources", "seed") if old.get(k) != config[k]]
        changed += changed_settings(old.get("bench_config") or {}, config["bench_config"])
        if changed:
            store.close()
            raise ConfigError(f"retest {out_dir} was made with other settings (changed: "
                              f"{', '.join(changed)}); use --force to start over")
        return store
    return RunStore.create(out_dir, config, force=force)


def retest_bench(bench_dir: str | Path, out_dir: str | Path, *, count: int,
                 sources: str | Sequence[str] | None = None, seed: int = 0, workers: int = 1,
                 time_limit: float | None = None, force: bool = False,
                 progress: bool = False,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a second time ``count`` once-trained architectures of the bench in ``bench_dir``
    (of ``sources``; default every pool source, ``on_demand`` when named) into the retest
    store ``out_dir``, resumably; returns :func:`retest_summary`. ``time_limit``: seconds
    after which no training starts (running ones finish and are kept)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"retest count must be a positive integer, got {count!r}")
    bench_dir, out_dir = Path(bench_dir), Path(out_dir)
    if out_dir.resolve() == bench_dir.resolve():
        raise ConfigError("the retest store must be another directory than the bench")
    wanted = parse_sources(sources) if isinstance(sources, str) or sources is None \
        else tuple(sources)
    records = bench_records(bench_dir, wanted)  # checks the sources and the bench
    with Bench.open(bench_dir) as bench:
        bench_config = dict(bench.config)
        context = bench.context
        space = bench.space
    sample = retest_sample(records, count, seed)
    if not sample:
        raise ConfigError(f"bench {bench_dir} has no once-trained architecture in sources "
                          f"{', '.join(wanted)} to retest")
    store = _open_store(out_dir, _config(bench_dir, bench_config, wanted, seed), force)
    bench_seed = int(bench_config.get("seed", 0))
    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    try:
        todo = [r for r in sample if store.get_evaluation(r["key"]) is None]
        jobs = [(tuple(int(v) for v in r["genome"]), (arch_seed(bench_seed, r["key"], 1),))
                for r in todo]
        by_genome = {job[0]: r for job, r in zip(jobs, todo, strict=True)}
        from tqdm.auto import tqdm

        with tqdm(total=len(jobs), unit="arch", desc="retest", disable=not progress,
                  dynamic_ncols=True) as bar:
            for (genome, seeds), outcome in run_jobs(context, jobs, workers=workers,
                                                     deadline=deadline):
                rec = by_genome[genome]
                run = outcome["runs"][0]
                extra = {"test_acc": run["test_acc"], "seed": seeds[0],
                         "first_acc": rec["test_acc"], "first_seed": rec["seed"],
                         "source": rec["source"], "device": run["device"]}
                store.add_evaluation(
                    rec["key"], genome, objectives=[1.0 - run["test_acc"]], generation=0,
                    genotype=space.genotype_to_json(space.decode(genome)),
                    params_m=run["params_m"], madds_m=run["madds_m"],
                    seconds=run["seconds"], extra=extra)
                bar.update(1)
                if on_result is not None:
                    on_result({"key": rec["key"], **extra})
        store.set_state("count", max(count, int(store.get_state("count", 0) or 0)))
    finally:
        store.close()
    return retest_summary(out_dir)


def retest_summary(out_dir: str | Path, *, resamples: int = 2000) -> dict[str, Any]:
    """Test–retest statistics of a retest store against the bench's first runs, as the
    bench's own (:func:`~rwenas.study.bench.retest_correlation`), plus what it retests."""
    from rwenas.search.store import DB_NAME, RunStore

    out_dir = Path(out_dir)
    if not (out_dir / DB_NAME).is_file():
        raise ConfigError(f"{out_dir} holds no bench retest ({DB_NAME} missing)")
    store = RunStore.open(out_dir)
    try:
        config = store.config
        if config.get("kind") != KIND:
            raise ConfigError(f"{out_dir} holds no bench retest (its kind is "
                              f"{config.get('kind')!r})")
        rows = [{"test_acc": float(r["extra"]["first_acc"]),
                 "retest_acc": [float(r["extra"]["test_acc"])]}
                for r in store.evaluations("ok")]
        count = int(store.get_state("count", 0) or 0)
    finally:
        store.close()
    stats = retest_correlation(rows, resamples=resamples)
    first = np.array([r["test_acc"] for r in rows]) if rows else np.array([])
    return {"retest_dir": str(out_dir), "bench": config["bench"],
            "sources": config["sources"], "seed": config["seed"], "count": count,
            "trained": len(rows), "first_std": float(first.std()) if len(first) > 1 else None,
            **stats}


def format_retest(summary: dict[str, Any]) -> str:
    """``bench retest``'s text."""
    s = summary
    lines = [f"retest     {s['retest_dir']} of bench {s['bench']} "
             f"(sources {', '.join(s['sources'])}, sample seed {s['seed']})",
             f"trained    {s['trained']} of {s['count']} once-trained architectures sampled"]
    if s["n"] >= 2:
        lines.append(f"reliability test–retest Spearman {s['spearman']:.3f} "
                     f"[{s['spearman_lo']:.3f}, {s['spearman_hi']:.3f}] (95 % bootstrap, "
                     f"n={s['n']}), Kendall {s['kendall']:.3f}, mean |Δacc| "
                     f"{100 * s['mean_abs_diff']:.2f} points (first runs' std "
                     f"{100 * s['first_std']:.2f})")
        lines.append(f"bound      no estimator can exceed Spearman sqrt(reliability) = "
                     f"{s['bound']:.2f} [{s['bound_lo']:.2f}, {s['bound_hi']:.2f}] with the "
                     "bench's single trainings of this population")
    else:
        lines.append("reliability unknown (fewer than 2 architectures retested)")
    return "\n".join(lines)
