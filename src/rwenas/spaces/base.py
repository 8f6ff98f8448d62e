"""The search-space protocol and genome helpers shared by every space.

A search space is a pure description of an encoding: integer genomes with bounds, seeded
sampling, validation, decoding to a genotype (a human-readable architecture) and a canonical
key that is equal exactly for genomes that decode to the same network. Building the PyTorch
network lives in :mod:`rwenas.models`, which knows the built-in spaces' networks; spaces never
import torch (an import-linter contract checks it). A plugin space that is not derived from a
built-in one also defines ``build(genome_or_genotype, **setting)`` (see docs/plugins.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rwenas.errors import GenomeError

Genome = tuple[int, ...]


@runtime_checkable
class SearchSpace(Protocol):
    """What every search space (built-in or a user's plugin) provides."""

    name: str

    @property
    def n_var(self) -> int:
        """Number of integers in a genome."""

    @property
    def lower(self) -> np.ndarray:
        """Inclusive lower bound of every genome position."""

    @property
    def upper(self) -> np.ndarray:
        """Inclusive upper bound of every genome position."""

    def sample(self, rng: np.random.Generator) -> Genome:
        """A uniformly random valid genome."""

    def validate(self, genome: Sequence[Any]) -> Genome:
        """The genome as a tuple of ints, or :class:`GenomeError` naming the problem."""

    def decode(self, genome: Sequence[int]) -> Any:
        """The genotype (architecture description) of a valid genome."""

    def key(self, genome: Sequence[int]) -> str:
        """Canonical key: equal exactly for genomes that decode to the same network."""

    def genotype_to_json(self, genotype: Any) -> Any:
        """A JSON-serialisable form of a genotype."""


def canonical_genome(space: SearchSpace, genome: Sequence[Any]) -> Genome:
    """The genome a network of ``genome`` is built from: ``space.canonical(genome)`` — a
    representative equal for all genomes of one key — for spaces that define it (optional
    in the protocol), else the validated genome itself."""
    canonical = getattr(space, "canonical", None)
    return tuple(canonical(genome)) if canonical is not None else space.validate(genome)


def parse_genome(text: str) -> Genome:
    """Parse a genome written as integers separated by spaces and/or commas.

    Brackets are ignored, so ``"[3, 0, 4, 1]"`` and ``"3 0 4 1"`` are both accepted.
    """
    if not isinstance(text, str):
        raise GenomeError(f"genome must be a string of integers, got {type(text).__name__}")
    tokens = [t for t in re.split(r"[\s,\[\]()]+", text.strip()) if t]
    if not tokens:
        raise GenomeError("genome is empty: give integers separated by spaces, e.g. '3 0 4 1'")
    values = []
    for i, tok in enumerate(tokens):
        if not re.fullmatch(r"[+-]?\d+", tok):
            raise GenomeError(f"genome position {i}: {tok!r} is not an integer")
        if len(tok) > 20:  # no gene has such a range; int() of 5,000 digits would fail
            raise GenomeError(f"genome position {i}: {tok[:12]}... is too large "
                              f"({len(tok)} digits)")
        values.append(int(tok))
    return tuple(values)


def check_integers(genome: Sequence[Any], n_var: int, lower: Iterable[int],
                   upper: Iterable[int], space: str) -> Genome:
    """Validate length, integrality and bounds of a flat genome; return it as a tuple of ints."""
    if isinstance(genome, str):
        genome = parse_genome(genome)
    try:
        values = list(genome)
    except TypeError as exc:
        raise GenomeError(f"{space} genome must be a sequence of integers") from exc
    if len(values) != n_var:
        raise GenomeError(f"{space} genome must have {n_var} integers, got {len(values)}")
    out = []
    for i, (v, lo, hi) in enumerate(zip(values, lower, upper, strict=True)):
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (float, np.floating)):
            if not float(v).is_integer():
                raise GenomeError(f"{space} genome position {i}: {v!r} is not an integer")
            v = int(v)
        if not isinstance(v, (int, np.integer)):
            raise GenomeError(f"{space} genome position {i}: {v!r} is not an integer")
        v = int(v)
        if not lo <= v <= hi:
            raise GenomeError(
                f"{space} genome position {i}: value {v} is outside its range [{lo}, {hi}]"
            )
        out.append(v)
    return tuple(out)


def format_genome(genome: Sequence[int]) -> str:
    """The canonical text form of a genome: integers separated by single spaces."""
    return " ".join(str(int(v)) for v in genome)
