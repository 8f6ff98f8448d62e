"""Macro (phase) search space: bit layout, NSGA-Net decoding rules, round trips, keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rwenas.models import create_network
from rwenas.models.macro import Phase
from rwenas.spaces import MacroGenotype, MacroSpace, format_genome
from rwenas.spaces.macro import canonical_phase, phase_graph
from rwenas.spaces.published import _NSGANET_MACRO, MACRO_ARCHS, published
from tests.spaces.helpers import genome_error as _error
from tests.spaces.helpers import relabellings_keeping_the_key

SPACE = MacroSpace()
SMALL = MacroSpace(n_phases=3, n_nodes=4)  # 7 bits per phase: b12 | b13 b23 | b14 b24 b34 | res

# Hand-made phases of 4 nodes (bit order above).
CHAIN_12 = (1, 0, 0, 0, 0, 0, 0)        # 1 -> 2; nodes 3 and 4 isolated
CHAIN_12_RES = (1, 0, 0, 0, 0, 0, 1)    # the same with the residual bit
CHAIN_13 = (0, 1, 0, 0, 0, 0, 0)        # 1 -> 3; nodes 2 and 4 isolated
CHAIN_34 = (0, 0, 0, 0, 0, 1, 0)        # 3 -> 4; nodes 1 and 2 isolated
CHAIN_123 = (1, 0, 1, 0, 0, 0, 0)       # 1 -> 2 -> 3
CHAIN_234 = (0, 0, 1, 0, 0, 1, 0)       # 2 -> 3 -> 4
FAN_OUT = (1, 1, 0, 0, 0, 0, 0)         # 1 -> 2, 1 -> 3
FAN_IN = (0, 1, 1, 0, 0, 0, 0)          # 1 -> 3, 2 -> 3
FAN_IN_24 = (0, 0, 0, 1, 0, 1, 0)       # 1 -> 4, 3 -> 4
DIAMOND = (1, 1, 0, 0, 1, 1, 0)         # 1 -> 2, 1 -> 3, 2 -> 4, 3 -> 4
EMPTY = (0, 0, 0, 0, 0, 0, 0)
EMPTY_RES = (0, 0, 0, 0, 0, 0, 1)


def relabel_phase(bits, n_nodes: int, rng: np.random.Generator) -> tuple[int, ...]:
    """An isomorphic copy of one phase: the K nodes renumbered by a random topological order of
    the raw connection graph (so every edge still goes from a lower to a higher node)."""
    edges, pos = set(), 0
    for j in range(2, n_nodes + 1):
        for i in range(1, j):
            if bits[pos]:
                edges.add((i, j))
            pos += 1
    order: list[int] = []
    while len(order) < n_nodes:
        ready = [n for n in range(1, n_nodes + 1) if n not in order
                 and all(i in order for i, j in edges if j == n)]
        order.append(ready[int(rng.integers(len(ready)))])
    new = {old: k + 1 for k, old in enumerate(order)}
    moved = {(new[i], new[j]) for i, j in edges}
    out = [int((i, j) in moved) for j in range(2, n_nodes + 1) for i in range(1, j)]
    return (*out, bits[-1])


def relabel_genome(space: MacroSpace, genome, rng) -> tuple[int, ...]:
    pb = space.phase_bits
    out: list[int] = []
    for p in range(space.n_phases):
        out += relabel_phase(genome[p * pb:(p + 1) * pb], space.n_nodes, rng)
    return tuple(out)


# -- bounds, sampling, validation ------------------------------------------------------------------
def test_bounds():
    assert SPACE.n_var == 48 and SPACE.phase_bits == 16
    assert SMALL.n_var == 21 and SMALL.phase_bits == 7
    assert SPACE.lower.tolist() == [0] * 48 and SPACE.upper.tolist() == [1] * 48
    _error(MacroSpace, 0, 6)
    _error(MacroSpace, 3, 1)


def test_sample_is_seeded_bits():
    rng = np.random.default_rng(0)
    samples = np.array([SPACE.sample(rng) for _ in range(100)])
    assert set(np.unique(samples)) == {0, 1}
    assert SPACE.sample(np.random.default_rng(4)) == SPACE.sample(np.random.default_rng(4))
    assert all(type(v) is int for v in SPACE.sample(rng))


def test_validate_errors():
    g = [0] * 48
    assert SPACE.validate(g) == (0,) * 48
    assert _error(SPACE.validate, g[:-1]) == "macro genome must have 48 integers, got 47"
    bad = list(g)
    bad[10] = 2
    assert _error(SPACE.validate, bad) == \
        "macro genome position 10: value 2 is outside its range [0, 1]"
    bad[10] = 0.5
    assert "0.5 is not an integer" in _error(SPACE.validate, bad)
    bad[10] = "x"
    assert "'x' is not an integer" in _error(SPACE.validate, bad)
    bools = [True, False] * 24
    assert SPACE.validate(bools) == (1, 0) * 24


# -- decoding rules (SPEC §5) ----------------------------------------------------------------------
def test_chain_rules():
    # node 1 has outputs but no inputs -> takes the phase input; node 2 has inputs but no
    # outputs -> feeds the phase output (5); nodes 3 and 4 are isolated -> dropped.
    assert phase_graph(CHAIN_12, 4) == {1: (0,), 2: (1,), 5: (2,)}


def test_residual_bit_adds_input_to_output_edge():
    assert phase_graph(CHAIN_12_RES, 4) == {1: (0,), 2: (1,), 5: (0, 2)}


def test_fan_out_feeds_all_sinks_to_the_output():
    assert phase_graph(FAN_OUT, 4) == {1: (0,), 2: (1,), 3: (1,), 5: (2, 3)}


def test_fan_in_takes_input_for_every_source():
    assert phase_graph(FAN_IN, 4) == {1: (0,), 2: (0,), 3: (1, 2), 5: (3,)}


def test_diamond():
    assert phase_graph(DIAMOND, 4) == {1: (0,), 2: (1,), 3: (1,), 4: (2, 3), 5: (4,)}


def test_phase_without_connections_is_removed_whatever_its_residual_bit():
    assert phase_graph(EMPTY, 4) is None
    assert phase_graph(EMPTY_RES, 4) is None


def test_graphs_and_describe():
    g = CHAIN_12 + EMPTY_RES + CHAIN_123
    assert SMALL.graphs(g) == [{1: (0,), 2: (1,), 5: (2,)}, None,
                               {1: (0,), 2: (1,), 3: (2,), 5: (3,)}]
    text = SMALL.describe(SMALL.decode(g))
    assert text.splitlines() == [
        "phase 0:", "  node 1 <- input", "  node 2 <- node 1", "  output <- node 2",
        "phase 1: removed (no connections)",
        "phase 2:", "  node 1 <- input", "  node 2 <- node 1", "  node 3 <- node 2",
        "  output <- node 3",
    ]


def test_nsganet_first_phase_hand_decoded():
    graph = SPACE.graphs(MACRO_ARCHS["NSGANet"].bits())[0]
    # [[1], [0, 0], [0, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1, 1], [0]]
    assert graph == {1: (0,), 2: (1,), 3: (0,), 4: (2,), 5: (2, 3, 4), 6: (1, 4, 5), 7: (6,)}


# -- built networks follow the rules ---------------------------------------------------------------
def _count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def test_removed_phases_vanish_from_the_network():
    full = create_network(SMALL, CHAIN_12 + DIAMOND + FAN_IN, channels=(4, 6, 8))
    assert _count(full, Phase) == 3 and _count(full, nn.MaxPool2d) == 2
    assert full.num_features == 8
    one_removed = create_network(SMALL, CHAIN_12 + EMPTY_RES + FAN_IN, channels=(4, 6, 8))
    assert _count(one_removed, Phase) == 2 and _count(one_removed, nn.MaxPool2d) == 1
    assert one_removed.num_features == 6  # the remaining phases take the first widths
    single = create_network(SMALL, EMPTY + EMPTY_RES + FAN_IN, channels=(4, 6, 8))
    assert _count(single, Phase) == 1 and _count(single, nn.MaxPool2d) == 0
    assert single.num_features == 4
    x = torch.randn(2, 3, 16, 16)
    shapes = []
    hook = one_removed.body.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    one_removed.eval()
    with torch.no_grad():
        assert one_removed(x).shape == (2, 10)
    hook.remove()
    assert shapes == [(2, 6, 7, 7)]  # unpadded 3x3 entry (16 -> 14), one pooling only


def test_dropped_nodes_have_no_modules_and_merges_have_mixers():
    net = create_network(SMALL, FAN_IN + CHAIN_12_RES + CHAIN_13, channels=4)
    p0, p1, p2 = (m for m in net.modules() if isinstance(m, Phase))
    assert sorted(p0.nodes) == ["1", "2", "3"] and sorted(p0.mixers) == ["3"]
    assert sorted(p1.nodes) == ["1", "2"] and sorted(p1.mixers) == ["5"]  # residual merge
    assert p1.deps["5"] == [0, 2]
    assert sorted(p2.nodes) == ["1", "3"] and not p2.mixers


def test_all_phases_removed_still_builds():
    net = create_network(SMALL, EMPTY * 3, channels=4, in_channels=1)
    assert _count(net, Phase) == 0 and net.num_features == 1
    assert SMALL.key(EMPTY * 3) == "macro:"
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_channel_width_count_is_checked():
    with pytest.raises(ValueError, match="need 3 channel widths"):
        create_network(SMALL, CHAIN_12 * 3, channels=(4, 4))


# -- round trips -----------------------------------------------------------------------------------
def test_nested_layout_of_nsganet():
    gt = published("macro", "nsga-net")
    assert gt is MACRO_ARCHS["NSGANet"]
    assert gt.to_nested() == _NSGANET_MACRO
    assert SPACE.encode(gt) == gt.bits()
    assert len(gt.bits()) == 48


@pytest.mark.parametrize("seed", range(30))
def test_json_round_trips(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    gt = SPACE.decode(g)
    nested = json.loads(json.dumps(SPACE.genotype_to_json(gt)))
    assert [len(x) for x in nested[0]] == [1, 2, 3, 4, 5, 1]
    assert SPACE.genotype_from_json(nested) == gt
    assert SPACE.genotype_from_json("".join(map(str, g))) == gt
    assert SPACE.genotype_from_json(format_genome(g)) == gt
    assert SPACE.genotype_from_json(list(g)) == gt
    assert SPACE.encode(gt) == g
    assert SPACE.key(SPACE.encode(SPACE.decode(g))) == SPACE.key(g)


def test_genotype_from_json_errors():
    nested = SPACE.genotype_to_json(MACRO_ARCHS["NSGANet"])
    assert "has 2 phases; expected 3" in _error(SPACE.genotype_from_json, nested[:2])
    bad = json.loads(json.dumps(nested))
    bad[1][2] = [0, 1]
    assert "phase 1: expected lists of lengths [1, 2, 3, 4, 5, 1]" in \
        _error(SPACE.genotype_from_json, bad)
    bad = json.loads(json.dumps(nested))
    bad[0][0] = [2]
    assert "outside its range" in _error(SPACE.genotype_from_json, bad)
    assert "must have 48 integers, got 3" in _error(SPACE.genotype_from_json, "010")
    assert "must have 48" in _error(SPACE.genotype_from_json, [])
    assert "must be nested" in _error(SPACE.genotype_from_json, {"phases": []})
    assert "must be nested" in _error(SPACE.genotype_from_json, 5)
    assert "empty" in _error(SPACE.genotype_from_json, "")
    # non-ASCII digits are not bits (used to escape as a plain ValueError)
    assert "not an integer" in _error(SPACE.genotype_from_json, "\u00b2" * 48)


def test_macro_genotype_nested_layout_by_hand():
    gt = SMALL.decode(CHAIN_12 + DIAMOND + EMPTY_RES)
    assert gt.to_nested() == [
        [[1], [0, 0], [0, 0, 0], [0]],
        [[1], [1, 0], [0, 1, 1], [0]],
        [[0], [0, 0], [0, 0, 0], [1]],
    ]
    assert isinstance(gt, MacroGenotype) and gt.n_nodes == 4


# -- canonical keys --------------------------------------------------------------------------------
def test_key_text_hand_computed():
    assert SMALL.key(CHAIN_12 + EMPTY + EMPTY) == "macro:[0>1,1>2,2>3]"
    assert SMALL.key(CHAIN_12_RES + EMPTY + EMPTY) == "macro:[0>1,0>3,1>2,2>3]"


def test_key_phases_without_connections_ignore_residual_bits():
    keys = {SMALL.key(CHAIN_12 + a + b) for a in (EMPTY, EMPTY_RES) for b in (EMPTY, EMPTY_RES)}
    assert len(keys) == 1
    # and where the removed phase sits does not matter either: the active ones close up
    assert SMALL.key(EMPTY_RES + CHAIN_12 + DIAMOND) == SMALL.key(CHAIN_12 + DIAMOND + EMPTY)
    assert SMALL.key(CHAIN_12 + EMPTY + DIAMOND) == SMALL.key(CHAIN_12 + DIAMOND + EMPTY_RES)


def test_key_isolated_nodes_do_not_matter():
    # 1 -> 2, 1 -> 3, 3 -> 4 are all the same single edge with two isolated nodes
    assert SMALL.key(CHAIN_12 * 3) == SMALL.key(CHAIN_13 * 3) == SMALL.key(CHAIN_34 * 3)
    assert SMALL.key(CHAIN_123 + FAN_IN + FAN_OUT) == SMALL.key(CHAIN_234 + FAN_IN_24 + FAN_OUT)


def test_key_different_wiring_differs():
    base = SMALL.key(FAN_OUT + EMPTY + EMPTY)
    assert SMALL.key(FAN_IN + EMPTY + EMPTY) != base
    assert SMALL.key(CHAIN_123 + EMPTY + EMPTY) != base
    assert SMALL.key(DIAMOND + EMPTY + EMPTY) != base
    assert SMALL.key(CHAIN_12 + EMPTY + EMPTY) != SMALL.key(CHAIN_12_RES + EMPTY + EMPTY)
    # phase order matters (the phases have different widths)
    assert SMALL.key(CHAIN_12 + DIAMOND + EMPTY) != SMALL.key(DIAMOND + CHAIN_12 + EMPTY)
    # number of active phases matters
    assert SMALL.key(CHAIN_12 + CHAIN_12 + EMPTY) != SMALL.key(CHAIN_12 + EMPTY + EMPTY)


def test_canonical_phase_is_invariant_under_node_permutation():
    graph = {1: (0,), 2: (0,), 3: (1, 2), 5: (3,)}
    relabelled = {2: (0,), 4: (0,), 1: (2, 4), 5: (1,)}  # not topologically numbered, still iso
    assert canonical_phase(graph, 4) == canonical_phase(relabelled, 4)


@pytest.mark.parametrize("space", [MacroSpace(), MacroSpace(n_nodes=4)], ids=["k6", "k4"])
def test_key_invariant_under_random_relabelling(space):
    assert relabellings_keeping_the_key(space, relabel_genome, seed=1) > 40


def test_equal_keys_build_networks_of_equal_size():
    rng = np.random.default_rng(8)
    for _ in range(5):
        g = SPACE.sample(rng)
        h = relabel_genome(SPACE, g, rng)
        a = create_network(SPACE, g, channels=(4, 6, 8))
        b = create_network(SPACE, h, channels=(4, 6, 8))
        assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_random_genomes_give_distinct_keys():
    rng = np.random.default_rng(2024)
    genomes = {SPACE.sample(rng) for _ in range(200)}
    assert len({SPACE.key(g) for g in genomes}) >= 195


def test_key_flipping_an_edge_of_a_two_node_phase():
    space = MacroSpace(n_phases=1, n_nodes=2)
    keys = {bits: space.key(bits) for bits in ((0, 0), (0, 1), (1, 0), (1, 1))}
    assert keys[(0, 0)] == keys[(0, 1)] == "macro:"
    assert keys[(1, 0)] == "macro:[0>1,1>2,2>3]"
    assert keys[(1, 1)] == "macro:[0>1,0>3,1>2,2>3]"
