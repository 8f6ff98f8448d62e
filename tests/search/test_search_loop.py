"""Fast tests of the search loop (rwenas.search.nsga2): made-up evaluations instead of trained
classifiers, so that a whole search takes a fraction of a second and mutation testing of the
loop is affordable. The slow end-to-end searches are in test_nsga2.py.

The made-up evaluation of an architecture is a function of its canonical key (a CRC of it),
so it is as deterministic as a real one: the same key always gets the same values.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rwenas.search.nsga2 as nsga2
from rwenas.errors import ConfigError
from rwenas.search.config import resolve_config
from rwenas.search.executors import Failure
from rwenas.search.nsga2 import RESUMABLE, Search, _unusable, run_search
from rwenas.search.store import RunLock, RunStore
from rwenas.spaces import get_space
from tests.search.reference import dominates, hypervolume_2d

TINY = {"space": "micro", "dataset": "synthetic", "train_size": 40, "val_size": 20,
        "pop_size": 6, "generations": 3, "seed": 1, "network": {"channels": 4, "layers": 3},
        "rwe": {"epochs": 1}}
WORST = [1.0, 1e12]  # the objective values of a failed evaluation (rwe, madds)


def config(**over: Any) -> dict[str, Any]:
    return resolve_config(None, None, {**TINY, **over})


def crc(key: str) -> int:
    return zlib.crc32(key.encode())


def made_up(key: str) -> dict[str, Any]:
    """The measurements of the architecture with canonical ``key`` (made up from its CRC)."""
    h = crc(key)
    return {"rwe_error": 0.2 + (h % 1000) / 2000, "madds_m": 1.0 + (h // 1000 % 1000) / 100,
            "params_m": 0.01 + (h // 1_000_000 % 100) / 1000, "seconds": 0.5,
            "features_seconds": 0.25, "classifier_seconds": 0.125, "seed": h % 97,
            "warning": None, "device": "cuda:made-up GPU" if h % 3 == 0 else "cpu"}


class FakeExecutor:
    """Answers each genome with ``outcome(key)`` and records what it was asked; raises
    KeyboardInterrupt (a Ctrl-C) before its evaluation number ``stop_after``."""

    def __init__(self, space: str, outcome=made_up, stop_after: int | None = None) -> None:
        self.space = get_space(space)
        self.outcome = outcome
        self.stop_after = stop_after
        self.batches: list[list[str]] = []  # the keys asked, batch by batch
        self.evaluated: list[str] = []
        self.closed = 0

    def run(self, genomes):
        self.batches.append([self.space.key(g) for g in genomes])
        for genome in genomes:
            if self.stop_after is not None and len(self.evaluated) >= self.stop_after:
                raise KeyboardInterrupt
            key = self.space.key(genome)
            self.evaluated.append(key)
            yield genome, self.outcome(key)

    def close(self) -> None:
        self.closed += 1


class Executors:
    """Every executor the searches of a test make; ``options`` go to the next ones."""

    def __init__(self) -> None:
        self.made: list[FakeExecutor] = []
        self.options: dict[str, Any] = {}

    def __call__(self, cfg: dict[str, Any]) -> FakeExecutor:
        self.made.append(FakeExecutor(cfg["space"], **self.options))
        return self.made[-1]

    @property
    def last(self) -> FakeExecutor:
        return self.made[-1]


@pytest.fixture(autouse=True)
def own_progress_lock() -> Any:
    """tqdm's default lock is a multiprocessing one, shared by every process forked after it
    exists (mutation testing forks one per mutant): a process that dies holding it would hang
    the next. Each test gets a lock of its own."""
    import threading

    from tqdm import tqdm

    before = tqdm.__dict__.get("_lock")
    tqdm.set_lock(threading.RLock())
    yield
    if before is None:
        del tqdm._lock  # tqdm makes its default lock afresh when next needed
    else:
        tqdm.set_lock(before)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Executors:
    executors = Executors()
    monkeypatch.setattr(nsga2, "make_executor", executors)
    return executors


def read(run_dir: Path) -> tuple[list[dict], list[dict], Any]:
    with RunStore.open(run_dir) as store:
        return store.evaluations(), store.generations(), store.get_state("hv_ref")


def front_keys(records: list[dict]) -> set[str]:
    ok = [e for e in records if e["status"] == "ok"]
    return {e["key"] for e in ok
            if not any(dominates(o["objectives"], e["objectives"]) for o in ok)}


def summary(run_dir: Path) -> tuple[list, list]:
    evaluations, generations, _ = read(run_dir)
    return ([(e["key"], e["genome"], e["objectives"], e["generation"], e["status"])
             for e in evaluations],
            [(g["generation"], g["population"], g["front"], g["hypervolume"],
              g["extra"]["offspring"]) for g in generations])


# -- a run from start to end ---------------------------------------------------------------------
def test_a_run_records_every_generation(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    result = run_search(config(), run_dir, progress=False)
    evaluations, generations, ref = read(run_dir)
    (executor,) = fake.made
    assert executor.closed == 1
    keys = [e["key"] for e in evaluations]
    assert keys == executor.evaluated  # stored in the order evaluated, each key once
    assert len(set(keys)) == len(keys)
    assert [g["generation"] for g in generations] == [0, 1, 2]
    seen: set[str] = set()
    previous: list[str] = []
    for g in generations:
        offspring = g["extra"]["offspring"]
        new = [k for k in dict.fromkeys(offspring) if k not in seen]
        assert len(offspring) == 6
        assert [e["key"] for e in evaluations if e["generation"] == g["generation"]] == new
        assert g["n_evaluated"] == len(new) and g["cache_hits"] == 6 - len(new)
        seen |= set(offspring)
        assert len(g["population"]) == 6 and set(g["population"]) <= set(offspring) | set(
            previous)
        previous = g["population"]
        so_far = [e for e in evaluations if e["generation"] <= g["generation"]]
        assert set(g["front"]) == front_keys(so_far)
        points = [e["objectives"] for e in so_far if e["key"] in g["front"]]
        assert g["hypervolume"] == pytest.approx(hypervolume_2d(points, ref), rel=1e-9)
        assert g["hypervolume"] > 0 and g["seconds"] >= 0
    assert seen == set(keys)
    first = [e["objectives"][1] for e in evaluations if e["generation"] == 0]
    worst, best = max(first), min(first)
    assert ref == [1.0, worst + max(worst, worst - best)]
    assert result.run_dir == run_dir
    assert result.evaluations == len(keys)
    assert result.cache_hits == sum(g["cache_hits"] for g in generations)
    assert result.hypervolume == generations[-1]["hypervolume"]
    assert result.stopped is None and result.objectives == ["rwe", "madds"]
    assert {e["key"] for e in result.front} == set(generations[-1]["front"])
    with RunStore.open(run_dir) as store:
        assert store.get_state("stopped", "unset") is None
    rows = json.loads((run_dir / "front.json").read_text())
    assert sorted(r["key"] for r in rows) == sorted(generations[-1]["front"])
    with (run_dir / "history.csv").open() as f:
        assert len(list(csv.reader(f))) == len(keys) + 1
    assert json.loads((run_dir / "config.json").read_text()) == config()


def test_records_hold_the_measurements(tmp_path: Path, fake: Executors) -> None:
    space = get_space("micro")

    def with_extras(key: str) -> dict[str, Any]:
        out = made_up(key)
        if crc(key) % 2:  # estimator/function values are kept when there are any
            out.update(objectives={"f": 1.5}, raw={"f": -1.5}, latency_ms=2.5)
        else:
            out.update(objectives={}, raw={}, warning="slow")
        return out

    fake.options = {"outcome": with_extras}
    run_search(config(), tmp_path / "run", progress=False)
    evaluations, _, _ = read(tmp_path / "run")
    for e in evaluations:
        out = with_extras(e["key"])
        assert e["status"] == "ok" and e["error"] is None and e["attempts"] == 1
        assert e["objectives"] == [out["rwe_error"], out["madds_m"]]
        assert (e["params_m"], e["madds_m"], e["seconds"], e["features_seconds"],
                e["classifier_seconds"]) == (out["params_m"], out["madds_m"], 0.5, 0.25, 0.125)
        assert space.key(e["genome"]) == e["key"]
        assert e["genotype"] == space.genotype_to_json(space.decode(e["genome"]))
        extra = {"rwe_error": out["rwe_error"], "seed": out["seed"], "warning": out["warning"],
                 "latency_ms": out.get("latency_ms"), "latency_batch_ms": None,
                 "memory_mb": None, "latency_onnx_ms": None, "device": out["device"]}
        if crc(e["key"]) % 2:
            extra.update(objectives={"f": 1.5}, raw={"f": -1.5})
        assert e["extra"] == extra


def test_same_seed_same_run_and_another_seed_another(tmp_path: Path, fake: Executors) -> None:
    run_search(config(), tmp_path / "a", progress=False)
    run_search(config(), tmp_path / "b", progress=False)
    run_search(config(seed=2), tmp_path / "c", progress=False)
    assert summary(tmp_path / "a") == summary(tmp_path / "b")
    assert summary(tmp_path / "a")[1][0][4] != summary(tmp_path / "c")[1][0][4]


def test_nb301_genomes_are_repaired_before_pymoo_sees_them(tmp_path: Path,
                                                           fake: Executors) -> None:
    """NAS-Bench-301's fix operation (distinct inputs) is applied to what pymoo asks, and
    pymoo keeps the repaired genomes: the population holds only evaluated architectures."""
    run_search(config(space="nb301", pop_size=8), tmp_path / "run", progress=False)
    space = get_space("nb301")
    evaluations, generations, _ = read(tmp_path / "run")
    for e in evaluations:
        assert tuple(e["genome"]) == space.fix(e["genome"], np.random.default_rng(0))
    keys = {e["key"] for e in evaluations}
    for g in generations:
        assert set(g["population"]) <= keys and set(g["extra"]["offspring"]) <= keys
    run_search(config(space="nb301", pop_size=8), tmp_path / "again", progress=False)
    assert summary(tmp_path / "run") == summary(tmp_path / "again")


def test_initial_population_comes_first(tmp_path: Path, fake: Executors) -> None:
    space = get_space("micro")
    rng = np.random.default_rng(5)
    genomes = [list(space.sample(rng)) for _ in range(2)]
    run_search(config(initial_population=genomes), tmp_path / "run", progress=False)
    _, generations, _ = read(tmp_path / "run")
    assert generations[0]["extra"]["offspring"][:2] == [space.key(g) for g in genomes]


def test_new_search_errors(tmp_path: Path, fake: Executors) -> None:
    message = "a new search needs a config and a run directory (--out)"
    with pytest.raises(ConfigError) as info:
        run_search(None, tmp_path / "run")
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        run_search(config(), None)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        run_search(config(), tmp_path / "run", retry_failed=True)
    assert str(info.value) == "retry_failed applies to a resumed search"
    good = list(get_space("micro").sample(np.random.default_rng(0)))
    cfg = config(initial_population=[good, good])
    cfg["initial_population"][1] = [99] * 40  # as if given to run_search directly
    with pytest.raises(ConfigError, match=r"^initial_population genome 2: "):
        run_search(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and fake.made == []


# -- interruption and resume ---------------------------------------------------------------------
def test_interrupted_run_resumes_without_evaluating_anything_twice(tmp_path: Path,
                                                                   fake: Executors) -> None:
    run_search(config(), tmp_path / "ref", progress=False)
    fake.options = {"stop_after": 9}  # Ctrl-C inside generation 1
    with pytest.raises(KeyboardInterrupt):
        run_search(config(), tmp_path / "run", progress=False)
    assert fake.last.closed == 1
    stored, generations, _ = read(tmp_path / "run")
    assert len(stored) == 9 and [g["generation"] for g in generations] == [0]
    first_created = generations[0]["created"]
    fake.options = {}
    result = run_search(resume=tmp_path / "run", progress=False)
    resumed = fake.last
    assert resumed.batches[0] == []  # generation 0 replayed from the store
    assert not set(resumed.evaluated) & {e["key"] for e in stored}
    assert len(stored) + len(resumed.evaluated) == result.evaluations
    assert summary(tmp_path / "run") == summary(tmp_path / "ref")
    _, generations, _ = read(tmp_path / "run")
    assert generations[0]["created"] == first_created  # not recorded again
    assert generations[1]["n_evaluated"] == len(resumed.batches[1])
    assert generations[1]["n_evaluated"] + generations[1]["cache_hits"] == 6
    assert resumed.closed == 1


def test_resume_of_a_finished_run_evaluates_nothing(tmp_path: Path, fake: Executors) -> None:
    first = run_search(config(), tmp_path / "run", progress=False)
    before = summary(tmp_path / "run")
    again = run_search(resume=tmp_path / "run", overrides={"pop_size": 6, "seed": None},
                       progress=False)
    assert fake.last.batches == [[], [], []] and fake.last.evaluated == []
    assert summary(tmp_path / "run") == before
    assert again.stopped is None
    assert (again.evaluations, again.hypervolume, again.cache_hits) == (
        first.evaluations, first.hypervolume, first.cache_hits)
    assert [e["key"] for e in again.front] == [e["key"] for e in first.front]


def test_resume_refuses_a_replay_that_asks_for_something_else(tmp_path: Path,
                                                              fake: Executors) -> None:
    run_dir = tmp_path / "run"
    run_search(config(), run_dir, progress=False)
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("UPDATE generations SET extra = ? WHERE generation = 1",
                     (json.dumps({"offspring": ["micro:other"] * 6}),))
    conn.close()
    n = len(read(run_dir)[0])
    with pytest.raises(ConfigError) as info:
        run_search(resume=run_dir, progress=False)
    assert str(info.value) == (f"cannot resume {run_dir}: replaying generation 1 asks for "
                               "other architectures than were recorded (was the run made "
                               "with another version of pymoo or rwenas?)")
    assert fake.last.evaluated == [] and fake.last.closed == 1
    assert len(read(run_dir)[0]) == n
    RunLock.acquire(run_dir).release()  # the refused resume let go of the run


def test_resume_keeps_the_settings_that_change_results(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    run_search(config(), run_dir, progress=False)
    with pytest.raises(ConfigError) as info:
        run_search(resume=run_dir, overrides={"seed": 3, "pop_size": 8, "workers": 2},
                   progress=False)
    assert str(info.value) == ("cannot change pop_size, seed when resuming a run (only "
                               f"{', '.join(RESUMABLE)})")
    run_search(resume=run_dir, overrides={"max_retries": 5, "workers": 1}, progress=False)
    assert json.loads((run_dir / "config.json").read_text())["max_retries"] == 5
    with pytest.raises(ConfigError, match="must be"):
        run_search(resume=run_dir, overrides={"max_retries": -1}, progress=False)
    RunLock.acquire(run_dir).release()


def test_resume_of_an_older_or_damaged_run(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    run_search(config(), run_dir, progress=False)
    old = {k: v for k, v in config().items() if k not in ("algorithm", "crossover_prob")}
    with sqlite3.connect(run_dir / "run.db") as conn:  # made before these settings existed
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(old),))
    conn.close()
    run_search(resume=run_dir, progress=False)
    written = json.loads((run_dir / "config.json").read_text())
    assert (written["algorithm"], written["crossover_prob"]) == ("nsga2", 0.9)
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("UPDATE meta SET value = '[1, 2]' WHERE key = 'config'")
    conn.close()
    with pytest.raises(ConfigError) as info:
        run_search(resume=run_dir, progress=False)
    assert str(info.value) == f"the run in {run_dir} stores no valid configuration"
    RunLock.acquire(run_dir).release()


def test_stored_objective_function_needs_consent(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    run_search(config(), run_dir, progress=False)
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(
            {**config(), "objectives": ["rwe", "someones_module:score"]}),))
    conn.close()
    with pytest.raises(ConfigError, match="imports and runs module 'someones_module'"):
        run_search(resume=run_dir, progress=False)
    assert len(fake.made) == 1  # the first run's: nothing was imported, made or evaluated


def test_budget_stops_before_a_new_generation_not_during_the_replay(tmp_path: Path,
                                                                    fake: Executors) -> None:
    run_dir = tmp_path / "run"
    result = run_search(config(max_minutes=1e-9), run_dir, progress=False)
    assert result.stopped.startswith("time budget reached: ")
    assert result.stopped.endswith(" of 1e-09 minutes spent after 1 generations")
    evaluations, generations, _ = read(run_dir)
    assert [g["generation"] for g in generations] == [0] and len(evaluations) == 6
    assert result.evaluations == 6 and result.hypervolume == generations[0]["hypervolume"]
    with RunStore.open(run_dir) as store:
        assert store.get_state("stopped") == result.stopped
    again = run_search(resume=run_dir, progress=False)  # the same budget: stops again
    assert again.stopped.startswith("time budget reached") and fake.last.batches == [[]]
    more = run_search(resume=run_dir, overrides={"max_minutes": 1000}, progress=False)
    assert more.stopped is None
    _, generations, _ = read(run_dir)
    assert [g["generation"] for g in generations] == [0, 1, 2]
    with RunStore.open(run_dir) as store:
        assert store.get_state("stopped", "unset") is None
        assert store.get_state("limits") == {"max_minutes": 1000}


# -- failures --------------------------------------------------------------------------------------
def flaky(key: str) -> Any:
    """Every third architecture fails for good; the others are made up."""
    return Failure("RuntimeError: boom", 3) if crc(key) % 3 == 0 else made_up(key)


def test_failures_get_the_worst_values_and_can_be_retried(tmp_path: Path,
                                                         fake: Executors) -> None:
    run_dir = tmp_path / "run"
    fake.options = {"outcome": flaky}
    run_search(config(), run_dir, progress=False)
    evaluations, generations, ref = read(run_dir)
    failed = [e for e in evaluations if e["status"] == "failed"]
    assert len(failed) < len(evaluations)
    assert any(e["generation"] == 0 for e in failed) and any(e["generation"] > 0 for e in failed)
    for e in failed:
        assert (e["objectives"], e["error"], e["attempts"]) == (WORST, "RuntimeError: boom", 3)
        assert e["genotype"] is None and e["madds_m"] is None
        assert all(e["key"] not in g["front"] for g in generations)
    ok0 = [e["objectives"][1] for e in evaluations if e["generation"] == 0
           and e["status"] == "ok"]
    assert ref[1] == max(ok0) + max(max(ok0), max(ok0) - min(ok0))  # failures left out
    ids = {e["key"]: e["id"] for e in evaluations}

    fake.options = {"outcome": flaky}
    run_search(resume=run_dir, progress=False)  # without retry_failed: left as they are
    assert fake.last.evaluated == []
    fake.options = {}
    run_search(resume=run_dir, progress=False, retry_failed=True)
    retried = fake.last.evaluated
    n_failed0 = sum(e["generation"] == 0 for e in failed)
    assert read(run_dir)[1][0]["n_evaluated"] == n_failed0  # generation 0 recorded anew
    # generation 0 replays as it was asked; after that the answers differ, and so may the rest
    assert {e["key"] for e in failed if e["generation"] == 0} <= set(retried)
    evaluations, _, _ = read(run_dir)
    assert {e["key"] for e in evaluations if e["status"] == "failed"} == {
        e["key"] for e in failed} - set(retried)
    assert all(ids[e["key"]] == e["id"] for e in evaluations if e["key"] in ids)
    assert len({e["key"] for e in evaluations}) == len(evaluations)
    for e in evaluations:
        if e["status"] == "ok":
            out = made_up(e["key"])
            assert e["objectives"] == [out["rwe_error"], out["madds_m"]]


@pytest.mark.parametrize("outcome,message", [
    ({"finite": False, "warning": "features were NaN"}, "features were NaN"),
    ({"finite": False, "warning": None}, "non-finite features or classifier"),
    ({"rwe_error": math.nan}, "non-finite objective value(s): rwe"),
    ({"rwe_error": math.inf, "madds_m": -math.inf}, "non-finite objective value(s): rwe, madds"),
    ({"madds_m": None}, "objective value missing or not a number (float() argument must be a "
                        "string or a real number, not 'NoneType')"),
    ({"madds_m": "many"}, "objective value missing or not a number (could not convert string "
                          "to float: 'many')"),
])
def test_unusable_outcomes_are_failures(tmp_path: Path, fake: Executors,
                                        outcome: dict, message: str) -> None:
    base = made_up("x")
    assert _unusable({**base, "finite": True}, ["rwe", "madds"]) is None
    assert _unusable({**base, **outcome}, ["rwe", "madds"]) == message

    def bad_sometimes(key: str) -> dict:
        return {**made_up(key), **outcome} if crc(key) % 2 else made_up(key)

    fake.options = {"outcome": bad_sometimes}
    run_search(config(generations=1), tmp_path / "run", progress=False)
    evaluations, generations, _ = read(tmp_path / "run")
    bad = [e for e in evaluations if crc(e["key"]) % 2]
    assert bad
    for e in bad:
        assert (e["status"], e["error"], e["objectives"], e["attempts"]) == (
            "failed", message, WORST, 1)
        assert e["key"] not in generations[0]["front"]


def test_missing_objective_is_a_failure() -> None:
    assert _unusable({"rwe_error": 0.5}, ["rwe", "madds"]) == (
        "objective value missing or not a number ('madds_m')")


# -- constraints -----------------------------------------------------------------------------------
def test_constraints_keep_infeasible_architectures_off_the_front(tmp_path: Path,
                                                                 fake: Executors) -> None:
    bound = 0.06
    run_dir = tmp_path / "run"
    result = run_search(config(max_params=bound, pop_size=8), run_dir, progress=False)
    evaluations, generations, _ = read(run_dir)
    params = {e["key"]: e["params_m"] for e in evaluations}
    assert any(p > bound for p in params.values()) and any(p <= bound for p in params.values())
    feasible = [e for e in evaluations if e["params_m"] <= bound]
    for g in generations:
        assert all(params[k] <= bound for k in g["front"])
    assert {e["key"] for e in result.front} == front_keys(feasible)
    with RunStore.open(run_dir) as store:
        search = Search(store, store.config, progress=False)
        keys = [e["key"] for e in evaluations[:3]]
        assert search._constraint_matrix(keys).tolist() == [[params[k] - bound] for k in keys]
        assert search._objective_matrix(keys).tolist() == [
            e["objectives"] for e in evaluations[:3]]
    with RunStore.open(run_dir) as store:  # no constraint: an empty (n × 0) matrix
        search = Search(store, {**store.config, "max_params": None}, progress=False)
        assert search._constraint_matrix(keys).shape == (3, 0)


def test_a_failed_evaluation_violates_every_bound(tmp_path: Path, fake: Executors) -> None:
    fake.options = {"outcome": flaky}
    run_dir = tmp_path / "run"
    run_search(config(max_params=1.0, max_madds=100.0, generations=1), run_dir, progress=False)
    evaluations, _, _ = read(run_dir)
    with RunStore.open(run_dir) as store:
        search = Search(store, store.config, progress=False)
        failed = [e["key"] for e in evaluations if e["status"] == "failed"]
        assert failed
        assert search._constraint_matrix(failed).tolist() == [[1e12, 1e12]] * len(failed)


# -- the rest of run_search ------------------------------------------------------------------------
def test_after_hook_runs_on_the_open_store_after_the_outputs(tmp_path: Path,
                                                             fake: Executors) -> None:
    seen = []

    def after(store: RunStore, cfg: dict) -> None:
        seen.append((store.closed, store.count_evaluations(), cfg == store.config,
                     (store.run_dir / "front.json").exists()))

    result = run_search(config(), tmp_path / "run", progress=False, after=after)
    assert seen == [(False, result.evaluations, True, True)]


@pytest.mark.parametrize("exc,reason", [(OSError(errno.ENOSPC, "No space left on device"),
                                         "No space left on device"),
                                        (OSError("plain"), "plain")])
def test_output_errors_are_one_line_config_errors(tmp_path: Path, fake: Executors,
                                                  exc: OSError, reason: str) -> None:
    def after(store: RunStore, cfg: dict) -> None:
        raise exc

    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        run_search(config(), run_dir, progress=False, after=after)
    assert str(info.value) == (f"cannot write the outputs of {run_dir}: {reason}; the results "
                               f"store is intact (rebuild them with rwenas search --resume "
                               f"{run_dir})")
    RunLock.acquire(run_dir).release()  # the store was closed
    assert len(read(run_dir)[1]) == 3


def test_threads_setting(tmp_path: Path, fake: Executors, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    run_search(config(threads=2, generations=1), tmp_path / "a", progress=False)
    assert calls == [2]
    run_search(config(generations=1), tmp_path / "b", progress=False)
    assert calls == [2]


def test_the_run_is_locked_while_it_runs(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    states = []

    def after(store: RunStore, cfg: dict) -> None:
        try:
            RunLock.acquire(run_dir).release()
            states.append("free")
        except ConfigError:
            states.append("locked")

    run_search(config(generations=1), run_dir, progress=False, after=after)
    run_search(resume=run_dir, progress=False, after=after)
    assert states == ["locked", "locked"]


def test_progress_bar(tmp_path: Path, fake: Executors, capsys: pytest.CaptureFixture) -> None:
    run_search(config(), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    evaluations, generations, _ = read(tmp_path / "run")
    best = min(e["objectives"][0] for e in evaluations)
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("search: 100%")
    assert "18/18" in last
    assert f"gen=2, evals={len(evaluations)}, hits={generations[-1]['cache_hits']}" in last
    assert f"best_err={best:.4f}" in last and f"hv={generations[-1]['hypervolume']:.4g}" in last
    assert "arch/s" in last  # the bar counts architectures
    assert "None" not in err  # every postfix has numbers
    run_search(config(), tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    run_search(config(generations=1), tmp_path / "default")  # shown unless asked not to
    assert capsys.readouterr().err.replace("\r", "\n").strip().startswith("search:")


def test_progress_bar_of_a_resumed_run(tmp_path: Path, fake: Executors,
                                       capsys: pytest.CaptureFixture) -> None:
    run_search(config(max_minutes=1e-9), tmp_path / "run", progress=False)
    run_search(resume=tmp_path / "run", overrides={"max_minutes": 1000}, progress=True)
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    assert lines[0].startswith("search:  33%") and " 6/18 " in lines[0]  # generation 0: done
    assert lines[-1].startswith("search: 100%") and " 18/18 " in lines[-1]


# -- a real evaluation, with a cheap objective function ------------------------------------------
def operations(network: Any, genome: Any, info: Any) -> float:
    """An objective function (``module:function``): the sum of the operation indices."""
    return float(sum(genome[0::2]))


def test_real_evaluations_with_an_objective_function(tmp_path: Path) -> None:
    """The local executor builds each network and measures it (no RWE: it is not an
    objective), the function objective is scored on it, and the run is reproducible."""
    name = f"{__name__}:operations"
    cfg = config(objectives=["madds", name], pop_size=4, generations=2, image_size=8,
                 network={"channels": 2, "layers": 1})
    result = run_search(cfg, tmp_path / "a", progress=False)
    evaluations, generations, _ = read(tmp_path / "a")
    assert len(evaluations) == result.evaluations >= 4
    for e in evaluations:
        value = operations(None, e["genome"], None)
        assert e["status"] == "ok" and e["objectives"] == [e["madds_m"], value]
        assert e["extra"]["objectives"] == {name: value} and e["extra"]["rwe_error"] is None
        assert e["madds_m"] > 0 and e["params_m"] > 0
    assert {e["key"] for e in result.front} == front_keys(evaluations) == set(
        generations[-1]["front"])
    assert result.objectives == ["madds", name]
    run_search(cfg, tmp_path / "b", progress=False)
    assert summary(tmp_path / "a") == summary(tmp_path / "b")


def test_a_retried_failure_that_fails_again_is_recorded_anew(tmp_path: Path,
                                                             fake: Executors) -> None:
    run_dir = tmp_path / "run"
    fake.options = {"outcome": flaky}
    run_search(config(generations=1), run_dir, progress=False)
    failed = {e["key"] for e in read(run_dir)[0] if e["status"] == "failed"}
    assert failed

    def flakier(key: str) -> Any:
        return Failure("MemoryError: again", 2) if key in failed else made_up(key)

    fake.options = {"outcome": flakier}
    run_search(resume=run_dir, progress=False, retry_failed=True)
    assert set(fake.last.evaluated) == failed
    for e in read(run_dir)[0]:
        if e["key"] in failed:
            assert (e["status"], e["error"], e["attempts"]) == ("failed", "MemoryError: again", 2)


PLUGIN = "tests.spaces.test_plugins:TinySpace"


def test_resume_of_a_plugin_run_needs_consent(tmp_path: Path, fake: Executors) -> None:
    """A run names a plugin space and an objective function: resuming it imports them only
    when the user names them again or trusts the run."""
    objective = f"{__name__}:operations"

    def with_function(key: str) -> dict[str, Any]:
        return {**made_up(key), "objectives": {objective: float(crc(key) % 7)}}

    fake.options = {"outcome": with_function}
    run_dir = tmp_path / "run"
    cfg = config(space=PLUGIN, objectives=["rwe", objective], pop_size=4, generations=2)
    run_search(cfg, run_dir, progress=False)
    with pytest.raises(ConfigError) as info:
        run_search(resume=run_dir, progress=False)
    assert str(info.value) == (f"the run in {run_dir} uses the plugin search space {PLUGIN!r}; "
                               "loading it imports and runs module 'tests.spaces.test_plugins'. "
                               f"If you trust it, give --space {PLUGIN} (or --trust-plugins)")
    with pytest.raises(ConfigError) as info:
        run_search(resume=run_dir, overrides={"space": PLUGIN}, progress=False)
    assert str(info.value) == (f"the run in {run_dir} uses the objective function "
                               f"{objective!r}; loading it imports and runs module "
                               f"{__name__!r}. If you trust it, give --objectives "
                               f"rwe,{objective} (or --trust-plugins)")
    made = len(fake.made)
    run_search(resume=run_dir, overrides={"space": PLUGIN, "objectives": ["rwe", objective]},
               progress=False)
    run_search(resume=run_dir, trust_plugins=True, progress=False)
    assert len(fake.made) == made + 2 and fake.last.evaluated == []


def test_an_existing_run_is_kept_unless_forced(tmp_path: Path, fake: Executors) -> None:
    run_dir = tmp_path / "run"
    run_search(config(generations=1), run_dir, progress=False)
    before = summary(run_dir)
    with pytest.raises(ConfigError, match="already exists; use --resume"):
        run_search(config(generations=1, seed=2), run_dir, progress=False)
    assert summary(run_dir) == before
    run_search(config(generations=1, seed=2), run_dir, force=True, progress=False)
    assert summary(run_dir) != before
