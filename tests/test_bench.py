"""rwenas bench: build (resumable, retest), show, sampling and CLI errors (tiny budgets)."""

from __future__ import annotations

import numpy as np
import pytest

from rwenas import cli
from rwenas.bench import (
    Bench,
    BenchBudget,
    bench_records,
    bench_summary,
    build_bench,
    format_summary,
    sample_pool,
)
from rwenas.errors import ConfigError
from rwenas.spaces import get_space

TINY = BenchBudget(channels=4, layers=2, epochs=1, train_size=200, test_size=100)


def _main(argv, monkeypatch):
    from rwenas.study_commands import add_bench, add_study

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

    import rwenas.bench as bench_mod

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
    accs = [r["test_acc"] for r in records]
    assert summary["acc_min"] == pytest.approx(min(accs))
    assert summary["acc_mean"] == pytest.approx(float(np.mean(accs)))
    text = format_summary(summary)
    assert "trained    5 of 5" in text and "retest" in text

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
    (["bench", "build", "{tmp}/x", "--dataset", "synthetic", "--space", "nope"], "nope"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _main(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error:") and message in err
    assert len(err.strip().splitlines()) == 1
