"""A trained ground truth: a pool of architectures trained at a stated budget (``rwenas bench``).

A bench is a run directory holding a :class:`~rwenas.search.store.RunStore` (``run.db``).
Its configuration (``kind: "bench"``) names the space, the dataset and the training budget;
every trained architecture is one evaluation keyed by its canonical key, with
``objectives = [test_error]`` and ``extra = {test_acc, seed, budget, kind, retest_acc,
retest_seeds}`` (plus ``search_seed``, ``search_generation`` for search-visited ones). The
pool itself (genomes and how each was drawn) is kept in the store's state, so a killed or
interrupted build resumes with the same pool and trains only what is missing; each finished
training is committed at once.

**Sources.** Every member of the pool has a source (its ``kind``), and studies select pools by
source (:data:`SOURCES`; no study mixes them silently):

* ``uniform``, ``light``, ``conv`` — the sampled pool (state ``pool``). ``sampler="uniform"``
  draws genomes uniformly; ``mixed`` (default) interleaves uniform samples (1/2) with "light"
  cells whose operations all come from pooling and skip connections (1/4) and "conv" cells
  whose operations are all convolutions (1/4), so the pool spans the range a search explores.
  Sampled pools are prefix-stable: a pool of ``n`` is the first ``n`` of a pool of ``n + k``
  (so ``--size`` can grow on resume).
* ``search`` — architectures that RWE-driven NSGA-II searches visit (state ``search_pool``,
  appended by :func:`add_search` with their search seed and generation), trained by the next
  ``bench build``.
* ``on_demand`` — an architecture trained into this store that belongs to no pool (benches
  made before on-demand trainings got their own cache,
  :class:`rwenas.study.providers.BenchProvider`).
  Never part of a pool unless asked for by name.

Retest: the first ``retest`` architectures of the sampled pool are trained twice, with two
different seeds. Their test–retest Spearman correlation is the truth's reliability ``r``; no
estimator can correlate with the measured truth by more than ``sqrt(r)``. Where an
architecture was trained twice, its ground truth (``truth``) is the mean of the two runs.
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
    "SOURCES",
    "Bench",
    "BenchBudget",
    "add_search",
    "bench_pool",
    "bench_records",
    "bench_summary",
    "budget_network",
    "build_bench",
    "format_merge",
    "format_summary",
    "merge_bench",
    "sample_pool",
    "train_architecture",
]

SAMPLERS = ("uniform", "mixed")
KIND = "bench"
#: kinds of the mixed sampler, in the order they repeat
MIXED_PATTERN = ("uniform", "light", "uniform", "conv")
LIGHT_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")
#: the sources a pool is selected from; ``on_demand`` (in no pool) only when named
SOURCES = ("uniform", "light", "conv", "search")
ON_DEMAND = "on_demand"
#: budget fields that say where a training runs, not what is trained (see
#: :meth:`BenchBudget.identity`)
WHERE = ("device",)


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
    #: :mod:`rwenas.fit.precision`
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
        from rwenas.fit.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"bench precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")

    def recipe(self):
        from rwenas.estimators.short_training import short_recipe

        return short_recipe(self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What is trained, not where: the budget without its ``device``. Two budgets with the
        same identity train the same networks on the same data with the same recipe and
        seeds, so a bench continued on a GPU (or merged from one) keeps one budget; each
        training records the device it ran on (``extra["device"]``)."""
        return {k: v for k, v in self.to_dict().items() if k not in WHERE}

    def describe(self) -> str:
        return (f"C={self.channels}, {self.layers} layers, {self.epochs} epochs, "
                f"{self.train_size or 'all'} train / {self.test_size or 'all'} test images, "
                f"batch {self.batch_size}, lr {self.lr}")


def same_budget(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two stored budgets (``BenchBudget.to_dict()``) are the same budget: equal but
    perhaps for the device (:meth:`BenchBudget.identity`; missing fields take their
    defaults, as when the budget is loaded)."""
    if a is None or b is None:
        return a is b
    try:
        return BenchBudget(**a).identity() == BenchBudget(**b).identity()
    except (TypeError, ConfigError):
        return dict(a) == dict(b)


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The settings that make two bench configurations different benches (:data:`_FIXED`;
    the budget compared by :func:`same_budget`, so a change of device is none)."""
    return [k for k in _FIXED if (not same_budget(old.get(k), new.get(k)) if k == "budget"
                                  else old.get(k) != new.get(k))]


# -- sampling ----------------------------------------------------------------------------------
def op_positions(genome: Sequence[int]) -> list[int]:
    """Where a cell genome holds operations: blocks are (op, input, op, input)."""
    return [at for pos in range(0, len(genome), 4) for at in (pos, pos + 2)]


def _restricted(space: Any, genome: tuple[int, ...], allowed: Sequence[int],
                rng: np.random.Generator) -> tuple[int, ...]:
    g = list(genome)
    for at in op_positions(g):
        g[at] = int(rng.choice(allowed))
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
def budget_network(space: Any, budget: BenchBudget, *, in_channels: int, num_classes: int,
                   genome: Sequence[int] | None = None, genotype: Any = None) -> Any:
    """The network of ``genome`` (built from its canonical genome) or of ``genotype`` (e.g. a
    published cell without a genome) at ``budget``'s scale: the search setting at
    ``budget.channels`` (and ``budget.layers`` cells), no auxiliary head, no drop path."""
    from rwenas.build import build_network
    from rwenas.spaces import canonical_genome

    if (genome is None) == (genotype is None):
        raise ConfigError("give exactly one of a genome or a genotype")
    options: dict[str, Any] = {"channels": budget.channels}
    if getattr(space, "name", "") != "macro":
        options.update(layers=budget.layers, auxiliary=False, drop_path=0.0)
    arch = genotype if genome is None else canonical_genome(space, tuple(int(v) for v in genome))
    return build_network(space, arch, in_channels=in_channels, num_classes=num_classes,
                         setting="search", **options)


def train_architecture(space: Any, genome: Sequence[int] | None, data: Any,
                       budget: BenchBudget, seed: int, *, genotype: Any = None
                       ) -> dict[str, Any]:
    """Train ``genome`` (or, when it is ``None``, ``genotype``: a published cell without a
    genome) at ``budget`` on ``data`` (a :class:`~rwenas.fit.loop.TrainData`) with ``seed``;
    ``{test_acc, params_m, madds_m, seconds}``."""
    from rwenas.device import device_label
    from rwenas.estimators.base import build_network as seeded
    from rwenas.fit.loop import fit

    t0 = time.perf_counter()
    net = seeded(lambda: budget_network(space, budget, in_channels=data.in_channels,
                                        num_classes=data.num_classes, genome=genome,
                                        genotype=genotype if genome is None else None), seed)
    result = fit(net, data, budget.recipe(), seed=seed, device=budget.device,
                 precision=budget.precision, test_every_epoch=False)
    return {"test_acc": float(result.history[-1]["test_acc"]), "params_m": result.params_m,
            "madds_m": result.madds_m, "seconds": time.perf_counter() - t0,
            "device": device_label(budget.device)}


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
    #: ``None``: the dataset's own size (the images are resized otherwise)
    image_size: int | None = None

    def load(self) -> LoadedContext:
        from rwenas.data import load_dataset
        from rwenas.fit.loop import TrainData
        from rwenas.spaces import get_space

        budget = BenchBudget(**self.budget)
        ds = load_dataset(self.dataset, self.data_dir, image_size=self.image_size,
                          seed=self.data_seed)
        data = TrainData.from_dataset(ds, train_size=budget.train_size,
                                      test_size=budget.test_size, seed=self.data_seed)
        return LoadedContext(get_space(self.space), data, budget)


@dataclass
class LoadedContext:
    """A :class:`BenchContext` with its space and data loaded: runs training jobs."""

    space: Any
    data: Any
    budget: BenchBudget

    def run(self, job: Job) -> dict[str, Any]:
        genome, seeds, *rest = job
        genotype = rest[0] if rest else None
        runs = [train_architecture(self.space, genome, self.data, self.budget, s,
                                   genotype=genotype if genome is None else None)
                for s in seeds]
        return {"runs": runs, "seeds": list(seeds)}


_WORKER: dict[str, LoadedContext] = {}


def _init_worker(context: BenchContext, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["loaded"] = context.load()


def _run_in_worker(job: Job) -> dict[str, Any]:
    return _WORKER["loaded"].run(job)


#: a training job: ``(genome, seeds)``, or ``(None, seeds, genotype)`` for an architecture
#: without a genome (a published cell)
Job = tuple[Any, ...]


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def run_jobs(context: BenchContext, jobs: Sequence[Job], *, workers: int = 1,
             threads: int | None = None, loaded: LoadedContext | None = None,
             deadline: float | None = None, skip: Callable[[Job], bool] | None = None
             ) -> Iterator[tuple[Job, dict[str, Any]]]:
    """Yield ``(job, outcome)`` as trainings finish: in this process (``workers=1``) or in a
    spawned pool of ``workers`` processes (each loading the data once; at most ``workers``
    jobs are handed out at a time). ``deadline`` (a :func:`time.monotonic` value): no job
    starts after it; those running finish and are yielded. ``skip(job)``, asked just before a
    job would start: true drops it (e.g. another process has trained it meanwhile)."""
    for _i, job, outcome in run_indexed(context, jobs, workers=workers, threads=threads,
                                        loaded=loaded, deadline=deadline, skip=skip):
        yield job, outcome


def run_indexed(context: BenchContext, jobs: Sequence[Job], *, workers: int = 1,
                threads: int | None = None, loaded: LoadedContext | None = None,
                deadline: float | None = None, skip: Callable[[Job], bool] | None = None
                ) -> Iterator[tuple[int, Job, dict[str, Any]]]:
    """:func:`run_jobs`, yielding ``(index in jobs, job, outcome)``."""
    if not jobs:
        return
    if workers <= 1:
        local = loaded or context.load()
        for i, job in enumerate(jobs):
            if _past(deadline):
                return
            if skip is not None and skip(job):
                continue
            yield i, job, local.run(job)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(context, threads))
    try:
        queue = iter(enumerate(jobs))
        pending: dict[Any, tuple[int, Job]] = {}

        def submit() -> None:
            while len(pending) < workers and not _past(deadline):
                nxt = next(queue, None)
                if nxt is None:
                    return
                if skip is not None and skip(nxt[1]):
                    continue
                pending[pool.submit(_run_in_worker, nxt[1])] = nxt

        submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i, job = pending.pop(fut)
                yield i, job, fut.result()
            submit()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the bench -----------------------------------------------------------------------------------
class Bench:
    """An open bench directory (its store, space and budget). ``device``: where this object
    trains (default: the device the bench was created with); a device is no part of a
    bench's budget (:meth:`BenchBudget.identity`)."""

    def __init__(self, store: Any, device: str | None = None) -> None:
        from rwenas.spaces import get_space

        config = store.config
        if config.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{store.run_dir} is a search run, not a bench")
        self.store = store
        self.config = config
        self.space = get_space(config["space"])
        self.budget = BenchBudget(**config["budget"])
        if device is not None:
            self.budget = dataclasses.replace(self.budget, device=device)
        self.trainings = 0  # trainings done through this object
        self._loaded: LoadedContext | None = None

    @classmethod
    def open(cls, bench_dir: str | Path, device: str | None = None) -> Bench:
        from rwenas.search.store import DB_NAME, RunStore

        path = Path(bench_dir)
        if not path.is_dir():
            raise ConfigError(f"bench directory {bench_dir} does not exist")
        if not (path / DB_NAME).is_file():
            raise ConfigError(f"{bench_dir} holds no bench ({DB_NAME} missing)")
        return cls(RunStore.open(path), device)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def context(self) -> BenchContext:
        c = self.config
        return BenchContext(c["space"], c["dataset"], c.get("data_dir"), self.budget.to_dict(),
                            int(c.get("seed", 0)), c.get("image_size"))

    def accuracy(self, key: str) -> float | None:
        rec = self.store.get_evaluation(key)
        if rec is None or rec["status"] != "ok":
            return None
        return float(rec["extra"]["test_acc"])

    def train_missing(self, items: Sequence[Mapping[str, Any]], *, workers: int = 1,
                      retest_keys: set[str] | frozenset = frozenset(), progress: bool = False,
                      on_result: Callable[[dict[str, Any]], None] | None = None,
                      stop_after: int | None = None, generation: int = 0,
                      deadline: float | None = None) -> int:
        """Train every item (``{"genome", "key"[, "kind"]}``) not yet in the bench (those in
        ``retest_keys`` twice); returns how many architectures were trained. Each result is
        committed as it arrives. ``stop_after``: train at most this many now; ``deadline``
        (a :func:`time.monotonic` value): start none after it."""
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
            def merged_meanwhile(job: Job) -> bool:  # e.g. by `bench merge`
                if self.store.get_evaluation(by_genome[job[0]]["key"]) is None:
                    return False
                bar.update(1)
                return True

            for (genome, seeds), outcome in run_jobs(self.context, jobs, workers=workers,
                                                     loaded=self._loaded, deadline=deadline,
                                                     skip=merged_meanwhile):
                item = by_genome[genome]
                runs = outcome["runs"]
                first = runs[0]
                extra = {"test_acc": first["test_acc"], "seed": seeds[0],
                         "budget": self.budget.to_dict(), "kind": item.get("kind", ON_DEMAND),
                         "retest_acc": [r["test_acc"] for r in runs[1:]],
                         "retest_seeds": list(seeds[1:]), "device": first["device"]}
                for name in ("search_seed", "search_generation"):
                    if name in item:
                        extra[name] = item[name]
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
                 seed: int = 0, sampler: str = "mixed", image_size: int | None = None
                 ) -> dict[str, Any]:
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    config = {"kind": KIND, "space": space, "dataset": dataset, "data_dir": data_dir,
              "seed": int(seed), "sampler": sampler, "budget": budget.to_dict()}
    if image_size is not None:  # stored only when given: older benches stay as they are
        config["image_size"] = int(image_size)
    return config


_FIXED = ("space", "dataset", "seed", "sampler", "budget", "image_size")


def build_bench(bench_dir: str | Path, *, space: str = "micro", dataset: str = "fashion-mnist",
                data_dir: str | None = None, budget: BenchBudget | None = None, size: int = 30,
                retest: int = 0, sampler: str = "mixed", seed: int = 0, workers: int = 1,
                force: bool = False, progress: bool = False, stop_after: int | None = None,
                on_result: Callable[[dict[str, Any]], None] | None = None,
                time_limit: float | None = None) -> dict[str, Any]:
    """Create (or resume) the bench in ``bench_dir`` and train the missing part of its pool.

    An existing bench is resumed when its space, dataset, seed, sampler and budget equal the
    ones given (else :class:`ConfigError`; ``force`` starts over); ``size`` and ``retest``
    may grow. The budget's device is no part of that: a bench made on the CPU continues on a
    GPU (``budget.device``), each training recording where it ran. ``time_limit``: seconds
    after which no training starts (those running finish and are kept). Returns
    ``{"trained", "size", "bench_dir"}``. Ctrl-C leaves every finished training in the
    store."""
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
        changed = changed_settings(old, config)
        if old.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{path} is a search run, not a bench")
        if changed:
            store.close()
            raise ConfigError(f"bench {path} was built with other settings (changed: "
                              f"{', '.join(changed)}); use --force to start over")
    else:
        store = RunStore.create(path, config, force=force)
    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    with Bench(store, device=budget.device) as bench:
        pool = sample_pool(bench.space, size, seed=seed, sampler=sampler)
        if len(pool) > len(store.get_state("pool") or []):
            store.set_state("pool", pool)
        retest = min(retest, len(pool))
        old_retest = int(store.get_state("retest", 0) or 0)
        if retest > old_retest:
            store.set_state("retest", retest)
        retest_keys = {p["key"] for p in pool[:retest]}
        # the sampled pool first, then the search-visited architectures added to it
        trained = bench.train_missing(bench_pool(store), workers=workers,
                                      retest_keys=retest_keys,
                                      progress=progress, stop_after=stop_after,
                                      on_result=on_result, deadline=deadline)
        return {"trained": trained, "trainings": bench.trainings, "size": len(pool),
                "search_size": len(store.get_state("search_pool") or []),
                "bench_dir": str(path)}


# -- the search-visited source -------------------------------------------------------------------
def bench_pool(store: Any) -> list[dict[str, Any]]:
    """The whole pool of a bench's store: the sampled pool (sources uniform/light/conv), then
    the search-visited architectures (source ``search``); a key is listed once."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in (store.get_state("pool") or []) + (store.get_state("search_pool") or []):
        if item["key"] not in seen:
            seen.add(item["key"])
            out.append(item)
    return out


def add_search(bench_dir: str | Path, *, seeds: int | Sequence[int] = 3, per_seed: int = 20,
               generations: int = 10, pop_size: int = 10, train_size: int | None = 2000,
               val_size: int | None = 500, estimator_seed: int = 0,
               rwe_options: Mapping[str, Any] | None = None,
               network: Mapping[str, Any] | None = None, progress: bool = False
               ) -> dict[str, Any]:
    """Add architectures visited by RWE-driven NSGA-II searches to the bench's pool, tagged
    ``search`` with their search seed and the generation of their first visit; the next
    ``bench build`` trains them (nothing is trained here).

    For each search seed (``seeds``: a count, meaning ``0 … seeds-1``, or a list), NSGA-II
    over (RWE error, MAdds) runs on the search split (``train_size``/``val_size`` of the
    bench dataset's training set; quick-profile sizes by default), pop ``pop_size`` for
    ``generations`` generations, RWE seeded per architecture by ``estimator_seed`` as a
    search does, on networks built with ``network`` (options of the search setting, which
    they default to: C=10, 5 cells). Its visited architectures are ordered by
    :func:`~rwenas.study.search_visits.spread_over_generations` (seeded by the bench seed and the
    search seed) and the first ``per_seed`` not yet in the pool are appended. Deterministic
    and resumable: running it again adds nothing; a larger ``per_seed`` extends each seed's
    sample. Returns ``{"added", "search_size", "per_seed": {seed: count}}``."""
    from tqdm.auto import tqdm

    from rwenas.estimators.proxies import RWEEstimator
    from rwenas.study.estimators import ScoreCache, estimator_split
    from rwenas.study.search_visits import nsga2_visits, spread_over_generations

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list or any(s < 0 for s in seed_list):
        raise ConfigError("add-search needs at least one non-negative search seed")
    if isinstance(per_seed, bool) or not isinstance(per_seed, int) or per_seed < 1:
        raise ConfigError(f"per_seed must be a positive integer, got {per_seed!r}")
    with Bench.open(bench_dir) as bench:
        config, space, store = bench.config, bench.space, bench.store
        estimator = RWEEstimator(**dict(rwe_options or {}))
        info, split = estimator_split(config["dataset"], data_dir=config.get("data_dir"),
                                      seed=estimator_seed, train_size=train_size,
                                      val_size=val_size)
        cache = ScoreCache(space, split, info, seed=estimator_seed, network=network)
        bench_seed = int(config.get("seed", 0))
        added = 0
        counts: dict[int, int] = {}
        bar = tqdm(total=len(seed_list) * generations, unit="gen", desc="searches",
                   disable=not progress, dynamic_ncols=True)
        try:
            for s in seed_list:
                first: dict[str, tuple[int, tuple[int, ...]]] = {}
                for gen, _parents, offspring in nsga2_visits(
                        space, lambda g: cache.score("rwe", estimator, g).value, cache.madds,
                        seed=s, generations=generations, pop_size=pop_size):
                    for g in offspring:
                        first.setdefault(space.key(g), (gen, g))
                    bar.update(1)
                order = spread_over_generations([(k, v[0]) for k, v in first.items()],
                                                (bench_seed, s, 11))
                search_pool = list(store.get_state("search_pool") or [])
                in_pool = {p["key"] for p in bench_pool(store)}
                have = sum(1 for p in search_pool if p.get("search_seed") == s)
                new = []
                for key in order:
                    if have + len(new) >= per_seed:
                        break
                    if key in in_pool:
                        continue
                    gen, genome = first[key]
                    new.append({"genome": [int(v) for v in genome], "key": key,
                                "kind": "search", "search_seed": s, "search_generation": gen})
                if new:
                    store.set_state("search_pool", search_pool + new)
                added += len(new)
                counts[s] = have + len(new)
        finally:
            bar.close()
        runs = dict(store.get_state("search_runs") or {})
        for s in seed_list:
            runs[str(s)] = {"generations": generations, "pop_size": pop_size,
                            "train_size": train_size, "val_size": val_size,
                            "estimator_seed": estimator_seed,
                            "rwe": dict(rwe_options or {}), "network": dict(network or {}),
                            "per_seed": per_seed}
        store.set_state("search_runs", runs)
        return {"added": added, "search_size": len(store.get_state("search_pool") or []),
                "per_seed": counts}


# -- merging a copy's trainings back ---------------------------------------------------------------
def _pool_difference(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]
                     ) -> int | None:
    """The first position where two pools (lists of members) name different architectures,
    ``None`` when one is a prefix of the other."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x["key"] != y["key"]:
            return i
    return None


def merge_bench(src_dir: str | Path, dest_dir: str | Path, *, dry_run: bool = False
                ) -> dict[str, Any]:
    """Copy into the bench ``dest_dir`` every training of the bench ``src_dir`` that it lacks:
    the way trainings done on another machine (a GPU copy of the bench) come back.

    Both must be the same bench: same space, dataset, seed, sampler, image size and budget
    (:func:`same_budget`: the device may differ), pools that agree member by member where
    both have one (a longer pool, e.g. a larger ``--size`` or more ``add-search`` members,
    carries its extra members over) and the same retest count; otherwise
    :class:`ConfigError` and nothing is written. A finished (``ok``) training of ``dest_dir``
    is never overwritten (a failed one is replaced by ``src_dir``'s finished one); failed
    trainings of ``src_dir`` are not copied, nor (counted as ``mismatched``) any whose seeds
    or budget are not the ones this bench gives that architecture. Idempotent: merging again
    copies nothing. ``dry_run``: count, write nothing. Returns ``{"copied", "replaced_failed",
    "already", "differing", "failed_in_src", "mismatched", "pool_added", "devices"}``."""
    src_path, dest_path = Path(src_dir), Path(dest_dir)
    if src_path.resolve() == dest_path.resolve():
        raise ConfigError(f"{src_dir} and {dest_dir} are the same bench")
    with Bench.open(src_dir) as src, Bench.open(dest_dir) as dest:
        changed = changed_settings(dest.config, src.config)
        if changed:
            raise ConfigError(f"cannot merge {src_dir} into {dest_dir}: other "
                              f"{', '.join(changed)} (only the same bench merges; the device "
                              "may differ)")
        grow: dict[str, list[dict[str, Any]]] = {}
        for name in ("pool", "search_pool"):
            a = list(src.store.get_state(name) or [])
            b = list(dest.store.get_state(name) or [])
            at = _pool_difference(a, b)
            if at is not None:
                raise ConfigError(f"cannot merge {src_dir} into {dest_dir}: their pools differ "
                                  f"({name} member {at + 1}: {a[at]['key'][:40]} against "
                                  f"{b[at]['key'][:40]})")
            if len(a) > len(b):
                grow[name] = a
        retests = [int(bench.store.get_state("retest", 0) or 0) for bench in (src, dest)]
        if retests[0] != retests[1]:
            raise ConfigError(f"cannot merge {src_dir} into {dest_dir}: other retest count "
                              f"({retests[0]} against {retests[1]}); build both with the same "
                              "--retest first")
        seed = int(dest.config.get("seed", 0))
        counts = {"copied": 0, "replaced_failed": 0, "already": 0, "differing": 0,
                  "failed_in_src": len(src.store.evaluations("failed")), "mismatched": 0}
        devices: dict[str, int] = {}
        todo = []
        for rec in src.store.evaluations("ok"):
            extra = rec["extra"] or {}
            have = dest.store.get_evaluation(rec["key"])
            if have is not None and have["status"] == "ok":
                counts["already"] += 1
                mine = have["extra"] or {}
                if [mine.get("test_acc"), *(mine.get("retest_acc") or [])] != \
                        [extra.get("test_acc"), *(extra.get("retest_acc") or [])]:
                    counts["differing"] += 1  # trained on both: dest's is kept
                continue
            seeds = [extra.get("seed"), *(extra.get("retest_seeds") or [])]
            if (extra.get("test_acc") is None
                    or len(extra.get("retest_acc") or []) != len(seeds) - 1
                    or seeds != [arch_seed(seed, rec["key"], r) for r in range(len(seeds))]
                    or not same_budget(extra.get("budget", dest.config["budget"]),
                                       dest.config["budget"])):
                counts["mismatched"] += 1
                continue
            todo.append((rec, have is not None))
            device = training_device(extra)
            devices[device] = devices.get(device, 0) + len(seeds)
        counts["copied"] = sum(1 for _rec, replace in todo if not replace)
        counts["replaced_failed"] = sum(1 for _rec, replace in todo if replace)
        pool_added = sum(len(v) - len(dest.store.get_state(k) or []) for k, v in grow.items())
        if not dry_run:
            for name, members in grow.items():
                dest.store.set_state(name, members)
            if "search_pool" in grow:
                runs = dict(dest.store.get_state("search_runs") or {})
                for k, v in (src.store.get_state("search_runs") or {}).items():
                    runs.setdefault(k, v)
                dest.store.set_state("search_runs", runs)
            for rec, replace in todo:
                dest.store.add_evaluation(
                    rec["key"], rec["genome"], objectives=rec["objectives"],
                    generation=rec["generation"], status="ok", genotype=rec["genotype"],
                    params_m=rec["params_m"], madds_m=rec["madds_m"], seconds=rec["seconds"],
                    features_seconds=rec["features_seconds"],
                    classifier_seconds=rec["classifier_seconds"], attempts=rec["attempts"],
                    extra=rec["extra"], replace=replace)
        return {**counts, "pool_added": pool_added, "devices": devices, "dry_run": dry_run,
                "src": str(src_dir), "dest": str(dest_dir)}


def format_merge(result: Mapping[str, Any]) -> str:
    """``bench merge``'s report, one line."""
    devices = ", ".join(f"{d} {n}" for d, n in sorted(result["devices"].items()))
    verb = "would copy" if result["dry_run"] else "copied"
    parts = [f"{verb} {result['copied'] + result['replaced_failed']} architecture(s) of "
             f"{result['src']} into {result['dest']}"
             + (f" ({devices} trainings)" if devices else "")]
    if result["replaced_failed"]:
        parts.append(f"{result['replaced_failed']} of them over a failed training")
    parts.append(f"{result['already']} already there (kept as they were"
                 + (f"; {result['differing']} with other accuracies, trained on both"
                    if result["differing"] else "") + ")")
    if result["pool_added"]:
        parts.append(f"pool grown by {result['pool_added']}")
    if result["failed_in_src"]:
        parts.append(f"{result['failed_in_src']} failed in the source, not copied")
    if result["mismatched"]:
        parts.append(f"{result['mismatched']} with other seeds or budget, not copied")
    return "; ".join(parts)


# -- tuning and confirmation halves ---------------------------------------------------------------
HALVES = ("all", "tuning", "confirmation")


def pool_halves(pool: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, str]:
    """``{key: "tuning" | "confirmation"}``: a seeded split of the pool, stratified by source.

    Within each source, members are paired in pool order (1st with 2nd, 3rd with 4th, …) and
    a coin seeded by ``seed`` and the pair's first key sends one of each pair to each half.
    So every source is split in half (±1), and the split is stable as the bench grows (the
    pool is append-only and a pair's coin never changes): an architecture used for tuning
    never moves to the confirmation half."""
    from rwenas.evaluation import derive_seed

    halves: dict[str, str] = {}
    by_source: dict[str, list[str]] = {}
    for item in pool:
        by_source.setdefault(item.get("kind") or "uniform", []).append(item["key"])
    for keys in by_source.values():
        for i in range(0, len(keys), 2):
            first_tunes = derive_seed(int(seed), keys[i]) % 2 == 0
            halves[keys[i]] = "tuning" if first_tunes else "confirmation"
            if i + 1 < len(keys):
                halves[keys[i + 1]] = "confirmation" if first_tunes else "tuning"
    return halves


def select_half(bench_dir: str | Path, records: Sequence[Mapping[str, Any]], half: str,
                seed: int = 0) -> list[dict[str, Any]]:
    """The records of ``half`` (``all``, ``tuning`` or ``confirmation``; see
    :func:`pool_halves`)."""
    if half not in HALVES:
        raise ConfigError(f"unknown half {half!r} (known: {', '.join(HALVES)})")
    if half == "all":
        return [dict(r) for r in records]
    with Bench.open(bench_dir) as bench:
        halves = pool_halves(bench_pool(bench.store), seed)
    return [dict(r) for r in records if halves.get(r["key"]) == half]


# -- reading -------------------------------------------------------------------------------------
def _check_sources(sources: Sequence[str] | None) -> tuple[str, ...]:
    if sources is None:
        return SOURCES
    out = tuple(dict.fromkeys(str(s).strip().lower() for s in sources if str(s).strip()))
    bad = [s for s in out if s not in (*SOURCES, ON_DEMAND)]
    if bad or not out:
        raise ConfigError(f"unknown source(s) {', '.join(bad) or '(none given)'} "
                          f"(known: {', '.join((*SOURCES, ON_DEMAND))})")
    return out


def parse_sources(text: str | None) -> tuple[str, ...]:
    """``"uniform,light"`` → the sources; ``None``/``"all"`` → :data:`SOURCES`."""
    if text is None or text.strip().lower() == "all":
        return SOURCES
    return _check_sources(text.split(","))


def bench_records(bench_dir: str | Path, sources: Sequence[str] | None = None
                  ) -> list[dict[str, Any]]:
    """The successfully trained architectures of a bench's pool: ``[{key, genome, test_acc,
    truth, seed, retest_acc, source, kind, search_seed, search_generation, seconds, params_m,
    madds_m}]`` in training order, only those of ``sources`` (default: every pool source,
    :data:`SOURCES`; ``on_demand`` only when named). ``truth`` is the mean test accuracy of
    all its trainings (one, or two for a retested architecture)."""
    wanted = _check_sources(sources)
    with Bench.open(bench_dir) as bench:
        source_of = {p["key"]: p.get("kind") or "uniform" for p in bench_pool(bench.store)}
        out = []
        for rec in bench.store.evaluations("ok"):
            extra = rec["extra"] or {}
            source = source_of.get(rec["key"], ON_DEMAND)
            if source not in wanted:
                continue
            runs = [float(extra["test_acc"])] + [float(a) for a in extra.get("retest_acc")
                                                  or []]
            out.append({"key": rec["key"], "genome": rec["genome"],
                        "test_acc": runs[0], "truth": float(np.mean(runs)),
                        "seed": extra.get("seed"), "retest_acc": runs[1:],
                        "source": source, "kind": extra.get("kind"),
                        "search_seed": extra.get("search_seed"),
                        "search_generation": extra.get("search_generation"),
                        "seconds": rec["seconds"], "params_m": rec["params_m"],
                        "madds_m": rec["madds_m"], "device": training_device(extra)})
        return out


def training_device(extra: Mapping[str, Any]) -> str:
    """Where a bench training ran: its record's ``device`` (``cpu``, ``cuda:<GPU name>``),
    or for trainings recorded before devices were, the device of its stored budget."""
    if extra.get("device"):
        return str(extra["device"])
    return str((extra.get("budget") or {}).get("device") or "cpu")


def retest_correlation(records: Sequence[Mapping[str, Any]], *, resamples: int = 2000,
                       seed: int = 0) -> dict[str, Any]:
    """Test–retest statistics of the architectures trained twice: Spearman (with its seeded
    bootstrap interval ``spearman_lo``/``spearman_hi``), Kendall, the
    mean |Δacc| and the bound ``sqrt(Spearman)`` on any estimator's correlation with the
    (noisy) truth, with the interval's bounds carried through the square root."""
    from rwenas.study import stats

    pairs = [(r["test_acc"], r["retest_acc"][0]) for r in records if r.get("retest_acc")]
    n = len(pairs)
    out: dict[str, Any] = {"n": n, "spearman": math.nan, "kendall": math.nan,
                           "mean_abs_diff": math.nan, "spearman_lo": math.nan,
                           "spearman_hi": math.nan, "resamples": resamples, "bound": math.nan,
                           "bound_lo": math.nan, "bound_hi": math.nan}
    if n >= 2:
        a, b = np.array(pairs).T
        out["spearman"] = stats.spearman(a, b)
        out["kendall"] = stats.kendall(a, b)
        out["mean_abs_diff"] = float(np.mean(np.abs(a - b)))
        idx = stats.bootstrap_indices(n, resamples, seed)
        ci = stats.interval(stats.spearman_rows(a[idx], b[idx]), out["spearman"], n)
        out["spearman_lo"], out["spearman_hi"] = ci.lo, ci.hi
        out["bound"] = stats.reliability_bound(out["spearman"])
        out["bound_lo"] = stats.reliability_bound(ci.lo)
        out["bound_hi"] = stats.reliability_bound(ci.hi)
    return out


def bench_summary(bench_dir: str | Path, sources: Sequence[str] | None = None
                  ) -> dict[str, Any]:
    """Size and sources (pool and trained, per source), accuracy range/mean/std of the
    truth, reliability (test–retest Spearman with bootstrap interval, n retested, mean
    |Δacc|, the ``sqrt`` bound), budget and time per architecture."""
    wanted = _check_sources(sources)
    with Bench.open(bench_dir) as bench:
        config = bench.config
        pool = bench_pool(bench.store)
        failed = len(bench.store.evaluations("failed"))
        in_pool = {p["key"] for p in pool}
        on_demand = sum(1 for r in bench.store.evaluations("ok") if r["key"] not in in_pool)
    records = bench_records(bench_dir, wanted)
    accs = np.array([r["truth"] for r in records], dtype=float)
    secs = np.array([r["seconds"] or 0.0 for r in records], dtype=float)
    kinds: dict[str, int] = {}
    devices: dict[str, int] = {}  # trainings (a retested architecture counts twice)
    for r in records:
        kinds[r["source"]] = kinds.get(r["source"], 0) + 1
        devices[r["device"]] = devices.get(r["device"], 0) + 1 + len(r["retest_acc"])
    pool_sources: dict[str, int] = {}
    for p in pool:
        pool_sources[p.get("kind") or "uniform"] = pool_sources.get(p.get("kind") or "uniform",
                                                                   0) + 1
    return {
        "bench_dir": str(bench_dir), "space": config["space"], "dataset": config["dataset"],
        "sampler": config.get("sampler"), "seed": config.get("seed"),
        "budget": config["budget"], "pool_size": len(pool), "trained": len(records),
        "failed": failed, "kinds": kinds, "pool_sources": pool_sources,
        "on_demand": on_demand, "sources": list(wanted), "devices": devices,
        "acc_min": float(accs.min()) if len(accs) else math.nan,
        "acc_max": float(accs.max()) if len(accs) else math.nan,
        "acc_mean": float(accs.mean()) if len(accs) else math.nan,
        "acc_std": float(accs.std()) if len(accs) else math.nan,
        "seconds_per_arch": float(secs.mean()) if len(secs) else math.nan,
        "retest": retest_correlation(records),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """``bench show``'s text: size, sources, budget, accuracy, reliability, time."""
    b = BenchBudget(**summary["budget"])
    rt = summary["retest"]
    pool_sources = summary.get("pool_sources", {})
    per_source = ", ".join(f"{k} {summary['kinds'].get(k, 0)}/{pool_sources.get(k, 0)}"
                           for k in (*SOURCES, ON_DEMAND)
                           if pool_sources.get(k) or summary["kinds"].get(k))
    lines = [
        f"bench      {summary['bench_dir']}",
        f"space      {summary['space']} on {summary['dataset']} "
        f"(sampler {summary['sampler']}, seed {summary['seed']})",
        f"budget     {b.describe()}",
    ]
    # on-demand trainings are in no pool: counted beside the pool's "trained of", not in it
    outside = summary["kinds"].get(ON_DEMAND, 0)
    lines.append(f"trained    {summary['trained'] - outside} of {summary['pool_size']}"
                 + (f" + {outside} on demand" if outside else "")
                 + f" ({per_source or 'none'}: trained/pool per source)"
                 + (f", {summary['failed']} failed" if summary["failed"] else ""))
    named = ON_DEMAND in summary.get("sources", ())
    if summary.get("on_demand"):
        lines.append(f"on demand  {summary['on_demand']} trained outside the pool "
                     "(source on_demand; in no pool unless named"
                     + ("" if named else ": --sources on_demand summarises them") + ")")
    if not summary["trained"]:  # an on-demand cache has no pool: no accuracies to summarise
        lines.append(f"test acc   none trained in sources {','.join(summary['sources'])}")
    else:
        lines.append(f"test acc   {100 * summary['acc_min']:.2f}–{100 * summary['acc_max']:.2f}"
                     f" % (mean {100 * summary['acc_mean']:.2f} %, std "
                     f"{100 * summary['acc_std']:.2f}; retested: mean of both runs)")
    if rt["n"]:
        from rwenas.study.stats import Interval

        ci = Interval(rt["spearman"], rt["spearman_lo"], rt["spearman_hi"], rt["n"])
        lines.append(f"retest     {rt['n']} architectures trained twice: Spearman "
                     f"{ci.fmt(3)} (95 % bootstrap), Kendall {rt['kendall']:.3f}, "
                     f"mean |Δacc| {100 * rt['mean_abs_diff']:.2f} points"
                     + (" — too few for the interval to mean much" if rt["n"] < 10 else ""))
        lines.append(f"bound      no estimator can exceed Spearman sqrt(reliability) = "
                     f"{rt['bound']:.3f} [{rt['bound_lo']:.3f}, {rt['bound_hi']:.3f}] with "
                     "this truth")
    else:
        lines.append("retest     none (use --retest N)")
    if summary["trained"]:
        lines.append(f"time       {summary['seconds_per_arch']:.1f} s per architecture "
                     "(one training)")
    untrained = sum(max(0, n - summary["kinds"].get(k, 0)) for k, n in pool_sources.items()
                    if k in summary.get("sources", SOURCES))
    if untrained and math.isfinite(summary["seconds_per_arch"]):
        lines.append(f"to train   {untrained} of the pool (first runs): about "
                     f"{untrained * summary['seconds_per_arch'] / 3600:.1f} h of one worker at "
                     "that time each")
    devices = summary.get("devices") or {}
    if devices:
        lines.append("devices    " + ", ".join(f"{d} {n}" for d, n in sorted(devices.items()))
                     + " trainings (where each ran; the budget is the same)")
    return "\n".join(lines)
