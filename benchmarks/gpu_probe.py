"""Why small networks are slow on a GPU: the probe behind the README's GPU findings.

    python benchmarks/gpu_probe.py --out W/probe.json [--budget-s 120]

Two measurements, each with CUDA events (device time) beside the host's wall clock, so a gap
between the two shows the host (kernel launches, Python) as the bound:

* ``steps``: training steps of the bench network (micro conv-wide genome, C=8, 5 cells,
  batch 128, SGD) under each cuDNN mode rwenas could use (``deterministic``: what
  ``rwenas.fit`` sets for bit-exact resume; ``benchmark``: timed algorithm choice;
  ``default``: neither), in bfloat16 autocast and float32, channels-last and NCHW; and the
  ten CUDA kernels taking most time in the deterministic channels-last bfloat16 step.
* ``ops``: RWE's inference operations alone at batch 1024 (depthwise k x k, dilated, 1x1) at
  the shapes of a C=10 network's stages, bfloat16 and float32, channels-last and NCHW.

Runs on a CPU too (then without device times), for a dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = {"deterministic": (True, False), "benchmark": (False, True), "default": (False, False)}
LAYOUTS = {"CL": torch.channels_last, "NCHW": torch.contiguous_format}


def timed(step, device: torch.device, repeats: int) -> dict[str, float]:
    """Median host ms and median device ms of ``step`` (after three warm-up calls)."""
    for _ in range(3):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    host, dev = [], []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
        t0 = time.perf_counter()
        step()
        if cuda:
            b.record()
            torch.cuda.synchronize()
            dev.append(a.elapsed_time(b))
        host.append(1e3 * (time.perf_counter() - t0))
    out = {"host_ms": round(statistics.median(host), 3)}
    if dev:
        out["device_ms"] = round(statistics.median(dev), 3)
    return out


def bench_network(device: torch.device, layout: torch.memory_format) -> nn.Module:
    from bench_rwe import GENOMES
    from rwenas.models import create_network
    from rwenas.spaces import get_space

    space = get_space("micro")
    torch.manual_seed(0)
    net = create_network(space, space.validate(GENOMES["conv-wide"]), channels=8, layers=5,
                         in_channels=1, num_classes=10)
    net.drop_path_prob = 0.0
    return net.to(device=device, memory_format=layout)


def training_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, precision: str) -> None:
    """One SGD step of ``net`` on ``(x, y)``, under bfloat16 autocast for ``precision="bf16"``."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16"):
        out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    opt.step()


def probe_steps(device: torch.device, repeats: int, deadline: float) -> list[dict[str, Any]]:
    rows = []
    x = torch.randn(128, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    for mode, (det, bench) in MODES.items():
        for precision in ("bf16", "fp32"):
            for lname, layout in LAYOUTS.items():
                if time.perf_counter() > deadline:
                    return rows
                torch.backends.cudnn.deterministic = det
                torch.backends.cudnn.benchmark = bench
                net = bench_network(device, layout)
                opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
                step = partial(training_step, net, opt, x.contiguous(memory_format=layout), y,
                               precision)
                row = {"mode": mode, "precision": precision, "layout": lname,
                       **timed(step, device, repeats)}
                row["images_per_s"] = round(128e3 / row["host_ms"], 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def top_kernels(device: torch.device, n: int = 10) -> list[dict[str, Any]]:
    """The CUDA kernels taking most device time over five deterministic bf16 CL steps."""
    from torch.profiler import ProfilerActivity, profile

    if device.type != "cuda":
        return []
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    net = bench_network(device, torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.randn(128, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), device=device)
    step = partial(training_step, net, opt, x, y, "bf16")

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.device_time_total for e in events) or 1.0
    return [{"kernel": e.key[:120], "calls": e.count,
             "ms_per_step": round(e.device_time_total / 5e3, 3),
             "share": round(e.device_time_total / total, 3)} for e in events[:n]]


def probe_ops(device: torch.device, repeats: int, deadline: float) -> list[dict[str, Any]]:
    rows = []
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False
    batch = 1024 if device.type == "cuda" else 64
    for c, hw in ((10, 28), (20, 14), (40, 7)):
        ops = {"dw3": nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
               "dw5": nn.Conv2d(c, c, 5, padding=2, groups=c, bias=False),
               "dil3": nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=c, bias=False),
               "dil5": nn.Conv2d(c, c, 5, padding=4, dilation=2, groups=c, bias=False),
               "pw": nn.Conv2d(c, c, 1, bias=False)}
        for name, op in ops.items():
            for dtype in (torch.bfloat16, torch.float32):
                for lname, layout in LAYOUTS.items():
                    if time.perf_counter() > deadline:
                        return rows
                    m = op.to(device=device, dtype=dtype, memory_format=layout)
                    x = torch.randn(batch, c, hw, hw, device=device, dtype=dtype
                                    ).contiguous(memory_format=layout)
                    with torch.inference_mode():
                        r = timed(lambda m=m, x=x: m(x), device, repeats)
                    row = {"op": name, "channels": c, "size": hw, "batch": batch,
                           "dtype": str(dtype).removeprefix("torch."), "layout": lname, **r}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float,
                   default=float(os.environ.get("GPU_PART_BUDGET_S") or 120))
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    out: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda"
                           else "cpu", "torch": torch.__version__}
    out["steps"] = probe_steps(device, args.repeats, t0 + 0.5 * args.budget_s)
    Path(args.out).write_text(json.dumps(out, indent=1))
    out["top_kernels"] = top_kernels(device)
    for row in out["top_kernels"]:
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    # the operations get at least a quarter of the budget even when the steps overran theirs
    ops_deadline = max(t0 + args.budget_s, time.perf_counter() + 0.25 * args.budget_s)
    out["ops"] = probe_ops(device, args.repeats, ops_deadline)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
