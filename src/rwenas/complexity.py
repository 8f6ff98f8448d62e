"""Model complexity: parameters and multiply-adds, in millions.

Multiply-adds come from PyTorch's own FLOP counter (``torch.utils.flop_counter``), which counts
2 FLOPs per multiply-accumulate of convolutions and matrix products; MAdds = FLOPs / 2. Like
the NAS literature, pooling, BatchNorm and additions are not counted, and the auxiliary head
is excluded (it only runs in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    params_m: float
    madds_m: float


def count_params(model: nn.Module) -> int:
    """Parameters of the model, excluding any ``auxiliary_head`` submodule."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith("auxiliary_head.") and ".auxiliary_head." not in name)


@torch.no_grad()
def count_madds(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of a single ``C×H×W`` image, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, *input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)


def complexity(model: nn.Module, input_shape: tuple[int, int, int]) -> Complexity:
    """Parameters (M) and multiply-adds (M) of ``model`` at ``input_shape`` (C, H, W)."""
    return Complexity(count_params(model) / 1e6, count_madds(model, input_shape) / 1e6)
