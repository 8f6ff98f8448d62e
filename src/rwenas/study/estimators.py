"""The estimators a study compares (every registered estimator, plus params and MAdds),
their scores cached by (estimator, key), and the rank correlation of scores with accuracy.

Signs: every estimator's ``value`` is lower-is-better, so correlations are computed between
``-value`` and accuracy (a perfect estimator scores +1)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rwenas.errors import ConfigError

CHEAP_ESTIMATORS = ("rwe", "synflow", "grasp", "fisher", "jacob_cov", "snip", "grad_norm",
                    "naswot", "params", "madds")
INIT_METHODS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                "xavier_uniform")


def _registry() -> dict[str, type]:
    from rwenas.estimators.proxies import ESTIMATORS
    from rwenas.estimators.short_training import ShortTraining

    return {**ESTIMATORS, ShortTraining.name: ShortTraining}


STUDY_ESTIMATORS: Mapping[str, type] = _registry()


def make_study_estimator(name: str, **options: Any):
    """An estimator of :data:`STUDY_ESTIMATORS` (the proxies' registry plus
    ``short_training``); :class:`ConfigError` on an unknown name or option."""
    from rwenas.estimators.proxies import make_estimator

    return make_estimator(name, STUDY_ESTIMATORS, **options)


def resolve_estimators(spec: str | Sequence[str] | Mapping[str, Any] | None,
                       options: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """``{label: estimator}`` from a mapping (kept), a comma-separated string or a list of
    names (``all``: every registered one; ``cheap`` / ``None``: :data:`CHEAP_ESTIMATORS`).
    ``options[name]`` are passed to that estimator."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if spec is None:
        names: list[str] = list(CHEAP_ESTIMATORS)
    else:
        parts = spec.split(",") if isinstance(spec, str) else list(spec)
        names = []
        for part in (p.strip().lower().replace("-", "_") for p in parts):
            if not part:
                continue
            if part == "cheap":
                names += list(CHEAP_ESTIMATORS)
            elif part == "all":
                names += list(STUDY_ESTIMATORS)
            else:
                names.append(part)
    if not names:
        raise ConfigError("no estimators given")
    options = options or {}
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        out[name] = make_study_estimator(name, **dict(options.get(name, {})))
    return out


def rank_correlation(values: Sequence[float], accuracies: Sequence[float]
                     ) -> tuple[float, float]:
    """(Spearman, Kendall) between ``-values`` (estimator values, lower is better) and
    ``accuracies``; NaN when fewer than 2 finite pairs or either side is constant.
    Non-finite values (failed estimates, +inf) rank as the worst."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    a = np.asarray(accuracies, dtype=float)
    keep = ~np.isnan(v) & np.isfinite(a)
    v, a = v[keep], a[keep]
    if len(v) < 2:
        return math.nan, math.nan
    v = np.where(np.isposinf(v), np.finfo(float).max, v)
    if np.ptp(v) == 0 or np.ptp(a) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(-v, a).statistic), float(stats.kendalltau(-v, a).statistic)


# -- scoring --------------------------------------------------------------------------------------
class ScoreCache:
    """Scores architectures with estimators on one split, cached by (label, key)."""

    def __init__(self, space: Any, split: Any, info: Any, *, seed: int = 0,
                 network: Mapping[str, Any] | None = None, store: Any = None,
                 split_context: Mapping[str, Any] | None = None) -> None:
        self.space = space
        self.split = split
        self.info = info
        self.seed = int(seed)
        self.network = dict(network or {})
        self.scores: dict[tuple[str, str], Any] = {}
        self._madds: dict[str, float] = {}
        #: a :class:`rwenas.study.scores.ScoreStore` that keeps scores across runs, and what
        #: identifies this split in it (dataset, sizes; the seed and network are added)
        self.store = store
        self.split_context = {**dict(split_context or {}), "seed": self.seed,
                              "network": self.network, "space": getattr(space, "name", "")}

    def factory(self, genome: Sequence[int], estimator: Any = None) -> Callable[[], Any]:
        from rwenas.build import build_network

        options = dict(self.network)
        options.update(getattr(estimator, "network", None) or {})
        from rwenas.spaces import canonical_genome

        # the canonical genome: scores keyed and seeded by the key must come from its network
        genome = canonical_genome(self.space, tuple(int(g) for g in genome))

        def make():
            return build_network(self.space, genome, in_channels=self.info.in_channels,
                                 num_classes=self.info.num_classes, setting="search", **options)
        return make

    def score(self, label: str, estimator: Any, genome: Sequence[int]):
        """``estimator``'s :class:`~rwenas.estimators.base.Score` of ``genome`` (cached in
        memory, and in the store when there is one)."""
        from rwenas.estimators.base import Score
        from rwenas.evaluation import derive_seed

        key = self.space.key(genome)
        hit = self.scores.get((label, key))
        if hit is not None:
            return hit
        context = None
        if self.store is not None:
            context, description = self.store.context(estimator, self.split_context)
            row = self.store.get(context, label, key)
            if row is not None:
                hit = Score(*row)
        if hit is None:
            hit = estimator.score(self.factory(genome, estimator), self.split,
                                  seed=derive_seed(self.seed, key))
            if context is not None:
                self.store.put(context, description, label, key, hit)
        self.scores[(label, key)] = hit
        return hit

    def madds(self, genome: Sequence[int]) -> float:
        """Multiply-adds (millions) of the search-setting network."""
        from rwenas.complexity import complexity

        key = self.space.key(genome)
        if key not in self._madds:
            info = self.info
            net = self.factory(genome)()
            self._madds[key] = complexity(net, (info.in_channels, info.image_size,
                                                info.image_size)).madds_m
        return self._madds[key]


def estimator_split(dataset: str, *, data_dir: str | None = None, seed: int = 0,
                    train_size: int | None = 2000, val_size: int | None = 500):
    """(dataset info, search split) on which the estimators score (the training set only)."""
    from rwenas.data import load_dataset, search_split

    ds = load_dataset(dataset, data_dir, seed=seed)
    split = search_split(ds, seed=seed, train_size=train_size, val_size=val_size)
    return ds.info, split
