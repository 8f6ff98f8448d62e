"""Objectives beyond multiply-adds, constraints, and the MobileNetV2-style space."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rwenas.complexity import latency_ms, peak_activation_mb
from rwenas.errors import ConfigError, GenomeError
from rwenas.models import create_network
from rwenas.objectives import constraint_values, measurements
from rwenas.search.config import resolve_config
from rwenas.search.executors import EvalContext
from rwenas.search.nsga2 import run_search
from rwenas.search.store import RunStore
from rwenas.spaces import get_space

TINY = {"dataset": "synthetic", "train_size": 160, "val_size": 80, "pop_size": 6,
        "generations": 3, "seed": 2, "network": {"channels": 4, "layers": 3},
        "rwe": {"epochs": 2}}


def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_peak_activation_memory_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(8, 4, 1, bias=False))
    # input 1x32x32 + conv out 8x32x32 + relu out 8x32x32 are alive together (float32)
    expected = (1 + 8 + 8) * 32 * 32 * 4 / 2**20
    assert peak_activation_mb(net, (1, 32, 32)) == pytest.approx(expected)
    assert peak_activation_mb(net, (1, 32, 32), batch=4) == pytest.approx(4 * expected)


def test_latency_is_the_median_of_timed_passes_on_one_thread(monkeypatch):
    """With a fake clock that each forward pass advances by a set amount: the warm-up passes
    are dropped, the result is the median in ms, measured on one thread in eval mode, and the
    thread count and training mode are restored afterwards."""
    import time

    clock = [0.0]
    durations = [9.0, 9.0, 9.0, 0.004, 0.001, 0.003, 0.002, 0.010]  # 3 warm-up, 5 timed (s)
    seen: list[tuple[int, bool, tuple[int, ...]]] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            seen.append((torch.get_num_threads(), self.training, tuple(x.shape)))
            clock[0] += durations[len(seen) - 1]
            return x

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    probe = Probe().train()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ms = latency_ms(probe, (3, 4, 4), batch=5, warmup=3, repeats=5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert ms == pytest.approx(3.0)  # median of 4, 1, 3, 2, 10 ms
    assert seen == [(1, False, (5, 3, 4, 4))] * 8
    assert probe.training


def test_latency_of_a_real_network_is_positive():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    assert latency_ms(net, (3, 32, 32), batch=1, repeats=3) > 0


def test_measurements_and_constraints():
    assert measurements(["rwe", "madds"]) == []
    assert measurements(["rwe", "latency", "memory"]) == ["latency", "memory"]
    assert measurements(["rwe", "madds"], {"max_latency_ms": 5}) == ["latency"]
    cfg = {"max_madds": 10.0, "max_params": None, "max_latency_ms": None}
    assert constraint_values({"madds_m": 12.5}, cfg) == [2.5]
    assert constraint_values({"madds_m": None}, cfg) == [1e12]
    with pytest.raises(ConfigError):
        resolve_config(None, None, {"max_madds": -1})
    with pytest.raises(ConfigError):
        resolve_config(None, None, {"objectives": ["rwe", "speed"]})


def test_three_objective_search_front_is_non_dominated(tmp_path):
    cfg = resolve_config(None, None, {**TINY, "objectives": ["rwe", "madds", "latency"]})
    run_search(cfg, tmp_path / "r3", progress=False)
    front = json.loads((tmp_path / "r3" / "front.json").read_text())
    pts = [[r["objectives"][k] for k in ("rwe", "madds", "latency")] for r in front]
    assert pts and all(not dominates(a, b) for a in pts for b in pts)
    assert all(r["latency_ms"] > 0 for r in front)
    header = (tmp_path / "r3" / "front.csv").read_text().splitlines()[0]
    assert "latency" in header


def test_constrained_search_respects_the_bound(tmp_path):
    bound = 2.5
    cfg = resolve_config(None, None, {**TINY, "max_madds": bound, "pop_size": 8})
    run_search(cfg, tmp_path / "rc", progress=False)
    front = json.loads((tmp_path / "rc" / "front.json").read_text())
    history = (tmp_path / "rc" / "history.csv").read_text().splitlines()
    madds = [float(line.split(",")[5]) for line in history[1:]]
    assert any(m > bound for m in madds), "the bound never bit; lower it"
    assert front and all(r["madds_m"] <= bound for r in front)


def fake_outcome(genome: tuple[int, ...]) -> dict:
    """Made-up measurements: an even first operation gives 1.0 M parameters (over the 0.5 M
    bound of the test below) together with a lower error and fewer MAdds, so every
    infeasible architecture dominates every feasible one in the objectives."""
    odd = genome[0] % 2
    return {"rwe_error": 0.2 + 0.5 * odd + genome[1] / 100, "madds_m": 1.0 + odd + genome[3] / 10,
            "params_m": 0.1 if odd else 1.0, "seconds": 0.0, "features_seconds": 0.0,
            "classifier_seconds": 0.0, "seed": 0, "warning": None}


class FakeExecutor:
    def run(self, genomes):
        for g in genomes:
            yield g, fake_outcome(g)

    def close(self) -> None:
        pass


def test_constraints_decide_tournaments_and_survival(tmp_path, monkeypatch):
    """Constraints reach pymoo: in a binary tournament between a feasible architecture and an
    infeasible one that dominates it in every objective, the feasible one always wins, and
    survival keeps feasible architectures first."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.population import Population

    import rwenas.search.nsga2 as nsga2
    told = []

    class Recording(Evaluator):
        def eval(self, problem, pop, **kwargs):
            out = super().eval(problem, pop, **kwargs)
            told.extend(pop)  # what the search told pymoo: X, F, G, CV per individual
            return out

    made, real = [], nsga2.make_algorithm

    def keep(*args, **kwargs):  # the algorithm the search drives, for the tournament below
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(nsga2, "make_executor", lambda config: FakeExecutor())
    monkeypatch.setattr(nsga2, "Evaluator", Recording)
    monkeypatch.setattr(nsga2, "make_algorithm", keep)
    cfg = resolve_config(None, None, {**TINY, "max_params": 0.5, "pop_size": 8})
    run_search(cfg, tmp_path / "fake", progress=False)

    feasible = [ind for ind in told if ind.X[0] % 2 == 1]
    infeasible = [ind for ind in told if ind.X[0] % 2 == 0]
    assert feasible and infeasible
    assert all(ind.CV[0] == 0 for ind in feasible)
    assert all(ind.G.tolist() == pytest.approx([0.5]) and ind.CV[0] == pytest.approx(0.5)
               for ind in infeasible)
    a, b = feasible[0], infeasible[0]
    assert dominates(list(b.F), list(a.F))
    (algorithm,) = made
    with RunStore.open(tmp_path / "fake") as store:
        last = store.generations()[-1]
        records = {e["key"]: e for e in store.evaluations()}
    pair = Population.create(a, b)
    winners = algorithm.mating.selection.do(algorithm.problem, pair, n_select=20, n_parents=2,
                                            to_pop=False, algorithm=algorithm,
                                            random_state=np.random.default_rng(0))
    assert winners.flatten().tolist() == [0] * 40
    # survival: as many feasible architectures as were found (up to the population size)
    n_feasible_found = len({k for k, e in records.items() if e["params_m"] <= 0.5})
    in_population = sum(records[k]["params_m"] <= 0.5 for k in last["population"])
    assert in_population >= min(8, n_feasible_found) > 0


def test_mobilenet_space():
    space = get_space("mobilenetv2")
    rng = np.random.default_rng(0)
    for _ in range(10):
        g = space.sample(rng)
        assert space.encode(space.decode(g)) != () and space.key(space.encode(space.decode(g))) \
            == space.key(g)
        net = create_network(space, g, in_channels=1, num_classes=5, width=0.25, head=32)
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    g = list(space.sample(rng))
    g[0] = 0  # stage 1 depth 2: blocks 3 and 4 unused
    h = g.copy()
    h[5:9] = [(v + 1) % 3 for v in h[5:9]]
    assert space.key(g) == space.key(h)
    h[1] = (h[1] + 1) % 3
    assert space.key(g) != space.key(h)
    net = create_network(space, g, in_channels=3, num_classes=10, width=0.25, head=32,
                         stem_stride=2)
    assert net.features(torch.randn(1, 3, 224, 224)).shape == (1, 32)
    with pytest.raises(GenomeError):
        space.validate([9] * space.n_var)


def test_mobilenet_search_runs(tmp_path):
    cfg = resolve_config(None, None, {**TINY, "space": "mobilenetv2", "network": {
        "width": 0.25, "head": 32}})
    run_search(cfg, tmp_path / "mb", progress=False)
    front = json.loads((tmp_path / "mb" / "front.json").read_text())
    space = get_space("mobilenetv2")
    with RunStore.open(tmp_path / "mb") as store:
        ok = [e["objectives"] for e in store.evaluations(status="ok")]
        assert store.count_evaluations() >= 6
    pts = [[r["objectives"]["rwe"], r["objectives"]["madds"]] for r in front]
    assert pts and all(not dominates(a, b) for a in pts for b in pts)
    assert all(not dominates(a, b) for a in ok for b in pts)
    for r in front:
        genome = space.validate([int(v) for v in r["genome"].split()])
        assert r["key"] == space.key(genome)
        assert r["objectives"] == {"rwe": r["rwe_error"], "madds": r["madds_m"]}
    # the first front member evaluates again, in a fresh worker context, to the same numbers
    again = EvalContext.from_config(cfg).load().evaluate(
        [int(v) for v in front[0]["genome"].split()])
    assert (again["rwe_error"], again["madds_m"]) == (front[0]["rwe_error"],
                                                      front[0]["madds_m"])
