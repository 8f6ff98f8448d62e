"""Helpers of benchmarks/gpu_study.sh: the machine (``env``) and the summary of what the run
has done so far (``summary``), read straight from the run's SQLite stores (read-only, so a
summary never waits on a part that is still writing).

    python benchmarks/gpu_study.py env --out WORK/env.json
    python benchmarks/gpu_study.py summary WORK OUT_DIR
    python benchmarks/gpu_study.py bench-state BENCH_DIR --out FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file


def cmd_env(args: argparse.Namespace) -> int:
    import torch

    info: dict[str, Any] = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "host": platform.node(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "cuda_available": torch.cuda.is_available(),
                            "data_dir": os.environ.get("RWENAS_DATA_DIR")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=list(torch.cuda.get_device_capability(0)),
                    cuda=torch.version.cuda)
    if shutil.which("nvidia-smi"):
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used,"
             "utilization.gpu", "--format=csv"], capture_output=True, text=True,
            timeout=20).stdout.strip()
    write_json(Path(args.out), info)
    print(json.dumps(info, indent=2))
    return 0


# -- reading the stores -------------------------------------------------------------------------
def _read(db: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]] | None:
    """(config, ok evaluations, state) of an rwenas store, or None where there is none."""
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            config = json.loads(conn.execute(
                "SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
            evals = [{"key": k, "seconds": s, "extra": json.loads(e) if e else {}}
                     for k, s, e in conn.execute("SELECT key, seconds, extra FROM evaluations "
                                                 "WHERE status = 'ok' ORDER BY id")]
            state = {n: json.loads(v) for n, v in conn.execute("SELECT name, value FROM state")}
        finally:
            conn.close()
    except (sqlite3.Error, TypeError, ValueError) as exc:
        return {"error": f"unreadable: {exc}"}, [], {}
    return config, evals, state


def _device(extra: dict[str, Any]) -> str:
    return str(extra.get("device") or (extra.get("budget") or {}).get("device") or "cpu")


def _per_device(evals: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Trainings and mean seconds per training, per device (a bench record's first run)."""
    out: dict[str, dict[str, Any]] = {}
    for e in evals:
        d = out.setdefault(_device(e["extra"]), {"records": 0, "trainings": 0, "seconds": []})
        d["records"] += 1
        d["trainings"] += 1 + len(e["extra"].get("retest_acc") or [])
        if e["seconds"]:
            d["seconds"].append(float(e["seconds"]))
    for d in out.values():
        s = d.pop("seconds")
        d["mean_seconds"] = round(sum(s) / len(s), 1) if s else None
    return out


def bench_state(bench_dir: Path) -> dict[str, Any] | None:
    read = _read(bench_dir / "run.db")
    if read is None:
        return None
    config, evals, state = read
    pool = {p["key"] for p in (state.get("pool") or []) + (state.get("search_pool") or [])}
    return {"dir": str(bench_dir), "budget": config.get("budget"),
            "pool_size": len(pool), "trained": sum(1 for e in evals if e["key"] in pool),
            "on_demand": sum(1 for e in evals if e["key"] not in pool),
            "retest": state.get("retest"), "devices": _per_device(evals)}


def table_state(table_dir: Path) -> dict[str, Any] | None:
    read = _read(table_dir / "run.db")
    if read is None:
        return None
    config, evals, state = read
    searches = {}
    for sub in ("search-rwe", "search-random", "search-proxy"):
        s = _read(table_dir / sub / "run.db")
        searches[sub] = None if s is None else len(s[1])
    return {"dir": str(table_dir), "budget": config.get("budget"),
            "trainings_done": len(evals), "trainings_planned": state.get("trainings_planned"),
            "complete": (table_dir / "table.md").is_file(),
            "search_evaluations": searches, "searches_from": state.get("searches_from"),
            "devices": _per_device(evals),
            "wall_seconds": round(float(state.get("wall_seconds") or 0.0), 1)}


def along_state(along_dir: Path, cache_dir: Path) -> dict[str, Any] | None:
    cache = bench_state(cache_dir)
    if cache is None and not along_dir.is_dir():
        return None
    return {"dir": str(along_dir), "complete": (along_dir / "study.md").is_file(),
            "on_demand_trained": cache["on_demand"] if cache else 0,
            "devices": cache["devices"] if cache else {}}


# -- the summary --------------------------------------------------------------------------------
def cmd_summary(args: argparse.Namespace) -> int:
    work, out = Path(args.work), Path(args.out_dir)
    s: dict[str, Any] = {"written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "smoke": os.environ.get("GPU_SMOKE") == "1", "parts": {}}
    status = work / "status.tsv"
    if status.is_file():
        for line in status.read_text().splitlines():
            name, rc, seconds = ([*line.split("\t"), "", ""])[:3]
            s["parts"][name] = {"rc": rc, "seconds": seconds}
    for name in ("env", "bench_before"):
        path = work / f"{name}.json"
        if path.is_file():
            with contextlib.suppress(json.JSONDecodeError):
                s[name] = json.loads(path.read_text())
    s["bench"] = bench_state(out / "bench")
    s["bench_tiny"] = bench_state(out / "bench-tiny")
    s["table"] = table_state(out / "table")
    s["along"] = along_state(out / "along", Path(args.along_cache) if args.along_cache
                             else out / args.along_bench / "on-demand")
    write_json(out / "summary.json", s)
    (out / "summary.md").write_text(markdown(s))
    return 0


def _devices(devices: dict[str, Any]) -> str:
    return ", ".join(f"{d}: {v['trainings']} trainings ({v['mean_seconds']} s each)"
                     for d, v in devices.items()) or "none"


def markdown(s: dict[str, Any]) -> str:
    env = s.get("env") or {}
    lines = ["# rwenas gpu_study.sh" + (" (SMOKE: tiny sizes, CPU)" if s["smoke"] else ""), "",
             f"written {s['written_utc']}; machine: {env.get('gpu') or 'no GPU'}, "
             f"{env.get('cpu_count')} cores, torch {env.get('torch')}", "",
             "| part | exit | seconds |", "|---|---|---|"]
    for name, p in s["parts"].items():
        lines.append(f"| {name} | {p['rc']} | {p['seconds']} |")
    b, before = s.get("bench"), s.get("bench_before")
    if b:
        was = f" (was {before['trained']} at the start)" if before else ""
        lines += ["", f"**bench** `{b['dir']}`: {b['trained']} of {b['pool_size']} trained"
                  f"{was}; by device: {_devices(b['devices'])}"]
    if s.get("bench_tiny"):
        t = s["bench_tiny"]
        lines += ["", f"**tiny bench** `{t['dir']}`: {t['trained']} of {t['pool_size']}; "
                  f"{_devices(t['devices'])}"]
    t = s.get("table")
    if t:
        lines += ["", f"**table** `{t['dir']}`: {t['trainings_done']} of "
                  f"{t['trainings_planned'] or '?'} trainings"
                  + (" — complete (table.md)" if t["complete"] else "")
                  + f"; search evaluations {t['search_evaluations']}; by device: "
                  f"{_devices(t['devices'])}; wall {t['wall_seconds']} s"]
        if t.get("searches_from"):
            lines.append("searches started from: " + ", ".join(
                f"{k} ({v['evaluations']} evaluations)" for k, v in t["searches_from"].items()))
    a = s.get("along")
    if a:
        lines += ["", f"**along searches** `{a['dir']}`: "
                  + ("complete (study.md)" if a["complete"] else "not complete")
                  + f"; {a['on_demand_trained']} on-demand trainings in the cache; "
                  f"{_devices(a['devices'])}"]
    return "\n".join(lines) + "\n"


def cmd_bench_state(args: argparse.Namespace) -> int:
    write_json(Path(args.out), bench_state(Path(args.bench_dir)))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_env)
    m = sub.add_parser("summary")
    m.add_argument("work")
    m.add_argument("out_dir")
    m.add_argument("--along-bench", default="bench", help="the bench the along part used")
    m.add_argument("--along-cache", help="the along part's on-demand cache (default: the "
                   "bench's on-demand/)")
    m.set_defaults(func=cmd_summary)
    b = sub.add_parser("bench-state")
    b.add_argument("bench_dir")
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_bench_state)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
