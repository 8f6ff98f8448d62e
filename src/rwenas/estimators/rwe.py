"""Random-Weight Evaluation (Algorithm 1 of the paper).

1. Build the backbone at random initialisation and freeze it.
2. Run the training split through it once and keep the features.
3. Train an ensemble of linear classifiers on those features: one per fold, each on the other
   4/5 of the training features (SGD lr 0.25, momentum 0.9, cosine to 0, batch 512, 30 epochs).
4. Classify the validation split by the averaged softmax; RWE = validation error rate.

Two options the paper does not have, for the estimator study (defaults keep the paper's
algorithm): ``features="all_cells"`` gives the classifiers the globally pooled output of every
cell (stage) concatenated, instead of the last one's only; ``inits=N`` repeats steps 1–3 for
``N`` seeded random backbones and classifies by the softmax averaged over all their ensembles.

Speed: features come from large-batch, channels-last inference under ``torch.inference_mode``;
the five classifiers train together as one batched linear model on the in-memory features, with
the gradient of softmax cross-entropy written out (``(p - y) / B``), which equals five separate
``torch.optim.SGD`` runs (tested).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rwenas.data import Split
from rwenas.device import bf16_is_native, resolve_device
from rwenas.errors import ConfigError
from rwenas.models.ops import fold_batchnorm, inference_pools

INIT_METHODS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform")
BN_MODES = ("eval", "batch", "calibrated")
PRECISIONS = ("auto", "fp32", "bf16")
FEATURES = ("last", "all_cells")
#: The inference batch where RWE runs on a GPU and none is given: at the default 128 a small
#: network's feature pass there is bound by kernel launches (H200, 40k/10k images: 2.73 s of
#: features per architecture at 128, 0.41-0.77 s at 1024; README, "On a GPU").
CUDA_INFERENCE_BATCH = 1024


@dataclass(frozen=True)
class RWEConfig:
    """Settings of RWE. Defaults are the paper's classifier recipe; ``bn_mode`` and
    ``standardize`` are choices the paper leaves open (see the README's estimator study)."""

    init: str = "default"
    bn_mode: str = "eval"
    standardize: bool = True
    epochs: int = 30
    lr: float = 0.25
    momentum: float = 0.9
    batch_size: int = 512
    folds: int = 5
    inference_batch: int = 128
    calibration_size: int = 2048
    channels_last: bool = True
    precision: str = "auto"
    device: str = "auto"
    #: ``last``: the pooled output of the last cell (the network's ``features``, the paper);
    #: ``all_cells``: the pooled outputs of every cell, concatenated
    features: str = "last"
    #: random backbones whose ensembles' softmax is averaged (1: the paper)
    inits: int = 1

    def __post_init__(self) -> None:
        if self.init not in INIT_METHODS:
            raise ConfigError(f"unknown init {self.init!r} (known: {', '.join(INIT_METHODS)})")
        if self.bn_mode not in BN_MODES:
            raise ConfigError(f"unknown BatchNorm mode {self.bn_mode!r} "
                              f"(known: {', '.join(BN_MODES)})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} "
                              f"(known: {', '.join(PRECISIONS)})")
        if self.features not in FEATURES:
            raise ConfigError(f"unknown RWE features {self.features!r} "
                              f"(known: {', '.join(FEATURES)})")
        for name in ("epochs", "batch_size", "inference_batch", "calibration_size", "inits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"RWE {name} must be at least 1")
        if self.folds < 1:
            raise ConfigError("RWE folds must be at least 1")
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ConfigError("RWE needs lr > 0 and 0 <= momentum < 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RWEResult:
    """RWE error (fraction of the validation split misclassified) and where time went.

    The classifiers train alongside the validation features, on one of the feature threads:
    ``classifier_seconds`` is their share of the wall time (their own time over the number
    of threads), ``features_seconds`` the rest; together the evaluation's wall time."""

    error: float
    features_seconds: float
    classifier_seconds: float
    num_features: int
    finite: bool = True
    warning: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.features_seconds + self.classifier_seconds


def default_inference_batch(device: str | torch.device = "auto") -> int:
    """RWE's inference batch where none is given: :data:`CUDA_INFERENCE_BATCH` where
    ``device`` resolves to a GPU, else ``RWEConfig``'s default (128). BatchNorm is frozen by
    default (``bn_mode="eval"``), so the batch changes no feature, only the speed."""
    if resolve_device(device).type == "cuda":
        return CUDA_INFERENCE_BATCH
    return RWEConfig.inference_batch


def feature_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Backbone dtype: ``auto`` = bfloat16 where it is native (2× faster), else float32."""
    if precision == "bf16" or (precision == "auto" and bf16_is_native(device)):
        return torch.bfloat16
    return torch.float32


def reinitialise(module: nn.Module, method: str, generator: torch.Generator | None = None) -> None:
    """Re-draw conv and linear weights with ``method`` (``default`` leaves PyTorch's init);
    biases are zeroed for the non-default methods, BatchNorm is left at its identity init."""
    if method == "default":
        return
    init = {
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu",
                                                            generator=generator),
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu",
                                                              generator=generator),
        "xavier_normal": lambda w: nn.init.xavier_normal_(w, generator=generator),
        "xavier_uniform": lambda w: nn.init.xavier_uniform_(w, generator=generator),
    }[method]
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init(m.weight)
                if m.bias is not None:
                    m.bias.zero_()


def _set_bn(module: nn.Module, train: bool) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(train)


@torch.no_grad()
def calibrate_batchnorm(net: nn.Module, images: torch.Tensor, batch: int,
                        memory_format: torch.memory_format) -> None:
    """Replace BatchNorm running statistics by their average over ``images``.

    The images are cut into equal batches (a remainder is dropped), so the running mean is
    exactly the mean over the images used.
    """
    n_batches = math.ceil(len(images) / batch)
    batch = len(images) // n_batches
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    net.eval()
    _set_bn(net, True)
    for start in range(0, n_batches * batch, batch):
        net.features(images[start:start + batch].contiguous(memory_format=memory_format))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.eval()


@contextmanager
def single_threaded():
    """Run torch CPU kernels on one thread inside the block (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def feature_stages(net: nn.Module) -> list[nn.Module]:
    """The modules whose pooled outputs ``features="all_cells"`` concatenates: a micro
    network's cells, else the non-pooling children of a ``body`` (macro phases, MobileNet
    blocks)."""
    cells = getattr(net, "cells", None)
    if isinstance(cells, nn.ModuleList) and len(cells):
        return list(cells)
    body = getattr(net, "body", None)
    if isinstance(body, nn.Sequential):
        stages = [m for m in body if not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
        if stages:
            return stages
    raise ConfigError(f"RWE features='all_cells' needs a network with cells; "
                      f"{type(net).__name__} has none")


class AllCellFeatures:
    """``net.features`` with the globally pooled output of every stage (:func:`feature_stages`)
    concatenated, in the order they run. Forward hooks collect the outputs into
    thread-local lists, so batches may run on several threads at once. ``close`` removes
    the hooks."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self._local = threading.local()
        self._handles = [m.register_forward_hook(self._hook) for m in feature_stages(net)]

    def _hook(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        outs = getattr(self._local, "outs", None)
        if outs is not None:
            outs.append(torch.nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._local.outs = []
        try:
            self.net.features(x)
            return torch.cat(self._local.outs, dim=1)
        finally:
            self._local.outs = None

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def feature_workers(images: torch.Tensor, batch: int) -> int:
    """How many threads :func:`extract_features` shares ``images``' batches among: one per
    intra-op thread torch has (one per core by default), at most one per batch; one off the
    CPU."""
    if images.device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), math.ceil(len(images) / batch)))


def extract_features(net: nn.Module, images: torch.Tensor, batch: int,
                     memory_format: torch.memory_format,
                     dtype: torch.dtype = torch.float32,
                     features: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     alongside: Callable[[], None] | None = None) -> torch.Tensor:
    """Backbone features of ``images`` as float32 (BatchNorm modes are set by the caller).

    On a CPU the batches are shared among one Python thread per core, each running
    single-threaded kernels: for these small networks that beats intra-op threading, whose
    per-operation synchronisation costs more than the operations themselves. Threads take
    the next batch when free and each batch's features go to its own place, so the result
    does not depend on the number of threads. ``features`` replaces ``net.features``.
    ``alongside`` (a job with single-threaded kernels, such as training RWE's classifiers) runs
    on the first thread before it joins the batches, so the other cores are not idle while it
    runs; without threads it runs first.
    """
    starts = list(range(0, len(images), batch))
    forward = features or net.features
    workers = feature_workers(images, batch)
    out: list[torch.Tensor | None] = [None] * len(starts)
    taken = itertools.count()
    lock = threading.Lock()  # each batch is taken once

    def take() -> int:
        with lock:
            return next(taken)

    def work(first: bool) -> None:
        if first and alongside is not None:
            alongside()
        with torch.inference_mode():
            while (i := take()) < len(starts):
                s = starts[i]
                out[i] = forward(images[s:s + batch].to(dtype).contiguous(
                    memory_format=memory_format)).float()

    if images.device.type != "cpu":
        work(True)
        return torch.cat(out) if out else torch.empty(0)
    with single_threaded():
        if workers == 1:
            work(True)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for done in [pool.submit(work, w == 0) for w in range(workers)]:
                    done.result()  # re-raises a worker's exception
    return torch.cat(out) if out else torch.empty(0)


def scaling(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre and scale :func:`standardise` uses: the training features' mean and
    standard deviation (float64, ``1 × F``), each deviation floored relative to the largest
    one and to the feature's own mean, so a network whose activations all shrink to 1e-20
    keeps its information, which an absolute epsilon would erase, while constant features
    map to zero."""
    t64 = train.double()
    mean = t64.mean(0, keepdim=True)
    std = t64.std(0, keepdim=True, unbiased=False)
    floor = torch.maximum(std.max() * 1e-6, mean.abs() * 1e-4).clamp_min(1e-300)
    return mean, torch.maximum(std, floor)


def rescale(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
            dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` centred and scaled by :func:`scaling`'s statistics, in ``dtype`` (default
    ``x``'s)."""
    return ((x.double() - mean) / std).to(dtype or x.dtype)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Centre and scale features by training statistics (computed in float64, see
    :func:`scaling`)."""
    mean, std = scaling(train)
    return [rescale(x, mean, std, train.dtype) for x in (train, *others)]


def fold_indices(n: int, folds: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Training indices of each fold's classifier: all samples but that fold's held-out part.

    A seeded permutation is cut into ``folds`` equal parts of ``n // folds``; each classifier
    leaves one part out, so all see the same number of samples (the ``n % folds`` remainder is
    in every training set). One fold means one classifier on all samples.
    """
    if folds == 1:
        return [torch.arange(n)]
    if n < folds:
        raise ConfigError(f"RWE needs at least {folds} training samples for {folds} folds")
    perm = torch.randperm(n, generator=generator)
    size = n // folds
    out = []
    for k in range(folds):
        keep = torch.cat([perm[:k * size], perm[(k + 1) * size:]])
        out.append(keep.sort().values)
    return out


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base`` to 0 over ``epochs`` (per-epoch, as CosineAnnealingLR)."""
    return 0.5 * base * (1.0 + math.cos(math.pi * epoch / epochs))


def softmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last (class) dimension of ``(K, N, classes)`` logits, computed over
    the transposed view: PyTorch's CPU softmax along a short innermost dimension (10 classes)
    is about 10× slower than along an outer one (430 against 40 µs for 5 × 512 × 10), and
    the two agree to rounding (within 3e-8)."""
    return torch.softmax(logits.transpose(-1, -2), dim=-2).transpose(-1, -2)


def train_linear_ensemble(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          config: RWEConfig, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``config.folds`` linear classifiers at once; returns weights ``(K, F, C)`` and
    biases ``(K, C)``. Each classifier is initialised like ``nn.Linear`` and trained with SGD
    (momentum, cosine schedule) on mini-batches of its own training indices.

    The products run class-major — logits ``(K, C, B)`` = weights ``(K, C, F)`` @ features
    transposed, weight gradients = ``(K, C, B)`` @ ``(K, B, F)`` — where CPU matrix kernels
    are 4–5× faster than with ten classes as the innermost dimension (``(K, B, F)`` @
    ``(K, F, C)`` and its transposed gradient): 1.6 → 0.4 s for five classifiers on 8,000
    200-dimensional features. Equal to the other order up to float32 rounding, which 30
    epochs of SGD can amplify (there: weights within 0.02, 2 of 2,000 predictions changed,
    the same error)."""
    device = features.device
    n_feat = features.shape[1]
    idx = [i.to(device) for i in fold_indices(len(features), config.folds, generator)]
    k = len(idx)
    bound = 1.0 / math.sqrt(n_feat) if n_feat else 0.0
    w = (torch.rand(k, n_feat, num_classes, generator=generator) * 2 - 1).mul_(bound)
    b = (torch.rand(k, num_classes, generator=generator) * 2 - 1).mul_(bound)
    wt = w.transpose(1, 2).contiguous().to(device)  # (K, C, F)
    bt = b[:, :, None].to(device)                   # (K, C, 1)
    mw, mb = torch.zeros_like(wt), torch.zeros_like(bt)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(features.dtype).T.contiguous()
    n_train = len(idx[0])
    for epoch in range(config.epochs):
        lr = cosine_lr(config.lr, epoch, config.epochs)
        order = torch.stack([i[torch.randperm(n_train, generator=generator).to(device)]
                             for i in idx])  # (K, n_train)
        for start in range(0, n_train, config.batch_size):
            sel = order[:, start:start + config.batch_size]        # (K, B)
            flat = sel.reshape(-1)  # index_select: 2x faster than features[sel], same copy
            x = features.index_select(0, flat).view(k, -1, n_feat)   # (K, B, F)
            p = torch.softmax(torch.baddbmm(bt, wt, x.transpose(1, 2)), dim=1)  # (K, C, B)
            target = onehot.index_select(1, flat).view(num_classes, k, -1).transpose(0, 1)
            g = (p - target) / sel.shape[1]
            mw.mul_(config.momentum).add_(torch.bmm(g, x))
            mb.mul_(config.momentum).add_(g.sum(2, keepdim=True))
            wt.sub_(lr * mw)
            bt.sub_(lr * mb)
    return wt.transpose(1, 2), bt[:, :, 0]


def ensemble_probabilities(w: torch.Tensor, b: torch.Tensor, features: torch.Tensor
                           ) -> torch.Tensor:
    """The ensemble's averaged softmax (``N × classes``)."""
    probs = softmax_classes(torch.einsum("nf,kfc->knc", features, w) + b[:, None, :])
    return probs.mean(0)


def ensemble_predict(w: torch.Tensor, b: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Class predictions of the ensemble: argmax of the averaged softmax."""
    return ensemble_probabilities(w, b, features).argmax(1)


def init_seed(seed: int, index: int) -> int:
    """The seed of backbone ``index`` of ``inits``: ``seed`` itself for the first (so
    ``inits=1`` is plain RWE), a seed derived from ``(seed, index)`` for the others."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) & 0x7FFFFFFF, index, 4]).generate_state(1)[0]
               >> 1)


_NOT_FINITE = "backbone produced NaN/inf features; RWE error set to the worst value 1.0"


@dataclass
class BackboneOutcome:
    """One random backbone's part of RWE: the ensemble's validation softmax (``None`` when
    the features or the classifiers were not finite) and where time went."""

    probs: torch.Tensor | None
    features_seconds: float
    classifier_seconds: float
    num_features: int
    warning: str | None = None


def _build(network: nn.Module | Callable[[], nn.Module], seed: int, index: int,
           config: RWEConfig) -> nn.Module:
    """Backbone ``index``: a factory called under ``init_seed(seed, index)``; a module given
    directly is backbone 0 itself, and a deep copy with every layer's parameters re-drawn
    (``reset_parameters``) under that seed for the others."""
    import copy

    s = init_seed(seed, index)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        if callable(network) and not isinstance(network, nn.Module):
            net = network()
        elif index == 0:
            net = network
        else:
            net = copy.deepcopy(network)
            for m in net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        reinitialise(net, config.init, torch.Generator().manual_seed(s))
    return net


def rwe_probabilities(network: nn.Module | Callable[[], nn.Module], split: Split,
                      config: RWEConfig | None = None, *, seed: int = 0,
                      index: int = 0) -> BackboneOutcome:
    """Steps 1–3 of RWE for backbone ``index`` (seeded by ``init_seed(seed, index)``), and
    the ensemble's averaged softmax on the validation split."""
    config = config or RWEConfig()
    device = resolve_device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    num_classes = int(max(split.train_y.max(), split.val_y.max())) + 1
    t0 = time.perf_counter()
    net = _build(network, seed, index, config)
    dtype = feature_dtype(config.precision, device)
    net = net.to(device=device, memory_format=memory_format)
    for p in net.parameters():
        p.requires_grad_(False)
    net.drop_path_prob = 0.0
    train_x = split.train_x.to(device)
    val_x = split.val_x.to(device)
    if config.bn_mode == "calibrated":
        calibrate_batchnorm(net, train_x[:config.calibration_size], config.inference_batch,
                            memory_format)
    net.eval()
    if config.bn_mode != "batch":
        fold_batchnorm(net)  # frozen statistics: BN is an affine map, merge it into the convs
    else:
        _set_bn(net, True)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0  # use batch statistics, leave running ones alone
    if device.type == "cpu":
        inference_pools(net)  # same values; PyTorch's CPU pooling kernels are slow here
    net.to(dtype)
    hooks = AllCellFeatures(net) if config.features == "all_cells" else None
    labels = split.train_y.to(device)
    gen = torch.Generator().manual_seed(init_seed(seed, index) + 1)
    fitted: dict[str, Any] = {}

    def fit_classifiers() -> None:
        # Alongside the validation features, on one thread: these small products gain
        # nothing from more, and the summation order (so the result) must not depend on how
        # many threads a worker has (extract_features runs it single-threaded).
        start = time.perf_counter()
        fitted["wb"] = train_linear_ensemble(train_f, labels, num_classes, config, gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        fitted["seconds"] = time.perf_counter() - start

    try:
        train_f = extract_features(net, train_x, config.inference_batch, memory_format, dtype,
                                   hooks)
        n_feat = train_f.shape[1]
        if not torch.isfinite(train_f).all():
            return BackboneOutcome(None, time.perf_counter() - t0, 0.0, n_feat, _NOT_FINITE)
        if config.standardize:
            mean, std = scaling(train_f)
            train_f = rescale(train_f, mean, std)
        val_f = extract_features(net, val_x, config.inference_batch, memory_format, dtype,
                                 hooks, alongside=fit_classifiers)
    finally:
        if hooks is not None:
            hooks.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    # The classifiers held one of the feature threads for their own time: their share of the
    # wall time is that over the threads, the features' share the rest.
    clf_s = fitted["seconds"] / feature_workers(val_x, config.inference_batch)
    if not torch.isfinite(val_f).all():
        return BackboneOutcome(None, time.perf_counter() - t0 - clf_s, clf_s, n_feat,
                               _NOT_FINITE)
    if config.standardize:
        val_f = rescale(val_f, mean, std)
    start = time.perf_counter()
    w, b = fitted["wb"]
    with single_threaded() if device.type == "cpu" else nullcontext():
        probs = ensemble_probabilities(w, b, val_f).cpu()
    end = time.perf_counter()
    clf_s += end - start
    feat_s = end - t0 - clf_s
    if not (torch.isfinite(w).all() and torch.isfinite(probs).all()):
        msg = "classifier diverged; RWE error set to the worst value 1.0"
        return BackboneOutcome(None, feat_s, clf_s, n_feat, msg)
    return BackboneOutcome(probs, feat_s, clf_s, n_feat)


def rwe(network: nn.Module | Callable[[], nn.Module], split: Split,
        config: RWEConfig | None = None, *, seed: int = 0) -> RWEResult:
    """Random-Weight Evaluation of a network (or a zero-argument factory building one).

    A factory is called with torch's RNG seeded by ``seed`` (in a forked RNG state, so global
    state is untouched): the same seed gives the same random backbone and the same error.
    With ``config.inits = N`` the validation softmax is averaged over ``N`` backbones
    (:func:`rwe_probabilities` with ``index`` 0 … N-1) before the argmax.
    """
    config = config or RWEConfig()
    total = None
    feat_s = clf_s = 0.0
    n_feat = 0
    for index in range(config.inits):
        out = rwe_probabilities(network, split, config, seed=seed, index=index)
        feat_s += out.features_seconds
        clf_s += out.classifier_seconds
        n_feat = out.num_features
        if out.probs is None:
            warnings.warn(out.warning, RuntimeWarning, stacklevel=2)
            return RWEResult(1.0, feat_s, clf_s, n_feat, finite=False, warning=out.warning)
        total = out.probs if total is None else total + out.probs
    error = float((total.argmax(1) != split.val_y).float().mean())
    return RWEResult(error, feat_s, clf_s, n_feat)
