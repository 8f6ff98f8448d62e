"""NAS-Bench-301 adapter: genotype conversion, the fix operation, the optional package."""

from __future__ import annotations

import builtins
import importlib
import sys
import types

import numpy as np
import pytest

from rwenas.errors import ConfigError, GenomeError
from rwenas.spaces import get_space
from rwenas.study import nb301

DARTS_OPS = {"max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5"}


def test_round_trip_of_sampled_genomes():
    space = get_space("nb301")
    rng = np.random.default_rng(0)
    for _ in range(20):
        genome = space.sample(rng)
        gt = nb301.to_nb301_genotype(genome)
        assert type(gt).__name__ == "Genotype"
        assert gt.normal_concat == [2, 3, 4, 5] and gt.reduce_concat == [2, 3, 4, 5]
        assert len(gt.normal) == 8 and len(gt.reduce) == 8
        for cell in (gt.normal, gt.reduce):
            assert {op for op, _ in cell} <= DARTS_OPS
            for b in range(4):
                (_, a), (_, c) = cell[2 * b], cell[2 * b + 1]
                assert a != c and 0 <= a <= b + 1 and 0 <= c <= b + 1
        assert nb301.from_nb301_genotype(gt) == tuple(genome)
        assert nb301.from_nb301_genotype(gt._asdict()) == tuple(genome)


def test_hand_case_layout():
    genome = [3, 0, 3, 1, 4, 1, 2, 0, 0, 2, 6, 1, 5, 3, 1, 4] * 2
    gt = nb301.to_nb301_genotype(genome)
    assert gt.normal[:4] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 1),
                             ("skip_connect", 0)]
    assert gt.normal[-2:] == [("dil_conv_3x3", 3), ("avg_pool_3x3", 4)]


def test_fix_through_the_adapter():
    space = get_space("nb301")
    bad = [3, 0, 3, 0, 4, 2, 2, 2, 0, 1, 6, 1, 5, 3, 1, 4] * 2
    with pytest.raises(GenomeError, match="twice"):
        nb301.to_nb301_genotype(bad)
    gt = nb301.to_nb301_genotype(bad, fix=True, rng=np.random.default_rng(1))
    fixed = nb301.from_nb301_genotype(gt)
    assert space.validate(fixed) == fixed
    for pos in range(0, 32, 4):  # only the second input of a duplicated block changes
        assert fixed[pos:pos + 3] == tuple(bad[pos:pos + 3])
        if bad[pos + 1] != bad[pos + 3]:
            assert fixed[pos + 3] == bad[pos + 3]
    good = space.sample(np.random.default_rng(5))
    assert nb301.to_nb301_genotype(good, fix=True) == nb301.to_nb301_genotype(good)
    with pytest.raises(ConfigError, match="nb301 space only"):
        nb301.to_nb301_genotype(good, space=get_space("micro"))


def test_missing_package_gives_the_clear_error(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "nasbench301" or name.startswith("nasbench301."):
            raise ImportError("No module named 'nasbench301'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "nasbench301", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    real_module = importlib.import_module

    def failing_module(name, *args, **kwargs):
        if name == "nasbench301":
            raise ImportError("No module named 'nasbench301'")
        return real_module(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", failing_module)
    with pytest.raises(ConfigError, match="NAS-Bench-301 is optional: pip install nasbench301"):
        nb301.load_surrogate(tmp_path)
    with pytest.raises(ConfigError, match="--nb301-models DIR"):
        nb301.load_surrogate(None)


def test_query_through_a_fake_package(monkeypatch, tmp_path):
    seen = {}

    class Model:
        def predict(self, config, representation, with_noise):
            seen.update(config=config, representation=representation, with_noise=with_noise)
            return 93.5

    fake = types.ModuleType("nasbench301")
    fake.load_ensemble = lambda path: seen.setdefault("path", path) and Model()
    monkeypatch.setitem(sys.modules, "nasbench301", fake)
    surrogate = nb301.load_surrogate(tmp_path)
    genome = get_space("nb301").sample(np.random.default_rng(2))
    assert surrogate.accuracy(genome) == pytest.approx(0.935)
    assert seen["path"] == str(tmp_path)
    assert seen["representation"] == "genotype" and seen["with_noise"] is False
    assert seen["config"] == nb301.to_nb301_genotype(genome)
    with pytest.raises(ConfigError, match="does not exist"):
        nb301.load_surrogate(tmp_path / "missing")
