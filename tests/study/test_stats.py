"""rwenas.study.stats: rank statistics and bootstrap intervals against scipy and hand
computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from rwenas.study.stats import (
    Interval,
    bootstrap_indices,
    interval,
    kendall,
    kendall_resamples,
    mean_placement,
    partial_spearman,
    partial_spearman_rows,
    quantile_bins,
    reliability_bound,
    spearman,
    spearman_rows,
)


def test_point_estimates_are_scipy_and_nan_when_undefined():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert spearman(x, y) == pytest.approx(0.8)  # 1 - 6·4 / (5·24)
    assert kendall(x, y) == pytest.approx(0.6)   # (8 - 2) / 10
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall([1], [2]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


def test_vectorised_resample_statistics_equal_scipy_on_each_resample():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 25).astype(float)  # ties, like bootstrap repeats
    y = x + rng.normal(0, 2, 25)
    idx = bootstrap_indices(25, 40, seed=1)
    rho = spearman_rows(x[idx], y[idx])
    tau = kendall_resamples(x, y, idx)
    for b in range(40):
        assert rho[b] == pytest.approx(sps.spearmanr(x[idx[b]], y[idx[b]]).statistic)
        assert tau[b] == pytest.approx(sps.kendalltau(x[idx[b]], y[idx[b]]).statistic)
    const = np.ones((2, 5))
    assert np.isnan(spearman_rows(const, np.arange(10.0).reshape(2, 5))).all()
    assert np.isnan(kendall_resamples(np.ones(5), np.arange(5.0), idx[:3, :5] % 5)).all()


def test_bootstrap_indices_are_seeded():
    a = bootstrap_indices(10, 5, seed=3)
    assert a.shape == (5, 10) and a.min() >= 0 and a.max() < 10
    assert np.array_equal(a, bootstrap_indices(10, 5, seed=3))
    assert not np.array_equal(a, bootstrap_indices(10, 5, seed=4))


def test_partial_spearman_equals_the_formula_and_removes_a_common_cause():
    rng = np.random.default_rng(2)
    z = rng.normal(size=200)
    x = z + 0.5 * rng.normal(size=200)
    y = z + 0.5 * rng.normal(size=200)  # x and y related only through z
    rxy, rxz, ryz = spearman(x, y), spearman(x, z), spearman(y, z)
    formula = (rxy - rxz * ryz) / math.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    p = partial_spearman(x, y, z)
    assert p == pytest.approx(formula, abs=1e-12)
    assert rxy > 0.6 and abs(p) < 0.15
    # y tells x apart at equal z: a large partial correlation
    y2 = x + 0.1 * rng.normal(size=200)
    assert partial_spearman(x, y2, z) > 0.8
    # hand computation: ranks x = (1,2,3,4), y = (2,1,4,3), z = (1,1,2,2) → within each z
    # level, x and y order the pair oppositely; residuals ±0.5 against ∓0.5 → −1
    assert partial_spearman([1, 2, 3, 4], [2, 1, 4, 3], [1, 1, 2, 2]) == pytest.approx(-1.0)
    # x's ranks fully explained by z: undefined
    assert math.isnan(partial_spearman([1, 2, 3, 4], [4, 1, 2, 3], [10, 20, 30, 40]))
    # two controls at once: z2 a copy of z changes nothing
    assert partial_spearman(x, y, np.column_stack([z, z])) == pytest.approx(p, abs=1e-9)
    # the vectorised resample version is the same residualisation
    idx = bootstrap_indices(200, 20, seed=0)
    rows = partial_spearman_rows(x[idx], y[idx], z[idx])
    for b in range(20):
        assert rows[b] == pytest.approx(partial_spearman(x[idx[b]], y[idx[b]], z[idx[b]]),
                                        abs=1e-9)


def _width(n: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n)
    est = truth + rng.normal(size=n)
    idx = bootstrap_indices(n, 1000, seed=0)
    iv = interval(spearman_rows(est[idx], truth[idx]), spearman(est, truth), n)
    return iv.lo, iv.value, iv.hi


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    lo30, v30, hi30 = _width(30, 1)
    lo300, v300, hi300 = _width(300, 1)
    assert lo30 <= v30 <= hi30 and lo300 <= v300 <= hi300
    assert (hi300 - lo300) < 0.6 * (hi30 - lo30)


def test_paired_interval_excludes_zero_when_one_estimator_is_clearly_better():
    rng = np.random.default_rng(5)
    n = 80
    truth = rng.normal(size=n)
    good = truth + 0.3 * rng.normal(size=n)
    bad = truth + 2.0 * rng.normal(size=n)
    idx = bootstrap_indices(n, 2000, seed=0)
    diff = spearman_rows(good[idx], truth[idx]) - spearman_rows(bad[idx], truth[idx])
    iv = interval(diff, spearman(good, truth) - spearman(bad, truth), n)
    assert iv.lo > 0 and iv.excludes_zero()
    # the same estimator against itself: a zero-width interval at 0
    same = spearman_rows(good[idx], truth[idx]) - spearman_rows(good[idx], truth[idx])
    assert not interval(same, 0.0, n).excludes_zero()


def test_interval_drops_undefined_resamples():
    iv = interval(np.array([np.nan, 0.1, 0.2, 0.3, np.nan]), 0.2, 5)
    assert iv.resamples == 3 and 0.1 <= iv.lo <= iv.hi <= 0.3
    assert math.isnan(interval(np.array([np.nan]), 0.2, 5).lo)
    assert Interval(0.2, 0.1, 0.3, 5).fmt() == "0.20 [0.10, 0.30]"
    assert Interval(math.nan, 0.1, 0.3, 5).fmt() == "–"


def test_quantile_bins_and_reliability_bound():
    labels = quantile_bins([5, 1, 1, 1, 2, 9, 7, 3], 4)
    assert sorted(np.bincount(labels)) == [2, 2, 2, 2]
    assert labels[5] == 3 and labels[1] == 0  # the largest last, the smallest first
    assert reliability_bound(0.64) == pytest.approx(0.8)
    assert reliability_bound(-0.2) == 0.0 and math.isnan(reliability_bound(math.nan))


def test_mean_placement_by_hand():
    # scores 5 > 4 > 3 = 3 > 1: placements 0, 1/4, 5/8, 5/8, 1 (the tie shares ranks 3 and 4)
    scores = [3.0, 5.0, 1.0, 4.0, 3.0]
    groups = ["b", "a", "b", "a", "c"]
    got = mean_placement(scores, groups)
    assert list(got) == ["b", "a", "c"]  # first-seen order
    assert got["a"] == pytest.approx((0 + 0.25) / 2)
    assert got["b"] == pytest.approx((0.625 + 1.0) / 2)
    assert got["c"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="group labels"):
        mean_placement(scores, groups[:4])
