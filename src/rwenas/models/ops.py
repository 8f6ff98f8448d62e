"""Candidate operations of the micro space (DARTS/NSGA-Net conventions) and cell helpers.

Every operation maps ``C`` channels to ``C`` channels; ``stride`` 2 halves the resolution
(rounding up, so odd sizes such as 7×7 work too).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class _GradInInputLayout(torch.autograd.Function):
    """Identity whose backward hands on the gradient in the input's channels-last layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if ctx.channels_last:
            return grad.contiguous(memory_format=torch.channels_last)
        return grad


def grad_in_input_layout(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient returned in channels-last layout when ``x`` is channels-last.

    The backward passes of a channel slice (``torch.cat``) and of a spatial slice hand on
    gradients that are strided views or NCHW zeros, and oneDNN's BatchNorm and ReLU backward
    passes then take a generic path up to 10× slower than on channels-last tensors (measured
    on a C=8, 5-cell network's training step). Values are unchanged; outside autograd (and in
    ``torch.jit.trace`` under ``no_grad``) this is ``x`` itself."""
    if x.dim() != 4 or not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _GradInInputLayout.apply(x)


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)`` whose backward gives each input a gradient in its own
    (channels-last) layout; see :func:`grad_in_input_layout`."""
    return torch.cat([grad_in_input_layout(t) for t in tensors], dim=1)


class PreActivated(nn.Sequential):
    """A sequence that starts with ReLU. ``forward_activated`` takes an already rectified
    input, so a cell computes ``relu(state)`` once for all the operations reading ``state``."""

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        modules = iter(self._modules.values())
        next(modules)  # the leading ReLU
        for m in modules:
            x = m(x)
        return x


@contextmanager
def unshared_relus(net: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every operation of ``net`` applies its own leading ReLU.

    The shared ReLU is a speed optimisation: a micro cell computes ``relu(state)`` once for
    all the operations that read ``state`` (and a network rectifies each cell output once for
    the two cells that read it), which computes the same function with fewer passes, but
    applies fewer ReLUs than the network as written — one per operation reading a state,
    each operation starting with its own ``nn.ReLU``, as in DARTS. Anything that counts ReLU
    applications (NASWOT) runs the network inside this block. Modules with a ``share_relu``
    attribute (micro cells and networks) are switched, and restored afterwards."""
    switched = [m for m in net.modules() if getattr(m, "share_relu", None) is True]
    for m in switched:
        m.share_relu = False
    try:
        yield net
    finally:
        for m in switched:
            m.share_relu = True


class ReLUConvBN(PreActivated):
    """ReLU → conv → BN (cell input preprocessing)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _SameDepthwise(torch.autograd.Function):
    """Stride-1 depthwise convolution with 'same' padding whose input gradient is computed
    as the forward convolution of the output gradient with the flipped kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],  # type: ignore[override]
                dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        if x.is_contiguous(memory_format=torch.channels_last):
            grad = grad.contiguous(memory_format=torch.channels_last)
        groups = weight.shape[0]
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = F.conv2d(grad, weight.flip(2, 3), None, 1, ctx.padding, ctx.dilation, groups)
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], list(ctx.padding), list(ctx.dilation), False,
                [0, 0], groups, [False, True, False])[1]
        return gx, gw, None, None


class DepthwiseConv(nn.Conv2d):
    """A depthwise k×k convolution (odd ``kernel``, no bias) whose training passes avoid
    oneDNN's slow depthwise backward kernels on the CPU, computing the same function:

    * stride 1 with 'same' padding: the input gradient is the forward convolution of the
      output gradient with the flipped kernel (exact at stride 1), 5–8× faster than oneDNN's
      backward-data pass at 28×28 (4.0 vs 0.75 ms for C=8, 5×5, batch 128);
    * stride 2 with dilation 2 (padding ``kernel - 1``): it reads only the even pixels,
      ``out[i] = sum_k w[k] x[2i + 2k - p] = sum_k w[k] x_even[i + k - p/2]``, so it runs as
      the undilated stride-1 convolution of ``x[::2, ::2]`` (its backward pass 8–10× faster:
      46 vs 5.5 ms for C=16 at 28×28, 5×5).

    Inference (no gradients recorded, as in RWE and exported models), other devices than the
    CPU (whose kernels were not measured to need it) and an active CPU autocast (rwenas's
    training loop runs grouped convolutions with it disabled) run the plain convolution, bit
    for bit; parameters and their names are those of ``nn.Conv2d``."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        if kernel % 2 == 0:
            raise ValueError("DepthwiseConv needs an odd kernel")
        super().__init__(channels, channels, kernel, stride=stride, padding=padding,
                         dilation=dilation, groups=channels, bias=False)
        same = padding == dilation * (kernel - 1) // 2
        self._mode = ("same" if stride == 1 and same else
                      "even" if stride == dilation == 2 and padding == kernel - 1 else "plain")

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if (self._mode == "plain" or not torch.is_grad_enabled() or input.device.type != "cpu"
                or torch.is_autocast_enabled("cpu")):  # autocast would cast inside forward only
            return super()._conv_forward(input, weight, bias)
        if self._mode == "even":
            # the slice's backward writes NCHW zeros; hand them on channels-last
            input = grad_in_input_layout(input)[:, :, ::2, ::2]
            pad = (self.kernel_size[0] - 1) // 2
            return _SameDepthwise.apply(input, weight, (pad, pad), (1, 1))
        return _SameDepthwise.apply(input, weight, self.padding, self.dilation)


class DilConv(PreActivated):
    """ReLU → depthwise k×k (dilated) → pointwise 1×1 → BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv(c_in, kernel, stride, padding, dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(PreActivated):
    """Two stacked (ReLU → depthwise k×k → pointwise 1×1 → BN); only the first is strided."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv(c_in, kernel, stride, padding),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),  # its input is a fresh tensor with no other reader
            DepthwiseConv(c_in, kernel, 1, padding),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Conv7x1x1x7(PreActivated):
    """ReLU → 1×7 conv → 7×1 conv → BN (the factorised 7×7 of NASNet)."""

    def __init__(self, c: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(c),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1×1 stride-2 convs on pixel grids offset by one."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError("FactorizedReduce needs an even number of output channels")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self.relu(x))

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        # A 1×1 conv of stride 2 only reads every other pixel, so sub-sample first (4× less
        # work). The offset grid starts at pixel (1, 1); for odd sizes it is one short and is
        # zero-padded at the far edge, so both halves have ceil(H/2) × ceil(W/2) pixels (for
        # even sizes this is exactly DARTS's FactorizedReduce).
        x = grad_in_input_layout(x)  # the slices' backward writes NCHW zeros
        even = x[:, :, ::2, ::2]
        odd = x[:, :, 1::2, 1::2]
        if odd.shape[-2:] != even.shape[-2:]:
            odd = F.pad(odd, (0, even.shape[-1] - odd.shape[-1], 0,
                              even.shape[-2] - odd.shape[-2]))
        return self.bn(cat_channels([self.conv_1(even), self.conv_2(odd)]))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a conv into that conv, in place.

    Only for inference with frozen statistics (RWE's eval and calibrated modes): the folded
    network computes the same function with one pass less over every activation.
    """
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            for a, b in itertools.pairwise(names):
                conv, bn = m._modules[a], m._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    _fold_into(conv, bn, slice(None))
                    m._modules[b] = nn.Identity()
        elif isinstance(m, FactorizedReduce) and isinstance(m.bn, nn.BatchNorm2d):
            half = m.conv_1.out_channels
            _fold_into(m.conv_1, m.bn, slice(0, half))
            _fold_into(m.conv_2, m.bn, slice(half, None))
            m.bn = nn.Identity()
    return module


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice) -> None:
    scale = (bn.weight[channels] if bn.affine else 1.0) / torch.sqrt(
        bn.running_var[channels] + bn.eps)
    shift = bn.bias[channels] if bn.affine else 0.0
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean[channels])
    fmt = (torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last)
           and not conv.weight.is_contiguous() else torch.contiguous_format)
    conv.weight = nn.Parameter((conv.weight * scale.reshape(-1, 1, 1, 1)).contiguous(
        memory_format=fmt), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean[channels]) * scale + shift,
                             requires_grad=False)


def _three_taps(x: torch.Tensor, dim: int, stride: int) -> list[torch.Tensor]:
    """The three shifted, strided views of a 3-wide window along ``dim`` of a padded tensor."""
    n = (x.shape[dim] - 3) // stride + 1
    span = (n - 1) * stride + 1
    index: list[slice] = [slice(None)] * x.dim()
    views = []
    for k in range(3):
        index[dim] = slice(k, k + span, stride)
        views.append(x[tuple(index)])
    return views


class SeparableMaxPool3x3(nn.Module):
    """``nn.MaxPool2d(3, stride, padding=1)`` as a row maximum then a column maximum of
    shifted views: the same values bit for bit (a maximum does not round), computed by
    element-wise kernels. For inference on CPUs, where PyTorch's pooling kernel is slow on
    channels-last tensors: 3–7× faster on the micro cells' 28×28 and 14×14 maps in bfloat16
    (measured on AVX-512 cores); its gradient would split ties, so training keeps
    ``nn.MaxPool2d``."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
        a, b, c = _three_taps(x, 3, self.stride)
        x = torch.maximum(torch.maximum(a, b), c)
        a, b, c = _three_taps(x, 2, self.stride)
        return torch.maximum(torch.maximum(a, b), c)


class ConvAvgPool3x3(nn.Module):
    """``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)`` as a depthwise
    convolution with all-one weights — each window's sum, in float32 — divided by the number
    of the window's positions inside the input, then cast back to the input's dtype. For
    CPUs, where PyTorch's average pooling kernel is slow on channels-last tensors: 3–6×
    faster on the micro cells' 28×28 and 14×14 maps (measured on AVX-512 cores); RWE swaps
    it in (:func:`inference_pools`), training runs it inside :func:`conv_avg_pools`.
    PyTorch's kernel also divides a float32 sum by that count, so the outputs are the same
    wherever the two float32 sums are (always for bfloat16 inputs of similar magnitude, whose
    sums of nine are exact; else to float32 rounding)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        # (channels, height, width, device, dtype) -> (all-one weights, window counts);
        # plain attributes, not buffers: they are not part of the network's state.
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _weights_and_counts(self, x: torch.Tensor, dtype: torch.dtype
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.shape[1], x.shape[2], x.shape[3], x.device, dtype)
        if key not in self._constants:
            c, h, w = key[:3]
            ones = torch.ones(c, 1, 3, 3, device=x.device, dtype=dtype)
            counts = F.conv2d(torch.ones(1, 1, h, w, device=x.device, dtype=dtype), ones[:1],
                              None, self.stride, 1)
            # channels-last and expanded over channels: dividing by a (1, 1, H, W) map
            # broadcasts over a channels-last tensor 10x slower than this
            counts = counts.expand(1, c, -1, -1).contiguous(memory_format=torch.channels_last)
            self._constants[key] = (ones, counts)
        return self._constants[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():  # an exporter maps the plain pool to its own kernel
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        # sums in float32 for half-precision inputs, as PyTorch's pooling kernels do (and not
        # in an autocast's bfloat16, which would round them before the division)
        acc = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
        ones, counts = self._weights_and_counts(x, acc)
        fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
               and not x.is_contiguous() else torch.contiguous_format)
        with torch.autocast(x.device.type, enabled=False):
            sums = F.conv2d(x.to(acc), ones, None, self.stride, 1, 1, x.shape[1])
            return sums.div_(counts).to(x.dtype).contiguous(memory_format=fmt)


def _padded_3x3(pool: nn.Module) -> bool:
    """A 3×3 pool with padding 1, stride 1 or 2 and floor mode: the shape both rewrites take."""
    return (pool.kernel_size in (3, (3, 3)) and pool.padding in (1, (1, 1))
            and not pool.ceil_mode and pool.stride in (1, 2, (1, 1), (2, 2)))


def _stride(pool: nn.Module) -> int:
    return pool.stride if isinstance(pool.stride, int) else pool.stride[0]


def _separable_max_pool_fits(pool: nn.Module) -> bool:
    """Whether ``pool`` is an ``nn.MaxPool2d`` that :class:`SeparableMaxPool3x3` computes."""
    return (isinstance(pool, nn.MaxPool2d) and _padded_3x3(pool)
            and pool.dilation in (1, (1, 1)) and not pool.return_indices)


def _conv_avg_pool_fits(pool: nn.Module) -> bool:
    """Whether ``pool`` is an ``nn.AvgPool2d`` that :class:`ConvAvgPool3x3` computes."""
    return (isinstance(pool, nn.AvgPool2d) and _padded_3x3(pool)
            and not pool.count_include_pad and pool.divisor_override is None)


@contextmanager
def conv_avg_pools(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every ``nn.AvgPool2d`` of ``module`` that :class:`ConvAvgPool3x3`
    computes runs as one, forward and backward (its gradient is the same sum, so the same to
    rounding); the modules are restored on exit, so a checkpointed or exported network is the
    plain one. For training on CPUs, where PyTorch's channels-last average pooling and its
    gradient are slow: 4.6–5.8× faster per pool (forward + backward, bfloat16 autocast,
    batch 128, 8–34 channels)."""
    patched: list[nn.Module] = []
    for m in module.modules():
        if _conv_avg_pool_fits(m) and "forward" not in m.__dict__:
            # a plain instance attribute (a bound method, not a module) shadows the class's
            m.forward = ConvAvgPool3x3(_stride(m)).forward
            patched.append(m)
    try:
        yield module
    finally:
        for m in patched:
            del m.forward


def inference_pools(module: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.MaxPool2d(3, stride, padding=1)`` (no dilation, floor
    mode) in ``module`` by :class:`SeparableMaxPool3x3` and every ``nn.AvgPool2d(3, stride,
    padding=1, count_include_pad=False)`` (floor mode, no divisor override) by
    :class:`ConvAvgPool3x3`: an inference-only speed-up with the same outputs."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if _separable_max_pool_fits(child):
                setattr(parent, name, SeparableMaxPool3x3(_stride(child)))
            elif _conv_avg_pool_fits(child):
                setattr(parent, name, ConvAvgPool3x3(_stride(child)))
    return module


OpFactory = Callable[[int, int], nn.Module]

#: name → factory(C, stride); the table every micro cell is compiled from.
OPS: dict[str, OpFactory] = {
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, stride=s, padding=1),
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "skip_connect": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": lambda c, s: SepConv(c, c, 3, s, 1),
    "sep_conv_5x5": lambda c, s: SepConv(c, c, 5, s, 2),
    "sep_conv_7x7": lambda c, s: SepConv(c, c, 7, s, 3),
    "dil_conv_3x3": lambda c, s: DilConv(c, c, 3, s, 2, 2),
    "dil_conv_5x5": lambda c, s: DilConv(c, c, 5, s, 4, 2),
    "conv_7x1_1x7": lambda c, s: Conv7x1x1x7(c, s),
}


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel gating (Hu et al.), reduction 16."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples of a path with probability ``drop_prob``, rescaling the rest."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask
