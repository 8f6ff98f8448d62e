"""The NAS-Bench-301 variant of the micro space.

NAS-Bench-301 covers the DARTS cell space: 4 blocks per cell, the first 7 operations of the
micro list, the two inputs of every block distinct, and the cell output concatenating all four
intermediate nodes. The paper searches this space with the micro genome and "fixes" a genome
that uses the same input twice in a block by choosing another input at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rwenas.errors import GenomeError
from rwenas.spaces.base import Genome
from rwenas.spaces.micro import MICRO_OPS, Edge, MicroSpace

NB301_OPS: tuple[str, ...] = MICRO_OPS[:7]


class NB301Space(MicroSpace):
    """Micro space restricted to NAS-Bench-301: B=4, 7 ops, distinct inputs, concat all."""

    name = "nb301"

    def __init__(self) -> None:
        super().__init__(n_blocks=4, ops=NB301_OPS)

    def sample(self, rng: np.random.Generator) -> Genome:
        genome = []
        for _cell in range(2):
            for b in range(self.n_blocks):
                in_a, in_b = rng.choice(b + 2, size=2, replace=False)
                op_a, op_b = rng.integers(0, len(self.ops), size=2)
                genome += [int(op_a), int(in_a), int(op_b), int(in_b)]
        return tuple(genome)

    def validate(self, genome: Sequence[Any]) -> Genome:
        g = super().validate(genome)
        for pos in range(0, self.n_var, 4):
            if g[pos + 1] == g[pos + 3]:
                cell = "normal" if pos < self.n_var // 2 else "reduce"
                block = (pos % (self.n_var // 2)) // 4
                raise GenomeError(
                    f"nb301 genome: {cell} block {block} uses input {g[pos + 1]} twice "
                    "(NAS-Bench-301 needs two distinct inputs; see NB301Space.fix)"
                )
        return g

    def _concat(self, edges: Sequence[Edge]) -> tuple[int, ...]:
        return tuple(range(2, len(edges) // 2 + 2))

    def fix(self, genome: Sequence[int], rng: np.random.Generator) -> Genome:
        """Repair duplicated block inputs: the second input of such a block is replaced by a
        random other allowed input (the paper's fix operation). Valid genomes are unchanged."""
        g = list(MicroSpace.validate(self, genome))
        for pos in range(0, self.n_var, 4):
            if g[pos + 1] == g[pos + 3]:
                block = (pos % (self.n_var // 2)) // 4
                others = [i for i in range(block + 2) if i != g[pos + 1]]
                g[pos + 3] = int(rng.choice(others))
        return self.validate(g)
