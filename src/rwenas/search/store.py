"""The SQLite results store of one search run (``RUN_DIR/run.db``).

Every architecture evaluation of ``rwenas search`` is written here the moment it finishes, in
its own committed transaction, so that a search that is killed (even with SIGKILL) or
interrupted can be resumed without redoing a finished evaluation, and a report can be rebuilt
from the store alone.

The database runs in WAL mode with ``synchronous=NORMAL``: a write is durable against a crash of
the writing process as soon as the call returns (an operating-system crash or power loss may
lose the last few commits, never corrupt the file), and other processes can read the store while
the search writes to it.

Tables:

``meta``
    key/value text: ``format``, ``schema_version``, ``rwenas_version``, ``created``, ``config``.
``state``
    run-level key/value state, JSON values (:meth:`RunStore.set_state`).
``blobs``
    opaque bytes such as a pickled algorithm checkpoint (:meth:`RunStore.set_blob`).
``evaluations``
    one row per canonical architecture key (:meth:`RunStore.add_evaluation`).
``generations``
    one row per finished generation (:meth:`RunStore.add_generation`).

A process that writes a run (``rwenas search``, new or resumed) holds ``run.db.lock`` with
``fcntl.flock`` for its whole life; a second writer is refused with the holder's PID. The
operating system drops the lock when the holder dies, so a killed search never blocks the
next one. Readers (``rwenas report``) need no lock.

A :class:`RunStore` belongs to the process that opened it: do not share it across ``fork``
(open another one in the child instead). Within a process it may be used from several threads;
its calls are serialised by a lock.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from rwenas import __version__
from rwenas.errors import ConfigError, RwenasError

SCHEMA_VERSION = 1
DB_NAME = "run.db"

#: Value of the ``format`` meta key that marks a database as an rwenas results store.
FORMAT = "rwenas.run"

#: Files SQLite keeps next to the database.
_DB_SIDE_FILES = ("-wal", "-shm", "-journal")

#: The lock file of a run directory (see :class:`RunLock`).
LOCK_NAME = DB_NAME + ".lock"


class StoreError(RwenasError):
    """The results store cannot be written or read (a full disk, a vanished file)."""


class RunLock:
    """An exclusive ``fcntl.flock`` on ``RUN_DIR/run.db.lock``, held until :meth:`release`
    (or the process ends: the kernel drops it then, even after SIGKILL). The file holds the
    holder's PID, for the message that refuses a second process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock ``run_dir`` (which exists) or raise :class:`ConfigError` naming the holder."""
        import fcntl

        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot lock run directory {run_dir}: "
                              f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            except OSError:
                holder = "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"run directory {run_dir} is in use by process {holder} "
                                  "(another rwenas search); wait for it to end or stop it"
                                  ) from None
            raise ConfigError(f"cannot lock run directory {run_dir}: "
                              f"{exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds without the PID (a full disk); the message says "?"
        return cls(path, fd)

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a waiter."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

EVALUATION_STATUSES = ("ok", "failed")

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE blobs (
    name    TEXT PRIMARY KEY,
    data    BLOB NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE evaluations (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key                TEXT NOT NULL UNIQUE,
    genome             TEXT NOT NULL,
    objectives         TEXT NOT NULL,
    generation         INTEGER NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    genotype           TEXT,
    params_m           REAL,
    madds_m            REAL,
    seconds            REAL,
    features_seconds   REAL,
    classifier_seconds REAL,
    error              TEXT,
    attempts           INTEGER NOT NULL,
    extra              TEXT,
    created            TEXT NOT NULL
);
CREATE INDEX evaluations_status ON evaluations (status);
CREATE TABLE generations (
    generation  INTEGER PRIMARY KEY,
    population  TEXT NOT NULL,
    front       TEXT NOT NULL,
    hypervolume REAL,
    n_evaluated INTEGER NOT NULL,
    cache_hits  INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    extra       TEXT,
    created     TEXT NOT NULL
);
"""

_TABLES = ("meta", "state", "blobs", "evaluations", "generations")

_EVALUATION_COLUMNS = (
    "id", "key", "genome", "objectives", "generation", "status", "genotype", "params_m",
    "madds_m", "seconds", "features_seconds", "classifier_seconds", "error", "attempts",
    "extra", "created",
)
_GENERATION_COLUMNS = (
    "generation", "population", "front", "hypervolume", "n_evaluated", "cache_hits", "seconds",
    "extra", "created",
)


def _now() -> str:
    """The current UTC time as an ISO 8601 string (millisecond resolution)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(obj: Any) -> Any:
    """Make the usual non-JSON values of this project serialisable (genotypes, numpy, tuples)."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (range, set, frozenset)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _dumps(value: Any) -> str:
    """JSON text of ``value``; floats (also inf/nan) round-trip exactly."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _db_files(run_dir: Path) -> list[Path]:
    """The database file and the side files SQLite may keep next to it."""
    db = run_dir / DB_NAME
    return [db] + [db.with_name(DB_NAME + suffix) for suffix in _DB_SIDE_FILES]


def _is_rwenas_store(db_path: Path) -> bool:
    """Whether ``db_path`` is an rwenas results store: an SQLite database whose ``meta``
    table says ``format = rwenas.run`` and which has every table of the schema (any schema
    version). An empty file is not one. Never raises."""
    try:
        if not db_path.is_file() or db_path.stat().st_size == 0:
            return False
        conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    except (OSError, sqlite3.Error):
        return False
    try:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not set(_TABLES) <= tables:
            return False
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return meta.get("format") == FORMAT and "schema_version" in meta
    except (sqlite3.Error, ValueError):
        return False
    finally:
        conn.close()


def _interrupted_start(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds nothing but a ``run.db`` without any table (a start killed
    before its first commit) and SQLite's or the lock's side files: nothing to lose."""
    db = run_dir / DB_NAME
    allowed = {p.name for p in _db_files(run_dir)} | {LOCK_NAME}
    try:
        if not db.is_file() or any(e.name not in allowed for e in run_dir.iterdir()):
            return False
        if db.stat().st_size == 0:
            return True
        conn = sqlite3.connect(db, timeout=30)
    except (OSError, sqlite3.Error):
        return False
    try:
        return conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.Error:
        return False
    finally:
        conn.close()


class RunStore:
    """The results store of one search run (SQLite, WAL mode, autocommit per write).

    Make one with :meth:`create` (a new run) or :meth:`open` (resume, report); use it as a
    context manager or call :meth:`close`.
    """

    path: Path
    run_dir: Path

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, meta: dict[str, str],
                 run_lock: RunLock | None = None) -> None:
        """Wrap an open, validated connection; use :meth:`create` or :meth:`open` instead."""
        self.run_dir = run_dir
        self.path = run_dir / DB_NAME
        self._conn: sqlite3.Connection | None = conn
        self._meta = dict(meta)
        self._lock = threading.RLock()
        self._run_lock = run_lock

    # ----------------------------------------------------------------------------------------
    # opening and closing

    @classmethod
    def create(cls, run_dir: str | Path, config: dict, *, force: bool = False,
               lock: bool = False) -> RunStore:
        """Start the store of a new run in ``run_dir`` (made, parents too, if missing).

        An existing non-empty ``run_dir`` is an error unless ``force``; with ``force`` its
        contents are deleted, but only if its ``run.db`` is an rwenas store (the schema and
        the ``format`` metadata), or if it holds nothing but a table-less ``run.db`` left by a
        start killed before its first commit — a directory of other data is never
        overwritten. ``lock``: hold the run's :class:`RunLock` until :meth:`close` (taken
        before anything is deleted). :class:`ConfigError` on any of these problems, and when
        the location is not writable.
        """
        run_dir = Path(run_dir)
        try:
            config_json = _dumps(config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the run configuration is not JSON-serialisable: {exc}") from None

        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"run directory {run_dir} exists and is not a directory")
        try:
            non_empty = run_dir.is_dir() and any(e.name != LOCK_NAME for e in run_dir.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read run directory {run_dir}: "
                              f"{exc.strerror or exc}") from None
        if non_empty:
            if not force:
                raise ConfigError(f"run directory {run_dir} already exists; use --resume to "
                                  "continue it or --force to overwrite it")
            if not (_is_rwenas_store(run_dir / DB_NAME) or _interrupted_start(run_dir)):
                raise ConfigError(f"refusing to overwrite {run_dir}: it is not empty and holds no "
                                  f"rwenas {DB_NAME} (not an rwenas run directory), even with "
                                  "--force")

        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {run_dir}: "
                              f"{exc.strerror or exc}") from None
        run_lock = RunLock.acquire(run_dir) if lock else None
        try:
            if non_empty:
                cls._clear_directory(run_dir)
            return cls._create_db(run_dir, config_json, run_lock)
        except BaseException:
            if run_lock is not None:
                run_lock.release()
            raise

    @classmethod
    def _create_db(cls, run_dir: Path, config_json: str, run_lock: RunLock | None) -> RunStore:
        meta = {
            "format": FORMAT,
            "schema_version": str(SCHEMA_VERSION),
            "rwenas_version": __version__,
            "created": _now(),
            "config": config_json,
        }
        db_path = run_dir / DB_NAME
        conn = None
        try:
            conn = cls._connect(db_path)
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise ConfigError(f"cannot create the results store {db_path}: {exc}") from None
        return cls(run_dir, conn, meta, run_lock)

    @classmethod
    def open(cls, run_dir: str | Path, *, lock: bool = False) -> RunStore:
        """Open the store of an existing run (to resume it or report on it).

        :class:`ConfigError` when ``run_dir`` holds no ``run.db``, or one that is corrupt, was
        written by another program, or has another schema version. ``lock``: hold the run's
        :class:`RunLock` until :meth:`close` (to write the run; a report needs none).
        """
        run_dir = Path(run_dir)
        db_path = run_dir / DB_NAME
        if not db_path.is_file():
            raise ConfigError(f"{run_dir} is not an rwenas run directory (no {DB_NAME})")
        run_lock = RunLock.acquire(run_dir) if lock else None
        try:
            store = cls._open_db(run_dir, db_path)
        except BaseException:
            if run_lock is not None:
                run_lock.release()
            raise
        store._run_lock = run_lock
        return store

    @classmethod
    def _open_db(cls, run_dir: Path, db_path: Path) -> RunStore:
        try:
            conn = sqlite3.connect(db_path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the results store {db_path}: {exc}") from None
        try:
            meta = cls._read_meta(conn, db_path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(f"cannot open the results store {db_path}: {exc}") from None
        except ConfigError:
            conn.close()
            raise
        return cls(run_dir, conn, meta)

    @staticmethod
    def _connect(db_path: Path) -> sqlite3.Connection:
        """A new autocommit connection in WAL mode."""
        conn = sqlite3.connect(db_path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    @staticmethod
    def _read_meta(conn: sqlite3.Connection, db_path: Path) -> dict[str, str]:
        """Check that ``conn`` is an rwenas store of this schema version; return its meta."""
        try:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{db_path} is corrupt or not an SQLite database ({exc})") from None
        if not tables:
            raise ConfigError(f"{db_path} is an empty database (an interrupted start of the "
                              "run?); start it again with --force")
        if "meta" not in tables:
            raise ConfigError(f"{db_path} is not an rwenas results store (no meta table; "
                              "written by another program?)")
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.Error, ValueError) as exc:
            raise ConfigError(f"{db_path} is not an rwenas results store (unexpected meta table: "
                              f"{exc}; written by another program?)") from None
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{db_path} is not an rwenas results store (its meta table has no "
                              f"format={FORMAT!r}; written by another program?)")
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise ConfigError(f"{db_path} has results-store schema version {version} "
                              f"(written by rwenas {meta.get('rwenas_version', '?')}); this "
                              f"rwenas reads version {SCHEMA_VERSION}")
        missing = [t for t in _TABLES if t not in tables]
        if missing:
            raise ConfigError(f"{db_path} is corrupt (missing table(s): {', '.join(missing)})")
        try:
            json.loads(meta["config"])
        except (KeyError, ValueError):
            raise ConfigError(f"{db_path} is corrupt (no valid run configuration)") from None
        return meta

    @staticmethod
    def _clear_directory(run_dir: Path) -> None:
        """Delete everything in ``run_dir`` (which holds an rwenas store) but the lock file;
        keep the directory."""
        try:
            for entry in run_dir.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot clear run directory {run_dir} for --force: "
                              f"{exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._run_lock is not None:
                self._run_lock.release()
                self._run_lock = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.run_dir)!r}{', closed' if self.closed else ''})"

    # ----------------------------------------------------------------------------------------
    # internals

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the results store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``)."""
        with self._lock:
            conn = self._db
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise self._store_error("write", exc) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._store_error("read", exc) from None

    def _store_error(self, what: str, exc: sqlite3.Error) -> StoreError:
        """One line for a failed read or write (a full disk: SQLITE_FULL)."""
        return StoreError(f"cannot {what} the results store {self.path}: {exc}; everything "
                          "committed before is kept (free space, then continue with rwenas "
                          f"search --resume {self.run_dir})")

    # ----------------------------------------------------------------------------------------
    # config and run-level state

    @property
    def config(self) -> dict:
        """The run configuration given to :meth:`create` (a fresh copy each time)."""
        return json.loads(self._meta["config"])

    @property
    def meta(self) -> dict[str, str]:
        """The store's metadata: schema_version, rwenas_version, created (ISO 8601 UTC)."""
        return {k: v for k, v in self._meta.items() if k not in ("config", "format")}

    def set_state(self, name: str, value: Any) -> None:
        """Set run-level state ``name`` to a JSON-serialisable ``value`` (committed at once)."""
        text = _dumps(value)
        with self._write() as conn:
            conn.execute("INSERT INTO state (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, text))

    def get_state(self, name: str, default: Any = None) -> Any:
        """The value of run-level state ``name``, ``default`` if never set."""
        rows = self._query("SELECT value FROM state WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else default

    def set_blob(self, name: str, data: bytes) -> None:
        """Store opaque bytes (e.g. a pickled algorithm checkpoint) under ``name``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob data must be bytes, not {type(data).__name__}")
        with self._write() as conn:
            conn.execute("INSERT INTO blobs (name, data, updated) VALUES (?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
                         "updated = excluded.updated", (name, bytes(data), _now()))

    def get_blob(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, ``None`` if none."""
        rows = self._query("SELECT data FROM blobs WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    # ----------------------------------------------------------------------------------------
    # evaluations

    def add_evaluation(self, key: str, genome: list[int] | tuple[int, ...], *,
                       objectives: list[float], generation: int, status: str = "ok",
                       genotype: Any = None, params_m: float | None = None,
                       madds_m: float | None = None, seconds: float | None = None,
                       features_seconds: float | None = None,
                       classifier_seconds: float | None = None, error: str | None = None,
                       attempts: int = 1, extra: dict | None = None,
                       replace: bool = False) -> bool:
        """Record the evaluation of the architecture with canonical ``key``.

        Committed (durable against a crash of this process) when the call returns. Returns
        ``False``, changing nothing, if ``key`` is already recorded (``replace``: its record is
        overwritten, keeping its place in the insertion order). ``status`` is ``"ok"`` or
        ``"failed"`` (then ``error`` says why). ``genotype`` and ``extra`` are stored as JSON
        (objects with ``to_dict()``, dataclasses, tuples and numpy values are converted).
        """
        if status not in EVALUATION_STATUSES:
            raise ValueError(f"evaluation status must be one of {EVALUATION_STATUSES}, "
                             f"not {status!r}")
        row = (
            str(key),
            _dumps([int(g) for g in genome]),
            _dumps([float(v) for v in objectives]),
            int(generation),
            status,
            _dumps_or_none(genotype),
            _float_or_none(params_m),
            _float_or_none(madds_m),
            _float_or_none(seconds),
            _float_or_none(features_seconds),
            _float_or_none(classifier_seconds),
            None if error is None else str(error),
            int(attempts),
            _dumps_or_none(extra),
            _now(),
        )
        columns = ", ".join(_EVALUATION_COLUMNS[1:])
        marks = ", ".join("?" * len(row))
        conflict = "DO NOTHING"
        if replace:
            conflict = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}"
                                                    for c in _EVALUATION_COLUMNS[2:])
        with self._write() as conn:
            cursor = conn.execute(f"INSERT INTO evaluations ({columns}) VALUES ({marks}) "
                                  f"ON CONFLICT (key) {conflict}", row)
            return cursor.rowcount == 1

    @staticmethod
    def _evaluation_dict(row: tuple) -> dict[str, Any]:
        record = dict(zip(_EVALUATION_COLUMNS, row, strict=True))
        for name in ("genome", "objectives"):
            record[name] = json.loads(record[name])
        for name in ("genotype", "extra"):
            record[name] = _loads_or_none(record[name])
        return record

    def get_evaluation(self, key: str) -> dict[str, Any] | None:
        """The evaluation recorded for ``key`` (all fields of :meth:`add_evaluation`, plus
        ``id`` and ``created``), ``None`` if none."""
        rows = self._query(f"SELECT {', '.join(_EVALUATION_COLUMNS)} FROM evaluations "
                           "WHERE key = ?", (key,))
        return self._evaluation_dict(rows[0]) if rows else None

    def evaluations(self, status: str | None = None) -> list[dict[str, Any]]:
        """All evaluations (only those with ``status`` if given), in insertion order."""
        sql = f"SELECT {', '.join(_EVALUATION_COLUMNS)} FROM evaluations"
        params: tuple = ()
        if status is not None:
            if status not in EVALUATION_STATUSES:
                raise ValueError(f"evaluation status must be one of {EVALUATION_STATUSES}, "
                                 f"not {status!r}")
            sql += " WHERE status = ?"
            params = (status,)
        return [self._evaluation_dict(row) for row in self._query(sql + " ORDER BY id", params)]

    def count_evaluations(self) -> int:
        """How many evaluations are recorded (any status)."""
        return int(self._query("SELECT COUNT(*) FROM evaluations")[0][0])

    # ----------------------------------------------------------------------------------------
    # generations

    def add_generation(self, generation: int, *, population: list[str], front: list[str],
                       hypervolume: float, n_evaluated: int, cache_hits: int, seconds: float,
                       extra: dict | None = None) -> None:
        """Record a finished generation (replacing any earlier record of the same number).

        ``population`` and ``front`` are lists of canonical architecture keys. A NaN
        ``hypervolume`` is stored as ``None`` (SQLite has no NaN).
        """
        row = (
            int(generation),
            _dumps([str(k) for k in population]),
            _dumps([str(k) for k in front]),
            float(hypervolume),
            int(n_evaluated),
            int(cache_hits),
            float(seconds),
            _dumps_or_none(extra),
            _now(),
        )
        marks = ", ".join("?" * len(row))
        with self._write() as conn:
            conn.execute(f"INSERT OR REPLACE INTO generations ({', '.join(_GENERATION_COLUMNS)}) "
                         f"VALUES ({marks})", row)

    def generations(self) -> list[dict[str, Any]]:
        """All recorded generations, ordered by generation number."""
        rows = self._query(f"SELECT {', '.join(_GENERATION_COLUMNS)} FROM generations "
                           "ORDER BY generation")
        records = []
        for row in rows:
            record = dict(zip(_GENERATION_COLUMNS, row, strict=True))
            record["population"] = json.loads(record["population"])
            record["front"] = json.loads(record["front"])
            record["extra"] = _loads_or_none(record["extra"])
            records.append(record)
        return records

    def last_generation(self) -> int | None:
        """The highest recorded generation number, ``None`` if none."""
        value = self._query("SELECT MAX(generation) FROM generations")[0][0]
        return None if value is None else int(value)
