"""RWE speed: rwenas's estimator against a straightforward reference, in one run.

The reference is RWE written the obvious way: eager NCHW inference over a torch DataLoader of
per-sample items, then five ``nn.Linear`` classifiers trained one after another with
``torch.optim.SGD`` + ``CosineAnnealingLR`` over DataLoaders of features. Both use the same
random backbone (same seed), the same folds, standardisation and classifier recipe.

    python benchmarks/bench_rwe.py [--train-size 10000] [--val-size 2000] [--threads N]
                                   [--rounds 1]

With ``--rounds N`` each genome is evaluated N times by each side, interleaved, and each
side's fastest evaluation counts (errors are the same every round): on a shared virtual
machine one round's reference times moved by up to 1.5x between two runs minutes apart.

It also reports how far the feature pass is from the machine's limit: achieved GFLOP/s
(2 x the network's multiply-adds per image x images / feature seconds) against a ceiling
measured in the same run, a large matrix multiplication in the features' precision on the
same threads (what the cores reach on the friendliest possible work).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rwenas.complexity import count_madds
from rwenas.data import load_dataset, search_split
from rwenas.device import bf16_is_native
from rwenas.estimators.rwe import RWEConfig, fold_indices, rwe, standardise
from rwenas.models import create_network
from rwenas.spaces import get_space

# Fixed micro genomes (search setting C=10, L=5): from pooling/skip-heavy to conv-heavy.
GENOMES = {
    "conv-wide": "4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1 4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1",
    "conv-chain": "3 0 3 1 4 0 3 1 5 2 3 1 3 3 6 0 7 4 3 1 3 0 4 1 3 0 5 1 3 2 4 3 6 1 3 4 8 0 3 5",
    "pool-skip": "0 0 2 1 1 0 2 2 0 1 2 3 1 0 2 4 0 1 2 5 1 0 2 1 0 0 2 2 1 1 2 3 0 0 2 4 1 1 2 5",
    "mixed-a": "3 1 2 0 4 0 0 1 1 2 5 3 2 1 6 4 3 0 0 5 4 1 1 0 3 2 0 0 5 3 2 1 6 0 3 4 1 2 8 3",
    "mixed-b": "7 0 1 1 2 2 5 0 8 1 3 3 0 4 6 2 2 1 3 5 5 0 3 1 1 2 2 0 7 3 4 1 0 4 3 2 2 5 6 1",
    "dil-sep": "5 0 6 1 3 0 5 2 6 1 4 3 5 4 3 2 6 5 3 0 6 0 5 1 4 2 3 0 6 1 5 3 3 4 6 2 4 5 5 0",
}


class PerSample(Dataset):
    """Per-sample items, as an image dataset class usually serves them."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def reference_rwe(factory, split, config: RWEConfig, seed: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory()
    net.eval()
    feats = []
    for data in (split.train_x, split.val_x):
        out = []
        with torch.no_grad():
            loader = DataLoader(PerSample(data, torch.zeros(len(data))), batch_size=256)
            for x, _ in loader:
                out.append(net.features(x))
        feats.append(torch.cat(out))
    train_f, val_f = standardise(*feats)
    gen = torch.Generator().manual_seed(seed + 1)
    probs = torch.zeros(len(val_f), int(split.train_y.max()) + 1)
    for idx in fold_indices(len(train_f), config.folds, gen):
        clf = nn.Linear(train_f.shape[1], probs.shape[1])
        opt = torch.optim.SGD(clf.parameters(), lr=config.lr, momentum=config.momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs)
        loader = DataLoader(TensorDataset(train_f[idx], split.train_y[idx]),
                            batch_size=config.batch_size, shuffle=True, generator=gen)
        for _ in range(config.epochs):
            for x, y in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(clf(x), y).backward()
                opt.step()
            sched.step()
        with torch.no_grad():
            probs += torch.softmax(clf(val_f), 1)
    error = float((probs.argmax(1) != split.val_y).float().mean())
    return error, time.perf_counter() - t0


def matmul_ceiling(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matrix product in ``dtype`` on the current threads (best of
    ``repeats``, after one warm-up): the roof the feature pass is compared with."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--val-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--dataset", default="fashion-mnist", help="any dataset rwenas loads")
    ap.add_argument("--genomes", type=int, default=len(GENOMES),
                    help="how many of the fixed genomes to run (default all 6)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="evaluations per genome and side, interleaved; the fastest counts")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    split = search_split(ds, seed=0, train_size=args.train_size, val_size=args.val_size)
    space = get_space("micro")
    config = RWEConfig(device=args.device, precision=args.precision)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu"
                          else "cpu")
    bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_is_native(device))
    shape = tuple(split.train_x.shape[1:])
    images = len(split.train_x) + len(split.val_x)
    print(f"{args.dataset} {len(split.train_x)} train / {len(split.val_x)} val, micro C=10 L=5, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"{'genome':<11} {'rwenas s':>9} {'ref s':>8} {'speed-up':>8} {'rwenas err':>10} "
          f"{'ref err':>8} {'diff pt':>7} {'MAdds M':>8} {'feat s':>7} {'GFLOP/s':>8}")
    ours_t, ref_t, diffs, rates = [], [], [], []
    for name, text in list(GENOMES.items())[: args.genomes]:
        genome = space.validate(text)

        def factory(genome=genome):
            return create_network(space, genome, channels=10, layers=5,
                                  in_channels=shape[0], num_classes=10)

        madds = count_madds(factory(), shape)
        ours, refs = [], []
        for _ in range(args.rounds):
            ours.append(rwe(factory, split, config, seed=0))
            if not args.skip_reference:
                refs.append(reference_rwe(factory, split, config, seed=0))
        assert len({r.error for r in ours}) == 1, "rwenas's error changed between rounds"
        res = min(ours, key=lambda r: r.seconds)
        ours_t.append(res.seconds)
        rates.append(2 * madds * images / res.features_seconds / 1e9)
        cost = f"{madds / 1e6:8.2f} {res.features_seconds:7.3f} {rates[-1]:8.1f}"
        if args.skip_reference:
            print(f"{name:<11} {res.seconds:9.2f} {'-':>8} {'-':>8} {100 * res.error:10.2f} "
                  f"{'-':>8} {'-':>7} {cost}")
            continue
        ref_err, ref_s = min(refs, key=lambda r: r[1])
        ref_t.append(ref_s)
        diffs.append(100 * (res.error - ref_err))
        print(f"{name:<11} {res.seconds:9.2f} {ref_s:8.2f} {ref_s / res.seconds:7.1f}x "
              f"{100 * res.error:10.2f} {100 * ref_err:8.2f} {diffs[-1]:+7.2f} {cost}")
    print(f"mean rwenas {statistics.mean(ours_t):.2f} s/arch", end="")
    if ref_t:
        print(f", reference {statistics.mean(ref_t):.2f} s/arch, speed-up "
              f"{sum(ref_t) / sum(ours_t):.1f}x, max |error diff| "
              f"{max(abs(d) for d in diffs):.2f} points")
    else:
        print()
    if device.type == "cpu":
        dtype = torch.bfloat16 if bf16 else torch.float32
        roof = matmul_ceiling(dtype)
        fp32 = roof if dtype == torch.float32 else matmul_ceiling(torch.float32)
        print(f"feature pass {statistics.mean(rates):.1f} GFLOP/s (mean over genomes) against a "
              f"{str(dtype).removeprefix('torch.')} matrix-product ceiling of {roof:.0f} GFLOP/s "
              f"on the same threads: {100 * statistics.mean(rates) / roof:.1f} % of it "
              f"(float32 ceiling {fp32:.0f} GFLOP/s)")

if __name__ == "__main__":
    main()
