"""Random-Weight Evaluation: classifier recipe, folds, ensemble, numerics, determinism."""

from __future__ import annotations

import math
import os
import time
import warnings

import pytest
import torch
from torch import nn

from rwenas.data import Split
from rwenas.device import bf16_is_native, resolve_device
from rwenas.errors import ConfigError
from rwenas.estimators.rwe import (
    CUDA_INFERENCE_BATCH,
    RWEConfig,
    calibrate_batchnorm,
    cosine_lr,
    default_inference_batch,
    ensemble_predict,
    extract_features,
    feature_dtype,
    fold_indices,
    reinitialise,
    rwe,
    standardise,
    train_linear_ensemble,
)
from rwenas.models import create_network
from rwenas.models.base import Network
from rwenas.spaces import get_space


def blobs(n_train: int = 300, n_val: int = 100, dim: int = 6, classes: int = 3,
          seed: int = 0) -> Split:
    """Separable Gaussian blobs as 1×dim×1 'images' (networks below read them flat)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = centres[y] + torch.randn(n, dim, generator=g)
        return x.reshape(n, 1, dim, 1), y

    tx, ty = draw(n_train)
    vx, vy = draw(n_val)
    return Split(tx, ty, vx, vy)


class Flat(Network):
    """A backbone that is a fixed (random) linear map, so RWE is a linear probe."""

    def __init__(self, dim: int = 6, out: int = 8, classes: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, out, bias=False)
        self.scale = scale
        self.num_features = out
        self.classifier = nn.Linear(out, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1)) * self.scale


CPU = RWEConfig(device="cpu", precision="fp32", channels_last=False)


def test_cosine_schedule_hand_values():
    assert cosine_lr(0.25, 0, 30) == pytest.approx(0.25)
    assert cosine_lr(0.25, 15, 30) == pytest.approx(0.125)
    assert cosine_lr(0.25, 10, 30) == pytest.approx(0.5 * 0.25 * (1 + math.cos(math.pi / 3)))
    assert cosine_lr(0.25, 30, 30) == pytest.approx(0.0, abs=1e-12)


def test_fold_indices_leave_one_distinct_part_out():
    n, k = 103, 5
    folds = fold_indices(n, k, torch.Generator().manual_seed(0))
    assert len(folds) == k
    assert {len(f) for f in folds} == {n - n // k}
    held_out = [set(range(n)) - set(f.tolist()) for f in folds]
    assert all(len(h) == n // k for h in held_out)
    for a in range(k):
        for b in range(a + 1, k):
            assert not held_out[a] & held_out[b]
    # the n % k remainder is in every training set
    remainder = set(range(n)) - set().union(*held_out)
    assert len(remainder) == n % k
    assert all(remainder <= set(f.tolist()) for f in folds)
    assert len(fold_indices(10, 1, torch.Generator())[0]) == 10
    with pytest.raises(ConfigError):
        fold_indices(3, 5, torch.Generator())


def test_batched_ensemble_equals_separate_sgd_runs():
    """The batched closed-form-gradient trainer = K independent torch.optim.SGD runs."""
    torch.manual_seed(0)
    feats = torch.randn(57, 4)
    labels = torch.randint(0, 3, (57,))
    cfg = RWEConfig(epochs=4, batch_size=16, folds=3, lr=0.25, momentum=0.9)
    w, b = train_linear_ensemble(feats, labels, 3, cfg, torch.Generator().manual_seed(7))

    # Replay the same random draws: folds, initial weights, then per-epoch permutations.
    gen = torch.Generator().manual_seed(7)
    idx = fold_indices(57, 3, gen)
    bound = 1 / math.sqrt(4)
    w0 = (torch.rand(3, 4, 3, generator=gen) * 2 - 1) * bound
    b0 = (torch.rand(3, 3, generator=gen) * 2 - 1) * bound
    clfs = []
    for k in range(3):
        lin = nn.Linear(4, 3)
        with torch.no_grad():
            lin.weight.copy_(w0[k].T)
            lin.bias.copy_(b0[k])
        clfs.append((lin, torch.optim.SGD(lin.parameters(), lr=0.25, momentum=0.9)))
    n = len(idx[0])
    for epoch in range(4):
        perms = [idx[k][torch.randperm(n, generator=gen)] for k in range(3)]
        for k, (lin, opt) in enumerate(clfs):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(0.25, epoch, 4)
            for start in range(0, n, 16):
                sel = perms[k][start:start + 16]
                opt.zero_grad()
                nn.functional.cross_entropy(lin(feats[sel]), labels[sel]).backward()
                opt.step()
    for k, (lin, _) in enumerate(clfs):
        assert torch.allclose(w[k], lin.weight.T, atol=1e-5)
        assert torch.allclose(b[k], lin.bias, atol=1e-5)


def test_ensemble_averages_softmax():
    """Averaged softmax, not averaged logits, not a majority vote, not classifier 0 alone.

    Sample x=0: classifier 0 is sure of class 0, classifiers 1 and 2 fairly sure of class 1;
    sample x=1: classifier 0 mildly says 1, the others firmly say 0. The three plausible
    rules disagree on these two samples, so each gives a different answer."""
    b = torch.tensor([[10.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    w = torch.tensor([[[-10.0, 1.0]], [[5.0, -3.0]], [[5.0, -3.0]]])  # (K=3, F=1, C=2)
    x = torch.tensor([[0.0], [1.0]])
    logits = torch.einsum("nf,kfc->knc", x, w) + b[:, None, :]
    expected = torch.softmax(logits, -1).mean(0).argmax(1)
    assert expected.tolist() == [1, 0]
    assert logits.mean(0).argmax(1).tolist() == [0, 0]        # averaged logits
    assert logits[0].argmax(1).tolist() == [0, 1]             # classifier 0 only
    assert ensemble_predict(w, b, x).tolist() == [1, 0]


def test_standardise_is_scale_invariant_and_handles_constants():
    torch.manual_seed(0)
    f = torch.randn(50, 5)
    f[:, 4] = 3.0  # constant feature
    (a,) = standardise(f)
    (tiny,) = standardise(f * 1e-20)
    assert torch.allclose(a, tiny, atol=1e-4)
    assert torch.allclose(a[:, 4], torch.zeros(50))
    assert torch.allclose(a[:, :4].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(a[:, :4].std(0, unbiased=False), torch.ones(4), atol=1e-4)
    train, val = standardise(f, f[:10] + 1)
    assert torch.allclose(val[:, :4], train[:10, :4] + 1 / f[:, :4].std(0, unbiased=False),
                          atol=1e-4)


def test_rwe_learns_a_linear_probe_and_is_deterministic():
    split = blobs()
    res = rwe(lambda: Flat(), split, CPU, seed=3)
    assert res.error < 0.15  # three well separated blobs
    assert res.num_features == 8
    assert res.features_seconds >= 0 and res.classifier_seconds > 0
    again = rwe(lambda: Flat(), split, CPU, seed=3)
    assert again.error == res.error
    state = torch.random.get_rng_state()
    rwe(lambda: Flat(), split, CPU, seed=4)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def hard_images(n_train: int = 200, n_val: int = 200, classes: int = 4, seed: int = 0) -> Split:
    """Overlapping 8×8 one-channel blobs: hard enough that the five fold classifiers disagree
    on many validation images (so the ensemble rule matters)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 64, generator=g) * 0.35

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        return (centres[y] + torch.randn(n, 64, generator=g)).reshape(n, 1, 8, 8), y

    tx, ty = draw(n_train)
    vx, vy = draw(n_val)
    return Split(tx, ty, vx, vy)


#: a micro genome whose normal cell (built: 3 layers) mixes convolutions, pooling and skips
GOLDEN_GENOME = (7, 1, 4, 0, 2, 0, 0, 0, 1, 3, 5, 3, 4, 3, 8, 3, 5, 3, 5, 5,
                 2, 1, 6, 0, 3, 2, 4, 0, 6, 2, 7, 0, 0, 4, 0, 2, 0, 1, 4, 2)


def test_golden_rwe_error_of_a_fixed_micro_network():
    """Pinned error of a fixed 3-cell micro network on fixed data (fp32, one thread).

    Measured when written; with these data averaging the classifiers' logits instead of
    their softmax gives 0.635 and classifier 0 alone 0.640, so either change fails here. A
    deliberate change of the estimator must update the pinned value (and say why)."""
    space = get_space("micro")
    cfg = RWEConfig(epochs=3, device="cpu", precision="fp32", inference_batch=64,
                    batch_size=64)

    def factory() -> nn.Module:
        return create_network(space, GOLDEN_GENOME, channels=4, layers=3, in_channels=1,
                              num_classes=4)

    res = rwe(factory, hard_images(), cfg, seed=7)
    assert res.finite and res.num_features == factory().num_features
    assert round(res.error * 200) == 125  # 125 of 200 validation images wrong
    assert res.error == pytest.approx(0.625, abs=1e-6)


def recorded_features(monkeypatch) -> list[torch.Tensor]:
    """A list that every later RWE feature pass (train, then validation) appends to."""
    import rwenas.estimators.rwe as rwe_module

    features = []
    extract = rwe_module.extract_features

    def recording(*args, **kwargs):
        features.append(extract(*args, **kwargs))
        return features[-1]

    monkeypatch.setattr(rwe_module, "extract_features", recording)
    return features


def test_inference_pools_leave_rwe_unchanged(monkeypatch):
    """RWE swaps the max and average pools of its frozen CPU backbone for faster forms; the
    features, and so the error, must be those of ``nn.MaxPool2d`` and ``nn.AvgPool2d``
    exactly (a genome with both pools in the normal and the reduction cell, bfloat16 as on
    AMX cores)."""
    import rwenas.estimators.rwe as rwe_module

    space = get_space("micro")
    pools = "1 0 0 1 1 0 3 1 0 2 4 0 1 3 0 4 1 5 0 1"  # max_pool_3x3 is op 0, avg_pool_3x3 1
    genome = space.validate(f"{pools} {pools}")
    cfg = RWEConfig(epochs=3, device="cpu", precision="bf16", inference_batch=64)
    seen = []

    def factory() -> nn.Module:
        net = create_network(space, genome, channels=4, layers=3, in_channels=1, num_classes=4)
        seen.append(net)
        return net

    def kinds(net: nn.Module) -> list[str]:
        return [type(m).__name__ for m in net.modules()]

    features = recorded_features(monkeypatch)
    fast = rwe(factory, hard_images(), cfg, seed=7)
    assert kinds(seen[-1]).count("SeparableMaxPool3x3") >= 6
    assert kinds(seen[-1]).count("ConvAvgPool3x3") >= 6
    monkeypatch.setattr(rwe_module, "inference_pools", lambda net: net)
    slow = rwe(factory, hard_images(), cfg, seed=7)
    assert not {"SeparableMaxPool3x3", "ConvAvgPool3x3"} & set(kinds(seen[-1]))
    assert len(features) == 4 and features[0].abs().sum() > 0
    assert torch.equal(features[0], features[2]) and torch.equal(features[1], features[3])
    assert fast.error == slow.error


def test_shrunken_features_do_not_collapse():
    split = blobs()
    normal = rwe(lambda: Flat(), split, CPU, seed=1)
    tiny = rwe(lambda: Flat(scale=1e-25), split, CPU, seed=1)
    assert tiny.error == pytest.approx(normal.error, abs=0.02)


def test_nan_features_give_worst_error_and_warning():
    split = blobs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = rwe(lambda: Flat(scale=float("nan")), split, CPU, seed=0)
    assert res.error == 1.0 and not res.finite
    assert "NaN" in res.warning
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)


@pytest.mark.parametrize("method,expected_std", [
    ("kaiming_normal", math.sqrt(2 / 200)),
    ("xavier_normal", math.sqrt(2 / (200 + 300))),
])
def test_reinitialise_distributions(method, expected_std):
    lin = nn.Linear(200, 300)
    reinitialise(lin, method, torch.Generator().manual_seed(0))
    assert lin.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert torch.all(lin.bias == 0)
    other = nn.Linear(200, 300)
    reinitialise(other, method, torch.Generator().manual_seed(0))
    assert torch.equal(lin.weight, other.weight)


@pytest.mark.parametrize("method", ["kaiming_uniform", "xavier_uniform"])
def test_reinitialise_uniform_bounds(method):
    conv = nn.Conv2d(8, 16, 3)
    reinitialise(conv, method, torch.Generator().manual_seed(0))
    fan_in, fan_out = 8 * 9, 16 * 9
    bound = (math.sqrt(6 / fan_in) if method == "kaiming_uniform"
             else math.sqrt(6 / (fan_in + fan_out)))
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.9 * bound


def test_calibrated_batchnorm_holds_exact_statistics():
    torch.manual_seed(0)

    class ConvBN(Network):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
            self.num_features = 4
            self.classifier = nn.Linear(4, 2)

        def features(self, x):
            return self.body(x).mean((2, 3))

    net = ConvBN()
    images = torch.randn(40, 1, 6, 6)
    calibrate_batchnorm(net, images, batch=7, memory_format=torch.contiguous_format)
    with torch.no_grad():
        act = net.body[0](images[:36])  # 6 equal batches of 6; the remainder is dropped
    bn = net.body[1]
    assert torch.allclose(bn.running_mean, act.mean((0, 2, 3)), atol=1e-5)
    # momentum=None averages the per-batch (unbiased) variances, each over 6 images × 16 px
    per_batch = act.reshape(6, 6, 4, 4, 4).var((1, 3, 4), unbiased=True)  # (batch, channel)
    assert torch.allclose(bn.running_var, per_batch.mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(bn.running_var, act.var((0, 2, 3)), rtol=1e-3)  # not pooled
    assert not net.training


def test_threaded_feature_extraction_matches_serial():
    space = get_space("micro")
    torch.manual_seed(0)
    net = create_network(space, space.sample(__import__("numpy").random.default_rng(1)), channels=4,
                      layers=3, in_channels=1).eval()
    images = torch.randn(50, 1, 12, 12)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel = extract_features(net, images, 8, torch.contiguous_format)
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(1)
    try:
        serial = extract_features(net, images, 8, torch.contiguous_format)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(parallel, serial)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("threads", [1, 2])
def test_a_job_alongside_the_features_runs_once_while_other_threads_take_batches(threads):
    """RWE trains its classifiers alongside the validation features: with two threads the
    job runs on one while the other takes batches (the job waits for a batch computed
    elsewhere), with one it runs first; the features are those of a plain pass, and a
    failing job's exception reaches the caller."""
    import threading

    net = Flat()
    images = torch.randn(40, 6)
    started = threading.Event()
    calls, seen = [], []

    def features(x: torch.Tensor) -> torch.Tensor:
        seen.append(threading.get_ident())
        started.set()
        return net.features(x)

    def job() -> None:
        calls.append((threading.get_ident(), torch.get_num_threads()))
        if threads == 2:
            assert started.wait(10), "no batch ran while the job did"
            assert any(t != threading.get_ident() for t in seen)
        else:
            assert not seen

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = extract_features(net, images, 8, torch.contiguous_format, features=features,
                               alongside=job)
        assert calls == [(calls[0][0], 1)]  # once, on single-threaded kernels
        assert torch.equal(got, extract_features(net, images, 8, torch.contiguous_format))

        def failing() -> None:
            raise ValueError("job failed")

        with pytest.raises(ValueError, match="job failed"):
            extract_features(net, images, 8, torch.contiguous_format, alongside=failing)
    finally:
        torch.set_num_threads(saved)


#: validation errors (of 120) of GOLDEN_GENOME per BatchNorm mode, measured when written: the
#: three modes normalise differently, so each gives its own error
BN_MODE_ERRORS = {"eval": 64, "batch": 72, "calibrated": 75}


@pytest.mark.parametrize("bn_mode", sorted(BN_MODE_ERRORS))
def test_rwe_on_a_micro_network_in_every_bn_mode(bn_mode):
    space = get_space("micro")
    split = hard_images(120, 120, seed=1)
    cfg = RWEConfig(bn_mode=bn_mode, epochs=3, device="cpu", precision="fp32",
                    inference_batch=16, batch_size=64)

    def factory():
        return create_network(space, GOLDEN_GENOME, channels=4, layers=3, in_channels=1,
                              num_classes=4)

    a = rwe(factory, split, cfg, seed=5)
    b = rwe(factory, split, cfg, seed=5)
    assert a.finite and a.error == b.error
    assert round(a.error * 120) == BN_MODE_ERRORS[bn_mode]
    assert a.error == pytest.approx(BN_MODE_ERRORS[bn_mode] / 120, abs=1e-6)


def test_precision_choice():
    cpu = torch.device("cpu")
    assert feature_dtype("fp32", cpu) == torch.float32
    assert feature_dtype("bf16", cpu) == torch.bfloat16
    assert feature_dtype("auto", cpu) in (torch.float32, torch.bfloat16)


@pytest.mark.parametrize(("capability", "native"), [((7, 5), False), ((8, 0), True),
                                                     ((9, 0), True)])
def test_gpu_bf16_only_where_native(monkeypatch, capability, native):
    """A 2080 Ti (7.5) only emulates bfloat16, which torch.cuda.is_bf16_supported() counts as
    support by default: RWE features must stay float32 there and training use float16."""
    from rwenas.fit.precision import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = torch.device("cuda")
    assert bf16_is_native(gpu) is native
    assert feature_dtype("auto", gpu) == (torch.bfloat16 if native else torch.float32)
    assert autocast_dtype("auto", gpu) == (torch.bfloat16 if native else torch.float16)
    assert autocast_dtype("fp32", gpu) is None


@pytest.mark.parametrize("bad", [{"init": "he"}, {"bn_mode": "train"}, {"epochs": 0},
                                 {"folds": 0}, {"lr": -1.0}, {"precision": "fp8"}])
def test_config_errors(bad):
    with pytest.raises(ConfigError):
        RWEConfig(**bad)


# -- the estimator's contract, case by case (found by mutation testing) -----------------------


class Probe(Flat):
    """A Flat backbone that records what its features() sees, and can be told to give
    NaN features for marked images (first pixel above 1e5)."""

    def __init__(self, nan_marked: bool = False) -> None:
        super().__init__()
        self.nan_marked = nan_marked
        self.seen: list[tuple[torch.dtype, torch.dtype, float, bool]] = []
        self.drop_path_prob = 0.7

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.dtype, self.proj.weight.dtype, self.drop_path_prob,
                          self.proj.weight.requires_grad))
        out = super().features(x)
        if self.nan_marked:
            out = torch.where(x.flatten(1)[:, :1] > 1e5, torch.nan, out)
        return out


def test_rwe_freezes_the_backbone_and_turns_drop_path_off():
    probe = Probe()
    rwe(probe, blobs(), CPU, seed=0)
    assert probe.seen and all(s[2] == 0.0 and s[3] is False for s in probe.seen)
    assert not any(p.requires_grad for p in probe.parameters())


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_rwe_runs_the_backbone_in_the_requested_precision(precision, dtype):
    probe = Probe()
    res = rwe(probe, blobs(), RWEConfig(device="cpu", precision=precision,
                                        channels_last=False), seed=0)
    assert res.finite and {(s[0], s[1]) for s in probe.seen} == {(dtype, dtype)}


def test_default_seed_is_zero():
    split = blobs(n_train=60, n_val=30)
    cfg = RWEConfig(device="cpu", precision="fp32", epochs=3)
    assert rwe(lambda: Flat(), split, cfg).error == rwe(lambda: Flat(), split, cfg, seed=0).error


@pytest.mark.parametrize("part", ["train", "val"])
def test_nan_in_either_features_gives_the_worst_error(part):
    """NaN training features stop RWE before the classifiers; NaN validation features alone
    are found after the classifiers, which train alongside the validation features."""
    split = blobs()
    images = {"train": split.train_x.clone(), "val": split.val_x.clone()}
    images[part][0, 0, 0, 0] = 1e6  # one image makes NaN features
    split = Split(images["train"], split.train_y, images["val"], split.val_y)
    t0 = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="NaN/inf features") as caught:
        res = rwe(Probe(nan_marked=True), split, CPU, seed=0)
    wall = time.perf_counter() - t0
    assert (res.error, res.finite, res.num_features) == (1.0, False, 8)
    assert (res.classifier_seconds == 0.0) == (part == "train")
    assert res.features_seconds >= 0 and res.seconds <= wall
    assert res.warning == ("backbone produced NaN/inf features; RWE error set to the worst "
                           "value 1.0")
    assert os.path.basename(caught[0].filename) != "rwe.py"  # reported at the caller of rwe()


def test_a_diverging_classifier_gives_the_worst_error():
    t0 = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="classifier diverged") as caught:
        res = rwe(lambda: Flat(), blobs(), RWEConfig(device="cpu", precision="fp32",
                                                      channels_last=False, lr=1e38), seed=0)
    wall = time.perf_counter() - t0
    assert (res.error, res.finite, res.num_features) == (1.0, False, 8)
    assert res.warning == "classifier diverged; RWE error set to the worst value 1.0"
    assert res.features_seconds >= 0 and res.classifier_seconds > 0
    assert res.features_seconds + res.classifier_seconds <= wall
    assert os.path.basename(caught[0].filename) != "rwe.py"


def test_timings_add_up_to_at_most_the_wall_time():
    t0 = time.perf_counter()
    res = rwe(lambda: Flat(), blobs(), CPU, seed=0)
    wall = time.perf_counter() - t0
    assert res.finite and res.warning is None
    assert res.features_seconds >= 0 and res.classifier_seconds > 0
    assert res.seconds == res.features_seconds + res.classifier_seconds <= wall


def test_batch_statistics_mode_leaves_running_statistics_alone():
    class ConvBN(Network):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4))
            self.num_features = 4 * 6
            self.classifier = nn.Linear(self.num_features, 3)

        def features(self, x):
            return self.body(x).flatten(1)

    net = ConvBN()
    with torch.no_grad():
        net.body[1].running_mean.fill_(0.3)
        net.body[1].running_var.fill_(2.0)
    res = rwe(net, blobs(), RWEConfig(device="cpu", precision="fp32", bn_mode="batch",
                                      epochs=2), seed=0)
    assert res.finite
    assert torch.equal(net.body[1].running_mean, torch.full((4,), 0.3))
    assert torch.equal(net.body[1].running_var, torch.full((4,), 2.0))


def test_device_and_precision_resolution():
    cpu = torch.device("cpu")
    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == auto and resolve_device() == auto
    assert resolve_device("cpu") == cpu and resolve_device(cpu) == cpu
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert bf16_is_native(cpu) is native
    assert feature_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)


def test_bf16_support_query_failing_means_no_bf16(monkeypatch):
    def broken():
        raise RuntimeError("no oneDNN")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", broken)
    assert bf16_is_native(torch.device("cpu")) is False
    assert feature_dtype("auto", torch.device("cpu")) == torch.float32


@pytest.mark.parametrize("bad,message", [
    ({"init": "he"}, "unknown init 'he' (known: default, kaiming_normal, kaiming_uniform, "
                     "xavier_normal, xavier_uniform)"),
    ({"bn_mode": "train"}, "unknown BatchNorm mode 'train' (known: eval, batch, calibrated)"),
    ({"precision": "fp8"}, "unknown precision 'fp8' (known: auto, fp32, bf16)"),
    ({"epochs": 0}, "RWE epochs must be at least 1"),
    ({"batch_size": 0}, "RWE batch_size must be at least 1"),
    ({"inference_batch": 0}, "RWE inference_batch must be at least 1"),
    ({"calibration_size": 0}, "RWE calibration_size must be at least 1"),
    ({"folds": 0}, "RWE folds must be at least 1"),
    ({"lr": 0.0}, "RWE needs lr > 0 and 0 <= momentum < 1"),
    ({"momentum": -0.1}, "RWE needs lr > 0 and 0 <= momentum < 1"),
    ({"momentum": 1.0}, "RWE needs lr > 0 and 0 <= momentum < 1"),
])
def test_config_error_messages(bad, message):
    with pytest.raises(ConfigError) as exc:
        RWEConfig(**bad)
    assert str(exc.value) == message


def test_config_boundaries_are_valid_and_round_trip():
    edge = RWEConfig(epochs=1, batch_size=1, inference_batch=1, calibration_size=1, folds=1,
                     lr=1e-9, momentum=0.0)
    assert RWEConfig(**edge.to_dict()) == edge
    assert edge.to_dict()["momentum"] == 0.0 and edge.to_dict()["folds"] == 1
    assert set(RWEConfig().to_dict()) == {
        "init", "bn_mode", "standardize", "epochs", "lr", "momentum", "batch_size", "folds",
        "inference_batch", "calibration_size", "channels_last", "precision", "device",
        "features", "inits"}


def test_softmax_classes_is_the_softmax_over_classes():
    from rwenas.estimators.rwe import softmax_classes

    gen = torch.Generator().manual_seed(0)
    for scale in (1.0, 30.0, 300.0):  # up to logits whose exp overflows without the shift
        z = torch.randn(5, 37, 10, generator=gen) * scale
        p = softmax_classes(z)
        assert p.shape == z.shape
        torch.testing.assert_close(p, torch.softmax(z, dim=-1), rtol=0, atol=1e-7)
        torch.testing.assert_close(p.sum(-1), torch.ones(5, 37), rtol=0, atol=1e-6)
    z = torch.tensor([[[0.0, 1.0, 2.0]]])  # by hand: e^k / (1 + e + e^2)
    den = 1 + math.e + math.e ** 2
    expected = torch.tensor([[[1 / den, math.e / den, math.e ** 2 / den]]])
    torch.testing.assert_close(softmax_classes(z), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bn_mode", ["eval", "batch"])
def test_the_inference_batch_changes_features_only_under_batch_statistics(monkeypatch, bn_mode):
    """A GPU search runs RWE at a larger inference batch (``default_inference_batch``): with
    frozen BatchNorm (the default) that must leave every feature as it was, to float
    rounding; with batch statistics it must not (the case that shows the check can fail)."""

    space = get_space("micro")
    features = recorded_features(monkeypatch)

    def factory() -> nn.Module:
        return create_network(space, GOLDEN_GENOME, channels=4, layers=3, in_channels=1,
                              num_classes=4)

    for batch in (16, 200):
        rwe(factory, hard_images(), RWEConfig(epochs=1, device="cpu", precision="fp32",
                                             bn_mode=bn_mode, inference_batch=batch), seed=3)
    (train_a, val_a), (train_b, val_b) = features[:2], features[2:]
    largest = max(float(train_a.abs().max()), float(val_a.abs().max()))
    apart = max(float((train_a - train_b).abs().max()), float((val_a - val_b).abs().max()))
    if bn_mode == "eval":
        assert apart <= 1e-5 * largest
    else:
        assert apart > 1e-2 * largest


def test_default_inference_batch_is_larger_on_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_inference_batch("auto") == default_inference_batch("cpu") == 128
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_inference_batch("auto") == CUDA_INFERENCE_BATCH == 1024
    assert default_inference_batch("cpu") == 128
