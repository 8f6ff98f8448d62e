"""Operations of the micro space: inference-only rewrites give the same values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.ops import SeparableMaxPool3x3, separable_max_pools


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(28, 28), (7, 7), (9, 6), (2, 3), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_separable_max_pool_equals_max_pool2d_bit_for_bit(dtype, stride, size, channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, *size, generator=g).to(dtype)
    x[0, 0] = -x[0, 0].abs() - 1  # all negative: a zero padding would win at the borders
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = F.max_pool2d(x, 3, stride, 1)
    got = SeparableMaxPool3x3(stride)(x)
    assert got.shape == want.shape and got.dtype == dtype
    assert torch.equal(got, want)


def test_only_3x3_padded_max_pools_are_replaced():
    net = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                        nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU()),
                        nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 1, 1, dilation=2),
                        nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(3, 1, 1))
    separable_max_pools(net)
    kinds = [type(m).__name__ for m in (net[0], net[1][0], net[2], net[3], net[4], net[5])]
    assert kinds == ["SeparableMaxPool3x3", "SeparableMaxPool3x3", "MaxPool2d", "MaxPool2d",
                     "MaxPool2d", "AvgPool2d"]
    assert (net[0].stride, net[1][0].stride) == (1, 2)
