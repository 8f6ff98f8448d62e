"""The committed study reproduces: `rwenas study tune` and `study correlation` on the committed
bench with the committed score store rewrite the committed tables (issue 11's "reproduces the
README's tables from the committed database"). Every score is a store hit, so no network is
built; the dataset must be present only because the estimators' split is resolved first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rwenas.cli import main
from rwenas.data.idx import FASHION_MNIST_SYSTEM_DIRS

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "docs" / "study" / "v2"

pytestmark = pytest.mark.skipif(not any(Path(d).is_dir() for d in FASHION_MNIST_SYSTEM_DIRS),
                                reason="Fashion-MNIST is not installed")


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    """A copy of the committed bench (as a run directory) and of its score store."""
    tmp = tmp_path_factory.mktemp("committed")
    (tmp / "bench").mkdir()
    shutil.copy(ROOT / "docs" / "study" / "bench-fm-v2.db", tmp / "bench" / "run.db")
    shutil.copy(STUDY / "scores.db", tmp / "scores.db")
    return tmp


def _study(committed: Path, *argv: str) -> None:
    rc = main(["study", *argv, "--bench", str(committed / "bench"), "--threads", "1",
               "--score-cache", str(committed / "scores.db"), "--quiet"])
    assert rc == 0


def test_tuning_reproduces_the_committed_pick(committed):
    out = committed / "tune"
    _study(committed, "tune", "--out", str(out), "--budget", "5")
    assert (out / "tune.csv").read_text() == (STUDY / "tune" / "tune.csv").read_text()
    assert '"variant": "l8"' in (out / "picked.json").read_text()


def test_confirmation_reproduces_the_committed_tables(committed):
    out = committed / "confirmation"
    _study(committed, "correlation", "--out", str(out), "--half", "confirmation",
           "--tuned", str(STUDY / "tune" / "picked.json"))
    for name in ("study.md", "correlation.csv", "bins.csv"):
        assert (out / name).read_text() == (STUDY / "confirmation" / name).read_text(), name


@pytest.fixture(scope="module")
def along_cache(committed) -> Path:
    """A copy of the committed along-search cache (every architecture the Fig. 3 searches
    visited that the bench lacks, trained at the bench's budget) as a run directory."""
    (committed / "along").mkdir()
    shutil.copy(ROOT / "docs" / "study" / "along-fm.db", committed / "along" / "run.db")
    return committed / "along"


@pytest.mark.parametrize("name, command", [
    ("along-pool", ("correlation",)),
    ("along-pool-rescored", ("correlation", "--estimators", "rwe,jacob_cov,synflow,params,madds",
                             "--rescore-seed", "1")),
    ("along-pool-variants", ("correlation", "--estimators", "rwe,jacob_cov,synflow,params,madds",
                             "--rwe-variants", "l8,images-5k,inits-3")),
    ("along-init-pool", ("init", "--pool")),
])
def test_along_pool_reproduces_the_committed_tables(committed, along_cache, name, command):
    out = committed / name
    rc = main(["study", *command, "--bench", str(along_cache), "--sources", "on_demand",
               "--out", str(out), "--threads", "1", "--score-cache",
               str(committed / "scores.db"), "--quiet"])
    assert rc == 0
    for table in ("study.md", "correlation.csv", "bins.csv"):
        assert (out / table).read_text() == (STUDY / name / table).read_text(), table



@pytest.mark.parametrize("bench, db, report, sources", [
    ("along", "along-retest.db", "along-retest.txt", "on_demand"),
    ("bench", "bench-search-retest.db", "search-retest.txt", "search"),
])
def test_retests_reproduce_the_committed_reliability(along_cache, bench, db, report, sources,
                                                     capsys):
    """The committed retests (30 along-search architectures; the bench's 30 search-visited
    members): each report is re-derived from its store, whose first runs are the committed
    bench's trainings."""
    from rwenas.search.store import RunStore
    from rwenas.study.bench import bench_records

    bench_dir = along_cache.parent / bench
    rt = along_cache.parent / f"retest-{bench}"
    rt.mkdir()
    shutil.copy(ROOT / "docs" / "study" / db, rt / "run.db")
    assert main(["bench", "retest", str(bench_dir), str(rt)]) == 0
    got = capsys.readouterr().out.splitlines()
    want = (STUDY / report).read_text().splitlines()
    assert got[1:] == want[1:]  # the first line names the directories
    first = {r["key"]: r["test_acc"] for r in bench_records(bench_dir, [sources])}
    store = RunStore.open(rt)
    retested = store.evaluations("ok")
    store.close()
    assert len(retested) == 30
    assert all(r["extra"]["first_acc"] == first[r["key"]] for r in retested)
