"""Published architectures as named built-ins (architecture facts, in the DARTS layout).

Sources: the genotype lists of DARTS (Liu et al., ICLR 2019; ``DARTS`` is the second-order
cell, DARTS_V2) and NSGA-Net (Lu et al., GECCO 2019), which also lists NASNet-A, AmoebaNet-A
and ENAS in the same layout.
"""

from __future__ import annotations

from rwenas.errors import GenomeError
from rwenas.spaces.macro import MacroGenotype
from rwenas.spaces.micro import Genotype


def _g(normal, normal_concat, reduce, reduce_concat) -> Genotype:
    return Genotype(tuple(normal), tuple(normal_concat), tuple(reduce), tuple(reduce_concat))


MICRO_ARCHS: dict[str, Genotype] = {
    "NASNet": _g(
        [("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
         ("avg_pool_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
         ("sep_conv_3x3", 1), ("skip_connect", 1)],
        [2, 3, 4, 5, 6],
        [("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
         ("avg_pool_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2),
         ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
        [4, 5, 6],
    ),
    "AmoebaNet": _g(
        [("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
         ("sep_conv_3x3", 0), ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1),
         ("skip_connect", 0), ("avg_pool_3x3", 1)],
        [4, 5, 6],
        [("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
         ("sep_conv_7x7", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1),
         ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
        [3, 4, 6],
    ),
    "DARTS": _g(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [2, 3, 4, 5],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        [2, 3, 4, 5],
    ),
    "ENAS": _g(
        [("sep_conv_3x3", 1), ("skip_connect", 1), ("sep_conv_5x5", 1), ("skip_connect", 0),
         ("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("avg_pool_3x3", 0),
         ("sep_conv_5x5", 1), ("avg_pool_3x3", 0)],
        [2, 3, 4, 5, 6],
        [("sep_conv_5x5", 0), ("avg_pool_3x3", 1), ("sep_conv_3x3", 1), ("avg_pool_3x3", 1),
         ("avg_pool_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_5x5", 4), ("avg_pool_3x3", 1),
         ("sep_conv_3x3", 5), ("sep_conv_5x5", 0)],
        [2, 3, 6],
    ),
    "NSGANet": _g(
        [("skip_connect", 0), ("max_pool_3x3", 0), ("dil_conv_5x5", 0), ("max_pool_3x3", 0),
         ("dil_conv_5x5", 1), ("sep_conv_3x3", 3), ("max_pool_3x3", 1), ("sep_conv_5x5", 3),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 0)],
        [2, 4, 5, 6],
        [("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("dil_conv_5x5", 1), ("skip_connect", 2), ("avg_pool_3x3", 1),
         ("dil_conv_5x5", 1), ("dil_conv_3x3", 1)],
        [3, 4, 5, 6],
    ),
}

#: NSGA-Net's macro architecture, in its nested per-phase layout.
_NSGANET_MACRO = [
    [[1], [0, 0], [0, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1, 1], [0]],
    [[0], [0, 0], [0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 1, 1], [0]],
    [[0], [0, 1], [1, 0, 1], [1, 0, 1, 1], [1, 0, 0, 1, 1], [0]],
]

MACRO_ARCHS: dict[str, MacroGenotype] = {
    "NSGANet": MacroGenotype(
        tuple(tuple(b for node in phase for b in node) for phase in _NSGANET_MACRO), 6
    ),
}

_ALIASES = {"nsga-net": "NSGANet", "nsganet": "NSGANet", "darts": "DARTS", "darts_v2": "DARTS",
            "nasnet": "NASNet", "nasnet-a": "NASNet", "amoebanet": "AmoebaNet",
            "amoebanet-a": "AmoebaNet", "enas": "ENAS"}


def published(space: str, name: str) -> Genotype | MacroGenotype:
    """A published architecture by (case-insensitive) name for the ``micro`` or ``macro`` space."""
    table = (MICRO_ARCHS if space in ("micro", "nb301") else MACRO_ARCHS if space == "macro"
             else None)
    if table is None:
        raise GenomeError(f"no published architectures for space {space!r}")
    canonical = _ALIASES.get(name.lower(), name)
    if canonical not in table:
        raise GenomeError(f"unknown {space} architecture {name!r} (known: {', '.join(table)})")
    genotype = table[canonical]
    if space == "nb301":  # only cells that NAS-Bench-301's space contains
        from rwenas.spaces.nb301 import NB301Space

        try:
            NB301Space().encode(genotype)
        except GenomeError as exc:
            raise GenomeError(f"{canonical} is not in the nb301 space: {exc}") from None
    return genotype
