"""NAS-Bench-301 variant of the micro space: B=4, 7 ops, distinct inputs, concat all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rwenas.spaces import MICRO_OPS, MicroSpace, NB301Space, get_space
from rwenas.spaces.nb301 import NB301_OPS
from rwenas.spaces.published import published
from tests.spaces.helpers import genome_error as _error

SPACE = NB301Space()

# DARTS (V2) written as an nb301 genome: it lies in this space.
DARTS_GENOME = (3, 0, 3, 1, 3, 0, 3, 1, 3, 1, 2, 0, 2, 0, 5, 2,
                0, 0, 0, 1, 2, 2, 0, 1, 0, 0, 2, 2, 2, 2, 0, 1)


def _duplicated_blocks(g) -> list[int]:
    return [pos for pos in range(0, len(g), 4) if g[pos + 1] == g[pos + 3]]


def test_shape_of_the_space():
    assert SPACE.name == "nb301" and SPACE.n_blocks == 4 and SPACE.n_var == 32
    assert SPACE.ops == NB301_OPS == MICRO_OPS[:7]
    assert "sep_conv_7x7" not in SPACE.ops and "conv_7x1_1x7" not in SPACE.ops
    assert SPACE.upper.tolist() == [6, 1, 6, 1, 6, 2, 6, 2, 6, 3, 6, 3, 6, 4, 6, 4] * 2
    assert isinstance(get_space("nb301"), NB301Space)


@pytest.mark.parametrize("seed", range(100))
def test_sample_is_always_valid(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    assert len(g) == 32 and all(type(v) is int for v in g)
    assert not _duplicated_blocks(g)
    assert SPACE.validate(g) == g
    assert (np.array(g) <= SPACE.upper).all() and (np.array(g) >= 0).all()


def test_sample_is_seeded_and_uses_every_input():
    assert SPACE.sample(np.random.default_rng(3)) == SPACE.sample(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    samples = np.array([SPACE.sample(rng) for _ in range(300)])
    for pos in range(32):
        assert set(samples[:, pos]) == set(range(SPACE.upper[pos] + 1))


def test_validate_rejects_duplicated_inputs():
    g = list(DARTS_GENOME)
    g[7] = g[5]  # normal block 1: both inputs node 0
    assert _error(SPACE.validate, g) == (
        "nb301 genome: normal block 1 uses input 0 twice (NAS-Bench-301 needs two distinct "
        "inputs; see NB301Space.fix)"
    )
    g = list(DARTS_GENOME)
    g[29], g[31] = 2, 2  # reduce block 3
    assert "reduce block 3 uses input 2 twice" in _error(SPACE.validate, g)
    # the plain micro rules still apply first
    g = list(DARTS_GENOME)
    g[0] = 7  # sep_conv_7x7 is not an nb301 op
    assert "outside its range [0, 6]" in _error(SPACE.validate, g)
    assert "must have 32 integers" in _error(SPACE.validate, DARTS_GENOME[:-1])


def test_decode_concatenates_all_four_nodes():
    rng = np.random.default_rng(1)
    for _ in range(50):
        gt = SPACE.decode(SPACE.sample(rng))
        assert gt.normal_concat == (2, 3, 4, 5) and gt.reduce_concat == (2, 3, 4, 5)
        assert len(gt.normal) == len(gt.reduce) == 8


def test_darts_is_in_the_space():
    darts = published("micro", "DARTS")
    assert SPACE.encode(darts) == DARTS_GENOME
    assert SPACE.decode(DARTS_GENOME) == darts
    back = SPACE.genotype_from_json(json.loads(json.dumps(SPACE.genotype_to_json(darts))))
    assert back == darts


def test_encode_rejects_what_the_space_cannot_express():
    # loose-end concat (micro style) differs from "all four nodes"
    micro_gt = MicroSpace(n_blocks=4).decode(DARTS_GENOME)
    assert micro_gt.normal_concat == (3, 4, 5)
    assert "differs" in _error(SPACE.encode, micro_gt)
    nasnet = published("micro", "NASNet")
    assert "has 5 blocks; this space has 4" in _error(SPACE.encode, nasnet)


# -- fix -------------------------------------------------------------------------------------------
def _random_micro_genome(rng) -> tuple[int, ...]:
    """A B=4 micro genome over the nb301 ops, usually with duplicated inputs."""
    return MicroSpace(n_blocks=4, ops=NB301_OPS).sample(rng)


def test_fix_leaves_valid_genomes_unchanged():
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = SPACE.sample(rng)
        assert SPACE.fix(g, np.random.default_rng(123)) == g


@pytest.mark.parametrize("seed", range(40))
def test_fix_repairs_duplicates(seed):
    rng = np.random.default_rng(seed)
    g = _random_micro_genome(rng)
    fixed = SPACE.fix(g, np.random.default_rng(seed))
    assert SPACE.validate(fixed) == fixed
    assert fixed == SPACE.fix(list(g), np.random.default_rng(seed))  # deterministic per seed
    for pos in range(0, 32, 4):
        block = (pos % 16) // 4
        assert fixed[pos] == g[pos] and fixed[pos + 2] == g[pos + 2]  # ops kept
        assert fixed[pos + 1] == g[pos + 1]  # first input kept
        if g[pos + 1] != g[pos + 3]:
            assert fixed[pos + 3] == g[pos + 3]  # valid blocks untouched
        else:
            assert fixed[pos + 3] != g[pos + 1] and 0 <= fixed[pos + 3] <= block + 1


def test_fix_of_block_zero_has_one_choice():
    g = list(DARTS_GENOME)
    g[1], g[3] = 1, 1
    for seed in range(10):
        assert SPACE.fix(g, np.random.default_rng(seed))[3] == 0


def test_fix_uses_its_random_generator():
    g = list(DARTS_GENOME)
    g[13], g[15] = 3, 3  # normal block 3 may use 0, 1, 2, 4 instead
    picks = {SPACE.fix(g, np.random.default_rng(s))[15] for s in range(60)}
    assert picks == {0, 1, 2, 4}


def test_fix_still_rejects_out_of_range_genomes():
    g = list(DARTS_GENOME)
    g[0] = 9
    assert "outside its range" in _error(SPACE.fix, g, np.random.default_rng(0))
    assert "must have 32" in _error(SPACE.fix, [0] * 40, np.random.default_rng(0))


def test_keys_of_nb301_genomes():
    key = SPACE.key(DARTS_GENOME)
    assert key.startswith("nb301:N[")
    swapped = list(DARTS_GENOME)
    swapped[0:4] = DARTS_GENOME[2:4] + DARTS_GENOME[0:2]
    assert SPACE.key(swapped) == key
    rng = np.random.default_rng(77)
    genomes = {SPACE.sample(rng) for _ in range(200)}
    assert len({SPACE.key(g) for g in genomes}) == len(genomes)
