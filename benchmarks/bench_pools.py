"""rwenas's pools against PyTorch's pooling kernels, before and after in one run (README,
"Random-Weight Evaluation", Speed).

RWE swaps the 3x3 max and average pools of its frozen CPU backbone for
``SeparableMaxPool3x3`` (row then column maxima of shifted views) and ``ConvAvgPool3x3`` (a
depthwise all-ones convolution in float32 divided by each window's count); CPU training runs
its average pools as ``ConvAvgPool3x3`` too (``conv_avg_pools``). Three tables:

1. single pools at a C=10 micro network's shapes (batch 128, bfloat16 and float32
   channels-last), PyTorch's kernel against the inference form, median ms per call;
2. the whole feature pass of ``bench_rwe.py``'s six genomes (C=10, 5 cells, BatchNorm folded,
   bfloat16 channels-last, batch 128) with PyTorch's pools and with the inference pools,
   interleaved genome by genome, median seconds of ``--repeats`` runs, and whether the
   features are identical;
3. one training epoch of ``bench_train.py``'s genomes at the bench recipe (``--train-images``
   images, ``precision="auto"``) with PyTorch's average pools and with ``conv_avg_pools``,
   interleaved, training images per second (best of ``--repeats``) and the epoch's loss.

``--train-accuracy`` instead trains at the bench budget with both pool forms and reports the
final test accuracies and wall times.

    python benchmarks/bench_pools.py [--images 2048] [--repeats 3] [--train-images 2560]
    python benchmarks/bench_pools.py --train-accuracy [--seeds 0 1] [--genomes pool-skip mixed-a]

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


def _fit(conv_pools: bool, genome: tuple[int, ...], recipe, data, seed: int, **kwargs):
    """``fit`` of the bench network of ``genome``, with ``conv_avg_pools`` or (patched out of
    the loop for this call) PyTorch's average pools; ``(result, wall seconds)``."""
    import contextlib

    import rwenas.fit.loop as loop
    from bench_train import BENCH_OPTIONS, network

    real = loop.conv_avg_pools
    if not conv_pools:
        loop.conv_avg_pools = lambda net: contextlib.nullcontext()
    try:
        t0 = time.perf_counter()
        res = loop.fit(network(genome, recipe, data, seed, **BENCH_OPTIONS), data, recipe,
                       seed=seed, device="cpu", precision="auto", **kwargs)
        return res, time.perf_counter() - t0
    finally:
        loop.conv_avg_pools = real


def training_epochs(ds, images: int, repeats: int) -> None:
    """The bench recipe's training (C=8, 5 cells, batch 128, ``precision="auto"``), one epoch
    on ``images`` images, with PyTorch's average pools and with ``conv_avg_pools``."""
    from bench_train import GENOMES as TRAIN_GENOMES
    from bench_train import bench_recipe
    from rwenas.fit.loop import TrainData

    recipe = bench_recipe(1)
    data = TrainData.from_dataset(ds, train_size=images, test_size=256, seed=0)
    print(f"\ntraining, bench recipe, {images} images, one epoch, precision auto, "
          f"{torch.get_num_threads()} thread(s); training images/s (best of {repeats}) and "
          "the epoch's training loss")
    print(f"{'genome':<11} {'torch pools':>11} {'conv pools':>10} {'speed-up':>8} "
          f"{'loss torch':>10} {'loss conv':>9}")
    for name, text in TRAIN_GENOMES.items():
        genome = tuple(int(v) for v in text.split())
        rates: dict[bool, list[float]] = {False: [], True: []}
        loss = {}
        for _ in range(repeats):
            for conv in (False, True):
                res, _ = _fit(conv, genome, recipe, data, 0)
                rates[conv].append(images / res.history[-1]["seconds"])
                loss[conv] = res.history[-1]["train_loss"]
        a, b = max(rates[False]), max(rates[True])
        print(f"{name:<11} {a:11.0f} {b:10.0f} {b / a:7.2f}x {loss[False]:10.4f} "
              f"{loss[True]:9.4f}", flush=True)


def training_accuracy(ds, seeds: list[int], genomes: list[str]) -> None:
    """Whole trainings at the bench budget (C=8, 5 cells, 3 epochs on 10,000 images, tested on
    all 10,000 test images) with PyTorch's average pools and with ``conv_avg_pools``: the
    final test accuracies (the same network, images and order; gradients differ by rounding)
    and wall seconds."""
    from bench_train import GENOMES as TRAIN_GENOMES
    from bench_train import bench_recipe
    from rwenas.fit.loop import TrainData

    recipe = bench_recipe(3)
    data = TrainData.from_dataset(ds, train_size=10000, seed=0)
    print(f"\nbench budget, precision auto, {torch.get_num_threads()} thread(s): test accuracy "
          "and seconds with PyTorch's average pools and with conv_avg_pools")
    print(f"{'genome':<11}{'seed':>5}{'torch acc':>10}{'conv acc':>9}{'diff pt':>8}"
          f"{'torch s':>8}{'conv s':>7}{'speed-up':>9}")
    for name in genomes:
        genome = tuple(int(v) for v in TRAIN_GENOMES[name].split())
        for seed in seeds:
            out = {}
            for conv in (False, True):
                res, seconds = _fit(conv, genome, recipe, data, seed, test_every_epoch=False)
                out[conv] = (100 * res.history[-1]["test_acc"], seconds)
            (a, ta), (b, tb) = out[False], out[True]
            print(f"{name:<11}{seed:>5}{a:9.2f}%{b:8.2f}%{b - a:+8.2f}{ta:8.1f}{tb:7.1f}"
                  f"{ta / tb:8.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--op-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=2560)
    parser.add_argument("--train-accuracy", action="store_true",
                        help="only whole trainings at the bench budget, both pool forms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--genomes", nargs="+", default=["pool-skip", "mixed-a"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}")
    ds = load_dataset("fashion-mnist")
    if args.train_accuracy:
        training_accuracy(ds, args.seeds, args.genomes)
        return
    single_pools(args.op_repeats)
    split = search_split(ds, seed=0, train_size=args.images, val_size=100)
    feature_passes(split.train_x, args.repeats)
    training_epochs(ds, args.train_images, args.repeats)


if __name__ == "__main__":
    main()
