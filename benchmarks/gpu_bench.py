"""The measuring parts of ``benchmarks/gpu.sh``, one sub-command each; every part writes one
JSON file (rewritten as it goes, so a part stopped at its time box still leaves what it
measured) and ``summary`` gathers them into ``summary.json`` and ``summary.md``.

    python benchmarks/gpu_bench.py env     --out W/env.json
    python benchmarks/gpu_bench.py rwe     --out W/rwe.json    [--train-size 40000 --val-size 10000]
    python benchmarks/gpu_bench.py shared  --out W/shared.json --run-dir W/search [--workers 10]
    python benchmarks/gpu_bench.py train   --out W/train.json
    python benchmarks/gpu_bench.py summary W OUT_DIR

Each measuring part stops starting new work once ``--budget-s`` seconds have passed (default:
``$GPU_PART_BUDGET_S``, set by gpu.sh from the part's time box). Runs on the CPU too (the
``--smoke`` sizes of gpu.sh), where it measures the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: the paper's search: population 20, 30 generations
PAPER_EVALUATIONS = 600
#: the goals of issue 15
GOAL_RWE_SECONDS = 1.0
GOAL_SEARCH_SECONDS = 600.0
#: the paper: about 10 s per RWE evaluation on one GTX 2080 Ti (CIFAR-10, 40k/10k images)
PAPER_RWE_SECONDS = 10.0

RWE_VARIANTS = {
    "default": {},
    "batch1024": {"inference_batch": 1024},
    "fp32-batch1024": {"inference_batch": 1024, "precision": "fp32"},
    "batch1024-nchw": {"inference_batch": 1024, "channels_last": False},
    "batch4096": {"inference_batch": 4096},
}


# -- helpers ------------------------------------------------------------------------------------
def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def default_budget() -> float:
    return float(os.environ.get("GPU_PART_BUDGET_S") or 60)


def mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``every`` seconds in a thread (nothing
    where there is no nvidia-smi)."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                     "--format=csv,noheader,nounits"], capture_output=True, text=True,
                    timeout=5).stdout.strip().splitlines()
                util, mem = (float(v) for v in out[0].split(","))
                self.samples.append((util, mem))
            except Exception:  # a missed sample is no failure
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        return {"samples": len(self.samples),
                "mean_util_pct": round(mean([u for u, _ in self.samples]), 1),
                "max_memory_mib": max(m for _, m in self.samples)}


def fashion_split(train_size: int, val_size: int) -> tuple[Any, Any, float]:
    from rwenas.data import load_dataset, search_split

    t0 = time.perf_counter()
    ds = load_dataset("fashion-mnist")
    split = search_split(ds, seed=0, train_size=train_size, val_size=val_size)
    return ds, split, time.perf_counter() - t0


# -- env ----------------------------------------------------------------------------------------
def cmd_env(args: argparse.Namespace) -> int:
    import torch

    from rwenas.data.download import default_data_dir
    from rwenas.data.idx import FASHION_MNIST_SYSTEM_DIRS, _find_fashion_files

    info: dict[str, Any] = {
        "date_utc": now_utc(), "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in
                     ("numpy", "scipy", "pymoo", "moocore", "matplotlib", "tqdm", "ray",
                      "onnx", "onnxruntime", "pytest")},
    }
    base = default_data_dir()
    info["data"] = None
    for directory in (base / "fashion-mnist", base, *FASHION_MNIST_SYSTEM_DIRS):
        with contextlib.suppress(Exception):
            if _find_fashion_files(directory):
                info["data"] = str(directory.resolve())
                break
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({
            "gpu": props.name, "capability": list(torch.cuda.get_device_capability(0)),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "bf16_native": __import__("rwenas.device", fromlist=["x"]).bf16_is_native(
                torch.device("cuda")),
        })
        info["ceilings"] = _ceilings()
    if shutil.which("nvidia-smi"):
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
             "clocks.max.sm,temperature.gpu,power.draw", "--format=csv"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    write_json(args.out, info)
    print(json.dumps(info, indent=2, default=str))
    return 0


def _version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "present"


def _ceilings() -> dict[str, float]:
    """Two ceilings measured on this GPU (METHOD.md): a bf16 matrix product on random data and
    a device-to-device copy (bytes read plus written)."""
    import torch

    out: dict[str, float] = {}
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    out["bf16_matmul_tflops"] = round(10 * 2 * n**3 / (start.elapsed_time(end) / 1e3) / 1e12, 1)
    del a, b
    x = torch.empty(2**28, device="cuda", dtype=torch.float32)  # 1 GiB
    x.normal_()
    y = torch.empty_like(x)
    y.copy_(x)
    start.record()
    for _ in range(10):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    out["copy_gb_s"] = round(10 * 2 * x.numel() * 4 / (start.elapsed_time(end) / 1e3) / 1e9)
    del x, y
    torch.cuda.empty_cache()
    return out


# -- rwe ----------------------------------------------------------------------------------------
def cmd_rwe(args: argparse.Namespace) -> int:
    import torch

    from bench_rwe import GENOMES
    from rwenas.device import resolve_device
    from rwenas.estimators.rwe import RWEConfig, feature_dtype
    from rwenas.evaluation import evaluate_genome
    from rwenas.spaces import get_space

    deadline = time.perf_counter() + args.budget_s
    device = resolve_device(args.device)
    ds, split, load_s = fashion_split(args.train_size, args.val_size)
    space = get_space("micro")
    genomes = list(GENOMES.items())[:args.genomes]
    variants = [v for v in args.variants.split(",") if v]
    n_images = len(split.train_x) + len(split.val_x)
    out: dict[str, Any] = {
        "device": str(device), "train_size": len(split.train_x), "val_size": len(split.val_x),
        "network": "micro C=10, 5 cells (search setting)", "load_seconds": round(load_s, 2),
        "variants": {v: RWE_VARIANTS[v] for v in variants}, "rows": [], "truncated": False,
    }

    def config(variant: str) -> RWEConfig:
        return RWEConfig(device=str(device), **RWE_VARIANTS[variant])

    # warm-up: CUDA context, cuDNN heuristics, allocator (not counted)
    t0 = time.perf_counter()
    evaluate_genome(space, space.validate(genomes[0][1]), split, ds.info,
                    config=config(variants[0]), seed=0)
    sync(device)
    out["warmup_seconds"] = round(time.perf_counter() - t0, 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    print(f"RWE on {device}, {out['train_size']}/{out['val_size']} images; warm-up "
          f"{out['warmup_seconds']} s")
    print(f"{'variant':<15} {'genome':<11} {'total s':>8} {'feat s':>7} {'clf s':>6} "
          f"{'error %':>7} {'MAdds M':>8} {'fwd GFLOP':>9}")
    for variant in variants:
        cfg = config(variant)
        for name, text in genomes:
            if time.perf_counter() > deadline:
                out["truncated"] = True
                break
            ev = evaluate_genome(space, space.validate(text), split, ds.info, config=cfg,
                                 seed=0)
            gflop = 2 * ev.madds_m * 1e6 * n_images / 1e9
            row = {"variant": variant, "genome": name, "seconds": round(ev.seconds, 3),
                   "features_seconds": round(ev.features_seconds, 3),
                   "classifier_seconds": round(ev.classifier_seconds, 3),
                   "rwe_error": ev.rwe_error, "madds_m": ev.madds_m,
                   "forward_gflop": round(gflop, 1), "warning": ev.warning,
                   "feature_dtype": str(feature_dtype(cfg.precision, device)).replace(
                       "torch.", "")}
            out["rows"].append(row)
            print(f"{variant:<15} {name:<11} {ev.seconds:8.2f} {ev.features_seconds:7.2f} "
                  f"{ev.classifier_seconds:6.2f} {100 * ev.rwe_error:7.2f} "
                  f"{ev.madds_m:8.2f} {gflop:9.1f}", flush=True)
            write_json(args.out, _rwe_summary(out, device))
    out = _rwe_summary(out, device)
    write_json(args.out, out)
    for variant, s in out["by_variant"].items():
        print(f"{variant:<15} mean {s['mean_seconds']:.2f} s/arch (features "
              f"{s['mean_features_seconds']:.2f}, classifier {s['mean_classifier_seconds']:.2f})"
              f" over {s['count']} genomes")
    return 0


def _rwe_summary(out: dict[str, Any], device: Any) -> dict[str, Any]:
    import torch

    by: dict[str, Any] = {}
    for row in out["rows"]:
        by.setdefault(row["variant"], []).append(row)
    out["by_variant"] = {
        v: {"count": len(rows), "mean_seconds": round(mean([r["seconds"] for r in rows]), 3),
            "mean_features_seconds": round(mean([r["features_seconds"] for r in rows]), 3),
            "mean_classifier_seconds": round(mean([r["classifier_seconds"] for r in rows]), 3),
            "mean_error": round(mean([r["rwe_error"] for r in rows]), 4),
            "goal_met": mean([r["seconds"] for r in rows]) <= GOAL_RWE_SECONDS}
        for v, rows in by.items()}
    if getattr(device, "type", "") == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


# -- shared -------------------------------------------------------------------------------------
def cmd_shared(args: argparse.Namespace) -> int:
    deadline = time.time() + args.budget_s
    window = max(10.0, args.budget_s - 20)  # leave time to stop the search and read its store
    run_dir = Path(args.run_dir)
    try:  # the search needs pymoo (carried as wheels); without it, the executor alone
        import rwenas.search.nsga2  # noqa: F401

        no_search = None
    except Exception as exc:
        no_search = f"{type(exc).__name__}: {exc}"
    out: dict[str, Any] = {
        "workers": args.workers, "threads": args.threads, "train_size": args.train_size,
        "val_size": args.val_size, "inference_batch": args.inference_batch,
        "mode": "search" if no_search is None and not args.direct else "executor",
        "window_seconds": window}
    with GpuSampler() as sampler:
        if out["mode"] == "search":
            out.update(_shared_search(args, run_dir, window))
        else:
            out["note"] = (f"the search cannot run ({no_search}): evaluations of sampled "
                           "genomes through the process executor, no NSGA-II"
                           if no_search else "--direct")
            out.update(_shared_executor(args, min(window, deadline - time.time() - 10)))
    out["gpu"] = sampler.summary()
    out.update(_rates(out.pop("t_start"), out.pop("times"), args.workers))
    write_json(args.out, out)
    _print_shared(out)
    return 0


def _shared_search(args: argparse.Namespace, run_dir: Path, window: float) -> dict[str, Any]:
    """``rwenas search --profile paper --executor process`` for ``window`` seconds; then the
    finished evaluations are read from its store."""
    cmd = [sys.executable, "-m", "rwenas.cli", "search", "--profile", "paper",
           "--train-size", str(args.train_size), "--val-size", str(args.val_size),
           "--executor", "process", "--workers", str(args.workers), "--out", str(run_dir),
           "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.pop_size:
        cmd += ["--pop-size", str(args.pop_size)]
    if args.generations:
        cmd += ["--generations", str(args.generations)]
    if args.inference_batch:
        toml = run_dir.parent / "shared-rwe.toml"
        toml.parent.mkdir(parents=True, exist_ok=True)
        toml.write_text(f"[rwe]\ninference_batch = {int(args.inference_batch)}\n")
        cmd += ["--config", str(toml)]
    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    log = open(args.log, "w") if args.log else subprocess.DEVNULL  # noqa: SIM115
    print("$ " + " ".join(cmd), flush=True)
    t_start = time.time()
    # its own process group (not session): stopped as a whole here, and still ended by the
    # machine if this script is killed
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, process_group=0)

    def stop(*_: Any) -> None:
        _stop_group(proc)
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, stop)
    stopped = False
    try:
        rc = proc.wait(timeout=window)
    except subprocess.TimeoutExpired:
        stopped = True
        rc = _stop_group(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if log is not subprocess.DEVNULL:
            log.close()
    res: dict[str, Any] = {"command": " ".join(cmd[1:]), "returncode": rc,
                           "stopped_at_window": stopped, "t_start": t_start, "times": []}
    db = run_dir / "run.db"
    if not db.is_file():
        res["error"] = "no run.db written"
        return res
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT status, created, seconds, features_seconds, "
                            "classifier_seconds, error FROM evaluations ORDER BY id").fetchall()
        gens = conn.execute("SELECT generation, n_evaluated, cache_hits, seconds "
                            "FROM generations ORDER BY generation").fetchall()
    finally:
        conn.close()
    res["times"] = sorted(dt.datetime.fromisoformat(r[1]).timestamp() for r in rows)
    res["evaluations_ok"] = sum(r[0] == "ok" for r in rows)
    res["evaluations_failed"] = sum(r[0] != "ok" for r in rows)
    res["first_failure"] = next((r[5] for r in rows if r[0] != "ok"), None)
    res["mean_eval_seconds"] = mean([r[2] for r in rows if r[2] is not None])
    res["mean_features_seconds"] = mean([r[3] for r in rows if r[3] is not None])
    res["generations_done"] = len(gens)
    res["generations"] = [{"generation": g, "evaluated": n, "cache_hits": h,
                           "seconds": round(s, 2)} for g, n, h, s in gens]
    return res


def _stop_group(proc: subprocess.Popen) -> int:
    """Ctrl-C to the search's process group (it stores what finished), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 8), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll() if proc.poll() is not None else -9


def _shared_executor(args: argparse.Namespace, window: float) -> dict[str, Any]:
    """Sampled genomes through :class:`ProcessExecutor` until ``window`` seconds passed."""
    import numpy as np

    from rwenas.search.executors import EvalContext, Failure, ProcessExecutor
    from rwenas.spaces import get_space

    rwe = {"inference_batch": args.inference_batch} if args.inference_batch else {}
    context = EvalContext(space="micro", dataset="fashion-mnist", train_size=args.train_size,
                          val_size=args.val_size, seed=0, rwe=rwe)
    space = get_space("micro")
    rng = np.random.default_rng(0)
    genomes = list(dict.fromkeys(tuple(int(v) for v in space.sample(rng)) for _ in range(600)))
    t_start = time.time()
    executor = ProcessExecutor(context, args.workers, threads=args.threads)
    times, seconds, failures = [], [], []
    try:
        for _, outcome in executor.run(genomes):
            times.append(time.time())
            if isinstance(outcome, Failure):
                failures.append(outcome.message)
            else:
                seconds.append(outcome["seconds"])
            if time.time() - t_start > window:
                break
    finally:
        processes = list((getattr(executor.pool, "_processes", None) or {}).values())
        executor.close()
        for proc in processes:  # evaluations still running are not waited for
            proc.terminate()
    return {"t_start": t_start, "times": times, "evaluations_ok": len(seconds),
            "evaluations_failed": len(failures),
            "first_failure": failures[0] if failures else None,
            "mean_eval_seconds": mean(seconds)}


def _rates(t_start: float, times: list[float], workers: int) -> dict[str, Any]:
    """Throughput from the completion times: overall (from the start, start-up included) and
    steady (after the first ``workers`` completions, when every worker is warm)."""
    n = len(times)
    out: dict[str, Any] = {"evaluations": n}
    if n == 0:
        return out
    out["first_result_seconds"] = round(times[0] - t_start, 2)
    out["span_seconds"] = round(times[-1] - t_start, 2)
    out["evals_per_s_overall"] = round(n / max(times[-1] - t_start, 1e-9), 3)
    k = min(workers, n - 2)
    if k >= 0 and n >= 2 and times[-1] > times[k]:
        steady = (n - 1 - k) / (times[-1] - times[k])
        out["evals_per_s_steady"] = round(steady, 3)
        startup = times[k] - t_start
        total = startup + (PAPER_EVALUATIONS - k - 1) / steady
        out["extrapolated_paper_search_seconds"] = round(total, 1)
        out["extrapolation"] = (
            f"EXTRAPOLATED from {n} evaluations in {out['span_seconds']} s: the first {k + 1} "
            f"(start-up included) in {startup:.1f} s + {PAPER_EVALUATIONS - k - 1} more at the "
            f"steady "
            f"{steady:.3f} evaluations/s = {total:.0f} s for the paper's "
            f"{PAPER_EVALUATIONS} evaluations (cache hits, which cost nothing, not counted)")
        out["goal_met"] = total <= GOAL_SEARCH_SECONDS
    return out


def _print_shared(out: dict[str, Any]) -> None:
    print(f"shared GPU: {out['workers']} workers ({out['mode']}), {out['train_size']}/"
          f"{out['val_size']} images: {out.get('evaluations', 0)} evaluations "
          f"({out.get('evaluations_failed', 0)} failed) in {out.get('span_seconds')} s; "
          f"overall {out.get('evals_per_s_overall')} /s, steady "
          f"{out.get('evals_per_s_steady')} /s; GPU {out['gpu']}")
    if out.get("first_failure"):
        print(f"first failure: {out['first_failure']}")
    if out.get("extrapolation"):
        print(out["extrapolation"])


# -- train --------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from rwenas.data import load_dataset
    from rwenas.device import resolve_device

    deadline = time.perf_counter() + args.budget_s
    device = resolve_device(args.device)
    ds = load_dataset("fashion-mnist")
    out: dict[str, Any] = {"device": str(device)}
    ok = True
    for name, fn in (("bench_budget", _train_bench), ("validation_epoch", _train_validation)):
        if time.perf_counter() > deadline:
            out[name] = {"skipped": "part budget spent"}
            continue
        try:
            with GpuSampler() as sampler:
                out[name] = fn(args, ds, str(device))
            out[name]["gpu"] = sampler.summary()
        except Exception as exc:
            ok = False
            out[name] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-3000:]}
            traceback.print_exc()
        write_json(args.out, out)
        _print_train(name, out[name])
    return 0 if ok else 1


def _epochs(history: list[dict[str, Any]], n_train: int) -> list[dict[str, Any]]:
    return [{"epoch": r["epoch"], "seconds": round(r["seconds"], 2),
             "images_per_s": round(n_train / r["seconds"], 1),
             "train_loss": round(r["train_loss"], 4), "test_acc": r["test_acc"]}
            for r in history]


def _train_bench(args: argparse.Namespace, ds: Any, device: str) -> dict[str, Any]:
    """The bench budget (``rwenas bench``): C=8, 5 cells, search setting, batch 128, 3 epochs,
    cosine lr 0.05; only the last epoch is followed by the test pass."""
    from bench_rwe import GENOMES
    from rwenas.build import build_network
    from rwenas.estimators.base import build_network as seeded
    from rwenas.fit.loop import TrainData, fit
    from rwenas.spaces import canonical_genome, get_space
    from rwenas.study.bench import BenchBudget

    budget = BenchBudget(device=device, epochs=args.bench_epochs,
                         train_size=args.bench_train_size, test_size=args.bench_test_size)
    data = TrainData.from_dataset(ds, train_size=budget.train_size, test_size=budget.test_size)
    space = get_space("micro")
    genome = canonical_genome(space, space.validate(GENOMES["conv-wide"]))
    net = seeded(lambda: build_network(space, genome, in_channels=1, num_classes=10,
                                       setting="search", channels=budget.channels,
                                       layers=budget.layers, auxiliary=False, drop_path=0.0),
                 0)
    t0 = time.perf_counter()
    res = fit(net, data, budget.recipe(), seed=0, device=device, precision=budget.precision,
              test_every_epoch=False)
    n = int(data.train_labels.shape[0])
    epochs = _epochs(res.history, n)
    return {"budget": budget.describe(), "genome": "conv-wide", "train_images": n,
            "test_images": int(data.test_labels.shape[0]), "params_m": res.params_m,
            "madds_m": res.madds_m, "total_seconds": round(time.perf_counter() - t0, 2),
            "test_acc": res.history[-1]["test_acc"], "epochs": epochs,
            "images_per_s": epochs[1]["images_per_s"] if len(epochs) > 2
            else epochs[-1]["images_per_s"],
            "note": "images/s of the 2nd epoch when there are 3 or more (the 1st warms up, the "
                    "last also runs the test pass)"}


def _train_validation(args: argparse.Namespace, ds: Any, device: str) -> dict[str, Any]:
    """The validation recipe (the paper's CIFAR training: 20 cells, 34 channels, auxiliary
    head, drop path, cutout, batch 96) for ``--val-epochs`` epochs on a sub-sample."""
    from rwenas.build import resolve_architecture
    from rwenas.fit.recipes import CifarRecipe
    from rwenas.train.run import train

    recipe = CifarRecipe(epochs=args.val_epochs, channels=args.val_channels)
    res = train(resolve_architecture("micro", arch="DARTS"), recipe, data=ds,
                train_size=args.val_train_size, test_size=args.val_test_size, device=device)
    epochs = _epochs(res.history, args.val_train_size)
    ips = epochs[-1]["images_per_s"]
    return {"architecture": "DARTS", "network": res.result["network"] if res.result else None,
            "train_images": args.val_train_size, "test_images": args.val_test_size,
            "params_m": res.params_m, "madds_m": res.madds_m, "epochs": epochs,
            "images_per_s": ips, "full_epoch_seconds_estimate": round(60000 / ips, 1),
            "note": "images/s of the last epoch, its test pass on the test images included; "
                    "a full epoch is 60000 images"}


def _print_train(name: str, res: dict[str, Any]) -> None:
    if "error" in res or "skipped" in res:
        print(f"{name}: {res.get('error') or res.get('skipped')}")
        return
    print(f"{name}: {res['train_images']} images, params {res['params_m']:.3f} M, MAdds "
          f"{res['madds_m']:.1f} M -> {res['images_per_s']} images/s; epochs " +
          ", ".join(f"{e['seconds']} s" for e in res["epochs"]) + f"; GPU {res.get('gpu')}")


# -- summary ------------------------------------------------------------------------------------
def cmd_summary(args: argparse.Namespace) -> int:
    work, out_dir = Path(args.work), Path(args.out_dir)
    summary: dict[str, Any] = {"written_utc": now_utc(), "smoke": os.environ.get(
        "GPU_SMOKE") == "1", "parts": {}}
    status = work / "status.tsv"
    if status.is_file():
        for line in status.read_text().splitlines():
            name, rc, seconds = ([*line.split("\t"), "", ""])[:3]
            summary["parts"][name] = {"rc": rc, "seconds": seconds}
    for name in ("env", "rwe", "shared", "train"):
        path = work / f"{name}.json"
        if path.is_file():
            with contextlib.suppress(json.JSONDecodeError):
                summary[name] = json.loads(path.read_text())
    tests = work / "tests.xml"
    if tests.is_file():
        summary["tests"] = _junit(tests)
    write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(_markdown(summary))
    return 0


def _junit(path: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return {"error": f"unreadable junit xml: {exc}"}
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = tag
                message = (el.get("message") or "")[:300]
                break
        cases.append({"test": case.get("name"), "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"counts": counts, "cases": cases}


def _markdown(s: dict[str, Any]) -> str:
    env = s.get("env") or {}
    lines = [f"# rwenas on {env.get('gpu') or 'CPU (no CUDA)'}" +
             (" — SMOKE RUN (tiny sizes, not a measurement)" if s.get("smoke") else ""),
             "", f"{env.get('date_utc', s['written_utc'])}; torch {env.get('torch')}, "
             f"Python {env.get('python')}, {env.get('cpu_count')} CPUs; data {env.get('data')}",
             ""]
    if env.get("ceilings"):
        lines += [f"Ceilings measured: bf16 matmul {env['ceilings']['bf16_matmul_tflops']} "
                  f"TFLOP/s, copy {env['ceilings']['copy_gb_s']} GB/s.", ""]
    lines += ["| part | rc | seconds |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v['rc']} | {v['seconds']} |" for k, v in s["parts"].items()]
    tests = s.get("tests")
    if tests:
        lines += ["", "## CUDA tests", "", f"counts: {tests.get('counts')}", ""]
        for c in tests.get("cases", []):
            lines.append(f"- {c['outcome']}: {c['test']} ({c['seconds']:.1f} s)"
                         + (f" — {c['message']}" if c["message"] and c["outcome"] != "passed"
                            else ""))
    rwe = s.get("rwe")
    if rwe:
        lines += ["", f"## RWE, {rwe['train_size']}/{rwe['val_size']} images, {rwe['network']}"
                  f", {rwe['device']}", "",
                  f"Goal: <= {GOAL_RWE_SECONDS} s per architecture (the paper: about "
                  f"{PAPER_RWE_SECONDS} s on a 2080 Ti). Warm-up {rwe.get('warmup_seconds')} s "
                  f"(not counted); peak GPU memory {rwe.get('peak_memory_gib')} GiB.", "",
                  "| variant | genomes | s/arch | features s | classifier s | mean error % "
                  "| goal |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for v, b in (rwe.get("by_variant") or {}).items():
            lines.append(f"| {v} {rwe['variants'].get(v, '')} | {b['count']} | "
                         f"{b['mean_seconds']} | {b['mean_features_seconds']} | "
                         f"{b['mean_classifier_seconds']} | {100 * b['mean_error']:.2f} | "
                         f"{'met' if b['goal_met'] else 'not met'} |")
    sh = s.get("shared")
    if sh:
        lines += ["", f"## Evaluations sharing one GPU ({sh['workers']} workers, {sh['mode']}, "
                  f"{sh['train_size']}/{sh['val_size']} images)", "",
                  f"- {sh.get('evaluations', 0)} evaluations ({sh.get('evaluations_failed', 0)} "
                  f"failed) in {sh.get('span_seconds')} s; first result after "
                  f"{sh.get('first_result_seconds')} s; generations done "
                  f"{sh.get('generations_done')}",
                  f"- evaluations/s: overall {sh.get('evals_per_s_overall')}, steady "
                  f"{sh.get('evals_per_s_steady')}; mean seconds per evaluation in a worker "
                  f"{_round(sh.get('mean_eval_seconds'))} (features "
                  f"{_round(sh.get('mean_features_seconds'))}); GPU {sh.get('gpu')}"]
        if sh.get("extrapolation"):
            lines.append(f"- {sh['extrapolation']}; goal <= {GOAL_SEARCH_SECONDS:.0f} s: "
                         f"{'met' if sh.get('goal_met') else 'not met'}")
        if sh.get("first_failure"):
            lines.append(f"- first failure: {sh['first_failure']}")
        if sh.get("note") or sh.get("error"):
            lines.append(f"- note: {sh.get('note') or ''} {sh.get('error') or ''}".rstrip())
    tr = s.get("train")
    if tr:
        lines += ["", f"## Training throughput ({tr.get('device')})", ""]
        for name in ("bench_budget", "validation_epoch"):
            r = tr.get(name)
            if not r:
                continue
            if "error" in r or "skipped" in r:
                lines.append(f"- {name}: {r.get('error') or r.get('skipped')}")
                continue
            lines.append(f"- {name}: {r['train_images']} images, {r['params_m']:.3f} M params, "
                         f"{r['madds_m']:.1f} M MAdds: **{r['images_per_s']} images/s**; "
                         "epochs " + ", ".join(f"{e['seconds']} s" for e in r["epochs"]) +
                         (f"; a full 60k epoch ~{r['full_epoch_seconds_estimate']} s"
                          if "full_epoch_seconds_estimate" in r else "") +
                         f"; GPU {r.get('gpu')} ({r['note']})")
    return "\n".join(lines) + "\n"


def _round(value: Any, digits: int = 2) -> Any:
    return round(value, digits) if isinstance(value, float) else value


# -- command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("env")
    p.add_argument("--out", required=True)

    p = sub.add_parser("rwe")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-size", type=int, default=40000)
    p.add_argument("--val-size", type=int, default=10000)
    p.add_argument("--genomes", type=int, default=6)
    p.add_argument("--variants", default="default,batch1024,fp32-batch1024",
                   help=f"comma-separated, of {', '.join(RWE_VARIANTS)}")
    p.add_argument("--budget-s", type=float, default=default_budget())

    p = sub.add_parser("shared")
    p.add_argument("--out", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--log", help="the search's output")
    p.add_argument("--workers", type=int, default=10)
    p.add_argument("--threads", type=int, help="torch threads per worker (default cores/N)")
    p.add_argument("--train-size", type=int, default=40000)
    p.add_argument("--val-size", type=int, default=10000)
    p.add_argument("--pop-size", type=int)
    p.add_argument("--generations", type=int)
    p.add_argument("--inference-batch", type=int,
                   help="RWE inference batch (default: the search's, 1024 on a GPU)")
    p.add_argument("--direct", action="store_true",
                   help="the process executor on sampled genomes, without the search")
    p.add_argument("--budget-s", type=float, default=default_budget())

    p = sub.add_parser("train")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--bench-epochs", type=int, default=3)
    p.add_argument("--bench-train-size", type=int)
    p.add_argument("--bench-test-size", type=int)
    p.add_argument("--val-epochs", type=int, default=2)
    p.add_argument("--val-channels", type=int, default=34)
    p.add_argument("--val-train-size", type=int, default=9600)
    p.add_argument("--val-test-size", type=int, default=500)
    p.add_argument("--budget-s", type=float, default=default_budget())

    p = sub.add_parser("summary")
    p.add_argument("work")
    p.add_argument("out_dir")

    args = ap.parse_args(argv)
    return {"env": cmd_env, "rwe": cmd_rwe, "shared": cmd_shared, "train": cmd_train,
            "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
