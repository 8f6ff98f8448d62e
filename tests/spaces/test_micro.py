"""Micro (cell) search space: bounds, sampling, validation, decoding, round trips, keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rwenas.errors import ConfigError, RwenasError
from rwenas.spaces import (
    MICRO_OPS,
    Genotype,
    MacroSpace,
    MicroSpace,
    NB301Space,
    SearchSpace,
    format_genome,
    get_space,
    parse_genome,
)
from rwenas.spaces.micro import canonical_cell, loose_ends
from rwenas.spaces.published import MICRO_ARCHS, published
from tests.spaces.helpers import genome_error as _error
from tests.spaces.helpers import relabellings_keeping_the_key

SPACE = MicroSpace()

# A hand-written genome (B=5). Normal cell:
#   node 2 = sep_conv_3x3(0) + sep_conv_5x5(1)
#   node 3 = skip_connect(2) + max_pool_3x3(0)
#   node 4 = avg_pool_3x3(1) + dil_conv_3x3(2)
#   node 5 = conv_7x1_1x7(3) + sep_conv_7x7(0)
#   node 6 = dil_conv_5x5(5) + skip_connect(1)
# nodes used as inputs: 2, 3, 5 -> loose ends (the concat) are 4 and 6.
# Reduction cell: every block is max_pool_3x3(0) + avg_pool_3x3(1) -> concat 2..6.
HAND_NORMAL = [3, 0, 4, 1, 2, 2, 0, 0, 1, 1, 5, 2, 8, 3, 7, 0, 6, 5, 2, 1]
HAND_REDUCE = [0, 0, 1, 1] * 5
HAND_GENOME = tuple(HAND_NORMAL + HAND_REDUCE)
HAND_GENOTYPE = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("avg_pool_3x3", 1), ("dil_conv_3x3", 2), ("conv_7x1_1x7", 3), ("sep_conv_7x7", 0),
            ("dil_conv_5x5", 5), ("skip_connect", 1)),
    normal_concat=(4, 6),
    reduce=(("max_pool_3x3", 0), ("avg_pool_3x3", 1)) * 5,
    reduce_concat=(2, 3, 4, 5, 6),
)


def relabel_cell(cell: list[int], rng: np.random.Generator) -> list[int]:
    """An isomorphic copy of one cell (4·B ints): blocks put in a random topological order
    (intermediate nodes renumbered accordingly) and each block's operands randomly swapped."""
    n_blocks = len(cell) // 4
    blocks = {b + 2: cell[4 * b: 4 * b + 4] for b in range(n_blocks)}
    deps = {n: {blk[1], blk[3]} - {0, 1} for n, blk in blocks.items()}
    order: list[int] = []
    while len(order) < n_blocks:
        ready = sorted(n for n in blocks if n not in order and deps[n] <= set(order))
        order.append(ready[int(rng.integers(len(ready)))])
    new_label = {0: 0, 1: 1, **{old: pos + 2 for pos, old in enumerate(order)}}
    out: list[int] = []
    for old in order:
        op_a, in_a, op_b, in_b = blocks[old]
        pair = [[op_a, new_label[in_a]], [op_b, new_label[in_b]]]
        if rng.integers(2):
            pair.reverse()
        out += pair[0] + pair[1]
    return out


def relabel_genome(space: MicroSpace, genome, rng: np.random.Generator) -> tuple[int, ...]:
    half = 4 * space.n_blocks
    g = list(genome)
    return tuple(relabel_cell(g[:half], rng) + relabel_cell(g[half:], rng))


# -- bounds and sampling ---------------------------------------------------------------------------
def test_bounds_follow_the_spec():
    assert SPACE.n_var == 40
    assert len(SPACE.lower) == len(SPACE.upper) == 40
    assert (SPACE.lower == 0).all()
    per_cell = []
    for b in range(5):
        per_cell += [8, b + 1, 8, b + 1]
    assert SPACE.upper.tolist() == per_cell * 2
    assert SPACE.ops == MICRO_OPS
    assert MICRO_OPS[0] == "max_pool_3x3" and MICRO_OPS[8] == "conv_7x1_1x7"


def test_bounds_of_a_small_space_and_returned_copies():
    space = MicroSpace(n_blocks=2)
    assert space.n_var == 16
    assert space.upper.tolist() == [8, 1, 8, 1, 8, 2, 8, 2] * 2
    upper = space.upper
    upper[:] = 0  # mutating the returned array must not change the space
    assert space.upper.tolist() == [8, 1, 8, 1, 8, 2, 8, 2] * 2


def test_space_needs_a_block():
    _error(MicroSpace, 0)


def test_spaces_satisfy_the_protocol():
    for space in (MicroSpace(), MacroSpace(), NB301Space()):
        assert isinstance(space, SearchSpace)


def test_sample_is_valid_seeded_and_covers_the_range():
    rng = np.random.default_rng(0)
    samples = np.array([SPACE.sample(rng) for _ in range(300)])
    assert (samples >= SPACE.lower).all() and (samples <= SPACE.upper).all()
    # every position takes every value of its range at least once in 300 draws
    for pos in range(SPACE.n_var):
        assert set(samples[:, pos]) == set(range(SPACE.upper[pos] + 1))
    a = SPACE.sample(np.random.default_rng(7))
    b = SPACE.sample(np.random.default_rng(7))
    assert a == b
    assert all(type(v) is int for v in a)
    assert SPACE.validate(a) == a


# -- validation ------------------------------------------------------------------------------------
def test_validate_returns_a_tuple_of_plain_ints():
    g = SPACE.validate(list(HAND_GENOME))
    assert g == HAND_GENOME and isinstance(g, tuple)
    assert SPACE.validate(np.array(HAND_GENOME, dtype=np.int64)) == HAND_GENOME
    floats = SPACE.validate([float(v) for v in HAND_GENOME])
    assert floats == HAND_GENOME and all(type(v) is int for v in floats)
    assert SPACE.validate(np.array(HAND_GENOME, dtype=np.float64)) == HAND_GENOME
    assert SPACE.validate(format_genome(HAND_GENOME)) == HAND_GENOME


def test_validate_wrong_length():
    assert _error(SPACE.validate, HAND_GENOME[:-1]) == \
        "micro genome must have 40 integers, got 39"
    assert "got 41" in _error(SPACE.validate, (*HAND_GENOME, 0))
    assert "got 0" in _error(SPACE.validate, ())


@pytest.mark.parametrize(("pos", "value", "lo", "hi"), [
    (0, 9, 0, 8),      # op above the last operation
    (1, 2, 0, 1),      # block 0 may only use nodes 0..1
    (5, 3, 0, 2),      # block 1 may use nodes 0..2
    (19, 6, 0, 5),     # block 4 may use nodes 0..5
    (22, -1, 0, 8),    # negative op of the reduction cell
])
def test_validate_out_of_range(pos, value, lo, hi):
    g = list(HAND_GENOME)
    g[pos] = value
    message = _error(SPACE.validate, g)
    assert message == (f"micro genome position {pos}: value {value} is outside its range "
                       f"[{lo}, {hi}]")


@pytest.mark.parametrize("bad", [1.5, "x", "3", None, [1], float("nan"), float("inf")])
def test_validate_non_integers(bad):
    g = list(HAND_GENOME)
    g[4] = bad
    message = _error(SPACE.validate, g)
    assert message.startswith("micro genome position 4:")
    assert "is not an integer" in message


def test_validate_not_a_sequence():
    assert "sequence of integers" in _error(SPACE.validate, None)
    assert "sequence of integers" in _error(SPACE.validate, 5)


def test_bools_count_as_zero_and_one():
    g = list(HAND_GENOME)
    g[0], g[1] = True, False
    out = SPACE.validate(g)
    assert out[:2] == (1, 0)
    assert type(out[0]) is int and type(out[1]) is int


def test_genome_error_is_a_value_error_and_a_user_error():
    with pytest.raises(ValueError):
        SPACE.validate([0])
    with pytest.raises(RwenasError):
        SPACE.validate([0])


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["3 0 4 1", "3,0,4,1", "[3, 0, 4, 1]", " 3\t0\n4  1 ",
                                  "(3,0,4,1)", "3, 0,, 4 ,1"])
def test_parse_genome_forms(text):
    assert parse_genome(text) == (3, 0, 4, 1)


def test_parse_genome_signs_and_errors():
    assert parse_genome("-1 +2") == (-1, 2)
    assert "empty" in _error(parse_genome, "")
    assert "empty" in _error(parse_genome, " [ ] ")
    assert _error(parse_genome, "3 0 x 1") == "genome position 2: 'x' is not an integer"
    assert "'1.5' is not an integer" in _error(parse_genome, "1.5")
    assert "must be a string" in _error(parse_genome, [3, 0])


def test_format_and_parse_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = SPACE.sample(rng)
        text = format_genome(g)
        assert "," not in text
        assert parse_genome(text) == g
        assert parse_genome(str(list(g))) == g


# -- decoding --------------------------------------------------------------------------------------
def test_decode_hand_written_genome_to_the_darts_layout():
    gt = SPACE.decode(HAND_GENOME)
    assert gt == HAND_GENOTYPE
    assert gt.to_dict() == {
        "normal": [["sep_conv_3x3", 0], ["sep_conv_5x5", 1], ["skip_connect", 2],
                   ["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["dil_conv_3x3", 2],
                   ["conv_7x1_1x7", 3], ["sep_conv_7x7", 0], ["dil_conv_5x5", 5],
                   ["skip_connect", 1]],
        "normal_concat": [4, 6],
        "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1]] * 5,
        "reduce_concat": [2, 3, 4, 5, 6],
    }


def test_loose_ends_hand_computed():
    assert loose_ends(HAND_GENOTYPE.normal) == (4, 6)
    assert loose_ends(HAND_GENOTYPE.reduce) == (2, 3, 4, 5, 6)
    # a chain 2 -> 3 -> 4 has the single loose end 4
    chain = (("skip_connect", 0), ("skip_connect", 1), ("max_pool_3x3", 2),
             ("max_pool_3x3", 0), ("avg_pool_3x3", 3), ("avg_pool_3x3", 1))
    assert loose_ends(chain) == (4,)


def test_loose_ends_are_never_empty_for_random_genomes():
    rng = np.random.default_rng(11)
    for _ in range(200):
        gt = SPACE.decode(SPACE.sample(rng))
        for edges, concat in ((gt.normal, gt.normal_concat), (gt.reduce, gt.reduce_concat)):
            assert concat, "the last node is never an input, so a cell has an output"
            assert 6 in concat
            used = {i for _, i in edges}
            assert not used & set(concat)
            assert set(concat) | (used - {0, 1}) == set(range(2, 7))


def test_describe_lists_every_node():
    text = SPACE.describe(HAND_GENOTYPE)
    lines = text.splitlines()
    assert lines[0] == "normal cell:"
    assert "  node 2 = sep_conv_3x3(node 0) + sep_conv_5x5(node 1)" in lines
    assert "  node 6 = dil_conv_5x5(node 5) + skip_connect(node 1)" in lines
    assert "  output = concat(nodes 4, 6)" in lines
    assert "reduce cell:" in lines
    assert "  output = concat(nodes 2, 3, 4, 5, 6)" in lines


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(50))
def test_encode_decode_round_trip(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    gt = SPACE.decode(g)
    assert SPACE.encode(gt) == g
    assert SPACE.key(SPACE.encode(SPACE.decode(g))) == SPACE.key(g)
    # JSON round trip of the genotype, through text
    text = json.dumps(SPACE.genotype_to_json(gt))
    back = SPACE.genotype_from_json(json.loads(text))
    assert back == gt
    assert SPACE.encode(back) == g


def test_published_genotypes_json_round_trip():
    for name, gt in MICRO_ARCHS.items():
        back = Genotype.from_dict(json.loads(json.dumps(gt.to_dict())))
        assert back == gt, name


def test_encode_published_cells():
    # The 5-block published cells concatenate exactly their loose ends: micro genomes exist.
    for name in ("NASNet", "AmoebaNet", "ENAS", "NSGANet"):
        gt = published("micro", name)
        assert SPACE.decode(SPACE.encode(gt)) == gt, name
    # DARTS has 4 blocks (this space has 5) ...
    darts = published("micro", "DARTS")
    assert "has 4 blocks" in _error(SPACE.encode, darts)
    # ... and concatenates node 2, which a block uses: no 4-block micro genome encodes it.
    message = _error(MicroSpace(n_blocks=4).encode, darts)
    assert "'normal_concat' [2, 3, 4, 5] differs" in message and "[3, 4, 5]" in message


def test_encode_rejects_unknown_operation():
    gt = Genotype((*HAND_GENOTYPE.normal[:-1], ("none", 1)), HAND_GENOTYPE.normal_concat,
                  HAND_GENOTYPE.reduce, HAND_GENOTYPE.reduce_concat)
    assert "'none'" in _error(SPACE.encode, gt)


def test_published_lookup_and_aliases():
    assert published("micro", "darts_v2") is MICRO_ARCHS["DARTS"]
    assert published("micro", "NASNet-A") is MICRO_ARCHS["NASNet"]
    assert published("micro", "amoebanet") is MICRO_ARCHS["AmoebaNet"]
    assert "unknown micro architecture 'VGG'" in _error(published, "micro", "VGG")
    assert "no published architectures" in _error(published, "foo", "DARTS")


# -- genotype JSON errors --------------------------------------------------------------------------
def _darts_dict() -> dict:
    return published("micro", "DARTS").to_dict()


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.pop("reduce_concat"), "missing field(s): reduce_concat"),
    (lambda d: (d.pop("normal"), d.pop("reduce")), "missing field(s): normal, reduce"),
    (lambda d: d["normal"].__setitem__(3, ["conv_9x9", 1]), "unknown operation 'conv_9x9'"),
    (lambda d: d["normal"].__setitem__(0, ["sep_conv_3x3", 2]),
     "input 2 is out of range for block 0 (allowed 0..1)"),
    (lambda d: d["normal"].__setitem__(0, ["sep_conv_3x3", True]), "expected [op_name, input"),
    (lambda d: d["normal"].__setitem__(0, ["sep_conv_3x3", 1.0]), "expected [op_name, input"),
    (lambda d: d["normal"].__setitem__(0, "sep_conv_3x3"), "expected [op_name, input"),
    (lambda d: d["normal"].pop(), "two per block"),
    (lambda d: d.__setitem__("normal", []), "non-empty list"),
    (lambda d: d.__setitem__("normal_concat", [2, 6]), "node 6 is not an intermediate node"),
    (lambda d: d.__setitem__("normal_concat", [1, 2]), "node 1 is not an intermediate node"),
    (lambda d: d.__setitem__("reduce_concat", [2, 2]), "lists a node twice"),
    (lambda d: d.__setitem__("reduce_concat", []), "non-empty list of node indices"),
    (lambda d: d.__setitem__("reduce_concat", "2345"), "non-empty list of node indices"),
])
def test_genotype_from_dict_errors(mutate, expected):
    data = _darts_dict()
    mutate(data)
    assert expected in _error(Genotype.from_dict, data)


def test_genotype_from_dict_rejects_non_objects():
    assert "JSON object" in _error(Genotype.from_dict, [1, 2, 3])
    assert "JSON object" in _error(SPACE.genotype_from_json, "DARTS")


# -- canonical keys --------------------------------------------------------------------------------
def test_key_hand_computed_text():
    space = MicroSpace(n_blocks=1)
    assert space.key([3, 1, 0, 0, 2, 0, 2, 1]) == (
        "micro:N[2=max_pool_3x3@0+sep_conv_3x3@1]R[2=skip_connect@0+skip_connect@1]"
    )


def test_key_swapping_the_operands_of_a_block():
    g = list(HAND_GENOME)
    for b in range(10):
        swapped = list(g)
        swapped[4 * b: 4 * b + 4] = g[4 * b + 2: 4 * b + 4] + g[4 * b: 4 * b + 2]
        assert SPACE.key(swapped) == SPACE.key(g)


def test_key_renumbering_intermediate_nodes_by_hand():
    # A cell whose nodes 2 and 3 both read only the cell inputs (so they can swap places):
    #   2 = sep3(0) + sep5(1); 3 = max(0) + avg(1); 4 = skip(2) + dil3(3);
    #   5 = sep5(4) + max(0); 6 = sep7(5) + skip(2)
    cell_a = [3, 0, 4, 1, 0, 0, 1, 1, 2, 2, 5, 3, 4, 4, 0, 0, 7, 5, 2, 2]
    # the same cell with nodes 2 and 3 swapped (blocks reordered, references updated)
    cell_b = [0, 0, 1, 1, 3, 0, 4, 1, 2, 3, 5, 2, 4, 4, 0, 0, 7, 5, 2, 3]
    reduce = list(HAND_REDUCE)
    assert cell_a != cell_b
    assert SPACE.key(cell_a + reduce) == SPACE.key(cell_b + reduce)
    assert SPACE.key(reduce + cell_a) == SPACE.key(reduce + cell_b)
    # in both, node 6 is the only loose end
    assert SPACE.decode(cell_a + reduce).normal_concat == (6,)
    assert SPACE.decode(cell_b + reduce).normal_concat == (6,)
    # but swapping nodes 2 and 3 only in the consumers (not the producers) is a different cell
    cell_c = [3, 0, 4, 1, 0, 0, 1, 1, 2, 3, 5, 2, 4, 4, 0, 0, 7, 5, 2, 3]
    assert SPACE.key(cell_c + reduce) != SPACE.key(cell_a + reduce)


@pytest.mark.parametrize("space", [MicroSpace(), MicroSpace(n_blocks=3), NB301Space()],
                         ids=["micro", "micro-b3", "nb301"])
def test_key_invariant_under_random_relabelling(space):
    assert relabellings_keeping_the_key(space, relabel_genome, seed=5) > 50


@pytest.mark.parametrize("space", [MicroSpace(), NB301Space()], ids=["micro", "nb301"])
def test_key_changes_with_any_single_operation(space):
    rng = np.random.default_rng(9)
    for _ in range(4):
        g = space.sample(rng)
        key = space.key(g)
        for pos in range(0, space.n_var, 2):  # op positions: 0, 2, 4, ...
            for op in range(len(space.ops)):
                if op == g[pos]:
                    continue
                h = list(g)
                h[pos] = op
                assert space.key(h) != key, (g, pos, op)


def test_key_distinguishes_normal_and_reduction_cells():
    assert SPACE.key(HAND_NORMAL + HAND_REDUCE) != SPACE.key(HAND_REDUCE + HAND_NORMAL)


def test_key_distinguishes_different_wiring():
    # node 3 reading node 2 vs node 3 reading the cell input 0 (same operations)
    a = [3, 0, 3, 1, 3, 2, 3, 1] + [0] * 12 + list(HAND_REDUCE)
    b = [3, 0, 3, 1, 3, 0, 3, 1] + [0] * 12 + list(HAND_REDUCE)
    assert SPACE.key(a) != SPACE.key(b)


def test_random_genomes_give_distinct_keys():
    rng = np.random.default_rng(2024)
    genomes = {SPACE.sample(rng) for _ in range(200)}
    assert len(genomes) == 200
    assert len({SPACE.key(g) for g in genomes}) == 200


def test_canonical_cell_with_explicit_concat():
    darts = published("micro", "DARTS")
    with_cat = canonical_cell(darts.normal, darts.normal_concat)
    assert with_cat.endswith("|cat=2,3,4,5")
    assert canonical_cell(darts.normal) == with_cat.split("|")[0]


# -- space registry --------------------------------------------------------------------------------
def test_get_space_builtins_and_plugins():
    assert isinstance(get_space("micro"), MicroSpace)
    assert isinstance(get_space("macro"), MacroSpace)
    assert isinstance(get_space("nb301"), NB301Space)
    plugin = get_space("rwenas.spaces.micro:MicroSpace", n_blocks=2)
    assert isinstance(plugin, MicroSpace) and plugin.n_var == 16
    with pytest.raises(ConfigError, match="unknown search space 'foo'"):
        get_space("foo")
    with pytest.raises(ConfigError, match="cannot import"):
        get_space("no_such_module_xyz:Space")
    with pytest.raises(ConfigError, match="has no search space 'Nope'"):
        get_space("rwenas.spaces.micro:Nope")
