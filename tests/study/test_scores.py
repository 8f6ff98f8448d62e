"""rwenas.study.scores: scores kept across runs, looked up only under the same context."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from rwenas.errors import ConfigError
from rwenas.estimators.proxies import RWEEstimator
from rwenas.spaces import get_space
from rwenas.study.pool import score_pool
from rwenas.study.scores import ScoreStore, estimator_identity

SPACE = get_space("micro")
SPLIT = {"dataset": "synthetic", "train_size": 120, "val_size": 60}


class Counting(RWEEstimator):
    """RWE that counts the architectures it really scores."""

    calls = 0

    def score(self, network_factory, split, *, seed=0):
        Counting.calls += 1
        return super().score(network_factory, split, seed=seed)


def _records(n: int) -> list[dict]:
    rng = np.random.default_rng(4)
    return [{"genome": SPACE.sample(rng)} for _ in range(n)]


def _score(records, store, **rwe):
    est = Counting(**{"epochs": 2, "folds": 1, **rwe})
    out = score_pool(records, {"rwe": est}, space=SPACE, dataset="synthetic",
                     train_size=120, val_size=60, seed=3,
                     network={"channels": 4, "layers": 3}, store=store)
    return [(s.value, s.raw, s.seconds) for s in out["rwe"]]


def test_a_rerun_scores_only_new_architectures_and_gets_the_same_scores(tmp_path):
    records = _records(4)
    path = tmp_path / "scores.db"
    Counting.calls = 0
    with ScoreStore(path) as store:
        first = _score(records[:3], store)
    assert Counting.calls == 3
    with ScoreStore(path) as store:  # a new process, the pool grown by one
        second = _score(records, store)
        assert store.count() == 4
    assert Counting.calls == 4  # only the new architecture was scored
    assert second[:3] == first  # stored values, raw values and first-measured seconds
    Counting.calls = 0
    fresh = _score(records, None)  # without a store: every score recomputed, same values
    assert Counting.calls == 4
    assert [v for v, _, _ in fresh] == [v for v, _, _ in second]


def test_another_setting_or_split_is_another_context(tmp_path):
    records = _records(2)
    with ScoreStore(tmp_path / "scores.db") as store:
        Counting.calls = 0
        _score(records, store)
        _score(records, store, epochs=3)  # another classifier setting: scored again
        assert Counting.calls == 4
        a, _ = store.context(Counting(epochs=2, folds=1), SPLIT)
        b, _ = store.context(Counting(epochs=2, folds=1), {**SPLIT, "train_size": 200})
        c, _ = store.context(Counting(epochs=2, folds=1), dict(SPLIT))
        d, _ = store.context(Counting(epochs=2, folds=1, device="cuda"), SPLIT)
        assert a != b and a == c and a != d
    ident = estimator_identity(RWEEstimator(epochs=2))
    assert ident["class"].endswith("RWEEstimator") and ident["settings"]["config"]["epochs"] == 2


def test_a_file_that_is_not_a_score_store_is_one_clear_error(tmp_path):
    bad = tmp_path / "scores.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="not a usable score store"):
        ScoreStore(bad)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE scores (x)")
    with pytest.raises(ConfigError, match="not a usable score store"), ScoreStore(other) as s:
        s.get("c", "rwe", "k")


def test_a_new_numerics_revision_is_another_context(tmp_path, monkeypatch):
    import json

    import rwenas.study.scores as scores

    est = Counting(epochs=2, folds=1)
    old, text = ScoreStore.context(est, SPLIT)
    assert json.loads(text)["revision"] == scores.NUMERICS_REVISION
    monkeypatch.setattr(scores, "NUMERICS_REVISION", scores.NUMERICS_REVISION + 1)
    new, _ = ScoreStore.context(est, SPLIT)
    assert new != old  # values cached by an older version are never looked up


def test_a_score_is_found_under_any_label_of_its_context_first_computed_first(tmp_path):
    """Fig. 4 along searches names the driving RWE `rwe[default]` where Fig. 3 named it `rwe`:
    it must read Fig. 3's stored values (a recomputation may round differently on another
    machine and steer the searches elsewhere), not score again."""
    from rwenas.estimators.base import Score

    records = _records(2)
    path = tmp_path / "scores.db"
    with ScoreStore(path) as store:
        Counting.calls = 0
        first = _score(records, store)
        est = Counting(epochs=2, folds=1)
        out = score_pool(records, {"rwe[default]": est}, space=SPACE, dataset="synthetic",
                         train_size=120, val_size=60, seed=3,
                         network={"channels": 4, "layers": 3}, store=store)
        assert Counting.calls == 2  # the second label scored nothing
        assert [(s.value, s.raw, s.seconds) for s in out["rwe[default]"]] == first
        # an older store may hold a context and key twice (under two labels, the second a
        # recomputation): each label reads its own row, any other label the first computed
        context, text = store.context(est, {**SPLIT, "seed": 3,
                                            "network": {"channels": 4, "layers": 3},
                                            "space": "micro"})
        key = SPACE.key(records[0]["genome"])
        store.put(context, text, "rwe[other]", key, Score(0.123, 0.1, 9.0, "rwe"))
        for label in ("rwe", "rwe[default]", "never-used"):
            assert store.get(context, label, key)[:3] == first[0]
        assert store.get(context, "rwe[other]", key)[:3] == (0.123, 0.1, 9.0)
    with sqlite3.connect(path) as db:  # the lookup's index
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "scores_by_context_key" in names
