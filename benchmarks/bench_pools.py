"""RWE's inference pools against PyTorch's pooling kernels, before and after in one run
(README, "Random-Weight Evaluation", Speed).

RWE swaps the 3x3 max and average pools of its frozen CPU backbone for
``SeparableMaxPool3x3`` (row then column maxima of shifted views) and ``ConvAvgPool3x3`` (a
depthwise all-ones convolution in float32 divided by each window's count). Two tables:

1. single pools at a C=10 micro network's shapes (batch 128, bfloat16 and float32
   channels-last), PyTorch's kernel against the inference form, median ms per call;
2. the whole feature pass of ``bench_rwe.py``'s six genomes (C=10, 5 cells, BatchNorm folded,
   bfloat16 channels-last, batch 128) with PyTorch's pools and with the inference pools,
   interleaved genome by genome, median seconds of ``--repeats`` runs, and whether the
   features are identical.

    python benchmarks/bench_pools.py [--images 2048] [--repeats 3] [--threads 1]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rwe import GENOMES
from op_timings import median_ms
from rwenas.data import load_dataset, search_split
from rwenas.estimators.rwe import extract_features
from rwenas.models import create_network
from rwenas.models.ops import ConvAvgPool3x3, SeparableMaxPool3x3, fold_batchnorm, inference_pools
from rwenas.spaces import get_space

CL = torch.channels_last
# (channels, size, stride) of the pools in a C=10, 5-cell micro network on 28x28 images
SHAPES = [(10, 28, 1), (20, 28, 2), (20, 14, 1), (40, 14, 2), (40, 7, 1)]


def single_pools(repeats: int) -> None:
    print(f"single pools, batch 128, channels-last; ms per call (median of {repeats})")
    print(f"{'dtype':<5} {'C':>3} {'HxW':>5} {'s':>1} {'max torch':>9} {'max ours':>8} "
          f"{'x':>5} {'avg torch':>9} {'avg ours':>8} {'x':>5}")
    for dtype in (torch.bfloat16, torch.float32):
        for channels, size, stride in SHAPES:
            x = torch.randn(128, channels, size, size).to(dtype).contiguous(memory_format=CL)
            pairs = [(partial(F.max_pool2d, x, 3, stride, 1),
                      partial(SeparableMaxPool3x3(stride), x)),
                     (partial(F.avg_pool2d, x, 3, stride, 1, count_include_pad=False),
                      partial(ConvAvgPool3x3(stride), x))]
            cells = []
            with torch.inference_mode():
                for theirs, ours in pairs:
                    assert torch.equal(theirs(), ours()) or dtype != torch.bfloat16
                    a, b = median_ms(theirs, repeats), median_ms(ours, repeats)
                    cells.append(f"{a:9.3f} {b:8.3f} {a / b:4.1f}x")
            name = "bf16" if dtype == torch.bfloat16 else "fp32"
            print(f"{name:<5} {channels:>3} {size:>2}x{size:<2} {stride:>1} " + " ".join(cells),
                  flush=True)


def frozen_backbone(text: str) -> torch.nn.Module:
    """A genome's C=10, 5-cell network as RWE freezes it (seed 0, BatchNorm folded)."""
    space = get_space("micro")
    torch.manual_seed(0)
    net = create_network(space, space.validate(text), channels=10, layers=5, in_channels=1,
                         num_classes=10).to(memory_format=CL).eval()
    net.drop_path_prob = 0.0
    for p in net.parameters():
        p.requires_grad_(False)
    return fold_batchnorm(net)


def max_pools_only(net: torch.nn.Module) -> torch.nn.Module:
    """``inference_pools`` applied to the max pools alone: RWE before ConvAvgPool3x3."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.MaxPool2d):
                setattr(parent, name, inference_pools(torch.nn.Sequential(child))[0])
    return net


def feature_passes(images: torch.Tensor, repeats: int) -> None:
    print(f"\nfeature pass, {len(images)} images, bf16 channels-last, batch 128, "
          f"{torch.get_num_threads()} thread(s); seconds (median of {repeats}); 'max only': "
          "separable max pools, PyTorch's average pools")
    variants = {"torch pools": lambda net: net, "max only": max_pools_only,
                "both": inference_pools}
    print(f"{'genome':<11} " + " ".join(f"{k:>11}" for k in variants)
          + f" {'both/max only':>13} {'same features':>13}")
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    for name, text in GENOMES.items():
        frozen = frozen_backbone(text)
        nets = {k: swap(copy.deepcopy(frozen)).to(torch.bfloat16) for k, swap in variants.items()}
        runs: dict[str, list[float]] = {k: [] for k in variants}
        outs = {}
        for _ in range(repeats):  # interleaved, so drifts of the machine hit all alike
            for key, net in nets.items():
                t0 = time.perf_counter()
                outs[key] = extract_features(net, images, 128, CL, torch.bfloat16)
                runs[key].append(time.perf_counter() - t0)
        for key in variants:
            seconds[key].append(statistics.median(runs[key]))
        same = all(torch.equal(outs["torch pools"], out) for out in outs.values())
        row = " ".join(f"{seconds[k][-1]:11.3f}" for k in variants)
        gain = seconds["max only"][-1] / seconds["both"][-1]
        print(f"{name:<11} {row} {gain:12.2f}x {same!s:>13}", flush=True)
    means = {k: statistics.mean(v) for k, v in seconds.items()}
    print("mean        " + " ".join(f"{v:11.3f}" for v in means.values())
          + f" {means['max only'] / means['both']:12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--op-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}")
    single_pools(args.op_repeats)
    split = search_split(load_dataset("fashion-mnist"), seed=0, train_size=args.images,
                         val_size=100)
    images = split.train_x
    feature_passes(images, args.repeats)


if __name__ == "__main__":
    main()
