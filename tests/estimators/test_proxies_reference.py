"""fisher and naswot as their reference code computes them, pinned on tiny networks.

Each reference value comes from a small implementation written here the way the reference
code works (and independently of rwenas's): fisher as in SamsungLabs' zero-cost-nas (each
conv/linear output's per-channel score broadcast to every weight of that channel, then all
summed), naswot as in Mellor et al.'s code (a hook on every ReLU module, K += c cᵀ +
(1−c)(1−c)ᵀ, log|det K|) over a DARTS-style forward in which every operation applies its own
ReLU module (ReLU modules only; see the proxies' docstring for the one place rwenas differs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rwenas.estimators.proxies import ReLUCodes, fisher_score, naswot_score
from rwenas.models import create_network
from rwenas.models.ops import unshared_relus
from rwenas.spaces import get_space


def reference_fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Per-weight fisher of every Conv2d/Linear (the per-channel score filled into a tensor
    of the weight's shape), summed over all weights."""
    net.train()
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    outputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in layers}

    def keep(module, inputs, out):
        out.retain_grad()
        outputs[module].append(out)

    handles = [m.register_forward_hook(keep) for m in layers]
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    for h in handles:
        h.remove()
    total = 0.0
    for m in layers:
        channel = torch.zeros(m.weight.shape[0], dtype=torch.float64)
        for a in outputs[m]:
            prod = (a.detach() * a.grad).double()
            per_sample = prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod
            channel += 0.5 * per_sample.pow(2).mean(0)
        per_weight = torch.stack([torch.full(m.weight.shape[1:], float(v),
                                             dtype=torch.float64) for v in channel.abs()])
        total += float(per_weight.sum())
    return total


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),   # depthwise: fan-in 9
        nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def micro_net(seed: int, layers: int = 3) -> nn.Module:
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(seed))
    torch.manual_seed(seed)
    return create_network(space, genome, channels=4, layers=layers, in_channels=1, num_classes=3)


def test_fisher_weights_each_channel_by_its_fan_in():
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    torch.manual_seed(1)
    net = tiny_net()
    expected = reference_fisher(net, x, y)
    assert fisher_score(net, x, y) == pytest.approx(expected, rel=1e-5)
    # by hand for the last layer: its channel scores count in_features = 6 times each
    lin = net[-1]
    with torch.no_grad():
        feats = net[:-1](x)
    z = lin(feats)
    g = torch.autograd.grad(F.cross_entropy(z, y), z)[0]
    assert fisher_score(lin, feats, y) == pytest.approx(
        6 * float((0.5 * (z.detach() * g).pow(2).mean(0)).sum()), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_fisher_on_a_micro_network_matches_the_reference(seed):
    torch.manual_seed(10 + seed)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
    net = micro_net(seed)
    assert fisher_score(net, x, y) == pytest.approx(reference_fisher(net, x, y), rel=1e-4)


def reference_naswot(net: nn.Module, x: torch.Tensor) -> tuple[float, int]:
    """log|det K| over the ReLU modules applied in a DARTS-style forward where every
    operation (and every cell's preprocessing) applies its own ReLU; and how many ReLU
    applications that counted."""
    n = len(x)
    k = torch.zeros(n, n, dtype=torch.float64)
    calls = 0

    def count(module, inputs, out):
        nonlocal k, calls
        c = (out.detach().reshape(n, -1) > 0).double()
        k += c @ c.T + (1 - c) @ (1 - c).T
        calls += 1

    # ReLU modules only: the reference's test ``'ReLU' in str(type(module))`` also catches
    # a module class named ReLUConvBN and counts its input's code a second time (see the
    # proxies' docstring); rwenas counts ReLU applications
    handles = [m.register_forward_hook(count) for m in net.modules()
               if isinstance(m, (nn.ReLU, nn.ReLU6))]
    net.train()
    with torch.no_grad():
        s0 = s1 = net.stem0(x)
        for cell in net.cells:
            states = [cell.preprocess0(s0), cell.preprocess1(s1)]
            for b in range(len(cell.ops) // 2):
                states.append(sum(cell.ops[j](states[cell.indices[j]])
                                  for j in (2 * b, 2 * b + 1)))
            s0, s1 = s1, torch.cat([states[i] for i in cell.concat], dim=1)
    for h in handles:
        h.remove()
    return float(torch.linalg.slogdet(k)[1]), calls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_naswot_counts_one_relu_per_operation_reading_a_state(seed):
    torch.manual_seed(20 + seed)
    x = torch.randn(10, 1, 8, 8)
    net = micro_net(seed)
    expected, calls = reference_naswot(net, x)
    assert naswot_score(net, x) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # the shared-ReLU forward applies fewer ReLUs: the reference counts more
    shared = ReLUCodes(len(x))
    with torch.no_grad(), shared:
        net(x)
    unshared = ReLUCodes(len(x))
    with torch.no_grad(), unshared_relus(net), unshared:
        out = net(x)
    assert len(unshared.codes) == calls > len(shared.codes)
    assert all(getattr(m, "share_relu", True) for m in net.modules())  # restored
    with torch.no_grad():
        assert torch.allclose(out, net(x), atol=1e-5)  # the same function either way


def test_naswot_reference_on_a_hand_made_cell_count():
    # one cell, all operations separable convolutions (two ReLUs each): the reference counts
    # 2 preprocessing ReLUs + 2 per operation (the shared forward rectifies each state once)
    space = get_space("micro")
    sep = space.ops.index("sep_conv_3x3")
    genome = [sep if i % 2 == 0 else 0 for i in range(space.n_var)]
    genome = space.validate(genome)
    torch.manual_seed(0)
    net = create_network(space, genome, channels=4, layers=1, in_channels=1, num_classes=3)
    x = torch.randn(6, 1, 6, 6)
    value, calls = reference_naswot(net, x)
    n_ops = len(net.cells[0].ops)
    assert n_ops == 10 and calls == 2 + 2 * n_ops
    assert naswot_score(net, x) == pytest.approx(value, rel=1e-9)
    assert math.isfinite(value)
