"""RWE options for the estimator study: features of every cell, several random backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rwenas.data import load_dataset, search_split
from rwenas.errors import ConfigError
from rwenas.estimators.rwe import (
    AllCellFeatures,
    RWEConfig,
    extract_features,
    init_seed,
    rwe,
    rwe_probabilities,
)
from rwenas.models import create_network
from rwenas.spaces import get_space

FAST = {"epochs": 3, "folds": 2, "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def split():
    return search_split(load_dataset("synthetic", synthetic_size=(200, 50)), train_size=120,
                        val_size=40)


def micro_factory(seed: int = 0):
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(seed))
    return lambda: create_network(space, genome, channels=4, layers=3, in_channels=1,
                                  num_classes=10)


def test_all_cell_features_are_every_cell_pooled_in_order(split):
    torch.manual_seed(0)
    net = micro_factory()().eval()
    x = split.train_x[:5]
    # by hand: run the stem and the cells, pool each cell's output
    with torch.no_grad():
        s0 = s1 = net.stem0(x)
        pooled = []
        for cell in net.cells:
            s0, s1 = s1, cell(s0, s1)
            pooled.append(F.adaptive_avg_pool2d(s1, 1).flatten(1))
        expected = torch.cat(pooled, 1)
        hooks = AllCellFeatures(net)
        got = extract_features(net, x, 2, torch.contiguous_format, features=hooks)
        hooks.close()
        assert got.shape == (5, sum(p.shape[1] for p in pooled))
        assert torch.allclose(got, expected, atol=1e-6)
        # the last cell's block is the network's own features; the hooks are gone after close
        assert torch.allclose(got[:, -net.num_features:], net.features(x), atol=1e-6)
        assert not any(c._forward_hooks for c in net.cells)


def test_rwe_with_all_cell_features(split):
    factory = micro_factory(1)
    last = rwe(factory, split, RWEConfig(**FAST), seed=3)
    every = rwe(factory, split, RWEConfig(features="all_cells", **FAST), seed=3)
    assert every.num_features > last.num_features
    assert every.error == rwe(factory, split, RWEConfig(features="all_cells", **FAST),
                              seed=3).error
    with pytest.raises(ConfigError, match="features"):
        RWEConfig(features="middle")


def test_inits_average_the_softmax_of_seeded_backbones(split):
    factory = micro_factory(2)
    one = RWEConfig(**FAST)
    assert rwe(factory, split, RWEConfig(inits=1, **FAST), seed=5).error == \
        rwe(factory, split, one, seed=5).error  # inits=1 is plain RWE
    p0 = rwe_probabilities(factory, split, one, seed=5, index=0).probs
    p1 = rwe_probabilities(factory, split, one, seed=5, index=1).probs
    p2 = rwe_probabilities(factory, split, one, seed=5, index=2).probs
    assert not torch.allclose(p0, p1)  # another backbone
    for n, probs in ((2, p0 + p1), (3, p0 + p1 + p2)):
        expected = float((probs.argmax(1) != split.val_y).float().mean())
        result = rwe(factory, split, RWEConfig(inits=n, **FAST), seed=5)
        assert result.error == pytest.approx(expected)
    # backbone 0 is the one plain RWE uses; the others are seeded apart from it
    assert init_seed(5, 0) == 5 and len({init_seed(5, i) for i in range(4)}) == 4
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="inits"):
            RWEConfig(inits=bad)


def test_inits_on_a_module_redraws_its_parameters(split):
    torch.manual_seed(0)
    net = micro_factory(3)()
    cfg = RWEConfig(**FAST)
    a = rwe_probabilities(net, split, cfg, seed=1, index=1).probs
    b = rwe_probabilities(net, split, cfg, seed=1, index=1).probs
    assert torch.equal(a, b)  # seeded
    assert not torch.allclose(a, rwe_probabilities(net, split, cfg, seed=1, index=0).probs)
    assert 0.0 <= rwe(net, split, RWEConfig(inits=2, **FAST), seed=1).error <= 1.0
