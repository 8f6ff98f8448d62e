"""The estimator study (SPEC §7): how well does each estimator rank architectures?

Two studies, both against a ground truth of test accuracies:

* :func:`correlate_pool` — over a fixed bench pool (:mod:`rwenas.bench`): Spearman and Kendall
  of every estimator against the bench's test accuracy, with its mean seconds per
  architecture, next to the bench's test–retest ceiling.
* :func:`study_along_search` — as in the paper's Fig. 3: NSGA-II searches (one estimator, the
  *driver*, plus MAdds as objectives), and at every generation the Spearman correlation of
  every estimator over the union of parents and offspring, against a ground-truth provider
  (:class:`BenchProvider` trains missing architectures on demand at the bench's budget and
  caches them into the bench; :class:`NB301Provider` queries NAS-Bench-301). Mean ± std per
  generation over seeds. :func:`study_init` is the same study for RWE with the five
  initialisation methods (Fig. 4).

Signs: every estimator's ``value`` is lower-is-better, so correlations are computed between
``-value`` and accuracy (a perfect estimator scores +1).

Estimator scores use one seed per architecture (``derive_seed(seed, key)``, as the search
does) and are cached by (estimator, key), so an architecture met again (in a later
generation or another search seed) is not scored again.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError

__all__ = [
    "CHEAP_ESTIMATORS",
    "INIT_METHODS",
    "STUDY_ESTIMATORS",
    "BenchProvider",
    "NB301Provider",
    "ScoreCache",
    "correlate_pool",
    "make_study_estimator",
    "rank_correlation",
    "resolve_estimators",
    "study_along_search",
    "study_init",
    "summarise_generations",
]

CHEAP_ESTIMATORS = ("rwe", "synflow", "grasp", "fisher", "jacob_cov", "snip", "grad_norm",
                    "naswot", "params", "madds")
INIT_METHODS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                "xavier_uniform")


def _registry() -> dict[str, type]:
    from rwenas.estimators.proxies import ESTIMATORS
    from rwenas.estimators.short_training import ShortTraining

    return {**ESTIMATORS, ShortTraining.name: ShortTraining}


STUDY_ESTIMATORS: Mapping[str, type] = _registry()


def make_study_estimator(name: str, **options: Any):
    """An estimator of :data:`STUDY_ESTIMATORS` (the proxies' registry plus
    ``short_training``); :class:`ConfigError` on an unknown name or option."""
    from rwenas.estimators.proxies import make_estimator

    return make_estimator(name, STUDY_ESTIMATORS, **options)


def resolve_estimators(spec: str | Sequence[str] | Mapping[str, Any] | None,
                       options: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """``{label: estimator}`` from a mapping (kept), a comma-separated string or a list of
    names (``all``: every registered one; ``cheap`` / ``None``: :data:`CHEAP_ESTIMATORS`).
    ``options[name]`` are passed to that estimator."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if spec is None:
        names: list[str] = list(CHEAP_ESTIMATORS)
    else:
        parts = spec.split(",") if isinstance(spec, str) else list(spec)
        names = []
        for part in (p.strip().lower().replace("-", "_") for p in parts):
            if not part:
                continue
            if part == "cheap":
                names += list(CHEAP_ESTIMATORS)
            elif part == "all":
                names += list(STUDY_ESTIMATORS)
            else:
                names.append(part)
    if not names:
        raise ConfigError("no estimators given")
    options = options or {}
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        out[name] = make_study_estimator(name, **dict(options.get(name, {})))
    return out


def rank_correlation(values: Sequence[float], accuracies: Sequence[float]
                     ) -> tuple[float, float]:
    """(Spearman, Kendall) between ``-values`` (estimator values, lower is better) and
    ``accuracies``; NaN when fewer than 2 finite pairs or either side is constant.
    Non-finite values (failed estimates, +inf) rank as the worst."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    a = np.asarray(accuracies, dtype=float)
    keep = ~np.isnan(v) & np.isfinite(a)
    v, a = v[keep], a[keep]
    if len(v) < 2:
        return math.nan, math.nan
    v = np.where(np.isposinf(v), np.finfo(float).max, v)
    if np.ptp(v) == 0 or np.ptp(a) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(-v, a).statistic), float(stats.kendalltau(-v, a).statistic)


# -- scoring --------------------------------------------------------------------------------------
class ScoreCache:
    """Scores architectures with estimators on one split, cached by (label, key)."""

    def __init__(self, space: Any, split: Any, info: Any, *, seed: int = 0,
                 network: Mapping[str, Any] | None = None) -> None:
        self.space = space
        self.split = split
        self.info = info
        self.seed = int(seed)
        self.network = dict(network or {})
        self.scores: dict[tuple[str, str], Any] = {}
        self._madds: dict[str, float] = {}

    def factory(self, genome: Sequence[int], estimator: Any = None) -> Callable[[], Any]:
        from rwenas.build import build_network

        options = dict(self.network)
        options.update(getattr(estimator, "network", None) or {})
        from rwenas.spaces import canonical_genome

        # the canonical genome: scores keyed and seeded by the key must come from its network
        genome = canonical_genome(self.space, tuple(int(g) for g in genome))

        def make():
            return build_network(self.space, genome, in_channels=self.info.in_channels,
                                 num_classes=self.info.num_classes, setting="search", **options)
        return make

    def score(self, label: str, estimator: Any, genome: Sequence[int]):
        from rwenas.evaluation import derive_seed

        key = self.space.key(genome)
        hit = self.scores.get((label, key))
        if hit is None:
            hit = estimator.score(self.factory(genome, estimator), self.split,
                                  seed=derive_seed(self.seed, key))
            self.scores[(label, key)] = hit
        return hit

    def madds(self, genome: Sequence[int]) -> float:
        """Multiply-adds (millions) of the search-setting network."""
        from rwenas.complexity import complexity

        key = self.space.key(genome)
        if key not in self._madds:
            info = self.info
            net = self.factory(genome)()
            self._madds[key] = complexity(net, (info.in_channels, info.image_size,
                                                info.image_size)).madds_m
        return self._madds[key]


def estimator_split(dataset: str, *, data_dir: str | None = None, seed: int = 0,
                    train_size: int | None = 2000, val_size: int | None = 500):
    """(dataset info, search split) on which the estimators score (the training set only)."""
    from rwenas.data import load_dataset, search_split

    ds = load_dataset(dataset, data_dir, seed=seed)
    split = search_split(ds, seed=seed, train_size=train_size, val_size=val_size)
    return ds.info, split


# -- ground truth providers -----------------------------------------------------------------------
class BenchProvider:
    """Test accuracies from a bench; architectures not in it are trained at its budget (on
    ``workers`` processes) and cached into it."""

    def __init__(self, bench_dir: str | Path, *, workers: int = 1, progress: bool = False
                 ) -> None:
        from rwenas.bench import Bench

        self.bench = Bench.open(bench_dir)
        self.workers = workers
        self.progress = progress
        self.space_name = self.bench.config["space"]
        self.dataset = self.bench.config["dataset"]
        self.data_dir = self.bench.config.get("data_dir")

    @property
    def trained(self) -> int:
        return self.bench.trainings

    def accuracies(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        space = self.bench.space
        items = [{"genome": list(g), "key": space.key(g), "kind": "search"} for g in genomes]
        self.bench.train_missing(items, workers=self.workers, progress=self.progress,
                                 generation=1)
        out = []
        for item in items:
            acc = self.bench.accuracy(item["key"])
            out.append(math.nan if acc is None else acc)
        return out

    def close(self) -> None:
        self.bench.close()


class NB301Provider:
    """Validation accuracies predicted by the NAS-Bench-301 surrogate (nb301 space)."""

    space_name = "nb301"
    dataset = "cifar10"
    data_dir = None

    def __init__(self, model_dir: str | Path | None = None, surrogate: Any = None) -> None:
        from rwenas.nb301 import load_surrogate

        self.surrogate = surrogate if surrogate is not None else load_surrogate(model_dir)
        self.cache: dict[tuple[int, ...], float] = {}
        self.trained = 0

    def accuracies(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        out = []
        for g in genomes:
            g = tuple(int(v) for v in g)
            if g not in self.cache:
                self.cache[g] = self.surrogate.accuracy(g)
            out.append(self.cache[g])
        return out

    def close(self) -> None:
        pass


# -- (a) a fixed pool ----------------------------------------------------------------------------
def correlate_pool(bench_dir: str | Path, estimators: Any = None, *,
                   estimator_options: Mapping[str, Mapping[str, Any]] | None = None,
                   train_size: int | None = 2000, val_size: int | None = 500, seed: int = 0,
                   network: Mapping[str, Any] | None = None, out_dir: str | Path | None = None,
                   progress: bool = False) -> list[dict[str, Any]]:
    """Spearman/Kendall of each estimator against the bench's test accuracy.

    Returns one row per estimator ``{estimator, n, spearman, kendall, seconds_mean,
    failed}``, then a ``retest`` row (the bench's test–retest correlation, the noise
    ceiling). Estimators score on the search split (``train_size``/``val_size`` of the
    bench dataset's training set) at the search setting (``network`` overrides). With
    ``out_dir``: ``correlation.csv``, ``study.md``, ``correlation.png``."""
    from tqdm.auto import tqdm

    from rwenas.bench import Bench, bench_records, retest_correlation

    with Bench.open(bench_dir) as bench:
        config = bench.config
        space = bench.space
    records = bench_records(bench_dir)
    if len(records) < 2:
        raise ConfigError(f"bench {bench_dir} has {len(records)} trained architecture(s); "
                          "need at least 2")
    ests = resolve_estimators(estimators, estimator_options)
    info, split = estimator_split(config["dataset"], data_dir=config.get("data_dir"),
                                  seed=seed, train_size=train_size, val_size=val_size)
    cache = ScoreCache(space, split, info, seed=seed, network=network)
    accs = [r["test_acc"] for r in records]
    rows = []
    bar = tqdm(total=len(ests) * len(records), unit="score", desc="estimators",
               disable=not progress, dynamic_ncols=True)
    try:
        for label, est in ests.items():
            scores = []
            for r in records:
                scores.append(cache.score(label, est, r["genome"]))
                bar.update(1)
            values = [s.value for s in scores]
            rho, tau = rank_correlation(values, accs)
            rows.append({"estimator": label, "n": len(records), "spearman": rho,
                         "kendall": tau,
                         "seconds_mean": float(np.mean([s.seconds for s in scores])),
                         "failed": sum(not s.finite for s in scores)})
    finally:
        bar.close()
    rt = retest_correlation(records)
    rows.append({"estimator": "retest", "n": rt["n"], "spearman": rt["spearman"],
                 "kendall": rt["kendall"],
                 "seconds_mean": float(np.mean([r["seconds"] or 0.0 for r in records])),
                 "failed": 0})
    if out_dir is not None:
        write_pool_outputs(rows, out_dir, title=_pool_title(config, len(records)))
    return rows


def _pool_title(config: Mapping[str, Any], n: int) -> str:
    from rwenas.bench import BenchBudget

    return (f"{n} {config['space']} architectures on {config['dataset']} "
            f"({BenchBudget(**config['budget']).describe()})")


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def write_pool_outputs(rows: Sequence[Mapping[str, Any]], out_dir: str | Path,
                       title: str = "") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["estimator", "n", "spearman", "kendall", "seconds_mean", "failed"]
    with open(out / "correlation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
    lines = ["# Estimator study: rank correlation with trained test accuracy", ""]
    if title:
        lines += [title, ""]
    lines += ["| estimator | n | Spearman | Kendall | s / arch |", "|---|---|---|---|---|"]
    for r in rows:
        name = "test–retest (ceiling)" if r["estimator"] == "retest" else r["estimator"]
        lines.append(f"| {name} | {r['n']} | {_fmt(r['spearman'])} | {_fmt(r['kendall'])} | "
                     f"{_fmt(r['seconds_mean'], 2)} |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    png = out / "correlation.png"
    _bar_plot(rows, png, title)
    return {"csv": out / "correlation.csv", "md": out / "study.md", "png": png}


def _bar_plot(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["estimator"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(rows) + 2), 4))
    sp = [r["spearman"] if math.isfinite(r["spearman"]) else 0.0 for r in rows]
    kt = [r["kendall"] if math.isfinite(r["kendall"]) else 0.0 for r in rows]
    ax.bar(x - 0.2, sp, 0.4, label="Spearman")
    ax.bar(x + 0.2, kt, 0.4, label="Kendall")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("rank correlation with test accuracy")
    ax.set_ylim(-1, 1)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- (b) along NSGA-II searches --------------------------------------------------------------------
def _worst(v: float) -> float:
    return v if math.isfinite(v) else 1e12


def study_along_search(provider: Any, estimators: Any = None, *, driver: str = "rwe",
                       seeds: int | Sequence[int] = 5, generations: int = 10, pop_size: int = 10,
                       estimator_options: Mapping[str, Mapping[str, Any]] | None = None,
                       dataset: str | None = None, data_dir: str | None = None,
                       train_size: int | None = 2000, val_size: int | None = 500,
                       estimator_seed: int = 0, network: Mapping[str, Any] | None = None,
                       out_dir: str | Path | None = None, title: str = "",
                       progress: bool = False) -> list[dict[str, Any]]:
    """Per-generation rank correlation of each estimator along NSGA-II searches.

    For every search seed, NSGA-II (:func:`rwenas.search.nsga2.make_algorithm`: pop
    ``pop_size``, ``generations`` generations, objectives: the ``driver`` estimator's value
    and MAdds) runs ask-and-tell; at every generation the union of parents and offspring gets
    ground-truth accuracies from ``provider`` and every estimator's Spearman/Kendall over it.
    Returns rows ``{seed, generation, estimator, spearman, kendall, n}``; with ``out_dir``
    also ``along_search.csv``, ``summary.csv``, ``study.md`` and ``along_search.png``.
    ``driver`` is an estimator label of ``estimators`` or a registered name."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.problems.static import StaticProblem
    from tqdm.auto import tqdm

    from rwenas.search.nsga2 import make_algorithm
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
    cache = ScoreCache(space, split, info, seed=estimator_seed, network=network)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(seed_list) * generations, unit="gen", desc="study",
               disable=not progress, dynamic_ncols=True)
    try:
        for s in seed_list:
            config = {"objectives": ["driver", "madds"], "pop_size": pop_size,
                      "generations": generations, "crossover_prob": 0.9, "mutation_eta": 3.0,
                      "seed": s}
            algorithm = make_algorithm(space, config)
            fix_rng = np.random.default_rng([s, 301])
            generation = 0
            while algorithm.has_next():
                parents = [] if algorithm.pop is None else [
                    tuple(int(v) for v in x) for x in algorithm.pop.get("X")]
                pop = algorithm.ask()
                genomes = [tuple(int(v) for v in np.rint(x)) for x in pop.get("X")]
                if hasattr(space, "fix"):
                    genomes = [space.fix(g, fix_rng) for g in genomes]
                    pop.set("X", np.array(genomes, dtype=int))
                F = np.array([[_worst(cache.score(driver_label, driver_est, g).value),
                               cache.madds(g)] for g in genomes], dtype=float)
                Evaluator().eval(StaticProblem(algorithm.problem, F=F), pop)
                algorithm.tell(infills=pop)
                union: dict[str, tuple[int, ...]] = {}
                for g in parents + genomes:
                    union.setdefault(space.key(g), g)
                members = list(union.values())
                accs = provider.accuracies(members)
                for label, est in ests.items():
                    values = [cache.score(label, est, g).value for g in members]
                    rho, tau = rank_correlation(values, accs)
                    rows.append({"seed": s, "generation": generation, "estimator": label,
                                 "spearman": rho, "kendall": tau, "n": len(members)})
                generation += 1
                bar.update(1)
    finally:
        bar.close()
    if out_dir is not None:
        write_search_outputs(rows, out_dir, title=title or (
            f"NSGA-II driven by {driver} + MAdds: pop {pop_size}, {generations} generations, "
            f"{len(seed_list)} seeds; ground truth {type(provider).__name__}"))
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
        cells = [f"{_fmt(table[(e, g)]['mean'], 2)} ± {_fmt(table[(e, g)]['std'], 2)}"
                 for g in gens]
        means = [table[(e, g)]["mean"] for g in gens if math.isfinite(table[(e, g)]["mean"])]
        lines.append(f"| {e} | " + " | ".join(cells) +
                     f" | {_fmt(float(np.mean(means)) if means else math.nan, 2)} |")
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


def study_init(provider: Any, *, methods: Sequence[str] = INIT_METHODS,
               rwe_options: Mapping[str, Any] | None = None, driver: str = "rwe",
               **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`study_along_search` for RWE under each initialisation method (Fig. 4): the
    estimators are ``rwe[<method>]``; the search is driven by plain RWE (``driver``)."""
    from rwenas.estimators.proxies import RWEEstimator
    from rwenas.estimators.rwe import INIT_METHODS as KNOWN

    bad = [m for m in methods if m not in KNOWN]
    if bad:
        raise ConfigError(f"unknown init method(s) {', '.join(bad)} (known: {', '.join(KNOWN)})")
    opts = dict(rwe_options or {})
    opts.pop("init", None)
    ests = {f"rwe[{m}]": RWEEstimator(init=m, **opts) for m in methods}
    options = dict(kwargs.pop("estimator_options", None) or {})
    options.setdefault(driver, opts if driver == "rwe" else {})
    kwargs.setdefault("title", f"RWE initialisation methods; NSGA-II driven by {driver} + MAdds")
    if driver == "rwe" and "default" in methods:
        driver = "rwe[default]"  # the same estimator: score once
    return study_along_search(provider, ests, driver=driver, estimator_options=options,
                              **kwargs)
