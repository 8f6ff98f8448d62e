"""Macro (phase-based) networks of the Genetic-CNN/NSGA-Net space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.base import Network
from rwenas.spaces.macro import MacroGenotype, PhaseGraph, phase_graph


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """A macro node: 3×3 conv → BN → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Phase(nn.Module):
    """One phase (NSGA-Net residual phase): nodes wired by ``graph``; several inputs are
    concatenated then mixed by a 1×1 conv; the output is BN → ReLU of the merged sinks."""

    def __init__(self, graph: PhaseGraph, n_nodes: int, c_in: int, c_out: int,
                 first: bool) -> None:
        super().__init__()
        # Channel change at the phase entrance (3×3 on the image for the first phase).
        self.entry = (nn.Conv2d(c_in, c_out, 3 if first else 1, padding=1 if first else 0,
                                bias=False) if c_in != c_out else nn.Identity())
        self.out_node = n_nodes + 1
        self.order = sorted(graph)  # node ids in topological order, output last
        self.deps = {str(k): list(v) for k, v in graph.items()}
        self.nodes = nn.ModuleDict({str(k): conv_bn_relu(c_out, c_out)
                                    for k in self.order if k != self.out_node})
        self.mixers = nn.ModuleDict({str(k): nn.Conv2d(len(v) * c_out, c_out, 1, bias=False)
                                     for k, v in graph.items() if len(v) > 1})
        self.out = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    def _gather(self, k: str, outputs: dict[int, torch.Tensor]) -> torch.Tensor:
        srcs = self.deps[k]
        if len(srcs) == 1:
            return outputs[srcs[0]]
        return self.mixers[k](torch.cat([outputs[s] for s in srcs], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {0: self.entry(x)}
        for node in self.order:
            k = str(node)
            h = self._gather(k, outputs)
            if node == self.out_node:
                return self.out(h)
            outputs[node] = self.nodes[k](h)
        raise AssertionError("phase graph has no output node")


class MacroNetwork(Network):
    """Active phases separated by 2×2 max-pooling, then global average pooling.

    Removed phases (no connections) vanish together with their pooling, and the remaining
    phases take the first channel widths, as in NSGA-Net.
    """

    def __init__(self, genotype: MacroGenotype, *, channels: Sequence[int] | int = (32, 64, 128),
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.genotype = genotype
        n_phases = len(genotype.phases)
        widths = [channels] * n_phases if isinstance(channels, int) else list(channels)
        if len(widths) != n_phases:
            raise ValueError(f"need {n_phases} channel widths, got {len(widths)}")
        graphs = [g for g in (phase_graph(b, genotype.n_nodes) for b in genotype.phases)
                  if g is not None]
        layers: list[nn.Module] = []
        c_prev = in_channels
        for p, graph in enumerate(graphs):
            if p > 0:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(Phase(graph, genotype.n_nodes, c_prev, widths[p], first=p == 0))
            c_prev = widths[p]
        self.body = nn.Sequential(*layers)
        self.num_features = c_prev
        self.classifier = nn.Linear(c_prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
