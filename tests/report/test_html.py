"""The HTML report: rebuilt from the store alone, self-contained, right front, drawings, and a
page that a headless browser renders without errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from rwenas.errors import ConfigError
from rwenas.report import drawing, write_figures
from rwenas.report.drawing import genotype_svg, inline_svg
from rwenas.report.html import front_picks, write_report
from rwenas.search.config import resolve_config
from rwenas.search.front import non_dominated
from rwenas.search.nsga2 import run_search
from rwenas.search.store import RunStore
from rwenas.spaces import MacroSpace, get_space
from rwenas.spaces.published import published

TINY = {"space": "micro", "dataset": "synthetic", "train_size": 160, "val_size": 80,
        "pop_size": 6, "generations": 3, "seed": 1,
        "network": {"channels": 4, "layers": 3}, "rwe": {"epochs": 2}}
SECTIONS = {"summary", "front", "hypervolume", "front-members", "picks", "time", "generations",
            "failures", "config"}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "micro"
    run_search(resolve_config(None, None, TINY), run_dir, progress=False, after=write_figures)
    return run_dir


@pytest.fixture(scope="module")
def macro_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "macro"
    config = {**TINY, "space": "macro", "generations": 2, "network": {"channels": 4}}
    run_search(resolve_config(None, None, config), run_dir, progress=False, after=write_figures)
    return run_dir


@pytest.fixture(scope="module")
def micro_report(micro_run: Path) -> tuple[Path, str]:
    path = write_report(micro_run)
    return path, path.read_text(encoding="utf-8")


class Page(HTMLParser):
    """Start tags with their attributes, and the id of the table each one sits in."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], str | None]] = []
        self._tables: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs, self._tables[-1] if self._tables else None))
        if tag == "table":
            self._tables.append(attrs.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._tables.pop()

    def rows(self, table_id: str) -> list[dict[str, str]]:
        return [a for t, a, table in self.elements if t == "tr" and table == table_id
                and "data-key" in a]

    def ids(self) -> set[str]:
        return {a["id"] for _, a, _ in self.elements if "id" in a}


def store_front(run_dir: Path) -> tuple[list[dict], list[str]]:
    with RunStore.open(run_dir) as store:
        ok = store.evaluations(status="ok")
        objectives = store.config["objectives"]
    idx = non_dominated(np.array([e["objectives"] for e in ok], dtype=float))
    return [ok[i] for i in idx], objectives


def pick_block(text: str, name: str) -> str:
    match = re.search(rf'<article class="pick" id="pick-{name}".*?</article>', text, re.S)
    assert match, f"no L/M/S card {name}"
    return match.group(0)


def assert_self_contained(text: str) -> None:
    lowered = text.lower()
    for bad in ("http://", "https://", "file:", "<link", "<script src", "@import", "url(",
                "<iframe", "<object", "<embed"):
        assert bad not in lowered, bad
    for tag, attrs, _ in Page(text).elements:
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster"):
            if name in attrs:
                value = attrs[name]
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])


# -- content -------------------------------------------------------------------------------------
def test_front_table_is_the_stores_non_dominated_set(micro_report, micro_run):
    path, text = micro_report
    assert path == micro_run / "report.html"
    front, _ = store_front(micro_run)
    rows = Page(text).rows("front-table")
    assert sorted(r["data-key"] for r in rows) == sorted(e["key"] for e in front)
    assert len(rows) == len(front) >= 1
    # rows list the RWE error, multiply-adds, params, generation and genome of each member
    by_key = {e["key"]: e for e in front}
    for row in re.findall(r'<tr data-key="[^"]*".*?</tr>', text.split('id="front-table"')[1]
                          .split("</table>")[0], re.S):
        key = Page(row).elements[0][1]["data-key"]
        e = by_key[key]
        values = [float(v) for v in re.findall(r'data-value="([^"]+)"', row)]
        assert values[:4] == [e["objectives"][0], e["madds_m"], e["params_m"], e["generation"]]
        assert " ".join(map(str, e["genome"])) in row


def test_every_section_and_plot_is_there(micro_report):
    _, text = micro_report
    page = Page(text)
    assert page.ids() >= SECTIONS
    images = [a for t, a, _ in page.elements if t == "img"]
    assert sorted(a["data-plot"] for a in images) == ["front", "hypervolume", "time"]
    for a in images:
        data = base64.b64decode(a["src"].removeprefix("data:image/png;base64,"))
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    for needle in ("seed", "cache hits", "total time", "rwenas version", "No failed evaluations",
                   "features", "classifiers", 'class="badge ok">complete'):
        assert needle in text
    assert 'id="config-table"' in text and "<code>network.channels</code>" in text


@pytest.mark.parametrize("run", ["micro_run", "macro_run"])
def test_page_is_self_contained(run, request):
    run_dir = request.getfixturevalue(run)
    assert_self_contained(write_report(run_dir, run_dir / "self.html").read_text())


def test_lms_picks_and_their_drawings(micro_report, micro_run):
    _, text = micro_report
    front, objectives = store_front(micro_run)
    picks = front_picks(front, objectives)
    by_madds = sorted(front, key=lambda e: (e["madds_m"], e["objectives"][0]))
    assert picks["L"]["objectives"][0] == min(e["objectives"][0] for e in front)
    assert picks["S"]["madds_m"] == by_madds[0]["madds_m"]
    assert picks["M"]["key"] == by_madds[len(by_madds) // 2]["key"]
    drawn = 0
    for name, e in picks.items():
        block = pick_block(text, name)
        assert f'data-key="{e["key"]}"' in block.replace("&gt;", ">")
        svg = re.search(r"<svg.*?</svg>", block, re.S)
        if svg is None:
            assert "Same architecture as" in block
            continue
        drawn += 1
        words = "".join(ET.fromstring(svg.group(0)).itertext())
        for op, _ in e["genotype"]["normal"] + e["genotype"]["reduce"]:
            assert op in words
        assert "normal cell" in words and "reduction cell" in words
    assert drawn >= 1


def test_macro_report_draws_phases(macro_run):
    text = write_report(macro_run).read_text()
    block = pick_block(text, "L")
    svg = re.search(r"<svg.*?</svg>", block, re.S)
    assert svg is not None
    words = "".join(ET.fromstring(svg.group(0)).itertext())
    assert "phase 1" in words and "conv3x3" in words
    front, _ = store_front(macro_run)
    assert sorted(r["data-key"] for r in Page(text).rows("front-table")) == sorted(
        e["key"] for e in front)


def test_report_without_graphviz_uses_the_plain_drawing(micro_run, tmp_path, monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    text = write_report(micro_run, tmp_path / "sub" / "r.html").read_text()
    assert 'class="plain-drawing"' in pick_block(text, "L")
    assert_self_contained(text)


# -- the drawings themselves ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["DARTS", "NASNet", "AmoebaNet", "ENAS", "NSGANet"])
def test_plain_drawing_is_valid_svg_with_every_operation(arch):
    genotype = published("micro", arch)
    svg = genotype_svg(genotype, f"{arch} <cells> & co", use_graphviz=False)
    root = ET.fromstring(svg)
    assert root.tag == "svg" and "http" not in svg
    labels = [t.text for t in root.iter("text") if t.get("class") == "op"]
    edges = [op for op, _ in genotype.normal + genotype.reduce]
    assert sorted(labels) == sorted(edges)
    assert "<cells> & co" in "".join(root.itertext())
    standalone = ET.fromstring(genotype_svg(genotype, use_graphviz=False, standalone=True))
    assert standalone.tag == "{http://www.w3.org/2000/svg}svg"


def test_plain_drawing_of_macro_phases_and_removed_phase():
    space = MacroSpace(n_phases=2, n_nodes=3)
    gt = space.decode((1, 0, 0, 1, 0, 0, 0, 0))
    words = "".join(ET.fromstring(genotype_svg(gt, use_graphviz=False)).itertext())
    assert "phase 1" in words and "removed (no connections)" in words
    nsga = get_space("macro").genotype_from_json(
        published("macro", "NSGANet").to_nested())
    root = ET.fromstring(genotype_svg(nsga, use_graphviz=False))
    assert len([t for t in root.iter("text") if (t.text or "").startswith("conv3x3")]) >= 6


def test_plain_drawing_of_every_space_sample():
    """Every operation of a sampled cell is drawn once; every conv node of a phase is drawn
    and every removed phase says so."""
    from rwenas.spaces.macro import phase_graph

    rng = np.random.default_rng(0)
    for name in ("micro", "nb301", "macro"):
        space = get_space(name)
        for _ in range(20):
            genotype = space.decode(space.sample(rng))
            root = ET.fromstring(genotype_svg(genotype, use_graphviz=False))
            texts = [t.text or "" for t in root.iter("text")]
            if name == "macro":
                graphs = [phase_graph(bits, genotype.n_nodes) for bits in genotype.phases]
                nodes = sorted(f"conv3x3 {k}" for g in graphs if g is not None
                               for k in g if k != genotype.n_nodes + 1)
                assert sorted(t for t in texts if t.startswith("conv3x3")) == nodes
                assert texts.count("removed (no connections)") == graphs.count(None)
            else:
                ops = [t.text for t in root.iter("text") if t.get("class") == "op"]
                assert sorted(ops) == sorted(op for op, _ in genotype.normal + genotype.reduce)


def test_drawing_of_an_unknown_space_is_a_config_error():
    with pytest.raises(ConfigError, match="no drawing"):
        genotype_svg(object(), use_graphviz=False)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_graphviz_drawing_is_inline_ready():
    svg = genotype_svg(published("micro", "DARTS"), "DARTS", id_prefix="x-")
    assert svg.startswith("<svg") and "http" not in svg and "<!" not in svg
    root = ET.fromstring(svg)
    assert all(el.get("id").startswith("x-") for el in root.iter() if el.get("id"))
    assert "dil_conv_3x3" in "".join(root.itertext())
    assert inline_svg(svg, standalone=True).startswith('<svg xmlns="http://www.w3.org/2000/svg"')


# -- runs that are partial, odd or not runs at all -----------------------------------------------
def test_rebuilt_from_the_store_alone(micro_run, micro_report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(micro_run, copy)
    for f in copy.iterdir():
        if not f.name.startswith("run.db"):
            f.unlink()
    text = write_report(copy).read_text()
    assert sorted(r["data-key"] for r in Page(text).rows("front-table")) == sorted(
        r["data-key"] for r in Page(micro_report[1]).rows("front-table"))


def test_run_with_an_unfinished_generation(micro_run, tmp_path):
    copy = tmp_path / "running"
    shutil.copytree(micro_run, copy)
    with sqlite3.connect(copy / "run.db") as conn:  # as if killed before generation 2 ended
        conn.execute("DELETE FROM generations WHERE generation = 2")
    conn.close()
    text = write_report(copy).read_text()
    assert 'class="badge warn">unfinished' in text and "2 of 3 generations" in text
    assert "2 (unfinished)" in text
    front, _ = store_front(copy)
    assert sorted(r["data-key"] for r in Page(text).rows("front-table")) == sorted(
        e["key"] for e in front)


def test_empty_run_then_failures_and_a_plugin_space(tmp_path):
    config = resolve_config(None, None, TINY)
    run_dir = tmp_path / "empty"
    RunStore.create(run_dir, config).close()
    text = write_report(run_dir).read_text()
    assert "No successful evaluation yet" in text and "0 of 3 generations" in text
    assert_self_contained(text)

    space = get_space("micro")
    genome = space.sample(np.random.default_rng(3))
    with RunStore.open(run_dir) as store:
        store.add_evaluation(space.key(genome), genome, objectives=[0.5, 2.0], generation=0,
                             genotype=space.genotype_to_json(space.decode(genome)),
                             params_m=0.01, madds_m=2.0, seconds=1.0, features_seconds=0.5,
                             classifier_seconds=0.2, extra={"rwe_error": 0.5, "seed": 1,
                                                            "warning": "features were <NaN>"})
        store.add_evaluation("bad", [0] * 40, objectives=[1.0, 1e12], generation=0,
                             status="failed", error="RuntimeError: out of <memory> & more",
                             attempts=3)
    text = write_report(run_dir).read_text()
    assert [r["data-key"] for r in Page(text).rows("front-table")] == [space.key(genome)]
    assert [r["data-key"] for r in Page(text).rows("failures-table")] == ["bad"]
    assert "RuntimeError: out of &lt;memory&gt; &amp; more" in text
    assert "features were &lt;NaN&gt;" in text
    assert "Same architecture as L" in pick_block(text, "S")
    assert "0 (unfinished)" in text

    with sqlite3.connect(run_dir / "run.db") as conn:  # a run of a plugin space not installed
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'",
                     ('{"space": "no_such_pkg.spaces:Mine", "seed": 5, "generations": 1}',))
    conn.close()
    with pytest.raises(ConfigError, match=r"module 'no_such_pkg\.spaces'"):
        write_report(run_dir)  # a stored plugin name is not imported unasked
    text = write_report(run_dir, trust_plugins=True).read_text()
    assert "no drawing for this space" in pick_block(text, "L")
    text = write_report(run_dir, space="no_such_pkg.spaces:Mine").read_text()
    assert "no drawing for this space" in pick_block(text, "L")


def test_front_respects_the_runs_hard_constraints(tmp_path):
    config = resolve_config(None, None, {**TINY, "max_madds": 1.5})
    space = get_space("micro")
    rng = np.random.default_rng(7)
    with RunStore.create(tmp_path / "bounded", config) as store:
        for rwe, madds in ((0.3, 2.0), (0.5, 1.0), (0.6, 1.2)):  # the first breaks the bound
            genome = space.sample(rng)
            store.add_evaluation(space.key(genome), genome, objectives=[rwe, madds],
                                 generation=0, params_m=0.01, madds_m=madds, seconds=1.0,
                                 genotype=space.genotype_to_json(space.decode(genome)),
                                 extra={"rwe_error": rwe, "seed": 1, "warning": None})
        feasible = [e["key"] for e in store.evaluations() if e["madds_m"] <= 1.5]
    text = write_report(tmp_path / "bounded").read_text()
    rows = Page(text).rows("front-table")
    assert [r["data-key"] for r in rows] == [feasible[0]]  # (0.5, 1.0) dominates (0.6, 1.2)
    assert "madds_m ≤ 1.5" in text


def test_not_a_run_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not an rwenas run directory") as info:
        write_report(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "run.db").write_bytes(b"not a database at all" * 10)
    with pytest.raises(ConfigError):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


# -- a real browser ------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_screenshot(page: Path, png: Path, profile: Path) -> subprocess.CompletedProcess:
    """Render ``page`` in headless Chromium: screenshot to ``png``, the DOM after scripts ran
    on stdout, the page's console messages (``INFO:CONSOLE``) on stderr."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", f"--screenshot={png}", "--dump-dom",
         "--window-size=1280,2400", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


# clicks the RWE-error header twice and records the row order after each click
_CLICKER = """<script>
var th = document.querySelectorAll("#front-table thead th")[1], order = [];
function keys() {
  return Array.from(document.querySelectorAll("#front-table tbody tr"), r => r.dataset.key);
}
th.click(); order.push(keys()); th.click(); order.push(keys());
document.body.setAttribute("data-sorted", JSON.stringify(order));
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_headless_chromium_renders_the_page_without_errors(micro_report, micro_run, tmp_path):
    _, text = micro_report
    page = tmp_path / "report.html"
    page.write_text(text.replace("</body>", _CLICKER + "</body>"))
    png = tmp_path / "report.png"
    result = chromium_screenshot(page, png, tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines()
               if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert png.stat().st_size > 10_000
    assert png.read_bytes().startswith(b"\x89PNG")
    body = next(a for t, a, _ in Page(result.stdout).elements if t == "body")
    assert body.get("data-ready") == "1"  # the page's own script ran to its end
    ascending, descending = json.loads(body["data-sorted"])
    front, _ = store_front(micro_run)
    rwe = {e["key"]: e["objectives"][0] for e in front}
    assert sorted(ascending) == sorted(rwe) == sorted(descending)
    assert [rwe[k] for k in ascending] == sorted(rwe.values())
    assert [rwe[k] for k in descending] == sorted(rwe.values(), reverse=True)
