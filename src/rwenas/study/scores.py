"""A persistent store of estimator scores, so that a study re-run on a grown bench (or with
another report option) scores only the architectures it has not scored before.

A score is a pure function of the architecture's key, the estimator and its settings, and the
split it scores on (every estimate is seeded by ``derive_seed(seed, key)``), so each is stored
under a *context*: the JSON of the estimator's class and settings plus the split's dataset,
sizes and seed and the network options. Any change of those is a new context, never a stale
hit. The label a study gives an estimator (``rwe``, ``rwe[default]``) is no part of what a
score is: a score stored under one label is found under every other label of the same
context — so a study that names the same estimator differently (Fig. 4's ``rwe[default]``
driving the searches that Fig. 3's ``rwe`` drove) reads the very values the first study
used, not a recomputation that another processor or thread count may round differently.
Where a context and key hold several rows (stores written while lookups still selected by
label), a label's own row comes first, else the first computed: tables written from such a
store read as before. The stored seconds are those measured when the score was first
computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rwenas.errors import ConfigError

__all__ = ["ScoreStore", "estimator_identity", "open_score_store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    context TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL,
    value REAL NOT NULL, raw REAL NOT NULL, seconds REAL NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (context, label, key));
CREATE TABLE IF NOT EXISTS contexts (context TEXT PRIMARY KEY, description TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS scores_by_context_key ON scores (context, key);
"""


#: Part of every context: raised when a change of code moves estimator scores (to rounding,
#: say), so a store never mixes values of two versions. 2: RWE's classifier softmax and
#: gathers, proxies' gradients through ``DepthwiseConv``. Not raised for session 12's
#: class-major classifier products and convolutional average pools: at the study's setting
#: (2000/500) they changed none of 60 bench architectures' RWE errors (bfloat16 pools are
#: bit-identical), less than a change of processor does, and raising it would orphan the
#: committed study's 9,272 stored scores that its tables are reproduced from.
NUMERICS_REVISION = 2

_COLUMNS = ("context", "label", "key", "value", "raw", "seconds", "name")


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as dicts, devices and other objects as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def estimator_identity(estimator: Any) -> dict[str, Any]:
    """What makes an estimator's scores what they are: its class and every setting it holds
    (the device included: a GPU's results differ from the CPU's in the last digits)."""
    settings = {k: v for k, v in vars(estimator).items() if not k.startswith("_")}
    return {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "settings": _jsonable(settings)}


class ScoreStore:
    """Scores in a SQLite file (created if missing), committed as each is computed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.executescript(_SCHEMA)
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(scores)")]
            if columns != list(_COLUMNS):
                self._db.close()
                raise sqlite3.DatabaseError(f"its scores table has columns {columns}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a usable score store ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"cannot open the score store {self.path}: "
                              f"{exc.strerror or exc}") from None

    @staticmethod
    def context(estimator: Any, split: Mapping[str, Any]) -> tuple[str, str]:
        """(context hash, its JSON description) of ``estimator`` scoring on ``split`` (the
        dataset, sizes, seed and network options it scores with)."""
        text = json.dumps({"estimator": estimator_identity(estimator),
                           "split": _jsonable(split), "revision": NUMERICS_REVISION},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32], text

    def get(self, context: str, label: str, key: str) -> tuple[float, float, float, str] | None:
        """(value, raw, seconds, name) stored for ``key`` in ``context`` — under ``label``
        if there is such a row, else under any label (the first computed) —, or ``None``."""
        return self._db.execute(
            "SELECT value, raw, seconds, name FROM scores WHERE context=? AND key=? "
            "ORDER BY label=? DESC, rowid LIMIT 1", (context, key, label)).fetchone()

    def put(self, context: str, description: str, label: str, key: str, score: Any) -> None:
        """Store ``score`` (a :class:`rwenas.estimators.base.Score`) for ``key``."""
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO contexts VALUES (?, ?)",
                             (context, description))
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (context, label, key, float(score.value), float(score.raw),
                              float(score.seconds), str(score.name)))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_score_store(path: str | Path | None) -> Any:
    """The score store at ``path`` as a context manager (one that gives ``None`` when
    ``path`` is ``None``: scores are then kept in memory only)."""
    from contextlib import nullcontext

    return nullcontext() if path is None else ScoreStore(path)
