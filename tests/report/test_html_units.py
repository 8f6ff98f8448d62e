"""Fast tests of the HTML report (rwenas.report.html) on hand-made run stores: the numbers,
texts and formats the page shows, and how damaged stores are read. The plots are replaced by
stand-ins (their PNGs are tested in test_html.py with real searches), so each page renders in
milliseconds and mutation testing of the module is affordable."""

from __future__ import annotations

import base64
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rwenas import __version__
from rwenas.errors import ConfigError
from rwenas.report import html as report
from rwenas.report import plots
from rwenas.report.html import (
    RunData,
    _clean_evaluation,
    _clean_generation,
    _flatten,
    _fmt_config_value,
    _fmt_number,
    _fmt_objective,
    _fmt_time,
    _int_or_none,
    _number_or_none,
    fmt_seconds,
    front_picks,
    objective_axes,
    render_report,
    store_front,
    write_report,
)
from rwenas.search.config import resolve_config
from rwenas.search.store import RunStore
from rwenas.spaces import format_genome, get_space

TINY = {"space": "micro", "dataset": "synthetic", "train_size": 160, "val_size": 80,
        "pop_size": 4, "generations": 2, "seed": 7,
        "network": {"channels": 4, "layers": 3}, "rwe": {"epochs": 2}}
SPACE = get_space("micro")


@pytest.fixture(autouse=True)
def plot_stand_ins(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Each figure is a tuple naming it and what it was given; its "PNG" is that name."""
    calls: list[tuple] = []

    def figure(name: str):
        def make(*args, **kwargs):
            calls.append((name, args, kwargs))
            return name
        return make

    monkeypatch.setattr(plots, "front_figure", figure("front"))
    monkeypatch.setattr(plots, "hypervolume_figure", figure("hypervolume"))
    monkeypatch.setattr(plots, "time_figure", figure("time"))
    monkeypatch.setattr(plots, "figure_png", lambda fig: f"PNG of {fig}".encode())
    return calls


def genome(seed: int) -> tuple[int, ...]:
    return SPACE.sample(np.random.default_rng(seed))


def add(store: RunStore, seed: int, rwe: float, madds: float, *, generation: int = 0,
        params: float = 0.5, status: str = "ok", **kwargs: Any) -> str:
    g = genome(seed)
    key = SPACE.key(g)
    if status == "failed":
        store.add_evaluation(key, g, objectives=[1.0, 1e12], generation=generation,
                             status="failed", **kwargs)
    else:
        kwargs.setdefault("extra", {"rwe_error": rwe, "seed": seed, "warning": None})
        store.add_evaluation(key, g, objectives=[rwe, madds], generation=generation,
                             genotype=SPACE.genotype_to_json(SPACE.decode(g)), params_m=params,
                             madds_m=madds, seconds=2.0, features_seconds=1.0,
                             classifier_seconds=0.5, **kwargs)
    return key


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Any]:
    """A finished two-generation run: three front members, one dominated, one failure."""
    run_dir = tmp_path / "run"
    keys = {}
    with RunStore.create(run_dir, resolve_config(None, None, TINY)) as store:
        keys["a"] = add(store, 1, 0.30, 1.0, params=0.25)      # S (fewest MAdds)
        keys["b"] = add(store, 2, 0.20, 2.0, params=0.5)       # M
        keys["dominated"] = add(store, 3, 0.35, 2.5)
        keys["failed"] = add(store, 4, 0, 0, status="failed", error="RuntimeError: <oom>",
                             attempts=3)
        keys["c"] = add(store, 5, 0.10, 4.0, generation=1, params=1.25)  # L
        store.set_state("hv_ref", [1.0, 8.0])
        store.add_generation(0, population=[keys["a"], keys["b"]], front=[keys["a"], keys["b"]],
                             hypervolume=4.5, n_evaluated=4, cache_hits=0, seconds=30.0)
        store.add_generation(1, population=[keys["a"], keys["c"]],
                             front=[keys["a"], keys["b"], keys["c"]], hypervolume=5.25,
                             n_evaluated=1, cache_hits=3, seconds=45.5)
    return {"dir": run_dir, "keys": keys}


def section(text: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">.*?</section>', text, re.S)
    assert match, name
    return match.group(0)


def stat(text: str, name: str) -> tuple[str, str]:
    match = re.search(rf'<div class="k">{re.escape(name)}</div><div class="v">(.*?)</div>'
                      r'<div class="d">(.*?)</div>', text)
    assert match, name
    return match.group(1), match.group(2)


# -- formatting --------------------------------------------------------------------------------
def test_fmt_seconds() -> None:
    assert fmt_seconds(None) == "—"
    assert fmt_seconds(0) == "0.00 s"
    assert fmt_seconds(9.994) == "9.99 s"
    assert fmt_seconds(10) == "10.0 s"
    assert fmt_seconds(59.94) == "59.9 s"
    assert fmt_seconds(60) == "1 min 00 s"
    assert fmt_seconds(125.4) == "2 min 05 s"
    assert fmt_seconds(3599) == "59 min 59 s"
    assert fmt_seconds(3600) == "1 h 00 min"
    assert fmt_seconds(7385) == "2 h 03 min"


def test_number_formats() -> None:
    assert _fmt_number(None) == "—"
    assert _fmt_number(100) == "100.0"
    assert _fmt_number(1234.56) == "1,234.6"
    assert _fmt_number(-150) == "-150.0"
    assert _fmt_number(99.99) == "99.990"
    assert _fmt_number(1) == "1.000"
    assert _fmt_number(-2.5) == "-2.500"
    assert _fmt_number(0.5) == "0.5000"
    assert _fmt_number(-0.25) == "-0.2500"
    assert _fmt_objective("rwe", 0.12345) == "12.35 %"
    assert _fmt_objective("madds", 0.12345) == "0.1235"


def test_time_formats() -> None:
    assert _fmt_time(None) == "—" and _fmt_time("") == "—"
    assert _fmt_time("2024-01-02T03:04:05.678+00:00") == "2024-01-02 03:04:05 UTC"
    assert _fmt_time("2024-01-02T03:04:05+02:00") == "2024-01-02 01:04:05 UTC"
    assert _fmt_time("yesterday") == "yesterday"


def test_config_values_and_flattening() -> None:
    assert _fmt_config_value(None) == '<span class="muted">default</span>'
    assert _fmt_config_value(True) == "true" and _fmt_config_value(False) == "false"
    assert _fmt_config_value([1, "a<b"]) == "1, a&lt;b"
    assert _fmt_config_value(("x", 2)) == "x, 2"
    assert _fmt_config_value({}) == '<span class="muted">defaults</span>'
    assert _fmt_config_value({"a": "<"}) == "{&quot;a&quot;: &quot;&lt;&quot;}"
    assert _fmt_config_value("x&y") == "x&amp;y" and _fmt_config_value(0) == "0"
    config = {"a": 1, "n": {"b": 2, "c": {"d": 3}}, "e": {}}
    assert list(_flatten(config)) == [("a", 1), ("n.b", 2), ("n.c.d", 3), ("e", {})]


def test_number_checks() -> None:
    assert _number_or_none(True) is None and _number_or_none("1") is None
    assert _number_or_none(None) is None and _number_or_none([1]) is None
    assert _number_or_none(3) == 3.0 and type(_number_or_none(3)) is float
    assert _number_or_none(2.5) == 2.5 and _number_or_none(0) == 0.0
    assert _number_or_none(math.inf) is None and _number_or_none(math.nan) is None
    assert _int_or_none(3) == 3 and _int_or_none(0) == 0
    assert _int_or_none(True) is None and _int_or_none(3.0) is None and _int_or_none("3") is None


# -- the front and its picks ---------------------------------------------------------------------
def rec(key: str, rwe: float, x: float, status: str = "ok", **more: Any) -> dict[str, Any]:
    return {"key": key, "objectives": [rwe, x], "status": status, "madds_m": x,
            "params_m": 0.1, "extra": {}, **more}


def test_objective_axes() -> None:
    assert objective_axes(["rwe", "madds"]) == (0, 1)
    assert objective_axes(["madds", "rwe"]) == (1, 0)
    assert objective_axes(["madds", "params"]) == (0, 1)
    assert objective_axes(["latency", "madds", "rwe"]) == (2, 0)


def test_store_front_is_sorted_by_the_second_objective() -> None:
    records = [rec("c", 0.1, 3.0), rec("a", 0.3, 1.0), rec("d", 0.4, 3.5), rec("b", 0.2, 2.0),
               rec("f", 0.05, 0.5, status="failed"), rec("e", 0.2, 2.0)]
    front = store_front(records, ["rwe", "madds"])
    assert [e["key"] for e in front] == ["a", "b", "e", "c"]
    swapped = [rec(e["key"], e["objectives"][1], e["objectives"][0], e["status"])
               for e in records]
    assert [e["key"] for e in store_front(swapped, ["madds", "rwe"])] == ["a", "b", "e", "c"]
    bounded = store_front(records, ["rwe", "madds"], {"max_madds": 2.5})
    assert [e["key"] for e in bounded] == ["a", "b", "e"]


def test_front_picks_by_hand() -> None:
    front = [rec("a", 0.5, 1.0), rec("b", 0.3, 2.0), rec("c", 0.2, 4.0), rec("d", 0.1, 9.0)]
    picks = front_picks(front, ["rwe", "madds"])
    assert list(picks) == ["L", "M", "S", "knee"]
    assert (picks["L"]["key"], picks["M"]["key"], picks["S"]["key"]) == ("d", "c", "a")
    assert picks["knee"]["key"] in "abcd"
    picks = front_picks(front, ["rwe", "madds"], ["madds <= 3", "knee"])
    assert picks["madds<=3"]["key"] == "b"
    assert list(picks) == ["L", "M", "S", "knee", "madds<=3"]
    with pytest.raises(ConfigError) as info:
        front_picks(front, ["rwe", "madds"], ["fastest"])
    assert str(info.value) == ("invalid report pick 'fastest': give knee or a budget like "
                               "'madds<=10'")
    assert front_picks([], ["rwe", "madds"], ["fastest"]) == {}
    ties = [rec("y", 0.1, 2.0), rec("x", 0.1, 2.0), rec("z", 0.2, 1.0)]
    picks = front_picks(ties, ["rwe", "madds"])
    assert (picks["L"]["key"], picks["M"]["key"], picks["S"]["key"]) == ("x", "x", "z")
    picks = front_picks([rec("w", 0.1, 3.0), rec("v", 0.1, 2.0)], ["rwe", "madds"])
    assert picks["L"]["key"] == "v"


# -- reading a store that may be damaged ---------------------------------------------------------
def test_clean_evaluation() -> None:
    names = ["rwe", "madds"]
    good = {"key": "k", "status": "ok", "objectives": [0.25, 2], "generation": 3, "attempts": 1,
            "genome": [1, 2], "params_m": 0.5, "madds_m": 2, "seconds": 1.5,
            "features_seconds": 1, "classifier_seconds": 0.25, "error": None,
            "created": "2024-01-01", "extra": {"rwe_error": 0.25, "warning": "w",
                                                "objectives": {"f": 1}, "raw": {"f": -1}}}
    out = _clean_evaluation(good, names)
    assert out["objectives"] == [0.25, 2.0] and out["status"] == "ok"
    assert (out["params_m"], out["madds_m"], out["seconds"], out["features_seconds"],
            out["classifier_seconds"]) == (0.5, 2.0, 1.5, 1.0, 0.25)
    assert (out["generation"], out["attempts"], out["genome"]) == (3, 1, [1, 2])
    assert out["extra"] == {"rwe_error": 0.25, "warning": "w", "objectives": {"f": 1.0},
                            "raw": {"f": -1.0}}
    assert out["error"] is None and out["key"] == "k" and out["created"] == "2024-01-01"

    bad = {"key": 5, "status": "ok", "objectives": [0.25, "x"], "generation": "3",
           "attempts": True, "genome": [1, True], "params_m": "big", "madds_m": math.inf,
           "seconds": "1", "features_seconds": [], "classifier_seconds": {}, "error": 7,
           "created": 0, "extra": {"rwe_error": "low", "latency_ms": True, "memory_mb": "3",
                                   "latency_batch_ms": "x", "latency_onnx_ms": "2",
                                   "objectives": [1], "raw": {"f": "x", 3: 2}}}
    out = _clean_evaluation(bad, names)
    assert out["objectives"] == [1.0, 1e12] and out["status"] == "failed"
    assert (out["params_m"], out["madds_m"], out["seconds"], out["features_seconds"],
            out["classifier_seconds"]) == (None,) * 5
    assert (out["generation"], out["attempts"], out["genome"]) == (-1, None, [])
    assert out["extra"] == {"rwe_error": None, "latency_ms": None, "memory_mb": None,
                            "latency_batch_ms": None, "latency_onnx_ms": None,
                            "objectives": {}, "raw": {"f": None, "3": 2.0}}
    assert (out["key"], out["error"], out["created"]) == ("5", "7", "0")
    assert _clean_evaluation({**good, "objectives": [0.25]}, names)["status"] == "failed"
    assert _clean_evaluation({**good, "objectives": "0.25"}, names)["objectives"] == [1.0, 1e12]
    assert _clean_evaluation({**good, "status": "weird"}, names)["status"] == "failed"
    assert _clean_evaluation({**good, "status": "failed"}, names)["status"] == "failed"
    assert _clean_evaluation({**good, "genome": "1 2"}, names)["genome"] == []
    assert _clean_evaluation({**good, "extra": None}, names)["extra"] == {}
    assert _clean_evaluation({**good, "error": None}, names)["error"] is None


def test_clean_generation() -> None:
    good = {"generation": 2, "n_evaluated": 3, "cache_hits": 1, "seconds": 4.5,
            "created": "t", "hypervolume": 0.5, "population": ["a"], "front": ["a"]}
    assert _clean_generation(good) == good
    bad = {"generation": "2", "n_evaluated": 2.0, "cache_hits": None, "seconds": "4",
           "created": None, "hypervolume": math.nan, "population": "a", "front": None}
    assert _clean_generation(bad) == {"generation": 0, "n_evaluated": 0, "cache_hits": 0,
                                      "seconds": 0.0, "created": "None", "hypervolume": None,
                                      "population": [], "front": []}


def _set_meta_config(run_dir: Path, config: Any) -> None:
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
    conn.close()


def test_read_checks_the_stored_configuration(run: dict[str, Any]) -> None:
    run_dir = run["dir"]
    data = RunData.read(run_dir, ["madds<=2"])
    assert data.run_dir == run_dir and data.objectives == ["rwe", "madds"]
    assert data.hv_ref == [1.0, 8.0] and data.stopped is None
    assert data.meta["rwenas_version"] == __version__
    assert [e["key"] for e in data.front] == [run["keys"][k] for k in ("a", "b", "c")]
    assert data.picks["madds<=2"]["key"] == run["keys"]["b"]
    assert [e["key"] for e in data.failed] == [run["keys"]["failed"]]
    assert len(data.ok) == 4 and len(data.evaluations) == 5 and len(data.generations) == 2

    config = resolve_config(None, None, TINY)
    _set_meta_config(run_dir, {**config, "generations": "2", "pop_size": 4.0,
                               "max_madds": "3", "max_params": 2})
    data = RunData.read(run_dir)
    assert (data.config["generations"], data.config["pop_size"]) == (None, None)
    assert (data.config["max_madds"], data.config["max_params"]) == (None, 2.0)
    _set_meta_config(run_dir, [1, 2])
    with pytest.raises(ConfigError) as info:
        RunData.read(run_dir)
    assert str(info.value) == f"{run_dir}: the stored run configuration is not a table"
    for objectives in (["rwe"], "rwe,madds", ["rwe", 5], ["rwe", "no such"]):
        _set_meta_config(run_dir, {**config, "objectives": objectives})
        with pytest.raises(ConfigError) as info:
            RunData.read(run_dir)
        assert str(info.value) == f"{run_dir}: the stored objectives are damaged"
    _set_meta_config(run_dir, {k: v for k, v in config.items() if k != "objectives"})
    assert RunData.read(run_dir).objectives == ["rwe", "madds"]  # the default


def test_read_checks_the_stored_state(run: dict[str, Any]) -> None:
    with RunStore.open(run["dir"]) as store:
        store.set_state("hv_ref", [1.0, "x"])
        store.set_state("stopped", 42)
    data = RunData.read(run["dir"])
    assert data.hv_ref == [1.0, 0.0] and data.stopped == "42"
    with RunStore.open(run["dir"]) as store:
        store.set_state("hv_ref", [1.0, 2.0, 3.0])
    assert RunData.read(run["dir"]).hv_ref is None
    with RunStore.open(run["dir"]) as store:
        store.set_state("hv_ref", "1, 2")
    assert RunData.read(run["dir"]).hv_ref is None


# -- the page ------------------------------------------------------------------------------------
def test_summary_of_a_finished_run(run: dict[str, Any]) -> None:
    text = render_report(RunData.read(run["dir"]), use_graphviz=False)
    assert stat(text, "algorithm") == ("NSGA-II", "population 4, 2 generations")
    assert stat(text, "status") == ('<span class="badge ok">complete</span>',
                                    "2 of 2 generations finished")
    assert stat(text, "seed") == ("7", "of the run")
    assert stat(text, "space") == ("micro", "dataset synthetic")
    assert stat(text, "evaluations") == ("5", "4 ok, 1 failed")
    assert stat(text, "cache hits") == ("3", "asked again, not re-evaluated")
    assert stat(text, "front size") == ("3", "non-dominated, of everything evaluated")
    assert stat(text, "hypervolume") == ("5.25", "after generation 1 at reference point (1, 8)")
    assert stat(text, "total time") == ("1 min 16 s", "wall clock of the finished generations")
    with RunStore.open(run["dir"]) as store:
        created = store.meta["created"]
        last = max([e["created"] for e in store.evaluations()]
                   + [g["created"] for g in store.generations()])
    assert stat(text, "created") == (_fmt_time(created), f"last update {_fmt_time(last)}")
    assert stat(text, "rwenas version") == (__version__, "schema 1")
    summary = section(text, "summary")
    assert summary.startswith('<section id="summary"><h2>Summary</h2><div class="stats">'
                              '<div class="stat">')  # no note
    assert summary.count('</div></div>\n<div class="stat">') == 10  # one card a line


def test_summary_of_an_unfinished_or_stopped_run(run: dict[str, Any]) -> None:
    with sqlite3.connect(run["dir"] / "run.db") as conn:
        conn.execute("DELETE FROM generations WHERE generation = 1")
        conn.execute("UPDATE meta SET value = '0.0.1' WHERE key = 'rwenas_version'")
    conn.close()
    data = RunData.read(run["dir"])
    text = render_report(data, use_graphviz=False)
    assert stat(text, "status") == ('<span class="badge warn">unfinished</span>',
                                    "1 of 2 generations finished")
    assert stat(text, "hypervolume") == ("4.5", "after generation 0 at reference point (1, 8)")
    assert stat(text, "rwenas version") == (f"0.0.1 (report by {__version__})", "schema 1")
    assert (f'<p class="note">This run has finished 1 of 2 generations: it is still running, '
            f"or it was stopped (continue it with <code>rwenas search --resume {run['dir']}"
            "</code>). The page shows what the store holds now.</p>") in text
    data.stopped = "time budget reached: <1 min>"
    text = render_report(data, use_graphviz=False)
    assert ('<p class="note" id="stopped">Stopped early: time budget reached: &lt;1 min&gt;. '
            f"Continue with <code>rwenas search --resume {run['dir']}</code> and a larger "
            "<code>--max-minutes</code> or <code>--stop-after-stagnation</code>.</p>") in text
    data.config = {**data.config, "generations": None, "algorithm": "mine"}
    data.hv_ref = None
    text = render_report(data, use_graphviz=False)
    assert stat(text, "status")[1] == "1 generations finished"
    assert stat(text, "algorithm") == ("mine", "population 4, None generations")
    assert stat(text, "hypervolume")[1] == "after generation 0"
    assert "This run has finished 1 of ? generations" not in text  # the stopped note instead
    data.stopped = None
    assert "This run has finished 1 of ? generations" in render_report(data, use_graphviz=False)


def test_summary_of_an_empty_run(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", resolve_config(None, None, TINY)).close()
    text = render_report(RunData.read(tmp_path / "run"), use_graphviz=False)
    assert stat(text, "hypervolume") == ("—", "no generation")
    assert stat(text, "total time") == ("0.00 s", "wall clock of the finished generations")
    assert stat(text, "created")[1] == "last update —"
    assert stat(text, "evaluations") == ("0", "0 ok, 0 failed")
    assert ('<h3 id="front-members">Front members</h3><p class="muted" id="front-table-empty">'
            "No successful evaluation yet.</p></section>") in text
    assert ("<figcaption>Hypervolume of the non-dominated set of everything evaluated so far, "
            "after each generation.</figcaption></figure></div>") in text
    assert ('<section id="picks"><h2>L, M and S architectures</h2>'
            '<p class="muted">No front yet.</p></section>') in text
    assert '<h3 id="generations">By generation</h3><p class="muted">Nothing evaluated yet.</p>' \
           "</section>" in text
    assert ('<section id="failures"><h2>Failed evaluations</h2><p class="muted">No failed '
            "evaluations.</p></section>") in text
    assert 'id="warnings"' not in text


def test_front_table(run: dict[str, Any], plot_stand_ins: list[tuple]) -> None:
    keys = run["keys"]
    data = RunData.read(run["dir"])
    text = render_report(data, use_graphviz=False)
    front = section(text, "front")
    assert front.count("<th ") == 6
    assert ('<th scope="col" data-type="text" class="">pick</th>'
            '<th scope="col" data-type="number" class="num">RWE error</th>'
            '<th scope="col" data-type="number" class="num">multiply-adds (M)</th>'
            '<th scope="col" data-type="number" class="num">params (M)</th>'
            '<th scope="col" data-type="number" class="num">generation</th>'
            '<th scope="col" data-type="text" class="">genome</th>') in front
    rows = re.findall(r'<tr data-key="([^"]*)" title="([^"]*)">(.*?)</tr>', front)
    assert [r[0] for r in rows] == [keys["a"], keys["b"], keys["c"]] == [r[1] for r in rows]
    c = rows[2][2]
    assert c == ('<td class="pick-cell">L</td>'
                 '<td class="num" data-value="0.1">10.00 %</td>'
                 '<td class="num" data-value="4.0">4.000</td>'
                 '<td class="num" data-value="1.25">1.250</td>'
                 '<td class="num" data-value="1.0">1</td>'
                 f'<td class="genome"><code>{format_genome(genome(5))}</code></td>')
    assert rows[0][2].startswith('<td class="pick-cell">S')
    assert rows[1][2].startswith('<td class="pick-cell">M')
    assert ("</tr></tbody></table></div><p class=\"muted small\">Click a column header to sort. "
            "The front is the non-dominated set of every successful evaluation in the store "
            "(3 of 4); hover a row for its canonical key.</p></section>") in front
    assert front.count("</tr><tr data-key=") == 2  # the rows, one after another
    assert ("<figcaption>Every evaluated architecture in grey; the front after each generation "
            "in colour, the last one bold; L, M and S circled.</figcaption></figure>"
            '<figure id="hypervolume">') in front
    assert '<img class="plot" data-plot="front" alt="Pareto front: multiply-adds (M) against ' \
           'RWE error, by generation" src="data:image/png;base64,' \
           f'{base64.b64encode(b"PNG of front").decode()}">' in front
    assert ('<img class="plot" data-plot="hypervolume" alt="Hypervolume by generation" '
            f'src="data:image/png;base64,{base64.b64encode(b"PNG of hypervolume").decode()}">'
            ) in front
    assert ("after each generation. Reference point: RWE error 1, multiply-adds 8 (fixed after "
            "the first generation).</figcaption>") in front
    (_, args, kwargs), = [c for c in plot_stand_ins if c[0] == "front"]
    assert args == (data.evaluations, data.generations, ["rwe", "madds"])
    assert kwargs == {"x": 1, "y": 0, "picks": data.picks}
    (_, args, _), = [c for c in plot_stand_ins if c[0] == "hypervolume"]
    assert args == (data.generations,)
    (_, args, _), = [c for c in plot_stand_ins if c[0] == "time"]
    assert args == (data.evaluations, data.generations)


def test_front_table_with_other_objectives_and_constraints(tmp_path: Path) -> None:
    config = resolve_config(None, None, {**TINY, "objectives": ["rwe", "params"],
                                         "max_madds": 3.5, "max_params": 1.0})
    with RunStore.create(tmp_path / "run", config) as store:
        g = genome(1)
        store.add_evaluation(SPACE.key(g), g, objectives=[0.25, 0.5], generation=0,
                             params_m=0.5, madds_m=3.0, extra={"rwe_error": 0.25})
        g2 = genome(2)
        store.add_evaluation(SPACE.key(g2), g2, objectives=[0.2, 0.25], generation=0,
                             params_m=0.25, madds_m=4.0, extra={"rwe_error": 0.2})
    data = RunData.read(tmp_path / "run")
    assert [e["key"] for e in data.front] == [SPACE.key(g)]
    text = render_report(data, use_graphviz=False)
    assert section(text, "front").count("<th ") == 6  # params has its own column already
    assert ("that meets the run's constraints (madds_m ≤ 3.5, params_m ≤ 1) (1 of 2)"
            ) in text
    assert "fewest parameters" in text and "Reference point" not in text
    config = resolve_config(None, None, {**TINY, "objectives": ["madds", "latency"]})
    with RunStore.create(tmp_path / "lat", config) as store:
        store.add_evaluation("k", genome(1), objectives=[2.0, 1.5], generation=0,
                             params_m=0.5, madds_m=2.0, extra={"latency_ms": 1.5})
    text = render_report(RunData.read(tmp_path / "lat"), use_graphviz=False)
    front = section(text, "front")
    assert '<th scope="col" data-type="number" class="num">latency, batch 1 (ms)</th>' in front
    assert ('<td class="num" data-value="2.0">2.000</td><td class="num" data-value="0.5">0.5000'
            '</td><td class="num" data-value="1.5">1.500</td>') in front
    assert '<td class="pick-cell">L·M·S·knee</td><td class="num">—</td>' in front
    with RunStore.open(tmp_path / "lat") as store:  # the RWE error of a run that does not
        store.add_evaluation("j", genome(2), objectives=[1.0, 2.5], generation=0,  # minimise it
                             params_m=0.5, madds_m=1.0, extra={"rwe_error": 0.3})
    front = section(render_report(RunData.read(tmp_path / "lat"), use_graphviz=False), "front")
    assert '<td class="num" data-value="0.3">30.00 %</td>' in front
    picks = section(text, "picks")
    assert "<h3><span class=\"letter\">L</span> lowest RWE error</h3>" in picks
    assert "<li>multiply-adds 2.000</li>" in picks
    assert "S the lowest latency" in picks


def test_picks_section(run: dict[str, Any]) -> None:
    keys = run["keys"]
    text = render_report(RunData.read(run["dir"], ["madds<=2.5"]), use_graphviz=False)
    picks = section(text, "picks")
    cards = re.findall(r'<article class="pick" id="pick-([^"]+)" data-key="([^"]+)">(.*?)'
                       r"</article>", picks, re.S)
    assert [(a, k) for a, k, _ in cards] == [("L", keys["c"]), ("M", keys["b"]),
                                              ("S", keys["a"]), ("knee", keys["b"]),
                                              ("budget-4", keys["b"])]
    body = dict((a, b) for a, _, b in cards)
    assert body["L"].startswith('<h3><span class="letter">L</span> lowest RWE error</h3>'
                                '<ul class="facts"><li>RWE error 10.00 %</li>'
                                "<li>4.000 M multiply-adds</li><li>1.250 M parameters</li>"
                                "<li>generation 1</li></ul>"
                                f'<p class="genome"><code>{format_genome(genome(5))}</code></p>'
                                '<div class="drawing"><svg')
    assert body["M"].startswith('<h3><span class="letter">M</span> middle of the front (by '
                                "multiply-adds)</h3>")
    assert body["S"].startswith('<h3><span class="letter">S</span> fewest multiply-adds</h3>')
    assert body["knee"].startswith('<h3><span class="letter">knee</span> knee of the front')
    assert body["knee"].endswith('<p class="muted">Same architecture as M (drawn above).</p>')
    assert body["budget-4"].startswith('<h3><span class="letter">madds&lt;=2.5</span> lowest '
                                       "RWE error within madds&lt;=2.5</h3>")
    assert body["budget-4"].endswith("Same architecture as M (drawn above).</p>")
    assert ('<section id="picks"><h2>L, M and S architectures</h2><p class="muted">The normal '
            "and reduction cells of members of the front, as in the paper's Fig. 2: L has the "
            "lowest RWE error, S the fewest multiply-adds, M is the middle one when the front is "
            "sorted by multiply-adds; the knee is the member farthest below the line through "
            "the front's extremes (objectives normalised to [0, 1]), and a budget pick "
            "(<code>rwenas report --pick</code>) the lowest RWE error within it.</p>"
            '<article class="pick" id="pick-L"') in picks
    assert picks.count('</article><article class="pick"') == 4 and picks.endswith(
        "</article></section>")


def test_picks_section_drawings_that_fail(run: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = RunData.read(run["dir"], ["madds<=1"])

    def no_drawing(*args, **kwargs):
        raise ConfigError("no drawing for <this>")

    monkeypatch.setattr(report, "genotype_svg", no_drawing)
    picks = section(render_report(data), "picks")
    assert picks.count('</code></p><p class="muted no-drawing">no drawing for this space</p>'
                       "</article>") == 3

    def broken(*args, **kwargs):
        raise ConfigError("bad <genotype>")

    monkeypatch.setattr(report, "genotype_svg", broken)
    picks = section(render_report(data), "picks")
    assert picks.count('<p class="muted no-drawing">drawing failed: bad &lt;genotype&gt;</p>'
                       ) == 3

    def crash(*args, **kwargs):
        raise KeyError("normal")

    monkeypatch.setattr(report, "genotype_svg", crash)
    picks = section(render_report(data), "picks")
    assert picks.count('<p class="muted no-drawing">drawing failed: &#x27;normal&#x27;</p>'
                       ) == 3

    seen = []
    monkeypatch.setattr(report, "genotype_svg", lambda genotype, **kw: seen.append(
        (genotype, kw)) or "<svg/>")
    render_report(data, use_graphviz=True)
    assert [kw for _, kw in seen] == [{"use_graphviz": True, "id_prefix": f"pick-{n}-"}
                                      for n in ("L", "M", "S")]
    assert seen[0][0] == SPACE.genotype_from_json(data.picks["L"]["genotype"])
    other = SPACE.genotype_to_json(SPACE.decode(genome(99)))
    data.picks["L"]["genotype"] = other  # the stored genotype is what is drawn
    seen.clear()
    render_report(data)
    assert seen[0][0] == SPACE.genotype_from_json(other) != SPACE.decode(data.picks["L"]["genome"])
    data.picks["L"]["genotype"] = None  # no stored genotype: decoded from the genome
    seen.clear()
    render_report(data, use_graphviz=None)
    assert seen[0][0] == SPACE.decode(data.picks["L"]["genome"])
    assert seen[0][1]["use_graphviz"] is None


def test_picks_section_without_the_space(run: dict[str, Any]) -> None:
    data = RunData.read(run["dir"])
    data.config = {**data.config, "space": "no_such_space"}
    picks = section(render_report(data, use_graphviz=False), "picks")
    assert picks.count('<p class="muted no-drawing">no drawing for this space (unknown search '
                       "space &#x27;no_such_space&#x27; (built-in: ") == 3
    data.config = {k: v for k, v in data.config.items() if k != "space"}
    picks = section(render_report(data, use_graphviz=False), "picks")
    assert picks.count("no drawing for this space (&#x27;space&#x27;)</p>") == 3
    data.config["space"] = "macro"
    assert "The phases of members of the front" in render_report(data, use_graphviz=False)


def test_time_section(run: dict[str, Any]) -> None:
    keys = run["keys"]
    with RunStore.open(run["dir"]) as store:  # an unfinished generation 2 with one evaluation
        g = genome(9)
        store.add_evaluation(SPACE.key(g), g, objectives=[0.5, 3.0], generation=2,
                             params_m=0.5, madds_m=3.0, seconds=None, extra={"rwe_error": 0.5})
    text = render_report(RunData.read(run["dir"]), use_graphviz=False)
    time = section(text, "time")
    totals = dict(re.findall(r'<tr><th scope="row">(.*?)</th><td class="num" data-value="'
                             r'([^"]*)">', time))
    assert totals == {"search (finished generations, wall clock)": "75.5",
                      "evaluations, all": "8.0", "— backbone features": "4.0",
                      "— linear classifiers": "2.0",
                      "— the rest (building networks, counting cost)": "2.0",
                      "mean per evaluation": "2.0"}
    assert ">1 min 16 s</td>" in time and ">8.00 s</td>" in time
    rows = re.findall(r"<tr>(<td .*?)</tr>", time)
    cells = [re.findall(r'<td class="num"(?: data-value="([^"]*)")?>(.*?)</td>', r)
             for r in rows]
    assert cells[0] == [("0.0", "0"), ("4.0", "4"), ("0.0", "0"), ("1.0", "1"), ("2.0", "2"),
                        ("4.5", "4.5"), ("30.0", "30.0 s"), ("6.0", "6.00 s"),
                        ("3.0", "3.00 s"), ("1.5", "1.50 s")]
    assert cells[1] == [("1.0", "1"), ("1.0", "1"), ("3.0", "3"), ("0.0", "0"), ("3.0", "3"),
                        ("5.25", "5.25"), ("45.5", "45.5 s"), ("2.0", "2.00 s"),
                        ("1.0", "1.00 s"), ("0.5", "0.50 s")]
    assert cells[2] == [("2.0", "2 (unfinished)"), ("1.0", "1"), ("", "—"), ("0.0", "0"),
                        ("", "—"), ("", "—"), ("", "—"), ("0.0", "0.00 s"), ("0.0", "0.00 s"),
                        ("0.0", "0.00 s")]
    assert len(cells) == 3 and keys


def test_time_totals_when_nothing_is_timed(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", resolve_config(None, None, TINY)) as store:
        g = genome(1)
        store.add_evaluation(SPACE.key(g), g, objectives=[0.5, 3.0], generation=0,
                             features_seconds=2.0, classifier_seconds=3.0)
    time = section(render_report(RunData.read(tmp_path / "run"), use_graphviz=False), "time")
    rows = re.findall(r'<tr><th scope="row">(.*?)</th><td class="num" data-value="([^"]*)">'
                      r"(.*?)</td></tr>", time)
    assert rows[-1] == ("mean per evaluation", "", "—")
    assert rows[-2] == ("— the rest (building networks, counting cost)", "0.0", "0.00 s")
    assert rows[1] == ("evaluations, all", "0.0", "0.00 s")
    assert rows[2] == ("— backbone features", "2.0", "2.00 s")


def test_failures_and_warnings(run: dict[str, Any]) -> None:
    keys = run["keys"]
    with RunStore.open(run["dir"]) as store:
        add(store, 11, 0.4, 3.0, extra={"rwe_error": 0.4, "warning": "features <NaN>"})
        add(store, 13, 0.45, 3.0, extra={"rwe_error": 0.45, "warning": "slow"})
        add(store, 12, 0, 0, status="failed", error=None)
    text = render_report(RunData.read(run["dir"]), use_graphviz=False)
    failures = section(text, "failures")
    rows = re.findall(r'<tr data-key="([^"]*)">(.*?)</tr>', failures)
    assert [k for k, _ in rows] == [keys["failed"], SPACE.key(genome(12))]
    assert rows[0][1] == ('<td class="num">0</td><td class="num">3</td><td><pre class="error">'
                          "RuntimeError: &lt;oom&gt;</pre></td>"
                          f'<td class="genome"><code>{format_genome(genome(4))}</code></td>')
    assert '<td class="num">1</td><td><pre class="error"></pre></td>' in rows[1][1]
    assert failures.startswith(
        '<section id="failures"><h2>Failed evaluations</h2><div class="scroll">'
        '<table id="failures-table"><thead><tr><th class="num">generation</th>'
        '<th class="num">attempts</th><th>error</th><th>genome</th></tr></thead><tbody>'
        f'<tr data-key="{keys["failed"]}">')
    assert failures.count("</tr><tr data-key=") == 1
    assert ("</tr></tbody></table></div><p class=\"muted small\">A failed evaluation gets the "
            "worst objective values, so the search moves away from it.</p><h3") in failures
    assert ('<h3 id="warnings">Warnings</h3><ul class="warnings">'
            f"<li><code>{format_genome(genome(11))}</code>: features &lt;NaN&gt;</li>"
            f"<li><code>{format_genome(genome(13))}</code>: slow</li></ul>"
            ) in failures
    assert "A failed evaluation gets the worst objective values" in failures
    with sqlite3.connect(run["dir"] / "run.db") as conn:
        conn.execute("UPDATE evaluations SET attempts = 'x' WHERE status = 'failed'")
    conn.close()
    failures = section(render_report(RunData.read(run["dir"]), use_graphviz=False), "failures")
    assert failures.count('<td class="num">—</td>') == 2


def test_config_section_and_page(run: dict[str, Any]) -> None:
    data = RunData.read(run["dir"])
    text = render_report(data, use_graphviz=False)
    config = section(text, "config")
    rows = dict(re.findall(r'<tr><th scope="row"><code>(.*?)</code></th><td>(.*?)</td></tr>',
                           config))
    assert rows["space"] == "micro" and rows["seed"] == "7"
    assert rows["network.channels"] == "4" and rows["rwe.epochs"] == "2"
    assert rows["objectives"] == "rwe, madds" and rows["download"] == "false"
    assert rows["data_dir"] == '<span class="muted">default</span>'
    assert config.startswith('<section id="config"><h2>Configuration</h2><div class="scroll">'
                             '<table id="config-table" class="kv"><tbody><tr><th scope="row">'
                             "<code>space</code></th><td>micro</td></tr><tr><th")
    assert config.endswith("</td></tr></tbody></table></div><p class=\"muted small\">The resolved "
                           "configuration stored in the run; <em>default</em> means the "
                           "built-in choice (automatic or the full split).</p></section>")
    assert "</section>\n<section id=\"front\">" in text and "</section>\n<footer>" in text
    assert re.search(r"by rwenas \S+ on\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\. This page is "
                     r"self-contained: it loads nothing from anywhere\.</footer>", text)
    title = "rwenas search: micro space on synthetic, seed 7"
    assert f"<title>{title}</title>" in text and f"<h1>{title}</h1>" in text
    assert (f'<p class="sub">Run <code>{run["dir"]}</code> &middot; objectives\n'
            "RWE error, multiply-adds</p>") in text
    assert ('<nav><a href="#summary">Summary</a><a href="#front">Front</a>'
            '<a href="#hypervolume">Hypervolume</a><a href="#front-members">Front members</a>'
            '<a href="#picks">L/M/S</a><a href="#time">Time</a><a href="#failures">Failures</a>'
            '<a href="#config">Configuration</a></nav>') in text
    assert f'<meta name="generator" content="rwenas {__version__}">' in text
    assert (f'<footer>Rebuilt from <code>{run["dir"] / "run.db"}</code> by rwenas '
            f"{__version__} on\n") in text
    order = [text.index(f'<section id="{s}">')
             for s in ("summary", "front", "picks", "time", "failures", "config")]
    assert order == sorted(order)
    data.config = {}
    assert "<title>rwenas search: ? space on ?, seed ?</title>" in render_report(
        data, use_graphviz=False)


def test_write_report(run: dict[str, Any], tmp_path: Path) -> None:
    path = write_report(run["dir"], use_graphviz=False)
    assert path == run["dir"] / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")
    assert not (run["dir"] / ".report.html.tmp").exists()
    out = write_report(run["dir"], tmp_path / "deep" / "er" / "page.html", picks=["madds<=2"],
                       use_graphviz=False)
    assert out == tmp_path / "deep" / "er" / "page.html"
    assert 'id="pick-budget-4"' in out.read_text()
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(ConfigError) as info:
        write_report(run["dir"], tmp_path / "blocker" / "page.html")
    assert str(info.value).startswith(f"cannot write the report {tmp_path / 'blocker'}"
                                      "/page.html: ")
    assert "\n" not in str(info.value)
    target = tmp_path / "dir.html"
    target.mkdir()  # the rename fails: the temporary file is removed
    with pytest.raises(ConfigError) as info:
        write_report(run["dir"], target)
    assert str(info.value) == f"cannot write the report {target}: Is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "deep", "dir.html", "run"]


def test_write_report_of_a_plugin_space_run(run: dict[str, Any]) -> None:
    config = resolve_config(None, None, TINY)
    _set_meta_config(run["dir"], {**config, "space": "someones.spaces:Theirs"})
    with pytest.raises(ConfigError) as info:
        write_report(run["dir"])
    assert str(info.value).startswith(f"the run in {run['dir']} uses the plugin search space "
                                      "'someones.spaces:Theirs'; loading it imports and runs "
                                      "module 'someones.spaces'")
    assert not (run["dir"] / "report.html").exists()
    text = write_report(run["dir"], space="someones.spaces:Theirs").read_text()
    assert "no drawing for this space" in text


def test_write_report_passes_the_drawing_choice(run: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(report, "genotype_svg",
                        lambda genotype, **kw: seen.append(kw["use_graphviz"]) or "<svg/>")
    write_report(run["dir"], use_graphviz=False)
    write_report(run["dir"], use_graphviz=True)
    write_report(run["dir"])
    assert seen == [False] * 3 + [True] * 3 + [None] * 3


def test_names_of_other_objectives_and_missing_settings(run: dict[str, Any]) -> None:
    data = RunData.read(run["dir"])
    data.objectives = ["rwe", "someones.module:score"]
    data.meta = {k: v for k, v in data.meta.items() if k != "rwenas_version"}
    data.config = {k: v for k, v in data.config.items() if k != "algorithm"}
    text = render_report(data, use_graphviz=False)
    assert "objectives\nRWE error, someones.module:score</p>" in text
    assert "Reference point: RWE error 1, someones.module:score 8 (fixed" in text
    assert stat(text, "rwenas version") == (f"? (report by {__version__})", "schema 1")
    assert stat(text, "algorithm")[0] == "NSGA-II"
    data.meta = {}
    data.config = {**data.config, "seed": "<7>"}
    text = render_report(data, use_graphviz=False)
    assert stat(text, "rwenas version") == (f"? (report by {__version__})", "schema ?")
    assert stat(text, "seed") == ("&lt;7&gt;", "of the run")


def test_front_members_without_a_pick(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", resolve_config(None, None, TINY)) as store:
        keys = [add(store, i, 0.5 - 0.05 * i, 1.0 + i) for i in range(6)]
    text = render_report(RunData.read(tmp_path / "run"), use_graphviz=False)
    rows = re.findall(r'<tr data-key="([^"]*)" title="[^"]*"><td class="pick-cell">([^<]*)</td>',
                      section(text, "front"))
    assert [k for k, _ in rows] == keys
    assert rows[0][1] == "S" and rows[3][1] == "M" and rows[5][1].startswith("L")
    assert rows[1][1] == rows[2][1] == rows[4][1] == ""  # on the front, picked by none


def test_budget_pick_drawing_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunStore.create(tmp_path / "run", resolve_config(None, None, TINY)) as store:
        keys = [add(store, i, 0.5 - 0.05 * i, 1.0 + i) for i in range(6)]
    data = RunData.read(tmp_path / "run", ["madds<=3.5"])
    assert data.picks["madds<=3.5"]["key"] == keys[2]  # picked by no other
    seen = []
    monkeypatch.setattr(report, "genotype_svg",
                        lambda genotype, **kw: seen.append(kw["id_prefix"]) or "<svg/>")
    render_report(data)
    assert seen[-1] == "pick-b4-" and seen[:3] == ["pick-L-", "pick-M-", "pick-S-"]


def test_time_section_markup(run: dict[str, Any]) -> None:
    with RunStore.open(run["dir"]) as store:  # a generation answered from the cache alone
        store.add_generation(2, population=[], front=[], hypervolume=5.25, n_evaluated=0,
                             cache_hits=4, seconds=1.0)
    with sqlite3.connect(run["dir"] / "run.db") as conn:  # the record, not the rows, counts
        conn.execute("UPDATE generations SET n_evaluated = 7 WHERE generation = 0")
    conn.close()
    time = section(render_report(RunData.read(run["dir"]), use_graphviz=False), "time")
    assert ('<table id="generations-table" class="sortable"><thead><tr>'
            + "".join(f'<th scope="col" data-type="number" class="num">{h}</th>' for h in (
                "generation", "evaluated", "cache hits", "failed", "front", "hypervolume",
                "wall time", "evaluations", "features", "classifiers"))
            + "</tr></thead><tbody><tr><td") in time
    rows = re.findall(r"<tr>(<td .*?)</tr>", time)
    assert rows[0].startswith('<td class="num" data-value="0.0">0</td>'
                              '<td class="num" data-value="7.0">7</td>')
    assert rows[2].startswith('<td class="num" data-value="2.0">2</td>'
                              '<td class="num" data-value="0.0">0</td>'
                              '<td class="num" data-value="4.0">4</td>')
    assert time.count("</td></tr><tr><td") == 2 and "</td></tr></tbody></table>" in time
    assert time.count('</td></tr><tr><th scope="row">') == 5
    assert time.endswith("</td></tr></tbody></table></div><p class=\"muted small\">Evaluated: new "
                         "architectures; cache hits: asked again and answered from the store; "
                         "front: its size after the generation; times: wall clock of the "
                         "generation, then the sums over its evaluations.</p></section>")
    assert ('<figure><img class="plot" data-plot="time" alt="Time by generation" '
            f'src="data:image/png;base64,{base64.b64encode(b"PNG of time").decode()}"></figure>'
            ) in time


def test_times_are_shown_in_utc_whatever_the_local_zone(run: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from datetime import datetime, timedelta, timezone

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30
    time.tzset()
    try:
        assert _fmt_time("2024-01-02T03:04:05+00:00") == "2024-01-02 03:04:05 UTC"
        text = render_report(RunData.read(run["dir"]), use_graphviz=False)
    finally:
        monkeypatch.undo()
        time.tzset()
    shown = re.search(r"on\n(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\.", text).group(1)
    when = datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - when) < timedelta(minutes=5)


def test_front_shows_the_objective_value_of_the_rwe_error(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "run", resolve_config(None, None, TINY)) as store:
        add(store, 1, 0.2, 1.0, extra={"rwe_error": 0.25, "seed": 1, "warning": None})
    front = section(render_report(RunData.read(tmp_path / "run"), use_graphviz=False), "front")
    assert '<td class="num" data-value="0.2">20.00 %</td>' in front
