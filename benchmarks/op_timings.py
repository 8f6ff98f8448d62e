"""Single operations of RWE's feature pass, in every layout, in one run: why the feature pass
is far from the cores' limit (README, "Random-Weight Evaluation", Speed).

For the channel counts of a C=10 micro network (10, 20, 40) and 16/32 beside them, at 28x28
and 14x14, batch 128, one thread: a 3x3 depthwise convolution, a 1x1 convolution and a ReLU
in bfloat16 and float32, channels-last and NCHW; the median of 20 timed calls (ms) after two
warm-up calls. Then, at the shapes of a C=10 network's three stages (10 channels at 28x28, 20
at 14x14, 40 at 7x7), bfloat16 channels-last: a separable convolution's depthwise k x k + 1x1
pair against the one dense k x k convolution it equals (weights multiplied out), and the
largest difference of their outputs relative to the largest output. Run it on an otherwise
idle machine:

    python benchmarks/op_timings.py [--channels 10 16 20 32 40] [--sizes 28 14] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

LAYOUTS = [("bf16 CL", torch.bfloat16, torch.channels_last),
           ("fp32 CL", torch.float32, torch.channels_last),
           ("fp32 NCHW", torch.float32, torch.contiguous_format),
           ("bf16 NCHW", torch.bfloat16, torch.contiguous_format)]


def median_ms(f: Callable[[], object], repeats: int = 20) -> float:
    f()
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[10, 16, 20, 32, 40])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 14])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, batch 128; ms per call "
          f"(median of {args.repeats})")
    print(f"{'C':>3} {'HxW':>5}  " + "  ".join(f"{name + ' dw/1x1/relu':>26}"
                                            for name, _, _ in LAYOUTS))
    for channels in args.channels:
        for size in args.sizes:
            cells = []
            for _, dtype, layout in LAYOUTS:
                x = torch.randn(128, channels, size, size).to(dtype).contiguous(
                    memory_format=layout)
                dw = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels,
                                     bias=False).to(dtype).to(memory_format=layout)
                pw = torch.nn.Conv2d(channels, channels, 1, bias=False).to(dtype).to(
                    memory_format=layout)
                with torch.inference_mode():
                    ms = [median_ms(partial(op, x), args.repeats) for op in (dw, pw, torch.relu)]
                cells.append(" ".join(f"{v:7.3f}" for v in ms) + "   ")
            print(f"{channels:>3} {size:>2}x{size:<2}  " + "  ".join(cells), flush=True)
    merged_separable(args.repeats)


def _separable(x: torch.Tensor, dw: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
    conv = torch.nn.functional.conv2d
    return conv(conv(x, dw, None, 1, dw.shape[-1] // 2, 1, x.shape[1]), pw)


def merged_separable(repeats: int) -> None:
    """Depthwise + 1x1 against the equal dense convolution (bf16 channels-last, batch 128)."""
    cl, bf16, conv = torch.channels_last, torch.bfloat16, torch.nn.functional.conv2d
    print("\nseparable pair against one dense convolution, bf16 CL; ms per call")
    print(f"{'C':>3} {'HxW':>5} {'k':>2} {'dw+1x1':>8} {'dense':>8} {'rel diff':>9}")
    for channels, size in ((10, 28), (20, 14), (40, 7)):
        for k in (3, 5):
            x = torch.randn(128, channels, size, size).to(bf16).contiguous(memory_format=cl)
            dw = torch.randn(channels, 1, k, k)
            pw = torch.randn(channels, channels, 1, 1)
            dense = (pw * dw.transpose(0, 1)).to(bf16).contiguous(memory_format=cl)
            pair = partial(_separable, x, dw.to(bf16), pw.to(bf16))
            one = partial(conv, x, dense, None, 1, k // 2)
            with torch.inference_mode():
                a, b = pair().float(), one().float()
                diff = ((a - b).abs().max() / a.abs().max()).item()
                print(f"{channels:>3} {size:>2}x{size:<2} {k:>2} {median_ms(pair, repeats):8.3f} "
                      f"{median_ms(one, repeats):8.3f} {diff:9.2e}", flush=True)


if __name__ == "__main__":
    main()
