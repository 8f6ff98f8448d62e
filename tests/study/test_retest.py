"""rwenas bench retest: a bench's once-trained architectures trained again into a separate
store (tiny budgets, synthetic data)."""

from __future__ import annotations

import json

import pytest

from rwenas.errors import ConfigError
from rwenas.study.bench import BenchBudget, bench_records, build_bench
from rwenas.study.retest import format_retest, retest_bench, retest_sample, retest_summary
from tests.study.test_bench import _main

TINY = BenchBudget(channels=4, layers=2, epochs=1, train_size=200, test_size=100)
KW = dict(dataset="synthetic", budget=TINY, size=5, seed=1)


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    """The same bench twice: built with the first 3 retested, and with none retested."""
    root = tmp_path_factory.mktemp("retest")
    build_bench(root / "retested", retest=3, **KW)
    build_bench(root / "once", retest=0, **KW)
    return root


def test_a_retest_trains_what_the_bench_would_have_and_leaves_the_bench_alone(benches, tmp_path,
                                                                             monkeypatch):
    once = benches / "once"
    before = (once / "run.db").read_bytes()
    summary = retest_bench(once, tmp_path / "rt", count=5)
    assert (once / "run.db").read_bytes() == before  # only read
    assert summary["trained"] == summary["count"] == summary["n"] == 5
    # the second runs are the ones the bench's own --retest made: same seed, same accuracy
    # (a wrong seed index would give other accuracies)
    own = {r["key"]: r["retest_acc"][0] for r in bench_records(benches / "retested")
           if r["retest_acc"]}
    assert len(own) == 3
    from rwenas.search.store import RunStore

    store = RunStore.open(tmp_path / "rt")
    got = {r["key"]: r["extra"] for r in store.evaluations("ok")}
    store.close()
    for key, acc in own.items():
        assert got[key]["test_acc"] == acc
    first = {r["key"]: r["test_acc"] for r in bench_records(once)}
    assert all(got[k]["first_acc"] == first[k] for k in got)
    assert any(own[k] != first[k] for k in own)  # a first-run seed would not pass the above
    assert summary["mean_abs_diff"] == pytest.approx(
        sum(abs(e["test_acc"] - e["first_acc"]) for e in got.values()) / 5)
    # resumed: nothing new to train; the summary reads the store alone
    calls = []
    import rwenas.study.bench as bench_mod

    real = bench_mod.train_architecture
    monkeypatch.setattr(bench_mod, "train_architecture",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    assert retest_bench(once, tmp_path / "rt", count=5)["trained"] == 5 and not calls
    assert retest_summary(tmp_path / "rt")["spearman"] == summary["spearman"]
    assert "test–retest Spearman" in format_retest(summary)


def test_the_sample_is_uniform_prefix_stable_and_skips_retested_architectures(benches):
    records = bench_records(benches / "retested")
    once = [r for r in records if not r["retest_acc"]]
    assert len(once) == 2
    assert {r["key"] for r in retest_sample(records, 10, 0)} == {r["key"] for r in once}
    all_once = bench_records(benches / "once")
    for seed in (0, 1, 2):
        five = retest_sample(all_once, 5, seed)
        assert [r["key"] for r in retest_sample(all_once, 3, seed)] == \
            [r["key"] for r in five[:3]]
    orders = {tuple(r["key"] for r in retest_sample(all_once, 5, s)) for s in range(6)}
    assert len(orders) > 1  # the seed draws


def test_retest_refuses_what_it_cannot_do(benches, tmp_path):
    with pytest.raises(ConfigError, match="positive integer"):
        retest_bench(benches / "once", tmp_path / "a", count=0)
    with pytest.raises(ConfigError, match="another directory"):
        retest_bench(benches / "once", benches / "once", count=1)
    with pytest.raises(ConfigError, match="does not exist"):
        retest_bench(tmp_path / "missing", tmp_path / "a", count=1)
    with pytest.raises(ConfigError, match="no once-trained"):
        retest_bench(benches / "once", tmp_path / "a", count=1, sources="search")
    retest_bench(benches / "once", tmp_path / "b", count=1, seed=0)
    with pytest.raises(ConfigError, match=r"other settings.*seed"):
        retest_bench(benches / "once", tmp_path / "b", count=1, seed=1)
    with pytest.raises(ConfigError, match="holds no bench retest"):
        retest_bench(benches / "once", benches / "retested", count=1)
    with pytest.raises(ConfigError, match="holds no bench retest"):
        retest_summary(benches / "once")


def test_cli_retest_and_its_report(benches, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    assert _main(["bench", "retest", str(benches / "once"), str(out), "--count", "2",
                  "--quiet"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "trained    2 of 2" in text and "reliability" in text
    assert _main(["bench", "retest", str(benches / "once"), str(out), "--json"],
                 monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 2 and summary["count"] == 2
    assert _main(["bench", "retest", str(tmp_path / "none"), str(tmp_path / "x"), "--count",
                  "1"], monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
