"""Macro (phase-based) networks of the Genetic-CNN/NSGA-Net space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.base import Network
from rwenas.models.ops import cat_channels
from rwenas.spaces.macro import MacroGenotype, PhaseGraph, phase_graph

#: Phase decoders of NSGA-Net: ``residual`` is used during search, ``dense`` to train the
#: final macro architectures (NSGA-Net's ``validation/train.py``).
DECODERS = ("residual", "dense")
#: NSGA-Net's dense growth rate (its ``DenseNode.t``) and bottleneck multiplier (``k``).
DENSE_GROWTH = 64
DENSE_BOTTLENECK = 4


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """A residual-decoder node: 3×3 conv → BN → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def dense_node(c_in: int, growth: int, bottleneck: int = DENSE_BOTTLENECK) -> nn.Sequential:
    """A dense-decoder node (DenseNet-BC layer): BN-ReLU-1×1 conv to ``bottleneck × growth``,
    then BN-ReLU-3×3 conv to ``growth`` channels."""
    mid = bottleneck * growth
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
                         nn.Conv2d(c_in, mid, 1, bias=False),
                         nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, growth, 3, padding=1, bias=False))


def phase_entry(c_in: int, c_out: int, first: bool, pad_first: bool) -> nn.Module:
    """Channel change at a phase's entrance, only where the width changes: 3×3 on the image
    for the first phase (unpadded as in NSGA-Net, so 32×32 becomes 30×30, unless
    ``pad_first``), 1×1 otherwise."""
    if c_in == c_out:
        return nn.Identity()
    if first:
        return nn.Conv2d(c_in, c_out, 3, padding=1 if pad_first else 0, bias=False)
    return nn.Conv2d(c_in, c_out, 1, bias=False)


class Phase(nn.Module):
    """One phase (NSGA-Net residual phase): nodes wired by ``graph``; several inputs are
    concatenated then mixed by a 1×1 conv; the output is BN → ReLU of the merged sinks."""

    def __init__(self, graph: PhaseGraph, n_nodes: int, c_in: int, c_out: int,
                 first: bool, pad_first: bool = False) -> None:
        super().__init__()
        self.entry = phase_entry(c_in, c_out, first, pad_first)
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
        return self.mixers[k](cat_channels([outputs[s] for s in srcs]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {0: self.entry(x)}
        for node in self.order:
            k = str(node)
            h = self._gather(k, outputs)
            if node == self.out_node:
                return self.out(h)
            outputs[node] = self.nodes[k](h)
        raise AssertionError("phase graph has no output node")


class DensePhase(nn.Module):
    """One phase of NSGA-Net's dense decoder: each node takes the concatenation of its inputs
    (``c_out`` channels from the phase input, ``growth`` from a node) through a DenseNet-BC
    layer; the phase output mixes the concatenated sinks (and the input, with the residual
    bit) back to ``c_out`` channels by 1×1 conv → BN → ReLU."""

    def __init__(self, graph: PhaseGraph, n_nodes: int, c_in: int, c_out: int,
                 first: bool, pad_first: bool = False, growth: int = DENSE_GROWTH) -> None:
        super().__init__()
        self.entry = phase_entry(c_in, c_out, first, pad_first)
        self.out_node = n_nodes + 1
        self.order = sorted(graph)
        self.deps = {str(k): list(v) for k, v in graph.items()}

        def width(srcs: tuple[int, ...]) -> int:
            return sum(c_out if s == 0 else growth for s in srcs)

        self.nodes = nn.ModuleDict({str(k): dense_node(width(graph[k]), growth)
                                    for k in self.order if k != self.out_node})
        self.out = nn.Sequential(nn.Conv2d(width(graph[self.out_node]), c_out, 1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {0: self.entry(x)}
        for node in self.order:
            k = str(node)
            srcs = self.deps[k]
            h = outputs[srcs[0]] if len(srcs) == 1 else cat_channels([outputs[s] for s in srcs])
            if node == self.out_node:
                return self.out(h)
            outputs[node] = self.nodes[k](h)
        raise AssertionError("phase graph has no output node")


class MacroNetwork(Network):
    """Active phases separated by 2×2 max-pooling, then global average pooling.

    Removed phases (no connections) vanish together with their pooling, and the remaining
    phases take the first channel widths, as in NSGA-Net. ``decoder`` is ``residual``
    (NSGA-Net's search networks) or ``dense`` (its trained networks, with ``growth`` rate);
    ``pad_first`` pads the first phase's 3×3 entry convolution, which NSGA-Net does not.
    """

    def __init__(self, genotype: MacroGenotype, *, channels: Sequence[int] | int = (32, 64, 128),
                 num_classes: int = 10, in_channels: int = 3, decoder: str = "residual",
                 pad_first: bool = False, growth: int = DENSE_GROWTH) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown macro decoder {decoder!r} (known: {', '.join(DECODERS)})")
        if isinstance(growth, bool) or not isinstance(growth, int) or growth < 1:
            raise ValueError(f"dense growth rate must be a positive integer, got {growth!r}")
        self.genotype = genotype
        self.decoder = decoder
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
            if decoder == "dense":
                layers.append(DensePhase(graph, genotype.n_nodes, c_prev, widths[p],
                                         first=p == 0, pad_first=pad_first, growth=growth))
            else:
                layers.append(Phase(graph, genotype.n_nodes, c_prev, widths[p], first=p == 0,
                                    pad_first=pad_first))
            c_prev = widths[p]
        self.body = nn.Sequential(*layers)
        self.num_features = c_prev
        self.classifier = nn.Linear(c_prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
