"""The search algorithms: pymoo's multi-objective algorithms with the paper's integer operators,
and random search as the baseline.

Every algorithm is driven through the same ask-and-tell loop (:class:`rwenas.search.nsga2.Search`)
and asks about ``pop_size`` architectures per generation, so runs with the same ``pop_size`` and
``generations`` spend the same number of evaluations:

``nsga2``   NSGA-II (non-dominated sorting and crowding survival), the paper's algorithm;
``smsemoa`` SMS-EMOA (survival by least hypervolume contribution), with ``pop_size`` offspring
            per generation rather than one, so that a generation is a batch of evaluations;
``agemoea`` AGE-MOEA (survival by an estimate of the front's geometry);
``nsga3``   NSGA-III (survival by reference directions);
``moead``   MOEA/D (decomposition by Tchebycheff for two objectives, PBI otherwise), pymoo's
            batched variant: a generation mates around ``pop_size`` weight vectors at once;
``random``  random search: ``pop_size`` new uniformly random architectures per generation, no
            mating; the population kept is the non-dominated set of all of them.

The genetic algorithms share the operators of the paper (two-point crossover, polynomial
mutation with rounding, integer random sampling), so they differ only in how they select and
survive. The reference directions of NSGA-III and MOEA/D are Das and Dennis's simplex lattice
when it has exactly ``pop_size`` points (always for two objectives), else Riesz s-energy points
(seeded by the run seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.pm import PolynomialMutation
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from rwenas.errors import ConfigError

ALGORITHMS = ("nsga2", "smsemoa", "agemoea", "nsga3", "moead", "random")

#: what the report says about each algorithm
DESCRIPTIONS = {
    "nsga2": "NSGA-II",
    "smsemoa": "SMS-EMOA",
    "agemoea": "AGE-MOEA",
    "nsga3": "NSGA-III",
    "moead": "MOEA/D",
    "random": "random search",
}


class ArchitectureProblem(Problem):
    """The search problem as pymoo sees it: integer genomes within the space's bounds, with
    ``n_constr`` inequality constraints. Nothing is computed here (ask-and-tell)."""

    def __init__(self, n_var: int, n_obj: int, lower: np.ndarray, upper: np.ndarray,
                 n_constr: int = 0) -> None:
        super().__init__(n_var=n_var, n_obj=n_obj, n_ieq_constr=n_constr, xl=lower, xu=upper,
                         vtype=int)


class SeededSampling(IntegerRandomSampling):
    """The given genomes first (a warm start), then uniformly random integer genomes up to
    the number asked for (without genomes: exactly pymoo's integer random sampling)."""

    def __init__(self, genomes: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        self.genomes = [tuple(int(v) for v in g) for g in genomes]

    def _do(self, problem: Problem, n_samples: int, *args: Any, random_state: Any = None,
            **kwargs: Any) -> np.ndarray:
        given = np.array(self.genomes[:n_samples], dtype=int).reshape(-1, problem.n_var)
        n_random = n_samples - len(given)
        if n_random == 0:
            return given
        rand = super()._do(problem, n_random, random_state=random_state)
        return np.vstack([given, np.asarray(rand, dtype=int)]) if len(given) else rand


class RandomSearch(Algorithm):
    """Random search as an ask-and-tell algorithm: each generation asks for ``pop_size`` new
    random genomes (none asked before); ``pop`` is the non-dominated set of everything told,
    feasible solutions first."""

    def __init__(self, pop_size: int, sampling: Sampling | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pop_size = pop_size
        self.sampling = sampling if sampling is not None else SeededSampling()
        self.seen: set[tuple[int, ...]] = set()

    def _sample(self, warm: bool) -> Population:
        sampling = self.sampling if warm else SeededSampling()
        out: list[tuple[int, ...]] = []
        for _ in range(100):  # a small space may run out of new genomes: stop trying
            X = sampling.do(self.problem, self.pop_size - len(out),
                            random_state=self.random_state).get("X")
            sampling = SeededSampling()
            for x in X:
                g = tuple(int(v) for v in x)
                if g not in self.seen:
                    self.seen.add(g)
                    out.append(g)
            if len(out) == self.pop_size:
                break
        return Population.new("X", np.array(out, dtype=int).reshape(-1, self.problem.n_var))

    def _initialize_infill(self) -> Population:
        return self._sample(warm=True)

    def _infill(self) -> Population:
        return self._sample(warm=False)

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = self._survivors(infills)

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = self._survivors(Population.merge(self.pop, infills))

    @staticmethod
    def _survivors(pop: Population) -> Population:
        cv = pop.get("CV")
        feasible = np.flatnonzero(cv[:, 0] <= 0) if cv is not None else np.arange(len(pop))
        if len(feasible) == 0:
            return pop[[int(np.argmin(cv[:, 0]))]]
        front = NonDominatedSorting().do(pop[feasible].get("F"), only_non_dominated_front=True)
        return pop[feasible[np.asarray(front, dtype=int)]]


# pymoo decorates some tournament comparisons with a closure (``default_random_state``). The
# search never pickles its algorithm (a resume replays the recorded generations), but these
# module-level functions, which delegate to pymoo's, keep the algorithms picklable by name
# for anyone who does (e.g. to ship one to a worker).
def _sms_tournament(pop: Population, P: np.ndarray, *args: Any, random_state: Any = None,
                    **kwargs: Any) -> np.ndarray:
    from pymoo.algorithms.moo.sms import cv_and_dom_tournament

    return cv_and_dom_tournament(pop, P, *args, random_state=random_state, **kwargs)


def _nsga3_tournament(pop: Population, P: np.ndarray, *args: Any, random_state: Any = None,
                      **kwargs: Any) -> np.ndarray:
    from pymoo.algorithms.moo.nsga3 import comp_by_cv_then_random

    return comp_by_cv_then_random(pop, P, random_state=random_state, **kwargs)


def reference_directions(n_obj: int, n_points: int, seed: int) -> np.ndarray:
    """``n_points`` reference directions on the unit simplex (see the module docstring)."""
    from math import comb

    from pymoo.util.ref_dirs import get_reference_directions

    for p in range(1, n_points):
        if comb(p + n_obj - 1, n_obj - 1) == n_points:
            return get_reference_directions("das-dennis", n_obj, n_partitions=p)
        if comb(p + n_obj - 1, n_obj - 1) > n_points:
            break
    return get_reference_directions("energy", n_obj, n_points, seed=seed)


def make_algorithm(space: Any, config: dict[str, Any], n_constr: int = 0,
                   initial: Sequence[Sequence[int]] = ()) -> Algorithm:
    """``config["algorithm"]`` (default NSGA-II) set up for ``config["generations"]``
    generations (the initial population counts as the first, as in pymoo and the paper);
    ``initial`` genomes seed the first generation."""
    name = config.get("algorithm", "nsga2")
    n_obj = len(config["objectives"])
    pop_size = int(config["pop_size"])
    problem = ArchitectureProblem(space.n_var, n_obj, space.lower, space.upper, n_constr)
    sampling = SeededSampling(initial)
    operators = dict(
        sampling=sampling,
        crossover=TwoPointCrossover(prob=float(config["crossover_prob"])),
        mutation=PolynomialMutation(prob=1.0, eta=float(config["mutation_eta"]),
                                    repair=RoundingRepair()),
    )
    algorithm: Algorithm
    if name == "nsga2":
        from pymoo.algorithms.moo.nsga2 import NSGA2

        algorithm = NSGA2(pop_size=pop_size, eliminate_duplicates=True, **operators)
    elif name == "smsemoa":
        from pymoo.algorithms.moo.sms import SMSEMOA

        algorithm = SMSEMOA(pop_size=pop_size, n_offsprings=pop_size, eliminate_duplicates=True,
                            selection=TournamentSelection(func_comp=_sms_tournament),
                            **operators)
    elif name == "agemoea":
        import importlib.util

        if importlib.util.find_spec("numba") is None:  # pymoo's AGE-MOEA is compiled by numba
            raise ConfigError("the agemoea algorithm needs numba: pip install 'rwenas[agemoea]'")
        from pymoo.algorithms.moo.age import AGEMOEA

        algorithm = AGEMOEA(pop_size=pop_size, eliminate_duplicates=True, **operators)
    elif name == "nsga3":
        from pymoo.algorithms.moo.nsga3 import NSGA3

        algorithm = NSGA3(reference_directions(n_obj, pop_size, config["seed"]),
                          pop_size=pop_size, eliminate_duplicates=True,
                          selection=TournamentSelection(func_comp=_nsga3_tournament),
                          **operators)
    elif name == "moead":
        from pymoo.algorithms.moo.moead import ParallelMOEAD

        if n_constr:
            raise ConfigError("moead does not support hard constraints (--max-madds, "
                              "--max-params, --max-latency-ms); use another algorithm")
        algorithm = ParallelMOEAD(reference_directions(n_obj, pop_size, config["seed"]),
                                  n_neighbors=min(pop_size, max(3, pop_size // 5)),
                                  **operators)
    elif name == "random":
        algorithm = RandomSearch(pop_size, sampling=sampling)
    else:
        raise ConfigError(f"unknown algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    algorithm.setup(problem, termination=("n_gen", config["generations"]),
                    seed=config["seed"], verbose=False)
    return algorithm
