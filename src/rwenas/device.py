"""Where tensors run: the device ``auto`` resolves to, and whether it computes bfloat16
natively. A leaf that the estimators, the training loop and the evaluation share."""

from __future__ import annotations

import torch

__all__ = ["bf16_is_native", "device_label", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_label(device: str | torch.device = "auto") -> str:
    """Where work on ``device`` runs, as a record says it: ``cpu``, or ``cuda`` with the GPU's
    name (``cuda:NVIDIA H200``)."""
    dev = resolve_device(device)
    if dev.type != "cuda":
        return dev.type
    return f"cuda:{torch.cuda.get_device_name(dev)}"


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (AVX512-BF16/AMX, or a GPU
    of compute capability 8.0 or newer).

    Not ``torch.cuda.is_bf16_supported()``: by default that also answers yes for older GPUs
    (a 2080 Ti, say), which only emulate bfloat16, slowly; those train under float16 instead.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:
            return True
        return torch.cuda.get_device_capability(device)[0] >= 8
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
