"""Macro search space: Genetic-CNN/NSGA-Net phases encoded as bit strings.

The network has 3 phases separated by 2×2 max-pooling. A phase has ``K`` nodes (each a
conv3×3-BN-ReLU); one bit per ordered pair ``i < j`` says whether node ``i`` feeds node ``j``,
followed by one residual bit (phase input also goes to the phase output). Bits of a phase are
ordered as in NSGA-Net: node 2's input from node 1, node 3's inputs from nodes 1-2, and so on.

Decoding rules (NSGA-Net): a node with inputs but no outputs feeds the phase output; a node
with outputs but no inputs takes the phase input; isolated nodes are dropped; a node with
several inputs concatenates them (then a 1×1 conv); a phase without connections is removed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rwenas.errors import GenomeError
from rwenas.spaces.base import Genome, check_integers, parse_genome

PhaseGraph = dict[int, tuple[int, ...]]


@dataclass(frozen=True)
class MacroGenotype:
    """Per-phase connection bits: ``phases[p]`` is the flat list of ``K(K-1)/2 + 1`` bits."""

    phases: tuple[tuple[int, ...], ...]
    n_nodes: int

    def to_nested(self) -> list[list[list[int]]]:
        """NSGA-Net's nested layout: per phase ``[[b12], [b13, b23], ..., [residual]]``."""
        out = []
        for bits in self.phases:
            phase, pos = [], 0
            for j in range(2, self.n_nodes + 1):
                phase.append(list(bits[pos: pos + j - 1]))
                pos += j - 1
            phase.append([bits[pos]])
            out.append(phase)
        return out

    def bits(self) -> Genome:
        return tuple(b for phase in self.phases for b in phase)


def phase_graph(bits: Sequence[int], n_nodes: int) -> PhaseGraph | None:
    """Dependencies of each node of one phase after NSGA-Net's repairs, or None if inactive.

    Node 0 is the phase input, nodes ``1..K`` the conv nodes, ``K+1`` the phase output. Nodes
    with no dependencies are dropped (they are isolated).
    """
    conn = bits[:-1]
    if not any(conn):
        return None
    deps: dict[int, list[int]] = {1: []}
    pos = 0
    for j in range(2, n_nodes + 1):
        deps[j] = [i + 1 for i in range(j - 1) if conn[pos + i]]
        pos += j - 1
    out = n_nodes + 1
    deps[out] = [0] if bits[-1] else []
    has_output = {i: any(i in deps[j] for j in range(i + 1, n_nodes + 1))
                  for i in range(1, n_nodes + 1)}
    for i in range(1, n_nodes + 1):
        if deps[i] and not has_output[i]:
            deps[out].append(i)
    for i in range(1, n_nodes + 1):
        if not deps[i] and has_output[i]:
            deps[i].append(0)
    return {k: tuple(v) for k, v in deps.items() if v}


def canonical_phase(graph: PhaseGraph, n_nodes: int) -> str:
    """Key equal exactly for isomorphic phase graphs (all conv nodes are alike)."""
    out = n_nodes + 1
    nodes = sorted(k for k in graph if k != out)
    best: tuple | None = None
    for perm in itertools.permutations(range(1, len(nodes) + 1)):
        relabel = {0: 0, out: len(nodes) + 1, **dict(zip(nodes, perm, strict=True))}
        edges = tuple(sorted((relabel[s], relabel[d]) for d, srcs in graph.items() for s in srcs))
        if best is None or edges < best:
            best = edges
    assert best is not None
    return ",".join(f"{s}>{d}" for s, d in best)


def canonical_phase_bits(bits: Sequence[int], n_nodes: int) -> tuple[int, ...]:
    """The smallest bits of the phases isomorphic to ``bits`` (one phase, residual bit last):
    its active nodes renumbered ``1..m`` in every topological order, isolated nodes last and
    unconnected, the residual bit kept; all zeros for a removed phase. Equal exactly for the
    phases :func:`canonical_phase` gives one key."""
    n_bits = n_nodes * (n_nodes - 1) // 2 + 1
    graph = phase_graph(bits, n_nodes)
    if graph is None:
        return (0,) * n_bits
    out = n_nodes + 1
    active = sorted(k for k in graph if k != out)
    # node-to-node edges (the repairs only add input->node and node->output edges, which the
    # bits imply again)
    edges = [(s, d) for d, srcs in graph.items() if d != out for s in srcs if s != 0]
    best: tuple[int, ...] | None = None
    for perm in itertools.permutations(range(1, len(active) + 1)):
        relabel = dict(zip(active, perm, strict=True))
        if any(relabel[s] >= relabel[d] for s, d in edges):
            continue
        cand = [0] * n_bits
        for s, d in edges:
            i, j = relabel[s], relabel[d]
            cand[(j - 1) * (j - 2) // 2 + i - 1] = 1  # bit of edge i -> j (see the layout)
        cand[-1] = int(bits[-1])
        if best is None or tuple(cand) < best:
            best = tuple(cand)
    assert best is not None
    return best


class MacroSpace:
    """Genetic-CNN/NSGA-Net macro search space: ``n_phases`` phases of ``n_nodes`` nodes."""

    name = "macro"

    def __init__(self, n_phases: int = 3, n_nodes: int = 6) -> None:
        if n_phases < 1 or n_nodes < 2:
            raise GenomeError("the macro space needs at least 1 phase of at least 2 nodes")
        self.n_phases = n_phases
        self.n_nodes = n_nodes
        self.phase_bits = n_nodes * (n_nodes - 1) // 2 + 1

    @property
    def n_var(self) -> int:
        return self.n_phases * self.phase_bits

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(self.n_var, dtype=np.int64)

    @property
    def upper(self) -> np.ndarray:
        return np.ones(self.n_var, dtype=np.int64)

    def sample(self, rng: np.random.Generator) -> Genome:
        return tuple(int(v) for v in rng.integers(0, 2, size=self.n_var))

    def validate(self, genome: Sequence[Any]) -> Genome:
        return check_integers(genome, self.n_var, self.lower, self.upper, self.name)

    def decode(self, genome: Sequence[int]) -> MacroGenotype:
        g = self.validate(genome)
        pb = self.phase_bits
        return MacroGenotype(tuple(g[p * pb:(p + 1) * pb] for p in range(self.n_phases)),
                             self.n_nodes)

    def encode(self, genotype: MacroGenotype) -> Genome:
        return self.validate(genotype.bits())

    def graphs(self, genome: Sequence[int]) -> list[PhaseGraph | None]:
        """The repaired graph of every phase (None for a removed phase)."""
        return [phase_graph(bits, self.n_nodes) for bits in self.decode(genome).phases]

    def canonical(self, genome: Sequence[int]) -> Genome:
        """The representative genome of ``genome``'s key: active phases first (they take the
        first channel widths anyway), each as :func:`canonical_phase_bits`, removed phases all
        zeros. Building from it makes a network a function of the key alone."""
        phases = [canonical_phase_bits(b, self.n_nodes) for b in self.decode(genome).phases]
        active = [p for p in phases if any(p)]
        rest = [(0,) * self.phase_bits] * (self.n_phases - len(active))
        return tuple(b for p in active + rest for b in p)

    def key(self, genome: Sequence[int]) -> str:
        """Active phases in order, each by its canonical graph; inactive phases vanish."""
        parts = [canonical_phase(g, self.n_nodes) for g in self.graphs(genome) if g is not None]
        return f"{self.name}:" + "|".join(f"[{p}]" for p in parts)

    def genotype_to_json(self, genotype: MacroGenotype) -> list:
        return genotype.to_nested()

    def genotype_from_json(self, data: Any) -> MacroGenotype:
        """Accept NSGA-Net's nested per-phase lists, a flat bit list or a bit string."""
        if isinstance(data, str):
            text = data.strip()
            flat = (tuple(int(c) for c in text) if text.isascii() and text.isdigit()
                    else parse_genome(text))
            return self.decode(flat)
        if isinstance(data, (list, tuple)) and data and all(
                isinstance(p, (list, tuple)) for p in data):
            if len(data) != self.n_phases:
                raise GenomeError(f"macro genotype has {len(data)} phases; expected "
                                  f"{self.n_phases}")
            flat: list[Any] = []
            for p, phase in enumerate(data):
                shape = [len(x) if isinstance(x, (list, tuple)) else -1 for x in phase]
                expected = [*range(1, self.n_nodes), 1]
                if shape != expected:
                    raise GenomeError(f"macro genotype phase {p}: expected lists of lengths "
                                      f"{expected}, got {shape}")
                flat += [b for x in phase for b in x]
            return self.decode(flat)
        if isinstance(data, (list, tuple)):
            return self.decode(data)
        raise GenomeError("macro genotype must be nested per-phase lists, a bit list or a "
                          "bit string")


    def describe(self, genotype: MacroGenotype) -> str:
        lines = []
        for p, bits in enumerate(genotype.phases):
            graph = phase_graph(bits, self.n_nodes)
            if graph is None:
                lines.append(f"phase {p}: removed (no connections)")
                continue
            lines.append(f"phase {p}:")
            out = self.n_nodes + 1
            for node in sorted(graph):
                name = "output" if node == out else f"node {node}"
                srcs = ", ".join("input" if s == 0 else f"node {s}" for s in graph[node])
                lines.append(f"  {name} <- {srcs}")
        return "\n".join(lines)
