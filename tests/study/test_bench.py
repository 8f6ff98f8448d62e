"""rwenas bench: build (resumable, retest), show, sampling and CLI errors (tiny budgets)."""

from __future__ import annotations

import numpy as np
import pytest

from rwenas import cli
from rwenas.errors import ConfigError
from rwenas.spaces import get_space
from rwenas.study.bench import (
    Bench,
    BenchBudget,
    bench_records,
    bench_summary,
    build_bench,
    format_summary,
    sample_pool,
)

TINY = BenchBudget(channels=4, layers=2, epochs=1, train_size=200, test_size=100)


def _main(argv, monkeypatch):
    from rwenas.cli.bench import add_bench
    from rwenas.cli.study import add_study

    if add_bench not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, add_bench, add_study])
    return cli.main(argv)


def test_mixed_pool_is_distinct_prefix_stable_and_biased():
    space = get_space("micro")
    pool = sample_pool(space, 12, seed=3)
    assert len({p["key"] for p in pool}) == 12
    assert sample_pool(space, 8, seed=3) == pool[:8]
    kinds = [p["kind"] for p in pool]
    assert kinds.count("uniform") == 6 and kinds.count("light") == 3
    for p in pool:
        ops = [space.ops[p["genome"][i]] for i in range(0, space.n_var, 2)]
        if p["kind"] == "light":
            assert set(ops) <= {"max_pool_3x3", "avg_pool_3x3", "skip_connect"}
        if p["kind"] == "conv":
            assert all("conv" in op for op in ops)
    uniform = sample_pool(space, 4, seed=3, sampler="uniform")
    assert {p["kind"] for p in uniform} == {"uniform"}
    nb = sample_pool(get_space("nb301"), 6, seed=0)  # nb301 genomes stay valid
    assert len(nb) == 6
    with pytest.raises(ConfigError, match="sampler"):
        sample_pool(space, 2, sampler="biased")


def test_build_resume_retest_and_show(tmp_path, monkeypatch, capsys):
    bench_dir = tmp_path / "bench"
    calls = []

    import rwenas.study.bench as bench_mod

    real = bench_mod.train_architecture

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_mod, "train_architecture", counting)
    kwargs = dict(dataset="synthetic", budget=TINY, size=5, retest=2, seed=1)
    first = build_bench(bench_dir, stop_after=2, **kwargs)
    assert first["trained"] == 2
    assert len(calls) == 4  # the first two are retested: trained twice each

    # interrupted (Ctrl-C) after one more result: what finished is kept
    def interrupt(_result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_bench(bench_dir, on_result=interrupt, **kwargs)
    assert len(bench_records(bench_dir)) == 3
    calls.clear()
    again = build_bench(bench_dir, **kwargs)
    assert again["trained"] == 2 and len(calls) == 2  # nothing retrained
    calls.clear()
    assert build_bench(bench_dir, **kwargs)["trained"] == 0 and not calls

    records = bench_records(bench_dir)
    assert len(records) == 5
    pool = sample_pool(get_space("micro"), 5, seed=1)
    assert [r["key"] for r in records] == [p["key"] for p in pool]  # in pool order here
    retested = [r for r in records if r["retest_acc"]]
    assert [r["key"] for r in retested] == [p["key"] for p in pool[:2]]
    for r in records:
        assert 0.0 <= r["test_acc"] <= 1.0
    with Bench.open(bench_dir) as bench:
        rec = bench.store.get_evaluation(records[0]["key"])
        assert rec["objectives"] == [pytest.approx(1 - records[0]["test_acc"])]
        assert rec["extra"]["budget"] == TINY.to_dict()
        assert rec["extra"]["seed"] != rec["extra"]["retest_seeds"][0]

    summary = bench_summary(bench_dir)
    assert summary["trained"] == 5 and summary["retest"]["n"] == 2
    accs = [r["truth"] for r in records]  # the mean of both runs where retested
    assert summary["acc_min"] == pytest.approx(min(accs))
    assert summary["acc_mean"] == pytest.approx(float(np.mean(accs)))
    for r in records:
        assert r["truth"] == pytest.approx(np.mean([r["test_acc"], *r["retest_acc"]]))
    text = format_summary(summary)
    assert "trained    5 of 5" in text and "retest" in text
    assert "to train" not in text  # the pool is complete
    partial = {**summary, "pool_sources": {**summary["pool_sources"], "search": 3},
               "seconds_per_arch": 600.0}
    assert "to train   3 of the pool (first runs): about 0.5 h of one worker" in \
        format_summary(partial)
    assert "to train" not in format_summary({**partial, "sources": ["uniform"]})
    assert "2 architectures trained twice" in text and "sqrt(reliability)" in text

    # a changed budget is refused; the CLI shows the bench
    with pytest.raises(ConfigError, match="changed: budget"):
        build_bench(bench_dir, **{**kwargs, "budget": BenchBudget(channels=5, layers=2,
                                                                   epochs=1, train_size=200,
                                                                   test_size=100)})
    assert _main(["bench", "show", str(bench_dir)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "trained    5 of 5" in out and "C=4, 2 layers, 1 epochs" in out


def test_cli_build_with_two_workers(tmp_path, monkeypatch, capsys):
    bench_dir = tmp_path / "b"
    argv = ["bench", "build", str(bench_dir), "--dataset", "synthetic", "--size", "3",
            "--retest", "1", "--channels", "4", "--layers", "2", "--epochs", "1",
            "--train-size", "200", "--test-size", "100", "--workers", "2", "--quiet"]
    assert _main(argv, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "trained 3 architecture(s) now" in out
    assert _main(argv, monkeypatch) == 0  # resumed: nothing left
    assert "trained 0 architecture(s) now" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["bench", "show", "/nonexistent/bench"], "does not exist"),
    (["bench", "add-search", "{tmp}", "--seed", "-1"], "seed must be an integer in [0, "),
    (["bench", "build", "{tmp}/x", "--dataset", "synthetic", "--space", "nope"], "nope"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _main(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error:") and message in err
    assert len(err.strip().splitlines()) == 1


# -- sources, the search-visited source, halves ------------------------------------------------

FAST_RWE = {"epochs": 2, "folds": 1}
#: RWE on tiny networks (3 cells, so that a normal cell is built): the searches only need to
#: visit architectures (the search-setting networks scored here took 3/4 of this test's time)
SEARCH = dict(seeds=2, per_seed=3, generations=2, pop_size=4, train_size=200, val_size=100,
              rwe_options=FAST_RWE, network={"channels": 4, "layers": 3})


def test_add_search_tags_samples_resumes_and_build_trains_once(tmp_path, monkeypatch):
    from rwenas.study.bench import add_search, bench_pool

    bench_dir = tmp_path / "bench"
    kwargs = dict(dataset="synthetic", budget=TINY, size=4, retest=1, seed=2)
    build_bench(bench_dir, **kwargs)
    first = add_search(bench_dir, **SEARCH)
    assert first["added"] == 6 and first["per_seed"] == {0: 3, 1: 3}
    with Bench.open(bench_dir) as bench:
        search = bench.store.get_state("search_pool")
        sampled = bench.store.get_state("pool")
        whole = bench_pool(bench.store)
    assert [p["search_seed"] for p in search] == [0, 0, 0, 1, 1, 1]
    assert all(p["kind"] == "search" and p["search_generation"] in (0, 1) for p in search)
    assert {p["search_generation"] for p in search if p["search_seed"] == 0} == {0, 1}
    assert not {p["key"] for p in search} & {p["key"] for p in sampled}
    assert whole == sampled + search
    # seeded and resumable: nothing new; a larger per_seed extends each seed's sample
    assert add_search(bench_dir, **SEARCH)["added"] == 0
    more = add_search(bench_dir, **{**SEARCH, "per_seed": 4})
    assert more["added"] == 2
    with Bench.open(bench_dir) as bench:
        extended = bench.store.get_state("search_pool")
        runs = bench.store.get_state("search_runs")
    assert {s: r["network"] for s, r in runs.items()} == {
        "0": SEARCH["network"], "1": SEARCH["network"]}
    assert extended[:6] == search and [p["search_seed"] for p in extended[6:]] == [0, 1]

    calls = []
    import rwenas.study.bench as bench_mod

    real = bench_mod.train_architecture
    monkeypatch.setattr(bench_mod, "train_architecture",
                        lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    assert build_bench(bench_dir, **kwargs)["trained"] == 8 and len(calls) == 8
    assert build_bench(bench_dir, **kwargs)["trained"] == 0 and len(calls) == 8
    records = bench_records(bench_dir)
    assert [r["source"] for r in records].count("search") == 8
    only = bench_records(bench_dir, ["search"])
    assert len(only) == 8 and {r["search_seed"] for r in only} == {0, 1}
    assert {r["source"] for r in bench_records(bench_dir, ["uniform", "light", "conv"])} <= {
        "uniform", "light", "conv"}
    summary = bench_summary(bench_dir)
    assert summary["pool_sources"]["search"] == 8 and summary["kinds"]["search"] == 8
    assert "search 8/8" in format_summary(summary)
    with pytest.raises(ConfigError, match="unknown source"):
        bench_records(bench_dir, ["searched"])


def test_trainings_outside_the_pool_are_on_demand_and_excluded(tmp_path):
    bench_dir = tmp_path / "bench"
    build_bench(bench_dir, dataset="synthetic", budget=TINY, size=2, seed=0)
    space = get_space("micro")
    stray = sample_pool(space, 3, seed=99)[-1]
    with Bench.open(bench_dir) as bench:  # as a study along searches once did
        bench.train_missing([{"genome": stray["genome"], "key": stray["key"],
                              "kind": "search"}])
    assert [r["key"] for r in bench_records(bench_dir)] != [] and stray["key"] not in {
        r["key"] for r in bench_records(bench_dir)}
    named = bench_records(bench_dir, ["on_demand"])
    assert [r["key"] for r in named] == [stray["key"]] and named[0]["source"] == "on_demand"
    summary = bench_summary(bench_dir)
    assert summary["trained"] == 2 and summary["on_demand"] == 1
    assert "on demand  1 trained outside the pool" in format_summary(summary)
    assert "--sources on_demand summarises them" in format_summary(summary)
    # a selection with nothing trained (an along-search cache has no pool) says so, no NaN
    nothing = format_summary(bench_summary(bench_dir, ["search"]))
    assert "test acc   none trained in sources search" in nothing
    assert "nan" not in nothing and "time " not in nothing
    both = format_summary(bench_summary(bench_dir, ["uniform", "on_demand"]))
    assert "summarises them" not in both and "on_demand 1/0" in both
    # the pool's count stays the pool's (the uniform one selected of 2), the one outside it
    # beside them (it read "2 of 2")
    assert "trained    1 of 2 + 1 on demand (" in both
    assert "trained    2 of 2 (" in format_summary(summary)


def test_halves_are_stratified_seeded_and_stable_as_the_pool_grows():
    from rwenas.study.bench import pool_halves

    space = get_space("micro")
    pool = sample_pool(space, 40, seed=0) + [
        {"key": f"s{i}", "kind": "search"} for i in range(9)]
    halves = pool_halves(pool, seed=0)
    assert set(halves) == {p["key"] for p in pool}
    for src in ("uniform", "light", "conv", "search"):
        keys = [p["key"] for p in pool if p["kind"] == src]
        tuning = sum(halves[k] == "tuning" for k in keys)
        assert abs(tuning - (len(keys) - tuning)) <= 1
    for k in (7, 13, 31):  # a prefix of the pool: nobody changes half
        small = pool_halves(pool[:k], seed=0)
        assert all(halves[key] == half for key, half in small.items())
    assert pool_halves(pool, seed=0) == halves
    assert pool_halves(pool, seed=1) != halves


def test_cli_add_search_and_show(tmp_path, monkeypatch, capsys):
    bench_dir = tmp_path / "b"
    build_bench(bench_dir, dataset="synthetic", budget=TINY, size=2, seed=0)
    argv = ["bench", "add-search", str(bench_dir), "--seeds", "1", "--per-seed", "2",
            "--generations", "2", "--pop-size", "4", "--train-size", "200", "--val-size",
            "100", "--quiet"]
    assert _main(argv, monkeypatch) == 0
    assert "added 2 search-visited architecture(s)" in capsys.readouterr().out
    assert _main(["bench", "show", str(bench_dir)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "trained    2 of 4" in out and "search 0/2" in out
    assert _main(["bench", "show", str(bench_dir), "--sources", "uniform"], monkeypatch) == 0
    assert _main(["bench", "add-search", str(tmp_path / "none")], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error:") and "does not exist" in err
