"""One self-contained HTML page about a search run, rebuilt from its results store alone.

:func:`write_report` reads ``RUN_DIR/run.db`` (nothing else: ``front.json`` and the PNG files
may be missing) and writes ``RUN_DIR/report.html``, a single file that any browser opens
without a network or anything installed: the plots are embedded as PNG ``data:`` URIs, the
cell/phase drawings as inline SVG, the style sheet and the small table-sorting script inline.
The page holds no URL of any kind.

It works on a run that is still going (or was stopped) and on one with no finished generation
yet: it shows what the store holds.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rwenas import __version__
from rwenas.errors import ConfigError, RwenasError
from rwenas.objectives import CONSTRAINTS, is_objective_name, worst_values
from rwenas.objectives import label as objective_label
from rwenas.report import plots
from rwenas.report.drawing import genotype_svg
from rwenas.search.algorithms import DESCRIPTIONS as ALGORITHM_NAMES
from rwenas.search.front import pareto_front
from rwenas.search.picking import knee_index, record_row, select
from rwenas.search.store import RunStore
from rwenas.spaces import check_stored_space, format_genome, get_space

REPORT_NAME = "report.html"

Record = dict[str, Any]

#: what each pick of the front stands for (the paper's Fig. 2); {least} {x}: "fewest
#: multiply-adds", "lowest latency"
PICKS = {
    "L": "lowest RWE error",
    "M": "middle of the front (by {x})",
    "S": "{least} {x}",
    "knee": "knee of the front (farthest below the line through its extremes, objectives "
            "normalised)",
}
#: a budget pick, e.g. "madds<=10"
BUDGET_PICK = "lowest {error} within {budget}"


# -- the data ------------------------------------------------------------------------------------
def objective_axes(objectives: Sequence[str]) -> tuple[int, int]:
    """Indices of the RWE error and of the objective it is traded against (the first other)."""
    r = objectives.index("rwe") if "rwe" in objectives else 0
    x = next((i for i in range(len(objectives)) if i != r), r)
    return r, x


def store_front(evaluations: Sequence[Record], objectives: Sequence[str],
                config: Mapping[str, Any] | None = None) -> list[Record]:
    """The front: the non-dominated set of the successful evaluations that meet the hard
    constraints of ``config`` if any (the same set as ``front.json``), by the second objective
    (then by RWE error)."""
    front = pareto_front(evaluations, dict(config or {}))
    r, x = objective_axes(objectives)
    return sorted(front, key=lambda e: (e["objectives"][x], e["objectives"][r], e["key"]))


def front_picks(front: Sequence[Record], objectives: Sequence[str],
                extra: Sequence[str] = ()) -> dict[str, Record]:
    """L (lowest RWE error), M (the middle member when sorted by the second objective, index
    ``len // 2``), S (smallest second objective, e.g. fewest multiply-adds) and the knee of a
    front, plus the ``extra`` picks (``knee`` or budgets like ``madds<=10``, see
    :mod:`rwenas.search.picking`); empty for an empty front. A budget no member meets is
    :class:`ConfigError`."""
    if not front:
        return {}
    r, x = objective_axes(objectives)
    by_x = sorted(front, key=lambda e: (e["objectives"][x], e["objectives"][r], e["key"]))
    low = min(front, key=lambda e: (e["objectives"][r], e["objectives"][x], e["key"]))
    rows = [record_row(e, objectives) for e in front]
    picks = {"L": low, "M": by_x[len(by_x) // 2], "S": by_x[0],
             "knee": front[knee_index(rows, objectives)]}
    for pick in extra:
        index = select(rows, pick, objectives)
        if index is None:
            raise ConfigError(f"invalid report pick {pick!r}: give knee or a budget like "
                              "'madds<=10'")
        picks[str(pick).replace(" ", "")] = front[index]
    return picks


@dataclass
class RunData:
    """Everything the page shows, read from the store in one go."""

    run_dir: Path
    config: dict[str, Any]
    meta: dict[str, str]
    evaluations: list[Record]
    generations: list[Record]
    hv_ref: list[float] | None
    #: picks asked for besides L, M, S and the knee (budgets like ``madds<=10``)
    extra_picks: Sequence[str] = ()
    #: why the search stopped early (a budget), if it did
    stopped: str | None = None
    objectives: list[str] = field(init=False)
    front: list[Record] = field(init=False)
    picks: dict[str, Record] = field(init=False)

    def __post_init__(self) -> None:
        self.objectives = list(self.config.get("objectives") or ["rwe", "madds"])
        self.front = store_front(self.evaluations, self.objectives, self.config)
        self.picks = front_picks(self.front, self.objectives, self.extra_picks)

    @classmethod
    def read(cls, run_dir: str | Path, picks: Sequence[str] = ()) -> RunData:
        """Read a run's store (:class:`ConfigError` if ``run_dir`` is not a run).

        A ``run.db`` may come from anyone, and SQLite keeps whatever a column is given: the
        numbers the page computes with are checked here (a non-number becomes ``None``),
        and every value is escaped where it is written into the page. Objective functions
        (``module:function``) are only named, never imported.
        """
        with RunStore.open(run_dir) as store:
            config, meta = store.config, store.meta
            evaluations, generations = store.evaluations(), store.generations()
            hv_ref = store.get_state("hv_ref")
            stopped = store.get_state("stopped")
        if not isinstance(config, dict):
            raise ConfigError(f"{run_dir}: the stored run configuration is not a table")
        objectives = config.get("objectives") or ["rwe", "madds"]
        if (not isinstance(objectives, list) or len(objectives) < 2
                or not all(is_objective_name(o) for o in objectives)):
            raise ConfigError(f"{run_dir}: the stored objectives are damaged")
        config = {**config, "generations": _int_or_none(config.get("generations")),
                  "pop_size": _int_or_none(config.get("pop_size")),
                  **{k: _number_or_none(config.get(k)) for k in CONSTRAINTS}}
        hv = hv_ref if isinstance(hv_ref, list) and len(hv_ref) == len(objectives) else None
        run = cls(Path(run_dir), config, {k: str(v) for k, v in meta.items()},
                  [_clean_evaluation(e, objectives) for e in evaluations],
                  [_clean_generation(g) for g in generations],
                  None if hv is None else [_number_or_none(v) or 0.0 for v in hv],
                  tuple(picks))
        run.stopped = None if stopped is None else str(stopped)
        return run

    @property
    def ok(self) -> list[Record]:
        return [e for e in self.evaluations if e["status"] == "ok"]

    @property
    def failed(self) -> list[Record]:
        return [e for e in self.evaluations if e["status"] == "failed"]


def _number_or_none(value: Any) -> float | None:
    """``value`` as a finite float, ``None`` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clean_evaluation(e: Record, objective_names: Sequence[str]) -> Record:
    """A stored evaluation with its numbers checked (see :meth:`RunData.read`)."""
    out = dict(e)
    for name in ("params_m", "madds_m", "seconds", "features_seconds", "classifier_seconds"):
        out[name] = _number_or_none(e.get(name))
    out["generation"] = _int_or_none(e.get("generation"))
    if out["generation"] is None:
        out["generation"] = -1  # shown as is, escaped; grouped apart from real generations
    out["attempts"] = _int_or_none(e.get("attempts"))
    objectives = e.get("objectives")
    values = [_number_or_none(v) for v in objectives] if isinstance(objectives, list) else []
    ok = len(values) == len(objective_names) and all(v is not None for v in values)
    out["objectives"] = values if ok else worst_values(objective_names)
    if not ok or e.get("status") not in ("ok", "failed"):
        out["status"] = "failed"  # a damaged record never enters the front
    genome = e.get("genome")
    out["genome"] = (genome if isinstance(genome, list) and all(
        isinstance(g, int) and not isinstance(g, bool) for g in genome) else [])
    extra = e.get("extra") if isinstance(e.get("extra"), dict) else {}
    out["extra"] = {**extra, **{k: _number_or_none(extra.get(k)) for k in (
        "rwe_error", "latency_ms", "latency_batch_ms", "memory_mb", "latency_onnx_ms")
        if k in extra}}
    for name in ("objectives", "raw"):  # estimator and function values, by objective name
        if name in extra:
            values_by_name = extra[name] if isinstance(extra[name], dict) else {}
            out["extra"][name] = {str(k): _number_or_none(v) for k, v in values_by_name.items()}
    for name in ("key", "error", "created"):
        if e.get(name) is not None:
            out[name] = str(e[name])
    return out


def _clean_generation(g: Record) -> Record:
    out = dict(g)
    out["generation"] = _int_or_none(g.get("generation")) or 0
    for name in ("n_evaluated", "cache_hits"):
        out[name] = _int_or_none(g.get(name)) or 0
    out["seconds"] = _number_or_none(g.get("seconds")) or 0.0
    out["created"] = str(g.get("created"))
    out["hypervolume"] = _number_or_none(g.get("hypervolume"))
    for name in ("population", "front"):
        out[name] = g.get(name) if isinstance(g.get(name), list) else []
    return out


# -- formatting ----------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_seconds(seconds: float | None) -> str:
    """12.3 s, 4 min 03 s, 2 h 05 min."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(float(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _fmt_number(value: float | None) -> str:
    if value is None:
        return "—"
    value = float(value)
    if abs(value) >= 100:
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _fmt_objective(name: str, value: float) -> str:
    return f"{100 * value:.2f} %" if name == "rwe" else _fmt_number(value)


def _fmt_time(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        when = datetime.fromisoformat(iso).astimezone(timezone.utc)
    except ValueError:
        return iso
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_config_value(value: Any) -> str:
    if value is None:
        return '<span class="muted">default</span>'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return _e(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return '<span class="muted">defaults</span>' if not value else _e(json.dumps(value))
    return _e(value)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _png(fig: Any, alt: str, name: str) -> str:
    data = base64.b64encode(plots.figure_png(fig)).decode("ascii")
    return (f'<img class="plot" data-plot="{name}" alt="{_e(alt)}" '
            f'src="data:image/png;base64,{data}">')


def _objective_name(name: str) -> str:
    return objective_label(name)


_SHORT_NAMES = {"rwe": "RWE error", "madds": "multiply-adds", "params": "parameters",
                "latency": "latency", "latency_batch": "batch latency",
                "memory": "activation memory"}


def _short_name(name: str) -> str:
    return _SHORT_NAMES.get(name, name)


def _least(name: str) -> str:
    return "fewest" if name in ("madds", "params") else "lowest"


# -- sections ------------------------------------------------------------------------------------
def _summary(run: RunData) -> str:
    config = run.config
    n_gen = len(run.generations)
    planned = config.get("generations")
    done = planned is not None and n_gen >= int(planned)
    status = ('<span class="badge ok">complete</span>' if done else
              '<span class="badge warn">unfinished</span>')
    hits = sum(int(g["cache_hits"]) for g in run.generations)
    total = sum(float(g["seconds"]) for g in run.generations)
    last = run.generations[-1] if run.generations else None
    created = [e["created"] for e in run.evaluations] + [g["created"] for g in run.generations]
    ref = (" at reference point (" + ", ".join(f"{v:.4g}" for v in run.hv_ref) + ")"
           if run.hv_ref else "")
    versions = run.meta.get("rwenas_version", "?")
    if versions != __version__:
        versions += f" (report by {__version__})"
    algorithm = str(config.get("algorithm", "nsga2"))
    stats = [
        ("algorithm", ALGORITHM_NAMES.get(algorithm, algorithm),
         f"population {config.get('pop_size')}, {planned} generations"),
        ("status", status, f"{n_gen} of {planned} generations finished" if planned
         else f"{n_gen} generations finished"),
        ("seed", config.get("seed"), "of the run"),
        ("space", config.get("space"), f"dataset {config.get('dataset')}"),
        ("evaluations", str(len(run.evaluations)),
         f"{len(run.ok)} ok, {len(run.failed)} failed"),
        ("cache hits", str(hits), "asked again, not re-evaluated"),
        ("front size", str(len(run.front)), "non-dominated, of everything evaluated"),
        ("hypervolume", f"{last['hypervolume']:.4g}" if last and last["hypervolume"] is not None
         else "—", f"after generation {last['generation']}{ref}" if last else "no generation"),
        ("total time", fmt_seconds(total), "wall clock of the finished generations"),
        ("created", _fmt_time(run.meta.get("created")),
         f"last update {_fmt_time(max(created)) if created else '—'}"),
        ("rwenas version", versions, f"schema {run.meta.get('schema_version', '?')}"),
    ]
    cards = "\n".join(
        f'<div class="stat"><div class="k">{_e(k)}</div>'
        f'<div class="v">{v if k == "status" else _e(v)}</div>'  # status: the badge above
        f'<div class="d">{_e(d)}</div></div>' for k, v, d in stats)
    note = ""
    if run.stopped and not done:
        note = (f'<p class="note" id="stopped">Stopped early: {_e(run.stopped)}. Continue '
                f"with <code>rwenas search --resume {_e(run.run_dir)}</code> and a larger "
                "<code>--max-minutes</code> or <code>--stop-after-stagnation</code>.</p>")
    elif not done:
        note = (f'<p class="note">This run has finished {n_gen} of {_e(planned or "?")} '
                "generations: it is still running, or it was stopped (continue it with "
                f"<code>rwenas search --resume {_e(run.run_dir)}</code>). The page shows what "
                "the store holds now.</p>")
    return f'<section id="summary"><h2>Summary</h2>{note}<div class="stats">{cards}</div></section>'


def _front_section(run: RunData) -> str:
    r, x = objective_axes(run.objectives)
    fig = plots.front_figure(run.evaluations, run.generations, run.objectives, x=x, y=r,
                             picks=run.picks)
    plot = _png(fig, f"Pareto front: {_objective_name(run.objectives[x])} against RWE error, "
                     "by generation", "front")
    pick_of: dict[str, list[str]] = {}
    for name, e in run.picks.items():
        pick_of.setdefault(e["key"], []).append(name)
    extra = [o for o in run.objectives if o not in ("rwe", "madds", "params")]
    head = [("pick", "text", ""), ("RWE error", "number", "num"),
            ("multiply-adds (M)", "number", "num"), ("params (M)", "number", "num"),
            *((_objective_name(o), "number", "num") for o in extra),
            ("generation", "number", "num"), ("genome", "text", "")]
    ths = "".join(f'<th scope="col" data-type="{t}" class="{c}">{_e(h)}</th>'
                  for h, t, c in head)
    rows = []
    for e in run.front:
        values = dict(zip(run.objectives, e["objectives"], strict=False))
        rwe = values.get("rwe", (e.get("extra") or {}).get("rwe_error"))
        cells = [
            ("·".join(pick_of.get(e["key"], [])), None, "pick-cell"),
            (_fmt_objective("rwe", rwe) if rwe is not None else "—", rwe, "num"),
            (_fmt_number(e["madds_m"]), e["madds_m"], "num"),
            (_fmt_number(e["params_m"]), e["params_m"], "num"),
            *((_fmt_number(values[o]), values[o], "num") for o in extra),
            (str(e["generation"]), e["generation"], "num"),
            (f"<code>{_e(format_genome(e['genome']))}</code>", None, "genome"),
        ]
        tds = "".join(
            f'<td class="{c}"' + ("" if v is None else f' data-value="{float(v)!r}"')
            + f">{t if c == 'genome' else _e(t)}</td>" for t, v, c in cells)
        rows.append(f'<tr data-key="{_e(e["key"])}" title="{_e(e["key"])}">{tds}</tr>')
    limits = [f"{CONSTRAINTS[k]} ≤ {run.config[k]:g}" for k in CONSTRAINTS
              if run.config.get(k) is not None]  # numbers: checked in RunData.read
    bounds = f" that meets the run's constraints ({_e(', '.join(limits))})" if limits else ""
    if rows:
        table = (f'<div class="scroll"><table id="front-table" class="sortable">'
                 f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
                 '<p class="muted small">Click a column header to sort. The front is the '
                 f"non-dominated set of every successful evaluation in the store{bounds} "
                 f"({len(run.front)} of {len(run.ok)}); hover a row for its canonical key.</p>")
    else:
        table = '<p class="muted" id="front-table-empty">No successful evaluation yet.</p>'
    return (f'<section id="front"><h2>Pareto front</h2><div class="plots">'
            f'<figure id="front-plot">{plot}<figcaption>Every evaluated architecture in grey; '
            "the front after each generation in colour, the last one bold; L, M and S "
            f"circled.</figcaption></figure>{_hypervolume_figure(run)}</div>"
            f'<h3 id="front-members">Front members</h3>{table}</section>')


def _genotype(space: Any, e: Record) -> Any:
    from_json = getattr(space, "genotype_from_json", None)
    if e.get("genotype") is not None and callable(from_json):
        return from_json(e["genotype"])
    return space.decode(e["genome"])


def _picks_section(run: RunData, use_graphviz: bool | None) -> str:
    if not run.picks:
        return ('<section id="picks"><h2>L, M and S architectures</h2>'
                '<p class="muted">No front yet.</p></section>')
    r, x = objective_axes(run.objectives)
    xname = _short_name(run.objectives[x])
    space: Any = None
    space_problem: str | None = None
    try:
        space = get_space(run.config["space"])
    except (RwenasError, KeyError) as exc:
        space_problem = str(exc)
    cards = []
    first_of: dict[str, str] = {}
    error = "RWE error" if "rwe" in run.objectives else _short_name(run.objectives[r])
    for n, (name, e) in enumerate(run.picks.items()):
        what = (PICKS[name].format(x=xname, least=_least(run.objectives[x])) if name in PICKS
                else BUDGET_PICK.format(error=error, budget=name))
        facts = [f"{error} {_fmt_objective(run.objectives[r], e['objectives'][r])}",
                 f"{_fmt_number(e['madds_m'])} M multiply-adds",
                 f"{_fmt_number(e['params_m'])} M parameters",
                 f"generation {e['generation']}"]
        facts_html = "".join(f"<li>{_e(f)}</li>" for f in facts)
        if e["key"] in first_of:
            drawing = (f'<p class="muted">Same architecture as {first_of[e["key"]]} '
                       "(drawn above).</p>")
        else:
            first_of[e["key"]] = name
            drawing = _drawing(space, e, name if name in PICKS else f"b{n}", use_graphviz,
                               space_problem)
        anchor = name if name in PICKS else f"budget-{n}"
        cards.append(
            f'<article class="pick" id="pick-{anchor}" data-key="{_e(e["key"])}">'
            f'<h3><span class="letter">{_e(name)}</span> {_e(what)}</h3>'
            f'<ul class="facts">{facts_html}</ul>'
            f'<p class="genome"><code>{_e(format_genome(e["genome"]))}</code></p>'
            f"{drawing}</article>")
    kind = ("phases" if run.config.get("space") == "macro" else "normal and reduction cells")
    least = _least(run.objectives[x])
    return (f'<section id="picks"><h2>L, M and S architectures</h2><p class="muted">The '
            f"{kind} of members of the front, as in the paper's Fig. 2: L has the lowest "
            f"{_e(error)}, S the {least} {_e(xname)}, M is the middle one when the front is "
            f"sorted by {_e(xname)}; the knee is the member farthest below the line through "
            "the front's extremes (objectives normalised to [0, 1]), and a budget pick "
            f"(<code>rwenas report --pick</code>) the lowest {_e(error)} within it."
            f"</p>{''.join(cards)}</section>")


def _drawing(space: Any, e: Record, name: str, use_graphviz: bool | None,
             space_problem: str | None) -> str:
    if space is None:
        return (f'<p class="muted no-drawing">no drawing for this space '
                f"({_e(space_problem)})</p>")
    try:
        genotype = _genotype(space, e)
        svg = genotype_svg(genotype, use_graphviz=use_graphviz, id_prefix=f"pick-{name}-")
    except ConfigError as exc:
        if "no drawing" in str(exc):
            return '<p class="muted no-drawing">no drawing for this space</p>'
        return f'<p class="muted no-drawing">drawing failed: {_e(exc)}</p>'
    except Exception as exc:  # a plugin space's genotype we cannot read: say so, go on
        return f'<p class="muted no-drawing">drawing failed: {_e(exc)}</p>'
    return f'<div class="drawing">{svg}</div>'


def _hypervolume_figure(run: RunData) -> str:
    plot = _png(plots.hypervolume_figure(run.generations), "Hypervolume by generation",
                "hypervolume")
    ref = ""
    if run.hv_ref:
        pairs = ", ".join(f"{_short_name(o)} {v:.4g}"
                          for o, v in zip(run.objectives, run.hv_ref, strict=False))
        ref = f" Reference point: {_e(pairs)} (fixed after the first generation)."
    return (f'<figure id="hypervolume">{plot}<figcaption>Hypervolume of the non-dominated set '
            f"of everything evaluated so far, after each generation.{ref}</figcaption>"
            "</figure>")


def _time_section(run: RunData) -> str:
    ev = run.evaluations
    features = sum(e["features_seconds"] or 0.0 for e in ev)
    classifier = sum(e["classifier_seconds"] or 0.0 for e in ev)
    evaluation = sum(e["seconds"] or 0.0 for e in ev)
    wall = sum(float(g["seconds"]) for g in run.generations)
    timed = [e for e in ev if e["seconds"] is not None]
    totals = [
        ("search (finished generations, wall clock)", wall),
        ("evaluations, all", evaluation),
        ("— backbone features", features),
        ("— linear classifiers", classifier),
        ("— the rest (building networks, counting cost)",
         max(0.0, evaluation - features - classifier)),
        ("mean per evaluation", evaluation / len(timed) if timed else None),
    ]
    totals_rows = "".join(f'<tr><th scope="row">{_e(k)}</th><td class="num" data-value="'
                          f'{v if v is not None else ""}">{fmt_seconds(v)}</td></tr>'
                          for k, v in totals)
    plot = _png(plots.time_figure(ev, run.generations), "Time by generation", "time")

    by_gen: dict[int, list[Record]] = {}
    for e in ev:
        by_gen.setdefault(int(e["generation"]), []).append(e)
    finished = {int(g["generation"]): g for g in run.generations}
    rows = []
    for gen in sorted(set(by_gen) | set(finished)):
        items = by_gen.get(gen, [])
        g = finished.get(gen)
        sums = [sum(e[f] or 0.0 for e in items)
                for f in ("seconds", "features_seconds", "classifier_seconds")]
        failed = sum(1 for e in items if e["status"] == "failed")
        cells = [
            (f"{gen}" + ("" if g else " (unfinished)"), gen),
            (str(g["n_evaluated"] if g else len(items)), g["n_evaluated"] if g else len(items)),
            (str(g["cache_hits"]) if g else "—", g["cache_hits"] if g else None),
            (str(failed), failed),
            (str(len(g["front"])) if g else "—", len(g["front"]) if g else None),
            (f"{g['hypervolume']:.4g}" if g and g["hypervolume"] is not None else "—",
             g["hypervolume"] if g else None),
            (fmt_seconds(g["seconds"]) if g else "—", g["seconds"] if g else None),
            *((fmt_seconds(s), s) for s in sums),
        ]
        rows.append("<tr>" + "".join(
            '<td class="num"' + ("" if v is None else f' data-value="{float(v)!r}"')
            + f">{_e(t)}</td>" for t, v in cells) + "</tr>")
    head = ["generation", "evaluated", "cache hits", "failed", "front", "hypervolume",
            "wall time", "evaluations", "features", "classifiers"]
    ths = "".join(f'<th scope="col" data-type="number" class="num">{_e(h)}</th>' for h in head)
    table = (f'<div class="scroll"><table id="generations-table" class="sortable"><thead><tr>'
             f"{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
             '<p class="muted small">Evaluated: new architectures; cache hits: asked again '
             "and answered from the store; front: its size after the generation; times: wall "
             "clock of the generation, then the sums over its evaluations.</p>" if rows else
             '<p class="muted">Nothing evaluated yet.</p>')
    return (f'<section id="time"><h2>Time</h2><div class="two"><div><table class="totals">'
            f"<tbody>{totals_rows}</tbody></table></div><figure>{plot}</figure></div>"
            f'<h3 id="generations">By generation</h3>{table}</section>')


def _failures_section(run: RunData) -> str:
    failed = run.failed
    if failed:
        rows = "".join(
            f'<tr data-key="{_e(e["key"])}"><td class="num">{_e(e["generation"])}</td>'
            f'<td class="num">{_e(e["attempts"] if e["attempts"] is not None else "—")}</td>'
            f'<td><pre class="error">{_e(e["error"] or "")}'
            f'</pre></td><td class="genome"><code>{_e(format_genome(e["genome"]))}</code></td>'
            "</tr>" for e in failed)
        body = ('<div class="scroll"><table id="failures-table"><thead><tr>'
                '<th class="num">generation</th><th class="num">attempts</th><th>error</th>'
                f"<th>genome</th></tr></thead><tbody>{rows}</tbody></table></div>"
                '<p class="muted small">A failed evaluation gets the worst objective values, so '
                "the search moves away from it.</p>")
    else:
        body = '<p class="muted">No failed evaluations.</p>'
    warned = [e for e in run.evaluations if (e.get("extra") or {}).get("warning")]
    if warned:
        items = "".join(f"<li><code>{_e(format_genome(e['genome']))}</code>: "
                        f"{_e(e['extra']['warning'])}</li>" for e in warned)
        body += f'<h3 id="warnings">Warnings</h3><ul class="warnings">{items}</ul>'
    return f'<section id="failures"><h2>Failed evaluations</h2>{body}</section>'


def _config_section(run: RunData) -> str:
    rows = "".join(f'<tr><th scope="row"><code>{_e(k)}</code></th><td>{_fmt_config_value(v)}'
                   "</td></tr>" for k, v in _flatten(run.config))
    return (f'<section id="config"><h2>Configuration</h2><div class="scroll">'
            f'<table id="config-table" class="kv"><tbody>{rows}</tbody></table></div>'
            '<p class="muted small">The resolved configuration stored in the run; '
            "<em>default</em> means the built-in choice (automatic or the full split).</p>"
            "</section>")


_NAV = (("summary", "Summary"), ("front", "Front"), ("hypervolume", "Hypervolume"),
        ("front-members", "Front members"), ("picks", "L/M/S"), ("time", "Time"),
        ("failures", "Failures"), ("config", "Configuration"))

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--accent:#0969da;
--red:#d62728}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--fg);background:#fff;font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Liberation Sans",sans-serif}
header{background:var(--card);border-bottom:1px solid var(--line)}
.wrap{max-width:1180px;margin:0 auto;padding:0 20px}
header .wrap{padding-top:18px;padding-bottom:10px}
h1{font-size:1.55rem;margin:0 0 2px}
.sub{color:var(--muted);margin:0 0 8px;overflow-wrap:anywhere}
nav a{display:inline-block;margin:0 14px 4px 0;color:var(--accent);text-decoration:none;
font-weight:500}
nav a:hover{text-decoration:underline}
main{padding-bottom:48px}
h2{font-size:1.3rem;margin:34px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:22px 0 8px}
.muted{color:var(--muted)}
.small{font-size:.85rem}
.note{background:#fff8c5;border:1px solid #eed888;border-radius:8px;padding:8px 12px}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.stat .k{color:var(--muted);font-size:.75rem;text-transform:uppercase;letter-spacing:.04em}
.stat .v{font-size:1.2rem;font-weight:600;overflow-wrap:anywhere}
.stat .d{color:var(--muted);font-size:.8rem}
.badge{display:inline-block;padding:0 10px;border-radius:999px;font-size:1rem}
.badge.ok{background:#dafbe1;color:#116329}
.badge.warn{background:#fff1c2;color:#7d4e00}
figure{margin:0 0 8px}
figcaption{color:var(--muted);font-size:.85rem;margin-top:4px}
img.plot{display:block;width:100%;height:auto;border:1px solid var(--line);border-radius:8px}
.plots{display:grid;grid-template-columns:minmax(0,1fr);gap:20px;align-items:start}
@media (min-width:900px){.plots{grid-template-columns:minmax(0,1.3fr) minmax(0,1fr)}}
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.6fr);gap:20px;
align-items:start}
@media (max-width:800px){.two{grid-template-columns:1fr}}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--card);border-bottom:2px solid var(--line);white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#eaeef2}
table.sortable thead th::after{content:" \\2195";color:#afb8c1}
table.sortable thead th[aria-sort=ascending]::after{content:" \\25B2";color:var(--fg)}
table.sortable thead th[aria-sort=descending]::after{content:" \\25BC";color:var(--fg)}
tbody tr:hover{background:#f6f8fa}
td.pick-cell{font-weight:700;color:var(--red)}
table.totals th{font-weight:normal}
table.kv th{width:1%;white-space:nowrap;font-weight:normal}
code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,
"Liberation Mono",monospace}
td.genome code,p.genome code{overflow-wrap:anywhere;color:#3d444d}
pre.error{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;color:#82071e}
.pick{border:1px solid var(--line);border-radius:10px;padding:4px 16px 12px;margin:16px 0}
.pick h3{margin:10px 0 4px}
.letter{display:inline-block;min-width:1.7em;text-align:center;border-radius:6px;
background:var(--red);color:#fff;margin-right:6px}
ul.facts{list-style:none;padding:0;margin:0 0 4px;display:flex;flex-wrap:wrap;gap:4px 18px}
p.genome{margin:2px 0 8px}
.drawing{overflow-x:auto}
.drawing svg{display:block;max-width:100%;height:auto;margin:0 auto}
footer{color:var(--muted);font-size:.8rem;border-top:1px solid var(--line);margin-top:40px;
padding-top:10px}
"""

# Sort the tables with class "sortable" by a click (or Enter) on a header; numbers by their
# data-value. Marks <body data-ready="1"> once set up (the browser test checks it).
_JS = """
(function () {
  "use strict";
  function key(cell, numeric) {
    if (numeric) {
      var v = parseFloat(cell.getAttribute("data-value"));
      return isNaN(v) ? Infinity : v;
    }
    return cell.textContent.trim().toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var numeric = th.getAttribute("data-type") === "number";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          var c = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); }
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""


def render_report(run: RunData, *, use_graphviz: bool | None = None) -> str:
    """The HTML text of the page for ``run``."""
    config = run.config
    title = (f"rwenas search: {config.get('space', '?')} space on "
             f"{config.get('dataset', '?')}, seed {config.get('seed', '?')}")
    nav = "".join(f'<a href="#{i}">{_e(t)}</a>' for i, t in _NAV)
    sections = [_summary(run), _front_section(run), _picks_section(run, use_graphviz),
                _time_section(run), _failures_section(run),
                _config_section(run)]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rwenas {_e(__version__)}">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><div class="wrap">
<h1>{_e(title)}</h1>
<p class="sub">Run <code>{_e(run.run_dir)}</code> &middot; objectives
{_e(", ".join(_short_name(o) for o in run.objectives))}</p>
<nav>{nav}</nav>
</div></header>
<main class="wrap">
{chr(10).join(sections)}
<footer>Rebuilt from <code>{_e(run.run_dir / "run.db")}</code> by rwenas {_e(__version__)} on
{now}. This page is self-contained: it loads nothing from anywhere.</footer>
</main>
<script>{_JS}</script>
</body>
</html>
"""


def write_report(run_dir: str | Path, out: str | Path | None = None, *,
                 use_graphviz: bool | None = None, picks: Sequence[str] = (),
                 space: str | None = None, trust_plugins: bool = False) -> Path:
    """Write the HTML report of the run in ``run_dir`` (default ``RUN_DIR/report.html``) from
    its results store alone, and return its path.

    :class:`ConfigError` (one line) when ``run_dir`` is not an rwenas run or ``out`` cannot be
    written. ``use_graphviz``: see :func:`rwenas.report.drawing.genotype_svg`. ``picks``:
    budgets (``madds<=10``) shown next to L, M, S and the knee. A plugin space named by the
    run is imported only if ``space`` names it too or ``trust_plugins``
    (:func:`rwenas.spaces.check_stored_space`); objective functions are never imported.
    """
    run = RunData.read(run_dir, picks)
    check_stored_space(run.config.get("space"), given=space, trust=trust_plugins,
                       where=f"the run in {run_dir}")
    text = render_report(run, use_graphviz=use_graphviz)
    target = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write the report {target}: {exc.strerror or exc}") from None
    return target
