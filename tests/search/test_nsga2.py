"""The search: NSGA-II loop, cache, store, resume after SIGKILL, executors, CLI errors."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rwenas.cli import main
from rwenas.errors import ConfigError
from rwenas.report import write_figures
from rwenas.search.config import resolve_config
from rwenas.search.front import hypervolume, non_dominated
from rwenas.search.nsga2 import run_search
from rwenas.search.store import RunStore
from rwenas.spaces import MicroSpace
from tests.search.reference import dominates, hypervolume_2d

TINY = {"space": "micro", "dataset": "synthetic", "train_size": 160, "val_size": 80,
        "pop_size": 6, "generations": 4, "seed": 1,
        "network": {"channels": 4, "layers": 3}, "rwe": {"epochs": 2}}


def tiny_config(**over):
    return resolve_config(None, None, {**TINY, **over})


def front_signature(run_dir: Path) -> list[tuple[str, list[float]]]:
    rows = json.loads((run_dir / "front.json").read_text())
    return sorted((r["key"], list(r["objectives"].values())) for r in rows)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted tiny search, shared by several tests."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    run_search(tiny_config(), run_dir, progress=False, after=write_figures)
    return run_dir


def test_hypervolume_and_non_dominated_by_hand():
    pts = np.array([[0.2, 3.0], [0.1, 5.0], [0.3, 4.0], [0.2, 3.0]])
    assert sorted(non_dominated(pts).tolist()) == [0, 1, 3]
    # two points against ref (1, 10): union of rectangles 0.8*7 + 0.9*5 - 0.8*5
    assert hypervolume(pts[:2], [1.0, 10.0]) == pytest.approx(0.8 * 7 + 0.9 * 5 - 0.8 * 5)
    assert hypervolume(np.array([[2.0, 1.0]]), [1.0, 10.0]) == 0.0


def test_hypervolume_2d_reference_by_hand():
    # staircase of (0.1, 5), (0.2, 3) under (1, 10): 0.9*5 + 0.8*2, a dominated point adds 0
    pts = [[0.2, 3.0], [0.1, 5.0], [0.3, 4.0]]
    assert hypervolume_2d(pts, [1.0, 10.0]) == pytest.approx(0.9 * 5 + 0.8 * 2)
    assert hypervolume(np.array(pts), [1.0, 10.0]) == pytest.approx(0.9 * 5 + 0.8 * 2)


def test_hypervolume_reference_point_and_values_by_hand(reference_run: Path):
    """The stored reference point is (1.0, 2 × the worst MAdds of generation 0), and every
    generation's hypervolume is that of all evaluations so far, computed here by hand."""
    with RunStore.open(reference_run) as store:
        evaluations = store.evaluations()
        generations = store.generations()
        ref = store.get_state("hv_ref")
    ok = [e for e in evaluations if e["status"] == "ok"]
    first = [e["objectives"][1] for e in ok if e["generation"] == 0]
    assert len(first) == 6
    assert ref == pytest.approx([1.0, 2.0 * max(first)], rel=1e-12)
    for g in generations:
        so_far = [e["objectives"] for e in ok if e["generation"] <= g["generation"]]
        expected = hypervolume_2d(so_far, ref)
        assert expected > 0
        assert g["hypervolume"] == pytest.approx(expected, rel=1e-9)


def test_search_outputs_and_invariants(reference_run: Path):
    store = RunStore.open(reference_run)
    try:
        evaluations = store.evaluations()
        generations = store.generations()
        config = store.config
    finally:
        store.close()
    for name in ("front.json", "front.csv", "history.csv", "front.png", "hypervolume.png",
                 "config.json"):
        assert (reference_run / name).stat().st_size > 0
    assert json.loads((reference_run / "config.json").read_text()) == config
    assert [g["generation"] for g in generations] == [0, 1, 2, 3]
    # every asked individual is either evaluated this generation or a cache hit
    for g in generations:
        assert g["n_evaluated"] + g["cache_hits"] == len(g["extra"]["offspring"])
        assert len(g["population"]) == 6
    # keys are unique: nothing evaluated twice; evaluations = unique offspring keys
    keys = [e["key"] for e in evaluations]
    assert len(keys) == len(set(keys))
    asked = {k for g in generations for k in g["extra"]["offspring"]}
    assert asked == set(keys)
    assert sum(g["n_evaluated"] for g in generations) == len(keys)
    # hypervolume of everything evaluated so far never decreases
    hvs = [g["hypervolume"] for g in generations]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(hvs))
    # the front is mutually non-dominated and nothing evaluated dominates it
    front = json.loads((reference_run / "front.json").read_text())
    pts = [list(r["objectives"].values()) for r in front]
    assert pts and all(not dominates(a, b) for a in pts for b in pts)
    all_pts = [e["objectives"] for e in evaluations if e["status"] == "ok"]
    assert all(not dominates(a, b) for a in all_pts for b in pts)
    # history.csv holds every evaluation
    assert len((reference_run / "history.csv").read_text().splitlines()) == len(keys) + 1


def test_same_seed_same_front(reference_run: Path, tmp_path: Path):
    run_search(tiny_config(), tmp_path / "again", progress=False)
    assert front_signature(tmp_path / "again") == front_signature(reference_run)


def test_front_objectives_reevaluate_identically(reference_run: Path, capsys):
    row = json.loads((reference_run / "front.json").read_text())[0]
    rc = main(["evaluate", "--genome", row["genome"], "--dataset", "synthetic",
               "--train-size", "160", "--val-size", "80", "--epochs", "2", "--channels", "4",
               "--layers", "3", "--seed", "1", "--json"])
    assert rc == 0
    (ev,) = json.loads(capsys.readouterr().out)
    assert ev["rwe_error"] == row["rwe_error"] and ev["madds_m"] == row["madds_m"]


class CountingExecutor:
    """Wraps a real executor and records every batch of genomes it is asked to evaluate."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batches: list[list[tuple[int, ...]]] = []

    def run(self, genomes):
        self.batches.append(list(genomes))
        yield from self.inner.run(genomes)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture()
def counting_executors(monkeypatch) -> list[CountingExecutor]:
    """Every executor a search makes in this test, wrapped in a :class:`CountingExecutor`."""
    import rwenas.search.nsga2 as nsga2

    made: list[CountingExecutor] = []
    real = nsga2.make_executor

    def make(config):
        made.append(CountingExecutor(real(config)))
        return made[-1]

    monkeypatch.setattr(nsga2, "make_executor", make)
    return made


def test_sigkill_mid_generation_then_resume_gives_the_same_front(
        reference_run: Path, tmp_path: Path, counting_executors: list[CountingExecutor]):
    """SIGKILL inside generation 2 or later (a fresh run with the same seed would not replay
    that: it needs the stored algorithm state), then resume in-process, counting what the
    resumed search evaluates."""
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rwenas.cli", "search", "--out", str(run_dir), "--quiet",
           "--space", "micro", "--dataset", "synthetic", "--train-size", "160",
           "--val-size", "80", "--pop-size", "6", "--generations", "4", "--seed", "1",
           "--channels", "4", "--layers", "3", "--epochs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run_dir / "run.db"
    deadline = time.time() + 180
    killed = False
    try:
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with RunStore.open(run_dir) as store:
                        n = store.count_evaluations()
                        last = store.last_generation()
                        done = sum(g["n_evaluated"] for g in store.generations())
                except ConfigError:  # the child is still creating the store
                    time.sleep(0.05)
                    continue
                # generations 0 and 1 finished, and some offspring of a later one evaluated
                if last is not None and last >= 1 and n > done:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed, "the search finished before it could be killed"
    with RunStore.open(run_dir) as store:
        before = {e["key"]: e for e in store.evaluations()}
        last = store.last_generation()
    assert last is not None and last >= 1
    interrupted = last + 1
    done_in_interrupted = sum(e["generation"] == interrupted for e in before.values())
    assert done_in_interrupted >= 1

    assert main(["search", "--resume", str(run_dir), "--quiet"]) == 0
    (executor,) = counting_executors
    # resume replays the finished generations with every answer from the store (the executor
    # gets nothing to do for them); only the interrupted and later generations evaluate
    assert all(not batch for batch in executor.batches[:interrupted])
    assert len([batch for batch in executor.batches if batch]) == 4 - interrupted
    from rwenas.spaces import get_space

    space = get_space("micro")
    redone = [space.key(g) for batch in executor.batches for g in batch]
    assert len(redone) == len(set(redone)), "a key was evaluated twice"
    assert not set(redone) & set(before), "a finished evaluation was redone"

    with RunStore.open(run_dir) as store:
        after = store.evaluations()
        gens = store.generations()
    with RunStore.open(reference_run) as store:
        ref_gens = store.generations()
        ref_count = store.count_evaluations()
    assert [g["generation"] for g in gens] == [0, 1, 2, 3]
    assert len(after) == ref_count == len(before) + len(redone)
    # per generation, as many evaluations as the uninterrupted run (the interrupted one split
    # between before the kill and after the resume), the same offspring and population
    for g, r in zip(gens, ref_gens, strict=True):
        extra = done_in_interrupted if g["generation"] == interrupted else 0
        assert g["n_evaluated"] + extra == r["n_evaluated"], g["generation"]
        assert g["extra"]["offspring"] == r["extra"]["offspring"]
        assert g["population"] == r["population"]
    # finished evaluations were kept exactly once and not changed
    assert len({e["key"] for e in after}) == len(after)
    assert all(e["objectives"] == before[e["key"]]["objectives"] for e in after
               if e["key"] in before)
    assert {e["key"] for e in after} == set(_keys(reference_run))
    assert front_signature(run_dir) == front_signature(reference_run)


def _keys(run_dir: Path) -> list[str]:
    with RunStore.open(run_dir) as store:
        return [e["key"] for e in store.evaluations()]


def test_process_pool_gives_the_same_front(reference_run: Path, tmp_path: Path):
    run_search(tiny_config(executor="process", workers=2), tmp_path / "pool", progress=False)
    assert front_signature(tmp_path / "pool") == front_signature(reference_run)


def test_ray_search_on_a_local_runtime(reference_run: Path, tmp_path: Path, monkeypatch):
    pytest.importorskip("ray")
    # Ray starts its workers 15 nice levels below the driver by default: on a machine busy
    # with background jobs they wait behind those; here they get the test's own priority.
    monkeypatch.setenv("RAY_worker_niceness", "0")
    run_search(tiny_config(executor="ray", workers=2), tmp_path / "ray", progress=False)
    assert front_signature(tmp_path / "ray") == front_signature(reference_run)


FLAKY_SPACE = textwrap.dedent("""
    import os
    from rwenas.models import builtin_network
    from rwenas.spaces.micro import MicroSpace

    class FlakySpace(MicroSpace):
        '''Micro space whose networks fail to build when block 0 of the normal cell applies
        a pooling operation on its first operand (a stand-in for a user's broken plugin).
        With FLAKY_DIE set, those applying average pooling kill their worker process
        instead, and the others build.'''
        name = "flaky"

        def build(self, genome, **setting):
            g = tuple(genome) if not hasattr(genome, "normal") else self.encode(genome)
            if os.environ.get("FLAKY_DIE"):
                if g[0] == 1:
                    os._exit(3)  # the worker process dies
            elif g[0] in (0, 1):
                raise RuntimeError("simulated build failure")
            return builtin_network(self, genome, **setting)
""")


@pytest.fixture()
def flaky_space(tmp_path: Path, monkeypatch) -> str:
    (tmp_path / "flaky_plugin.py").write_text(FLAKY_SPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                  ""))
    return "flaky_plugin:FlakySpace"


def _failed(run_dir: Path) -> list[dict]:
    with RunStore.open(run_dir) as store:
        return store.evaluations(status="failed")


def test_failing_evaluations_are_recorded_with_worst_objectives(flaky_space, tmp_path):
    cfg = tiny_config(space=flaky_space, pop_size=12, generations=2, max_retries=1)
    run_search(cfg, tmp_path / "flaky", progress=False)
    failed = _failed(tmp_path / "flaky")
    assert failed, "no genome hit the failure (adjust the plugin's condition)"
    for e in failed:
        assert e["objectives"][0] == 1.0 and e["objectives"][1] >= 1e9
        assert e["attempts"] == 2 and "simulated build failure" in e["error"]
    front = json.loads((tmp_path / "flaky" / "front.json").read_text())
    assert {r["key"] for r in front}.isdisjoint({e["key"] for e in failed})


def test_a_dying_worker_is_retried_then_recorded_as_failed(flaky_space, tmp_path, monkeypatch):
    """Only the architectures that kill their worker fail, each after max_retries + 1 solo
    attempts; the innocent ones that ran beside them when the pool broke are all ok.

    Killers are those whose first operation is average pooling: 2 of the 8 here. (Any pooling
    made 5 of 8, and every kill costs a new pool of freshly spawned workers, each importing
    torch: 16 pools instead of 8, for the same paths through the executor.)"""
    monkeypatch.setenv("FLAKY_DIE", "1")
    cfg = tiny_config(space=flaky_space, pop_size=8, generations=1, max_retries=1,
                      executor="process", workers=2)
    run_search(cfg, tmp_path / "dying", progress=False)
    with RunStore.open(tmp_path / "dying") as store:
        records = store.evaluations()
    assert len(records) == 8  # every evaluation finished, one way or the other
    # networks are built from the canonical genome, so that is what the plugin's build sees
    space = MicroSpace()
    killers = {e["key"] for e in records if space.canonical(e["genome"])[0] == 1}
    failed = {e["key"] for e in records if e["status"] == "failed"}
    assert killers, "no genome kills its worker (adjust the plugin's condition)"
    assert len(killers) < len(records), "no innocent genome to protect"
    assert failed == killers
    for e in records:
        if e["key"] in failed:
            assert e["error"] == "worker process died" and e["attempts"] == 2


# -- user errors --------------------------------------------------------------------------------
def run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(argv, capsys, fragment):
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2, (out, err)
    assert err.startswith("rwenas: error:") and fragment in err, err
    assert len(err.strip().splitlines()) == 1


def test_cli_errors(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("pop_sise = 3\n")
    assert_error(["search", "--config", str(bad), "--out", str(tmp_path / "r")], capsys,
                 "unknown setting 'pop_sise'")
    bad.write_text("pop_size = [\n")
    assert_error(["search", "--config", str(bad), "--out", str(tmp_path / "r")], capsys,
                 "not valid TOML")
    assert_error(["search", "--space", "nope", "--out", str(tmp_path / "r")], capsys,
                 "unknown search space")
    assert_error(["search", "--dataset", "nope", "--out", str(tmp_path / "r2"),
                  "--pop-size", "2", "--generations", "1"], capsys, "unknown dataset")
    assert_error(["search", "--objectives", "rwe", "--out", str(tmp_path / "r")], capsys,
                 "at least two")
    assert_error(["search"], capsys, "--out")
    assert_error(["search", "--resume", str(tmp_path / "missing")], capsys,
                 "not an rwenas run directory")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert_error(["search", "--out", str(foreign), "--force", "--dataset", "synthetic"], capsys,
                 "refusing to overwrite")
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_existing_run_is_not_overwritten(reference_run: Path, capsys):
    before = _keys(reference_run)
    assert_error(["search", "--out", str(reference_run), "--dataset", "synthetic"], capsys,
                 "--resume")
    assert_error(["search", "--resume", str(reference_run), "--pop-size", "3"], capsys,
                 "cannot change pop_size")
    assert _keys(reference_run) == before


def test_profiles_and_config_file(tmp_path: Path):
    quick = resolve_config("quick")
    assert (quick["pop_size"], quick["generations"]) == (10, 10)
    paper = resolve_config("paper")
    assert (paper["pop_size"], paper["generations"], paper["train_size"]) == (20, 30, None)
    assert quick["executor"] == "local"  # a 2-minute demo: no worker start-up
    f = tmp_path / "c.toml"
    f.write_text('profile = "quick"\ngenerations = 3\n[rwe]\nbn_mode = "calibrated"\n')
    cfg = resolve_config(None, f, {"seed": 7})
    assert (cfg["pop_size"], cfg["generations"], cfg["seed"]) == (10, 3, 7)
    assert cfg["rwe"]["bn_mode"] == "calibrated"
    with pytest.raises(ConfigError):
        resolve_config(None, None, {"executor": "slurm"})


def test_paper_profile_runs_one_worker_process_per_core_on_a_cpu(monkeypatch):
    """The paper profile's 600 evaluations take one single-threaded process per core where
    they run on a CPU; a given executor, workers or a GPU device keep their say."""
    import torch

    from rwenas.search import config as search_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(search_config.os, "cpu_count", lambda: 6)
    paper = resolve_config("paper")
    assert (paper["executor"], paper["workers"]) == ("process", 6)
    assert (resolve_config("paper", None, {"workers": 3})["workers"]) == 3
    with pytest.raises(ConfigError, match="workers"):  # a bad count is refused, not replaced
        resolve_config("paper", None, {"workers": 0})
    local = resolve_config("paper", None, {"executor": "local"})
    assert (local["executor"], local["workers"]) == ("local", 1)
    assert resolve_config("paper", None, {"rwe": {"device": "cpu"}})["executor"] == "process"
    assert resolve_config(None)["executor"] == "local"  # no profile: the default
    monkeypatch.setattr(search_config.os, "cpu_count", lambda: 1)
    assert resolve_config("paper")["executor"] == "local"  # one core: nothing to share
    monkeypatch.setattr(search_config.os, "cpu_count", lambda: 6)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_config("paper")["executor"] == "local"  # the GPU stays with one process


def test_a_search_on_a_gpu_gives_rwe_larger_inference_batches(monkeypatch):
    """Where a search's evaluations run on a GPU and its settings name no inference batch, RWE
    gets the GPU's (1024); on a CPU the settings stay as they were (no key, the same stored
    configuration and score contexts as before); a given batch is kept everywhere."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "inference_batch" not in resolve_config(None)["rwe"]
    assert "inference_batch" not in resolve_config("paper")["rwe"]
    ray_gpu = {"executor": "ray", "gpus_per_eval": 0.25}
    assert resolve_config(None, None, ray_gpu)["rwe"]["inference_batch"] == 1024
    assert "inference_batch" not in resolve_config(None, None, {"executor": "ray"})["rwe"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_config(None)["rwe"]["inference_batch"] == 1024
    assert resolve_config("paper")["rwe"]["inference_batch"] == 1024
    assert "inference_batch" not in resolve_config(None, None, {"rwe": {"device": "cpu"}})["rwe"]
    given = resolve_config(None, None, {"rwe": {"inference_batch": 256}})
    assert given["rwe"]["inference_batch"] == 256
