"""rwenas study table: rows, matched MAdds, statistics, costs, hypervolume, resume, bench reuse
and the command line, on tiny synthetic settings (8-pixel images, 3-cell networks at C=4)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rwenas import cli
from rwenas.errors import ConfigError
from rwenas.search.store import RunStore
from rwenas.spaces import canonical_genome, get_space
from rwenas.study.bench import BenchBudget, arch_seed, bench_config
from rwenas.study.table import (
    PUBLISHED,
    TableSettings,
    build_table,
    cost_unit,
    matched_random,
    random_draw,
)

BUDGET = BenchBudget(channels=4, layers=3, epochs=1, train_size=128)
SETTINGS = TableSettings(dataset="synthetic", image_size=8, pop_size=4, generations=2,
                         search_train_size=100, search_val_size=50,
                         search_network={"channels": 4, "layers": 3},
                         rwe={"epochs": 2, "folds": 1}, samples=30, budget=BUDGET)
ARGV = ["--dataset", "synthetic", "--image-size", "8", "--pop-size", "4", "--generations", "2",
        "--search-train-size", "100", "--search-val-size", "50", "--search-channels", "4",
        "--search-layers", "3", "--rwe-epochs", "2", "--rwe-folds", "1", "--samples", "30",
        "--channels", "4", "--layers", "3", "--epochs", "1", "--train-size", "128", "--quiet"]
SEARCHES = {"rwe": "search-rwe", "random_search": "search-random", "proxy": "search-proxy"}


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One uninterrupted table, made by the command line (the end-to-end run)."""
    out = tmp_path_factory.mktemp("table") / "t"
    rc, stdout, err = _cli(["study", "table", "--out", str(out), *ARGV])
    assert rc == 0, err
    return out, stdout, json.loads((out / "table.json").read_text())


def _line(table, row, pick):
    return next(x for x in table["lines"] if x["row"] == row and x["pick"] == pick)


def _csv(path: Path, drop=("search_cost_hours",)):
    with path.open() as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _trainings(out: Path) -> dict[tuple[str, int], dict]:
    with RunStore.open(out) as store:
        return {(r["extra"]["arch_key"], r["extra"]["seed"]): r for r in store.evaluations()}


def test_cli_end_to_end_writes_every_file(full):
    out, stdout, table = full
    assert stdout.startswith("# Table 1, measured: synthetic (micro space)")
    md = (out / "table.md").read_text()
    assert stdout.strip() == md.strip()
    for needle in ("**Ran on** synthetic", "**Machine**", "**Wall time**", "2 seeds each",
                   "## Goal checks", "(a) ", "(b) ", "(c) ", "no search", "not counted",
                   "reference point (error 1,"):
        assert needle in md
    assert sum(f"**({c}) PASS**" in md or f"**({c}) FAIL**" in md for c in "abc") == 3
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _csv(out / "table.csv", drop=())
    assert len(rows) == 3 * 4 + len(PUBLISHED) == len(table["lines"])
    assert all((out / d / "run.db").is_file() for d in SEARCHES.values())
    assert table["environment"]["training_device"] == "cpu"
    assert table["data"]["test_images"] == 500  # the whole synthetic test set


def _hand_pick(rows, which, objective):
    """L/M/S of a front.json by hand: L lowest error (RWE, or the search's first objective),
    S fewest MAdds, M the middle by MAdds."""
    if which == "L":
        return min(rows, key=lambda r: (r["objectives"][objective], r["madds_m"]))
    by_madds = sorted(rows, key=lambda r: r["madds_m"])
    return by_madds[0] if which == "S" else by_madds[len(by_madds) // 2]


def test_rows_hold_the_right_architectures(full):
    from rwenas.build import resolve_architecture

    out, _, table = full
    assert [x["row"] for x in table["lines"]] == (
        ["rwe"] * 3 + ["random_search"] * 3 + ["random_matched"] * 3 + ["proxy"] * 3
        + ["published"] * len(PUBLISHED))
    for row, objective in (("rwe", "rwe"), ("random_search", "rwe"), ("proxy", "jacob_cov")):
        run = out / SEARCHES[row]
        config = json.loads((run / "config.json").read_text())
        front = json.loads((run / "front.json").read_text())
        assert config["pop_size"] == 4 and config["generations"] == 2
        assert config["algorithm"] == ("random" if row == "random_search" else "nsga2")
        assert config["objectives"] == [objective, "madds"]
        for which in "LMS":
            assert _line(table, row, which)["key"] == _hand_pick(front, which, objective)["key"]
    # the same number of evaluations: random search asks 4 new architectures a generation,
    # NSGA-II at most that many (a duplicate is a cache hit)
    assert table["rows"]["random_search"]["evaluations"] == 8
    assert 4 < table["rows"]["rwe"]["evaluations"] <= 8
    space = get_space("micro")
    for name in PUBLISHED:
        arch = resolve_architecture(space, arch=name)
        key = space.key(arch.genome) if arch.genome is not None else f"published:{name}"
        assert _line(table, "published", name)["key"] == key
    assert _line(table, "published", "DARTS")["genome"] is None  # DARTS has no genome here


def _madds_by_hand(space, genome, data):
    from rwenas.build import build_network
    from rwenas.complexity import count_madds

    shape = (data["in_channels"], data["image_size"], data["image_size"])
    net = build_network(space, canonical_genome(space, tuple(genome)), in_channels=shape[0],
                        num_classes=data["num_classes"], setting="search", channels=4,
                        layers=3, auxiliary=False, drop_path=0.0)
    return count_madds(net, shape) / 1e6


def test_matched_madds_are_the_first_draw_within_tolerance(full):
    _, _, table = full
    space = get_space("micro")
    draws = table["random_sample"]
    for n, which in enumerate("LMS"):
        target = _line(table, "rwe", which)["madds_m"]  # what the training measured
        matched = _line(table, "random_matched", which)
        assert matched["target_madds_m"] == pytest.approx(target)
        mine = [d for d in draws if d["pick"] == which]
        assert [d["index"] for d in mine] == list(range(len(mine)))
        for d in mine:  # by hand: the same seeded draws, their networks counted again
            assert tuple(d["genome"]) == random_draw(space, 0, n, d["index"])
            assert d["madds_m"] == pytest.approx(_madds_by_hand(space, d["genome"],
                                                                table["data"]))
        inside = [d for d in mine if abs(d["madds_m"] - target) <= 0.05 * target]
        if inside:  # drawing stops at the first match
            assert matched["within"] and inside == [mine[-1]]
            assert matched["sample_index"] == mine[-1]["index"]
        else:  # none within: all drawn, the nearest taken, and flagged
            assert not matched["within"] and len(mine) == SETTINGS.samples
            best = min(mine, key=lambda d: (abs(d["madds_m"] - target), d["index"]))
            assert matched["sample_index"] == best["index"]
        assert matched["key"] == mine[matched["sample_index"]]["key"]
        assert matched["madds_m"] == pytest.approx(matched["sample_madds_m"])  # trained it
    assert any(_line(table, "random_matched", w)["within"] for w in "LMS")


def test_random_draws_span_pooling_heavy_to_convolution_heavy_cells():
    space = get_space("micro")
    light = {i for i, op in enumerate(space.ops) if op in ("max_pool_3x3", "avg_pool_3x3",
                                                            "skip_connect")}
    shares = []
    for i in range(60):
        genome = random_draw(space, 0, 0, i)
        assert random_draw(space, 0, 0, i) == genome  # seeded
        ops = [genome[p] for q in range(0, len(genome), 4) for p in (q, q + 2)]
        shares.append(sum(op in light for op in ops) / len(ops))
    assert min(shares) < 0.15 and max(shares) > 0.85  # uniform sampling: ~1/3 ± 0.1
    assert random_draw(space, 1, 0, 0) != random_draw(space, 0, 0, 0)
    assert random_draw(space, 0, 1, 0) != random_draw(space, 0, 0, 0)


class _State:
    def __init__(self):
        self.state = {}

    def get_state(self, key):
        return self.state.get(key)

    def set_state(self, key, value):
        self.state[key] = value


def test_matched_random_hits_low_targets_is_seeded_and_kept(monkeypatch):
    import rwenas.study.table as table_module

    space = get_space("micro")
    settings = TableSettings(budget=BenchBudget(channels=4, layers=3), samples=200)
    data = {"in_channels": 1, "image_size": 8, "num_classes": 10}
    low = min(_madds_by_hand(space, random_draw(space, 0, 0, i), data) for i in range(20))
    targets = {"L": 1.4 * low, "S": 1.02 * low}  # near the cheapest of 20 draws
    store = _State()
    matched, draws = matched_random(store, space, settings, targets, (1, 8, 8), 10)
    for which, target in targets.items():
        assert matched[which]["within"]
        assert abs(matched[which]["sample_madds_m"] - target) <= 0.05 * target
    again, _ = matched_random(_State(), space, settings, targets, (1, 8, 8), 10)
    assert again == matched  # same seed, same draws
    calls = []
    monkeypatch.setattr(table_module, "arch_madds", lambda *a, **k: calls.append(1) or 1.0)
    kept, kept_draws = matched_random(store, space, settings, targets, (1, 8, 8), 10)
    assert (kept, kept_draws) == (matched, draws) and not calls  # nothing counted again
    tight = TableSettings(budget=settings.budget, samples=5, match_tolerance=0.0)
    flagged, few = matched_random(_State(), space, tight, {"L": 0.5 * low}, (1, 8, 8), 10)
    assert not flagged["L"]["within"] and len(few) == 5 and flagged["L"]["draws"] == 5


def test_mean_std_and_search_cost_from_the_stores(full):
    out, _, table = full
    trainings = _trainings(out)
    assert len(trainings) == 2 * len({x["key"] for x in table["lines"]})
    csv_rows = _csv(out / "table.csv", drop=())
    for line, row in zip(table["lines"], csv_rows, strict=True):
        accs = [trainings[(line["key"], s)]["extra"]["test_acc"] for s in line["seeds"]]
        assert line["seeds"] == [arch_seed(0, line["key"], i) for i in range(2)]
        assert line["errors"] == pytest.approx([1 - a for a in accs])
        assert line["error_mean"] == pytest.approx(np.mean(line["errors"]))
        assert line["error_std"] == pytest.approx(np.std(line["errors"], ddof=1))
        assert float(row["test_error_mean"]) == pytest.approx(line["error_mean"], abs=1e-6)
        assert float(row["test_error_std"]) == pytest.approx(line["error_std"], abs=1e-6)
        assert line["sources"] == ["trained", "trained"]
    for row, run in SEARCHES.items():
        with RunStore.open(out / run) as store:
            seconds = sum(e["seconds"] or 0.0 for e in store.evaluations())
        assert seconds > 0
        assert table["rows"][row]["cost_hours"] == pytest.approx(seconds / 3600)
        assert table["rows"][row]["cost_unit"] == "CPU-hours"
        with RunStore.open(out / run) as store:  # each evaluation records where it ran
            assert {e["extra"]["device"] for e in store.evaluations()} == {"cpu"}
    for row in ("random_matched", "published"):
        assert table["rows"][row]["cost_hours"] == 0.0
        assert table["rows"][row]["hypervolume"] is None
    assert {r["search_cost_hours"] for r in csv_rows if r["row"] == "published"} == {"0.000000"}


def _hv_by_hand(points, ref):
    """2-D hypervolume: the non-dominated points sorted by MAdds (error falling), each
    dominating the strip up to the next point's MAdds."""
    nd = [p for p in points if not any(q != p and q[0] <= p[0] and q[1] <= p[1]
                                       for q in points)]
    nd = sorted(set(nd), key=lambda p: p[1])
    total = 0.0
    for i, (err, madds) in enumerate(nd):
        right = nd[i + 1][1] if i + 1 < len(nd) else ref[1]
        total += (right - madds) * (ref[0] - err)
    return total


def test_hypervolume_and_goal_checks_by_hand(full):
    _, _, table = full
    lines = table["lines"]
    ref = [1.0, 1.1 * max(x["madds_m"] for x in lines)]
    assert table["reference_point"] == pytest.approx(ref)
    hv = {}
    for row in SEARCHES:
        pts = [(x["error_mean"], x["madds_m"]) for x in lines if x["row"] == row]
        hv[row] = _hv_by_hand(pts, ref)
        assert table["rows"][row]["hypervolume"] == pytest.approx(hv[row])
    checks = {c["name"]: c for c in table["checks"]}
    rwe_l, rand_l = _line(table, "rwe", "L"), _line(table, "random_matched", "L")
    gap = rand_l["error_mean"] - rwe_l["error_mean"]
    assert checks["a"]["passed"] == (gap > max(rwe_l["error_std"], rand_l["error_std"]))
    assert checks["b"]["passed"] == (hv["rwe"] > hv["random_search"])
    assert checks["c"]["passed"] == all(
        rwe_l["error_mean"] <= p["error_mean"] and rwe_l["madds_m"] < p["madds_m"]
        for p in lines if p["row"] == "published")
    assert f"{100 * gap:.2f} points" in checks["a"]["text"]


def test_resume_trains_nothing_twice_and_ends_with_the_same_table(tmp_path, monkeypatch,
                                                                  full):
    import rwenas.study.bench as bench_mod  # where the table's trainings run

    calls = []
    real = bench_mod.train_architecture

    def counting(space, genome, data, budget, seed, **kwargs):
        calls.append((genome, kwargs.get("genotype"), seed))
        return real(space, genome, data, budget, seed, **kwargs)

    monkeypatch.setattr(bench_mod, "train_architecture", counting)
    # the fixture's searches (replayed from their stores), none of its trainings
    out = tmp_path / "t"
    shutil.copytree(full[0], out)
    _forget(out, None)
    for f in out.glob("table.*"):
        f.unlink()
    done = []

    def interrupt(record):
        done.append(record["key"])
        if len(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_table(out, SETTINGS, progress=False, on_training=interrupt)
    assert len(calls) == 5 and len(_trainings(out)) == 5  # each kept as it finished
    partial = build_table(out, SETTINGS, progress=False, stop_after=3)
    assert not partial["complete"] and partial["trained"] == 3
    assert not (out / "table.md").exists()  # written only when nothing is left
    final = build_table(out, SETTINGS, progress=False)
    assert final["complete"] and final["remaining"] == 0
    seeds = [c[2] for c in calls]
    assert len(seeds) == len(set(seeds)) == len(_trainings(out))  # nothing trained twice
    calls.clear()
    assert build_table(out, SETTINGS, progress=False)["trained"] == 0 and not calls
    reference = full[0]
    assert _csv(out / "table.csv") == _csv(reference / "table.csv")
    assert final["reference_point"] == full[2]["reference_point"]
    assert [c["passed"] for c in final["checks"]] == [c["passed"] for c in full[2]["checks"]]


def _bench(path: Path, budget: BenchBudget, key: str, accs: tuple[float, float]) -> None:
    """A bench holding one architecture trained with the table's two seeds."""
    config = bench_config("micro", "synthetic", budget, seed=0, image_size=8)
    with RunStore.create(path, config) as store:
        store.add_evaluation(key, [], objectives=[1 - accs[0]], generation=0, status="ok",
                             params_m=0.01, madds_m=0.2, seconds=12.0,
                             extra={"test_acc": accs[0], "seed": arch_seed(0, key, 0),
                                    "budget": budget.to_dict(), "kind": "uniform",
                                    "retest_acc": [accs[1]],
                                    "retest_seeds": [arch_seed(0, key, 1)]})


def _forget(out: Path, arch_key: str | None) -> None:
    """Delete the table's trainings of ``arch_key`` (``None``: all of them)."""
    prefix = "" if arch_key is None else arch_key + "|"
    db = sqlite3.connect(out / "run.db")
    with db:
        db.execute("DELETE FROM evaluations WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
    db.close()


def test_trainings_of_a_bench_are_reused(tmp_path, monkeypatch, full):
    import rwenas.study.bench as bench_mod  # where the table's trainings run

    calls = []
    real = bench_mod.train_architecture
    monkeypatch.setattr(bench_mod, "train_architecture",
                        lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    out = tmp_path / "t"
    shutil.copytree(full[0], out)
    key = _line(full[2], "rwe", "L")["key"]
    other = BenchBudget(channels=5, layers=3, epochs=1, train_size=128)
    _bench(tmp_path / "other", other, key, (0.4321, 0.3456))
    _bench(tmp_path / "bench", BUDGET, key, (0.4321, 0.3456))

    _forget(out, key)  # another budget: nothing shared, so it is trained
    result = build_table(out, SETTINGS, bench=tmp_path / "other", progress=False)
    assert len(calls) == 2 and result["bench"]["reused"] == 0
    assert "not shared (other budget)" in (out / "table.md").read_text()

    _forget(out, key)
    calls.clear()
    result = build_table(out, SETTINGS, bench=tmp_path / "bench", progress=False)
    assert calls == [] and result["bench"]["reused"] == 2
    line = _line(result, "rwe", "L")
    assert line["errors"] == pytest.approx([1 - 0.4321, 1 - 0.3456])
    assert line["sources"] == ["bench", "bench"]
    assert "2 from the bench" in (out / "table.md").read_text()


def test_changed_settings_are_refused(full):
    from dataclasses import replace

    with pytest.raises(ConfigError, match="changed: pop_size"):
        build_table(full[0], replace(SETTINGS, pop_size=6), progress=False)
    foreign = full[0].parent / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no rwenas table"):
        build_table(foreign, SETTINGS, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "1"], "seeds must be an integer in [2, "),
    (["--proxy", "nope"], "unknown proxy 'nope'"),
    (["--published", "DARTS,Foo"], "Foo"),
    (["--pop-size", "1"], "pop_size"),
    (["--budget", "/nonexistent/budget.json"], "budget file not found"),
    (["--channels", "0"], "channels"),
    (["--bench", "/nonexistent/bench"], "does not exist"),
    (["--dataset", "nope"], "nope"),
])
def test_cli_bad_input_is_one_line(extra, message, tmp_path):
    out = tmp_path / "t"
    rc, _, err = _cli(["study", "table", "--out", str(out), *ARGV, *extra])
    assert rc == 2
    assert err.startswith("rwenas: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_budget_file_and_flags(tmp_path):
    from rwenas.cli import build_parser
    from rwenas.cli.study import _table_budget

    f = tmp_path / "budget.toml"
    f.write_text("channels = 16\nepochs = 5\nlr = 0.1\n")
    args = build_parser().parse_args(["study", "table", "--out", "x", "--budget", str(f),
                                      "--epochs", "7"])
    assert _table_budget(args) == BenchBudget(channels=16, epochs=7, lr=0.1)
    f.write_text("chanels = 16\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        _table_budget(args)


def test_two_workers_train_the_same_table_as_one(tmp_path, full):
    """The trainings in two spawned processes give the very same errors as the fixture's in
    this one (each training is seeded on its own; one thread each, as here)."""
    out = tmp_path / "t"
    shutil.copytree(full[0], out)
    _forget(out, None)
    for f in out.glob("table.*"):
        f.unlink()
    # a time limit already spent starts no training, in one process or in two
    for workers in (1, 2):
        stopped = build_table(out, SETTINGS, progress=False, workers=workers, time_limit=1e-9)
        assert not stopped["complete"] and stopped["trained"] == 0
    assert not _trainings(out)
    result = build_table(out, SETTINGS, progress=False, workers=2, threads=1)
    assert result["complete"] and result["trained"] == len(_trainings(full[0]))
    assert _csv(out / "table.csv") == _csv(full[0] / "table.csv")
    for key, rec in _trainings(out).items():
        assert rec["extra"]["test_acc"] == _trainings(full[0])[key]["extra"]["test_acc"]
        assert rec["extra"]["device"] == "cpu"


def test_a_table_at_another_budget_starts_from_the_searches_of_another(tmp_path, full):
    from dataclasses import replace

    wider = replace(SETTINGS, budget=BenchBudget(channels=5, layers=3, epochs=1,
                                                 train_size=128))
    # the source as a committed snapshot is stored: rollback journal, not WAL
    committed = tmp_path / "committed"
    for sub in SEARCHES.values():
        (committed / sub).mkdir(parents=True)
        a = sqlite3.connect(full[0] / sub / "run.db")
        b = sqlite3.connect(committed / sub / "run.db")
        a.backup(b)
        b.execute("PRAGMA journal_mode=DELETE")
        b.close()
        a.close()
    before = {sub: (committed / sub / "run.db").read_bytes() for sub in SEARCHES.values()}
    out = tmp_path / "wide"
    result = build_table(out, wider, progress=False, searches_from=committed, time_limit=1e-9)
    # reading another table's searches never writes to its databases
    assert {sub: (committed / sub / "run.db").read_bytes() for sub in SEARCHES.values()} == before
    assert sorted(p.name for p in (committed / "search-rwe").iterdir()) == ["run.db"]
    assert not result["complete"] and result["trained"] == 0
    for sub in SEARCHES.values():  # the same searches: the same evaluations
        with RunStore.open(out / sub) as mine, RunStore.open(full[0] / sub) as theirs:
            assert [e["key"] for e in mine.evaluations()] == \
                [e["key"] for e in theirs.evaluations()]
    with RunStore.open(out) as store:
        assert set(store.get_state("searches_from")) == set(SEARCHES)
    # other search settings: refused before anything is written
    other = tmp_path / "other"
    with pytest.raises(ConfigError, match=r"other search settings \(changed: pop_size"):
        build_table(other, replace(wider, pop_size=6), progress=False, searches_from=full[0])
    assert not other.exists()
    with pytest.raises(ConfigError, match="no table searches there"):
        build_table(other, wider, progress=False, searches_from=tmp_path)
    assert not other.exists()


def test_search_cost_unit_follows_where_the_evaluations_ran():
    """The unit comes from the devices the evaluations recorded, not from the machine that
    builds the table (a search run on a GPU and tabled on a CPU is still GPU-hours)."""
    assert cost_unit(["cpu", "cpu"]) == "CPU-hours"
    assert cost_unit(["cuda:NVIDIA H200", "cuda:NVIDIA H200"], "cpu") == "GPU-hours"
    assert cost_unit(["cuda:NVIDIA H200", "cpu"]) == "CPU+GPU-hours"
    # runs from before evaluations recorded it: the configured device, as it resolves here
    assert cost_unit([None, None], "cpu") == "CPU-hours"
    assert cost_unit([None], "cuda") == "GPU-hours"
    assert cost_unit(["cuda:X", None], "cpu") == "CPU+GPU-hours"
