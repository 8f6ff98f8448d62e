"""Networks built from genomes: every sampled genome runs; micro options; operations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rwenas.build import PRESETS, build_network, preset
from rwenas.errors import ConfigError
from rwenas.models import MacroNetwork, MicroNetwork, Network, create_network
from rwenas.models.micro import AuxiliaryHead, Cell
from rwenas.models.ops import OPS, FactorizedReduce, SqueezeExcite, drop_path
from rwenas.spaces import MacroSpace, MicroSpace, NB301Space, get_space
from rwenas.spaces.published import MACRO_ARCHS, MICRO_ARCHS

MICRO = MicroSpace()
# normal cell: loose ends 4 and 6 (multiplier 2); reduction cell: 5 loose ends (multiplier 5)
HAND_GENOME = (3, 0, 4, 1, 2, 2, 0, 0, 1, 1, 5, 2, 8, 3, 7, 0, 6, 5, 2, 1) + (0, 0, 1, 1) * 5
# every operation a separable 3x3 conv, so drop path has something to drop
ALL_SEP = (3, 0, 3, 1) * 10

INPUTS = {"rgb32": (3, 32, 32), "grey28": (1, 28, 28)}


def _check_network(net: Network, shape: tuple[int, int, int], num_classes: int,
                   batch: int = 2) -> None:
    x = torch.randn(batch, *shape)
    net.eval()
    with torch.no_grad():
        out = net(x)
        feats = net.features(x)
        again = net.classifier(feats)
    assert out.shape == (batch, num_classes)
    assert feats.shape == (batch, net.num_features)
    assert torch.isfinite(out).all() and torch.isfinite(feats).all()
    assert torch.allclose(out, again, atol=1e-6)
    assert isinstance(net.classifier, nn.Linear)
    assert net.classifier.in_features == net.num_features


def _micro_options(seed: int) -> dict:
    return {"channels": (4, 5, 6, 8)[seed % 4], "layers": 2 + (seed // 4) % 4,
            "auxiliary": seed % 2 == 1, "se": seed % 5 == 0,
            "drop_path": 0.2 if seed % 3 == 0 else 0.0}


# -- every sampled genome builds and runs ----------------------------------------------------------
@pytest.mark.parametrize("seed", range(50))
@pytest.mark.parametrize("space_name", ["micro", "nb301"])
def test_sampled_micro_genomes_build_and_run(space_name, seed):
    space = get_space(space_name)
    genome = space.sample(np.random.default_rng(seed))
    options = _micro_options(seed)
    for name, shape in INPUTS.items():
        num_classes = 10 if name == "rgb32" else 7
        net = create_network(space, genome, in_channels=shape[0], num_classes=num_classes,
                             **options)
        assert isinstance(net, MicroNetwork)
        _check_network(net, shape, num_classes)
    # train mode (batch statistics, drop path, auxiliary head) on the last network
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, *shape))
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
    if options["auxiliary"]:
        assert aux is not None and aux.shape == (2, num_classes)
        assert torch.isfinite(aux).all()
    else:
        assert aux is None


@pytest.mark.parametrize("seed", range(50))
def test_sampled_macro_genomes_build_and_run(seed):
    genome = MacroSpace().sample(np.random.default_rng(seed))
    channels = (4, 6, 8) if seed % 2 else 5
    decoder = {"decoder": "dense", "growth": 3} if seed % 3 == 0 else {}
    for name, shape in INPUTS.items():
        num_classes = 10 if name == "rgb32" else 3
        net = create_network(MacroSpace(), genome, channels=channels, in_channels=shape[0],
                                 num_classes=num_classes, **decoder)
        assert isinstance(net, MacroNetwork)
        _check_network(net, shape, num_classes)
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, *shape))
    assert logits.shape == (2, num_classes) and aux is None


def test_published_architectures_build_and_run():
    for name, gt in MICRO_ARCHS.items():
        net = create_network(MICRO, gt, channels=4, layers=3)
        assert [c.multiplier for c in net.cells] == [
            len(gt.normal_concat), len(gt.reduce_concat), len(gt.reduce_concat)], name
        _check_network(net, (3, 32, 32), 10)
    net = create_network(MacroSpace(), MACRO_ARCHS["NSGANet"], channels=(4, 6, 8))
    _check_network(net, (3, 32, 32), 10)


# -- micro network structure -----------------------------------------------------------------------
def _cell_output_shapes(net: MicroNetwork, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for c in net.cells]
    net.eval()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize(("layers", "reductions"), [
    (1, [0]), (2, [0, 1]), (3, [1, 2]), (5, [1, 3]), (6, [2, 4]), (8, [2, 5]),
])
def test_reduction_cells_at_a_third_and_two_thirds(layers, reductions):
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=layers)
    assert net.reduction_layers == reductions
    assert [i for i, c in enumerate(net.cells) if c.reduction] == reductions
    assert net.aux_layer == 2 * layers // 3
    sizes = [s[-1] for s in _cell_output_shapes(net, torch.randn(2, 3, 32, 32))]
    expected, size = [], 32
    for i in range(layers):
        if i in reductions:
            size //= 2
        expected.append(size)
    assert sizes == expected


def test_channels_double_at_reductions_hand_computed():
    # layers 4, C 4: reductions at 1 and 2; cell widths 4, 8, 16, 16;
    # outputs 2*4, 5*8, 5*16, 2*16 -> num_features 32
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=4)
    assert net.stem0[0].out_channels == 12  # stem multiplier 3
    assert [c.preprocess1[1].out_channels for c in net.cells] == [4, 8, 16, 16]
    assert [c.multiplier for c in net.cells] == [2, 5, 5, 2]
    assert net.num_features == 32
    shapes = _cell_output_shapes(net, torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 8, 32, 32), (2, 40, 16, 16), (2, 80, 8, 8), (2, 32, 8, 8)]
    # a cell after a reduction reads its first input through a factorized reduce
    assert isinstance(net.cells[2].preprocess0, FactorizedReduce)
    assert isinstance(net.cells[3].preprocess0, FactorizedReduce)
    assert not isinstance(net.cells[1].preprocess0, FactorizedReduce)


def test_pyramid_increment_hand_computed():
    # increment 2: widths grow after every cell and do not double: 4, 6, 8, 10;
    # outputs 2*4, 5*6, 5*8, 2*10 -> num_features 20
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=4, increment=2)
    assert [c.preprocess1[1].out_channels for c in net.cells] == [4, 6, 8, 10]
    assert net.num_features == 20
    shapes = _cell_output_shapes(net, torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 8, 32, 32), (2, 30, 16, 16), (2, 40, 8, 8), (2, 20, 8, 8)]
    _check_network(net, (3, 32, 32), 10)


def test_odd_pyramid_width_is_a_clean_error():
    with pytest.raises(ValueError, match="even number"):
        create_network(MICRO, ALL_SEP, channels=5, layers=4, increment=1)
    with pytest.raises(ConfigError, match="even number"):
        build_network(MICRO, ALL_SEP, in_channels=3, num_classes=10, channels=5, layers=4,
                      increment=1)


def test_imagenet_stem_downsamples_eight_times():
    net = create_network(MICRO, HAND_GENOME, channels=8, layers=3, stem="imagenet", num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    s0, s1 = net._stem(x)
    assert s0.shape == (2, 8, 16, 16) and s1.shape == (2, 8, 8, 8)
    assert isinstance(net.cells[0].preprocess0, FactorizedReduce)
    assert [s[-1] for s in _cell_output_shapes(net, x)] == [8, 4, 2]
    _check_network(net, (3, 64, 64), 5)


def test_imagenet_stem_at_224_with_auxiliary_head():
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=3, stem="imagenet", auxiliary=True,
                      num_classes=6)
    assert net.auxiliary_head.stride == 2
    x = torch.randn(2, 3, 224, 224)
    assert [s[-1] for s in _cell_output_shapes(net, x)] == [28, 14, 7]
    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (2, 6) and aux.shape == (2, 6)


def test_unknown_stem_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown stem"):
        create_network(MICRO, HAND_GENOME, stem="mobile")
    with pytest.raises(ValueError, match="positive"):
        create_network(MICRO, HAND_GENOME, layers=0)
    with pytest.raises(ConfigError, match="cannot build a micro network"):
        build_network(MICRO, HAND_GENOME, in_channels=3, num_classes=10, stem="mobile")


def test_single_channel_input():
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=3, in_channels=1)
    assert net.stem0[0].in_channels == 1
    _check_network(net, (1, 28, 28), 10)
    assert [s[-1] for s in _cell_output_shapes(net, torch.randn(2, 1, 28, 28))] == [28, 14, 7]


# -- auxiliary head --------------------------------------------------------------------------------
def test_auxiliary_head_only_in_training():
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=3, auxiliary=True, num_classes=4)
    assert isinstance(net.auxiliary_head, AuxiliaryHead)
    x = torch.randn(3, 3, 32, 32)
    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (3, 4) and aux.shape == (3, 4)
    net.eval()
    with torch.no_grad():
        logits, aux = net.forward_with_aux(x)
        assert aux is None
        assert torch.allclose(logits, net(x), atol=1e-6)


def test_no_auxiliary_head_by_default():
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=3)
    assert net.auxiliary_head is None
    net.train()
    assert net.forward_with_aux(torch.randn(2, 3, 32, 32))[1] is None


def test_auxiliary_head_reads_the_cell_at_two_thirds():
    # layers 5: aux after cell 3 (a reduction cell: 8x8, 5 * 4C channels = 80)
    net = create_network(MICRO, HAND_GENOME, channels=4, layers=5, auxiliary=True)
    assert net.aux_layer == 3
    assert net.auxiliary_head.body[0].in_channels == 80
    seen = []
    net.auxiliary_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    net.train()
    net.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert seen == [(2, 80, 8, 8)]


def test_auxiliary_head_on_small_feature_maps():
    head = AuxiliaryHead(6, 3)
    head.eval()
    for size in (7, 4, 2, 8, 9):
        with torch.no_grad():
            assert head(torch.randn(2, 6, size, size)).shape == (2, 3)


# -- drop path and squeeze-excitation --------------------------------------------------------------
def test_drop_path_is_stochastic_in_training_only():
    net = create_network(MICRO, ALL_SEP, channels=4, layers=3, drop_path=0.5)
    assert net.drop_path_prob == 0.5
    x = torch.randn(4, 3, 16, 16)
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    b = net(x)
    assert not torch.allclose(a, b)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_without_drop_path_training_is_deterministic():
    net = create_network(MICRO, ALL_SEP, channels=4, layers=3, drop_path=0.0)
    x = torch.randn(4, 3, 16, 16)
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert torch.allclose(a, net(x))


def test_drop_path_function():
    x = torch.randn(200, 3, 2, 2)
    assert drop_path(x, 0.0) is x
    torch.manual_seed(0)
    y = drop_path(x, 0.25)
    kept = [bool((y[i] != 0).any()) for i in range(200)]
    for i in range(200):
        expected = x[i] / 0.75 if kept[i] else torch.zeros_like(x[i])
        assert torch.allclose(y[i], expected)
    assert 0.6 < sum(kept) / 200 < 0.9


def test_identity_edges_are_never_dropped():
    # only skip connections: in a normal cell they are identities, so nothing is dropped
    cell = Cell([("skip_connect", 0), ("skip_connect", 1)], [2], 4, 4, 4, False, False)
    cell.train()
    s0, s1 = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    assert all(cell.identity)
    assert torch.allclose(cell(s0, s1, 0.9), cell(s0, s1, 0.0))


def test_squeeze_excitation_modules():
    plain = create_network(MICRO, HAND_GENOME, channels=4, layers=4)
    se = create_network(MICRO, HAND_GENOME, channels=4, layers=4, se=True)
    assert sum(isinstance(m, SqueezeExcite) for m in plain.modules()) == 0
    assert sum(isinstance(m, SqueezeExcite) for m in se.modules()) == 4
    # SE on 8, 40, 80, 32 channels: hidden max(1, c // 16) = 1, 2, 5, 2; 2·c·hidden weights
    extra = sum(p.numel() for p in se.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (8 * 1 + 40 * 2 + 80 * 5 + 32 * 2)
    _check_network(se, (3, 32, 32), 10)


def test_squeeze_excite_gates_channels():
    module = SqueezeExcite(32)
    x = torch.rand(2, 32, 5, 5)
    with torch.no_grad():
        y = module(x)
        w = module.fc(x.mean(dim=(2, 3)))
    assert y.shape == x.shape
    assert ((w > 0) & (w < 1)).all()
    assert torch.allclose(y, x * w[:, :, None, None])


# -- operations ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("size", [8, 7])
def test_operations_keep_channels_and_halve_with_stride_two(name, size):
    for stride in (1, 2):
        op = OPS[name](6, stride)
        op.eval()
        with torch.no_grad():
            y = op(torch.randn(2, 6, size, size))
        out = math.ceil(size / stride)
        assert y.shape == (2, 6, out, out), (name, stride)


def test_skip_connect_is_identity_or_factorized_reduce():
    assert isinstance(OPS["skip_connect"](4, 1), nn.Identity)
    assert isinstance(OPS["skip_connect"](4, 2), FactorizedReduce)
    with pytest.raises(ValueError, match="even"):
        FactorizedReduce(4, 5)


def test_factorized_reduce_matches_darts_on_even_sizes():
    fr = FactorizedReduce(3, 4)
    fr.eval()
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        ours = fr(x)
        r = torch.relu(x)
        # DARTS: two 1×1 convs of stride 2, the second on the grid offset by one pixel
        darts = fr.bn(torch.cat([F.conv2d(r, fr.conv_1.weight, stride=2),
                                 F.conv2d(r[:, :, 1:, 1:], fr.conv_2.weight, stride=2)], dim=1))
    assert torch.allclose(ours, darts, atol=1e-6)


# -- presets ---------------------------------------------------------------------------------------
def test_presets_and_build_network():
    assert preset(MICRO, "validation") == {"channels": 34, "layers": 20, "increment": 4,
                                           "auxiliary": True, "drop_path": 0.2}
    assert preset(NB301Space(), "search") == PRESETS["micro"]["search"]
    with pytest.raises(ConfigError, match="no setting 'huge'"):
        preset(MICRO, "huge")
    net = build_network(MICRO, HAND_GENOME, in_channels=1, num_classes=3, channels=4, layers=3,
                        auxiliary=None)
    assert net.layers == 3 and net.auxiliary_head is None
    _check_network(net, (1, 28, 28), 3)


def test_networks_of_spaces_are_resolved_on_the_models_side():
    """Built-in spaces have no build method (they are torch-free); a subclass without one gets
    the built-in network; a space's own build wins; any other space without one is refused."""
    from rwenas.models import builtin_network
    from rwenas.spaces import get_space
    from rwenas.spaces.micro import MicroSpace

    assert not hasattr(MicroSpace, "build") and not hasattr(MacroSpace, "build")

    class Derived(MicroSpace):
        name = "derived"

    net = create_network(Derived(), HAND_GENOME, channels=4, layers=3)
    assert type(net).__name__ == "MicroNetwork"

    class Wrapping(MicroSpace):
        def build(self, genome, **setting):
            net = builtin_network(self, genome, **setting)
            net.wrapped = True
            return net

    assert create_network(Wrapping(), HAND_GENOME, channels=4, layers=3).wrapped is True

    class Foreign:
        name = "foreign"

        def decode(self, genome):
            return genome

    with pytest.raises(ConfigError, match="not derived from a built-in space"):
        create_network(Foreign(), (1, 2))
    nb301 = get_space("nb301")  # a subclass of the micro space
    assert type(create_network(nb301, nb301.sample(np.random.default_rng(0)),
                               channels=4, layers=3)).__name__ == "MicroNetwork"
