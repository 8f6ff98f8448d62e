"""The paper's Fig. 3: NSGA-II searches (one estimator, the *driver*, plus MAdds as
objectives), and at every generation the Spearman correlation of every estimator over the
union of parents and offspring, against a ground-truth provider; mean ± std per generation
over seeds."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError
from rwenas.study.estimators import (
    ScoreCache,
    estimator_split,
    make_study_estimator,
    rank_correlation,
    resolve_estimators,
)
from rwenas.study.pool import fmt
from rwenas.study.scores import open_score_store


class Unfinished(Exception):
    """The ground truth of the visited architectures is not complete (a provider's time
    limit stopped its trainings): ``remaining`` are left; the same call again continues.
    ``rows`` are the correlations of the generations complete in every search (the
    trainings go generation by generation across the searches), ``generations`` how many."""

    def __init__(self, remaining: int, rows: Sequence[Mapping[str, Any]] = (),
                 generations: int = 0) -> None:
        super().__init__(f"{remaining} architecture(s) left to train")
        self.remaining = remaining
        self.rows = list(rows)
        self.generations = generations


def study_along_search(provider: Any, estimators: Any = None, *, driver: str = "rwe",
                       seeds: int | Sequence[int] = 5, generations: int = 10, pop_size: int = 10,
                       estimator_options: Mapping[str, Mapping[str, Any]] | None = None,
                       dataset: str | None = None, data_dir: str | None = None,
                       train_size: int | None = 2000, val_size: int | None = 500,
                       estimator_seed: int = 0, network: Mapping[str, Any] | None = None,
                       out_dir: str | Path | None = None, title: str = "",
                       progress: bool = False,
                       score_store: str | Path | None = None) -> list[dict[str, Any]]:
    """Per-generation rank correlation of each estimator along NSGA-II searches.

    For every search seed, NSGA-II (:func:`rwenas.search.nsga2.make_algorithm`: pop
    ``pop_size``, ``generations`` generations, objectives: the ``driver`` estimator's value
    and MAdds) runs ask-and-tell; at every generation the union of parents and offspring gets
    ground-truth accuracies from ``provider`` and every estimator's Spearman/Kendall over it.
    Returns rows ``{seed, generation, estimator, spearman, kendall, n}``; with ``out_dir``
    also ``along_search.csv``, ``summary.csv``, ``study.md`` and ``along_search.png``.
    ``score_store``: a SQLite file keeping every estimator score (:mod:`rwenas.study.scores`),
    so running the study again (to continue its trainings) does not score the searches again.
    ``driver`` is an estimator label of ``estimators`` or a registered name."""

    from rwenas.spaces import get_space

    ests = resolve_estimators(estimators, estimator_options)
    driver_label = driver
    driver_est = ests.get(driver)
    if driver_est is None:
        driver_label = "driver:" + driver
        driver_est = make_study_estimator(driver, **dict((estimator_options or {})
                                                         .get(driver, {})))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list or generations < 1 or pop_size < 2:
        raise ConfigError("the study needs at least one seed, one generation and pop_size >= 2")
    space = get_space(provider.space_name)
    info, split = estimator_split(dataset or provider.dataset,
                                  data_dir=data_dir if data_dir is not None
                                  else provider.data_dir,
                                  seed=estimator_seed, train_size=train_size, val_size=val_size)
    with open_score_store(score_store) as store:
        cache = ScoreCache(space, split, info, seed=estimator_seed, network=network, store=store,
                           split_context={"dataset": dataset or provider.dataset,
                                          "train_size": train_size, "val_size": val_size})
        # the searches first (the driver and MAdds steer them, never the ground truth), so
        # every architecture they visit can be trained in one pool of workers before
        # correlating
        runs = _search_visits(space, seed_list, lambda g: cache.score(
            driver_label, driver_est, g).value, cache.madds, generations, pop_size, progress)
        title = title or (f"NSGA-II driven by {driver} + MAdds: pop {pop_size}, "
                          f"{generations} generations, {len(seed_list)} seeds; ground truth "
                          f"{type(provider).__name__}")
        try:
            rows = _correlate_runs(provider, ests, cache, runs)
        except Unfinished as exc:
            if out_dir is not None and exc.rows:
                write_search_outputs(exc.rows, out_dir, title=(
                    f"{title}. **Partial:** generations 0-{exc.generations - 1} of every "
                    f"search; {exc.remaining} trainings left"))
            raise
    if out_dir is not None:
        write_search_outputs(rows, out_dir, title=title)
    return rows


def _search_visits(space: Any, seed_list: Sequence[int], objective: Any, madds: Any,
                   generations: int, pop_size: int, progress: bool
                   ) -> list[tuple[int, int, list[tuple[int, ...]]]]:
    """``[(seed, generation, union of parents and offspring)]`` of NSGA-II over
    (``objective``, ``madds``), one search per seed."""
    from tqdm.auto import tqdm

    from rwenas.study.search_visits import nsga2_visits

    runs: list[tuple[int, int, list[tuple[int, ...]]]] = []
    bar = tqdm(total=len(seed_list) * generations, unit="gen", desc="searches",
               disable=not progress, dynamic_ncols=True)
    try:
        for s in seed_list:
            visits = nsga2_visits(space, objective, madds, seed=s,
                                  generations=generations, pop_size=pop_size)
            for generation, parents, genomes in visits:
                union: dict[str, tuple[int, ...]] = {}
                for g in parents + genomes:
                    union.setdefault(space.key(g), g)
                runs.append((s, generation, list(union.values())))
                bar.update(1)
    finally:
        bar.close()
    return runs


def _correlate_runs(provider: Any, ests: Mapping[str, Any], cache: ScoreCache,
                    runs: Sequence[tuple[int, int, list[tuple[int, ...]]]]
                    ) -> list[dict[str, Any]]:
    """Every estimator's rank correlation with the provider's truth, per (seed, generation).

    A provider that trains (``prefetch``) first trains every visited architecture in one
    pool, generation by generation across the searches, so a time limit leaves the early
    generations of every search complete; it then raises :class:`Unfinished` with the
    correlations of those generations."""
    prefetch = getattr(provider, "prefetch", None)
    if prefetch is not None:
        by_generation = sorted(runs, key=lambda run: (run[1], run[0]))
        remaining = prefetch([g for _s, _gen, members in by_generation for g in members])
        if remaining:
            complete = _complete_generations(provider, runs)
            raise Unfinished(remaining, _correlate(provider, ests, cache, [
                run for run in runs if run[1] < complete]), complete)
    return _correlate(provider, ests, cache, runs)


def _complete_generations(provider: Any, runs: Sequence[tuple[int, int, list[Any]]]) -> int:
    """How many generations, from the first, have the truth of every member in every search."""
    generations = sorted({gen for _s, gen, _m in runs})
    for i, gen in enumerate(generations):
        if any(provider.missing(members) for _s, g, members in runs if g == gen):
            return i
    return len(generations)


def _correlate(provider: Any, ests: Mapping[str, Any], cache: ScoreCache,
               runs: Sequence[tuple[int, int, list[tuple[int, ...]]]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s, generation, members in runs:
        accs = provider.accuracies(members)
        for label, est in ests.items():
            values = [cache.score(label, est, g).value for g in members]
            rho, tau = rank_correlation(values, accs)
            rows.append({"seed": s, "generation": generation, "estimator": label,
                         "spearman": rho, "kendall": tau, "n": len(members)})
    return rows


def summarise_generations(rows: Sequence[Mapping[str, Any]], metric: str = "spearman"
                          ) -> list[dict[str, Any]]:
    """Mean ± std (over seeds, finite values only; ``ddof=0``) per (estimator, generation)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r["estimator"], int(r["generation"])), []).append(float(r[metric]))
    out = []
    for (est, gen), vals in groups.items():
        finite = [v for v in vals if math.isfinite(v)]
        out.append({"estimator": est, "generation": gen,
                    "mean": float(np.mean(finite)) if finite else math.nan,
                    "std": float(np.std(finite)) if finite else math.nan,
                    "seeds": len(finite)})
    return out


def write_search_outputs(rows: Sequence[Mapping[str, Any]], out_dir: str | Path,
                         title: str = "", stem: str = "along_search") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["seed", "generation", "estimator", "spearman", "kendall", "n"]
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
    summary = summarise_generations(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["estimator", "generation", "mean", "std", "seeds"])
        w.writeheader()
        w.writerows(summary)
    ests = list(dict.fromkeys(r["estimator"] for r in rows))
    gens = sorted({int(r["generation"]) for r in rows})
    table = {(r["estimator"], r["generation"]): r for r in summary}
    lines = ["# Estimator study along NSGA-II searches (Spearman, mean ± std over seeds)", ""]
    if title:
        lines += [title, ""]
    lines.append("| estimator | " + " | ".join(f"gen {g}" for g in gens) + " | mean |")
    lines.append("|---" * (len(gens) + 2) + "|")
    for e in ests:
        cells = [f"{fmt(table[(e, g)]['mean'], 2)} ± {fmt(table[(e, g)]['std'], 2)}"
                 for g in gens]
        means = [table[(e, g)]["mean"] for g in gens if math.isfinite(table[(e, g)]["mean"])]
        lines.append(f"| {e} | " + " | ".join(cells) +
                     f" | {fmt(float(np.mean(means)) if means else math.nan, 2)} |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    png = out / f"{stem}.png"
    _line_plot(summary, ests, gens, png, title)
    return {"csv": out / f"{stem}.csv", "summary": out / "summary.csv",
            "md": out / "study.md", "png": png}


def _line_plot(summary: Sequence[Mapping[str, Any]], ests: Sequence[str], gens: Sequence[int],
               path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = {(r["estimator"], r["generation"]): r for r in summary}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for e in ests:
        m = np.array([table[(e, g)]["mean"] for g in gens], dtype=float)
        sd = np.array([table[(e, g)]["std"] for g in gens], dtype=float)
        (line,) = ax.plot(gens, m, marker="o", ms=3, label=e)
        ax.fill_between(gens, m - sd, m + sd, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("generation")
    ax.set_ylabel("Spearman with ground truth")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
