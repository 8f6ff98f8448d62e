"""MobileNetV2-style networks of inverted-residual (MBConv) blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.base import Network
from rwenas.spaces.mobilenet import STAGES, MobileGenotype


def _round(channels: float, divisor: int = 8) -> int:
    return max(divisor, int(channels + divisor / 2) // divisor * divisor)


class MBConv(nn.Module):
    """1×1 expansion → k×k depthwise → 1×1 projection, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden,
                             bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetwork(Network):
    """Stem conv → MBConv1 (16 ch) → 5 searched stages → 1×1 head conv → pooling."""

    def __init__(self, genotype: MobileGenotype, *, num_classes: int = 10, in_channels: int = 3,
                 width: float = 1.0, head: int = 1280, stem_stride: int = 1) -> None:
        super().__init__()
        self.genotype = genotype
        c = _round(32 * width)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, c, 3, stem_stride, 1, bias=False),
                          nn.BatchNorm2d(c), nn.ReLU6(inplace=True)),
            MBConv(c, _round(16 * width), 3, 1, 1),
        ]
        c = _round(16 * width)
        for (c_stage, stride), blocks in zip(STAGES, genotype.stages, strict=True):
            c_out = _round(c_stage * width)
            for i, (kernel, expansion) in enumerate(blocks):
                layers.append(MBConv(c, c_out, kernel, stride if i == 0 else 1, expansion))
                c = c_out
        layers.append(nn.Sequential(nn.Conv2d(c, head, 1, bias=False), nn.BatchNorm2d(head),
                                    nn.ReLU6(inplace=True)))
        self.body = nn.Sequential(*layers)
        self.num_features = head
        self.classifier = nn.Linear(head, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
