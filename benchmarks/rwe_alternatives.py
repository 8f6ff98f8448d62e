"""Ways to a faster RWE feature pass on a CPU that were measured and rejected (README,
"Random-Weight Evaluation", Speed), kept so that each can be measured again on other cores:

    python benchmarks/rwe_alternatives.py ort    [--images 2048] [--genomes 4]
    python benchmarks/rwe_alternatives.py pack   [--repeats 30]
    python benchmarks/rwe_alternatives.py fused  [--repeats 20]
    python benchmarks/rwe_alternatives.py simd   [--repeats 30]

* ``ort``: ONNX Runtime (float32, all graph optimisations) on the exported frozen backbone of
  ``bench_rwe.py``'s genomes (C=10, 5 cells, BatchNorm folded, RWE's inference pools, whose
  average pools export as the plain pool) against rwenas's eager bfloat16 feature pass on the
  same images, with the export's seconds.
* ``pack``: k images' channels packed into one tensor (batch 128/k, k*C channels), so that
  thin layers fill more vector lanes: a depthwise 3x3, a dense and a grouped 1x1 convolution
  and a ReLU, bfloat16 channels-last, in ms per 128 images.
* ``fused``: ReLU -> depthwise 3x3 -> 1x1 as one plainly written numba kernel (float32)
  against the three eager operations.
* ``simd``: the same fused operation hand-vectorised with AVX-512 intrinsics
  (``fused_sepconv.cpp``, compiled here with ``g++ -O3 -march=native``; needs AVX512-BF16),
  bfloat16 in and out like the eager bfloat16 operations it is timed against, alone and
  without its 1x1 part (against the eager depthwise convolution alone).

All on one thread (``torch.set_num_threads(1)``); run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import io
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_timings import median_ms

CL = torch.channels_last


class PooledStages(nn.Module):
    """RWE's ``all_cells`` features (:class:`~rwenas.estimators.rwe.AllCellFeatures`: every
    cell's globally pooled output, concatenated) as a module ``torch.onnx.export`` can trace;
    ``features`` is the hooked backbone's callable."""

    def __init__(self, net: nn.Module, features: Callable[[torch.Tensor], torch.Tensor]
                 ) -> None:
        super().__init__()
        self.net = net
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def cmd_ort(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    from bench_rwe import GENOMES
    from rwenas.estimators.rwe import AllCellFeatures, extract_features
    from rwenas.models import create_network
    from rwenas.models.ops import fold_batchnorm, inference_pools
    from rwenas.spaces import get_space

    space = get_space("micro")
    x = torch.randn(args.images, 1, 28, 28)
    batch = 128
    print(f"{'genome':<11} {'eager bf16 s':>12} {'ORT fp32 s':>10} {'export s':>8} "
          f"{'ORT speed':>9} {'ORT rel diff':>12}")
    for name, text in list(GENOMES.items())[:args.genomes]:
        torch.manual_seed(0)
        net = create_network(space, space.validate(text), channels=10, layers=5,
                             in_channels=1, num_classes=10).to(memory_format=CL).eval()
        net.drop_path_prob = 0.0
        for p in net.parameters():
            p.requires_grad_(False)
        fold_batchnorm(net)
        inference_pools(net)
        bf16 = copy.deepcopy(net).to(torch.bfloat16)  # before hooking net: hooks don't copy
        fp32_hooks = AllCellFeatures(net)
        reference = extract_features(net, x, batch, CL, torch.float32, fp32_hooks)
        hooks = AllCellFeatures(bf16)
        extract_features(bf16, x[:256], batch, CL, torch.bfloat16, hooks)
        t0 = time.perf_counter()
        extract_features(bf16, x, batch, CL, torch.bfloat16, hooks)
        eager_s = time.perf_counter() - t0
        hooks.close()
        t0 = time.perf_counter()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(PooledStages(net, fp32_hooks).eval(), x[:batch].contiguous(), buf,
                              dynamo=False, input_names=["x"], output_names=["f"],
                              dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17)
        fp32_hooks.close()
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(buf.getvalue(), options,
                                       providers=["CPUExecutionProvider"])
        export_s = time.perf_counter() - t0
        xn = x.numpy()
        session.run(None, {"x": xn[:batch]})
        t0 = time.perf_counter()
        feats = [session.run(None, {"x": xn[s:s + batch]})[0]
                 for s in range(0, len(xn), batch)]
        ort_s = time.perf_counter() - t0
        got = torch.from_numpy(np.concatenate(feats))
        rel = float((got - reference).norm() / reference.norm())
        print(f"{name:<11} {eager_s:12.2f} {ort_s:10.2f} {export_s:8.2f} "
              f"{eager_s / ort_s:8.2f}x {rel:12.1e}", flush=True)


def cmd_pack(args: argparse.Namespace) -> None:
    print("channels size k  dw3x3  dense1x1  grouped1x1  relu   (ms per 128 images)")
    for c, hw in ((10, 28), (20, 14), (40, 7)):
        for k in (1, 2, 3, 4):
            n = -(-128 // k)
            kc = k * c
            x = torch.randn(n, kc, hw, hw, dtype=torch.bfloat16).contiguous(memory_format=CL)
            ops = [nn.Conv2d(kc, kc, 3, padding=1, groups=kc, bias=False),
                   nn.Conv2d(kc, kc, 1, bias=False), nn.Conv2d(kc, kc, 1, groups=k, bias=False)]
            ops = [op.to(torch.bfloat16, memory_format=CL) for op in ops]
            scale = 128 / (n * k)
            with torch.inference_mode():
                ms = [median_ms(partial(op, x), args.repeats) for op in ops]
                ms.append(median_ms(partial(torch.relu, x), args.repeats))
            print(f"{c:8d} {hw:4d} {k:1d} " + " ".join(f"{v * scale:9.3f}" for v in ms),
                  flush=True)


def separable_half(x: torch.Tensor, dw: nn.Module, pw: nn.Module) -> torch.Tensor:
    """Half a DARTS separable convolution, BatchNorm folded into the 1x1's bias."""
    return pw(dw(torch.relu(x)))


def cmd_fused(args: argparse.Namespace) -> None:
    import numba

    @numba.njit(fastmath=True, nogil=True)
    def fused(x, wd, wp, b, out):  # x: N,H,W,C; wd: 3,3,C; wp: C,O
        n_img, height, width, channels = x.shape
        acc = np.empty(channels, np.float32)
        for n in range(n_img):
            for h in range(height):
                for w in range(width):
                    acc[:] = 0.0
                    for i in range(max(0, 1 - h), min(3, height + 1 - h)):
                        for j in range(max(0, 1 - w), min(3, width + 1 - w)):
                            for c in range(channels):
                                acc[c] += max(x[n, h + i - 1, w + j - 1, c], 0.0) * wd[i, j, c]
                    for o in range(wp.shape[1]):
                        s = b[o]
                        for c in range(channels):
                            s += acc[c] * wp[c, o]
                        out[n, h, w, o] = s

    print("channels size  eager bf16 ms  eager fp32 ms  numba fused fp32 ms  fused rel diff")
    for c, hw in ((10, 28), (20, 14), (40, 7)):
        x = torch.randn(128, c, hw, hw)
        dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        pw = nn.Conv2d(c, c, 1)
        with torch.inference_mode():
            ref = pw(dw(torch.relu(x)))
            x32 = x.contiguous(memory_format=CL)
            dw32, pw32 = dw.to(memory_format=CL), pw.to(memory_format=CL)
            fp32_ms = median_ms(partial(separable_half, x32, dw32, pw32), args.repeats)
            xb = x.to(torch.bfloat16).contiguous(memory_format=CL)
            dwb = copy.deepcopy(dw).to(torch.bfloat16, memory_format=CL)
            pwb = copy.deepcopy(pw).to(torch.bfloat16, memory_format=CL)
            bf16_ms = median_ms(partial(separable_half, xb, dwb, pwb), args.repeats)
        xn = x.permute(0, 2, 3, 1).contiguous().numpy()
        wd = dw.weight.detach()[:, 0].permute(1, 2, 0).contiguous().numpy()
        wp = pw.weight.detach()[:, :, 0, 0].t().contiguous().numpy()
        b = pw.bias.detach().numpy()
        out = np.empty((128, hw, hw, c), np.float32)
        fused_ms = median_ms(partial(fused, xn, wd, wp, b, out), args.repeats)
        want = ref.permute(0, 2, 3, 1).numpy()
        rel = float(np.abs(out - want).max() / np.abs(want).max())
        print(f"{c:8d} {hw:4d} {bf16_ms:14.3f} {fp32_ms:14.3f} {fused_ms:20.3f} {rel:15.1e}",
              flush=True)


def simd_unavailable() -> str | None:
    """Why ``fused_sepconv.cpp`` cannot be built and run here (no g++ or no AVX512-BF16), or
    ``None``."""
    cpu = Path("/proc/cpuinfo")
    flags = cpu.read_text().split() if cpu.exists() else []
    if shutil.which("g++") is None or "avx512_bf16" not in flags:
        return "simd needs g++ and a CPU with AVX512-BF16"
    return None


def compile_fused_sepconv(workdir: Path):
    """``fused_sepconv.cpp`` built with g++ for this CPU and loaded with ctypes; exits with a
    one-line message where :func:`simd_unavailable` says why it cannot."""
    import ctypes

    if reason := simd_unavailable():
        raise SystemExit(reason)
    lib = workdir / "fused_sepconv.so"
    src = Path(__file__).resolve().parent / "fused_sepconv.cpp"
    subprocess.run(["g++", "-O3", "-march=native", "-shared", "-fPIC", "-o", str(lib), str(src)],
                   check=True)
    kernel = ctypes.CDLL(str(lib)).relu_dw3_pw
    kernel.restype = ctypes.c_int
    return kernel


def pack_sepconv(dw: nn.Conv2d, pw: nn.Conv2d) -> tuple[torch.Tensor, ...]:
    """The kernel's float32 weights: one zero-padded 16-lane row per depthwise tap
    ``(9, 16)``, per 1x1 input channel ``(C, 16)``, and the 1x1 bias ``(16,)``."""
    c = dw.out_channels
    wd, wp, bias = torch.zeros(9, 16), torch.zeros(c, 16), torch.zeros(16)
    wd[:, :c] = dw.weight.detach()[:, 0].permute(1, 2, 0).reshape(9, c)
    wp[:, :c] = pw.weight.detach()[:, :, 0, 0].t()
    bias[:c] = pw.bias.detach()
    return wd, wp, bias


def run_fused_sepconv(kernel, x: torch.Tensor, weights: tuple[torch.Tensor, ...],
                      pointwise: int, out: torch.Tensor, channels: int | None = None) -> int:
    """``kernel`` on bfloat16 channels-last ``x`` into ``out``; its return code (0 = done,
    1 = more than 16 channels). ``channels`` overrides ``x``'s count (to test the refusal)."""
    import ctypes

    ptr = ctypes.c_void_p
    n, c, h, w = x.shape
    wd, wp, bias = weights
    return kernel(ptr(x.data_ptr()), n, h, w, channels or c, ptr(wd.data_ptr()),
                  ptr(wp.data_ptr()), ptr(bias.data_ptr()), pointwise, ptr(out.data_ptr()))


def cmd_simd(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kernel = compile_fused_sepconv(Path(tmp))
        print("channels size  eager bf16 ms  simd ms  speed  eager dw ms  simd dw ms  speed"
              "  eager rel diff  simd rel diff")
        for c, hw in ((10, 28), (16, 28), (16, 14)):
            x = torch.randn(128, c, hw, hw)
            dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
            pw = nn.Conv2d(c, c, 1)
            xb = x.to(torch.bfloat16).contiguous(memory_format=CL)
            dwb = copy.deepcopy(dw).to(torch.bfloat16, memory_format=CL)
            pwb = copy.deepcopy(pw).to(torch.bfloat16, memory_format=CL)
            simd = partial(run_fused_sepconv, kernel, xb, pack_sepconv(dw, pw),
                           out=torch.empty_like(xb))
            with torch.inference_mode():
                want = pw(dw(torch.relu(xb.float())))
                eager_ms = median_ms(partial(separable_half, xb, dwb, pwb), args.repeats)
                eager_dw_ms = median_ms(partial(dwb, torch.relu(xb)), args.repeats)
                rel_eager = float((separable_half(xb, dwb, pwb).float() - want).abs().max()
                                  / want.abs().max())
            simd_dw_ms = median_ms(partial(simd, 0), args.repeats)
            simd_ms = median_ms(partial(simd, 1), args.repeats)
            got = torch.empty_like(xb)
            assert simd(1, out=got) == 0
            rel = float((got.float() - want).abs().max() / want.abs().max())
            print(f"{c:8d} {hw:4d} {eager_ms:14.3f} {simd_ms:8.3f} {eager_ms / simd_ms:5.2f}x "
                  f"{eager_dw_ms:12.3f} {simd_dw_ms:11.3f} {eager_dw_ms / simd_dw_ms:5.2f}x "
                  f"{rel_eager:15.1e} {rel:14.1e}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("ort", help="ONNX Runtime against the eager bfloat16 feature pass")
    o.add_argument("--images", type=int, default=2048)
    o.add_argument("--genomes", type=int, default=4)
    for name, default in (("pack", 30), ("fused", 20), ("simd", 30)):
        s = sub.add_parser(name)
        s.add_argument("--repeats", type=int, default=default)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    {"ort": cmd_ort, "pack": cmd_pack, "fused": cmd_fused, "simd": cmd_simd}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
