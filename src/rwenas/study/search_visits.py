"""The architectures an NSGA-II search visits, generation by generation (for the study).

:func:`nsga2_visits` runs the search's NSGA-II (:func:`rwenas.search.nsga2.make_algorithm`, the
paper's operators) ask-and-tell over two objectives, a driver estimator's value and
multiply-adds, and yields each generation's parents and offspring. It stores nothing: the
estimator study correlates estimators over each generation, and ``rwenas bench add-search``
samples architectures across generations into a bench's pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from rwenas.errors import ConfigError

__all__ = ["nsga2_visits", "spread_over_generations"]

Genome = tuple[int, ...]


def _worst(v: float) -> float:
    return v if math.isfinite(v) else 1e12


def nsga2_visits(space: Any, driver: Callable[[Genome], float],
                 madds: Callable[[Genome], float], *, seed: int, generations: int,
                 pop_size: int) -> Iterator[tuple[int, list[Genome], list[Genome]]]:
    """Yield ``(generation, parents, offspring)`` of an NSGA-II search minimising
    ``driver(genome)`` (non-finite values count as the worst) and ``madds(genome)``.

    Generation 0 is the initial population (no parents). Genomes are repaired with the
    space's ``fix`` where it has one, with a generator seeded by ``seed``, so a seed gives
    the same search."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.problems.static import StaticProblem

    from rwenas.search.algorithms import make_algorithm

    if generations < 1 or pop_size < 2:
        raise ConfigError("a search needs at least one generation and pop_size >= 2")
    config = {"objectives": ["driver", "madds"], "pop_size": pop_size,
              "generations": generations, "crossover_prob": 0.9, "mutation_eta": 3.0,
              "seed": seed}
    algorithm = make_algorithm(space, config)
    fix_rng = np.random.default_rng([seed, 301])
    generation = 0
    while algorithm.has_next():
        parents = [] if algorithm.pop is None else [
            tuple(int(v) for v in x) for x in algorithm.pop.get("X")]
        pop = algorithm.ask()
        genomes = [tuple(int(v) for v in np.rint(x)) for x in pop.get("X")]
        if hasattr(space, "fix"):
            genomes = [space.fix(g, fix_rng) for g in genomes]
            pop.set("X", np.array(genomes, dtype=int))
        F = np.array([[_worst(driver(g)), madds(g)] for g in genomes], dtype=float)
        Evaluator().eval(StaticProblem(algorithm.problem, F=F), pop)
        algorithm.tell(infills=pop)
        yield generation, parents, genomes
        generation += 1


def spread_over_generations(first_visit: Sequence[tuple[str, int]], seed: Sequence[int]
                            ) -> list[str]:
    """Keys ordered so that any prefix spreads over the generations: each generation's keys
    (``(key, generation of first visit)``) are shuffled by a generator seeded with ``seed``,
    then taken round-robin, one per generation in turn. Taking the first ``N`` samples the
    search evenly across its generations, and a larger ``N`` extends a smaller one."""
    groups: dict[int, list[str]] = {}
    for key, gen in first_visit:
        groups.setdefault(int(gen), []).append(key)
    rng = np.random.default_rng([int(s) & 0x7FFFFFFF for s in seed])
    order = {g: [keys[i] for i in rng.permutation(len(keys))]
             for g, keys in sorted(groups.items())}
    out: list[str] = []
    for r in range(max((len(v) for v in order.values()), default=0)):
        out += [keys[r] for keys in order.values() if r < len(keys)]
    return out
