"""Where evaluations run: in-process, a local process pool, or Ray.

Every executor takes a batch of genomes and yields ``(genome, outcome)`` as they finish, where
the outcome is an evaluation record (a dict) or a failure. Failed evaluations are retried up to
``max_retries`` times (a crashed worker included) before being reported as failed; the search
then records them with the worst objective values.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rwenas.errors import ConfigError, RwenasError

Genome = tuple[int, ...]


@dataclass(frozen=True)
class EvalContext:
    """Everything a worker needs to evaluate genomes (small and picklable)."""

    space: str
    dataset: str
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    seed: int = 0
    rwe: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    measure: tuple[str, ...] = ()
    latency_batch: int = 64
    #: estimator and ``module:function`` objectives, computed besides the measurements
    objectives: tuple[str, ...] = ()
    with_rwe: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvalContext:
        from rwenas.objectives import custom_objectives, measurements

        return cls(**{k: config[k] for k in (
            "space", "dataset", "data_dir", "download", "image_size", "train_size",
            "val_size", "seed", "rwe", "network", "latency_batch")},
            measure=tuple(measurements(config["objectives"], config)),
            objectives=tuple(custom_objectives(config["objectives"])),
            with_rwe="rwe" in config["objectives"])

    def load(self) -> Loaded:
        """Load the dataset and build the search split (done once per worker)."""
        from rwenas.data import load_dataset, search_split
        from rwenas.estimators.rwe import RWEConfig
        from rwenas.spaces import get_space

        ds = load_dataset(self.dataset, self.data_dir, download=self.download,
                          image_size=self.image_size, seed=self.seed)
        split = search_split(ds, seed=self.seed, train_size=self.train_size,
                             val_size=self.val_size)
        return Loaded(self, get_space(self.space), ds.info, split, RWEConfig(**self.rwe))


@dataclass
class Loaded:
    context: EvalContext
    space: Any
    info: Any
    split: Any
    config: Any

    def evaluate(self, genome: Sequence[int]) -> dict[str, Any]:
        from rwenas.evaluation import evaluate_genome

        network = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in self.context.network.items()}
        return evaluate_genome(self.space, genome, self.split, self.info, config=self.config,
                               seed=self.context.seed, network=network,
                               measure=self.context.measure,
                               latency_batch=self.context.latency_batch,
                               objectives=self.context.objectives,
                               with_rwe=self.context.with_rwe).to_dict()


@dataclass
class Failure:
    """An evaluation that failed ``attempts`` times; ``message`` is the last error."""

    message: str
    attempts: int


Outcome = dict[str, Any] | Failure


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RwenasError):
        return str(exc)
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:500]


class LocalExecutor:
    """Evaluate one genome after another in this process."""

    def __init__(self, context: EvalContext, max_retries: int = 2) -> None:
        self.loaded = context.load()
        self.max_retries = max_retries

    def run(self, genomes: Sequence[Genome]) -> Iterator[tuple[Genome, Outcome]]:
        for genome in genomes:
            for attempt in range(1, self.max_retries + 2):
                try:
                    yield genome, self.loaded.evaluate(genome)
                    break
                except RwenasError:
                    raise
                except Exception as exc:
                    if attempt > self.max_retries:
                        yield genome, Failure(_describe(exc), attempt)

    def close(self) -> None:
        pass


# -- local process pool ---------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(context: EvalContext, threads: int, marks: str) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["loaded"] = context.load()
    _WORKER["mark"] = Path(marks) / str(os.getpid())


def _evaluate_in_worker(genome: Genome) -> dict[str, Any]:
    # The mark says which genome this worker is evaluating; it outlives a worker that dies
    # mid-evaluation, so the parent can tell the culprit from the innocents.
    mark: Path = _WORKER["mark"]
    mark.write_text(json.dumps(list(genome)))
    try:
        return _WORKER["loaded"].evaluate(genome)
    finally:
        mark.unlink(missing_ok=True)


class ProcessExecutor:
    """A pool of ``workers`` processes (spawned, each loading the data once and using
    ``threads`` torch threads).

    A worker that dies (killed, out of memory) breaks the pool, and every evaluation in it
    with it. The pool is rebuilt; the evaluations that were not running are queued again as
    they were, and those that were running in some worker (each worker marks its genome in a
    file) become suspects. Suspects then run one at a time: one that breaks the pool alone
    is the culprit and is charged an attempt, so an innocent evaluation is never recorded as
    failed for another's crash.
    """

    def __init__(self, context: EvalContext, workers: int, max_retries: int = 2,
                 threads: int | None = None) -> None:
        self.context = context
        self.workers = workers
        self.max_retries = max_retries
        cores = os.cpu_count() or 1
        self.threads = threads or max(1, cores // workers)
        context.load()  # fail early (missing data, bad sizes) in the main process
        self.marks = Path(tempfile.mkdtemp(prefix="rwenas-workers-"))
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.context, self.threads, str(self.marks)))

    def _running(self) -> set[Genome]:
        """Genomes that were being evaluated when the pool broke (their marks), cleared."""
        found = set()
        for mark in self.marks.iterdir():
            # a mark half-written when its worker died: that worker had not begun
            with contextlib.suppress(OSError, ValueError, TypeError):
                found.add(tuple(int(v) for v in json.loads(mark.read_text())))
            mark.unlink(missing_ok=True)
        return found

    def run(self, genomes: Sequence[Genome]) -> Iterator[tuple[Genome, Outcome]]:
        attempts = dict.fromkeys(genomes, 0)
        pending: dict[Future, Genome] = {}
        queue = list(genomes)
        suspects: list[Genome] = []
        idle_breaks = 0  # consecutive breaks with no evaluation running: workers cannot start
        while queue or pending or suspects:
            if not pending:
                if suspects:  # alone, so that a crash can only be its own
                    batch = [suspects.pop(0)]
                else:
                    batch, queue = queue, []
                try:
                    for g in batch:
                        pending[self.pool.submit(_evaluate_in_worker, g)] = g
                except BrokenProcessPool:  # broke before this batch began: nobody to blame
                    queue[:0] = [g for g in batch if g not in pending.values()]
            # Batches are submitted only to an idle pool: one future in flight runs alone.
            solo = len(pending) == 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                g = pending.pop(fut)
                try:
                    yield g, fut.result()
                except RwenasError:
                    raise
                except BrokenProcessPool:
                    broken = True
                    queue.append(g)
                except Exception as exc:
                    attempts[g] += 1
                    if attempts[g] > self.max_retries:
                        yield g, Failure(_describe(exc), attempts[g])
                    else:
                        queue.append(g)
            if not broken:
                continue
            queue.extend(pending.values())
            pending.clear()
            self.pool.shutdown(wait=True, cancel_futures=True)
            running = self._running()
            self.pool = self._new_pool()
            if not running:
                idle_breaks += 1
                if idle_breaks > self.max_retries + 1:
                    raise ConfigError("the evaluation worker processes keep dying before they "
                                      "evaluate anything (out of memory while loading the "
                                      "data?); try fewer --workers or --executor local")
                continue
            idle_breaks = 0
            if solo:  # it ran alone: the crash was its own
                (g,) = running
                queue.remove(g)
                attempts[g] += 1
                if attempts[g] > self.max_retries:
                    yield g, Failure("worker process died", attempts[g])
                else:
                    suspects.append(g)
            else:  # any of those running may be the culprit: each runs alone next
                suspects += [g for g in queue if g in running and g not in suspects]
                queue = [g for g in queue if g not in running]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.marks, ignore_errors=True)


# -- Ray --------------------------------------------------------------------------------------
def _ray_evaluate(context: EvalContext, data: tuple[Any, Any], genome: Genome,
                  threads: int) -> dict[str, Any]:
    import torch

    from rwenas.estimators.rwe import RWEConfig
    from rwenas.spaces import get_space

    torch.set_num_threads(threads)
    info, split = data
    return Loaded(context, get_space(context.space), info, split,
                  RWEConfig(**context.rwe)).evaluate(genome)


class RayExecutor:
    """Each evaluation is a Ray task; the search split is put once in Ray's object store.

    Ray re-runs a task whose worker died or that raised, up to ``max_retries`` times; a task
    that still fails is reported as failed. ``address`` None starts a local Ray runtime with
    ``workers`` CPUs; ``"auto"`` or ``HOST:PORT`` joins a cluster.
    """

    def __init__(self, context: EvalContext, workers: int, max_retries: int = 2,
                 address: str | None = None, gpus_per_eval: float = 0.0,
                 threads: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'rwenas[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=workers, num_gpus=None, **kwargs)
            self._owns_runtime = True
        else:
            self._owns_runtime = False
        loaded = context.load()
        self.data_ref = ray.put((loaded.info, loaded.split))
        self.context = context
        self.threads = threads or 1
        self.task = ray.remote(num_cpus=self.threads, num_gpus=gpus_per_eval,
                               max_retries=max_retries, retry_exceptions=True)(_ray_evaluate)
        self.max_retries = max_retries

    def run(self, genomes: Sequence[Genome]) -> Iterator[tuple[Genome, Outcome]]:
        refs = {self.task.remote(self.context, self.data_ref, g, self.threads): g
                for g in genomes}
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            for ref in done:
                g = refs.pop(ref)
                try:
                    yield g, self.ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    yield g, Failure(_describe(cause), self.max_retries + 1)

    def close(self) -> None:
        if self._owns_runtime:
            self.ray.shutdown()


def make_executor(config: dict[str, Any]):
    """The executor named by ``config["executor"]``."""
    context = EvalContext.from_config(config)
    kind = config["executor"]
    if kind == "local":
        return LocalExecutor(context, config["max_retries"])
    if kind == "process":
        return ProcessExecutor(context, config["workers"], config["max_retries"],
                               config["threads"])
    return RayExecutor(context, config["workers"], config["max_retries"],
                       config["ray_address"], float(config["gpus_per_eval"]),
                       config["threads"])
