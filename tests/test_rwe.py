"""Random-Weight Evaluation: classifier recipe, folds, ensemble, numerics, determinism."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from rwenas.data import Split
from rwenas.errors import ConfigError
from rwenas.estimators.rwe import (
    RWEConfig,
    bf16_is_native,
    calibrate_batchnorm,
    cosine_lr,
    ensemble_predict,
    extract_features,
    feature_dtype,
    fold_indices,
    reinitialise,
    rwe,
    standardise,
    train_linear_ensemble,
)
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
    # Classifier 0 votes class 0 strongly; classifiers 1 and 2 vote class 1 mildly.
    w = torch.zeros(3, 1, 2)
    b = torch.tensor([[4.0, 0.0], [0.0, 0.5], [0.0, 0.5]])
    x = torch.zeros(1, 1)
    p0 = torch.softmax(torch.tensor([4.0, 0.0]), 0)
    p1 = torch.softmax(torch.tensor([0.0, 0.5]), 0)
    expected = int(((p0 + 2 * p1) / 3).argmax())
    assert expected == 0  # majority vote would say 1; the averaged softmax says 0
    assert ensemble_predict(w, b, x).tolist() == [expected]


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
    # per-batch unbiased variances are averaged; compare loosely to the pooled variance
    assert torch.allclose(bn.running_var, act.var((0, 2, 3)), rtol=0.1)
    assert not net.training


def test_threaded_feature_extraction_matches_serial():
    space = get_space("micro")
    torch.manual_seed(0)
    net = space.build(space.sample(__import__("numpy").random.default_rng(1)), channels=4,
                      layers=2, in_channels=1).eval()
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


@pytest.mark.parametrize("bn_mode", ["eval", "batch", "calibrated"])
def test_rwe_on_a_micro_network_in_every_bn_mode(bn_mode):
    space = get_space("micro")
    genome = space.sample(__import__("numpy").random.default_rng(0))
    split = blobs(n_train=60, n_val=30, dim=64)
    split = Split(split.train_x.reshape(60, 1, 8, 8), split.train_y,
                  split.val_x.reshape(30, 1, 8, 8), split.val_y)
    cfg = RWEConfig(bn_mode=bn_mode, epochs=3, device="cpu", inference_batch=16)

    def factory():
        return space.build(genome, channels=4, layers=2, in_channels=1, num_classes=3)

    a = rwe(factory, split, cfg, seed=5)
    b = rwe(factory, split, cfg, seed=5)
    assert 0.0 <= a.error <= 1.0 and a.finite
    assert a.error == b.error


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
    from rwenas.train.precision import autocast_dtype

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
