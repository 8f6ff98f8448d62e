"""Parameters and multiply-adds, against hand-computed values and published figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rwenas.complexity import Complexity, complexity, count_madds, count_params
from rwenas.models import create_network
from rwenas.spaces import MacroSpace, MicroSpace
from rwenas.spaces.published import MACRO_ARCHS, MICRO_ARCHS, published

HAND_GENOME = (3, 0, 4, 1, 2, 2, 0, 0, 1, 1, 5, 2, 8, 3, 7, 0, 6, 5, 2, 1) + (0, 0, 1, 1) * 5


# -- tiny modules ----------------------------------------------------------------------------------
def test_conv_madds_hand_computed():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    assert count_madds(model, (1, 4, 4)) == 2 * 9 * 16  # 288
    assert count_params(model) == 18


def test_strided_and_depthwise_conv_madds():
    strided = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)  # 8x8 -> 4x4
    assert count_madds(strided, (3, 8, 8)) == 4 * 3 * 9 * 16
    depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    assert count_madds(depthwise, (4, 8, 8)) == 4 * 9 * 64
    assert count_params(depthwise) == 36


def test_linear_madds_hand_computed():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    assert count_madds(model, (1, 4, 4)) == 48
    assert count_params(model) == 16 * 3 + 3


def test_pooling_norm_and_activations_are_free():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2))
    assert count_madds(model, (2, 8, 8)) == 0
    assert count_madds(nn.Sequential(nn.ReLU()), (1, 2, 2)) == 0  # no parameters at all


def test_count_madds_restores_the_mode():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    model.train()
    count_madds(model, (1, 2, 2))
    assert model.training
    model.eval()
    count_madds(model, (1, 2, 2))
    assert not model.training
    # BN running statistics are untouched (the pass runs in eval mode)
    assert torch.equal(model[1].running_mean, torch.zeros(1))


def test_complexity_is_in_millions():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    cx = complexity(model, (1, 4, 4))
    assert isinstance(cx, Complexity)
    assert cx.params_m == pytest.approx(18e-6) and cx.madds_m == pytest.approx(288e-6)


# -- networks by hand ------------------------------------------------------------------------------
def test_macro_network_hand_computed():
    # one phase of two nodes, 1 -> 2; C=4 on a 1x6x6 image; the unpadded 3x3 entry conv
    # (as in NSGA-Net) leaves 4x4 = 16 positions:
    #   entry conv 1->4 3x3: 36 params, 4*9*16 = 576 MAdds
    #   two nodes conv 4->4 3x3 + BN: 2*(144 + 8) params, 2 * 16*9*16 = 4608 MAdds
    #   output BN: 8 params; classifier 4->10: 50 params, 40 MAdds
    space = MacroSpace(n_phases=1, n_nodes=2)
    net = create_network(space, (1, 0), channels=(4,), in_channels=1)
    assert count_params(net) == 36 + 304 + 8 + 50
    assert count_madds(net, (1, 6, 6)) == 576 + 4608 + 40
    # the padded variant keeps 4x4 on a 4x4 image: the same counts
    padded = create_network(space, (1, 0), channels=(4,), in_channels=1, pad_first=True)
    assert count_madds(padded, (1, 4, 4)) == 576 + 4608 + 40
    # the residual bit merges input and node 2 at the output: a 1x1 conv 8->4 (32 params,
    # 32*16 = 512 MAdds)
    res = create_network(space, (1, 1), channels=(4,), in_channels=1)
    assert count_params(res) == 398 + 32
    assert count_madds(res, (1, 6, 6)) == 5224 + 512
    # without a channel change there is no entry conv (and no shrinking)
    same = create_network(space, (1, 0), channels=4, in_channels=4)
    assert count_params(same) == 398 - 36
    assert count_madds(same, (4, 4, 4)) == 5224 - 576


def test_dense_macro_network_hand_computed():
    # the same phase with the dense decoder, growth rate 2 (bottleneck 4*2 = 8); 1x6x6 image,
    # 16 positions after the unpadded entry conv:
    #   entry conv 1->4 3x3: 36 params, 576 MAdds
    #   node 1 (reads the 4-channel input): BN(4) 8, 1x1 4->8 32 (512 MAdds), BN(8) 16,
    #     3x3 8->2 144 (2304 MAdds): 200 params, 2816 MAdds
    #   node 2 (reads node 1's 2 channels): BN(2) 4, 1x1 2->8 16 (256), BN(8) 16, 3x3 8->2
    #     144 (2304): 180 params, 2560 MAdds
    #   output 1x1 2->4 8 params (128 MAdds) + BN 8; classifier 50 params, 40 MAdds
    space = MacroSpace(n_phases=1, n_nodes=2)
    net = create_network(space, (1, 0), channels=(4,), in_channels=1, decoder="dense", growth=2)
    assert count_params(net) == 36 + 200 + 180 + 16 + 50
    assert count_madds(net, (1, 6, 6)) == 576 + 2816 + 2560 + 128 + 40
    # residual bit: the output mixes input (4) and node 2 (2): 1x1 6->4, 24 params, 384 MAdds
    res = create_network(space, (1, 1), channels=(4,), in_channels=1, decoder="dense", growth=2)
    assert count_params(res) == 482 - 8 + 24
    assert count_madds(res, (1, 6, 6)) == 6120 - 128 + 384


def test_nsganet_macro_matches_nsganet_counts():
    """NSGA-Net's macro genome: the search network (residual decoder, 32/64/128 channels)
    has NSGA-Net's 162.93 M convolution multiply-adds (its own counter adds 1.09 M of BN,
    ReLU and pooling: 164.02 M); the trained network (dense decoder, 128 channels) is within
    2 % of the paper's 3.37 M params / 1290 M MAdds (NSGA-Net's 3.37 M includes two 1x1
    convolutions, 32,768 params, that it builds but never runs)."""
    space = MacroSpace()
    search = complexity(create_network(space, MACRO_ARCHS["NSGANet"]), (3, 32, 32))
    assert search.madds_m == pytest.approx(162.928 + 0.00128, abs=1e-6)
    assert search.params_m == pytest.approx(1.342634, abs=1e-6)
    padded = complexity(create_network(space, MACRO_ARCHS["NSGANet"], pad_first=True), (3, 32, 32))
    assert padded.madds_m == pytest.approx(193.8, abs=0.05)
    dense = complexity(create_network(space, MACRO_ARCHS["NSGANet"], channels=128, decoder="dense"),
                       (3, 32, 32))
    assert dense.params_m == pytest.approx(3.37025 - 0.032768, abs=1e-6)
    assert dense.params_m == pytest.approx(3.37, rel=0.02)
    assert dense.madds_m == pytest.approx(1290, rel=0.02)
    assert dense.madds_m == pytest.approx(1290.40128 + 0.00128, abs=1e-5)


def test_micro_network_hand_computed():
    # B=1 cells of skip(0) + skip(1); one layer (a reduction cell), C=2 -> cell width 4;
    # 1x4x4 image:
    #   stem conv 1->6 3x3 + BN: 54 + 12 params, 6*9*16 = 864 MAdds
    #   two preprocess 1x1 convs 6->4 + BN: 2*(24 + 8) params, 2 * 4*6*16 = 768 MAdds
    #   two factorized reduces 4->4 (two 1x1 stride-2 convs 4->2 + BN):
    #     2*(8 + 8 + 8) params, 2 * 2 * (2*4*4) = 128 MAdds
    #   classifier 4->10: 50 params, 40 MAdds
    space = MicroSpace(n_blocks=1)
    net = create_network(space, (2, 0, 2, 1, 2, 0, 2, 1), channels=2, layers=1, in_channels=1)
    assert net.cells[0].reduction and net.num_features == 4
    assert count_params(net) == 66 + 64 + 48 + 50
    assert count_madds(net, (1, 4, 4)) == 864 + 768 + 128 + 40


# -- auxiliary head excluded -----------------------------------------------------------------------
def test_auxiliary_head_is_excluded():
    space = MicroSpace()
    plain = create_network(space, HAND_GENOME, channels=4, layers=3)
    aux = create_network(space, HAND_GENOME, channels=4, layers=3, auxiliary=True)
    head = sum(p.numel() for p in aux.auxiliary_head.parameters())
    assert head > 0
    assert sum(p.numel() for p in aux.parameters()) == count_params(plain) + head
    assert count_params(aux) == count_params(plain)
    assert count_madds(aux, (3, 32, 32)) == count_madds(plain, (3, 32, 32))


def test_nested_auxiliary_head_is_excluded():
    space = MicroSpace()
    wrapper = nn.Module()
    wrapper.net = create_network(space, HAND_GENOME, channels=4, layers=3, auxiliary=True)
    plain = create_network(space, HAND_GENOME, channels=4, layers=3)
    assert count_params(wrapper) == count_params(plain)


# -- published figures -----------------------------------------------------------------------------
def test_darts_at_the_cifar_setting_matches_the_paper():
    net = create_network(MicroSpace(), published("micro", "DARTS"), channels=36, layers=20,
                             auxiliary=True)
    cx = complexity(net, (3, 32, 32))
    assert cx.params_m == pytest.approx(3.3, abs=0.1)  # DARTS paper: 3.3M
    assert 450 < cx.madds_m < 600  # SPEC §8: 547M as reported


def test_published_architectures_have_sane_complexity():
    space = MicroSpace()
    for name, gt in MICRO_ARCHS.items():
        cx = complexity(create_network(space, gt, channels=8, layers=5), (3, 32, 32))
        assert 0 < cx.params_m < 1 and 0 < cx.madds_m < 100, name
    cx = complexity(create_network(MacroSpace(), MACRO_ARCHS["NSGANet"]), (3, 32, 32))
    assert 0.5 < cx.params_m < 5 and 50 < cx.madds_m < 2000
