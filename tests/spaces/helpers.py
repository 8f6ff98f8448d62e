"""Checks shared by the space tests."""
from collections.abc import Callable

import numpy as np
import pytest

from rwenas.errors import GenomeError


def genome_error(fn, *args) -> str:
    """Call ``fn`` expecting a one-line GenomeError; return its message."""
    with pytest.raises(GenomeError) as info:
        fn(*args)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def relabellings_keeping_the_key(space, relabel: Callable, seed: int, n: int = 60) -> int:
    """Relabel ``n`` sampled genomes with ``relabel(space, genome, rng)``, assert every copy is
    valid and keeps the key, and return how many copies differ from their original (so a caller
    can check the relabelling is not the identity)."""
    rng = np.random.default_rng(seed)
    changed = 0
    for _ in range(n):
        g = space.sample(rng)
        h = relabel(space, g, rng)
        space.validate(h)
        changed += h != g
        assert space.key(h) == space.key(g), (g, h)
    return changed
