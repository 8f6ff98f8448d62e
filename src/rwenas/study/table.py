"""``rwenas study table``: the paper's Table 1, measured end to end on one dataset.

Every row is trained from scratch at one stated budget (:class:`~rwenas.study.bench.
BenchBudget`, the bench's), with ``seeds`` seeds, and tested on the full test set:

1. ``rwe`` — RWE + NSGA-II as rwenas ships it (population 20, 20 generations by default) on
   the search split; the L, M and S picks of its front.
2. ``random_search`` — random search at the same number of evaluations, RWE error measured,
   picked the same way: what NSGA-II's selection adds over sampling.
3. ``random_matched`` — random architectures matched in MAdds to row 1's L, M and S (the
   first random draw within ``match_tolerance`` of each), no estimator at all: what RWE adds
   at equal cost.
4. ``proxy`` — NSGA-II driven by a zero-cost proxy (default ``jacob_cov``) and MAdds, same
   budget: RWE against the cheap alternative.
5. ``published`` — DARTS, NSGA-Net, AmoebaNet, NASNet and ENAS cells at the same budget.

Resumable like the rest of rwenas: each search lives in its own sub-directory with its own
store (a re-run resumes it), and the table's store (``OUT/run.db``) commits every finished
training at once, keyed by (architecture key, seed, budget); rows that pick the same
architecture share its trainings. With ``bench``, a training of the same key, budget, data
and seed already in that bench (or its on-demand cache) is copied instead of trained again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.checks import MAX_SEED, check_number
from rwenas.errors import ConfigError, RwenasError
from rwenas.study.bench import (
    BenchBudget,
    arch_seed,
    budget_network,
    same_budget,
    training_device,
)

__all__ = ["PUBLISHED", "ROWS", "TableSettings", "build_table", "default_published"]

#: the rows, in table order
ROWS = ("rwe", "random_search", "random_matched", "proxy", "published")
#: rows that are searches, and their sub-directories
SEARCH_DIRS = {"rwe": "search-rwe", "random_search": "search-random", "proxy": "search-proxy"}
PUBLISHED = ("DARTS", "NSGANet", "AmoebaNet", "NASNet", "ENAS")
PICKS = ("L", "M", "S")
KIND = "table"
#: settings that may change when a table is continued (they only add or drop trainings)
MUTABLE = ("seeds", "published", "samples", "match_tolerance")


def default_published(space: str) -> tuple[str, ...]:
    """The published cells that ``space`` can build (all five for ``micro``)."""
    from rwenas.build import resolve_architecture

    out = []
    for name in PUBLISHED:
        try:
            resolve_architecture(space, arch=name)
        except RwenasError:
            continue
        out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class TableSettings:
    """What a table is: the data, the searches, the random sample and the training budget."""

    space: str = "micro"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | None = None
    #: seed of the searches, the data sub-samples, the random sample and the training seeds
    seed: int = 0
    #: trainings per architecture (different seeds); at least 2, for a spread
    seeds: int = 2
    pop_size: int = 20
    generations: int = 20
    search_train_size: int | None = 2000
    search_val_size: int | None = 500
    #: the search-setting network (``channels``, ``layers``); default: the space's preset
    search_network: Mapping[str, Any] = field(default_factory=dict)
    #: RWE options of the searches (:class:`rwenas.estimators.rwe.RWEConfig` fields)
    rwe: Mapping[str, Any] = field(default_factory=dict)
    proxy: str = "jacob_cov"
    #: row 3: at most this many random architectures drawn per pick (L, M, S) to find one
    #: whose MAdds at the budget is within ``match_tolerance`` (relative) of the pick's
    samples: int = 2000
    match_tolerance: float = 0.05
    #: published cells of row 5 (``None``: every one the space can build)
    published: tuple[str, ...] | None = None
    budget: BenchBudget = field(default_factory=BenchBudget)

    def __post_init__(self) -> None:
        check_number("seed", self.seed, integer=True, low=0, high=MAX_SEED)
        check_number("seeds", self.seeds, integer=True, low=2, high=1000)
        check_number("samples", self.samples, integer=True, low=1, high=10**6)
        check_number("match_tolerance", self.match_tolerance, low=0.0, high=1.0)
        for name in ("image_size", "search_train_size", "search_val_size"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), integer=True, low=1)
        from rwenas.objectives import estimator_names

        if self.proxy not in estimator_names():
            raise ConfigError(f"unknown proxy {self.proxy!r} (known: "
                              f"{', '.join(estimator_names())})")
        if self.published is not None:
            from rwenas.build import resolve_architecture

            for name in self.published:
                resolve_architecture(self.space, arch=name)  # one line for an unknown name
        if not isinstance(self.budget, BenchBudget):
            raise ConfigError("budget must be a BenchBudget")

    @property
    def published_names(self) -> tuple[str, ...]:
        return tuple(self.published) if self.published is not None \
            else default_published(self.space)

    def to_config(self) -> dict[str, Any]:
        """The stored configuration (JSON values)."""
        config = {"kind": KIND, "space": self.space, "dataset": self.dataset,
                  "data_dir": self.data_dir, "image_size": self.image_size, "seed": self.seed,
                  "seeds": self.seeds, "pop_size": self.pop_size,
                  "generations": self.generations, "search_train_size": self.search_train_size,
                  "search_val_size": self.search_val_size,
                  "search_network": dict(self.search_network), "rwe": dict(self.rwe),
                  "proxy": self.proxy, "samples": self.samples,
                  "match_tolerance": self.match_tolerance,
                  "published": list(self.published_names), "budget": self.budget.to_dict()}
        return json.loads(json.dumps(config))

    def search_config(self, row: str) -> dict[str, Any]:
        """The resolved search configuration of search row ``row``."""
        from rwenas.search.config import resolve_config

        return resolve_config(None, None, {
            "space": self.space, "dataset": self.dataset, "data_dir": self.data_dir,
            "image_size": self.image_size, "seed": self.seed, "pop_size": self.pop_size,
            "generations": self.generations, "train_size": self.search_train_size,
            "val_size": self.search_val_size, "network": dict(self.search_network),
            "rwe": dict(self.rwe), "algorithm": "random" if row == "random_search" else "nsga2",
            "objectives": [self.proxy, "madds"] if row == "proxy" else ["rwe", "madds"]})

    def row_title(self, row: str) -> str:
        return {"rwe": "RWE + NSGA-II", "random_search": "random search (RWE)",
                "random_matched": "random, matched MAdds", "proxy": f"{self.proxy} + NSGA-II",
                "published": "published cell"}[row]


@dataclass
class Entry:
    """One line of the table: an architecture of a row."""

    row: str
    pick: str
    key: str
    genome: tuple[int, ...] | None
    genotype: Any
    #: what the row knows about it before training (search objectives, matched MAdds)
    info: dict[str, Any] = field(default_factory=dict)


def budget_tag(budget: BenchBudget) -> str:
    """A short digest of a budget (part of every training's key)."""
    text = json.dumps(budget.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def training_key(arch_key: str, seed: int, budget: BenchBudget) -> str:
    return f"{arch_key}|seed={int(seed)}|budget={budget_tag(budget)}"


# -- the table's store -----------------------------------------------------------------------
def open_table_store(out_dir: Path, settings: TableSettings, force: bool) -> Any:
    """Create the table's store, or open an existing one made with the same settings."""
    from rwenas.search.store import DB_NAME, RunStore

    config = settings.to_config()
    if (out_dir / DB_NAME).is_file() and not force:
        store = RunStore.open(out_dir, lock=True)
        old = store.config
        if not isinstance(old, dict) or old.get("kind") != KIND:
            store.close()
            raise ConfigError(f"{out_dir} holds an rwenas run that is not a table; choose "
                              "another --out")
        changed = [k for k in config if k not in MUTABLE and old.get(k) != config[k]]
        if changed:
            store.close()
            raise ConfigError(f"the table in {out_dir} was made with other settings (changed: "
                              f"{', '.join(changed)}); use --force to start it over")
        return store
    if not force and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and holds no rwenas table; choose another --out")
    return RunStore.create(out_dir, config, force=force, lock=True)


# -- searches --------------------------------------------------------------------------------
def run_row_search(out_dir: Path, settings: TableSettings, row: str, progress: bool
                   ) -> dict[str, Any]:
    """Run (or resume) the search of ``row``; its L/M/S picks, cost and evaluations."""
    from rwenas.search.nsga2 import run_search
    from rwenas.search.outputs import front_rows
    from rwenas.search.picking import lms_index
    from rwenas.search.store import DB_NAME, RunStore
    from rwenas.spaces import get_space

    run_dir = out_dir / SEARCH_DIRS[row]
    config = settings.search_config(row)
    if (run_dir / DB_NAME).is_file():
        result = run_search(resume=run_dir, progress=progress)
    else:
        result = run_search(config, run_dir, progress=progress)
    if not result.front:
        raise ConfigError(f"the {row} search in {run_dir} has an empty front (every "
                          "evaluation failed?)")
    objectives = list(result.objectives)
    rows = front_rows(get_space(settings.space), result.front, objectives)
    with RunStore.open(run_dir) as store:
        evaluations = store.evaluations()
    seconds = float(sum(e["seconds"] or 0.0 for e in evaluations))
    picks = {}
    for which in PICKS:
        rec = result.front[lms_index(rows, which, objectives)]
        picks[which] = {"genome": tuple(int(v) for v in rec["genome"]), "key": rec["key"],
                        "objectives": dict(zip(objectives, rec["objectives"], strict=True)),
                        "search_madds_m": rec["madds_m"]}
    recorded = [(e.get("extra") or {}).get("device") for e in evaluations]
    return {"run_dir": str(run_dir), "objectives": objectives, "evaluations": len(evaluations),
            "front_size": len(result.front), "seconds": seconds,
            "cost_hours": seconds / 3600.0,
            "cost_unit": cost_unit(recorded, config["rwe"].get("device", "auto")),
            "devices": sorted({str(d) for d in recorded if d}),
            "algorithm": config["algorithm"], "picks": picks}


def cost_unit(recorded: Sequence[str | None], device: str = "auto") -> str:
    """The unit of a search's cost, from the devices its evaluations recorded (``cpu``,
    ``cuda:<GPU name>``): ``GPU-hours``, ``CPU-hours``, or ``CPU+GPU-hours`` for a run resumed
    on another kind of machine. Evaluations from before they recorded it (``None``) are taken
    to have run on ``device`` as it resolves here."""
    from rwenas.device import resolve_device

    kinds = {str(d).split(":")[0] if d else resolve_device(device).type for d in recorded}
    gpu, other = "cuda" in kinds, bool(kinds - {"cuda"})
    return "CPU+GPU-hours" if gpu and other else "GPU-hours" if gpu else "CPU-hours"


def copy_searches(out_dir: Path, settings: TableSettings, source: str | Path, *,
                  write: bool = True) -> dict[str, dict[str, Any]]:
    """Copy the search stores of the table in ``source`` into ``out_dir`` where this table has
    none yet (a table at another training budget shares the searches: they depend on the
    search settings only, which must be this table's, else :class:`ConfigError` before
    anything is copied). A copied search resumes here; one that was finished is replayed.
    Returns ``{row: {"dir", "evaluations"}}`` of the copies (``write=False``: checks and
    returns them, copying nothing)."""
    import sqlite3

    from rwenas.search.store import DB_NAME, RunStore

    src = Path(source)
    if not src.is_dir():
        raise ConfigError(f"--searches-from {source}: no such directory")
    if not any((src / sub / DB_NAME).is_file() for sub in SEARCH_DIRS.values()):
        raise ConfigError(f"--searches-from {source}: no table searches there "
                          f"({', '.join(SEARCH_DIRS.values())})")
    copied = {}
    with tempfile.TemporaryDirectory() as tmp:
        staged = []
        for row, sub in SEARCH_DIRS.items():
            if (out_dir / sub / DB_NAME).is_file() or not (src / sub / DB_NAME).is_file():
                continue
            # Read a copy: opening the source's store would switch it to WAL mode, i.e. write
            # to another table's (possibly committed) database.
            copy = Path(tmp) / sub
            copy.mkdir()
            a = sqlite3.connect(f"file:{src / sub / DB_NAME}?mode=ro", uri=True)
            b = sqlite3.connect(copy / DB_NAME)
            try:
                a.backup(b)
            finally:
                b.close()
                a.close()
            with RunStore.open(copy) as store:
                config, n = store.config, store.count_evaluations()
            want = json.loads(json.dumps(settings.search_config(row)))
            changed = [k for k in want if config.get(k) != want[k]]
            if changed:
                raise ConfigError(f"the {row} search in {src / sub} was made with other search "
                                  f"settings (changed: {', '.join(changed)}); it cannot be "
                                  "this table's")
            staged.append((row, sub, n, copy / DB_NAME))
        for row, sub, n, db in staged:
            copied[row] = {"dir": str(src / sub), "evaluations": n}
            if write:
                (out_dir / sub).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(db, out_dir / sub / (DB_NAME + ".tmp"))
                os.replace(out_dir / sub / (DB_NAME + ".tmp"), out_dir / sub / DB_NAME)
    return copied


# -- row 3: random architectures matched in MAdds ---------------------------------------------
def arch_madds(space: Any, budget: BenchBudget, data_shape: tuple[int, int, int],
               num_classes: int, *, genome: Sequence[int] | None = None,
               genotype: Any = None) -> float:
    """MAdds (M) of an architecture's network at ``budget`` (what its training reports)."""
    from rwenas.complexity import count_madds
    from rwenas.estimators.base import build_network as seeded

    # seeded in a forked RNG: counting leaves torch's global random state alone
    net = seeded(lambda: budget_network(space, budget, in_channels=data_shape[0],
                                        num_classes=num_classes, genome=genome,
                                        genotype=genotype), 0)
    return count_madds(net, data_shape) / 1e6


def random_draw(space: Any, seed: int, pick: int, i: int) -> tuple[int, ...]:
    """Draw ``i`` for pick number ``pick`` of row 3 (seeded by all three): a random
    architecture whose operations are parameter-free (pooling, skip) with a probability that
    is itself drawn uniformly from [0, 1], convolutions otherwise — so draws cover the whole
    range of MAdds, down to the pooling-heavy cells an RWE front ends in, which uniform
    sampling practically never reaches. Spaces without an operation table sample uniformly."""
    from rwenas.study.bench import LIGHT_OPS, op_positions

    rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, 3, pick, i])
    genome = list(int(v) for v in space.sample(rng))
    ops = getattr(space, "ops", None)
    if not ops:
        return tuple(genome)
    light = [j for j, op in enumerate(ops) if op in LIGHT_OPS]
    conv = [j for j, op in enumerate(ops) if "conv" in op]
    share = rng.uniform()
    for at in op_positions(genome):
        genome[at] = int(rng.choice(light if rng.uniform() < share else conv))
    return tuple(space.validate(genome))


def matched_random(store: Any, space: Any, settings: TableSettings,
                   targets: Mapping[str, float], data_shape: tuple[int, int, int],
                   num_classes: int) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Row 3: for each pick, the first of :func:`random_draw`'s draws whose MAdds at the
    budget lies within ``settings.match_tolerance`` of the pick's target, drawing at most
    ``settings.samples``; if none does, the nearest drawn (``within`` False, said in the
    table). Returns the matches and every draw counted; both kept in the store, so a re-run
    counts nothing again."""
    cache_key = {"targets": {k: round(float(v), 9) for k, v in targets.items()},
                 "samples": settings.samples, "tolerance": settings.match_tolerance,
                 "seed": settings.seed}
    stored = store.get_state("matched_random")
    if isinstance(stored, dict) and stored.get("for") == cache_key:
        return stored["matched"], stored["draws"]
    matched: dict[str, dict[str, Any]] = {}
    draws: list[dict[str, Any]] = []
    for n, (which, target) in enumerate(targets.items()):
        def within(madds: float, target: float = target) -> bool:
            return abs(madds - target) <= settings.match_tolerance * target

        mine: list[dict[str, Any]] = []
        for i in range(settings.samples):
            genome = random_draw(space, settings.seed, n, i)
            madds = arch_madds(space, settings.budget, data_shape, num_classes, genome=genome)
            mine.append({"pick": which, "index": i, "genome": list(genome),
                         "key": space.key(genome), "madds_m": madds})
            if within(madds):
                break
        best = mine[-1] if within(mine[-1]["madds_m"]) else mine[nearest(mine, target)]
        matched[which] = {"genome": best["genome"], "key": best["key"],
                          "target_madds_m": target, "sample_madds_m": best["madds_m"],
                          "sample_index": best["index"], "draws": len(mine),
                          "within": within(best["madds_m"])}
        draws += mine
    store.set_state("matched_random", {"for": cache_key, "matched": matched, "draws": draws})
    return matched, draws


def nearest(sample: Sequence[Mapping[str, Any]], target: float) -> int:
    """Index of the sample member whose MAdds is closest to ``target`` (ties: the first)."""
    return min(range(len(sample)), key=lambda i: (abs(sample[i]["madds_m"] - target), i))


# -- bench reuse -------------------------------------------------------------------------------
class BenchLookup:
    """Trainings of a bench (and of its on-demand cache) that the table can reuse: same
    space, dataset and data (the bench's seed, which draws its sub-samples, and image size
    are the table's), same budget (wherever it ran: the device is no part of a budget), and
    a training seed that equals the table's for that architecture."""

    def __init__(self, bench_dir: str | Path, settings: TableSettings) -> None:
        from rwenas.search.store import DB_NAME
        from rwenas.study.bench import Bench

        self.benches: list[Any] = []
        self.notes: list[str] = []
        self.budget = settings.budget.to_dict()
        paths = [Path(bench_dir)]
        if (Path(bench_dir) / "on-demand" / DB_NAME).is_file():
            paths.append(Path(bench_dir) / "on-demand")
        for path in paths:
            bench = Bench.open(path)
            c = bench.config
            why = [name for name, same in (
                ("space", c.get("space") == settings.space),
                ("dataset", c.get("dataset") == settings.dataset),
                ("seed", int(c.get("seed", 0)) == settings.seed),
                ("image size", c.get("image_size") == settings.image_size),
                ("budget", same_budget(c.get("budget"), self.budget))) if not same]
            if why:
                self.notes.append(f"{path}: not shared (other {', '.join(why)})")
                bench.close()
            else:
                self.benches.append(bench)

    def find(self, arch_key: str, seed: int) -> dict[str, Any] | None:
        for bench in self.benches:
            rec = bench.store.get_evaluation(arch_key)
            if rec is None or rec["status"] != "ok":
                continue
            extra = rec["extra"] or {}
            if not same_budget(extra.get("budget", self.budget), self.budget):
                continue
            seeds = [extra.get("seed"), *(extra.get("retest_seeds") or [])]
            accs = [extra.get("test_acc"), *(extra.get("retest_acc") or [])]
            for i, (s, acc) in enumerate(zip(seeds, accs, strict=False)):
                if s is not None and int(s) == int(seed) and acc is not None:
                    return {"test_acc": float(acc), "params_m": rec["params_m"],
                            "madds_m": rec["madds_m"], "device": training_device(extra),
                            # the bench keeps the time of its first training only
                            "seconds": rec["seconds"] if i == 0 else None,
                            "bench_dir": str(bench.store.run_dir)}
        return None

    def close(self) -> None:
        for bench in self.benches:
            bench.close()


# -- the whole table ---------------------------------------------------------------------------
def _environment(settings: TableSettings, searches: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from rwenas.device import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    train_device = resolve_device(settings.budget.device)
    env = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
           "python": platform.python_version(), "threads": torch.get_num_threads(),
           "training_device": train_device.type,
           "search_cost_unit": next(iter(searches.values()))["cost_unit"] if searches
           else "CPU-hours"}
    # the GPU's name as the searches recorded it (they may have run on another machine),
    # else this machine's where the trainings run on it
    recorded = [d.split(":", 1)[1] for s in searches.values() for d in s.get("devices", ())
                if d.startswith("cuda:")]
    if recorded:
        env["gpu"] = recorded[0]
    elif train_device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(train_device)
    return env


def plan_entries(settings: TableSettings, searches: Mapping[str, Any],
                 matched: Mapping[str, Mapping[str, Any]]) -> list[Entry]:
    """The table's lines in order: row 1, 2, 3, 4, 5."""
    from rwenas.build import resolve_architecture
    from rwenas.spaces import get_space

    space = get_space(settings.space)
    entries: list[Entry] = []
    for row in ROWS:
        if row in SEARCH_DIRS:
            for which in PICKS:
                p = searches[row]["picks"][which]
                entries.append(Entry(row, which, p["key"], p["genome"], None,
                                     {"search_objectives": p["objectives"],
                                      "search_madds_m": p["search_madds_m"]}))
        elif row == "random_matched":
            for which in PICKS:
                m = matched[which]
                entries.append(Entry(row, which, m["key"], tuple(m["genome"]), None,
                                     {k: m[k] for k in ("target_madds_m", "sample_madds_m",
                                                        "sample_index", "draws", "within")}))
        else:
            for name in settings.published_names:
                arch = resolve_architecture(space, arch=name)
                key = space.key(arch.genome) if arch.genome is not None else f"published:{name}"
                entries.append(Entry(row, name, key, arch.genome,
                                     arch.genotype if arch.genome is None else None))
    return entries


def build_table(out_dir: str | Path, settings: TableSettings | None = None, *,
                bench: str | Path | None = None, force: bool = False, progress: bool = True,
                stop_after: int | None = None,
                on_training: Callable[[dict[str, Any]], None] | None = None,
                workers: int = 1, threads: int | None = None,
                time_limit: float | None = None,
                searches_from: str | Path | None = None) -> dict[str, Any]:
    """Build (or continue) the table in ``out_dir`` and write ``table.md``, ``table.csv``,
    ``table.json`` and ``table.png`` there once every training is done.

    Each search runs in its own sub-directory (``search-rwe``, ``search-random``,
    ``search-proxy``) and resumes there; every finished training is committed to
    ``out_dir/run.db`` at once. ``bench``: a bench directory whose trainings of the same
    key, budget, data and seed are reused. ``stop_after``: train at most this many now (the
    table is written only when nothing is left). ``on_training(record)`` is called after each
    committed training (an exception there, e.g. KeyboardInterrupt, stops the build with every
    finished training kept). ``workers``: trainings run in that many spawned processes
    (``threads`` torch threads each; default the cores shared out), with the same results as
    in one (each training is seeded on its own). ``time_limit``: seconds after which no
    training starts (running ones finish and are kept). Returns the table (``complete``
    False while trainings remain). ``searches_from``: another table's directory whose
    searches this one starts from (:func:`copy_searches`).
    """
    from tqdm.auto import tqdm

    from rwenas.data import load_dataset
    from rwenas.fit.loop import TrainData
    from rwenas.spaces import get_space
    from rwenas.study import table_outputs

    settings = settings or TableSettings()
    out = Path(out_dir)
    # every input is checked before anything is written
    space = get_space(settings.space)
    for row in SEARCH_DIRS:
        settings.search_config(row)
    budget = settings.budget
    ds = load_dataset(settings.dataset, settings.data_dir, image_size=settings.image_size,
                      seed=settings.seed)
    data = TrainData.from_dataset(ds, train_size=budget.train_size, test_size=budget.test_size,
                                  seed=settings.seed)
    shape = (data.in_channels, data.image_size, data.image_size)
    if searches_from is not None:
        copy_searches(out, settings, searches_from, write=False)  # checked before writing
    lookup = BenchLookup(bench, settings) if bench is not None else None
    try:
        store = open_table_store(out, settings, force)
    except BaseException:
        if lookup is not None:
            lookup.close()
        raise
    t0 = time.perf_counter()
    wall0 = float(store.get_state("wall_seconds", 0.0) or 0.0)

    def tick() -> None:  # wall time over every session, kept as the build goes
        store.set_state("wall_seconds", wall0 + time.perf_counter() - t0)

    try:
        store.set_state("sessions", int(store.get_state("sessions", 0) or 0) + 1)
        if searches_from is not None:
            copied = copy_searches(out, settings, searches_from)
            if copied:
                store.set_state("searches_from",
                                {**(store.get_state("searches_from") or {}), **copied})
        searches = {}
        for row in SEARCH_DIRS:
            searches[row] = run_row_search(out, settings, row, progress)
            tick()
        targets = {which: arch_madds(space, budget, shape, data.num_classes,
                                     genome=searches["rwe"]["picks"][which]["genome"])
                   for which in PICKS}
        matched, sample = matched_random(store, space, settings, targets, shape,
                                         data.num_classes)
        entries = plan_entries(settings, searches, matched)
        jobs: dict[str, tuple[Entry, int, int]] = {}
        for e in entries:
            for i in range(settings.seeds):
                seed = arch_seed(settings.seed, e.key, i)
                jobs.setdefault(training_key(e.key, seed, budget), (e, i, seed))
        todo = [k for k in jobs if store.get_evaluation(k) is None]
        store.set_state("trainings_planned", len(jobs))
        trained = reused = 0
        deadline = None if time_limit is None else time.monotonic() + float(time_limit)
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="training",
                   desc="table", disable=not progress, dynamic_ncols=True)

        def commit(tkey: str, found: Mapping[str, Any], source: str) -> None:
            e, i, seed = jobs[tkey]
            extra = {"arch_key": e.key, "seed": seed, "seed_index": i,
                     "test_acc": float(found["test_acc"]), "budget": budget.to_dict(),
                     "source": source, "bench_dir": found.get("bench_dir"),
                     "device": found.get("device")}
            store.add_evaluation(
                tkey, list(e.genome or ()), objectives=[1.0 - extra["test_acc"]],
                generation=0, status="ok",
                genotype=space.genotype_to_json(e.genotype if e.genome is None
                                                else space.decode(e.genome)),
                params_m=found["params_m"], madds_m=found["madds_m"],
                seconds=found.get("seconds"), extra=extra)
            tick()
            bar.update(1)
            bar.set_postfix(row=e.row, pick=e.pick, test_acc=f"{extra['test_acc']:.4f}")
            if on_training is not None:
                on_training({"key": tkey, **extra})

        try:
            to_train = []
            for tkey in todo:  # the bench's trainings first: nothing to wait for
                e, _i, seed = jobs[tkey]
                found = lookup.find(e.key, seed) if lookup is not None else None
                if found is None:
                    to_train.append(tkey)
                else:
                    reused += 1
                    commit(tkey, found, "bench")
            if stop_after is not None:
                to_train = to_train[:stop_after]
            from rwenas.study.bench import BenchContext, LoadedContext, run_indexed

            context = BenchContext(settings.space, settings.dataset, settings.data_dir,
                                   budget.to_dict(), settings.seed, settings.image_size)
            work = []
            for tkey in to_train:
                e, _i, seed = jobs[tkey]
                work.append((e.genome, (seed,)) if e.genome is not None
                            else (None, (seed,), e.genotype))
            # one process trains with the data loaded here; workers load their own
            for n, _job, outcome in run_indexed(context, work, workers=workers,
                                                threads=threads, deadline=deadline,
                                                loaded=LoadedContext(space, data, budget)):
                trained += 1
                commit(to_train[n], outcome["runs"][0], "trained")
        finally:
            bar.close()
        missing = [k for k in jobs if store.get_evaluation(k) is None]
        tick()
        result: dict[str, Any] = {"complete": not missing, "remaining": len(missing),
                                  "trained": trained, "reused": reused, "out_dir": str(out)}
        if missing:
            return result
        table = summarise(settings, entries, searches, jobs, store)
        table["environment"] = {**_environment(settings, searches),
                                "wall_seconds": float(store.get_state("wall_seconds")),
                                "sessions": int(store.get_state("sessions"))}
        table["data"] = {**data.describe(), "search_train_size": settings.search_train_size,
                         "search_val_size": settings.search_val_size}
        table["bench"] = {"dir": None if bench is None else str(bench),
                          "notes": lookup.notes if lookup is not None else [],
                          "reused": sum(1 for k in jobs
                                        if store.get_evaluation(k)["extra"]["source"] == "bench")}
        table["random_sample"] = sample
        table["searches_from"] = store.get_state("searches_from") or {}
        result.update(table)
        result["files"] = {k: str(v) for k, v in table_outputs.write_table(result, out).items()}
        return result
    finally:
        if lookup is not None:
            lookup.close()
        store.close()


# -- numbers -----------------------------------------------------------------------------------
def seed_stats(errors: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of the per-seed test errors."""
    a = np.asarray(errors, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else math.nan)


def front_hypervolume(points: Sequence[tuple[float, float]], ref: Sequence[float]) -> float:
    """Hypervolume of the trained front of ``points`` ((test error, MAdds)) up to ``ref``."""
    from rwenas.search.front import hypervolume

    return hypervolume(np.asarray(points, dtype=float).reshape(-1, 2), ref)


def summarise(settings: TableSettings, entries: Sequence[Entry], searches: Mapping[str, Any],
              jobs: Mapping[str, tuple[Entry, int, int]], store: Any) -> dict[str, Any]:
    """Per-line numbers, per-row cost and hypervolume, and the three goal checks."""
    from rwenas.search.front import non_dominated
    from rwenas.spaces import format_genome

    by_arch: dict[str, list[dict[str, Any]]] = {}
    for tkey, (e, i, _seed) in jobs.items():
        rec = store.get_evaluation(tkey)
        by_arch.setdefault(e.key, []).append({**rec, "seed_index": i})
    lines = []
    first_of: dict[tuple[str, str], str] = {}
    for e in entries:
        recs = sorted(by_arch[e.key], key=lambda r: r["seed_index"])
        errors = [1.0 - float(r["extra"]["test_acc"]) for r in recs]
        mean, std = seed_stats(errors)
        same_as = first_of.setdefault((e.row, e.key), e.pick)
        lines.append({
            "row": e.row, "row_number": ROWS.index(e.row) + 1,
            "row_title": settings.row_title(e.row), "pick": e.pick,
            "same_as": same_as if same_as != e.pick else None, "key": e.key,
            "genome": format_genome(e.genome) if e.genome is not None else None,
            "errors": errors, "seeds": [int(r["extra"]["seed"]) for r in recs],
            "sources": [r["extra"]["source"] for r in recs],
            "error_mean": mean, "error_std": std,
            "params_m": float(recs[0]["params_m"]), "madds_m": float(recs[0]["madds_m"]),
            **e.info})
    ref = [1.0, 1.1 * max(line["madds_m"] for line in lines)]
    rows: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        mine = [line for line in lines if line["row"] == row]
        if not mine:
            continue
        info: dict[str, Any] = {"title": settings.row_title(row), "searched": row in SEARCH_DIRS}
        if row in SEARCH_DIRS:
            s = searches[row]
            unique: dict[str, Mapping[str, Any]] = {}
            for line in mine:  # an architecture picked twice (L = M) is one point
                unique.setdefault(line["key"], line)
            pts = np.array([(u["error_mean"], u["madds_m"]) for u in unique.values()])
            front = [list(unique.values())[j]["pick"] for j in sorted(non_dominated(pts))]
            info.update(cost_hours=s["cost_hours"], cost_unit=s["cost_unit"],
                        seconds=s["seconds"], evaluations=s["evaluations"],
                        front_size=s["front_size"], algorithm=s["algorithm"],
                        objectives=s["objectives"], run_dir=s["run_dir"],
                        hypervolume=front_hypervolume(pts, ref), trained_front=front)
        else:
            info.update(cost_hours=0.0, seconds=0.0, evaluations=0, hypervolume=None)
        rows[row] = info
    return {"settings": settings.to_config(), "lines": lines, "rows": rows,
            "reference_point": ref, "checks": goal_checks(lines, rows)}


def _line(lines: Sequence[Mapping[str, Any]], row: str, pick: str) -> Mapping[str, Any] | None:
    return next((x for x in lines if x["row"] == row and x["pick"] == pick), None)


def goal_checks(lines: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """The issue's three goals, each decided from the numbers: ``passed`` True/False (or
    ``None`` when the table lacks what it needs) and a sentence with the numbers."""
    def pct(v: float) -> str:
        return f"{100 * v:.2f} %"

    checks = []
    rwe_l, rand_l = _line(lines, "rwe", "L"), _line(lines, "random_matched", "L")
    assert rwe_l is not None and rand_l is not None
    gap = rand_l["error_mean"] - rwe_l["error_mean"]
    spread = max(rwe_l["error_std"], rand_l["error_std"])
    checks.append({"name": "a", "passed": bool(gap > spread), "text": (
        f"RWE's L ({pct(rwe_l['error_mean'])} ± {pct(rwe_l['error_std'])}, "
        f"{rwe_l['madds_m']:.3g} M MAdds) against the random architecture of matched MAdds "
        f"({pct(rand_l['error_mean'])} ± {pct(rand_l['error_std'])}, "
        f"{rand_l['madds_m']:.3g} M): better by {100 * gap:.2f} points, seed-to-seed spread "
        f"(the larger std) {100 * spread:.2f} points")})
    hv_rwe, hv_rand = rows["rwe"]["hypervolume"], rows["random_search"]["hypervolume"]
    checks.append({"name": "b", "passed": bool(hv_rwe > hv_rand), "text": (
        f"hypervolume of the trained front: RWE + NSGA-II {hv_rwe:.4g} against random "
        f"search {hv_rand:.4g} (difference {hv_rwe - hv_rand:+.4g})")})
    published = [x for x in lines if x["row"] == "published"]
    if not published:
        checks.append({"name": "c", "passed": None,
                       "text": "no published cells in this table: not evaluated"})
    else:
        parts, ok = [], True
        for p in published:
            good = rwe_l["error_mean"] <= p["error_mean"] and rwe_l["madds_m"] < p["madds_m"]
            ok = ok and good
            parts.append(f"{p['pick']} {pct(p['error_mean'])} at {p['madds_m']:.3g} M "
                         f"({'yes' if good else 'no'})")
        checks.append({"name": "c", "passed": ok, "text": (
            f"RWE's L ({pct(rwe_l['error_mean'])} at {rwe_l['madds_m']:.3g} M MAdds) has a "
            "mean error at most each published cell's with fewer MAdds: " + "; ".join(parts))})
    return checks
