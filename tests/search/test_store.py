"""Tests of the SQLite results store of a search run (rwenas.search.store)."""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rwenas import __version__
from rwenas.errors import ConfigError
from rwenas.search.store import DB_NAME, LOCK_NAME, SCHEMA_VERSION, RunLock, RunStore, StoreError

CONFIG = {"space": "micro", "dataset": "cifar10", "pop_size": 20, "lr": 0.025,
          "objectives": ["rwe_error", "madds_m"], "nested": {"a": [1, 2.5, None]}}


def _eval(store: RunStore, key: str, generation: int = 0, **kwargs) -> bool:
    kwargs.setdefault("objectives", [0.5, 10.0])
    return store.add_evaluation(key, [1, 2, 3], generation=generation, **kwargs)


@pytest.fixture
def store(tmp_path: Path):
    with RunStore.create(tmp_path / "run", CONFIG) as s:
        yield s


def _spawn_writer(run_dir: Path, body: str) -> subprocess.Popen:
    """A child Python process that opens the store of ``run_dir`` as ``store`` and runs body."""
    code = "import sys, time\nfrom rwenas.search.store import RunStore\n"
    code += f"store = RunStore.open({str(run_dir)!r})\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# --------------------------------------------------------------------------------------------
# create / open


def test_create_open_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "a" / "b" / "run"  # parents are made
    with RunStore.create(run_dir, CONFIG) as s:
        assert s.path == run_dir / DB_NAME
        assert s.run_dir == run_dir
        assert s.config == CONFIG
        assert s.count_evaluations() == 0
        assert s.last_generation() is None
    assert (run_dir / DB_NAME).is_file()
    with RunStore.open(str(run_dir)) as s:
        assert s.config == CONFIG
        assert s.meta["schema_version"] == str(SCHEMA_VERSION)
        assert s.meta["rwenas_version"] == __version__
        assert s.meta["created"].startswith("20")
        cfg = s.config
        cfg["pop_size"] = 0  # a copy: the store is not changed
        assert s.config["pop_size"] == 20
    conn = sqlite3.connect(run_dir / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_create_in_existing_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with RunStore.create(tmp_path / "run", {}) as s:
        assert s.config == {}


def test_close_is_idempotent_and_closed_store_refuses(tmp_path: Path) -> None:
    s = RunStore.create(tmp_path / "run", CONFIG)
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(RuntimeError, match="closed"):
        s.count_evaluations()


def test_create_without_force_on_existing_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as s:
        _eval(s, "k1")
    with pytest.raises(ConfigError, match="already exists") as info:
        RunStore.create(run_dir, CONFIG)
    assert "--resume" in str(info.value) and "--force" in str(info.value)
    assert "\n" not in str(info.value)
    with RunStore.open(run_dir) as s:  # untouched
        assert s.count_evaluations() == 1


def test_create_with_force_starts_fresh(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as s:
        _eval(s, "k1")
        s.add_generation(0, population=["k1"], front=["k1"], hypervolume=1.0, n_evaluated=1,
                         cache_hits=0, seconds=1.0)
        s.set_state("x", 1)
        s.set_blob("ckpt", b"old")
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "front.png").write_bytes(b"png")
    (run_dir / "report.md").write_text("old report")
    with RunStore.create(run_dir, {"new": True}, force=True) as s:
        assert s.config == {"new": True}
        assert s.count_evaluations() == 0
        assert s.generations() == []
        assert s.get_state("x") is None
        assert s.get_blob("ckpt") is None
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(DB_NAME)) == []


def test_create_with_force_on_interrupted_create(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / DB_NAME).write_bytes(b"")  # died before the first commit
    with RunStore.create(run_dir, CONFIG, force=True) as s:
        assert s.config == CONFIG


def test_create_with_force_refuses_foreign_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "mydata"
    run_dir.mkdir()
    (run_dir / "file.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        RunStore.create(run_dir, CONFIG, force=True)
    assert (run_dir / "file.txt").read_text() == "precious"
    assert not (run_dir / DB_NAME).exists()
    with pytest.raises(ConfigError, match="already exists"):
        RunStore.create(run_dir, CONFIG)


def test_create_with_force_refuses_foreign_run_db(tmp_path: Path) -> None:
    run_dir = tmp_path / "other"
    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / DB_NAME)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('owner', 'someone else')")
    conn.commit()
    conn.close()
    (run_dir / "file.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        RunStore.create(run_dir, CONFIG, force=True)
    assert (run_dir / "file.txt").read_text() == "precious"
    conn = sqlite3.connect(run_dir / DB_NAME)
    assert conn.execute("SELECT value FROM meta").fetchall() == [("someone else",)]
    conn.close()


def test_create_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        RunStore.create(target, CONFIG, force=True)
    assert target.read_text() == "x"


def test_create_under_a_file_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="afile"):
        RunStore.create(tmp_path / "afile" / "run", CONFIG)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_create_in_unwritable_location(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=re.escape(str(parent / "run"))):
            RunStore.create(parent / "run", CONFIG)
        empty = tmp_path / "ro2"
        empty.mkdir()
        empty.chmod(0o500)
        with pytest.raises(ConfigError, match="ro2"):
            RunStore.create(empty, CONFIG)
    finally:
        parent.chmod(0o700)
        (tmp_path / "ro2").chmod(0o700)


def test_create_permission_errors_are_config_errors(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The unwritable-location paths, simulated so that they run as root too."""
    def deny_mkdir(self: Path, *args, **kwargs) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "mkdir", deny_mkdir)
        with pytest.raises(ConfigError, match=r"cannot create run directory .*run.*denied"):
            RunStore.create(tmp_path / "run", CONFIG)

    def deny_connect(*args, **kwargs) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    with monkeypatch.context() as m:
        m.setattr(sqlite3, "connect", deny_connect)
        with pytest.raises(ConfigError, match=r"cannot create the results store .*run\.db"):
            RunStore.create(tmp_path / "run2", CONFIG)


def test_create_with_unserialisable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JSON"):
        RunStore.create(tmp_path / "run", {"f": object()})
    assert not (tmp_path / "run").exists()


def test_open_missing_dir_or_db(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not an rwenas run directory \(no run.db\)"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"is not an rwenas run directory \(no run.db\)"):
        RunStore.open(tmp_path / "empty")
    assert not (tmp_path / "empty" / DB_NAME).exists()  # open never creates a database


def test_open_garbage_file(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="corrupt or not an SQLite database"):
        RunStore.open(tmp_path)


def test_open_foreign_sqlite(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"not an rwenas results store.*no meta table"):
        RunStore.open(tmp_path)


def test_open_empty_db_file(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty database.*--force"):
        RunStore.open(tmp_path)


def test_open_other_schema_version(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", CONFIG).close()
    conn = sqlite3.connect(tmp_path / "run" / DB_NAME)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        RunStore.open(tmp_path / "run")


# --------------------------------------------------------------------------------------------
# evaluations


def test_evaluation_round_trip(store: RunStore) -> None:
    objectives = [0.1 + 0.2, 1 / 3, 1e-300, 123456.789012345678]
    genotype = {"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2, 3]}
    assert store.add_evaluation(
        "arch-1", (4, 0, 7), objectives=objectives, generation=3, genotype=genotype,
        params_m=0.123456789, madds_m=45.6789, seconds=2.5, features_seconds=1.25,
        classifier_seconds=0.75, attempts=2, extra={"seed": 7, "warning": None})
    rec = store.get_evaluation("arch-1")
    assert rec is not None
    assert rec["key"] == "arch-1"
    assert rec["genome"] == [4, 0, 7] and all(type(g) is int for g in rec["genome"])
    assert rec["objectives"] == objectives  # exact float equality
    assert all(type(v) is float for v in rec["objectives"])
    assert rec["generation"] == 3
    assert rec["status"] == "ok"
    assert rec["genotype"] == genotype
    assert rec["params_m"] == 0.123456789
    assert rec["madds_m"] == 45.6789
    assert (rec["seconds"], rec["features_seconds"], rec["classifier_seconds"]) == (2.5, 1.25,
                                                                                    0.75)
    assert rec["error"] is None
    assert rec["attempts"] == 2
    assert rec["extra"] == {"seed": 7, "warning": None}
    assert isinstance(rec["id"], int) and rec["created"].startswith("20")
    assert store.get_evaluation("nope") is None


def test_failed_evaluation_round_trip(store: RunStore) -> None:
    assert store.add_evaluation("bad", [0, 0], objectives=[math.inf, math.inf], generation=1,
                                status="failed", error="RuntimeError: CUDA out of memory",
                                attempts=3)
    rec = store.get_evaluation("bad")
    assert rec["status"] == "failed"
    assert rec["error"] == "RuntimeError: CUDA out of memory"
    assert rec["objectives"] == [math.inf, math.inf]
    assert rec["attempts"] == 3
    assert rec["genotype"] is None and rec["extra"] is None and rec["params_m"] is None


def test_nan_objective_round_trips(store: RunStore) -> None:
    _eval(store, "n", objectives=[math.nan, 1.0])
    assert math.isnan(store.get_evaluation("n")["objectives"][0])


def test_bad_status_rejected(store: RunStore) -> None:
    with pytest.raises(ValueError, match="status"):
        _eval(store, "k", status="weird")
    with pytest.raises(ValueError, match="status"):
        store.evaluations("weird")
    assert store.count_evaluations() == 0


def test_genotype_conversions(store: RunStore) -> None:
    class WithToDict:
        def to_dict(self) -> dict:
            return {"normal": [("conv", 0)], "concat": range(2, 4)}

    _eval(store, "g", genotype=WithToDict(), extra={"t": (1, 2)})
    rec = store.get_evaluation("g")
    assert rec["genotype"] == {"normal": [["conv", 0]], "concat": [2, 3]}
    assert rec["extra"] == {"t": [1, 2]}
    with pytest.raises(TypeError):
        _eval(store, "h", genotype=object())
    assert store.get_evaluation("h") is None


def test_duplicate_key_is_a_noop(store: RunStore) -> None:
    assert _eval(store, "k", generation=0, objectives=[0.25, 1.0], madds_m=1.0)
    before = store.get_evaluation("k")
    assert not _eval(store, "k", generation=5, objectives=[0.9, 9.0], madds_m=9.0,
                     status="failed", error="x")
    assert store.get_evaluation("k") == before
    assert store.count_evaluations() == 1


def test_evaluations_order_and_filter(store: RunStore) -> None:
    keys = ["z", "a", "m", "b", "y"]
    for i, key in enumerate(keys):
        status = "failed" if i % 2 else "ok"
        _eval(store, key, generation=i, status=status, error="boom" if i % 2 else None)
    assert [r["key"] for r in store.evaluations()] == keys
    assert [r["key"] for r in store.evaluations("ok")] == ["z", "m", "y"]
    assert [r["key"] for r in store.evaluations(status="failed")] == ["a", "b"]
    assert store.count_evaluations() == 5


# --------------------------------------------------------------------------------------------
# generations, state, blobs


def test_generations(store: RunStore) -> None:
    assert store.generations() == [] and store.last_generation() is None
    for gen in (1, 0, 2):
        store.add_generation(gen, population=[f"p{gen}", "q"], front=[f"p{gen}"],
                             hypervolume=0.1 * gen, n_evaluated=10 + gen, cache_hits=gen,
                             seconds=1.5 * gen, extra={"g": gen})
    gens = store.generations()
    assert [g["generation"] for g in gens] == [0, 1, 2]
    assert gens[1]["population"] == ["p1", "q"] and gens[1]["front"] == ["p1"]
    assert gens[1]["hypervolume"] == 0.1 and gens[2]["hypervolume"] == 0.1 * 2
    assert (gens[2]["n_evaluated"], gens[2]["cache_hits"], gens[2]["seconds"]) == (12, 2, 3.0)
    assert gens[2]["extra"] == {"g": 2}
    assert store.last_generation() == 2
    store.add_generation(1, population=["new"], front=[], hypervolume=0.75, n_evaluated=3,
                         cache_hits=0, seconds=0.5)
    gens = store.generations()
    assert len(gens) == 3
    assert gens[1]["population"] == ["new"] and gens[1]["front"] == []
    assert gens[1]["hypervolume"] == 0.75 and gens[1]["extra"] is None
    assert store.last_generation() == 2


def test_state_round_trip(store: RunStore) -> None:
    assert store.get_state("missing") is None
    assert store.get_state("missing", default=5) == 5
    value = {"rng": [1, 2, 3], "f": 0.1 + 0.2, "s": "x", "n": None}
    store.set_state("algo", value)
    assert store.get_state("algo") == value
    store.set_state("algo", 7)
    assert store.get_state("algo") == 7
    store.set_state("none", None)
    assert store.get_state("none", default="d") is None  # a stored None is not "missing"


def test_blob_round_trip(store: RunStore) -> None:
    assert store.get_blob("ckpt") is None
    data = pickle.dumps({"pop": [[1, 2], [3, 4]], "f": 1 / 3})
    store.set_blob("ckpt", data)
    assert store.get_blob("ckpt") == data
    store.set_blob("ckpt", b"\x00\xff" * 1000)
    assert store.get_blob("ckpt") == b"\x00\xff" * 1000
    store.set_blob("empty", b"")
    assert store.get_blob("empty") == b""
    with pytest.raises(TypeError):
        store.set_blob("s", "text")  # type: ignore[arg-type]


def test_everything_persists_across_reopen(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", CONFIG) as s:
        _eval(s, "k", objectives=[1 / 7, 2.0])
        s.add_generation(0, population=["k"], front=["k"], hypervolume=1 / 3, n_evaluated=1,
                         cache_hits=0, seconds=0.1)
        s.set_state("st", {"a": 1})
        s.set_blob("b", b"bytes")
    with RunStore.open(tmp_path / "run") as s:
        assert s.get_evaluation("k")["objectives"] == [1 / 7, 2.0]
        assert s.generations()[0]["hypervolume"] == 1 / 3
        assert s.get_state("st") == {"a": 1}
        assert s.get_blob("b") == b"bytes"


# --------------------------------------------------------------------------------------------
# durability and concurrent reading


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child did not signal in time")
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_evaluations_survive_sigkill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    RunStore.create(run_dir, CONFIG).close()
    ready = tmp_path / "ready"
    n = 25
    proc = _spawn_writer(run_dir, f"""
        for i in range({n}):
            store.add_evaluation(f"k{{i}}", [i, i + 1], objectives=[i / 3, i * 1.1],
                                 generation=i // 5)
        store.add_generation(4, population=["k0"], front=["k0"], hypervolume=0.5,
                             n_evaluated={n}, cache_hits=0, seconds=1.0)
        store.set_blob("ckpt", b"checkpoint")
        open({str(ready)!r}, "w").close()
        time.sleep(120)
    """)
    try:
        _wait_for(ready, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with RunStore.open(run_dir) as s:
        assert s.count_evaluations() == n
        recs = s.evaluations()
        assert [r["key"] for r in recs] == [f"k{i}" for i in range(n)]
        assert [r["objectives"] for r in recs] == [[i / 3, i * 1.1] for i in range(n)]
        assert s.last_generation() == 4
        assert s.get_blob("ckpt") == b"checkpoint"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_stream_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    RunStore.create(run_dir, CONFIG).close()
    proc = _spawn_writer(run_dir, """
        i = 0
        while True:
            store.add_evaluation(f"k{i}", [i], objectives=[float(i)], generation=0)
            print(i, flush=True)
            i += 1
    """)
    try:
        acknowledged = -1
        assert proc.stdout is not None
        while acknowledged < 40:
            line = proc.stdout.readline()
            assert line, f"child exited early: {proc.communicate()[1]}"
            acknowledged = int(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with RunStore.open(run_dir) as s:
        count = s.count_evaluations()
        assert count >= acknowledged + 1
        assert [r["key"] for r in s.evaluations()] == [f"k{i}" for i in range(count)]


def test_read_while_another_connection_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as writer, RunStore.open(run_dir) as reader:
        _eval(writer, "k0")
        assert reader.count_evaluations() == 1  # a committed write is visible at once
        # A writer in the middle of a transaction does not block a WAL reader.
        raw = sqlite3.connect(run_dir / DB_NAME, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO evaluations (key, genome, objectives, generation, status, "
                    "attempts, created) VALUES ('pending', '[]', '[]', 0, 'ok', 1, 'now')")
        t0 = time.monotonic()
        assert reader.count_evaluations() == 1
        assert [r["key"] for r in reader.evaluations()] == ["k0"]
        assert time.monotonic() - t0 < 5
        raw.execute("COMMIT")
        raw.close()
        assert reader.count_evaluations() == 2
        _eval(writer, "k1")
        assert reader.get_evaluation("k1") is not None


def test_read_from_another_process_while_writer_is_open(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as writer:
        for i in range(3):
            _eval(writer, f"k{i}")
        code = ("from rwenas.search.store import RunStore\n"
                f"s = RunStore.open({str(run_dir)!r})\n"
                "print(s.count_evaluations(), s.config['pop_size'])\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.split() == ["3", "20"]
        _eval(writer, "k3")  # the writer carries on after the reader is gone
        assert writer.count_evaluations() == 4


# --------------------------------------------------------------------------------------------
# exact messages and conversions (found by mutation testing)


def _tamper(run_dir: Path, *sql: str) -> Path:
    RunStore.create(run_dir, CONFIG).close()
    conn = sqlite3.connect(run_dir / DB_NAME)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return run_dir / DB_NAME


@pytest.mark.parametrize("sql,message", [
    (["DELETE FROM meta WHERE key = 'format'"],
     "{db} is not an rwenas results store (its meta table has no format='rwenas.run'; "
     "written by another program?)"),
    (["UPDATE meta SET value = '99' WHERE key = 'schema_version'"],
     "{db} has results-store schema version 99 (written by rwenas {version}); this rwenas "
     "reads version {schema}"),
    (["DROP TABLE blobs", "DROP TABLE state"],
     "{db} is corrupt (missing table(s): state, blobs)"),
    (["UPDATE meta SET value = '{' WHERE key = 'config'"],
     "{db} is corrupt (no valid run configuration)"),
    (["DELETE FROM meta WHERE key = 'config'"],
     "{db} is corrupt (no valid run configuration)"),
    (["DROP TABLE meta", "CREATE TABLE meta (a, b, c)", "INSERT INTO meta VALUES (1, 2, 3)"],
     None),
])
def test_open_tampered_store_messages(tmp_path: Path, sql, message) -> None:
    db = _tamper(tmp_path / "run", *sql)
    with pytest.raises(ConfigError) as info:
        RunStore.open(tmp_path / "run")
    if message is None:  # a meta table of another shape
        assert str(info.value).startswith(f"{db} is not an rwenas results store (unexpected "
                                          "meta table: ")
        assert str(info.value).endswith("; written by another program?)")
    else:
        assert str(info.value) == message.format(db=db, version=__version__,
                                                 schema=SCHEMA_VERSION)


def test_open_messages_for_foreign_and_empty_databases(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        RunStore.open(tmp_path)
    assert str(info.value) == (f"{db} is an empty database (an interrupted start of the run?);"
                               " start it again with --force")
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError) as info:
        RunStore.open(tmp_path)
    assert str(info.value) == (f"{db} is not an rwenas results store (no meta table; written "
                               "by another program?)")
    with pytest.raises(ConfigError) as info:
        RunStore.open(tmp_path / "nowhere")
    assert str(info.value) == f"{tmp_path / 'nowhere'} is not an rwenas run directory (no run.db)"


def test_extra_values_are_converted_to_json(store: RunStore) -> None:
    import dataclasses

    import numpy as np

    @dataclasses.dataclass
    class Point:
        x: int
        y: tuple[int, int]

    class Described:
        def to_dict(self) -> dict:
            return {"described": True}

    extra = {"set": {3, 1, 2}, "frozen": frozenset({"b", "a"}), "range": range(2, 5),
             "array": np.arange(3), "scalar": np.float32(0.5), "int": np.int64(7),
             "point": Point(1, (2, 3)), "described": Described(), "tuple": (1, (2, 3))}
    _eval(store, "k", extra=extra, genotype=Point(4, (5, 6)))
    got = store.get_evaluation("k")
    assert got["extra"] == {"set": [1, 2, 3], "frozen": ["a", "b"], "range": [2, 3, 4],
                            "array": [0, 1, 2], "scalar": 0.5, "int": 7,
                            "point": {"x": 1, "y": [2, 3]}, "described": {"described": True},
                            "tuple": [1, [2, 3]]}
    assert got["genotype"] == {"x": 4, "y": [5, 6]}
    with pytest.raises(TypeError, match=r"^object is not JSON-serialisable$"):
        _eval(store, "bad", extra={"x": object()})
    with pytest.raises(TypeError, match=r"^type is not JSON-serialisable$"):
        _eval(store, "bad", extra={"x": Point})  # a dataclass type is not an instance
    assert store.get_evaluation("bad") is None


def test_repr_and_counts(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", CONFIG)
    assert repr(store) == f"RunStore({str(tmp_path / 'run')!r})"
    assert store.count_evaluations() == 0 and store.last_generation() is None
    _eval(store, "a")
    _eval(store, "b", status="failed", error="boom")
    assert store.count_evaluations() == 2
    store.close()
    assert repr(store) == f"RunStore({str(tmp_path / 'run')!r}, closed)"


# --------------------------------------------------------------------------------------------
# the run lock (found by mutation testing: only the CLI tests covered it)


def test_run_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("99999999 stale\n")  # a dead holder's longer text
    lock = RunLock.acquire(tmp_path)
    assert lock.path == tmp_path / LOCK_NAME
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError) as info:
        RunLock.acquire(tmp_path)  # a second descriptor conflicts, in this process too
    assert str(info.value) == (f"run directory {tmp_path} is in use by process {os.getpid()} "
                               "(another rwenas search); wait for it to end or stop it")
    lock.release()
    lock.release()  # idempotent
    assert (tmp_path / LOCK_NAME).exists()  # the file stays
    again = RunLock.acquire(tmp_path)
    again.release()


def test_run_lock_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        RunLock.acquire(tmp_path).release()
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / LOCK_NAME).stat().st_mode) == 0o644


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_run_lock_of_another_process_until_it_is_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ready = tmp_path / "ready"
    code = ("import time\nfrom pathlib import Path\nfrom rwenas.search.store import RunLock\n"
            f"lock = RunLock.acquire(Path({str(run_dir)!r}))\n"
            f"open({str(ready)!r}, 'w').close()\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, proc)
        with pytest.raises(ConfigError, match=rf"in use by process {proc.pid} \(another"):
            RunLock.acquire(run_dir)
        with pytest.raises(ConfigError, match=rf"in use by process {proc.pid} "):
            RunStore.create(run_dir, CONFIG, lock=True)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    RunLock.acquire(run_dir).release()  # the kernel dropped the dead holder's lock
    with RunStore.create(run_dir, CONFIG, lock=True) as s:  # the lock file alone: empty
        assert s.count_evaluations() == 0


def test_run_lock_failures_are_one_line_config_errors(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    with monkeypatch.context() as m:
        def deny(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")
        m.setattr(os, "open", deny)
        with pytest.raises(ConfigError) as info:
            RunLock.acquire(tmp_path)
    assert str(info.value) == f"cannot lock run directory {tmp_path}: Permission denied"

    with monkeypatch.context() as m:
        def no_locks(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")
        m.setattr(fcntl, "flock", no_locks)
        with pytest.raises(ConfigError) as info:
            RunLock.acquire(tmp_path)
    assert str(info.value) == f"cannot lock run directory {tmp_path}: No locks available"

    with monkeypatch.context() as m:
        def busy(fd, op):
            raise OSError(errno.EACCES, "Permission denied")  # how some systems say "held"
        m.setattr(fcntl, "flock", busy)
        with pytest.raises(ConfigError, match=r"is in use by process \? \(another"):
            RunLock.acquire(tmp_path)
    RunLock.acquire(tmp_path).release()  # no lock was left behind by the failures


def test_run_lock_holder_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        def full(*args):
            raise OSError(errno.ENOSPC, "No space left on device")
        m.setattr(os, "pwrite", full)
        lock = RunLock.acquire(tmp_path)  # the lock holds without the PID
    assert (tmp_path / LOCK_NAME).read_text() == ""
    with pytest.raises(ConfigError) as info:
        RunLock.acquire(tmp_path)
    assert "is in use by process ? (another" in str(info.value)
    lock.release()
    lock = RunLock.acquire(tmp_path)
    with monkeypatch.context() as m:
        def unreadable(*args):
            raise OSError(errno.EIO, "Input/output error")
        m.setattr(os, "pread", unreadable)
        with pytest.raises(ConfigError, match=r"in use by process \? \(another"):
            RunLock.acquire(tmp_path)
    lock.release()


def _locked(run_dir: Path) -> bool:
    try:
        RunLock.acquire(run_dir).release()
    except ConfigError:
        return True
    return False


def test_store_holds_the_run_lock_only_when_asked(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG):
        assert not _locked(run_dir)
    with RunStore.open(run_dir):
        assert not _locked(run_dir)
    store = RunStore.create(tmp_path / "locked", CONFIG, lock=True)
    assert _locked(tmp_path / "locked")
    store.close()
    store.close()  # idempotent with a lock too
    assert not _locked(tmp_path / "locked")
    store = RunStore.open(run_dir, lock=True)
    assert _locked(run_dir)
    with pytest.raises(ConfigError, match="in use by process"):
        RunStore.open(run_dir, lock=True)
    store.close()
    assert not _locked(run_dir)
    with RunStore.create(run_dir, {"new": 1}, force=True, lock=True) as s:
        assert _locked(run_dir) and s.config == {"new": 1}
        assert sorted(p.name for p in run_dir.iterdir()
                      if p.name not in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")) == [
            LOCK_NAME]  # the lock file is kept by --force
    assert not _locked(run_dir)


def test_locked_run_is_not_cleared_by_force(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as s:
        _eval(s, "k")
    holder = RunLock.acquire(run_dir)
    try:
        with pytest.raises(ConfigError, match="in use by process"):
            RunStore.create(run_dir, {"new": 1}, force=True, lock=True)
    finally:
        holder.release()
    with RunStore.open(run_dir) as s:  # taken before anything was deleted
        assert s.config == CONFIG and s.count_evaluations() == 1


def test_failed_open_or_create_releases_the_lock(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_NAME).write_bytes(b"garbage" * 100)
    with pytest.raises(ConfigError, match="corrupt"):
        RunStore.open(tmp_path / "bad", lock=True)
    assert not _locked(tmp_path / "bad")

    def deny_connect(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    with monkeypatch.context() as m:
        m.setattr(sqlite3, "connect", deny_connect)
        with pytest.raises(ConfigError, match="cannot create the results store"):
            RunStore.create(tmp_path / "new", CONFIG, lock=True)
    assert not _locked(tmp_path / "new")


# --------------------------------------------------------------------------------------------
# --force: what counts as an rwenas run directory (found by mutation testing)


def _foreign_db(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_force_overwrites_a_table_less_database(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _foreign_db(run_dir / DB_NAME, "PRAGMA user_version = 7")  # a header, no table
    assert (run_dir / DB_NAME).stat().st_size > 0
    (run_dir / LOCK_NAME).write_text("")
    with RunStore.create(run_dir, CONFIG, force=True) as s:
        assert s.config == CONFIG


@pytest.mark.parametrize("content", ["table", "garbage", "empty-with-data"])
def test_force_refuses_what_is_not_a_run(tmp_path: Path, content: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    db = run_dir / DB_NAME
    if content == "table":  # nothing but a run.db of someone else's
        _foreign_db(db, "CREATE TABLE mine (x)", "INSERT INTO mine VALUES (42)")
    elif content == "garbage":
        db.write_bytes(b"not sqlite" * 500)
    else:  # an empty run.db next to other data
        db.write_bytes(b"")
        (run_dir / "data.csv").write_text("precious")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(ConfigError) as info:
        RunStore.create(run_dir, CONFIG, force=True)
    assert str(info.value) == (f"refusing to overwrite {run_dir}: it is not empty and holds no "
                               f"rwenas {DB_NAME} (not an rwenas run directory), even with "
                               "--force")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


@pytest.mark.parametrize("sql", [
    ["DELETE FROM meta WHERE key = 'schema_version'"],
    ["UPDATE meta SET value = 'other.program' WHERE key = 'format'"],
    ["DROP TABLE blobs"],
])
def test_force_refuses_a_damaged_or_foreign_store(tmp_path: Path, sql: list[str]) -> None:
    db = _tamper(tmp_path / "run", *sql)
    data = db.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        RunStore.create(tmp_path / "run", CONFIG, force=True)
    assert db.read_bytes() == data


def test_force_refuses_a_store_it_cannot_read(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    RunStore.create(tmp_path / "run", CONFIG).close()

    def deny_connect(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", deny_connect)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        RunStore.create(tmp_path / "run", CONFIG, force=True)
    monkeypatch.undo()
    with RunStore.open(tmp_path / "run") as s:
        assert s.config == CONFIG


# --------------------------------------------------------------------------------------------
# messages of the failure paths (found by mutation testing)


def test_create_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    RunStore.create(run_dir, CONFIG).close()
    with pytest.raises(ConfigError) as info:
        RunStore.create(run_dir, CONFIG)
    assert str(info.value) == (f"run directory {run_dir} already exists; use --resume to "
                               "continue it or --force to overwrite it")

    def unreadable(self: Path):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "iterdir", unreadable)
        with pytest.raises(ConfigError) as info:
            RunStore.create(run_dir, CONFIG)
    assert str(info.value) == f"cannot read run directory {run_dir}: Permission denied"

    def deny_mkdir(self: Path, *args, **kwargs) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "mkdir", deny_mkdir)
        with pytest.raises(ConfigError) as info:
            RunStore.create(tmp_path / "new", CONFIG)
    assert str(info.value) == f"cannot create run directory {tmp_path / 'new'}: Permission denied"


def test_force_clear_failure_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    RunStore.create(run_dir, CONFIG).close()
    (run_dir / "plots").mkdir()

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(shutil, "rmtree", deny)
    with pytest.raises(ConfigError) as info:
        RunStore.create(run_dir, CONFIG, force=True)
    assert str(info.value) == (f"cannot clear run directory {run_dir} for --force: "
                               "Permission denied")


def test_open_messages_when_sqlite_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RunStore.create(tmp_path, CONFIG).close()
    db = tmp_path / DB_NAME

    with monkeypatch.context() as m:
        def deny_connect(*args, **kwargs):
            raise sqlite3.OperationalError("unable to open database file")
        m.setattr(sqlite3, "connect", deny_connect)
        with pytest.raises(ConfigError) as info:
            RunStore.open(tmp_path)
    assert str(info.value) == (f"cannot open the results store {db}: unable to open database "
                               "file")

    with monkeypatch.context() as m:
        def locked(conn, path):
            raise sqlite3.OperationalError("database is locked")
        m.setattr(RunStore, "_read_meta", staticmethod(locked))
        with pytest.raises(ConfigError) as info:
            RunStore.open(tmp_path)
    assert str(info.value) == f"cannot open the results store {db}: database is locked"


def test_other_schema_version_without_a_version_of_rwenas(tmp_path: Path) -> None:
    db = _tamper(tmp_path / "run", "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
                 "DELETE FROM meta WHERE key = 'rwenas_version'")
    with pytest.raises(ConfigError) as info:
        RunStore.open(tmp_path / "run")
    assert str(info.value) == (f"{db} has results-store schema version 2 (written by rwenas ?); "
                               f"this rwenas reads version {SCHEMA_VERSION}")


def test_read_and_write_errors_name_the_store_and_the_way_on(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore.create(run_dir, CONFIG) as s:
        _eval(s, "kept")
        _foreign_db(run_dir / DB_NAME, "DROP TABLE state")
        tail = ("; everything committed before is kept (free space, then continue with rwenas "
                f"search --resume {run_dir})")
        with pytest.raises(StoreError) as info:
            s.get_state("x")
        assert str(info.value) == (f"cannot read the results store {run_dir / DB_NAME}: no such "
                                   "table: state" + tail)
        with pytest.raises(StoreError) as info:
            s.set_state("x", 1)
        assert str(info.value) == (f"cannot write the results store {run_dir / DB_NAME}: no "
                                   "such table: state" + tail)
        assert [e["key"] for e in s.evaluations()] == ["kept"]  # the store goes on working
        assert _eval(s, "after")
        assert s.count_evaluations() == 2


def test_blob_type_error_message(store: RunStore) -> None:
    with pytest.raises(TypeError) as info:
        store.set_blob("s", "text")  # type: ignore[arg-type]
    assert str(info.value) == "blob data must be bytes, not str"
    assert store.get_blob("s") is None


# --------------------------------------------------------------------------------------------
# values (found by mutation testing)


def test_timestamps_are_utc(store: RunStore) -> None:
    _eval(store, "k")
    store.add_generation(0, population=["k"], front=["k"], hypervolume=0.5, n_evaluated=1,
                         cache_hits=0, seconds=0.1)
    for text in (store.meta["created"], store.get_evaluation("k")["created"],
                 store.generations()[0]["created"]):
        assert text.endswith("+00:00")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", text)


def test_sets_are_sorted_and_ranges_kept_in_order(store: RunStore) -> None:
    assert list({8, 1}) == [8, 1]  # a set whose iteration order is not sorted
    _eval(store, "k", extra={"set": {8, 1}, "down": range(5, 1, -1)})
    assert store.get_evaluation("k")["extra"] == {"set": [1, 8], "down": [5, 4, 3, 2]}


def test_attempts_default_to_one(store: RunStore) -> None:
    _eval(store, "k")
    assert store.get_evaluation("k")["attempts"] == 1


def test_replace_overwrites_a_record_in_place(store: RunStore) -> None:
    _eval(store, "a", objectives=[1.0, 1e12], status="failed", error="boom", attempts=3)
    _eval(store, "b")
    first = store.get_evaluation("a")
    assert store.add_evaluation("a", [7, 8], objectives=[0.25, 2.0], generation=4,
                                genotype={"g": 1}, params_m=0.5, madds_m=2.0, seconds=1.5,
                                features_seconds=1.0, classifier_seconds=0.25, extra={"x": 1},
                                replace=True)
    rec = store.get_evaluation("a")
    assert rec["id"] == first["id"]  # its place in the insertion order is kept
    assert [e["key"] for e in store.evaluations()] == ["a", "b"]
    assert (rec["genome"], rec["objectives"], rec["generation"], rec["status"]) == (
        [7, 8], [0.25, 2.0], 4, "ok")
    assert (rec["genotype"], rec["params_m"], rec["madds_m"], rec["seconds"],
            rec["features_seconds"], rec["classifier_seconds"]) == (
        {"g": 1}, 0.5, 2.0, 1.5, 1.0, 0.25)
    assert (rec["error"], rec["attempts"], rec["extra"]) == (None, 1, {"x": 1})
    assert rec["created"] >= first["created"]
    assert store.count_evaluations() == 2
    assert not _eval(store, "a", objectives=[0.9, 9.0])  # without replace: kept
    assert store.get_evaluation("a")["objectives"] == [0.25, 2.0]


def test_store_is_usable_from_other_threads(tmp_path: Path) -> None:
    import threading

    errors: list[BaseException] = []

    def work(s: RunStore, key: str) -> None:
        try:
            _eval(s, key)
            s.set_state(key, s.count_evaluations())
        except BaseException as exc:  # reported below
            errors.append(exc)

    with RunStore.create(tmp_path / "run", CONFIG) as created:
        threads = [threading.Thread(target=work, args=(created, f"t{i}")) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with RunStore.open(tmp_path / "run") as opened:
        t = threading.Thread(target=work, args=(opened, "o"))
        t.start()
        t.join()
        assert not errors, errors
        assert sorted(e["key"] for e in opened.evaluations()) == ["o", "t0", "t1", "t2"]
        assert opened.get_state("o") == 4
