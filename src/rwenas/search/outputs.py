"""The data files of a search run, written from its results store alone: ``config.json``,
``front.json``, ``front.csv`` and ``history.csv``. (Figures and the HTML report are the
report package's: the command layer writes them, see :func:`rwenas.report.write_figures`.)"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rwenas.search.front import pareto_front
from rwenas.search.store import RunStore
from rwenas.spaces import SearchSpace, format_genome, get_space

__all__ = ["front_rows", "write_outputs"]


def front_rows(space: SearchSpace, front: Sequence[dict[str, Any]],
               objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``front.json``: one per front record, objectives named."""
    rows = []
    for e in front:
        rows.append({
            "genome": format_genome(e["genome"]),
            "key": e["key"],
            "rwe_error": e["extra"].get("rwe_error"),
            "madds_m": e["madds_m"],
            "params_m": e["params_m"],
            **{k: e["extra"][k] for k in ("latency_ms", "latency_batch_ms", "memory_mb",
                                          "latency_onnx_ms", "raw")
               if e["extra"].get(k) is not None},
            "objectives": dict(zip(objectives, e["objectives"], strict=True)),
            "generation": e["generation"],
            "genotype": e["genotype"],
        })
    return rows


def write_outputs(store: RunStore, config: dict[str, Any]) -> dict[str, Path]:
    """config.json, front.json, front.csv and history.csv, from the store alone."""
    run_dir = store.run_dir
    space = get_space(config["space"])
    objectives = list(config["objectives"])
    evaluations = store.evaluations()
    front = pareto_front(evaluations, config)
    rows = front_rows(space, front, objectives)
    paths = {name: run_dir / name for name in
             ("config.json", "front.json", "front.csv", "history.csv")}
    paths["config.json"].write_text(json.dumps(config, indent=2) + "\n")
    paths["front.json"].write_text(json.dumps(rows, indent=2) + "\n")
    with paths["front.csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["genome", "rwe_error", "madds_m", "params_m", *objectives, "genotype"])
        for r in rows:
            writer.writerow([r["genome"], r["rwe_error"], r["madds_m"], r["params_m"],
                             *r["objectives"].values(), json.dumps(r["genotype"])])
    with paths["history.csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "generation", "status", "genome", *objectives, "params_m",
                         "madds_m", "seconds", "features_seconds", "classifier_seconds",
                         "attempts", "error", "key"])
        for e in evaluations:
            writer.writerow([e["id"], e["generation"], e["status"], format_genome(e["genome"]),
                             *e["objectives"], e["params_m"], e["madds_m"], e["seconds"],
                             e["features_seconds"], e["classifier_seconds"], e["attempts"],
                             e["error"] or "", e["key"]])
    return paths
