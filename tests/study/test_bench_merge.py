"""rwenas bench merge, and a bench's budget without its device: trainings done on another
machine (a GPU copy of the bench) come back. Tiny synthetic benches; the trainings are faked
(deterministic in the seed and the device), so these tests train nothing."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rwenas import cli
from rwenas.errors import ConfigError
from rwenas.search.store import RunStore
from rwenas.study.bench import (
    Bench,
    BenchBudget,
    arch_seed,
    bench_records,
    bench_summary,
    build_bench,
    format_summary,
    merge_bench,
)

TINY = BenchBudget(channels=4, layers=2, epochs=1, train_size=64, test_size=32)
KW = dict(dataset="synthetic", budget=TINY, size=6, retest=2, seed=1)


@pytest.fixture
def fake_training(monkeypatch):
    """Trainings are instant: test accuracy from the seed, plus 0.01 where the device is the
    pretend GPU ``auto`` (so a training done on both machines differs)."""
    import rwenas.study.bench as bench_mod

    calls = []

    def train(space, genome, data, budget, seed, *, genotype=None):
        calls.append((tuple(genome), seed, budget.device))
        gpu = budget.device == "auto"
        return {"test_acc": 0.5 + (seed % 997) / 1e4 + (0.01 if gpu else 0.0),
                "params_m": 0.1, "madds_m": 1.0 + len(calls) / 100, "seconds": 1.0,
                "device": "cuda:Fake GPU" if gpu else "cpu"}

    monkeypatch.setattr(bench_mod, "train_architecture", train)
    return calls


def _rows(bench_dir: Path) -> list[tuple]:
    with RunStore.open(bench_dir) as store:
        return [(r["key"], r["status"], r["objectives"], r["extra"])
                for r in store.evaluations()]


def _state(bench_dir: Path) -> dict:
    with RunStore.open(bench_dir) as store:
        return {k: store.get_state(k) for k in ("pool", "search_pool", "retest", "search_runs")}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_device_is_no_part_of_the_budget(tmp_path, fake_training):
    cpu = tmp_path / "cpu"
    build_bench(cpu, stop_after=2, **KW)
    gpu = replace(TINY, device="auto")
    # continued elsewhere: the same bench, each training recording where it ran
    assert build_bench(cpu, **{**KW, "budget": gpu}, stop_after=1)["trained"] == 1
    assert [d for *_rest, d in fake_training] == ["cpu"] * 4 + ["auto"]
    with Bench.open(cpu) as bench:
        assert bench.config["budget"] == TINY.to_dict()  # created on the CPU: kept
        devices = [r["extra"]["device"] for r in bench.store.evaluations()]
    assert devices == ["cpu", "cpu", "cuda:Fake GPU"]
    summary = bench_summary(cpu)
    assert summary["devices"] == {"cpu": 4, "cuda:Fake GPU": 1}  # retested: two trainings
    assert "devices    cpu 4, cuda:Fake GPU 1 trainings" in format_summary(summary)
    # what *is* trained still counts
    with pytest.raises(ConfigError, match="changed: budget"):
        build_bench(cpu, **{**KW, "budget": replace(gpu, epochs=2)})


def test_merge_copies_exactly_the_missing_ones(tmp_path, fake_training):
    dest = tmp_path / "dest"
    build_bench(dest, stop_after=2, **KW)  # the two retested ones
    src = _copy(dest, tmp_path / "src")
    gpu = {**KW, "budget": replace(TINY, device="auto")}
    build_bench(src, stop_after=3, **gpu)  # on the "GPU": members 3-5
    build_bench(dest, stop_after=1, **KW)  # meanwhile on the CPU: member 3
    before = {r["key"]: r for r in bench_records(dest)}
    src_records = {r["key"]: r for r in bench_records(src)}
    assert len(before) == 3 and len(src_records) == 5

    result = merge_bench(src, dest)
    assert (result["copied"], result["already"], result["differing"]) == (2, 3, 1)
    assert result["devices"] == {"cuda:Fake GPU": 2}
    after = {r["key"]: r for r in bench_records(dest)}
    assert set(after) == set(before) | set(src_records)
    for key, rec in after.items():  # dest's own trainings untouched, the others src's
        expect = before.get(key) or src_records[key]
        assert rec["test_acc"] == expect["test_acc"]
        assert rec["retest_acc"] == expect["retest_acc"]
        assert rec["device"] == expect["device"]
    shared = next(k for k in before if k not in list(before)[:2])
    assert after[shared]["device"] == "cpu" != src_records[shared]["device"]

    # the truth and the retest statistics read the merged bench as if it was built in one
    summary = bench_summary(dest)
    assert summary["trained"] == 5 and summary["retest"]["n"] == 2
    assert summary["devices"] == {"cpu": 5, "cuda:Fake GPU": 2}
    for r in after.values():
        assert r["truth"] == pytest.approx(np.mean([r["test_acc"], *r["retest_acc"]]))
    assert summary["acc_mean"] == pytest.approx(np.mean([r["truth"] for r in after.values()]))

    # idempotent: nothing more to copy, nothing changed
    rows = _rows(dest)
    again = merge_bench(src, dest)
    assert again["copied"] == 0 and again["already"] == 5
    assert _rows(dest) == rows
    # and the bench build finds nothing left but the last member
    fake_training.clear()
    assert build_bench(dest, **KW)["trained"] == 1 and len(fake_training) == 1


def test_merge_grows_the_pool_and_replaces_failed_trainings(tmp_path, fake_training):
    dest = tmp_path / "dest"
    build_bench(dest, stop_after=1, **KW)
    src = _copy(dest, tmp_path / "src")
    build_bench(src, **{**KW, "size": 8}, stop_after=3)
    # the key's training failed in dest: the source's finished one replaces it
    with Bench.open(src) as bench:
        failed_key = bench.store.evaluations()[1]["key"]
    with RunStore.open(dest) as store:
        store.add_evaluation(failed_key, [0], objectives=[1.0], generation=0,
                             status="failed", error="out of memory")
    dry = merge_bench(src, dest, dry_run=True)
    assert dry["copied"] == 2 and dry["replaced_failed"] == 1 and dry["pool_added"] == 2
    assert len(_state(dest)["pool"]) == 6  # a dry run writes nothing
    merge_bench(src, dest)
    assert _state(dest)["pool"] == _state(src)["pool"]
    with Bench.open(dest) as bench:
        assert bench.store.get_evaluation(failed_key)["status"] == "ok"
    assert {r["key"] for r in bench_records(dest)} == {r["key"] for r in bench_records(src)}


def test_merge_between_benches_built_apart_on_two_devices(tmp_path, fake_training):
    """Two benches made separately with the same settings on different devices are one
    bench; a training with seeds this bench would not give is not copied."""
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    build_bench(cpu, stop_after=1, **KW)
    build_bench(gpu, **{**KW, "budget": replace(TINY, device="auto")}, stop_after=4)
    with RunStore.open(gpu) as store:  # a foreign training, with another seed
        rec = store.evaluations()[3]
        extra = {**rec["extra"], "seed": arch_seed(5, rec["key"])}
        store.add_evaluation(rec["key"], rec["genome"], objectives=rec["objectives"],
                             generation=0, extra=extra, replace=True)
    result = merge_bench(gpu, cpu)
    assert (result["copied"], result["already"], result["mismatched"]) == (2, 1, 1)
    assert len(bench_records(cpu)) == 3


def _refused(src: Path, dest: Path, message: str) -> None:
    rows, state = _rows(dest), _state(dest)
    with pytest.raises(ConfigError, match=message):
        merge_bench(src, dest)
    assert _rows(dest) == rows and _state(dest) == state  # nothing written


def test_merge_refuses_another_bench(tmp_path, fake_training):
    dest = tmp_path / "dest"
    build_bench(dest, stop_after=1, **KW)
    other_budget = tmp_path / "budget"
    build_bench(other_budget, **{**KW, "budget": replace(TINY, epochs=2)}, stop_after=1)
    _refused(other_budget, dest, "other budget")
    other_seed = tmp_path / "seed"
    build_bench(other_seed, **{**KW, "seed": 2}, stop_after=1)
    _refused(other_seed, dest, "other seed")
    other_retest = tmp_path / "retest"
    build_bench(other_retest, **{**KW, "retest": 3}, stop_after=1)
    _refused(other_retest, dest, r"other retest count \(3 against 2\)")
    swapped = _copy(dest, tmp_path / "swapped")
    with RunStore.open(swapped) as store:
        pool = store.get_state("pool")
        store.set_state("pool", [pool[0], pool[2], pool[1], *pool[3:]])
    _refused(swapped, dest, "their pools differ .pool member 2")
    _refused(dest, dest, "are the same bench")
    with pytest.raises(ConfigError, match="does not exist"):
        merge_bench(tmp_path / "nope", dest)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no bench"):
        merge_bench(tmp_path / "empty", dest)


def _main(argv):
    return cli.main(argv)


def test_cli_merge_reports_and_refuses_in_one_line(tmp_path, fake_training, capsys):
    dest = tmp_path / "dest"
    build_bench(dest, stop_after=1, **KW)
    src = _copy(dest, tmp_path / "src")
    build_bench(src, **{**KW, "budget": replace(TINY, device="auto")}, stop_after=2)
    assert _main(["bench", "merge", str(src), str(dest), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would copy 2 architecture(s) of {src} into {dest} "
                          "(cuda:Fake GPU 3 trainings); 1 already there")
    assert len(bench_records(dest)) == 1
    assert _main(["bench", "merge", str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("copied 2 architecture(s)")
    assert "trained    3 of 6" in out and "devices    cpu 2, cuda:Fake GPU 3" in out

    other = tmp_path / "other"
    db = sqlite3.connect(_copy(dest, other) / "run.db")
    with db:  # the same bench on another dataset
        config = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'",
                   (config.replace('"synthetic"', '"fashion-mnist"'),))
    db.close()
    rows = _rows(dest)
    assert _main(["bench", "merge", str(other), str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error: cannot merge") and "other dataset" in err
    assert len(err.strip().splitlines()) == 1
    assert _rows(dest) == rows


def test_a_running_build_skips_what_was_merged_meanwhile(tmp_path, fake_training):
    dest = tmp_path / "dest"
    build_bench(dest, stop_after=2, **KW)
    src = _copy(dest, tmp_path / "src")
    build_bench(src, **KW)  # the other machine trains the rest
    fake_training.clear()

    def merge_after_first(_record):  # merged while dest's build is running
        if len(fake_training) == 1:
            merge_bench(src, dest)

    result = build_bench(dest, on_result=merge_after_first, **KW)
    assert result["trained"] == 1 and len(fake_training) == 1  # the rest was merged
    assert len(bench_records(dest)) == 6
