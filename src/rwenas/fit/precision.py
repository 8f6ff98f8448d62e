"""Numeric precision and memory layout of a training run.

Training runs channels-last (NHWC) end to end: on the CPU, oneDNN's convolutions are 1.5–2×
faster in that layout than in NCHW for the small channel counts of search-scale networks.

Mixed precision (``autocast``) is used where the device computes bfloat16 natively: CUDA
(bfloat16, or float16 with a gradient scaler on GPUs without bfloat16), and CPUs with
AVX512-BF16/AMX. On the CPU one exception is made: depthwise and other grouped convolutions
stay in float32, because oneDNN's bfloat16 kernels for them are *slower* than float32 here
(a 5×5 depthwise convolution's backward pass measured 3× slower in bfloat16 on this
machine's cores, while 1×1 convolutions gain 1.5–2×). Losses are always computed in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from rwenas.errors import ConfigError

__all__ = ["PRECISIONS", "autocast_dtype", "grouped_convs_in_fp32", "to_channels_last"]

#: accepted ``precision`` values: ``auto`` = mixed precision where the device has native
#: bfloat16 (or CUDA float16), ``fp32`` = never, ``bf16`` = always (fails where unsupported).
PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The ``autocast`` dtype of a run on ``device``, or ``None`` for plain float32."""
    from rwenas.device import bf16_is_native

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    native = bf16_is_native(device)
    if precision == "bf16" and not native:
        raise ConfigError(f"precision bf16 needs native bfloat16 support, which {device} lacks; "
                          "use --precision fp32 or auto")
    if device.type == "cuda":
        return torch.bfloat16 if native else torch.float16
    return torch.bfloat16 if native else None


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last layout when it is a 4-D image batch (else unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _fp32_conv_forward(conv: nn.Conv2d):
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return conv._conv_forward(x.float(), conv.weight, conv.bias)

    return forward


@contextmanager
def grouped_convs_in_fp32(network: nn.Module, device: torch.device,
                          dtype: torch.dtype | None) -> Iterator[nn.Module]:
    """Within the block, grouped convolutions of ``network`` run in float32 under a CPU
    bfloat16 autocast (see the module docstring); elsewhere a no-op. The modules are restored
    on exit, so an exported or checkpointed network is the plain one."""
    patched: list[nn.Conv2d] = []
    if device.type == "cpu" and dtype == torch.bfloat16:
        for m in network.modules():
            if isinstance(m, nn.Conv2d) and m.groups > 1 and "forward" not in m.__dict__:
                m.forward = _fp32_conv_forward(m)  # instance attribute shadows the method
                patched.append(m)
    try:
        yield network
    finally:
        for m in patched:
            del m.forward
