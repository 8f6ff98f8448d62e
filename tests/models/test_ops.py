"""Operations of the micro space: inference-only rewrites give the same values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rwenas.models.ops import (
    ConvAvgPool3x3,
    SeparableMaxPool3x3,
    conv_avg_pools,
    inference_pools,
)


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(28, 28), (7, 7), (9, 6), (2, 3), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_avg_pool_equals_avg_pool2d_without_padding_counts(dtype, stride, size,
                                                                channels_last):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 5, *size, generator=g) + 4).to(dtype)  # a wrong border count shows
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    pool = ConvAvgPool3x3(stride)
    got = pool(x)
    assert got.shape == want.shape and got.dtype == dtype
    assert got.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(
        memory_format=torch.channels_last)
    if dtype == torch.bfloat16:
        assert torch.equal(got, want)  # both divide an exact float32 sum by the same count
    else:  # float sums in another order: equal to rounding
        torch.testing.assert_close(got, want, rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert torch.equal(pool(x), got)  # second call: cached weights and counts


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace, as export uses
def test_conv_avg_pool_traces_as_the_plain_pool_for_exporters():
    # Traced (ONNX export), the constants cached for the traced shape must not be baked in:
    # the trace is replayed on another shape.
    g = torch.Generator().manual_seed(0)
    traced = torch.jit.trace(ConvAvgPool3x3(2), torch.randn(2, 5, 9, 9, generator=g))
    x = torch.randn(3, 7, 6, 6, generator=g)
    assert torch.equal(traced(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_avg_pools_train_like_avg_pool2d_and_are_restored(autocast, stride):
    """Inside the training loop's block the average pools compute as convolutions, forward
    and backward; the gradient (a sum of grad/count over the windows holding each input)
    equals the pool's to rounding, including at the borders, where counts are 4 or 6."""
    net = nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False),
                        nn.AvgPool2d(3, 1, 1))  # the second counts the padding: left alone
    g = torch.Generator().manual_seed(0)
    x0 = (torch.randn(4, 6, 11, 9, generator=g) + 2).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 6, *net(x0).shape[-2:], generator=g)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        x = x0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = net(x.to(torch.bfloat16) if autocast else x)
        (y.float() * weight).sum().backward()
        return y.float().detach(), x.grad

    want_y, want_grad = run()
    with conv_avg_pools(net):
        assert isinstance(net[0].forward.__self__, ConvAvgPool3x3)
        assert "forward" not in vars(net[1])
        got_y, got_grad = run()
    assert "forward" not in vars(net[0])  # restored: the plain module again
    if autocast:  # bfloat16 values: the same sums and divisions, gradients to bf16 rounding
        assert torch.equal(got_y, want_y)
        # bfloat16 resolution at the gradients' scale (about 1): where the rounding falls
        # differs, PyTorch's kernel rounds its bfloat16 sums, the convolution's are float32
        torch.testing.assert_close(got_grad, want_grad, rtol=2 ** -7, atol=2 ** -8)
    else:
        torch.testing.assert_close(got_y, want_y, rtol=1e-6, atol=0)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    assert got_grad.abs().sum() > 0


def test_only_3x3_padded_pools_are_replaced():
    net = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                        nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU()),
                        nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 1, 1, dilation=2),
                        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                        nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1, ceil_mode=True,
                                                             count_include_pad=False),
                        nn.AvgPool2d(3, 1, 1, count_include_pad=False, divisor_override=4),
                        nn.AvgPool2d(2, 1, 1, count_include_pad=False))
    inference_pools(net)
    kinds = [type(m).__name__ for m in (net[0], net[1][0], *net[2:])]
    assert kinds == ["SeparableMaxPool3x3", "SeparableMaxPool3x3", "MaxPool2d", "MaxPool2d",
                     "MaxPool2d", "ConvAvgPool3x3", "ConvAvgPool3x3", "AvgPool2d", "AvgPool2d",
                     "AvgPool2d", "AvgPool2d"]
    assert (net[0].stride, net[1][0].stride, net[5].stride, net[6].stride) == (1, 2, 1, 2)
    assert not list(net.parameters()) and not list(net.buffers())


# --- gradients in channels-last layout, subsampled dilated convolutions --------------------

def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _grads_of(inputs: list[torch.Tensor], out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, inputs, torch.randn_like(out))


def test_torch_cat_backward_hands_on_strided_grads_which_cat_channels_fixes():
    # The case that makes the helper necessary: plain cat gives channels-last inputs gradients
    # that are strided views (neither layout), which BatchNorm's backward takes slowly.
    from rwenas.models.ops import cat_channels

    torch.manual_seed(0)
    xs = [_cl(torch.randn(2, c, 5, 5)).requires_grad_(True) for c in (3, 4)]
    plain = _grads_of(xs, torch.cat(xs, dim=1) * 2)
    assert not any(g.is_contiguous(memory_format=torch.channels_last) for g in plain)
    out = cat_channels(xs)
    assert torch.equal(out, torch.cat(xs, dim=1))
    torch.manual_seed(1)
    fixed = _grads_of(xs, out * 2)
    torch.manual_seed(1)
    expected = _grads_of(xs, torch.cat(xs, dim=1) * 2)
    for g, e in zip(fixed, expected, strict=True):
        assert g.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(g, e)


def test_grad_in_input_layout_keeps_nchw_grads_and_is_a_no_op_without_autograd():
    from rwenas.models.ops import grad_in_input_layout

    x = torch.randn(2, 3, 4, 4)
    assert grad_in_input_layout(x) is x  # no grad needed
    y = x.clone().requires_grad_(True)
    with torch.no_grad():
        assert grad_in_input_layout(y) is y
    (g,) = _grads_of([y], grad_in_input_layout(y)[:, :, ::2, ::2] * 3)
    assert g.is_contiguous()  # an NCHW input keeps NCHW gradients
    assert torch.equal(g[:, :, 1::2], torch.zeros_like(g[:, :, 1::2]))
    # a channels-last input gets its slice gradient (NCHW zeros in torch) channels-last
    z = _cl(torch.randn(2, 3, 4, 4)).requires_grad_(True)
    (gz,) = _grads_of([z], grad_in_input_layout(z)[:, :, ::2, ::2] * 3)
    assert gz.is_contiguous(memory_format=torch.channels_last)
    (gplain,) = _grads_of([z], z[:, :, ::2, ::2] * 3)
    assert not gplain.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), [
    (3, 1, 1, 1), (5, 1, 2, 1), (3, 1, 2, 2), (5, 1, 4, 2),  # 'same': flipped-kernel grad
    (3, 2, 2, 2), (5, 2, 4, 2),  # the even pixels only
    (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 0, 1),  # plain convolution
])
@pytest.mark.parametrize("size", [28, 7, 5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_conv_equals_nn_conv2d_with_gradients(kernel, stride, padding, dilation, size,
                                                        channels_last):
    from rwenas.models.ops import DepthwiseConv

    torch.manual_seed(kernel * size + stride)
    conv = DepthwiseConv(6, kernel, stride, padding, dilation)
    ref = nn.Conv2d(6, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=6,
                    bias=False)
    ref.load_state_dict(conv.state_dict())  # same parameters, same names
    x = torch.randn(3, 6, size, size)
    if channels_last:
        x = _cl(x)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = conv(xa), ref(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, [xa, conv.weight], g)
    gb = torch.autograd.grad(yb, [xb, ref.weight], g)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    if channels_last:
        assert ga[0].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # inference runs the plain convolution itself, bit for bit
        assert torch.equal(conv(x), ref(x))


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 2, 1), (2, 4, 2)])
def test_depthwise_conv_second_order_gradients_match(stride, padding, dilation):
    # GraSP differentiates through a gradient (create_graph=True)
    from rwenas.models.ops import DepthwiseConv

    torch.manual_seed(3)
    conv = DepthwiseConv(4, 5, stride, padding, dilation)
    ref = nn.Conv2d(4, 4, 5, stride=stride, padding=padding, dilation=dilation, groups=4,
                    bias=False)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    results = []
    for m in (conv, ref):
        (gw,) = torch.autograd.grad((m(x) ** 2).sum(), [m.weight], create_graph=True)
        results.append(torch.autograd.grad((gw ** 2).sum(), [x, m.weight]))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_depthwise_conv_is_used_by_the_separable_and_dilated_ops():
    from rwenas.models.ops import OPS, DepthwiseConv

    for name in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"):
        for stride in (1, 2):
            op = OPS[name](8, stride)
            depthwise = [m for m in op.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
            assert depthwise and all(type(m) is DepthwiseConv for m in depthwise)
            modes = [m._mode for m in depthwise]
            if name.startswith("dil"):  # never oneDNN's slow dilated backward pass
                assert modes == ["same" if stride == 1 else "even"]
            else:  # a strided, undilated first convolution stays plain (fast enough)
                assert modes == ["same" if stride == 1 else "plain", "same"]
    with pytest.raises(ValueError, match="odd kernel"):
        DepthwiseConv(4, 4)


def test_depthwise_conv_takes_its_own_path_only_on_the_cpu_with_gradients():
    from rwenas.models.ops import DepthwiseConv

    conv = DepthwiseConv(4, 3, 1, 1)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    assert type(conv(x).grad_fn).__name__ == "_SameDepthwiseBackward"
    with torch.no_grad():
        assert conv(x).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a user's own mixed-precision loop
        y = conv(x)
    assert type(y.grad_fn).__name__ != "_SameDepthwiseBackward"
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    meta = DepthwiseConv(4, 3, 1, 1).to("meta")  # stands for any other device
    y = meta(torch.empty(2, 4, 9, 9, device="meta", requires_grad=True))
    assert type(y.grad_fn).__name__ == "ConvolutionBackward0"


def test_depthwise_conv_keeps_its_own_path_inside_the_training_loops_fp32_patch():
    from rwenas.fit.precision import grouped_convs_in_fp32
    from rwenas.models.ops import DepthwiseConv

    net = nn.Sequential(DepthwiseConv(4, 3, 1, 1))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with (grouped_convs_in_fp32(net, torch.device("cpu"), torch.bfloat16),
          torch.autocast("cpu", dtype=torch.bfloat16)):
        y = net(x)
    assert y.dtype == torch.float32 and type(y.grad_fn).__name__ == "_SameDepthwiseBackward"
