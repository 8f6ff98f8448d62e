"""rwenas.study.correlation: the pool study's report on synthetic estimators with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rwenas.study.correlation import (
    correlation_report,
    estimator_retest,
    format_report,
    scores_from_values,
)
from rwenas.study.stats import partial_spearman, spearman


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    n = 120
    sources = np.array(["uniform", "light", "conv", "search"] * (n // 4))
    madds = rng.uniform(1, 20, n) + 10 * (sources != "light")
    truth = 0.01 * madds + rng.normal(0, 0.05, n)
    values = {  # lower is better
        "rwe": -(truth + rng.normal(0, 0.03, n)),
        "madds": -madds,
        "noise": rng.normal(size=n),
    }
    return values, truth, sources, madds, madds * 1.3 + rng.normal(0, 0.1, n)


def test_report_groups_intervals_and_paired_differences(synthetic):
    values, truth, sources, madds, params = synthetic
    report = correlation_report(values, truth, sources, madds, params, resamples=500)
    groups = {g["group"]: g for g in report["groups"]}
    assert list(groups) == ["all", "uniform", "light", "conv", "search", "all but light"]
    assert groups["all"]["n"] == 120 and groups["light"]["n"] == 30
    assert groups["all but light"]["n"] == 90
    rows = {r["estimator"]: r for r in groups["all"]["rows"]}
    assert rows["rwe"]["spearman"].value == pytest.approx(spearman(-values["rwe"], truth))
    for r in rows.values():
        iv = r["spearman"]
        assert iv.lo <= iv.value <= iv.hi and iv.resamples == 500
    # RWE clearly ahead of noise: the paired interval excludes 0; no difference to itself
    assert rows["noise"]["diff"].lo > 0 and rows["noise"]["p_reference_better"] > 0.97
    assert rows["rwe"]["diff"] is None
    # at equal MAdds RWE still ranks (the truth has noise RWE sees), MAdds itself does not
    assert rows["rwe"]["partial_madds"].value == pytest.approx(
        partial_spearman(-values["rwe"], truth, madds))
    assert rows["rwe"]["partial_madds"].lo > 0.3
    assert math.isnan(rows["madds"]["partial_madds"].value)  # fully explained by the control
    bins = report["bins"]
    assert sum(b["n"] for b in bins["info"]) == 120 and len(bins["info"]) == 4
    assert [b["madds_lo"] <= b["madds_hi"] for b in bins["info"]] == [True] * 4
    text = format_report(report, "synthetic")
    assert "## Source group: all but light (n = 90)" in text
    assert "| **rwe** |" in text and "bin 4:" in text
    assert "unknown (no architecture trained twice)" in text
    # placement: the light cells have the lowest MAdds, hence the lowest truth; MAdds puts
    # them last as the truth does, noise does not
    place = report["placement"]
    assert list(place) == ["truth", "rwe", "madds", "noise"]
    assert place["truth"]["light"] > 0.65 and place["madds"]["light"] > 0.75
    assert abs(place["noise"]["light"] - 0.5) < 0.15
    for by_source in place.values():  # the placements of all members average to 1/2
        assert np.mean([by_source[s] for s in sources]) == pytest.approx(0.5)
    assert "| **truth** |" in text and "light (n = 30)" in text


def test_failed_estimates_rank_worst_and_reliability_is_shown():
    s = scores_from_values([0.2, np.inf, 0.1, np.nan])
    assert s[1] < s[0] and s[3] < s[0] and s[2] > s[0]  # failures below every finite one
    retest = {"n": 30, "spearman": 0.81, "spearman_lo": 0.6, "spearman_hi": 0.9,
              "kendall": 0.6, "mean_abs_diff": 0.004, "bound": 0.9, "bound_lo": 0.77,
              "bound_hi": 0.95}
    rng = np.random.default_rng(1)
    truth = rng.normal(size=10)
    report = correlation_report({"rwe": -truth}, truth, ["uniform"] * 10, rng.random(10),
                                rng.random(10), retest=retest, resamples=50)
    assert [g["group"] for g in report["groups"]] == ["all"]  # one source: no groups
    assert report["placement"] == {} and "Where each source" not in format_report(report)
    text = format_report(report)
    assert "test–retest Spearman 0.81 [0.60, 0.90] over 30" in text
    assert "sqrt(reliability) = 0.90 [0.77, 0.95]" in text
    with pytest.raises(ValueError, match="values for"):
        correlation_report({"rwe": [1.0, 2.0]}, truth, ["uniform"] * 10, truth, truth)


def test_estimator_retest_against_scipy_with_known_answers():
    """An estimator's agreement with itself under a second seed: 1 for a deterministic one,
    near 0 for pure noise, and scipy's Spearman of the two scorings for a noisy one."""
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    n = 200
    truth = rng.normal(size=n)
    signal = -truth  # lower is better
    first = {"size": signal, "noise": rng.normal(size=n),
             "noisy": signal + rng.normal(0, 1.0, n)}
    second = {"size": signal, "noise": rng.normal(size=n),
              "noisy": signal + rng.normal(0, 1.0, n)}
    rows = {r["estimator"]: r for r in estimator_retest(first, second, truth, resamples=300)}
    assert rows["size"]["agreement"].value == pytest.approx(1.0)
    assert rows["size"]["bound"] == pytest.approx(1.0)
    assert abs(rows["noise"]["agreement"].value) < 0.2
    want = sps.spearmanr(first["noisy"], second["noisy"]).statistic
    assert rows["noisy"]["agreement"].value == pytest.approx(want)
    assert rows["noisy"]["bound"] == pytest.approx(math.sqrt(want))
    # the Spearman with the truth is the second scoring's (signs: lower value is better)
    assert rows["noisy"]["spearman"].value == pytest.approx(
        sps.spearmanr(-second["noisy"], truth).statistic)
    assert rows["noisy"]["agreement"].lo < want < rows["noisy"]["agreement"].hi
    with pytest.raises(ValueError, match="values for"):
        estimator_retest({"a": [1.0, 2.0]}, {"a": [1.0, 2.0]}, truth)
