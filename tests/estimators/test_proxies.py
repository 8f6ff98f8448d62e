"""Zero-cost proxies against hand-derived values on tiny networks, and every estimator on a
real micro network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rwenas.data import Split, load_dataset, search_split
from rwenas.errors import ConfigError
from rwenas.estimators.base import Estimator, Score, build_network, draw_batch
from rwenas.estimators.proxies import (
    ESTIMATORS,
    JACOB_COV_EPS,
    ReLUCodes,
    RWEEstimator,
    SynFlow,
    fisher_score,
    grad_norm_score,
    grasp_score,
    hessian_gradient_products,
    jacob_cov_score,
    jacobian_correlation_score,
    make_estimator,
    naswot_kernel,
    naswot_score,
    prunable_layers,
    snip_score,
    synflow_score,
)
from rwenas.models import create_network
from rwenas.spaces import get_space

K = JACOB_COV_EPS


def vector_split(n: int = 40, dim: int = 5, classes: int = 3, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Split(x, y, x[:10], y[:10])


def jc_formula(eig) -> float:
    eig = np.asarray(eig, dtype=np.float64)
    return float(-np.sum(np.log(eig + K) + 1.0 / (eig + K)))


def linear_ce_grads(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor):
    """Logits and the hand-written gradients of mean cross-entropy of one linear layer."""
    with torch.no_grad():
        z = x @ lin.weight.T + lin.bias
        p = torch.softmax(z, 1)
        g = (p - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(x)  # dL/dz
        return z, g, g.T @ x                                      # dL/dW = Gᵀ X


# -- synflow ---------------------------------------------------------------------------------


def test_synflow_of_a_linear_chain_is_twice_its_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    w1, w2 = (net[0].weight.detach().double().clone(), net[1].weight.detach().double().clone())
    r = torch.ones(3, dtype=torch.float64) @ w2.abs() @ w1.abs() @ torch.ones(5,
                                                                                dtype=torch.float64)
    assert synflow_score(net, (5,)) == pytest.approx(2 * float(r), rel=1e-12)
    # signs restored after the all-|θ| pass
    assert torch.equal(net[0].weight, w1) and torch.equal(net[1].weight, w2)


def test_synflow_estimator_sign_and_batchnorm_bypass():
    def conv_net(bn: bool):
        torch.manual_seed(3)
        layers = [nn.Conv2d(1, 3, 3, padding=1, bias=False)]
        if bn:
            layers.append(nn.BatchNorm2d(3))
        layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)]
        net = nn.Sequential(*layers)
        if bn:
            with torch.no_grad():
                net[1].weight.fill_(5.0)  # would change the score if BN were not bypassed
                net[1].running_var.fill_(9.0)
        return net

    assert synflow_score(conv_net(True), (1, 6, 6)) == pytest.approx(
        synflow_score(conv_net(False), (1, 6, 6)), rel=1e-12)
    split = Split(torch.randn(8, 1, 6, 6), torch.zeros(8, dtype=torch.long),
                  torch.randn(2, 1, 6, 6), torch.zeros(2, dtype=torch.long))
    s = SynFlow().score(lambda: conv_net(True), split)
    assert s.raw > 0 and s.value == -s.raw and s.name == "synflow"


def test_synflow_lower_value_for_wider_networks():
    split = vector_split(dim=6)

    def mlp(width):
        return lambda: nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))

    narrow, wide = (SynFlow().score(mlp(w), split, seed=0).value for w in (4, 64))
    assert wide < narrow
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(0))
    img = Split(torch.randn(8, 1, 12, 12), torch.zeros(8, dtype=torch.long),
                torch.randn(2, 1, 12, 12), torch.zeros(2, dtype=torch.long))
    small, big = (SynFlow().score(
        lambda c=c: create_network(space, genome, channels=c, layers=3, in_channels=1), img).value
        for c in (4, 8))
    assert big < small


# -- jacob_cov -------------------------------------------------------------------------------


def test_jacob_cov_of_a_linear_map_has_an_all_ones_correlation():
    torch.manual_seed(0)
    net = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    # every per-sample Jacobian of sum(Ax + b) is Aᵀ1 → correlation all ones: eig 5, 0, 0, 0, 0
    expected = jc_formula([5.0, 0, 0, 0, 0])
    assert jacob_cov_score(net, x) == pytest.approx(expected, rel=1e-6)


class Square(nn.Module):
    def forward(self, x):
        return x * x


def test_jacob_cov_with_a_known_correlation_matrix():
    # Jacobians 2x: rows (1,2,3), (1,3,2) have correlation 0.5 → eigenvalues 1.5 and 0.5
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    assert jacob_cov_score(Square(), x) == pytest.approx(jc_formula([1.5, 0.5]), rel=1e-9)
    # three samples: correlations -1/2 between (1,2,3)/(3,1,2)/(2,3,1) → eigenvalues 0, 1.5, 1.5
    j = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 3.0, 1.0]])
    assert jacobian_correlation_score(j) == pytest.approx(jc_formula([0.0, 1.5, 1.5]), rel=1e-9)
    # constant Jacobians: correlation undefined
    assert math.isnan(jacobian_correlation_score(np.ones((3, 4))))


# -- naswot ----------------------------------------------------------------------------------


def test_naswot_kernel_of_hand_made_codes():
    codes = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    # N_A = 4, Hamming distances d01 = 3, d02 = 1, d12 = 4
    expected = torch.tensor([[4.0, 1, 3], [1, 4, 0], [3, 0, 4]], dtype=torch.float64)
    assert torch.equal(naswot_kernel([codes]), expected)
    assert torch.equal(naswot_kernel([codes[:, :2], codes[:, 2:]]), expected)  # layers add up
    assert float(torch.linalg.det(expected)) == pytest.approx(24.0)


def test_naswot_score_of_a_relu_layer():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    # codes (1,1), (1,0), (0,1): K = [[2,1,1],[1,2,0],[1,0,2]], det 4; functional ReLUs count
    for net in (nn.Sequential(lin, nn.ReLU()), nn.Sequential(lin, nn.ReLU(inplace=True))):
        assert naswot_score(net, x) == pytest.approx(math.log(4.0))

    class Functional(nn.Module):
        def forward(self, x):
            return torch.relu(lin(x))

    assert naswot_score(Functional(), x) == pytest.approx(math.log(4.0))
    # two ReLU applications (one functional): K doubles, det × 8
    two = nn.Sequential(lin, nn.ReLU(), Functional())
    assert naswot_score(two, x) == pytest.approx(math.log(32.0))


# -- gradient proxies on one linear layer ----------------------------------------------------


def one_linear(seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(4, 3)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return lin, x, y


def test_grad_norm_and_snip_of_one_linear_layer():
    lin, x, y = one_linear()
    _, _, dw = linear_ce_grads(lin, x, y)
    assert grad_norm_score(lin, x, y) == pytest.approx(float(dw.norm()), rel=1e-5)
    assert snip_score(lin, x, y) == pytest.approx(float((lin.weight.detach() * dw).abs().sum()),
                                                  rel=1e-5)


def test_fisher_of_one_linear_layer():
    lin, x, y = one_linear(1)
    z, g, _ = linear_ce_grads(lin, x, y)
    # each output channel's score counts once per weight of the channel (fan-in 4)
    expected = 4 * float((0.5 * (z * g).pow(2).mean(0)).sum())
    assert fisher_score(lin, x, y) == pytest.approx(expected, rel=1e-5)


def tiny_conv_net():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
                         nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def test_fisher_and_grasp_on_a_tiny_conv_net():
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 7, 7), torch.randint(0, 3, (8,))
    f = fisher_score(tiny_conv_net(), x, y)
    assert math.isfinite(f) and f > 0
    torch.manual_seed(0)
    net = tiny_conv_net()
    g = grasp_score(net, x, y)
    assert math.isfinite(g)
    # fisher sums the same per-layer terms whether or not an in-place ReLU follows
    torch.manual_seed(0)
    a = fisher_score(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(),
                                   nn.Linear(50, 3)), x, y)
    torch.manual_seed(0)
    b = fisher_score(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(50, 3)), x, y)
    assert a == pytest.approx(b, rel=1e-6)


def test_grasp_hessian_gradient_product_matches_the_full_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False))
    net.double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss_of(flat):
        params, start = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = flat[start:start + s.numel()].reshape(s)
            start += s.numel()
        return F.cross_entropy(torch.func.functional_call(net, params, (x,)), y)

    h = torch.autograd.functional.hessian(loss_of, theta)
    g = torch.autograd.functional.jacobian(loss_of, theta)
    hg_full = h @ g
    hg = hessian_gradient_products(F.cross_entropy(net(x), y), list(net.parameters()))
    assert torch.allclose(torch.cat([t.reshape(-1) for t in hg]), hg_full, atol=1e-10)
    assert grasp_score(net, x, y) == pytest.approx(float(-(theta * hg_full).sum()), rel=1e-8)


# -- every estimator on a real micro network -------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_split():
    return search_split(load_dataset("synthetic", synthetic_size=(200, 50)))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_on_a_micro_network(name, synthetic_split):
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(0))

    def factory():
        return create_network(space, genome, channels=4, layers=3, in_channels=1)

    options = {"epochs": 2, "device": "cpu"} if name == "rwe" else {"device": "cpu"}
    est = make_estimator(name, **options)
    assert isinstance(est, Estimator) and est.name == name
    a = est.score(factory, synthetic_split, seed=3)
    b = est.score(factory, synthetic_split, seed=3)
    assert isinstance(a, Score) and a.name == name
    assert math.isfinite(a.value) and a.finite and a.seconds >= 0
    assert a.value == b.value and a.raw == b.raw
    if name == "rwe":
        assert a.value == a.raw and 0.0 <= a.value <= 1.0
    else:
        assert a.value == -a.raw  # every proxy and baseline is higher-is-better in its paper


def test_seed_controls_network_and_batch():
    split = vector_split()
    fac = lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))  # noqa: E731
    est = make_estimator("snip")
    assert est.score(fac, split, seed=1).raw != est.score(fac, split, seed=2).raw
    before = torch.get_rng_state()
    build_network(fac, 5)
    assert torch.equal(before, torch.get_rng_state())  # global RNG untouched
    x1, y1 = draw_batch(split, 16, 7)
    x2, y2 = draw_batch(split, 16, 7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and len(x1) == 16


def test_non_finite_proxy_gives_the_worst_value():
    def broken():
        lin = nn.Linear(5, 3)
        with torch.no_grad():
            lin.weight.fill_(float("nan"))
        return lin

    with pytest.warns(RuntimeWarning, match="snip"):
        s = make_estimator("snip").score(broken, vector_split())
    assert s.value == math.inf and not s.finite and math.isnan(s.raw)


def test_registry_and_errors():
    assert set(ESTIMATORS) == {"synflow", "grasp", "fisher", "jacob_cov", "snip", "grad_norm",
                               "naswot", "params", "madds", "rwe"}
    assert make_estimator("grad-norm").name == "grad_norm"
    assert make_estimator("naswot").batch_size == 64
    with pytest.raises(ConfigError, match="unknown estimator"):
        make_estimator("zen")
    with pytest.raises(ConfigError):
        make_estimator("snip", nope=1)
    with pytest.raises(ConfigError):
        make_estimator("fisher", batch_size=0)
    with pytest.raises(ConfigError):
        make_estimator("rwe", bn_mode="sideways")


# -- every proxy on a small network with BatchNorm and spatial maps, against a reference -----
#
# The reference below is written independently of rwenas.estimators.proxies: a functional
# forward pass (BatchNorm by hand, with batch statistics as in train mode, or running ones as
# in eval mode), autograd for the gradients, and each proxy's formula as the module's
# docstring states it. If a proxy's definition changes on purpose, change its reference
# function here (each proxy has its own test).


class BNNet(nn.Module):
    """conv → BN → ReLU (in place) → strided conv → BN → ReLU → mean pool → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.relu2(self.bn2(self.conv2(h)))
        return self.fc(h.mean((2, 3)))


WEIGHTS = ("conv1.weight", "conv2.weight", "fc.weight")  # what the per-weight proxies score


def bn_net() -> BNNet:
    """A fixed BNNet whose BatchNorm layers are far from the identity in eval mode (running
    statistics and affine parameters set), so train and eval mode give different values."""
    torch.manual_seed(11)
    net = BNNet()
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            c = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(c, generator=g))
            bn.bias.copy_(torch.randn(c, generator=g) * 0.3)
            bn.running_mean.copy_(torch.randn(c, generator=g))
            bn.running_var.copy_(0.2 + torch.rand(c, generator=g) * 3)
    return net


def bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(13)
    return torch.randn(8, 1, 6, 6, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def ref_params(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The parameters and BatchNorm buffers of :func:`bn_net` as plain leaf tensors."""
    return {k: v.detach().clone().to(dtype).requires_grad_(v.is_floating_point())
            for k, v in bn_net().state_dict().items() if v.is_floating_point()}


def ref_forward(p: dict[str, torch.Tensor], x: torch.Tensor, bn: str = "batch"
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Logits, the outputs of the three conv/linear layers, and the two ReLU outputs.
    ``bn``: ``batch`` (train mode), ``running`` (eval mode) or ``none`` (bypassed)."""

    def norm(h: torch.Tensor, name: str) -> torch.Tensor:
        if bn == "none":
            return h
        if bn == "batch":
            mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
        else:
            mean, var = p[f"{name}.running_mean"], p[f"{name}.running_var"]
        shape = (1, -1, 1, 1)
        return ((h - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
                * p[f"{name}.weight"].view(shape) + p[f"{name}.bias"].view(shape))

    a1 = F.conv2d(x, p["conv1.weight"], padding=1)
    r1 = torch.clamp(norm(a1, "bn1"), min=0)
    a2 = F.conv2d(r1, p["conv2.weight"], p["conv2.bias"], stride=2, padding=1)
    r2 = torch.clamp(norm(a2, "bn2"), min=0)
    a3 = r2.mean((2, 3)) @ p["fc.weight"].T + p["fc.bias"]
    return a3, [a1, a2, a3], [r1, r2]


def ref_weight_grads(bn: str = "batch") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    p = ref_params()
    x, y = bn_batch()
    logits, _, _ = ref_forward(p, x, bn)
    weights = [p[k] for k in WEIGHTS]
    return weights, list(torch.autograd.grad(F.cross_entropy(logits, y), weights))


def ref_snip(bn: str = "batch") -> float:
    weights, grads = ref_weight_grads(bn)
    pairs = zip(weights, grads, strict=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in pairs))


def ref_grad_norm(bn: str = "batch") -> float:
    _, grads = ref_weight_grads(bn)
    return float(sum(g.norm() for g in grads))


def ref_fisher(bn: str = "batch", abs_first: bool = False) -> float:
    """½ · mean over the batch of (Σ over positions of a ⊙ ∂L/∂a)² per channel, spread over the
    channel's fan-in weights (× fan-in, as the zero-cost-nas reference sums it), summed over
    channels and layers; ``abs_first`` takes |a ⊙ ∂L/∂a| before the spatial sum (wrong)."""
    p = ref_params()
    x, y = bn_batch()
    logits, acts, _ = ref_forward(p, x, bn)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), acts)
    total = 0.0
    for a, g, name in zip(acts, grads, WEIGHTS, strict=True):
        prod = (a * g).detach()
        if abs_first:
            prod = prod.abs()
        per_channel = prod.sum((2, 3)) if prod.dim() == 4 else prod
        fan_in = p[name][0].numel()
        total += fan_in * float(0.5 * per_channel.pow(2).mean(0).sum())
    return total


def ref_grasp(bn: str = "batch") -> float:
    """−θ · (H g) with the full Hessian of the loss over the concatenated weights."""
    p = ref_params(torch.float64)
    x, y = bn_batch()
    shapes = [p[k].shape for k in WEIGHTS]
    theta = torch.cat([p[k].detach().reshape(-1) for k in WEIGHTS])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        q, start = dict(p), 0
        for k, s in zip(WEIGHTS, shapes, strict=True):
            q[k] = flat[start:start + s.numel()].reshape(s)
            start += s.numel()
        return F.cross_entropy(ref_forward(q, x.double(), bn)[0], y)

    h = torch.autograd.functional.hessian(loss_of, theta)
    g = torch.autograd.functional.jacobian(loss_of, theta)
    return float(-(theta * (h @ g)).sum())


def ref_naswot(bn: str = "batch") -> float:
    p = ref_params()
    x, _ = bn_batch()
    with torch.no_grad():
        _, _, relus = ref_forward(p, x, bn)
    codes = [(r > 0).reshape(len(x), -1).double() for r in relus]
    k = sum(c @ c.T + (1 - c) @ (1 - c).T for c in codes)
    return float(torch.linalg.slogdet(k)[1])


def ref_jacob_cov(bn: str = "batch") -> float:
    p = ref_params()
    x, _ = bn_batch()
    x = x.clone().requires_grad_(True)
    logits, _, _ = ref_forward(p, x, bn)
    (jac,) = torch.autograd.grad(logits.sum(), x)
    corr = np.corrcoef(jac.reshape(len(x), -1).double().numpy())
    return jc_formula(np.linalg.eigvalsh(corr))


def ref_synflow() -> float:
    p = {k: v.detach().abs().requires_grad_(True) for k, v in ref_params(torch.float64).items()}
    logits, _, _ = ref_forward(p, torch.ones(1, 1, 6, 6, dtype=torch.float64), bn="none")
    grads = torch.autograd.grad(logits.sum(), [p[k] for k in WEIGHTS])
    return float(sum((p[k].detach() * g).abs().sum() for k, g in zip(WEIGHTS, grads, strict=True)))


def differs(a: float, b: float, rel: float = 1e-3) -> bool:
    return abs(a - b) > rel * max(abs(a), abs(b))


def test_bn_reference_forward_matches_the_module():
    """The reference is a faithful copy of BNNet in both BatchNorm modes (so the eval-mode
    values below are what a proxy computed in eval mode would give)."""
    x, _ = bn_batch()
    with torch.no_grad():
        train = bn_net().train()(x)
        evaluated = bn_net().eval()(x)
    assert torch.allclose(ref_forward(ref_params(), x, "batch")[0], train, atol=1e-6)
    assert torch.allclose(ref_forward(ref_params(), x, "running")[0], evaluated, atol=1e-6)
    assert not torch.allclose(train, evaluated, atol=1e-2)


def test_snip_with_batchnorm_in_train_mode():
    x, y = bn_batch()
    expected = ref_snip("batch")
    assert differs(expected, ref_snip("running"))  # eval mode would give another value
    assert snip_score(bn_net(), x, y) == pytest.approx(expected, rel=1e-5)


def test_grad_norm_with_batchnorm_in_train_mode():
    x, y = bn_batch()
    expected = ref_grad_norm("batch")
    assert differs(expected, ref_grad_norm("running"))
    assert grad_norm_score(bn_net(), x, y) == pytest.approx(expected, rel=1e-5)


def test_grasp_with_batchnorm_in_train_mode():
    x, y = bn_batch()
    expected = ref_grasp("batch")
    assert differs(expected, ref_grasp("running"))
    assert grasp_score(bn_net(), x, y) == pytest.approx(expected, rel=1e-4)


def test_fisher_with_batchnorm_and_spatial_maps():
    """Fisher squares the spatial sum of a ⊙ ∂L/∂a per channel, weighted by fan-in."""
    x, y = bn_batch()
    expected = ref_fisher("batch")
    assert differs(expected, ref_fisher("batch", abs_first=True))
    assert differs(expected, ref_fisher("running"))
    assert fisher_score(bn_net(), x, y) == pytest.approx(expected, rel=1e-5)


def test_naswot_with_batchnorm_in_train_mode():
    """NASWOT codes every ReLU application of the train-mode pass (current definition)."""
    x, _ = bn_batch()
    expected = ref_naswot("batch")
    assert differs(expected, ref_naswot("running"))
    assert naswot_score(bn_net(), x) == pytest.approx(expected, rel=1e-9)


def test_jacob_cov_with_batchnorm_in_train_mode():
    x, _ = bn_batch()
    expected = ref_jacob_cov("batch")
    assert differs(expected, ref_jacob_cov("running"))
    assert jacob_cov_score(bn_net(), x) == pytest.approx(expected, rel=1e-4)


def test_synflow_bypasses_batchnorm_on_spatial_maps():
    expected = ref_synflow()
    net = bn_net()
    assert synflow_score(net, (1, 6, 6)) == pytest.approx(expected, rel=1e-10)


# -- helpers, edge cases and messages (found by mutation testing) ----------------------------


class WithAuxiliary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 3)
        self.auxiliary_head = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Linear(2, 3))
        self.drop_path_prob = 0.3

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_prunable_layers_leave_out_the_auxiliary_head():
    net = WithAuxiliary()
    assert prunable_layers(net) == [net.conv, net.fc]
    net.auxiliary_head = None
    assert prunable_layers(net) == [net.conv, net.fc]
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2),
                          nn.Linear(2, 3))
    assert prunable_layers(plain) == [plain[0], plain[2], plain[4]]


def test_scoring_prepares_the_network():
    net = WithAuxiliary().eval()
    for p in net.parameters():
        p.requires_grad_(False)
        p.grad = torch.ones_like(p)
    x, y = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 2, 0])
    snip_score(net, x, y)
    assert net.training and all(m.training for m in net.modules())
    assert net.drop_path_prob == 0.0
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    naswot_score(net, x)
    assert net.training
    net.train()
    synflow_score(net, (1, 5, 5))
    assert not net.training and not any(m.training for m in net.modules())


class DeadBranch(nn.Module):
    """A layer that is called but whose output is dropped (its weights get no gradient),
    before the layers that count."""

    def __init__(self) -> None:
        super().__init__()
        self.dead = nn.Linear(5, 4)
        self.live = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x):
        self.dead(x)
        return self.live(x)


@pytest.mark.parametrize("proxy", ["synflow", "snip", "grad_norm", "grasp", "fisher"])
def test_layers_without_a_gradient_are_left_out(proxy):
    torch.manual_seed(0)
    net = DeadBranch()
    live = nn.Sequential(*[m for m in net.live])  # the same weights without the dead layer
    x, y = torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    score = {"synflow": lambda n: synflow_score(n, (5,)), "snip": lambda n: snip_score(n, x, y),
             "grad_norm": lambda n: grad_norm_score(n, x, y),
             "grasp": lambda n: grasp_score(n, x, y),
             "fisher": lambda n: fisher_score(n, x, y)}[proxy]
    expected = score(live)
    assert expected != 0.0
    assert score(net) == pytest.approx(expected, rel=1e-6)


def test_hessian_gradient_products_of_unused_and_linear_weights():
    w = torch.randn(3, requires_grad=True)
    unused = torch.randn(2, requires_grad=True)
    loss = (w ** 2).sum()
    used, zero = hessian_gradient_products(loss, [w, unused])
    assert torch.allclose(used, 4 * w.detach())  # H = 2I, g = 2w
    assert torch.equal(zero, torch.zeros(2))
    (only,) = hessian_gradient_products((w ** 2).sum(), [unused])  # no gradient at all
    assert torch.equal(only, torch.zeros(2))
    c = torch.tensor([1.0, -2.0, 3.0])
    (flat,) = hessian_gradient_products((w * c).sum(), [w])  # linear: the Hessian is 0
    assert torch.equal(flat, torch.zeros(3))


def test_fisher_of_a_network_without_layers_is_zero():
    net = nn.Sequential(nn.Flatten())
    assert fisher_score(net, torch.randn(4, 3), torch.tensor([0, 1, 2, 0])) == 0.0


def test_fisher_sums_a_conv1d_output_over_its_positions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4, 2))
    x, y = torch.randn(5, 2, 6), torch.tensor([0, 1, 1, 0, 1])
    a = net[0](x)
    a.retain_grad()
    F.cross_entropy(net[2](net[1](a)), y).backward()
    out = net[2](net[1](a.detach()))
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    conv = 0.5 * (a.detach() * a.grad).sum(2).pow(2).mean(0).sum() * (2 * 3)
    fc = 0.5 * (out.detach() * out.grad).pow(2).mean(0).sum() * (3 * 4)
    assert fisher_score(net, x, y) == pytest.approx(float(conv + fc), rel=1e-5)


def test_fisher_of_a_one_channel_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(9, 3))
    x, y = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 2, 0])
    assert math.isfinite(fisher_score(net, x, y)) and fisher_score(net, x, y) > 0


def test_jacobian_correlation_score_inputs_and_warnings():
    import warnings

    j = np.random.default_rng(0).normal(size=(4, 6))
    expected = jacobian_correlation_score(j)
    t = torch.tensor(j, dtype=torch.float64, requires_grad=True)
    assert jacobian_correlation_score(t) == expected  # detached, on the CPU
    assert jacobian_correlation_score(j.reshape(4, 2, 3)) == expected  # flattened per sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(jacobian_correlation_score(np.ones((3, 4))))  # no warning either


def test_relu_codes_of_scalars_and_vectors():
    recorder = ReLUCodes(4)
    with recorder:
        torch.relu(torch.tensor(-1.0))  # a scalar: no sample axis
        torch.relu(torch.tensor([1.0, -1.0, 2.0, 0.0]))  # one unit per sample
        F.relu(torch.ones(3, 2))  # another batch size
    assert len(recorder.codes) == 1
    assert recorder.codes[0].tolist() == [[True], [False], [True], [False]]


def test_naswot_without_relu_and_without_codes():
    with pytest.raises(ValueError, match=r"^no activation codes$"):
        naswot_kernel([])
    assert naswot_score(nn.Linear(5, 3), torch.randn(4, 5)) == -math.inf


def test_batch_size_checks():
    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ConfigError) as info:
            make_estimator("snip", batch_size=bad)
        assert str(info.value) == f"batch_size must be a positive integer, got {bad!r}"
    assert make_estimator("snip", batch_size=1).batch_size == 1
    assert make_estimator("snip", batch_size=2).batch_size == 2


def test_estimator_score_defaults_and_timing():
    split = vector_split()
    fac = lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))  # noqa: E731
    est = make_estimator("grad_norm", device="cpu")
    s = est.score(fac, split)
    assert s.raw == est.score(fac, split, seed=0).raw != est.score(fac, split, seed=1).raw
    assert 0 <= s.seconds < 60
    assert repr(est) == "GradNorm(batch_size=64, device='cpu')"
    assert repr(SynFlow(batch_size=8, device="cpu")) == "SynFlow(batch_size=8, device='cpu')"


def test_rwe_estimator_options_and_timing():
    from rwenas.estimators.rwe import RWEConfig, rwe
    from rwenas.models.base import Network

    class Flat(Network):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(5, 8, bias=False)
            self.num_features = 8
            self.classifier = nn.Linear(8, 3)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x.flatten(1))

    split = vector_split(n=60, classes=3)
    fac = Flat
    config = RWEConfig(epochs=2, device="cpu", precision="fp32", channels_last=False)
    est = RWEEstimator(config)
    assert est.config is config and RWEEstimator(epochs=2).config.epochs == 2
    s = est.score(fac, split)
    assert s.raw == s.value == rwe(fac, split, config, seed=0).error
    assert s.raw == est.score(fac, split, seed=0).raw and 0 <= s.seconds < 60
    with pytest.raises(ConfigError) as info:
        RWEEstimator(config, epochs=3)
    assert str(info.value) == "give either an RWEConfig or its options, not both"


def test_registry_messages():
    class Mine:
        name = "mine"

        def __init__(self, size: int = 1) -> None:
            self.size = size

    registry = {"mine": Mine, "other-one": Mine}
    made = make_estimator(" Mine ", registry, size=3)
    assert isinstance(made, Mine) and made.size == 3
    with pytest.raises(ConfigError) as info:
        make_estimator("snip", registry)
    assert str(info.value) == "unknown estimator 'snip' (known: mine, other-one)"
    with pytest.raises(ConfigError) as info:
        make_estimator("mine", registry, colour="red")
    assert str(info.value).startswith("bad options for estimator 'mine': ")
    assert "unexpected keyword argument 'colour'" in str(info.value)
