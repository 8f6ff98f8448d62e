"""Micro (cell-based) networks: CIFAR-style and ImageNet-style stacks of searched cells."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.base import Network
from rwenas.models.ops import (
    OPS,
    FactorizedReduce,
    ReLUConvBN,
    SqueezeExcite,
    cat_channels,
    drop_path,
)
from rwenas.spaces.micro import Edge, Genotype


class Cell(nn.Module):
    """One normal or reduction cell: two preprocessed inputs, blocks, concat of ``concat``.

    ``share_relu`` (default on) is a speed optimisation: operations that begin with ReLU read
    ``relu(state)``, computed once per state, instead of each applying its own ReLU. The
    function is the same; the number of ReLU applications is not, so ReLU counters switch
    it off with :func:`rwenas.models.ops.unshared_relus`."""

    share_relu = True

    def __init__(self, edges: Sequence[Edge], concat: Sequence[int], c_prev_prev: int,
                 c_prev: int, c: int, reduction: bool, reduction_prev: bool,
                 se: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.indices = [i for _, i in edges]
        self.concat = list(concat)
        self.ops = nn.ModuleList(
            OPS[name](c, 2 if reduction and idx < 2 else 1) for name, idx in edges
        )
        self.identity = [isinstance(op, nn.Identity) for op in self.ops]
        # Operations that begin with ReLU read relu(state), computed once per state.
        self.pre_activated = [hasattr(op, "forward_activated") for op in self.ops]
        self.multiplier = len(self.concat)
        self.se = SqueezeExcite(self.multiplier * c) if se else None

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0,
                r0: torch.Tensor | None = None, r1: torch.Tensor | None = None) -> torch.Tensor:
        """``r0``/``r1``: ``relu(s0)``/``relu(s1)`` if the caller already has them (only used
        while ``share_relu``)."""
        if not self.share_relu:
            r0 = r1 = None
        states = [
            self.preprocess0(s0) if r0 is None else self.preprocess0.forward_activated(r0),
            self.preprocess1(s1) if r1 is None else self.preprocess1.forward_activated(r1),
        ]
        rectified: dict[int, torch.Tensor] = {}
        for b in range(len(self.ops) // 2):
            total = None
            for j in (2 * b, 2 * b + 1):
                src = self.indices[j]
                if self.pre_activated[j] and self.share_relu:
                    if src not in rectified:
                        rectified[src] = torch.relu(states[src])
                    h = self.ops[j].forward_activated(rectified[src])
                else:
                    h = self.ops[j](states[src])
                if self.training and drop_prob > 0.0 and not self.identity[j]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        out = cat_channels([states[i] for i in self.concat])
        return out if self.se is None else self.se(out)


class AuxiliaryHead(nn.Module):
    """DARTS auxiliary classifier on the output of cell ``2L//3`` (8×8 on CIFAR)."""

    def __init__(self, c: int, num_classes: int, stride: int = 3) -> None:
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if min(x.shape[-2:]) >= 5 + self.stride:
            x = F.avg_pool2d(x, 5, stride=self.stride, count_include_pad=False)
        else:  # small inputs (e.g. 7×7 on Fashion-MNIST): pool to the 2×2 the head expects
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.body(x).flatten(1))


class MicroNetwork(Network):
    """A stack of ``layers`` cells with reductions at ``layers//3`` and ``2·layers//3``.

    ``stem="cifar"``: one 3×3 conv to ``stem_multiplier·C`` channels. ``stem="imagenet"``:
    three stride-2 3×3 convs (8× down-sampling), as in the mobile ImageNet setting.
    ``increment > 0`` gives the pyramid variant: channels grow by ``increment`` after every
    cell instead of doubling at reductions. ``share_relu``: see :class:`Cell` (each cell
    output is rectified once for the two cells reading it).
    """

    share_relu = True

    def __init__(self, genotype: Genotype, *, channels: int = 10, layers: int = 5,
                 num_classes: int = 10, in_channels: int = 3, auxiliary: bool = False,
                 drop_path: float = 0.0, se: bool = False, increment: int = 0,
                 stem: str = "cifar", stem_multiplier: int = 3) -> None:
        super().__init__()
        if layers < 1 or channels < 1:
            raise ValueError("layers and channels must be positive")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem {stem!r} (cifar or imagenet)")
        self.genotype = genotype
        self.layers = layers
        self.drop_path_prob = drop_path
        c = channels
        if stem == "cifar":
            c_stem = stem_multiplier * c
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )
            self.stem1 = None
            c_pp, c_p, reduction_prev = c_stem, c_stem, False
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
            )
            c_pp, c_p, reduction_prev = c, c, True
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        self.aux_layer = 2 * layers // 3
        self.cells = nn.ModuleList()
        c_aux = c_p
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction and increment == 0:
                c *= 2
            edges, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                             else (genotype.normal, genotype.normal_concat))
            cell = Cell(edges, concat, c_pp, c_p, c, reduction, reduction_prev, se)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if i == self.aux_layer:
                c_aux = c_p
            c += increment
        self.auxiliary_head = (AuxiliaryHead(c_aux, num_classes, 3 if stem == "cifar" else 2)
                               if auxiliary else None)
        self.num_features = c_p
        self.classifier = nn.Linear(c_p, num_classes)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return (s0, s0) if self.stem1 is None else (s0, self.stem1(s0))

    def _backbone(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor,
                                                                   torch.Tensor | None]:
        aux = None
        s0, s1 = self._stem(x)
        if not self.share_relu:  # each cell's preprocessing applies its own ReLU
            for i, cell in enumerate(self.cells):
                s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
                if with_aux and i == self.aux_layer and self.auxiliary_head is not None:
                    aux = self.auxiliary_head(s1)
            return F.adaptive_avg_pool2d(s1, 1).flatten(1), aux
        # Every cell input is read through ReLU by two cells: rectify each state once.
        r1 = torch.relu(s1)
        r0 = r1 if s0 is s1 else torch.relu(s0)
        for i, cell in enumerate(self.cells):
            out = cell(s0, s1, self.drop_path_prob, r0, r1)
            s0, r0, s1, r1 = s1, r1, out, torch.relu(out)
            if with_aux and i == self.aux_layer and self.auxiliary_head is not None:
                aux = self.auxiliary_head(s1)
        return F.adaptive_avg_pool2d(s1, 1).flatten(1), aux

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._backbone(x, with_aux=False)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, aux = self._backbone(x, with_aux=self.training)
        return self.classifier(feats), aux
