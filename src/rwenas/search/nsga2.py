"""NSGA-II over (RWE error, multiply-adds, …) driven through pymoo's ask-and-tell interface.

pymoo supplies the algorithm and operators (random initial population, binary tournament,
two-point crossover, polynomial mutation with rounding, non-dominated sorting and crowding
survival, duplicate elimination); rwenas supplies the evaluations, through an executor, and a
canonical-key cache so that no network is evaluated twice in a run. Every finished evaluation
is committed to the run's SQLite store at once, so a killed search resumes where it stopped
and ends with the same front.

The algorithm's state is never stored as code: a resumed search rebuilds it by replaying the
recorded generations from the run's seed, every evaluation answered from the store (each
algorithm of :mod:`rwenas.search.algorithms` draws from its own seeded generator, so the
replay is exact and takes milliseconds). Nothing in ``run.db`` is unpickled, so a run
directory from someone else cannot run code. The budgets of :mod:`rwenas.search.stopping`
are checked before each new generation, not during the replay.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.problems.static import StaticProblem

from rwenas.errors import ConfigError, RwenasError
from rwenas.objectives import (
    active_constraints,
    check_stored_objectives,
    constraint_values,
    objective_values,
    primary,
    worst_values,
)
from rwenas.search.algorithms import ArchitectureProblem, make_algorithm
from rwenas.search.config import DEFAULTS, RAY_ONLY, validate_config
from rwenas.search.executors import Failure, make_executor
from rwenas.search.front import flat_record, hypervolume, pareto_front, reference_point
from rwenas.search.outputs import write_outputs
from rwenas.search.stopping import LIMITS, apply_limits, stop_reason, stored_limits
from rwenas.search.store import RunStore
from rwenas.spaces import check_stored_space, get_space

#: settings that may change when a run is resumed (they do not change any result)
RESUMABLE = ("executor", "workers", "threads", "ray_address", "gpus_per_eval", "max_retries",
             *LIMITS)

__all__ = ["ArchitectureProblem", "Search", "SearchResult", "make_algorithm", "run_search"]


@dataclass
class SearchResult:
    run_dir: Path
    front: list[dict[str, Any]]
    evaluations: int
    cache_hits: int
    hypervolume: float
    #: why the search stopped before its last generation (a budget), ``None`` if it did not
    stopped: str | None = None
    objectives: list[str] = field(default_factory=list)


class Search:
    """One search run: its store, space, executor and algorithm."""

    def __init__(self, store: RunStore, config: dict[str, Any], progress: bool = True,
                 retry_failed: bool = False) -> None:
        self.store = store
        self.config = config
        self.space = get_space(config["space"])
        self.objectives = list(config["objectives"])
        self.progress = progress
        self.cache: dict[str, dict[str, Any]] = {
            e["key"]: e for e in store.evaluations()
            if not (retry_failed and e["status"] == "failed")}
        #: keys recorded as failed that are evaluated again (their records are replaced)
        self.retry = {e["key"] for e in store.evaluations(status="failed")} \
            if retry_failed else set()

    # -- evaluations ------------------------------------------------------------------------
    def _record(self, genome: tuple[int, ...], key: str, outcome: Any, generation: int) -> dict:
        replace = key in self.retry
        if not isinstance(outcome, Failure):
            problem = _unusable(outcome, self.objectives)
            if problem is not None:  # e.g. NaN features: it must not enter the front
                outcome = Failure(problem, 1)
        if isinstance(outcome, Failure):
            values = worst_values(self.objectives)
            self.store.add_evaluation(key, genome, objectives=values, generation=generation,
                                      status="failed", error=outcome.message,
                                      attempts=outcome.attempts, replace=replace)
        else:
            values = objective_values(outcome, self.objectives)
            self.store.add_evaluation(
                key, genome, objectives=values, generation=generation, status="ok",
                replace=replace,
                genotype=self.space.genotype_to_json(self.space.decode(genome)),
                params_m=outcome["params_m"], madds_m=outcome["madds_m"],
                seconds=outcome["seconds"], features_seconds=outcome["features_seconds"],
                classifier_seconds=outcome["classifier_seconds"],
                extra={k: outcome.get(k) for k in (
                    "rwe_error", "seed", "warning", "latency_ms", "latency_batch_ms",
                    "memory_mb", "latency_onnx_ms", "device", "objectives", "raw")
                    if k not in ("objectives", "raw") or outcome.get(k)})
        record = self.store.get_evaluation(key)
        assert record is not None
        self.cache[key] = record
        return record

    def _objective_matrix(self, keys: Sequence[str]) -> np.ndarray:
        return np.array([self.cache[k]["objectives"] for k in keys], dtype=float)

    def _constraint_matrix(self, keys: Sequence[str]) -> np.ndarray:
        return np.array([constraint_values(flat_record(self.cache[k]), self.config)
                         for k in keys], dtype=float).reshape(len(keys), -1)

    def archive_front(self) -> list[dict[str, Any]]:
        """Non-dominated set of every successful, feasible evaluation so far."""
        return pareto_front(self.cache.values(), self.config)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, executor: Any) -> SearchResult:
        """Run (or continue) the search until its last generation.

        The recorded generations are replayed first: the algorithm asks again for what it
        asked then, and the store answers. If the replay asks for other architectures than
        were recorded (another pymoo), the resume is refused before anything is evaluated.
        """
        from tqdm import tqdm

        recorded = {g["generation"]: g for g in self.store.generations()}
        done = (max(recorded) + 1) if recorded else 0
        algorithm = make_algorithm(self.space, self.config, len(active_constraints(self.config)),
                                   initial=self.config.get("initial_population") or ())
        generation = 0
        diverged = False  # an answer changed during the replay (--retry-failed)
        pop_size, n_gen = self.config["pop_size"], self.config["generations"]
        hv_ref = self.store.get_state("hv_ref")
        bar = tqdm(total=pop_size * n_gen, initial=min(done, n_gen) * pop_size,
                   unit="arch", desc="search", disable=not self.progress, dynamic_ncols=True)
        stopped = None
        try:
            while algorithm.has_next():
                replaying = generation < done
                if not replaying:  # the budgets apply to new generations (not to a replay)
                    stopped = stop_reason(self.config, self.store.generations())
                    if stopped is not None:
                        break
                t0 = time.perf_counter()
                pop = algorithm.ask()
                genomes = self._genomes(pop, generation)
                keys = [self.space.key(g) for g in genomes]
                if replaying and not diverged:
                    asked = (recorded.get(generation, {}).get("extra") or {}).get("offspring")
                    if asked is not None and asked != keys:
                        raise ConfigError(
                            f"cannot resume {self.store.run_dir}: replaying generation "
                            f"{generation} asks for other architectures than were recorded "
                            "(was the run made with another version of pymoo or rwenas?)")
                todo: dict[str, tuple[int, ...]] = {}
                for g, k in zip(genomes, keys, strict=True):
                    if k not in self.cache and k not in todo:
                        todo[k] = g
                hits = len(keys) - len(todo)
                if not replaying:
                    bar.update(hits)
                by_genome = {g: k for k, g in todo.items()}
                for genome, outcome in executor.run(list(todo.values())):
                    self._record(genome, by_genome[genome], outcome, generation)
                    if not replaying:
                        bar.update(1)
                    self._postfix(bar, generation, hits)
                diverged = diverged or (replaying and bool(todo))
                values = {"F": self._objective_matrix(keys)}
                if algorithm.problem.n_ieq_constr:
                    values["G"] = self._constraint_matrix(keys)
                static = StaticProblem(algorithm.problem, **values)
                Evaluator().eval(static, pop)
                algorithm.tell(infills=pop)
                generation += 1
                if replaying and not todo:
                    continue  # recorded as it is
                if hv_ref is None:
                    hv_ref = self._reference_point(keys)
                    self.store.set_state("hv_ref", hv_ref)
                front = self.archive_front()
                hv = hypervolume(np.array([e["objectives"] for e in front]), hv_ref)
                survivors = [self.space.key(tuple(int(v) for v in x))
                             for x in algorithm.pop.get("X")]
                self.store.add_generation(
                    generation - 1, population=survivors, front=[e["key"] for e in front],
                    hypervolume=hv, n_evaluated=len(todo), cache_hits=hits,
                    seconds=time.perf_counter() - t0,
                    extra={"offspring": keys})
                self._postfix(bar, generation - 1, hits, hv)
        finally:
            bar.close()
        self.store.set_state("stopped", stopped)
        front = self.archive_front()
        gens = self.store.generations()
        return SearchResult(self.store.run_dir, front, self.store.count_evaluations(),
                            sum(g["cache_hits"] for g in gens),
                            gens[-1]["hypervolume"] if gens else 0.0, stopped,
                            list(self.objectives))

    def _genomes(self, pop: Any, generation: int) -> list[tuple[int, ...]]:
        """Integer genomes of the asked population, repaired by the space's fix operation
        where it has one (NAS-Bench-301's distinct inputs); pymoo sees the repaired ones."""
        lower, upper = self.space.lower, self.space.upper
        X = np.clip(np.rint(np.asarray(pop.get("X"), dtype=float)), lower, upper).astype(int)
        fix = getattr(self.space, "fix", None)
        if fix is not None:
            rng = np.random.default_rng([self.config["seed"], generation])
            X = np.array([fix(x, rng) for x in X], dtype=int)
        pop.set("X", X)
        return [tuple(int(v) for v in x) for x in X]

    def _reference_point(self, keys: Sequence[str]) -> list[float]:
        """Fixed for the run: 1.0 for errors, otherwise the worst initial value plus the larger
        of its magnitude and the initial range (2 × the worst for a positive cost, room for
        later architectures and for timing noise; negated proxy scores are negative)."""
        return reference_point(self._objective_matrix(keys),
                               [self.cache[k]["status"] == "ok" for k in keys], self.objectives)

    def _postfix(self, bar: Any, generation: int, hits: int, hv: float | None = None) -> None:
        i = primary(self.objectives)
        ok = [e["objectives"][i] for e in self.cache.values() if e["status"] == "ok"]
        post = {"gen": generation, "evals": len(self.cache), "hits": hits}
        if ok:
            post["best_err"] = f"{min(ok):.4f}"
        if hv is not None:
            post["hv"] = f"{hv:.4g}"
        bar.set_postfix(post, refresh=False)


def _unusable(outcome: dict[str, Any], objectives: Sequence[str]) -> str | None:
    """Why a finished evaluation cannot be used (non-finite features or objective values),
    or ``None``. Such an evaluation is recorded as failed, with the worst objectives."""
    if outcome.get("finite") is False:
        return outcome.get("warning") or "non-finite features or classifier"
    try:
        values = objective_values(outcome, objectives)
    except (KeyError, TypeError, ValueError) as exc:
        return f"objective value missing or not a number ({exc})"
    bad = [name for name, v in zip(objectives, values, strict=True) if not math.isfinite(v)]
    if bad:
        return f"non-finite objective value(s): {', '.join(bad)}"
    return None


def run_search(config: dict[str, Any] | None = None, run_dir: str | Path | None = None, *,
               resume: str | Path | None = None, force: bool = False,
               overrides: dict[str, Any] | None = None, progress: bool = True,
               trust_plugins: bool = False, retry_failed: bool = False,
               after: Callable[[RunStore, dict[str, Any]], Any] | None = None
               ) -> SearchResult:
    """Start a search in ``run_dir`` with ``config``, or resume the one in ``resume``.

    On resume only :data:`RESUMABLE` settings may be overridden; a plugin space the run
    names is imported only if ``overrides["space"]`` names it too or ``trust_plugins``
    (the run directory may come from someone else); ``retry_failed`` evaluates the
    architectures recorded as failed again. The run directory is locked for the whole call:
    a second process is refused. Ctrl-C stops the search with every finished evaluation
    stored; resuming continues it.

    At the end the run's data files are written (:func:`rwenas.search.outputs.write_outputs`),
    then ``after(store, config)`` is called while the run is still locked: the command line
    passes :func:`rwenas.report.write_figures` (plots and the HTML report), which the search
    itself knows nothing about.
    """
    if resume is not None:
        store = RunStore.open(resume, lock=True)
        try:
            given = overrides or {}
            config = store.config
            if not isinstance(config, dict):
                raise ConfigError(f"the run in {resume} stores no valid configuration")
            # settings added since the run was made take their defaults (nsga2, no budgets)
            config = {**copy.deepcopy(DEFAULTS), **config}
            check_stored_space(config.get("space"), given=given.get("space"),
                               trust=trust_plugins, where=f"the run in {resume}")
            check_stored_objectives(config.get("objectives"), given=given.get("objectives"),
                                    trust=trust_plugins, where=f"the run in {resume}")
            # the budgets of an earlier resume, then the ones given now (see stopping.py)
            config = {**config, **stored_limits(store)}
            changed = {k: v for k, v in given.items()
                       if v is not None and config.get(k) != v}
            bad = [k for k in changed if k not in RESUMABLE]
            if bad:
                raise ConfigError(f"cannot change {', '.join(sorted(bad))} when resuming a run "
                                  f"(only {', '.join(RESUMABLE)})")
            config = {**config, **changed}
            if config["executor"] != "ray":  # Ray's settings do not carry over to another
                for key in RAY_ONLY:  # executor (nor did they act there)
                    if key not in changed:
                        config[key] = DEFAULTS[key]
            validate_config(config)
            config = apply_limits(store, config, {k: config[k] for k in changed})
        except BaseException:
            store.close()
            raise
    else:
        if config is None or run_dir is None:
            raise ConfigError("a new search needs a config and a run directory (--out)")
        if retry_failed:
            raise ConfigError("retry_failed applies to a resumed search")
        space = get_space(config["space"])  # unknown space: fail before creating anything
        for i, genome in enumerate(config.get("initial_population") or ()):
            try:
                space.validate(genome)
            except RwenasError as exc:
                raise ConfigError(f"initial_population genome {i + 1}: {exc}") from None
        store = RunStore.create(run_dir, config, force=force, lock=True)
    try:
        if config.get("threads"):
            import torch

            torch.set_num_threads(config["threads"])
        search = Search(store, config, progress=progress, retry_failed=retry_failed)
        executor = make_executor(config)
        try:
            result = search.run(executor)
        finally:
            executor.close()
        try:
            write_outputs(store, config)
            if after is not None:
                after(store, config)
        except OSError as exc:
            raise ConfigError(f"cannot write the outputs of {store.run_dir}: "
                              f"{exc.strerror or exc}; the results store is intact (rebuild "
                              f"them with rwenas search --resume {store.run_dir})") from None
        return result
    finally:
        store.close()
