"""Ground truth on demand for the along-search study: :class:`BenchProvider` trains missing
architectures at a bench's budget into a separate cache (never into the bench's pool);
:class:`NB301Provider` queries NAS-Bench-301."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError


class BenchProvider:
    """Ground-truth accuracies from a bench, for studies along searches.

    An architecture in the bench (any source) gets its ``truth`` there (the mean of its
    trainings). One not in it is trained on demand at the bench's budget (on ``workers``
    processes) into a separate *cache* bench (``cache_dir``, default ``BENCH_DIR/on-demand``;
    same space, dataset, seed and budget), never into the bench itself: a study along
    searches must not change the pool that other studies read (:func:`rwenas.study.bench.
    bench_records`). ``trained`` counts the on-demand trainings of this provider; the cache
    is reused by later studies. ``device``: where those trainings run (default: the device
    the bench was made with; the device is no part of its budget). ``time_limit``: seconds
    after which :meth:`prefetch` starts no training."""

    def __init__(self, bench_dir: str | Path, *, cache_dir: str | Path | None = None,
                 workers: int = 1, progress: bool = False, device: str | None = None,
                 time_limit: float | None = None) -> None:
        import time

        from rwenas.study.bench import Bench

        self.bench = Bench.open(bench_dir)
        self.device = device
        self.deadline = None if time_limit is None else time.monotonic() + float(time_limit)
        self.workers = workers
        self.progress = progress
        self.space_name = self.bench.config["space"]
        self.dataset = self.bench.config["dataset"]
        self.data_dir = self.bench.config.get("data_dir")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else \
            Path(bench_dir) / "on-demand"
        self._cache: Any = None

    @property
    def trained(self) -> int:
        return 0 if self._cache is None else self._cache.trainings

    def cache(self):
        """The cache bench (created with the bench's configuration on first use)."""
        from rwenas.search.store import DB_NAME, RunStore
        from rwenas.study.bench import Bench, changed_settings

        if self._cache is None:
            config = {**self.bench.config, "cache_of": str(self.bench.store.run_dir)}
            if (self.cache_dir / DB_NAME).is_file():
                store = RunStore.open(self.cache_dir)
                changed = changed_settings(store.config, config)
                if changed:
                    store.close()
                    raise ConfigError(f"on-demand cache {self.cache_dir} belongs to another "
                                      f"bench (changed: {', '.join(changed)})")
            else:
                store = RunStore.create(self.cache_dir, config)
            self._cache = Bench(store, device=self.device)
        return self._cache

    def _truth(self, bench: Any, key: str) -> float | None:
        rec = bench.store.get_evaluation(key)
        if rec is None or rec["status"] != "ok":
            return None
        extra = rec["extra"]
        return float(np.mean([extra["test_acc"], *(extra.get("retest_acc") or [])]))

    def missing(self, genomes: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
        """The architectures of ``genomes`` (one item each) neither the bench nor the cache
        has a truth for."""
        from rwenas.search.store import DB_NAME

        space = self.bench.space
        cache = self.cache() if self._cache is not None or \
            (self.cache_dir / DB_NAME).is_file() else None
        out: dict[str, dict[str, Any]] = {}
        for g in genomes:
            k = space.key(g)
            if k not in out and self._truth(self.bench, k) is None and (
                    cache is None or self._truth(cache, k) is None):
                out[k] = {"genome": list(g), "key": k, "kind": "on_demand"}
        return list(out.values())

    def prefetch(self, genomes: Sequence[Sequence[int]]) -> int:
        """Train the architectures of ``genomes`` the bench and the cache lack, all in one
        pool of workers (until the time limit); returns how many are still missing."""
        missing = self.missing(genomes)
        if missing:
            self.cache().train_missing(missing, workers=self.workers, progress=self.progress,
                                       deadline=self.deadline)
        return len(self.missing(genomes))

    def accuracies(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        space = self.bench.space
        keys = [space.key(g) for g in genomes]
        missing = self.missing(genomes)
        if missing:
            self.cache().train_missing(missing, workers=self.workers, progress=self.progress)
        out = []
        for k in keys:
            acc = self._truth(self.bench, k)
            if acc is None and self._cache is not None:
                acc = self._truth(self._cache, k)
            out.append(math.nan if acc is None else acc)
        return out

    def close(self) -> None:
        self.bench.close()
        if self._cache is not None:
            self._cache.close()


class NB301Provider:
    """Validation accuracies predicted by the NAS-Bench-301 surrogate (nb301 space)."""

    space_name = "nb301"
    dataset = "cifar10"
    data_dir = None

    def __init__(self, model_dir: str | Path | None = None, surrogate: Any = None) -> None:
        from rwenas.study.nb301 import load_surrogate

        self.surrogate = surrogate if surrogate is not None else load_surrogate(model_dir)
        self.cache: dict[tuple[int, ...], float] = {}
        self.trained = 0

    def accuracies(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        out = []
        for g in genomes:
            g = tuple(int(v) for v in g)
            if g not in self.cache:
                self.cache[g] = self.surrogate.accuracy(g)
            out.append(self.cache[g])
        return out

    def close(self) -> None:
        pass
