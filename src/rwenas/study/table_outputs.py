"""The files of ``rwenas study table``: ``table.md`` (what it ran on, the table, the trained
fronts, the goal checks), ``table.csv`` (one line per architecture), ``table.json``
(everything) and ``table.png`` (trained test error against MAdds, error bars = std over seeds).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSV_FIELDS", "table_markdown", "write_table"]

CSV_FIELDS = ("row_number", "row", "row_title", "pick", "same_as", "key", "genome",
              "test_error_mean", "test_error_std", "test_errors", "seeds", "params_m",
              "madds_m", "search_cost_hours", "cost_unit", "search_evaluations",
              "front_hypervolume", "trained_here", "from_bench")
MARKERS = {"rwe": "o", "random_search": "s", "random_matched": "^", "proxy": "D",
           "published": "*"}


def _write(path: Path, text: str | bytes) -> None:
    """Write atomically (temporary file, then rename): a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text)
    os.replace(tmp, path)


def _pct(v: float | None, digits: int = 2) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}"


def _options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _unit(table: Mapping[str, Any]) -> str:
    return table["environment"].get("search_cost_unit", "CPU-hours")


def csv_rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The lines of ``table.csv`` (errors as fractions, costs in hours)."""
    out = []
    for line in table["lines"]:
        row = table["rows"][line["row"]]
        out.append({
            "row_number": line["row_number"], "row": line["row"],
            "row_title": line["row_title"], "pick": line["pick"],
            "same_as": line["same_as"] or "", "key": line["key"], "genome": line["genome"] or "",
            "test_error_mean": f"{line['error_mean']:.6f}",
            "test_error_std": f"{line['error_std']:.6f}",
            "test_errors": ";".join(f"{e:.6f}" for e in line["errors"]),
            "seeds": ";".join(str(s) for s in line["seeds"]),
            "params_m": f"{line['params_m']:.6f}", "madds_m": f"{line['madds_m']:.6f}",
            "search_cost_hours": f"{row['cost_hours']:.6f}",
            "cost_unit": row.get("cost_unit", _unit(table)),
            "search_evaluations": row["evaluations"],
            "front_hypervolume": "" if row["hypervolume"] is None
            else f"{row['hypervolume']:.6f}",
            "trained_here": line["sources"].count("trained"),
            "from_bench": line["sources"].count("bench")})
    return out


def _header(table: Mapping[str, Any]) -> list[str]:
    s, env, data = table["settings"], table["environment"], table["data"]
    from rwenas.study.bench import BenchBudget

    budget = BenchBudget(**s["budget"])
    test_note = "the full test set" if s["budget"]["test_size"] is None else \
        "a sub-sample of the test set"
    gpu = f", GPU {env['gpu']}" if env.get("gpu") else ""
    hours = env["wall_seconds"] / 3600
    lines = [
        f"# Table 1, measured: {s['dataset']} ({s['space']} space)", "",
        f"**Ran on** {s['dataset']}: every architecture trained at one budget — "
        f"{budget.describe()} — on {data['train_images']} training images and tested on "
        f"{data['test_images']} ({test_note}), {s['seeds']} seeds each (training seeds derived "
        f"from seed {s['seed']} and the architecture's key, as a bench derives them). "
        f"Searches: population {s['pop_size']}, {s['generations']} generations "
        f"(the first counted), on the search split "
        f"({s['search_train_size'] or 'all'}/{s['search_val_size'] or 'all'} images of the "
        f"training set; the test set is never used in a search), search network "
        f"{_options(s['search_network']) or 'at the search setting'}, RWE options "
        f"{_options(s['rwe']) or 'the defaults'}.",
        "",
        f"**Machine**: {env['cpu']}, {env['cores']} cores, torch {env['torch']}, "
        f"{env['threads']} torch thread(s){gpu}; trainings on {env['training_device']}. "
        f"**Wall time** {hours:.2f} h over {env['sessions']} session(s) "
        "(searches, counting and trainings; reused bench trainings cost nothing here).", ""]
    return lines


def table_markdown(table: Mapping[str, Any]) -> str:
    """The text of ``table.md``."""
    s, rows = table["settings"], table["rows"]
    unit = _unit(table)
    n_samples = len(table.get("random_sample") or [])
    out = _header(table)
    out += [f"| # | row | architecture | test error (%) | params (M) | MAdds (M) | "
            f"search cost ({unit}) |", "|---|---|---|---|---|---|---|"]
    marks = {"random_matched": " †", "published": " ‡"}
    for line in table["lines"]:
        row = rows[line["row"]]
        arch = line["pick"] + (f" (= {line['same_as']})" if line["same_as"] else "")
        cost = f"{row['cost_hours']:.4f}" if row["searched"] else "0" + marks[line["row"]]
        out.append(f"| {line['row_number']} | {line['row_title']} | {arch} | "
                   f"{_pct(line['error_mean'])} ± {_pct(line['error_std'])} | "
                   f"{line['params_m']:.4f} | {line['madds_m']:.3f} | {cost} |")
    out += ["", f"Test error: mean ± sample standard deviation (ddof=1) over {s['seeds']} "
            "seeds. Params and MAdds: the trained network at the budget. Search cost: the "
            f"summed seconds of the row's stored search evaluations / 3600, in {unit} of this "
            "machine (one process; see the threads above).",
            f"† Row 3 is no search: {n_samples} random architectures were drawn (see below) and "
            "only their MAdds counted (no estimator), so its cost is 0.",
            "‡ Row 5's cells come from the literature: their own search cost is not counted "
            "(0 here).", ""]
    ref = table["reference_point"]
    out += ["## Trained fronts", "",
            "Hypervolume of each search's trained front (mean test error as a fraction, MAdds "
            f"in M) up to the reference point (error {ref[0]:g}, {ref[1]:.4g} M MAdds: 1.1 × "
            "the largest MAdds in the table), the same for every row; larger is better.", "",
            "| # | search | evaluations | front size (search) | trained front | "
            "hypervolume |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        if not row["searched"]:
            continue
        number = next(x["row_number"] for x in table["lines"] if x["row"] == name)
        out.append(f"| {number} | {row['title']} ({row['algorithm']} on "
                   f"{', '.join(row['objectives'])}) | {row['evaluations']} | "
                   f"{row['front_size']} | {', '.join(row['trained_front'])} | "
                   f"{row['hypervolume']:.5g} |")
    out += ["", "## Goal checks", ""]
    for check in table["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "NOT EVALUATED"}[check["passed"]]
        out.append(f"- **({check['name']}) {verdict}** — {check['text']}.")
    out += ["", "(a) RWE's L beats the random architecture of matched MAdds by more than the "
            "seed-to-seed spread; (b) the RWE search's trained front has a larger hypervolume "
            "than random search's; (c) RWE's L is at least as good as every published cell "
            "(mean error) at fewer MAdds. A FAIL is a finding, reported as measured.", ""]
    out += ["## Architectures", "",
            "| # | architecture | per-seed test error (%) | trainings | key |",
            "|---|---|---|---|---|"]
    for line in table["lines"]:
        per_seed = ", ".join(_pct(e) for e in line["errors"])
        here, bench = line["sources"].count("trained"), line["sources"].count("bench")
        how = f"{here} here" + (f", {bench} from the bench" if bench else "")
        out.append(f"| {line['row_number']} | {line['row_title']} {line['pick']} | {per_seed} "
                   f"| {how} | `{line['key']}` |")
    tol = table["settings"].get("match_tolerance", 0.05)
    out += ["", f"Row 3, matched in MAdds to row 1 (MAdds of the networks at the budget; the "
            f"first random draw within ±{100 * tol:g} %, each draw with a random share of "
            "parameter-free operations): "
            + "; ".join(f"{x['pick']}: target {x['target_madds_m']:.4g} M, draw "
                        f"#{x['sample_index']} at {x['sample_madds_m']:.4g} M"
                        + ("" if x.get("within", True) else
                           f" (NOT within ±{100 * tol:g} %: the nearest of {x['draws']} draws)")
                        for x in table["lines"] if x["row"] == "random_matched") + "."]
    bench = table.get("bench") or {}
    if bench.get("dir"):
        out += ["", f"Bench {bench['dir']}: {bench['reused']} training(s) reused."
                + "".join(f" {n}." for n in bench.get("notes", []))]
    copied = table.get("searches_from") or {}
    if copied:
        out += ["", "Searches started from another table's (same search settings): "
                + "; ".join(f"{row} from {c['dir']} at {c['evaluations']} evaluations"
                            for row, c in copied.items())
                + ". Their cost includes the seconds of those evaluations, measured where "
                "they ran."]
    return "\n".join(out) + "\n"


def table_csv(table: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(table))
    return buf.getvalue()


def plot_table(table: Mapping[str, Any], path: Path) -> None:
    """Trained test error (%) against MAdds, one marker and colour per row, error bars = std
    over seeds; each search's trained front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.get_cmap("tab10").colors
    for i, (name, row) in enumerate(table["rows"].items()):
        mine = [x for x in table["lines"] if x["row"] == name and not x["same_as"]]
        x = [m["madds_m"] for m in mine]
        y = [100 * m["error_mean"] for m in mine]
        yerr = [100 * m["error_std"] for m in mine]
        colour = colours[i % len(colours)]
        ax.errorbar(x, y, yerr=yerr, fmt=MARKERS.get(name, "o"), color=colour, capsize=3,
                    ms=8 if name == "published" else 6, label=row["title"])
        for m, xi, yi in zip(mine, x, y, strict=True):
            ax.annotate(m["pick"], (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=colour)
        if row["searched"]:
            front = sorted((m for m in mine if m["pick"] in row["trained_front"]),
                           key=lambda m: m["madds_m"])
            ax.plot([m["madds_m"] for m in front], [100 * m["error_mean"] for m in front],
                    color=colour, lw=0.8, alpha=0.6)
    s = table["settings"]
    ax.set_xlabel("MAdds (M) of the trained network")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{s['dataset']}: trained at one budget, mean ± std over {s['seeds']} seeds",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _write(path, buf.getvalue())


def write_table(table: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``table.md``, ``table.csv``, ``table.json`` and ``table.png`` into ``out_dir``."""
    out = Path(out_dir)
    paths = {name: out / f"table.{name}" for name in ("md", "csv", "json", "png")}
    _write(paths["md"], table_markdown(table))
    _write(paths["csv"], table_csv(table))
    _write(paths["json"], json.dumps(_jsonable(table), indent=2) + "\n")
    plot_table(table, paths["png"])
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "files"}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
