"""Rank statistics with bootstrap intervals, for the estimator study (pure numpy/scipy).

Everything here is a function of arrays; nothing knows about benches or estimators.

* Point estimates use :func:`scipy.stats.spearmanr` and :func:`scipy.stats.kendalltau`
  (tau-b: ties in either variable are allowed).
* Bootstrap: architectures are resampled with replacement (:func:`bootstrap_indices`, seeded),
  every statistic is computed on every resample, and the 95 % interval is the 2.5th and 97.5th
  percentile of the finite resample values (percentile bootstrap). Resamples on which a
  statistic is undefined (a constant variable) are left out of its interval. Statistics of
  different estimators computed on the *same* resamples give paired intervals: the interval of
  ``rho_a - rho_b`` over the resamples accounts for a and b being measured on the same
  architectures (their errors are correlated), which two separate intervals do not.
* The resample statistics are vectorised (:func:`spearman_rows`, :func:`kendall_resamples`,
  :func:`partial_spearman_rows`) and equal the scipy/looped values on each resample (tested).
  A bootstrap resample repeats architectures; the repeats are ties, handled as scipy handles
  ties (average ranks for Spearman, tau-b for Kendall).
* Partial rank correlation (:func:`partial_spearman`): the Spearman correlation of ``x`` and
  ``y`` controlling for ``z`` is the Pearson correlation of the *residuals* of rank(x) and
  rank(y) after a least-squares regression of each on rank(z) (with an intercept). For one
  control this equals ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz²)(1 - r_yz²))`` with Spearman
  coefficients ``r`` (tested); it says how well ``x`` orders architectures of equal ``z``
  rank (e.g. RWE at equal multiply-adds).
* Reliability: if the ground truth is measured with test–retest correlation ``r`` (its
  reliability), no estimator can correlate with the measured truth by more than
  ``sqrt(r)`` (the correlation of a measure with its own noise-free part); this is the bound
  the study reports, instead of calling ``r`` itself a ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "Interval",
    "bootstrap_indices",
    "interval",
    "kendall",
    "kendall_resamples",
    "partial_spearman",
    "partial_spearman_rows",
    "quantile_bins",
    "reliability_bound",
    "spearman",
    "spearman_rows",
]

#: default number of bootstrap resamples
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (``lo``, ``hi``) over ``resamples``
    finite resample values (NaN everywhere when undefined); ``n`` architectures."""

    value: float
    lo: float
    hi: float
    n: int
    resamples: int = 0

    def excludes_zero(self) -> bool:
        return math.isfinite(self.lo) and (self.lo > 0 or self.hi < 0)

    def fmt(self, digits: int = 2) -> str:
        """``0.41 [0.12, 0.63]`` (``–`` when undefined)."""
        if not math.isfinite(self.value):
            return "–"
        if not math.isfinite(self.lo):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    return x, y


def _defined(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy); NaN with fewer than 2 points or a constant variable."""
    x, y = _pair(x, y)
    return float(sps.spearmanr(x, y).statistic) if _defined(x, y) else math.nan


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy); NaN with fewer than 2 points or a constant variable."""
    x, y = _pair(x, y)
    return float(sps.kendalltau(x, y).statistic) if _defined(x, y) else math.nan


def bootstrap_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, n)`` indices drawn with replacement by a generator seeded with ``seed``."""
    if n < 1 or resamples < 1:
        raise ValueError("bootstrap needs n >= 1 and resamples >= 1")
    return np.random.default_rng([int(seed) & 0x7FFFFFFF, 1571]).integers(
        0, n, size=(resamples, n))


def _row_pearson(a: np.ndarray, b: np.ndarray, floor_a: np.ndarray | float = 0.0,
                 floor_b: np.ndarray | float = 0.0) -> np.ndarray:
    """Pearson correlation of each row pair; NaN where a row's centred norm is not above its
    floor (a constant row, or a residual that is only rounding noise)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    na = np.sqrt((a * a).sum(axis=1))
    nb = np.sqrt((b * b).sum(axis=1))
    valid = (na > floor_a) & (nb > floor_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, (a * b).sum(axis=1) / (na * nb), np.nan)
    return np.clip(out, -1.0, 1.0)


def rank_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks of each row, and a floor that marks constant rows (ranks all equal)."""
    r = sps.rankdata(np.atleast_2d(np.asarray(x, dtype=float)), axis=1)
    return r, np.where(np.ptp(r, axis=1) > 0, 0.0, np.inf)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``x`` and ``y`` (``B × n``): the Pearson
    correlation of average ranks, as scipy computes it; NaN for constant rows."""
    (rx, fx), (ry, fy) = rank_rows(x), rank_rows(y)
    return _row_pearson(rx, ry, fx, fy)


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` points occurs in each resample: ``B × n`` counts."""
    idx = np.atleast_2d(idx)
    counts = np.zeros((len(idx), n))
    np.add.at(counts, (np.arange(len(idx))[:, None], idx), 1.0)
    return counts


def kendall_resamples(x: Sequence[float], y: Sequence[float], idx: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of ``x`` and ``y`` on each resample ``idx`` (``B × n`` indices); NaN
    where a resample is constant in either variable.

    A resample is a multiset with counts ``w``. Pairs of copies of one point are ties in both
    variables; pairs of copies of points i and j occur ``w_i w_j`` times with the signs of
    the original pair. So with ``Sx = sign(x_i - x_j)`` (and ``Sy``) over the original
    points, S (concordant minus discordant) is ``½ wᵀ (Sx ∘ Sy) w`` and the pairs untied in
    x are ``½ wᵀ |Sx| w``: one matrix product for all resamples, tau-b = S / sqrt(n_x n_y)."""
    x, y = _pair(x, y)
    w = resample_counts(idx, len(x))
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    s = ((w @ (sx * sy)) * w).sum(axis=1) / 2
    nx = ((w @ np.abs(sx)) * w).sum(axis=1) / 2
    ny = ((w @ np.abs(sy)) * w).sum(axis=1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((nx > 0) & (ny > 0), s / np.sqrt(nx * ny), np.nan)


def _residual_ranks(r: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, r, rcond=None)
    return r - design @ coef


def partial_spearman(x: Sequence[float], y: Sequence[float],
                     z: Sequence[float] | np.ndarray) -> float:
    """Spearman correlation of ``x`` and ``y`` controlling for ``z`` (one control, or an
    ``n × k`` array of several): the Pearson correlation of the residuals of rank(x) and
    rank(y) regressed (least squares, with intercept) on the ranks of the controls. NaN when
    either residual is (numerically) zero or there are too few points."""
    x, y = _pair(x, y)
    z = np.asarray(z, dtype=float)
    z = z[:, None] if z.ndim == 1 else z
    if len(z) != len(x):
        raise ValueError("controls must have one row per point")
    if len(x) < z.shape[1] + 3:
        return math.nan
    design = np.column_stack([np.ones(len(x))] + [sps.rankdata(c) for c in z.T])
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    ex = _residual_ranks(rx, design)
    ey = _residual_ranks(ry, design)
    return float(_row_pearson(ex[None], ey[None], _floor(rx), _floor(ry))[0])


def _floor(r: np.ndarray) -> np.ndarray:
    """A residual smaller than this (relative to the centred ranks) is rounding noise."""
    r = np.atleast_2d(r)
    c = r - r.mean(axis=-1, keepdims=True)
    return 1e-9 * np.sqrt((c * c).sum(axis=-1)) + 1e-300


def partial_spearman_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:func:`partial_spearman` with one control for each row of ``x``, ``y``, ``z``
    (``B × n``), vectorised: residuals of centred ranks on the centred control rank."""
    return partial_from_ranks(*(rank_rows(a)[0] for a in (x, y, z)))


def partial_from_ranks(rx: np.ndarray, ry: np.ndarray, rz: np.ndarray) -> np.ndarray:
    """:func:`partial_spearman_rows` from the rank rows (:func:`rank_rows`) of x, y, z."""
    floors = _floor(rx), _floor(ry)
    rx, ry, rz = (a - a.mean(axis=1, keepdims=True) for a in (rx, ry, rz))
    zz = (rz * rz).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        bx = np.where(zz > 0, (rx * rz).sum(axis=1, keepdims=True) / zz, 0.0)
        by = np.where(zz > 0, (ry * rz).sum(axis=1, keepdims=True) / zz, 0.0)
    return _row_pearson(rx - bx * rz, ry - by * rz, *floors)


def pearson_of_ranks(rx: tuple[np.ndarray, np.ndarray], ry: tuple[np.ndarray, np.ndarray]
                     ) -> np.ndarray:
    """:func:`spearman_rows` from two :func:`rank_rows` results."""
    return _row_pearson(rx[0], ry[0], rx[1], ry[1])


def interval(samples: np.ndarray, value: float, n: int, level: float = 0.95) -> Interval:
    """The percentile interval of the finite ``samples`` around the point ``value``."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if not math.isfinite(value) or len(s) == 0:
        return Interval(float(value), math.nan, math.nan, n, len(s))
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha])
    return Interval(float(value), float(lo), float(hi), n, len(s))


def quantile_bins(z: Sequence[float], bins: int = 4) -> np.ndarray:
    """Bin labels ``0 … bins-1`` of ``z`` by rank: the points sorted by ``z`` (ties by
    position) are cut into ``bins`` groups of equal size (±1), so every bin has
    ``n // bins`` or one more points even when values tie."""
    z = np.asarray(z, dtype=float)
    if bins < 1:
        raise ValueError("bins must be at least 1")
    order = np.argsort(z, kind="stable")
    labels = np.empty(len(z), dtype=int)
    for b, part in enumerate(np.array_split(order, bins)):
        labels[part] = b
    return labels


def reliability_bound(reliability: float) -> float:
    """``sqrt(reliability)``: the largest correlation any estimator can have with a ground
    truth whose test–retest correlation is ``reliability`` (0 when it is not positive)."""
    if not math.isfinite(reliability):
        return math.nan
    return math.sqrt(max(0.0, reliability))


def typical_seconds(seconds: Sequence[float]) -> float:
    """An estimator's seconds per architecture: the median of its wall times. Not the mean:
    on a shared machine one evaluation that was descheduled or paused would dominate it."""
    return float(np.median(np.asarray(seconds, dtype=float)))


def mean_placement(scores: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Where a ranking puts each group: the mean over the group's members of their placement
    ``(rank - 1) / (n - 1)`` among all ``n`` (0 = best, 1 = worst; ``scores`` higher-is-better,
    ties averaged). A group's value far from the truth's shows an estimator misplacing a
    whole kind of architecture, which within-group correlations cannot show."""
    s = np.asarray(scores, dtype=float)
    g = np.asarray(list(groups), dtype=object)
    if len(s) != len(g):
        raise ValueError(f"{len(s)} scores for {len(g)} group labels")
    place = (sps.rankdata(-s) - 1) / max(len(s) - 1, 1)
    return {str(k): float(place[g == k].mean()) for k in dict.fromkeys(g.tolist())}
