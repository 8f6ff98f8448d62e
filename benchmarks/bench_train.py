"""Training speed on the CPU: rwenas's training loop against the fp32 NCHW path it replaced.

The reference is the loop as it was before channels-last and bfloat16 autocast: the network in
NCHW float32, the same batched augmentation (:class:`rwenas.fit.augment.Augmenter`), the same
SGD/cosine/clipping/auxiliary-loss step, and a test pass after every epoch. rwenas's side is
:func:`rwenas.fit.loop.fit` itself, once with ``precision="auto"`` (channels-last, bfloat16
autocast where the CPU computes it natively, grouped convolutions in float32) and once with
``precision="fp32"`` (channels-last only). Every variant trains the same seeded network on the
same images in the same order, interleaved genome by genome.

    python benchmarks/bench_train.py                      # throughput, bench + validation recipes
    python benchmarks/bench_train.py --accuracy           # 3 genomes x 2 seeds at the bench budget

Throughput counts training images per second (forward, backward and update) and test images
per second (evaluation pass). ``--accuracy`` trains at the bench budget (C=8, 5 cells, 3
epochs, 10,000 training images, all 10,000 test images) with the reference and with rwenas,
and reports both final test accuracies and their wall times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.build import build_network
from rwenas.data import load_dataset
from rwenas.device import bf16_is_native
from rwenas.fit.augment import Augmenter
from rwenas.fit.loop import TrainData, fit
from rwenas.fit.metrics import topk_correct
from rwenas.fit.recipes import CifarRecipe
from rwenas.fit.schedules import lr_at
from rwenas.models.ops import DepthwiseConv
from rwenas.spaces import get_space

# Micro genomes from the RWE benchmark: convolution-heavy, pooling/skip-only and mixed.
GENOMES = {
    "conv-wide": "4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1 4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1",
    "pool-skip": "0 0 2 1 1 0 2 2 0 1 2 3 1 0 2 4 0 1 2 5 1 0 2 1 0 0 2 2 1 1 2 3 0 0 2 4 1 1 2 5",
    "mixed-a": "3 1 2 0 4 0 0 1 1 2 5 3 2 1 6 4 3 0 0 5 4 1 1 0 3 2 0 0 5 3 2 1 6 0 3 4 1 2 8 3",
}


#: The bench's network setting (C=8, 5 cells, no auxiliary head, no drop path).
BENCH_OPTIONS = {"channels": 8, "layers": 5, "auxiliary": False, "drop_path": 0.0}


def bench_recipe(epochs: int):
    from rwenas.study.bench import BenchBudget

    return BenchBudget(epochs=epochs).recipe()


def network(genome: tuple[int, ...], recipe, data: TrainData, seed: int, **options) -> nn.Module:
    space = get_space("micro")
    torch.manual_seed(seed)
    return build_network(space, space.canonical(genome), in_channels=data.in_channels,
                         num_classes=data.num_classes, setting=recipe.setting, **options)


def plain_convs(net: nn.Module) -> nn.Module:
    """``net`` with every :class:`~rwenas.models.ops.DepthwiseConv` replaced by the plain
    ``nn.Conv2d`` it computes (same weights), as the networks were before it: the reference
    then runs oneDNN's own depthwise backward passes, as the loop it stands for did."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, DepthwiseConv):
                plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                                  child.stride, child.padding, child.dilation, child.groups,
                                  bias=False)
                plain.weight = child.weight
                setattr(module, name, plain)
    return net


def reference_fit(net: nn.Module, data: TrainData, recipe, seed: int,
                  eval_batch: int = 256) -> tuple[float, float, float]:
    """The previous fp32 NCHW loop: ``(test accuracy, training seconds, test seconds)``."""
    net = plain_convs(net)
    gen = torch.Generator().manual_seed(seed)
    aug = Augmenter(recipe, data.mean, data.std)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    n, bs = int(data.train_labels.shape[0]), recipe.batch_size
    steps = n // bs + (1 if n % bs >= 2 else 0)
    train_s = test_s = 0.0
    acc = 0.0
    for epoch in range(recipe.epochs):
        t0 = time.perf_counter()
        net.train()
        if hasattr(net, "drop_path_prob"):
            net.drop_path_prob = recipe.drop_path * epoch / recipe.epochs
        perm = torch.randperm(n, generator=gen)
        for step in range(steps):
            idx = perm[step * bs:(step + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = lr_at(recipe.schedule, recipe.lr, epoch + step / steps,
                                    recipe.epochs)
            x = aug.train(data.train_images[idx], gen)
            y = data.train_labels[idx]
            with_aux = getattr(net, "forward_with_aux", None)
            logits, aux = with_aux(x) if with_aux else (net(x), None)
            loss = F.cross_entropy(logits, y)
            if aux is not None and recipe.auxiliary_weight > 0:
                loss = loss + recipe.auxiliary_weight * F.cross_entropy(aux, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), recipe.grad_clip)
            opt.step()
        t1 = time.perf_counter()
        net.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(data.test_labels), eval_batch):
                logits = net(aug.test(data.test_images[s:s + eval_batch]))
                correct += topk_correct(logits, data.test_labels[s:s + eval_batch], (1,))[0]
        acc = correct / len(data.test_labels)
        train_s += t1 - t0
        test_s += time.perf_counter() - t1
    return acc, train_s, test_s


def rwenas_fit(net: nn.Module, data: TrainData, recipe, seed: int, precision: str,
               test_every_epoch: bool = True) -> tuple[float, float]:
    """rwenas's loop: ``(test accuracy, wall seconds)``."""
    t0 = time.perf_counter()
    res = fit(net, data, recipe, seed=seed, device="cpu", precision=precision,
              test_every_epoch=test_every_epoch)
    return res.history[-1]["test_acc"], time.perf_counter() - t0


def selected(args) -> list[tuple[str, str]]:
    """The genomes named by ``--genomes``, in that order."""
    return [(label, GENOMES[label]) for label in args.genomes]


def throughput(ds, args) -> None:
    cases = [("bench", bench_recipe(1), BENCH_OPTIONS, args.bench_images),
             ("validation", CifarRecipe(epochs=1), {"channels": 34, "layers": 20,
                                                    "increment": 4, "auxiliary": True},
              args.validation_images)]
    print(f"training throughput (images/s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), "
          f"native bf16: {bf16_is_native(torch.device('cpu'))}")
    print(f"{'recipe':<11}{'genome':<11}{'before':>9}{'fp32 CL':>9}{'auto':>9}"
          f"{'x fp32':>8}{'x auto':>8}")
    for name, recipe, options, n_img in cases:
        data = TrainData.from_dataset(ds, train_size=n_img, test_size=args.test_images, seed=0)
        speed = {"before": [], "fp32": [], "auto": []}
        for label, text in selected(args):
            genome = tuple(int(v) for v in text.split())
            rates = {}
            # Train + one evaluation each; the evaluation is over a small test set so that the
            # figure is the training step's.
            _, tr, _te = reference_fit(network(genome, recipe, data, 0, **options), data,
                                      recipe, 0)
            rates["before"] = n_img / tr
            for precision in ("fp32", "auto"):
                net = network(genome, recipe, data, 0, **options)
                res = fit(net, data, recipe, seed=0, device="cpu", precision=precision)
                rates[precision] = n_img / res.history[-1]["seconds"]
            for k, v in rates.items():
                speed[k].append(v)
            print(f"{name:<11}{label:<11}{rates['before']:9.0f}{rates['fp32']:9.0f}"
                  f"{rates['auto']:9.0f}{rates['fp32'] / rates['before']:7.2f}x"
                  f"{rates['auto'] / rates['before']:7.2f}x", flush=True)
        gm = {k: statistics.geometric_mean(v) for k, v in speed.items()}
        print(f"{name:<11}{'geo-mean':<11}{gm['before']:9.0f}{gm['fp32']:9.0f}{gm['auto']:9.0f}"
              f"{gm['fp32'] / gm['before']:7.2f}x{gm['auto'] / gm['before']:7.2f}x", flush=True)


def accuracy(ds, args) -> None:
    recipe = bench_recipe(args.epochs)
    data = TrainData.from_dataset(ds, train_size=args.train_size, seed=0)
    print(f"bench budget: C=8, 5 cells, {args.epochs} epochs, {args.train_size} training / "
          f"{len(data.test_labels)} test images, batch {recipe.batch_size}")
    print(f"{'genome':<11}{'seed':>5}{'before acc':>11}{'after acc':>10}{'diff pt':>8}"
          f"{'before s':>9}{'after s':>8}{'speed-up':>9}")
    diffs, before_s, after_s = [], 0.0, 0.0
    for label, text in selected(args):
        genome = tuple(int(v) for v in text.split())
        for seed in args.seeds:
            acc0, tr, te = reference_fit(
                network(genome, recipe, data, seed, **BENCH_OPTIONS), data, recipe, seed)
            acc1, s1 = rwenas_fit(network(genome, recipe, data, seed, **BENCH_OPTIONS), data,
                                  recipe, seed, "auto", test_every_epoch=False)
            diffs.append(100 * (acc1 - acc0))
            before_s += tr + te
            after_s += s1
            print(f"{label:<11}{seed:>5}{100 * acc0:10.2f}%{100 * acc1:9.2f}%"
                  f"{diffs[-1]:+8.2f}{tr + te:9.1f}{s1:8.1f}{(tr + te) / s1:8.2f}x", flush=True)
    print(f"mean diff {statistics.mean(diffs):+.2f} points, mean |diff| "
          f"{statistics.mean(abs(d) for d in diffs):.2f}, max |diff| "
          f"{max(abs(d) for d in diffs):.2f}; total {before_s:.0f} s before, {after_s:.0f} s "
          f"after: {before_s / after_s:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accuracy", action="store_true", help="final accuracies at the bench budget")
    p.add_argument("--bench-images", type=int, default=2560)
    p.add_argument("--validation-images", type=int, default=192)
    p.add_argument("--test-images", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--genomes", nargs="+", choices=list(GENOMES), default=list(GENOMES),
                   help="which genomes, in this order (default: all three)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("fashion-mnist")
    if args.accuracy:
        accuracy(ds, args)
    else:
        throughput(ds, args)


if __name__ == "__main__":
    main()
