"""Equivalent genomes (one canonical key) get identical evaluations: networks are built from
the canonical genome, so weights, outputs and RWE error are functions of the key alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import rwenas.evaluation as evaluation
from rwenas.build import build_network
from rwenas.data import load_dataset, search_split
from rwenas.estimators.rwe import RWEConfig
from rwenas.evaluation import derive_seed, evaluate_genome
from rwenas.spaces import canonical_genome, get_space

SPACES = ("micro", "nb301", "macro", "mobilenetv2")
# Small networks that still build every part: 3 micro cells (normal, reduction, reduction) so
# the normal cell exists; macro and mobilenetv2 at narrow widths.
TINY = {"micro": {"channels": 4, "layers": 3}, "nb301": {"channels": 4, "layers": 3},
        "macro": {"channels": 4}, "mobilenetv2": {"width": 0.25, "head": 16}}

# A conv cell (normal) and a pool/skip cell (reduction). Block 3 of the normal cell is
# sep_conv_3x3(node 0) + sep_conv_5x5(node 1); its twin swaps the two DIFFERENT operations.
GENOME = (4, 0, 4, 1, 3, 0, 3, 1, 5, 0, 5, 1, 3, 0, 4, 1, 6, 0, 3, 1,
          0, 0, 2, 1, 1, 0, 2, 2, 0, 1, 2, 3, 1, 0, 2, 4, 0, 1, 2, 5)
TWIN = (*GENOME[:12], 4, 1, 3, 0, *GENOME[16:])


# -- random equivalent twins, one generator per space ------------------------------------------
def _micro_cell_twin(cell: list[int], rng: np.random.Generator) -> list[int]:
    """The cell with its blocks in a random topological order and operands randomly swapped."""
    n = len(cell) // 4
    blocks = {b + 2: cell[4 * b: 4 * b + 4] for b in range(n)}
    order: list[int] = []
    while len(order) < n:
        ready = [k for k in blocks if k not in order
                 and {blocks[k][1], blocks[k][3]} - {0, 1} <= set(order)]
        order.append(ready[int(rng.integers(len(ready)))])
    new = {0: 0, 1: 1, **{old: i + 2 for i, old in enumerate(order)}}
    out: list[int] = []
    for old in order:
        op_a, in_a, op_b, in_b = blocks[old]
        pair = [[op_a, new[in_a]], [op_b, new[in_b]]]
        if rng.integers(2):
            pair.reverse()
        out += pair[0] + pair[1]
    return out


def _macro_phase_twin(bits: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """The phase with its nodes renumbered by a random topological order; a removed phase
    gets a random residual bit (it is ignored)."""
    edges = {(i, j) for j in range(2, k + 1) for i in range(1, j)
             if bits[(j - 1) * (j - 2) // 2 + i - 1]}
    if not edges:
        return [0] * (len(bits) - 1) + [int(rng.integers(2))]
    order: list[int] = []
    while len(order) < k:
        ready = [n for n in range(1, k + 1) if n not in order
                 and all(i in order for i, j in edges if j == n)]
        order.append(ready[int(rng.integers(len(ready)))])
    new = {old: i + 1 for i, old in enumerate(order)}
    moved = {(new[i], new[j]) for i, j in edges}
    return [int((i, j) in moved) for j in range(2, k + 1) for i in range(1, j)] + [bits[-1]]


def twin(space, genome, rng: np.random.Generator) -> tuple[int, ...]:
    """A random genome equivalent to ``genome`` (same network up to renumbering)."""
    g = list(genome)
    if space.name in ("micro", "nb301"):
        half = len(g) // 2
        return tuple(_micro_cell_twin(g[:half], rng) + _micro_cell_twin(g[half:], rng))
    if space.name == "macro":
        pb = space.phase_bits
        phases = [_macro_phase_twin(g[p * pb:(p + 1) * pb], space.n_nodes, rng)
                  for p in range(space.n_phases)]
        # removed phases may sit anywhere between the active ones (their order is kept)
        active = [p for p in phases if any(p[:-1])]
        removed = [p for p in phases if not any(p[:-1])]
        slots = sorted(rng.choice(len(phases), size=len(active), replace=False))
        merged = [removed.pop() if i not in slots else None for i in range(len(phases))]
        it = iter(active)
        return tuple(b for p in merged for b in (p if p is not None else next(it)))
    # mobilenetv2: blocks beyond a stage's depth are unused
    width = 1 + 2 * space.max_depth
    from rwenas.spaces.mobilenet import DEPTHS

    for s in range(len(g) // width):
        depth = DEPTHS[g[s * width]]
        for pos in range(s * width + 1 + 2 * depth, (s + 1) * width):
            g[pos] = int(rng.integers(space.upper[pos] + 1))
    return tuple(g)


def _built(space, genome, seed: int = 0):
    """The network exactly as an evaluation builds it (canonical genome, key-derived seed)."""
    torch.manual_seed(derive_seed(seed, space.key(genome)))
    return build_network(space, canonical_genome(space, genome), in_channels=3,
                         num_classes=10, **TINY[space.name]).eval()


def _same_network(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- the canonical genome ----------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
def test_canonical_genome_is_a_function_of_the_key(name):
    """Over many random genomes and random equivalent twins: the twin has the key, and both
    have one canonical genome, which is valid, has the same key and is its own canonical."""
    space = get_space(name)
    rng = np.random.default_rng(0)
    n = 50 if name == "macro" else 150  # macro keys try up to 720 renumberings per phase
    changed = 0
    for _ in range(n):
        g = space.sample(rng)
        t = twin(space, g, rng)
        changed += t != g
        assert space.key(t) == space.key(g)
        c = space.canonical(g)
        assert space.canonical(t) == c
        assert space.validate(c) == c and space.key(c) == space.key(g)
        assert space.canonical(c) == c
    assert changed > n * 2 // 3  # the twins really are different genomes


@pytest.mark.parametrize("name", SPACES)
def test_different_keys_give_different_canonical_genomes(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    seen: dict[tuple[int, ...], str] = {}
    for _ in range(50 if name == "macro" else 150):
        g = space.sample(rng)
        key = space.key(g)
        assert seen.setdefault(space.canonical(g), key) == key


def test_micro_canonical_genome_by_hand():
    # node 2 = skip(1) + max_pool(0), node 3 = sep_conv_3x3(0) + skip(2): each block's
    # (op, input) pairs sorted; nodes 2 and 3 cannot swap places (node 3 reads node 2)
    space_small = type(get_space("micro"))(n_blocks=2)
    cell = [2, 1, 0, 0, 3, 0, 2, 2]
    assert space_small.canonical(cell + cell) == (0, 0, 2, 1, 2, 2, 3, 0) * 2
    # two independent blocks (dil_conv_3x3 on both inputs; max_pool(1) + skip(0)): the
    # smaller block comes first whatever the genome's order
    a = [5, 0, 5, 1, 0, 1, 2, 0]
    b = [0, 1, 2, 0, 5, 0, 5, 1]
    assert space_small.canonical(a + a) == space_small.canonical(b + b) == (0, 1, 2, 0,
                                                                           5, 0, 5, 1) * 2


def test_macro_canonical_genome_by_hand():
    space = get_space("macro", n_phases=3, n_nodes=4)
    # bits: b12 | b13 b23 | b14 b24 b34 | res
    chain_34 = (0, 0, 0, 0, 0, 1, 0)        # 3 -> 4, nodes 1 and 2 isolated
    removed = (0, 0, 0, 0, 0, 0, 1)         # no connection, residual bit set
    chain_12_res = (1, 0, 0, 0, 0, 0, 1)
    genome = removed + chain_34 + chain_12_res
    # active phases first, each renumbered to nodes 1 -> 2; the removed phase all zeros
    assert space.canonical(genome) == (1, 0, 0, 0, 0, 0, 0) + chain_12_res + (0,) * 7


# -- identical evaluations ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    ds = load_dataset("synthetic", synthetic_size=(200, 50))
    return ds, search_split(ds, seed=0, train_size=120, val_size=40)


def test_operand_swapped_twin_gets_the_same_weights_outputs_and_error(split, monkeypatch):
    """The twin swaps two different operations (sep_conv_3x3 and sep_conv_5x5) of a normal
    cell, and the network has 3 cells, so the normal cell is built. Built from the raw
    genomes, the two networks differ; the evaluation builds the same network for both."""
    space = get_space("micro")
    ds, sp = split
    assert TWIN != GENOME and space.key(TWIN) == space.key(GENOME)
    assert (GENOME[12], GENOME[14]) == (3, 4)  # the swapped operations differ
    seed = derive_seed(3, space.key(GENOME))
    x = torch.randn(4, ds.info.in_channels, ds.info.image_size, ds.info.image_size)
    raw = []
    for g in (GENOME, TWIN):
        torch.manual_seed(seed)
        raw.append(build_network(space, g, in_channels=ds.info.in_channels,
                                 num_classes=ds.info.num_classes, **TINY["micro"]).eval())
    assert raw[0].cells[0].reduction is False  # a normal cell is built
    with torch.no_grad():
        assert not torch.allclose(raw[0](x), raw[1](x))  # so this test could fail

    seen: list[torch.nn.Module] = []
    real_rwe = evaluation.rwe

    def spy(net, *args, **kwargs):
        seen.append(copy.deepcopy(net))  # as built (RWE then folds BatchNorm into it)
        return real_rwe(net, *args, **kwargs)

    monkeypatch.setattr(evaluation, "rwe", spy)
    cfg = RWEConfig(epochs=2, device="cpu")
    a = evaluate_genome(space, GENOME, sp, ds.info, config=cfg, seed=3, network=TINY["micro"])
    b = evaluate_genome(space, TWIN, sp, ds.info, config=cfg, seed=3, network=TINY["micro"])
    assert a.key == b.key and a.seed == b.seed == seed
    assert (a.rwe_error, a.madds_m, a.params_m) == (b.rwe_error, b.madds_m, b.params_m)
    assert _same_network(seen[0], seen[1])
    with torch.no_grad():
        assert torch.equal(seen[0].eval()(x), seen[1].eval()(x))


@pytest.mark.parametrize("name", SPACES)
def test_random_twins_build_identical_networks(name):
    space = get_space(name)
    rng = np.random.default_rng(2)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(4):
        g = space.sample(rng)
        t = twin(space, g, rng)
        na, nb = _built(space, g), _built(space, t)
        assert _same_network(na, nb)
        with torch.no_grad():
            assert torch.equal(na(x), nb(x))


@pytest.mark.parametrize("name", SPACES)
def test_random_twins_get_identical_rwe(name, split):
    ds, sp = split
    space = get_space(name)
    rng = np.random.default_rng(4)
    cfg = RWEConfig(epochs=2, device="cpu")
    for _ in range(2):
        g = space.sample(rng)
        t = twin(space, g, rng)
        a = evaluate_genome(space, g, sp, ds.info, config=cfg, seed=1, network=TINY[name])
        b = evaluate_genome(space, t, sp, ds.info, config=cfg, seed=1, network=TINY[name])
        assert (a.key, a.seed, a.rwe_error, a.madds_m, a.params_m) == \
            (b.key, b.seed, b.rwe_error, b.madds_m, b.params_m)
