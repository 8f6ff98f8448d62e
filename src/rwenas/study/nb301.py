"""NAS-Bench-301 adapter: nb301-space genomes → the surrogate's genotype format → accuracy.

The ``nasbench301`` package (optional) predicts the CIFAR-10 validation accuracy (in percent)
of a DARTS-space cell pair from a genotype namedtuple
``Genotype(normal=[(op, input), ...], normal_concat=[2, 3, 4, 5], reduce=..., reduce_concat=...)``
with DARTS operation names, which is exactly the layout of
:class:`rwenas.spaces.nb301.NB301Space` genotypes (the 7 NB301 operations carry the DARTS
names; inputs 0/1 are the two previous cells, 2.. the intermediate nodes). Genomes that use the
same input twice in a block are repaired with the paper's fix operation
(:meth:`NB301Space.fix`) when ``fix=True``.

The package is imported lazily and its model files are given by the user
(``nb.load_ensemble(model_dir)``); without them :class:`ConfigError` says so.
"""

from __future__ import annotations

import importlib
from collections import namedtuple
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError

__all__ = [
    "MISSING_MESSAGE",
    "NB301Genotype",
    "NB301Surrogate",
    "from_nb301_genotype",
    "load_surrogate",
    "to_nb301_genotype",
]

#: The genotype namedtuple the nasbench301 examples use (DARTS' ``genotypes.Genotype``).
NB301Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

MISSING_MESSAGE = ("NAS-Bench-301 is optional: pip install nasbench301 and download its model "
                   "files; give --nb301-models DIR")


def _space(space: Any = None):
    from rwenas.spaces.nb301 import NB301Space

    if space is None:
        return NB301Space()
    if getattr(space, "name", None) != "nb301":
        raise ConfigError(f"NAS-Bench-301 covers the nb301 space only, not "
                          f"{getattr(space, 'name', space)!r}")
    return space


def to_nb301_genotype(genome: Sequence[int], *, space: Any = None, fix: bool = False,
                      rng: np.random.Generator | None = None) -> NB301Genotype:
    """The NB301 genotype of an nb301 genome; ``fix=True`` first repairs duplicated block
    inputs with :meth:`NB301Space.fix` (random choice from ``rng``, default seed 0)."""
    space = _space(space)
    if fix:
        genome = space.fix(genome, rng if rng is not None else np.random.default_rng(0))
    gt = space.decode(genome)
    return NB301Genotype(normal=[(op, int(i)) for op, i in gt.normal],
                         normal_concat=list(gt.normal_concat),
                         reduce=[(op, int(i)) for op, i in gt.reduce],
                         reduce_concat=list(gt.reduce_concat))


def from_nb301_genotype(genotype: Any, *, space: Any = None) -> tuple[int, ...]:
    """The nb301 genome of an NB301 genotype (namedtuple or DARTS-layout mapping)."""
    from rwenas.spaces.micro import Genotype

    space = _space(space)
    if isinstance(genotype, dict):
        data = genotype
    else:
        data = {name: getattr(genotype, name) for name in NB301Genotype._fields}
    gt = Genotype.from_dict({k: [list(e) for e in v] if k in ("normal", "reduce") else list(v)
                             for k, v in data.items()}, space.ops)
    return space.encode(gt)


def _import_nasbench301():
    try:
        return importlib.import_module("nasbench301")
    except Exception:  # ImportError, or a broken install of its heavy dependencies
        raise ConfigError(MISSING_MESSAGE) from None


class NB301Surrogate:
    """A loaded NAS-Bench-301 surrogate ensemble: :meth:`accuracy` of nb301 genomes."""

    def __init__(self, model: Any, *, fix_seed: int = 0) -> None:
        self.model = model
        self.rng = np.random.default_rng(fix_seed)
        self.space = _space()

    def accuracy(self, genome: Sequence[int]) -> float:
        """Predicted validation accuracy (a fraction) without noise; invalid genomes are fixed
        first."""
        genotype = to_nb301_genotype(genome, space=self.space, fix=True, rng=self.rng)
        value = self.model.predict(config=genotype, representation="genotype",
                                   with_noise=False)
        return float(value) / 100.0


def load_surrogate(model_dir: str | Path | None) -> NB301Surrogate:
    """Load the surrogate from ``model_dir`` (the unpacked nb301 model files of the
    performance model); :class:`ConfigError` with :data:`MISSING_MESSAGE` when the package or
    the files are missing."""
    if model_dir is None:
        raise ConfigError(MISSING_MESSAGE)
    path = Path(model_dir).expanduser()
    nb = _import_nasbench301()
    if not path.is_dir():
        raise ConfigError(f"NAS-Bench-301 model directory {path} does not exist; "
                          + MISSING_MESSAGE)
    try:
        model = nb.load_ensemble(str(path))
    except Exception as exc:  # whatever the package raises on bad files
        raise ConfigError(f"cannot load the NAS-Bench-301 surrogate from {path}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from None
    return NB301Surrogate(model)
