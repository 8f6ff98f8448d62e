"""Objectives beyond multiply-adds, constraints, and the MobileNetV2-style space."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rwenas.complexity import latency_ms, peak_activation_mb
from rwenas.errors import ConfigError, GenomeError
from rwenas.search.config import resolve_config
from rwenas.search.nsga2 import run_search
from rwenas.search.objectives import constraint_values, measurements
from rwenas.spaces import get_space

TINY = {"dataset": "synthetic", "train_size": 160, "val_size": 80, "pop_size": 6,
        "generations": 3, "seed": 2, "network": {"channels": 4, "layers": 2},
        "rwe": {"epochs": 2}}


def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_peak_activation_memory_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(8, 4, 1, bias=False))
    # input 1x32x32 + conv out 8x32x32 + relu out 8x32x32 are alive together (float32)
    expected = (1 + 8 + 8) * 32 * 32 * 4 / 2**20
    assert peak_activation_mb(net, (1, 32, 32)) == pytest.approx(expected)
    assert peak_activation_mb(net, (1, 32, 32), batch=4) == pytest.approx(4 * expected)


def test_latency_is_positive_and_grows_with_batch():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    one = latency_ms(net, (3, 32, 32), batch=1, repeats=5)
    many = latency_ms(net, (3, 32, 32), batch=64, repeats=5)
    assert 0 < one < many
    assert torch.get_num_threads() >= 1


def test_measurements_and_constraints():
    assert measurements(["rwe", "madds"]) == []
    assert measurements(["rwe", "latency", "memory"]) == ["latency", "memory"]
    assert measurements(["rwe", "madds"], {"max_latency_ms": 5}) == ["latency"]
    cfg = {"max_madds": 10.0, "max_params": None, "max_latency_ms": None}
    assert constraint_values({"madds_m": 12.5}, cfg) == [2.5]
    assert constraint_values({"madds_m": None}, cfg) == [1e12]
    with pytest.raises(ConfigError):
        resolve_config(None, None, {"max_madds": -1})
    with pytest.raises(ConfigError):
        resolve_config(None, None, {"objectives": ["rwe", "speed"]})


def test_three_objective_search_front_is_non_dominated(tmp_path):
    cfg = resolve_config(None, None, {**TINY, "objectives": ["rwe", "madds", "latency"]})
    run_search(cfg, tmp_path / "r3", progress=False)
    front = json.loads((tmp_path / "r3" / "front.json").read_text())
    pts = [[r["objectives"][k] for k in ("rwe", "madds", "latency")] for r in front]
    assert pts and all(not dominates(a, b) for a in pts for b in pts)
    assert all(r["latency_ms"] > 0 for r in front)
    header = (tmp_path / "r3" / "front.csv").read_text().splitlines()[0]
    assert "latency" in header


def test_constrained_search_respects_the_bound(tmp_path):
    bound = 1.0
    cfg = resolve_config(None, None, {**TINY, "max_madds": bound, "pop_size": 8})
    run_search(cfg, tmp_path / "rc", progress=False)
    front = json.loads((tmp_path / "rc" / "front.json").read_text())
    history = (tmp_path / "rc" / "history.csv").read_text().splitlines()
    madds = [float(line.split(",")[5]) for line in history[1:]]
    assert any(m > bound for m in madds), "the bound never bit; lower it"
    assert front and all(r["madds_m"] <= bound for r in front)


def test_mobilenet_space():
    space = get_space("mobilenetv2")
    rng = np.random.default_rng(0)
    for _ in range(10):
        g = space.sample(rng)
        assert space.encode(space.decode(g)) != () and space.key(space.encode(space.decode(g))) \
            == space.key(g)
        net = space.build(g, in_channels=1, num_classes=5, width=0.25, head=32)
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    g = list(space.sample(rng))
    g[0] = 0  # stage 1 depth 2: blocks 3 and 4 unused
    h = g.copy()
    h[5:9] = [(v + 1) % 3 for v in h[5:9]]
    assert space.key(g) == space.key(h)
    h[1] = (h[1] + 1) % 3
    assert space.key(g) != space.key(h)
    net = space.build(g, in_channels=3, num_classes=10, width=0.25, head=32, stem_stride=2)
    assert net.features(torch.randn(1, 3, 224, 224)).shape == (1, 32)
    with pytest.raises(GenomeError):
        space.validate([9] * space.n_var)


def test_mobilenet_search_runs(tmp_path):
    cfg = resolve_config(None, None, {**TINY, "space": "mobilenetv2", "network": {
        "width": 0.25, "head": 32}})
    run_search(cfg, tmp_path / "mb", progress=False)
    assert json.loads((tmp_path / "mb" / "front.json").read_text())
