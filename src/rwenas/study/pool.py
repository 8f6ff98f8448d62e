"""The study over a fixed bench pool, selected by source and by half (tuning or
confirmation): Spearman and Kendall of every estimator against the bench's ground truth with
bootstrap intervals, paired differences to RWE, partial correlations at equal cost and the
truth's reliability (:mod:`rwenas.study.correlation`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rwenas.errors import ConfigError
from rwenas.study import stats
from rwenas.study.estimators import ScoreCache, estimator_split, resolve_estimators
from rwenas.study.scores import open_score_store


def _sizes(est: Any, train_size: int | None, val_size: int | None
           ) -> tuple[int | None, int | None]:
    """The search-split sizes an estimator scores on: its own ``images`` if it has them."""
    images = getattr(est, "images", None)
    return (train_size, val_size) if images is None else (images[0], images[1])


def score_pool(records: Sequence[Mapping[str, Any]], estimators: Mapping[str, Any], *,
               space: Any, dataset: str, data_dir: str | None = None,
               train_size: int | None = 2000, val_size: int | None = 500, seed: int = 0,
               network: Mapping[str, Any] | None = None, progress: bool = False,
               store: Any = None) -> dict[str, list[Any]]:
    """``{label: [Score per record]}``: every estimator on every record's genome, on the
    search split of ``dataset`` (an estimator with ``images = (train, val)`` gets a split of
    that size), seeded per architecture by ``derive_seed(seed, key)``. ``store`` (a
    :class:`rwenas.study.scores.ScoreStore`) keeps the scores across runs."""
    from tqdm.auto import tqdm

    caches: dict[tuple[int | None, int | None], ScoreCache] = {}
    out: dict[str, list[Any]] = {}
    bar = tqdm(total=len(estimators) * len(records), unit="score", desc="estimators",
               disable=not progress, dynamic_ncols=True)
    try:
        for label, est in estimators.items():
            sizes = _sizes(est, train_size, val_size)
            if sizes not in caches:
                info, split = estimator_split(dataset, data_dir=data_dir, seed=seed,
                                              train_size=sizes[0], val_size=sizes[1])
                caches[sizes] = ScoreCache(
                    space, split, info, seed=seed, network=network, store=store,
                    split_context={"dataset": dataset, "train_size": sizes[0],
                                   "val_size": sizes[1]})
            scores = []
            for r in records:
                scores.append(caches[sizes].score(label, est, r["genome"]))
                bar.update(1)
            out[label] = scores
    finally:
        bar.close()
    return out


def pool_records(bench_dir: str | Path, *, sources: Sequence[str] | None = None,
                 half: str = "all", split_seed: int = 0) -> list[dict[str, Any]]:
    """The bench's records of ``sources`` (default every pool source) in ``half``."""
    from rwenas.study.bench import bench_records, select_half

    return select_half(bench_dir, bench_records(bench_dir, sources), half, split_seed)


def correlate_pool(bench_dir: str | Path, estimators: Any = None, *,
                   estimator_options: Mapping[str, Mapping[str, Any]] | None = None,
                   train_size: int | None = 2000, val_size: int | None = 500, seed: int = 0,
                   network: Mapping[str, Any] | None = None, out_dir: str | Path | None = None,
                   progress: bool = False, sources: Sequence[str] | None = None,
                   half: str = "all", split_seed: int = 0, resamples: int = 2000,
                   bins: int = 4, reference: str = "rwe", title: str = "",
                   note: str = "", score_store: str | Path | None = None,
                   retest_seed: int | None = None) -> dict[str, Any]:
    """The pool study: every estimator against the bench's ground truth, with intervals.

    The pool is the bench's records of ``sources`` (default: uniform, light, conv, search)
    in ``half`` (``all``, ``tuning`` or ``confirmation``, split by ``split_seed``).
    Estimators score on the search split (``train_size``/``val_size`` of the bench
    dataset's training set) at the search setting (``network`` overrides). Returns
    :func:`rwenas.study.correlation.correlation_report` (``reference``: the estimator the
    paired differences are taken against; the retest statistics are over the pool's
    retested architectures), plus ``"records"`` and ``"sources"``; with ``out_dir`` also
    writes ``study.md``, ``correlation.csv``, ``bins.csv`` and ``correlation.png``
    (``note`` is appended to the title). ``score_store``: a SQLite file keeping every score
    (:mod:`rwenas.study.scores`), so a re-run scores only what is new. ``retest_seed``:
    score every estimator again with that seed (another search split, other random weights)
    and add each one's agreement with itself
    (:func:`rwenas.study.correlation.estimator_retest`) as ``"estimator_retest"``."""
    from rwenas.study.bench import Bench, _check_sources, retest_correlation
    from rwenas.study.correlation import correlation_report, estimator_retest, write_report

    with Bench.open(bench_dir) as bench:
        config = bench.config
        space = bench.space
    wanted = _check_sources(sources)
    records = pool_records(bench_dir, sources=wanted, half=half, split_seed=split_seed)
    if len(records) < 3:
        raise ConfigError(f"bench {bench_dir} has {len(records)} trained architecture(s) of "
                          f"sources {','.join(wanted)} in half {half!r}; need at least 3")
    if retest_seed is not None and retest_seed == seed:
        raise ConfigError(f"the estimators' second scoring needs another seed than {seed}")
    ests = resolve_estimators(estimators, estimator_options)
    with open_score_store(score_store) as store:
        def scored(at_seed: int) -> dict[str, list[Any]]:
            return score_pool(records, ests, space=space, dataset=config["dataset"],
                              data_dir=config.get("data_dir"), train_size=train_size,
                              val_size=val_size, seed=at_seed, network=network,
                              progress=progress, store=store)

        scores = scored(seed)
        again = scored(retest_seed) if retest_seed is not None else None
    report = correlation_report(
        {k: [s.value for s in v] for k, v in scores.items()},
        [r["truth"] for r in records], [r["source"] for r in records],
        [r["madds_m"] for r in records], [r["params_m"] for r in records],
        reference=reference, resamples=resamples, seed=seed, bins=bins,
        retest=retest_correlation(records, resamples=resamples, seed=seed),
        seconds={k: stats.typical_seconds([s.seconds for s in v]) for k, v in scores.items()},
        failed={k: sum(not s.finite for s in v) for k, v in scores.items()})
    if again is not None:
        report["estimator_retest"] = {"seed": retest_seed, "rows": estimator_retest(
            {k: [s.value for s in v] for k, v in scores.items()},
            {k: [s.value for s in v] for k, v in again.items()},
            [r["truth"] for r in records], resamples=resamples, seed=seed)}
    report["records"] = len(records)
    report["sources"] = list(wanted)
    report["half"] = half
    if out_dir is not None:
        title = title or _pool_title(config, records, wanted, half, split_seed)
        write_report(report, out_dir, title=title + (f"; {note}" if note else ""))
    return report


def _pool_title(config: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                sources: Sequence[str], half: str, split_seed: int) -> str:
    from rwenas.study.bench import BenchBudget

    counts: dict[str, int] = {}
    for r in records:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    which = "" if half == "all" else f", {half} half (split seed {split_seed})"
    return (f"{len(records)} {config['space']} architectures on {config['dataset']} "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}; sources "
            f"{','.join(sources)}{which}); truth trained at "
            f"{BenchBudget(**config['budget']).describe()}")


def fmt(x: float, digits: int = 3) -> str:
    """A number for a table: ``digits`` decimals, a dash when missing or not finite."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"
