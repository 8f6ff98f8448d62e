"""rwenas study: pool correlation, per-generation study, init study, CLI (tiny settings)."""

from __future__ import annotations

import csv
import math
import sqlite3

import numpy as np
import pytest
from scipy import stats

from rwenas import cli
from rwenas.errors import ConfigError
from rwenas.estimators.base import Score
from rwenas.estimators.short_training import ShortTraining
from rwenas.study.along_search import study_along_search, summarise_generations
from rwenas.study.bench import BenchBudget, bench_records, build_bench
from rwenas.study.estimators import STUDY_ESTIMATORS, make_study_estimator, rank_correlation
from rwenas.study.init_ablation import study_init
from rwenas.study.pool import correlate_pool, pool_records
from rwenas.study.providers import BenchProvider

TINY = BenchBudget(channels=4, layers=2, epochs=1, train_size=200, test_size=100)
FAST_RWE = {"rwe": {"epochs": 2, "folds": 1}}
SIZES = {"train_size": 200, "val_size": 100}
#: estimator networks (along the searches, RWE variants): tiny, but 3 cells so that normal
#: cells are built
TINY_NET = {"channels": 4, "layers": 3}
ALONG = {"train_size": 100, "val_size": 50, "network": TINY_NET}


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "bench"
    build_bench(path, dataset="synthetic", budget=TINY, size=6, retest=3, seed=0)
    return path


class Oracle:
    """A fake estimator that knows the bench's accuracies: value = -accuracy."""

    name = "oracle"

    def __init__(self, accs, sign=-1.0):
        self.accs = accs
        self.sign = sign

    def score(self, factory, split, *, seed=0):
        net = factory()
        key = net.key
        return Score(self.sign * self.accs[key], 0.0, 0.001, self.name)


def test_rank_correlation_signs_and_degenerate_cases():
    acc = [0.1, 0.5, 0.3, 0.9]
    assert rank_correlation([-a for a in acc], acc) == pytest.approx((1.0, 1.0))
    assert rank_correlation([1 - a for a in acc], acc) == pytest.approx((1.0, 1.0))
    assert rank_correlation(acc, acc) == pytest.approx((-1.0, -1.0))
    assert all(math.isnan(x) for x in rank_correlation([1, 1, 1], [0.1, 0.2, 0.3]))
    assert all(math.isnan(x) for x in rank_correlation([1.0], [0.1]))
    rho, _ = rank_correlation([math.inf, 0.2, 0.1], [0.0, 0.5, 0.9])  # +inf is the worst
    assert rho == pytest.approx(1.0)


def test_registry_has_short_training():
    assert "short_training" in STUDY_ESTIMATORS and "rwe" in STUDY_ESTIMATORS
    est = make_study_estimator("short-training", epochs=1, channels=4, layers=2)
    assert isinstance(est, ShortTraining) and est.network == {"channels": 4, "layers": 2}
    with pytest.raises(ConfigError, match="unknown estimator"):
        make_study_estimator("oracle")
    with pytest.raises(ConfigError, match="bad options"):
        make_study_estimator("synflow", nonsense=1)


def _oracle_factory(monkeypatch):
    """Let an oracle estimator see the key of the network it is given."""
    import rwenas.study.estimators as study

    real_factory = study.ScoreCache.factory

    def factory(self, genome, estimator=None):
        make = real_factory(self, genome, estimator)
        key = self.space.key(genome)

        def build():
            net = make()
            net.key = key
            return net
        return build

    monkeypatch.setattr(study.ScoreCache, "factory", factory)


def test_correlate_pool_against_scipy_and_an_oracle(bench_dir, tmp_path, monkeypatch):
    import rwenas.study.estimators as study

    records = bench_records(bench_dir)
    truth = {r["key"]: r["truth"] for r in records}
    _oracle_factory(monkeypatch)
    ests = {"oracle": Oracle(truth), "anti": Oracle(truth, sign=1.0),
            "params": make_study_estimator("params"),
            "short_training": make_study_estimator("short_training", epochs=1, channels=4,
                                                   layers=2)}
    out = tmp_path / "out"
    report = correlate_pool(bench_dir, ests, out_dir=out, reference="oracle", resamples=200,
                            **SIZES)
    overall = report["groups"][0]
    assert overall["group"] == "all" and overall["n"] == len(records)
    by = {r["estimator"]: r for r in overall["rows"]}
    assert list(by) == ["oracle", "anti", "params", "short_training"]
    if len(set(truth.values())) > 1:
        assert by["oracle"]["spearman"].value == pytest.approx(1.0)
        assert by["anti"]["spearman"].value == pytest.approx(-1.0)
        assert by["anti"]["diff"].value == pytest.approx(2.0)
        assert by["anti"]["p_reference_better"] == 1.0
    # the stored numbers against scipy, by hand, with the truth the mean of both runs
    from rwenas.data import load_dataset, search_split
    from rwenas.evaluation import derive_seed
    from rwenas.spaces import get_space

    space = get_space("micro")
    ds = load_dataset("synthetic")
    split = search_split(ds, seed=0, **SIZES)
    sc = study.ScoreCache(space, split, ds.info)
    est = make_study_estimator("params")
    values = [sc.score("params", est, r["genome"]).value for r in records]
    acc_list = [np.mean([r["test_acc"], *r["retest_acc"]]) for r in records]
    rho = stats.spearmanr([-v for v in values], acc_list).statistic
    tau = stats.kendalltau([-v for v in values], acc_list).statistic
    assert by["params"]["spearman"].value == pytest.approx(rho, nan_ok=True)
    assert by["params"]["kendall"].value == pytest.approx(tau, nan_ok=True)
    assert values[0] == pytest.approx(-est.score(sc.factory(records[0]["genome"]), split,
                                                 seed=derive_seed(0, records[0]["key"])).raw)
    retested = [r for r in records if r["retest_acc"]]
    assert report["retest"]["n"] == 3
    a = [r["test_acc"] for r in retested]
    b = [r["retest_acc"][0] for r in retested]
    if np.ptp(a) > 0 and np.ptp(b) > 0:
        assert report["retest"]["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
    assert report["seconds"]["short_training"] > 0
    with open(out / "correlation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["estimator"] for r in rows if r["group"] == "all"][:4] == list(by)
    md = (out / "study.md").read_text()
    assert "| **oracle** |" in md and "Reliability of the truth" in md
    assert "Spearman within MAdds bins" in md and "n = " in md
    assert (out / "correlation.png").stat().st_size > 1000
    assert (out / "bins.csv").is_file()


class SeedNoise:
    """A fake estimator whose value is a draw of the seed it is given (pure noise)."""

    name = "seednoise"

    def score(self, factory, split, *, seed=0):
        return Score(float(np.random.default_rng(seed).random()), 0.0, 0.001, self.name)


def test_correlate_pool_scores_each_estimator_again_with_another_seed(bench_dir, tmp_path):
    """--rescore-seed: each estimator's agreement with itself under the second seed, by hand
    from the per-architecture seeds the scores are drawn with (it is 1 if the second
    scoring reused the first seed)."""
    from rwenas.evaluation import derive_seed

    records = bench_records(bench_dir)
    ests = {"seednoise": SeedNoise(), "params": make_study_estimator("params")}
    out = tmp_path / "again"
    report = correlate_pool(bench_dir, ests, out_dir=out, reference=None, resamples=100,
                            retest_seed=7, **SIZES)
    rows = {r["estimator"]: r for r in report["estimator_retest"]["rows"]}
    assert report["estimator_retest"]["seed"] == 7
    draw = [np.random.default_rng(derive_seed(s, r["key"])).random() for s in (0, 7)
            for r in records]
    first, second = draw[:len(records)], draw[len(records):]
    assert rows["seednoise"]["agreement"].value == pytest.approx(
        stats.spearmanr(first, second).statistic)
    assert rows["seednoise"]["spearman"].value == pytest.approx(
        stats.spearmanr([-v for v in second], [r["truth"] for r in records]).statistic)
    assert rows["params"]["agreement"].value == pytest.approx(1.0)  # no seed in a count
    md = (out / "study.md").read_text()
    assert "## Each estimator scored again (seed 7, all architectures)" in md
    with open(out / "estimator_retest.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["estimator"] for r in written] == ["seednoise", "params"]
    assert float(written[0]["agreement"]) == pytest.approx(rows["seednoise"]["agreement"].value)
    plain = correlate_pool(bench_dir, ests, resamples=100, **SIZES)
    assert "estimator_retest" not in plain


def test_pool_halves_partition_the_pool(bench_dir, monkeypatch):
    from rwenas.study.pool import pool_records

    _oracle_factory(monkeypatch)
    every = {r["key"] for r in pool_records(bench_dir)}
    tuning = {r["key"] for r in pool_records(bench_dir, half="tuning")}
    confirmation = {r["key"] for r in pool_records(bench_dir, half="confirmation")}
    assert tuning | confirmation == every and not tuning & confirmation
    assert abs(len(tuning) - len(confirmation)) <= 3  # ±1 per source
    with pytest.raises(ConfigError, match="unknown half"):
        pool_records(bench_dir, half="third")


def test_study_along_search_and_init(bench_dir, tmp_path):
    before = bench_records(bench_dir)
    provider = BenchProvider(bench_dir, cache_dir=tmp_path / "cache")
    try:
        out = tmp_path / "along"
        rows = study_along_search(provider, "rwe,params", estimator_options=FAST_RWE,
                                  seeds=2, generations=2, pop_size=4, out_dir=out, **ALONG)
        assert len(rows) == 2 * 2 * 2
        assert {r["generation"] for r in rows} == {0, 1}
        assert all(r["n"] == 4 for r in rows if r["generation"] == 0)
        assert all(4 < r["n"] <= 8 for r in rows if r["generation"] == 1)
        trained = provider.trained
        assert trained > 0
        # trained on demand into the cache: the bench's pool is untouched
        assert bench_records(bench_dir) == before
        cached = bench_records(tmp_path / "cache", ["on_demand"])
        assert len(cached) == trained and bench_records(tmp_path / "cache") == []
        summary = summarise_generations(rows)
        for s in summary:
            vals = [r["spearman"] for r in rows if r["estimator"] == s["estimator"]
                    and r["generation"] == s["generation"] and math.isfinite(r["spearman"])]
            if vals:
                assert s["mean"] == pytest.approx(np.mean(vals))
                assert s["std"] == pytest.approx(np.std(vals))
        md = (out / "study.md").read_text()
        assert "| rwe |" in md and "±" in md and "gen 1" in md
        assert (out / "along_search.png").stat().st_size > 1000
        assert (out / "summary.csv").is_file() and (out / "along_search.csv").is_file()

        # the same searches again: every architecture is in the bench or its cache now,
        # also for a new provider reusing the cache
        study_along_search(provider, "params", estimator_options=FAST_RWE, seeds=2,
                           generations=2, pop_size=4, **ALONG)
        assert provider.trained == trained
        again = BenchProvider(bench_dir, cache_dir=tmp_path / "cache")
        try:
            study_along_search(again, "params", estimator_options=FAST_RWE, seeds=1,
                               generations=2, pop_size=4, **ALONG)
            assert again.trained == 0
        finally:
            again.close()

        out2 = tmp_path / "init"
        rows = study_init(provider, methods=["default", "xavier_uniform"],
                          rwe_options=FAST_RWE["rwe"], seeds=1, generations=2, pop_size=4,
                          out_dir=out2, **ALONG)
        assert {r["estimator"] for r in rows} == {"rwe[default]", "rwe[xavier_uniform]"}
        assert "rwe[xavier_uniform]" in (out2 / "study.md").read_text()
        with pytest.raises(ConfigError, match="unknown init"):
            study_init(provider, methods=["orthogonal"], seeds=1, generations=1, pop_size=4)
    finally:
        provider.close()


def _main(argv, monkeypatch):
    from rwenas.cli.bench import add_bench
    from rwenas.cli.study import add_study

    if add_study not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, add_bench, add_study])
    return cli.main(argv)


def test_cli_correlation_on_the_pool(bench_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    argv = ["study", "correlation", "--bench", str(bench_dir), "--out", str(out),
            "--estimators", "params,madds", "--train-size", "200", "--val-size", "100",
            "--resamples", "100", "--quiet"]
    assert _main(argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    n = len(bench_records(bench_dir))
    assert f"## All architectures (n = {n})" in printed
    assert "| params |" in printed and "| madds |" in printed
    assert (out / "correlation.csv").is_file()
    half = len(pool_records(bench_dir, half="confirmation"))
    assert _main([*argv, "--half", "confirmation", "--sources", "uniform,light,conv"],
                 monkeypatch) == 0
    assert f"## All architectures (n = {half})" in capsys.readouterr().out


def test_tune_picks_within_the_budget_and_confirms(bench_dir, tmp_path, monkeypatch, capsys):
    import json

    import rwenas.study.tune as tune

    small = {name: tune.Variant(name, desc, rwe=rwe, network=TINY_NET, images=(200, 100))
             for name, desc, rwe in (
                 ("default", "the default", {}),
                 ("no-standardise", "not standardised", {"standardize": False}),
                 ("all-cells", "every cell", {"features": "all_cells"}))}
    result = tune.tune_rwe(bench_dir, list(small.values()), budget=1e6, resamples=100,
                           rwe_overrides=FAST_RWE["rwe"], out_dir=tmp_path / "tune")
    tuning = len(pool_records(bench_dir, half="tuning"))
    assert result["n"] == tuning
    rows = {r["variant"]: r for r in result["rows"]}
    best = max(rows.values(), key=lambda r: (r["spearman"].value, -r["seconds"]))
    assert result["picked"]["variant"] == best["variant"]
    assert rows["default"]["diff"] is None and rows["all-cells"]["diff"] is not None
    picked = json.loads((tmp_path / "tune" / "picked.json").read_text())
    assert picked["variant"] == best["variant"] and picked["half"] == "tuning"
    md = (tmp_path / "tune" / "tune.md").read_text()
    assert "Picked" in md
    # a pick other than the default says how it stands against the default (paired)
    assert ("Against the default:" in md) == (best["variant"] != "default")
    # nothing within a tiny budget: nothing picked
    none = tune.tune_rwe(bench_dir, list(small.values())[:1], budget=1e-9, resamples=20,
                         rwe_overrides=FAST_RWE["rwe"])
    assert none["picked"] is None
    # the CLI: tune by name, then report on the confirmation half only
    monkeypatch.setattr(tune, "VARIANTS", small)
    argv = ["study", "tune", "--bench", str(bench_dir), "--out", str(tmp_path / "t2"),
            "--variants", "default,all-cells", "--resamples", "50", "--quiet"]
    assert _main(argv, monkeypatch) == 0
    assert "# RWE variants on the tuning half" in capsys.readouterr().out
    base = ["study", "correlation", "--bench", str(bench_dir), "--out", str(tmp_path / "c"),
            "--estimators", "rwe,params", "--rwe-epochs", "2", "--rwe-folds", "1",
            "--resamples", "50", "--quiet", "--tuned", str(tmp_path / "t2" / "picked.json"),
            "--train-size", "200", "--val-size", "100"]
    assert _main(base, monkeypatch) == 2
    assert "confirmation half only" in capsys.readouterr().err
    assert _main([*base, "--half", "confirmation"], monkeypatch) == 0
    confirmation = len(pool_records(bench_dir, half="confirmation"))
    printed = capsys.readouterr().out
    assert f"## All architectures (n = {confirmation})" in printed
    assert "picked on the tuning half" in printed
    # a pick other than the default is confirmed against the shipped RWE too (paired), a
    # pick of the default is not compared with itself
    t2 = json.loads((tmp_path / "t2" / "picked.json").read_text())
    for variant, rwe in (("all-cells", {"features": "all_cells"}), ("default", {})):
        f = tmp_path / f"picked-{variant}.json"
        f.write_text(json.dumps({**t2, "variant": variant, "rwe": rwe}))
        argv = [*base[:-6], "--tuned", str(f), "--train-size", "200", "--val-size", "100",
                "--half", "confirmation"]
        assert _main(argv, monkeypatch) == 0
        rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| rwe[")]
        if variant == "default":
            assert rows == []
        else:  # its row of the whole half holds the paired interval of rwe − rwe[default]
            assert "[" in rows[0].split(" | ")[3]
    assert _main([*base, "--half", "confirmation", "--split-seed", "3"], monkeypatch) == 2
    assert "--split-seed 0" in capsys.readouterr().err


def test_cli_rwe_variants_are_measured_beside_rwe(bench_dir, tmp_path, monkeypatch, capsys):
    """`--rwe-variants` scores each named variant with its own network and images, exactly
    as `study tune` does, and takes its paired interval against plain rwe."""
    import rwenas.study.tune as tune

    small = {name: tune.Variant(name, desc, rwe=rwe, network=TINY_NET, images=(120, 60))
             for name, desc, rwe in (("default", "the default", {}),
                                     ("all-cells", "every cell", {"features": "all_cells"}),
                                     ("xavier", "Xavier", {"init": "xavier_uniform"}))}
    monkeypatch.setattr(tune, "VARIANTS", small)
    tuned = tmp_path / "tuned.db"
    tune.tune_rwe(bench_dir, "all-cells,xavier", budget=1e6, resamples=50,
                  rwe_overrides=FAST_RWE["rwe"], score_store=tuned)
    store = tmp_path / "scores.db"  # another store: the CLI computes its own scores
    out = tmp_path / "variants"
    argv = ["study", "correlation", "--bench", str(bench_dir), "--out", str(out),
            "--estimators", "params,rwe", "--rwe-variants", "default,all-cells,xavier",
            "--rwe-epochs", "2", "--rwe-folds", "1", "--train-size", "200", "--val-size",
            "100", "--half", "tuning", "--resamples", "50", "--quiet", "--score-cache",
            str(store)]
    assert _main(argv, monkeypatch) == 0
    with open(out / "correlation.csv") as f:
        rows = {r["estimator"]: r for r in csv.DictReader(f)
                if r["group"] == "all" and r["estimator"] != "retest"}
    # default is plain rwe, not a second copy; the variants follow it, then the others
    assert list(rows) == ["rwe", "rwe[all-cells]", "rwe[xavier]", "params"]
    # each variant scored in the tuning's context (its network, its images, its options),
    # to the same values, which differ from plain rwe's
    def stored(path, label):
        with sqlite3.connect(path) as db:
            return dict(db.execute("SELECT context || key, value FROM scores WHERE label=?",
                                   (label,)).fetchall())

    n = len(pool_records(bench_dir, half="tuning"))
    for name in ("all-cells", "xavier"):
        assert len(stored(tuned, name)) == n
        assert stored(store, f"rwe[{name}]") == stored(tuned, name)
    plain = sorted(stored(store, "rwe").values())
    assert len(plain) == n and plain != sorted(stored(store, "rwe[xavier]").values())
    assert float(rows["rwe[xavier]"]["diff"]) == pytest.approx(
        float(rows["rwe"]["spearman"]) - float(rows["rwe[xavier]"]["spearman"]), abs=1e-9)
    capsys.readouterr()
    for extra, message in ((["--rwe-variants", "l9"], "unknown RWE variant(s) l9"),
                           (["--rwe-variants", "xavier", "--estimators", "params"],
                            "include it in --estimators")):
        assert _main([*argv, *extra], monkeypatch) == 2
        err = capsys.readouterr().err
        assert err.startswith("rwenas: error:") and message in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--bench", "/nonexistent/bench"], "does not exist"),
    (["--bench", "{bench}", "--estimators", "rwe,oracle"], "unknown estimator 'oracle'"),
    (["--along-search"], "give --bench"),
    (["--along-search", "--nb301-models", "/nonexistent"], "NAS-Bench-301"),
    (["--bench", "{bench}", "--sources", "uniform,nope"], "unknown source(s) nope"),
    (["--bench", "{bench}", "--tuned", "/nonexistent.json", "--half", "confirmation"],
     "does not exist"),
    (["--bench", "{bench}", "--seed", "-2"], "seed must be an integer in [0, "),
    (["--bench", "{bench}", "--half", "middle"], "invalid choice"),
    (["--bench", "{bench}", "--estimators", "params", "--rescore-seed", "0"],
     "needs another seed than 0"),
    (["--bench", "{bench}", "--along-search", "--rescore-seed", "1"],
     "apply to the pool study"),
    (["--bench", "{bench}", "--along-search", "--rwe-variants", "l8"],
     "apply to the pool study"),
])
def test_cli_errors_are_one_line(extra, message, bench_dir, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_nb301(name, *args, **kwargs):
        if name.startswith("nasbench301"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nb301)
    extra = [e.replace("{bench}", str(bench_dir)) for e in extra]
    argv = ["study", "correlation", "--out", str(tmp_path / "o"), "--quiet", *extra]
    assert _main(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_init_on_the_pool_is_fig4_with_paired_differences(bench_dir, tmp_path, monkeypatch,
                                                              capsys):
    common = ["--bench", str(bench_dir), "--train-size", "200", "--val-size", "100",
              "--rwe-epochs", "2", "--rwe-folds", "1", "--resamples", "100", "--quiet",
              "--score-cache", "none"]
    out = tmp_path / "init-pool"
    assert _main(["study", "init", "--pool", "--out", str(out), "--methods",
                  "default,xavier_uniform", *common], monkeypatch) == 0
    printed = capsys.readouterr().out
    assert f"## All architectures (n = {len(bench_records(bench_dir))})" in printed
    with open(out / "correlation.csv") as f:
        rows = {r["estimator"]: r for r in csv.DictReader(f) if r["group"] == "all"}
    assert list(rows)[:2] == ["rwe[default]", "rwe[xavier_uniform]"]
    # the default initialisation is plain RWE: the same Spearman as `study correlation`
    ref = tmp_path / "rwe"
    assert _main(["study", "correlation", "--out", str(ref), "--estimators", "rwe", *common],
                 monkeypatch) == 0
    with open(ref / "correlation.csv") as f:
        plain = {r["estimator"]: r for r in csv.DictReader(f) if r["group"] == "all"}
    assert rows["rwe[default]"]["spearman"] == plain["rwe"]["spearman"]
    # differences are taken against the default initialisation
    assert rows["rwe[default]"]["diff"] == ""
    assert all(rows[k]["spearman"] not in ("", "nan") for k in ("rwe[default]",
                                                               "rwe[xavier_uniform]"))
    assert float(rows["rwe[xavier_uniform]"]["diff"]) == pytest.approx(
        float(rows["rwe[default]"]["spearman"])
        - float(rows["rwe[xavier_uniform]"]["spearman"]), abs=1e-9)
    capsys.readouterr()
    assert _main(["study", "init", "--pool", "--out", str(tmp_path / "bad"), "--methods",
                  "orthogonal", *common], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("rwenas: error: unknown init method(s) orthogonal")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_along_search_with_a_score_store_does_not_score_the_searches_again(
        bench_dir, tmp_path, monkeypatch):
    from rwenas.estimators.proxies import RWEEstimator

    calls = []
    real = RWEEstimator.score

    def counting(self, factory, split, *, seed=0):
        calls.append(seed)
        return real(self, factory, split, seed=seed)

    monkeypatch.setattr(RWEEstimator, "score", counting)
    store = tmp_path / "scores.db"
    provider = BenchProvider(bench_dir, cache_dir=tmp_path / "cache")
    try:
        first = study_along_search(provider, "rwe,params", estimator_options=FAST_RWE, seeds=1,
                                   generations=2, pop_size=4, score_store=store, **ALONG)
        n_scored = len(calls)
        assert n_scored > 0 and store.is_file()
        calls.clear()
        again = study_along_search(provider, "rwe,params", estimator_options=FAST_RWE, seeds=1,
                                   generations=2, pop_size=4, score_store=store, **ALONG)
        assert calls == []  # the searches and the correlations read the stored scores
        assert again == first
        study_along_search(provider, "rwe,params", estimator_options=FAST_RWE, seeds=1,
                           generations=2, pop_size=4, **ALONG)
        assert len(calls) == n_scored  # without the store: everything scored again
    finally:
        provider.close()


def test_tune_budget_uses_the_median_wall_time(bench_dir, monkeypatch):
    """One evaluation paused for 1000 s (a shared machine) must not push a 1-second variant
    out of a 5-second budget; the mean is still reported."""
    import rwenas.study.pool as pool
    import rwenas.study.tune as tune

    records = pool_records(bench_dir, half="tuning")
    n = len(records)
    assert n >= 3

    def fake_score_pool(recs, ests, **kw):
        out = {}
        for name in ests:
            secs = [1.0] * len(recs)
            if name == "paused":
                secs[0] = 1000.0
            if name == "slow":
                secs = [6.0] * len(recs)
            # the slow variant ranks perfectly, so only the budget keeps it from the pick
            sign = -1.0 if name == "slow" else 1.0
            out[name] = [Score(sign * r["truth"] + 0.01 * i * (name == "paused"), 0.0, s, name)
                         for i, (r, s) in enumerate(zip(recs, secs, strict=True))]
        return out

    monkeypatch.setattr(pool, "score_pool", fake_score_pool)
    variants = [tune.Variant(name, name) for name in ("default", "paused", "slow")]
    result = tune.tune_rwe(bench_dir, variants, budget=5.0, resamples=20, score_store=None)
    rows = {r["variant"]: r for r in result["rows"]}
    assert rows["paused"]["seconds"] == 1.0
    assert rows["paused"]["seconds_mean"] == pytest.approx((1000.0 + (n - 1)) / n)
    assert rows["paused"]["within_budget"] and not rows["slow"]["within_budget"]
    assert result["picked"]["variant"] in ("default", "paused")


class StopsAfter(BenchProvider):
    """A provider whose time limit strikes after the first ``k`` architectures it is asked
    to train (the ones the bench lacks)."""

    def __init__(self, *args, k, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = k

    def prefetch(self, genomes):
        todo = self.missing(genomes)
        super().prefetch([item["genome"] for item in todo[: self.k]])
        return len(self.missing(genomes))


def test_a_time_limit_leaves_whole_generations_of_every_search(bench_dir, tmp_path):
    from rwenas.study.along_search import Unfinished

    pop = 4
    searches = {"seeds": 2, "generations": 3, "pop_size": pop, **ALONG}
    out = tmp_path / "partial"
    # trainings go generation by generation across the searches: the first 2 * pop are the
    # initial populations of both searches (searching seed by seed, they would be seed 0's
    # first generations, and no generation would be complete in both)
    stopped = StopsAfter(bench_dir, cache_dir=tmp_path / "cache", k=2 * pop)
    try:
        with pytest.raises(Unfinished) as info:
            study_along_search(stopped, "rwe,params", estimator_options=FAST_RWE,
                               out_dir=out, **searches)
    finally:
        stopped.close()
    exc = info.value
    assert exc.generations == 1 and exc.remaining > 0
    assert {(r["seed"], r["generation"]) for r in exc.rows} == {(0, 0), (1, 0)}
    md = (out / "study.md").read_text()
    assert "Partial" in md and "generations 0-0" in md and "gen 0" in md and "gen 1" not in md
    complete = BenchProvider(bench_dir, cache_dir=tmp_path / "cache")
    try:
        rows = study_along_search(complete, "rwe,params", estimator_options=FAST_RWE,
                                  out_dir=out, **searches)
    finally:
        complete.close()
    assert [r for r in rows if r["generation"] == 0] == exc.rows
    assert {r["generation"] for r in rows} == {0, 1, 2}
    assert "Partial" not in (out / "study.md").read_text()


def test_cli_along_search_at_its_time_limit_prints_the_complete_generations(
        bench_dir, tmp_path, monkeypatch, capsys):
    base = ["study", "correlation", "--along-search", "--bench", str(bench_dir), "--cache",
            str(tmp_path / "cache"), "--estimators", "params", "--seeds", "2",
            "--pop-size", "4", "--train-size", "100", "--val-size", "50", "--rwe-epochs", "2",
            "--rwe-folds", "1", "--quiet"]
    assert _main([*base, "--generations", "1", "--out", str(tmp_path / "g1")],
                 monkeypatch) == 0
    capsys.readouterr()
    assert _main([*base, "--generations", "3", "--time-limit", "1e-9", "--out",
                  str(tmp_path / "g3")], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "left at the time limit" in out
    assert "partial results (generations 0-0 of every search)" in out
    assert "| params |" in out and "gen 0" in out and "gen 1" not in out
