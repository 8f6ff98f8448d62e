"""The benchmarks in benchmarks/ still run against the current API.

They are not part of CI's timing (performance targets live there, not in tests), but a
refactoring that breaks them goes unnoticed otherwise: bench_rwe.py called a space's
``build`` for months after built-in spaces stopped having one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("script", ["bench_pools.py", "bench_rwe.py", "bench_train.py",
                                    "gpu_bench.py", "gpu_probe.py", "op_timings.py",
                                    "rwe_alternatives.py"])
def test_benchmark_imports_and_parses_arguments(script):
    assert "usage:" in run(f"benchmarks/{script}", "--help")


def test_gpu_bench_env_part_reports_this_machine(tmp_path):
    """The first part of benchmarks/gpu.sh, which a GPU session cannot afford to lose to an
    import error (it once imported names rwenas.data no longer exports)."""
    import torch

    out = tmp_path / "env.json"
    run("benchmarks/gpu_bench.py", "env", "--out", str(out))
    info = json.loads(out.read_text())
    assert info["torch"] == torch.__version__ and info["cpu_count"] == os.cpu_count()
    assert info["cuda_available"] == torch.cuda.is_available()


def test_op_timings_times_every_operation_in_every_layout():
    out = run("benchmarks/op_timings.py", "--channels", "4", "6", "--sizes", "8",
              "--repeats", "2")
    rows = [line.split() for line in out.splitlines() if line[:3].strip().isdigit()]
    layouts, merged = rows[:2], rows[2:]
    assert [r[:2] for r in layouts] == [["4", "8x8"], ["6", "8x8"]]
    for r in layouts:  # dw, 1x1, relu in each of the 4 layouts: 12 positive times
        assert len(r) == 2 + 12 and all(float(v) > 0 for v in r[2:])
    # the separable pair against its dense equal, at a C=10 network's three stages
    assert [r[:3] for r in merged] == [["10", "28x28", "3"], ["10", "28x28", "5"],
                                       ["20", "14x14", "3"], ["20", "14x14", "5"],
                                       ["40", "7x7", "3"], ["40", "7x7", "5"]]
    for r in merged:  # both times positive; the outputs equal up to bfloat16 rounding
        assert float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) < 0.02


def test_bench_rwe_runs_and_its_flop_rate_is_its_own_arithmetic():
    out = run("benchmarks/bench_rwe.py", "--dataset", "synthetic", "--train-size", "120",
              "--val-size", "40", "--genomes", "2", "--threads", "1")
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("conv-wide", "conv-chain"))]
    assert [r[0] for r in rows] == ["conv-wide", "conv-chain"]
    for r in rows:
        ours, ref, err, ref_err = float(r[1]), float(r[2]), float(r[4]), float(r[5])
        madds, feat_s, rate = float(r[7]), float(r[8]), float(r[9])
        assert 0 < feat_s <= ours and ref > 0
        assert 0 <= err <= 100 and 0 <= ref_err <= 100
        assert float(r[6]) == pytest.approx(err - ref_err, abs=0.011)
        # 2 FLOPs per multiply-add, over all 160 images (train + validation)
        assert rate == pytest.approx(2 * madds * 1e6 * 160 / feat_s / 1e9, rel=0.03, abs=0.2)
    roof = re.search(r"ceiling of (\d+) GFLOP/s .*: ([\d.]+) % of it", out)
    assert roof, out
    mean_rate = sum(float(r[9]) for r in rows) / len(rows)
    assert float(roof.group(2)) == pytest.approx(100 * mean_rate / float(roof.group(1)), rel=0.05)


def test_bench_train_reference_runs_plain_convolutions_computing_the_same_function():
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_train import GENOMES, network, plain_convs
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from rwenas.fit.recipes import CifarRecipe
    from rwenas.models.ops import DepthwiseConv

    class Data:  # what network() reads of TrainData
        in_channels, num_classes = 1, 10

    genome = tuple(int(v) for v in GENOMES["conv-wide"].split())
    net = network(genome, CifarRecipe(), Data(), 0, channels=4, layers=3, auxiliary=False,
                  drop_path=0.0)
    before = sum(isinstance(m, DepthwiseConv) for m in net.modules())
    x = torch.randn(2, 1, 12, 12, requires_grad=True)
    net.train()
    y = net(x)
    ref = plain_convs(network(genome, CifarRecipe(), Data(), 0, channels=4, layers=3, drop_path=0.0,
                              auxiliary=False))
    assert before > 0 and not any(isinstance(m, DepthwiseConv) for m in ref.modules())
    assert sum(type(m) is nn.Conv2d and m.groups > 1 for m in ref.modules()) == before
    torch.testing.assert_close(ref(x), y, rtol=1e-5, atol=1e-5)


def test_rwe_alternatives_compute_the_features_they_are_timed_against():
    """ONNX Runtime's features and the numba kernel's outputs equal the eager float32 ones
    (the README's rejected alternatives were rejected for speed, not for being wrong)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("numba")
    out = run("benchmarks/rwe_alternatives.py", "ort", "--images", "256", "--genomes", "1")
    row = out.splitlines()[-1].split()
    assert row[0] == "conv-wide" and float(row[-1]) < 1e-5
    out = run("benchmarks/rwe_alternatives.py", "fused", "--repeats", "1")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["10", "28"], ["20", "14"], ["40", "7"]]
    assert all(float(r[-1]) < 1e-5 for r in rows)


def test_simd_kernel_computes_what_it_is_timed_against(tmp_path):
    """The hand-vectorised ReLU -> depthwise 3x3 -> 1x1 kernel of ``rwe_alternatives.py
    simd`` matches the float32 operations to bfloat16 rounding (as the eager bfloat16 ones
    do), with and without its 1x1 part, including the border pixels of odd widths."""
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rwe_alternatives import (
        compile_fused_sepconv,
        pack_sepconv,
        run_fused_sepconv,
        simd_unavailable,
    )

    if reason := simd_unavailable():
        pytest.skip(reason)
    out = run("benchmarks/rwe_alternatives.py", "simd", "--repeats", "1")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["10", "28"], ["16", "28"], ["16", "14"]]
    for r in rows:
        assert float(r[-1]) < 1e-2 and float(r[-2]) < 1e-2

    kernel = compile_fused_sepconv(tmp_path)
    torch.manual_seed(0)
    c = 5
    x = torch.randn(2, c, 4, 7).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
    pw = nn.Conv2d(c, c, 1)
    weights = pack_sepconv(dw, pw)
    with torch.no_grad():
        depthwise = dw(torch.relu(x.float()))
        both = pw(depthwise)
    got = torch.full_like(x, float("nan"))
    for pointwise, want in ((0, depthwise), (1, both)):
        assert run_fused_sepconv(kernel, x, weights, pointwise, got) == 0
        torch.testing.assert_close(got.float(), want, rtol=8e-3, atol=1e-5)
    assert run_fused_sepconv(kernel, x, weights, 1, got, channels=17) == 1


def test_gpu_probe_runs_on_a_cpu(tmp_path):
    """benchmarks/gpu.sh's probe part, dry: training steps under every cuDNN mode and
    precision, and inference operations by layout, without device times."""
    out = tmp_path / "probe.json"
    run("benchmarks/gpu_probe.py", "--out", str(out), "--budget-s", "6", "--repeats", "1")
    probe = json.loads(out.read_text())
    assert probe["device"] == "cpu" and probe["top_kernels"] == []
    assert probe["steps"] and all(r["host_ms"] > 0 and "device_ms" not in r
                                  for r in probe["steps"])
    assert {r["layout"] for r in probe["ops"]} == {"CL", "NCHW"}
