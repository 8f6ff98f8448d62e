"""Micro search space: NASNet/NSGA-Net cells encoded as integer genomes.

A cell has two inputs (nodes 0 and 1: the outputs of the two previous cells) and ``B`` blocks
(nodes ``2 .. B+1``). Block ``b`` picks two inputs among nodes ``0 .. b+1`` and an operation for
each; its output is ``op_a(in_a) + op_b(in_b)``. The genome is ``[op_a, in_a, op_b, in_b]`` per
block, the normal cell's blocks first, then the reduction cell's: ``4·B·2`` integers.

The cell output concatenates the "loose ends" (intermediate nodes no block uses). Genotypes
follow the DARTS field layout, so published cells with an explicit concat can be built too.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rwenas.errors import GenomeError
from rwenas.spaces.base import Genome, check_integers

#: Operation list of NSGA-Net's micro space, in genome index order.
MICRO_OPS: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "sep_conv_7x7",
    "conv_7x1_1x7",
)

Edge = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """A DARTS-style cell genotype: ``(op, input)`` pairs, two per block, and the concat list."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def to_dict(self) -> dict[str, list]:
        """JSON form in the DARTS field layout."""
        return {
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], ops: Sequence[str] = MICRO_OPS) -> Genotype:
        """Parse and check the DARTS field layout; :class:`GenomeError` on any problem."""
        if not isinstance(data, Mapping):
            raise GenomeError("micro genotype must be a JSON object with normal/reduce fields")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat")
                   if k not in data]
        if missing:
            raise GenomeError(f"micro genotype is missing field(s): {', '.join(missing)}")
        cells = {}
        for cell in ("normal", "reduce"):
            cells[cell] = _parse_edges(data[cell], cell, ops)
            cells[cell + "_concat"] = _parse_concat(
                data[cell + "_concat"], cell, len(cells[cell]) // 2
            )
        return cls(**cells)


def _parse_edges(edges: Any, cell: str, ops: Sequence[str]) -> tuple[Edge, ...]:
    if not isinstance(edges, (list, tuple)) or not edges or len(edges) % 2:
        raise GenomeError(f"genotype field '{cell}' must be a non-empty list of [op, input] "
                          "pairs, two per block")
    out = []
    for j, edge in enumerate(edges):
        if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                or not isinstance(edge[0], str) or isinstance(edge[1], bool)
                or not isinstance(edge[1], int)):
            raise GenomeError(f"genotype '{cell}' entry {j}: expected [op_name, input_index], "
                              f"got {edge!r}")
        op, idx = edge
        if op not in ops:
            raise GenomeError(f"genotype '{cell}' entry {j}: unknown operation {op!r} "
                              f"(known: {', '.join(ops)})")
        block = j // 2
        if not 0 <= idx <= block + 1:
            raise GenomeError(f"genotype '{cell}' entry {j}: input {idx} is out of range for "
                              f"block {block} (allowed 0..{block + 1})")
        out.append((op, idx))
    return tuple(out)


def _parse_concat(concat: Any, cell: str, n_blocks: int) -> tuple[int, ...]:
    if (not isinstance(concat, (list, tuple)) or not concat
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in concat)):
        raise GenomeError(f"genotype field '{cell}_concat' must be a non-empty list of node "
                          "indices")
    for c in concat:
        if not 2 <= c <= n_blocks + 1:
            raise GenomeError(f"genotype '{cell}_concat': node {c} is not an intermediate node "
                              f"(allowed 2..{n_blocks + 1})")
    if len(set(concat)) != len(concat):
        raise GenomeError(f"genotype '{cell}_concat' lists a node twice: {list(concat)}")
    return tuple(concat)


def loose_ends(edges: Sequence[Edge]) -> tuple[int, ...]:
    """Intermediate nodes of a cell that no block takes as input (the cell's output)."""
    n_blocks = len(edges) // 2
    used = {i for _, i in edges}
    return tuple(n for n in range(2, n_blocks + 2) if n not in used)


def canonical_cell(edges: Sequence[Edge], concat: Sequence[int] | None = None) -> str:
    """A key equal exactly for isomorphic cells.

    Two cells are the same network when one becomes the other by swapping the operands of
    blocks and renumbering the intermediate nodes (which only permutes output channels). The
    key is the smallest description over all renumberings. ``concat`` None means the cell's
    output is its loose ends, which the structure already determines.
    """
    n_blocks = len(edges) // 2
    nodes = range(2, n_blocks + 2)
    best: tuple | None = None
    for perm in itertools.permutations(nodes):
        relabel = {0: 0, 1: 1, **dict(zip(nodes, perm, strict=True))}
        blocks = sorted(
            (relabel[2 + b],
             tuple(sorted(((edges[2 * b][0], relabel[edges[2 * b][1]]),
                           (edges[2 * b + 1][0], relabel[edges[2 * b + 1][1]])))))
            for b in range(n_blocks)
        )
        cand = (tuple(blocks), () if concat is None else tuple(sorted(relabel[c] for c in concat)))
        if best is None or cand < best:
            best = cand
    assert best is not None
    blocks, cat = best
    text = ";".join(f"{n}={a[0]}@{a[1]}+{b[0]}@{b[1]}" for n, (a, b) in blocks)
    return text + (f"|cat={','.join(map(str, cat))}" if cat else "")


def canonical_cell_genome(cell: Sequence[int]) -> tuple[int, ...]:
    """The smallest genome (``[op_a, in_a, op_b, in_b]`` per block) of the cells isomorphic to
    ``cell``: over every renumbering of the intermediate nodes that keeps each block after its
    inputs (so the result is a valid genome), with each block's two operands sorted.

    Every renumbering of an isomorphic cell is a renumbering of this one, so the result is
    the same for exactly the cells :func:`canonical_cell` gives one key.
    """
    n_blocks = len(cell) // 4
    blocks = [tuple(cell[4 * b: 4 * b + 4]) for b in range(n_blocks)]
    best: tuple[int, ...] | None = None
    for perm in itertools.permutations(range(2, n_blocks + 2)):
        relabel = {0: 0, 1: 1, **{b + 2: new for b, new in enumerate(perm)}}
        if any(relabel[blk[i]] >= relabel[b + 2] for b, blk in enumerate(blocks) for i in (1, 3)):
            continue  # a block would come before one of its inputs
        ordered: list[tuple[int, ...]] = [()] * n_blocks
        for b, (op_a, in_a, op_b, in_b) in enumerate(blocks):
            first, second = sorted(((op_a, relabel[in_a]), (op_b, relabel[in_b])))
            ordered[relabel[b + 2] - 2] = first + second
        cand = tuple(v for blk in ordered for v in blk)
        if best is None or cand < best:
            best = cand
    assert best is not None  # the identity renumbering is always valid
    return best


class MicroSpace:
    """NASNet/NSGA-Net micro (cell) search space with ``n_blocks`` blocks per cell."""

    name = "micro"

    def __init__(self, n_blocks: int = 5, ops: Sequence[str] = MICRO_OPS) -> None:
        if n_blocks < 1:
            raise GenomeError("a cell needs at least one block")
        self.n_blocks = n_blocks
        self.ops = tuple(ops)
        lower, upper = [], []
        for _cell in range(2):
            for b in range(n_blocks):
                lower += [0, 0, 0, 0]
                upper += [len(self.ops) - 1, b + 1, len(self.ops) - 1, b + 1]
        self._lower = np.array(lower, dtype=np.int64)
        self._upper = np.array(upper, dtype=np.int64)

    # -- bounds -----------------------------------------------------------------------------
    @property
    def n_var(self) -> int:
        return 8 * self.n_blocks

    @property
    def lower(self) -> np.ndarray:
        return self._lower.copy()

    @property
    def upper(self) -> np.ndarray:
        return self._upper.copy()

    # -- genomes ----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Genome:
        """A uniformly random genome (every position uniform within its bounds)."""
        return tuple(int(v) for v in rng.integers(self._lower, self._upper + 1))

    def validate(self, genome: Sequence[Any]) -> Genome:
        return check_integers(genome, self.n_var, self._lower, self._upper, self.name)

    def decode(self, genome: Sequence[int]) -> Genotype:
        """Genome → genotype; concat = loose ends of each cell."""
        g = self.validate(genome)
        half = 4 * self.n_blocks
        normal = self._edges(g[:half])
        reduce = self._edges(g[half:])
        return Genotype(normal, self._concat(normal), reduce, self._concat(reduce))

    def _edges(self, cell: Sequence[int]) -> tuple[Edge, ...]:
        edges: list[Edge] = []
        for b in range(self.n_blocks):
            op_a, in_a, op_b, in_b = cell[4 * b: 4 * b + 4]
            edges += [(self.ops[op_a], in_a), (self.ops[op_b], in_b)]
        return tuple(edges)

    def _concat(self, edges: Sequence[Edge]) -> tuple[int, ...]:
        return loose_ends(edges)

    def encode(self, genotype: Genotype) -> Genome:
        """Genotype → genome; :class:`GenomeError` if this space cannot express it."""
        genome: list[int] = []
        for cell, edges, concat in (("normal", genotype.normal, genotype.normal_concat),
                                    ("reduce", genotype.reduce, genotype.reduce_concat)):
            if len(edges) != 2 * self.n_blocks:
                raise GenomeError(f"genotype '{cell}' has {len(edges) // 2} blocks; this space "
                                  f"has {self.n_blocks}")
            expected = self._concat(edges)
            if tuple(sorted(concat)) != tuple(sorted(expected)):
                raise GenomeError(
                    f"genotype '{cell}_concat' {list(concat)} differs from what the {self.name} "
                    f"space derives ({list(expected)}), so no genome of this space encodes it"
                )
            for op, idx in edges:
                if op not in self.ops:
                    raise GenomeError(f"operation {op!r} is not in the {self.name} space")
                genome += [self.ops.index(op), idx]
        return self.validate(genome)

    def canonical(self, genome: Sequence[int]) -> Genome:
        """The representative genome of ``genome``'s equivalence class: equal exactly when the
        keys are equal, so a network built from it depends on the key alone (an isomorphic
        twin would otherwise put differently seeded weights on different operations)."""
        g = self.validate(genome)
        half = 4 * self.n_blocks
        return self.validate(canonical_cell_genome(g[:half]) + canonical_cell_genome(g[half:]))

    def key(self, genome: Sequence[int]) -> str:
        """Canonical key (see :func:`canonical_cell`) of both cells."""
        gt = self.decode(genome)
        return f"{self.name}:N[{canonical_cell(gt.normal)}]R[{canonical_cell(gt.reduce)}]"

    # -- genotypes and networks -------------------------------------------------------------
    def genotype_to_json(self, genotype: Genotype) -> dict[str, list]:
        return genotype.to_dict()

    def genotype_from_json(self, data: Any) -> Genotype:
        return Genotype.from_dict(data, self.ops)


    def describe(self, genotype: Genotype) -> str:
        """Readable multi-line text of a genotype."""
        lines = []
        for cell, edges, concat in (("normal", genotype.normal, genotype.normal_concat),
                                    ("reduce", genotype.reduce, genotype.reduce_concat)):
            lines.append(f"{cell} cell:")
            for b in range(len(edges) // 2):
                (oa, ia), (ob, ib) = edges[2 * b], edges[2 * b + 1]
                lines.append(f"  node {b + 2} = {oa}(node {ia}) + {ob}(node {ib})")
            lines.append(f"  output = concat(nodes {', '.join(map(str, concat))})")
        return "\n".join(lines)
