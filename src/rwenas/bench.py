"""A trained ground truth: a pool of architectures trained at a stated budget (``rwenas bench``).

A bench is a run directory holding a :class:`~rwenas.search.store.RunStore` (``run.db``).
Its configuration (``kind: "bench"``) names the space, the dataset and the training budget;
every trained architecture is one evaluation keyed by its canonical key, with
``objectives = [test_error]`` and ``extra = {test_acc, seed, budget, kind, retest_acc,
retest_seeds}``. The pool itself (genomes and how each was sampled) is kept in the store's
state, so a killed or interrupted build resumes with the same pool and trains only what is
missing; each finished training is committed at once.

Sampling (``sampler``): ``uniform`` draws genomes uniformly; ``mixed`` (default) interleaves
uniform samples (1/2) with "light" cells whose operations all come from pooling and skip
connections (1/4) and "conv" cells whose operations are all convolutions (1/4), so the pool
spans the range a search explores. Pools are prefix-stable: a pool of ``n`` is the first
``n`` of a pool of ``n + k`` (so ``--size`` can grow on resume).

Retest: the first ``retest`` architectures of the pool are trained twice, with two different
seeds; their test–retest Spearman correlation is the ceiling no estimator can beat.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError

__all__ = [
    "SAMPLERS",
    "Bench",
    "BenchBudget",
    "bench_records",
    "bench_summary",
    "build_bench",
    "format_summary",
    "sample_pool",
    "train_architecture",
]

SAMPLERS = ("uniform", "mixed")
KIND = "bench"
#: kinds of the mixed sampler, in the order they repeat
MIXED_PATTERN = ("uniform", "light", "uniform", "conv")
LIGHT_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")


@dataclass(frozen=True)
class BenchBudget:
    """The training budget of every architecture of a bench."""

    channels: int = 8
    layers: int = 5
    epochs: int = 3
    train_size: int | None = None
    test_size: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 3e-4
    device: str = "cpu"
    #: ``auto`` (bfloat16 autocast where native), ``fp32`` or ``bf16``: see
    #: :mod:`rwenas.train.precision`
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name in ("channels", "layers", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"bench {name} must be a positive integer, got {v!r}")
        for name in ("train_size", "test_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"bench {name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"bench lr must be positive, got {self.lr!r}")
        from rwenas.train.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"bench precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")

    def recipe(self):
        from rwenas.estimators.short_training import short_recipe

        return short_recipe(self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        return (f"C={self.channels}, {self.layers} layers, {self.epochs} epochs, "
                f"{self.train_size or 'all'} train / {self.test_size or 'all'} test images, "
                f"batch {self.batch_size}, lr {self.lr}")


# -- sampling ----------------------------------------------------------------------------------
def _restricted(space: Any, genome: tuple[int, ...], allowed: Sequence[int],
                rng: np.random.Generator) -> tuple[int, ...]:
    g = list(genome)
    for pos in range(0, len(g), 4):
        g[pos] = int(rng.choice(allowed))
        g[pos + 2] = int(rng.choice(allowed))
    return space.validate(g)


def sample_one(space: Any, kind: str, rng: np.random.Generator) -> tuple[int, ...]:
    """One genome of ``kind`` (``uniform``, ``light`` or ``conv``; the last two only for cell
    spaces, which have ``ops``: other spaces sample uniformly)."""
    genome = tuple(int(v) for v in space.sample(rng))
    ops = getattr(space, "ops", None)
    if kind == "uniform" or not ops:
        return genome
    if kind == "light":
        allowed = [i for i, op in enumerate(ops) if op in LIGHT_OPS]
    elif kind == "conv":
        allowed = [i for i, op in enumerate(ops) if "conv" in op]
    else:
        raise ConfigError(f"unknown sample kind {kind!r}")
    return _restricted(space, genome, allowed or list(range(len(ops))), rng)


def sample_pool(space: Any, size: int, *, seed: int = 0, sampler: str = "mixed",
                max_tries: int = 50) -> list[dict[str, Any]]:
    """``size`` distinct architectures (by canonical key): ``[{"genome", "key", "kind"}]``.

    Item ``i`` is drawn from a generator seeded with ``(seed, i, try)``, so the pool is
    reproducible and prefix-stable."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    pool: list[dict[str, Any]] = []
    seen: set[str] = set()
    i = 0
    while len(pool) < size:
        kind = "uniform" if sampler == "uniform" else MIXED_PATTERN[i % len(MIXED_PATTERN)]
        for attempt in range(max_tries):
            rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, i, attempt])
            genome = sample_one(space, kind, rng)
            key = space.key(genome)
            if key not in seen:
                seen.add(key)
                pool.append({"genome": list(genome), "key": key, "kind": kind})
                break
        else:
            raise ConfigError(f"could not sample {size} distinct architectures "
                              f"(stopped at {len(pool)})")
        i += 1
    return pool


# -- training ------------------------------------------------------------------------------------
def train_architecture(space: Any, genome: Sequence[int], data: Any, budget: BenchBudget,
                       seed: int) -> dict[str, Any]:
    """Train ``genome`` at ``budget`` on ``data`` (a :class:`~rwenas.train.loop.TrainData`)
    with ``seed``; ``{test_acc, params_m, madds_m, seconds}``."""
    from rwenas.build import build_network
    from rwenas.estimators.base import build_network as seeded
    from rwenas.spaces import canonical_genome
    from rwenas.train.loop import fit

    options: dict[str, Any] = {"channels": budget.channels}
    if getattr(space, "name", "") != "macro":
        options.update(layers=budget.layers, auxiliary=False, drop_path=0.0)
    t0 = time.perf_counter()
    net = seeded(lambda: build_network(space, canonical_genome(space, tuple(genome)),
                                       in_channels=data.in_channels,
                                       num_classes=data.num_classes, setting="search",
                                       **options), seed)
    result = fit(net, data, budget.recipe(), seed=seed, device=budget.device,
                 precision=budget.precision, test_every_epoch=False)
    return {"test_acc": float(result.history[-1]["test_acc"]), "params_m": result.params_m,
            "madds_m": result.madds_m, "seconds": time.perf_counter() - t0}


def arch_seed(bench_seed: int, key: str, repeat: int = 0) -> int:
    from rwenas.evaluation import derive_seed

    return derive_seed(int(bench_seed) + 7919 * repeat, key)


@dataclass(frozen=True)
class BenchContext:
    """What a worker needs (small, picklable)."""

    space: str
    dataset: str
    data_dir: str | None
    budget: dict[str, Any]
    data_seed: int = 0

    def load(self) -> _Loaded:
        from rwenas.data import load_dataset
        from rwenas.spaces import get_space
        from rwenas.train.loop import TrainData

        budget = BenchBudget(**self.budget)
        ds = load_dataset(self.dataset, self.data_dir, seed=self.data_seed)
        data = TrainData.from_dataset(ds, train_size=budget.train_size,
                                      test_size=budget.test_size, seed=self.data_seed)
        return _Loaded(get_space(self.space), data, budget)


@dataclass
class _Loaded:
    space: Any
    data: Any
    budget: BenchBudget

    def run(self, job: tuple[tuple[int, ...], tuple[int, ...]]) -> dict[str, Any]:
        genome, seeds = job
        runs = [train_architecture(self.space, genome, self.data, self.budget, s)
                for s in seeds]
        return {"runs": runs, "seeds": list(seeds)}


_WORKER: dict[str, _Loaded] = {}


def _init_worker(context: BenchContext, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["loaded"] = context.load()


def _run_in_worker(job: tuple[tuple[int, ...], tuple[int, ...]]) -> dict[str, Any]:
    return _WORKER["loaded"].run(job)


Job = tuple[tuple[int, ...], tuple[int, ...]]


def run_jobs(context: BenchContext, jobs: Sequence[Job], *, workers: int = 1,
             threads: int | None = None, loaded: _Loaded | None = None
             ) -> Iterator[tuple[Job, dict[str, Any]]]:
    """Yield ``(job, outcome)`` as trainings finish: in this process (``workers=1``) or in a
    spawned pool of ``workers`` processes (each loading the data once)."""
    if not jobs:
        return
    if workers <= 1:
        local = loaded or context.load()
        for job in jobs:
            yield job, local.run(job)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(context, threads))
    try:
        pending = {pool.submit(_run_in_worker, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                yield job, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the bench -----------------------------------------------------------------------------------
class Bench:
    """An open bench directory (its store, space and budget)."""

    def __init__(self, store: Any) -> None:
        from rwenas.spaces import get_space

        config = store.config
        if config.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{store.run_dir} is a search run, not a bench")
        self.store = store
        self.config = config
        self.space = get_space(config["space"])
        self.budget = BenchBudget(**config["budget"])
        self.trainings = 0  # trainings done through this object
        self._loaded: _Loaded | None = None

    @classmethod
    def open(cls, bench_dir: str | Path) -> Bench:
        from rwenas.search.store import RunStore

        path = Path(bench_dir)
        if not path.is_dir():
            raise ConfigError(f"bench directory {bench_dir} does not exist")
        return cls(RunStore.open(path))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def context(self) -> BenchContext:
        c = self.config
        return BenchContext(c["space"], c["dataset"], c.get("data_dir"), c["budget"],
                            int(c.get("seed", 0)))

    def accuracy(self, key: str) -> float | None:
        rec = self.store.get_evaluation(key)
        if rec is None or rec["status"] != "ok":
            return None
        return float(rec["extra"]["test_acc"])

    def train_missing(self, items: Sequence[Mapping[str, Any]], *, workers: int = 1,
                      retest_keys: set[str] | frozenset = frozenset(), progress: bool = False,
                      on_result: Callable[[dict[str, Any]], None] | None = None,
                      stop_after: int | None = None, generation: int = 0) -> int:
        """Train every item (``{"genome", "key"[, "kind"]}``) not yet in the bench (those in
        ``retest_keys`` twice); returns how many architectures were trained. Each result is
        committed as it arrives. ``stop_after``: train at most this many now."""
        from tqdm.auto import tqdm

        seed = int(self.config.get("seed", 0))
        todo: dict[str, dict[str, Any]] = {}
        for item in items:
            key = item.get("key") or self.space.key(item["genome"])
            if key not in todo and self.store.get_evaluation(key) is None:
                todo[key] = {**item, "key": key}
        todo_list = list(todo.values())[: stop_after] if stop_after else list(todo.values())
        if not todo_list:
            return 0
        jobs: list[Job] = []
        by_genome: dict[tuple[int, ...], dict[str, Any]] = {}
        for item in todo_list:
            genome = tuple(int(v) for v in item["genome"])
            repeats = 2 if item["key"] in retest_keys else 1
            jobs.append((genome, tuple(arch_seed(seed, item["key"], r) for r in range(repeats))))
            by_genome[genome] = item
        if workers <= 1 and self._loaded is None:
            self._loaded = self.context.load()
        done = 0
        bar = tqdm(total=len(jobs), unit="arch", desc="bench", disable=not progress,
                   dynamic_ncols=True)
        try:
            for (genome, seeds), outcome in run_jobs(self.context, jobs, workers=workers,
                                                     loaded=self._loaded):
                item = by_genome[genome]
                runs = outcome["runs"]
                first = runs[0]
                extra = {"test_acc": first["test_acc"], "seed": seeds[0],
                         "budget": self.budget.to_dict(), "kind": item.get("kind", "search"),
                         "retest_acc": [r["test_acc"] for r in runs[1:]],
                         "retest_seeds": list(seeds[1:])}
                self.store.add_evaluation(
                    item["key"], genome, objectives=[1.0 - first["test_acc"]],
                    generation=generation, status="ok",
                    genotype=self.space.genotype_to_json(self.space.decode(genome)),
                    params_m=first["params_m"], madds_m=first["madds_m"],
                    seconds=first["seconds"], extra=extra)
                done += 1
                self.trainings += len(runs)
                bar.update(1)
                bar.set_postfix(test_acc=f"{first['test_acc']:.4f}")
                if on_result is not None:
                    on_result({"key": item["key"], **extra})
        finally:
            bar.close()
        return done


def bench_config(space: str, dataset: str, budget: BenchBudget, *, data_dir: str | None = None,
                 seed: int = 0, sampler: str = "mixed") -> dict[str, Any]:
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    return {"kind": KIND, "space": space, "dataset": dataset, "data_dir": data_dir,
            "seed": int(seed), "sampler": sampler, "budget": budget.to_dict()}


_FIXED = ("space", "dataset", "seed", "sampler", "budget")


def build_bench(bench_dir: str | Path, *, space: str = "micro", dataset: str = "fashion-mnist",
                data_dir: str | None = None, budget: BenchBudget | None = None, size: int = 30,
                retest: int = 0, sampler: str = "mixed", seed: int = 0, workers: int = 1,
                force: bool = False, progress: bool = False, stop_after: int | None = None,
                on_result: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Create (or resume) the bench in ``bench_dir`` and train the missing part of its pool.

    An existing bench is resumed when its space, dataset, seed, sampler and budget equal the
    ones given (else :class:`ConfigError`; ``force`` starts over); ``size`` and ``retest``
    may grow. Returns ``{"trained", "size", "bench_dir"}``. Ctrl-C leaves every finished
    training in the store."""
    from rwenas.search.store import DB_NAME, RunStore
    from rwenas.spaces import get_space

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"bench size must be a positive integer, got {size!r}")
    if isinstance(retest, bool) or not isinstance(retest, int) or retest < 0:
        raise ConfigError(f"retest must be a non-negative integer, got {retest!r}")
    get_space(space)  # fail early on an unknown space
    budget = budget or BenchBudget()
    config = bench_config(space, dataset, budget, data_dir=data_dir, seed=seed, sampler=sampler)
    path = Path(bench_dir)
    if (path / DB_NAME).is_file() and not force:
        store = RunStore.open(path)
        old = store.config
        changed = [k for k in _FIXED if old.get(k) != config.get(k)]
        if old.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{path} is a search run, not a bench")
        if changed:
            store.close()
            raise ConfigError(f"bench {path} was built with other settings (changed: "
                              f"{', '.join(changed)}); use --force to start over")
    else:
        store = RunStore.create(path, config, force=force)
    with Bench(store) as bench:
        pool = sample_pool(bench.space, size, seed=seed, sampler=sampler)
        if len(pool) > len(store.get_state("pool") or []):
            store.set_state("pool", pool)
        retest = min(retest, len(pool))
        old_retest = int(store.get_state("retest", 0) or 0)
        if retest > old_retest:
            store.set_state("retest", retest)
        retest_keys = {p["key"] for p in pool[:retest]}
        trained = bench.train_missing(pool, workers=workers, retest_keys=retest_keys,
                                      progress=progress, stop_after=stop_after,
                                      on_result=on_result)
        return {"trained": trained, "trainings": bench.trainings, "size": len(pool),
                "bench_dir": str(path)}


# -- reading -------------------------------------------------------------------------------------
def bench_records(bench_dir: str | Path) -> list[dict[str, Any]]:
    """The successfully trained architectures of a bench: ``[{key, genome, test_acc, seed,
    retest_acc, kind, seconds, params_m, madds_m}]`` in training order."""
    with Bench.open(bench_dir) as bench:
        out = []
        for rec in bench.store.evaluations("ok"):
            extra = rec["extra"] or {}
            out.append({"key": rec["key"], "genome": rec["genome"],
                        "test_acc": float(extra["test_acc"]), "seed": extra.get("seed"),
                        "retest_acc": list(extra.get("retest_acc") or []),
                        "kind": extra.get("kind"), "seconds": rec["seconds"],
                        "params_m": rec["params_m"], "madds_m": rec["madds_m"]})
        return out


def retest_correlation(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Spearman/Kendall between first and second training of the retested architectures."""
    from scipy import stats

    pairs = [(r["test_acc"], r["retest_acc"][0]) for r in records if r.get("retest_acc")]
    out = {"n": len(pairs), "spearman": math.nan, "kendall": math.nan,
           "mean_abs_diff": math.nan}
    if len(pairs) >= 2:
        a, b = np.array(pairs).T
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out["spearman"] = float(stats.spearmanr(a, b).statistic)
            out["kendall"] = float(stats.kendalltau(a, b).statistic)
        out["mean_abs_diff"] = float(np.mean(np.abs(a - b)))
    return out


def bench_summary(bench_dir: str | Path) -> dict[str, Any]:
    """Count, accuracy range/mean/std, retest correlation, budget and time per architecture."""
    with Bench.open(bench_dir) as bench:
        config = bench.config
        pool = bench.store.get_state("pool") or []
        failed = len(bench.store.evaluations("failed"))
    records = bench_records(bench_dir)
    accs = np.array([r["test_acc"] for r in records], dtype=float)
    secs = np.array([r["seconds"] or 0.0 for r in records], dtype=float)
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r["kind"] or "?"] = kinds.get(r["kind"] or "?", 0) + 1
    return {
        "bench_dir": str(bench_dir), "space": config["space"], "dataset": config["dataset"],
        "sampler": config.get("sampler"), "seed": config.get("seed"),
        "budget": config["budget"], "pool_size": len(pool), "trained": len(records),
        "failed": failed, "kinds": kinds,
        "acc_min": float(accs.min()) if len(accs) else math.nan,
        "acc_max": float(accs.max()) if len(accs) else math.nan,
        "acc_mean": float(accs.mean()) if len(accs) else math.nan,
        "acc_std": float(accs.std()) if len(accs) else math.nan,
        "seconds_per_arch": float(secs.mean()) if len(secs) else math.nan,
        "retest": retest_correlation(records),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    b = BenchBudget(**summary["budget"])
    rt = summary["retest"]
    lines = [
        f"bench      {summary['bench_dir']}",
        f"space      {summary['space']} on {summary['dataset']} "
        f"(sampler {summary['sampler']}, seed {summary['seed']})",
        f"budget     {b.describe()}",
        f"trained    {summary['trained']} of {summary['pool_size']} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(summary['kinds'].items())) or 'none'})"
        + (f", {summary['failed']} failed" if summary["failed"] else ""),
        f"test acc   {100 * summary['acc_min']:.2f}–{100 * summary['acc_max']:.2f} % "
        f"(mean {100 * summary['acc_mean']:.2f} %, std {100 * summary['acc_std']:.2f})",
        f"retest     {rt['n']} architectures trained twice: Spearman {rt['spearman']:.3f}, "
        f"Kendall {rt['kendall']:.3f}, mean |Δacc| {100 * rt['mean_abs_diff']:.2f} points"
        if rt["n"] else "retest     none (use --retest N)",
        f"time       {summary['seconds_per_arch']:.1f} s per architecture (one training)",
    ]
    return "\n".join(lines)
