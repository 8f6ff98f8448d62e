"""Algorithms, user objectives, warm starts, budgets and picks (issue 16), on a small space of
three-convolution networks defined here and used through the plugin path."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rwenas.errors import ConfigError
from rwenas.models import create_network
from rwenas.models.base import Network
from rwenas.objectives import check_objectives
from rwenas.report import write_figures
from rwenas.search import nsga2 as nsga2_module
from rwenas.search.algorithms import ALGORITHMS, make_algorithm, reference_directions
from rwenas.search.config import resolve_config
from rwenas.search.nsga2 import run_search
from rwenas.search.picking import budget_index, knee_index, parse_budget
from rwenas.search.stopping import stop_reason
from rwenas.search.store import RunStore
from rwenas.spaces import check_integers

WIDTHS = (4, 6, 8, 12)


class ThreeConvNet(Network):
    def __init__(self, widths: Sequence[int], kernels: Sequence[int], *, in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w, k in zip(widths, kernels, strict=True):
            layers += [nn.Conv2d(c, w, k, padding=k // 2), nn.ReLU()]
            c = w
        self.body = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


class ThreeConvSpace:
    """Genome [width choice × 3, kernel 1 or 3 × 3]: 512 networks."""

    name = "threeconv"
    n_var = 6
    lower = np.zeros(6, dtype=int)
    upper = np.array([3, 3, 3, 1, 1, 1])

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(v) for v in rng.integers(self.lower, self.upper + 1))

    def validate(self, genome: Sequence[Any]) -> tuple[int, ...]:
        return check_integers(genome, self.n_var, self.lower, self.upper, self.name)

    def decode(self, genome: Sequence[int]) -> dict[str, list[int]]:
        g = self.validate(genome)
        return {"widths": [WIDTHS[i] for i in g[:3]], "kernels": [1 + 2 * k for k in g[3:]]}

    def key(self, genome: Sequence[int]) -> str:
        return "threeconv:" + json.dumps(self.decode(genome), sort_keys=True)

    def genotype_to_json(self, genotype: dict) -> dict:
        return genotype

    def genotype_from_json(self, data: Any) -> dict:
        return data

    def build(self, genome_or_genotype: Any, **setting: Any) -> ThreeConvNet:
        g = (genome_or_genotype if isinstance(genome_or_genotype, dict)
             else self.decode(genome_or_genotype))
        return ThreeConvNet(g["widths"], g["kernels"], **setting)


def conv_width_sum(network: nn.Module, genome: Sequence[int], info: Any) -> float:
    """A user objective: the summed output channels of the convolutions."""
    assert isinstance(genome, tuple) and info.in_channels == 1
    return float(sum(m.out_channels for m in network.modules() if isinstance(m, nn.Conv2d)))


SPACE = f"{__name__}:ThreeConvSpace"
USER_OBJECTIVE = f"{__name__}:conv_width_sum"
TINY = {"space": SPACE, "dataset": "synthetic", "train_size": 120, "val_size": 60,
        "pop_size": 6, "generations": 3, "seed": 3, "rwe": {"epochs": 1}}


def config(**over: Any) -> dict[str, Any]:
    return resolve_config(None, None, {**TINY, **over})


def front(run_dir: Path) -> list[tuple[str, list[float]]]:
    rows = json.loads((run_dir / "front.json").read_text())
    return sorted((r["key"], list(r["objectives"].values())) for r in rows)


def evaluated(run_dir: Path) -> dict[str, list[float]]:
    with RunStore.open(run_dir) as store:
        return {e["key"]: e["objectives"] for e in store.evaluations()}


class _Interrupting:
    """An executor that is Ctrl-C'd after ``after`` evaluations (mid-generation)."""

    def __init__(self, inner: Any, after: int) -> None:
        self.inner, self.after, self.done = inner, after, 0

    def run(self, genomes):
        for item in self.inner.run(genomes):
            if self.done == self.after:
                raise KeyboardInterrupt
            self.done += 1
            yield item

    def close(self) -> None:
        self.inner.close()


def run_interrupted(cfg: dict[str, Any], run_dir: Path, after: int, monkeypatch) -> None:
    real = nsga2_module.make_executor
    with monkeypatch.context() as m:
        m.setattr(nsga2_module, "make_executor", lambda c: _Interrupting(real(c), after))
        with pytest.raises(KeyboardInterrupt):
            run_search(cfg, run_dir, progress=False)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_resumes_to_the_same_front(algorithm, tmp_path, monkeypatch):
    if algorithm == "agemoea" and importlib.util.find_spec("numba") is None:
        pytest.skip("agemoea needs numba")
    cfg = config(algorithm=algorithm)
    straight = run_search(cfg, tmp_path / "straight", progress=False, after=write_figures)
    # Ctrl-C inside generation 1, after two of its evaluations, then resume
    run_interrupted(cfg, tmp_path / "resumed", 6 + 2, monkeypatch)
    with RunStore.open(tmp_path / "resumed") as store:
        assert store.last_generation() == 0 and store.count_evaluations() == 8
    # the run names a plugin space: the user vouches for it, as the CLI's --space does
    resumed = run_search(resume=tmp_path / "resumed", progress=False,
                         overrides={"space": SPACE})
    assert front(tmp_path / "resumed") == front(tmp_path / "straight")
    assert evaluated(tmp_path / "resumed") == evaluated(tmp_path / "straight")
    assert resumed.hypervolume == straight.hypervolume
    with RunStore.open(tmp_path / "resumed") as store:
        asked_resumed = [g["extra"]["offspring"] for g in store.generations()]
    # every generation asked pop_size architectures (evaluated or cache hits)
    with RunStore.open(tmp_path / "straight") as store:
        gens = store.generations()
        assert store.config["algorithm"] == algorithm
    assert len(gens) == 3 and all(len(g["extra"]["offspring"]) == 6 for g in gens)
    assert asked_resumed == [g["extra"]["offspring"] for g in gens]
    report = (tmp_path / "straight" / "report.html").read_text()
    name = {"nsga2": "NSGA-II", "smsemoa": "SMS-EMOA", "agemoea": "AGE-MOEA",
            "nsga3": "NSGA-III", "moead": "MOEA/D", "random": "random search"}[algorithm]
    assert f'<div class="k">algorithm</div><div class="v">{name}</div>' in report


def test_random_search_is_random_and_as_long_as_nsga2(tmp_path):
    result = run_search(config(algorithm="random", generations=4), tmp_path / "r",
                        progress=False)
    with RunStore.open(tmp_path / "r") as store:
        gens = store.generations()
        evaluations = store.evaluations()
    asked = [k for g in gens for k in g["extra"]["offspring"]]
    assert len(asked) == 6 * 4 == result.evaluations + result.cache_hits
    assert len(set(asked)) == len(asked)  # never asks the same genome twice
    # its population is the non-dominated set of everything evaluated so far
    last = {e["key"]: e["objectives"] for e in evaluations}
    pop = set(gens[-1]["population"])
    for k, f in last.items():
        dominated = any(all(a <= b for a, b in zip(g, f, strict=True)) and g != f
                        for g in last.values())
        assert (k in pop) == (not dominated)


def test_reference_directions_have_pop_size_points():
    assert reference_directions(2, 6, 0).shape == (6, 2)
    assert reference_directions(3, 6, 0).shape == (6, 3)  # a simplex lattice
    assert reference_directions(3, 7, 0).shape == (7, 3)  # energy points
    with pytest.raises(ConfigError, match="constraints"):
        make_algorithm(ThreeConvSpace(), config(algorithm="moead"), n_constr=1)
    with pytest.raises(ConfigError, match="unknown algorithm"):
        config(algorithm="cmaes")


def test_user_function_and_estimator_objectives(tmp_path):
    cfg = config(objectives=["rwe", "madds", USER_OBJECTIVE], generations=2)
    run_search(cfg, tmp_path / "u", progress=False, after=write_figures)
    rows = json.loads((tmp_path / "u" / "front.json").read_text())
    space = ThreeConvSpace()
    for r in rows:
        widths = space.decode([int(v) for v in r["genome"].split()])["widths"]
        assert r["objectives"][USER_OBJECTIVE] == sum(widths)
    assert USER_OBJECTIVE in (tmp_path / "u" / "front.csv").read_text().splitlines()[0]
    assert "conv_width_sum" in (tmp_path / "u" / "report.html").read_text()

    # a study estimator without RWE: the stored value is the negated (higher-is-better) score
    cfg = config(objectives=["jacob_cov", "madds"], generations=2)
    run_search(cfg, tmp_path / "j", progress=False)
    with RunStore.open(tmp_path / "j") as store:
        records = store.evaluations()
    assert records and all(e["extra"]["rwe_error"] is None for e in records)
    for e in records:
        assert e["objectives"][0] == -e["extra"]["raw"]["jacob_cov"]
    from rwenas.data import load_dataset, search_split
    from rwenas.estimators.proxies import JacobCov
    from rwenas.evaluation import derive_seed

    ds = load_dataset("synthetic", None, seed=3)
    split = search_split(ds, seed=3, train_size=120, val_size=60)
    e = records[0]
    seed = derive_seed(3, e["key"])

    def factory() -> nn.Module:
        return create_network(space, e["genome"], in_channels=ds.info.in_channels,
                           num_classes=ds.info.num_classes)

    score = JacobCov().score(factory, split, seed=seed)
    assert e["objectives"][0] == pytest.approx(score.value, rel=1e-6)


def test_objective_errors():
    with pytest.raises(ConfigError, match="unknown objective 'speed'"):
        check_objectives(["rwe", "speed"])
    with pytest.raises(ConfigError, match="cannot import objective module"):
        check_objectives(["rwe", "no_such_module_xyz:f"])
    with pytest.raises(ConfigError, match="no objective function 'nope'"):
        check_objectives(["rwe", f"{__name__}:nope"])
    check_objectives(["jacob_cov", "madds"])  # without RWE


def test_latency_onnx_missing_extra_is_one_line(monkeypatch, run_cli, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    rc, _, err = run_cli("search", "--out", str(tmp_path / "x"), "--space", SPACE,
                         "--objectives", "rwe,latency_onnx", "--dataset", "synthetic")
    assert rc == 2
    assert err.strip() == ("rwenas: error: the latency_onnx objective needs onnxruntime: "
                           "pip install 'rwenas[onnx]'")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                    or importlib.util.find_spec("onnx") is None,
                    reason="needs the onnx extra")
def test_latency_onnx_objective(tmp_path):
    from rwenas.complexity import onnx_latency_ms

    small = ThreeConvNet([4, 4, 4], [1, 1, 1], in_channels=1)
    big = ThreeConvNet([64, 64, 64], [3, 3, 3], in_channels=1)
    shape = (1, 28, 28)
    assert 0 < onnx_latency_ms(small, shape, repeats=5) < onnx_latency_ms(big, shape,
                                                                           repeats=5)
    run_search(config(objectives=["rwe", "latency_onnx"], generations=1), tmp_path / "o",
               progress=False)
    rows = json.loads((tmp_path / "o" / "front.json").read_text())
    assert rows and all(r["latency_onnx_ms"] == r["objectives"]["latency_onnx"] > 0
                        for r in rows)


def test_initial_population_from_a_file_and_from_a_run(tmp_path, run_cli):
    seeds = ["3 3 3 1 1 1", "0 0 0 0 0 0"]
    (tmp_path / "seeds.txt").write_text("# two seeds\n" + "\n".join(seeds) + "\n")
    data = ["--space", SPACE, "--dataset", "synthetic", "--train-size", "120", "--val-size",
            "60", "--pop-size", "6", "--generations", "2", "--epochs", "1", "--seed", "3",
            "--quiet"]
    rc, _, err = run_cli("search", *data, "--out", str(tmp_path / "a"),
                         "--initial-population", str(tmp_path / "seeds.txt"))
    assert rc == 0, err
    space = ThreeConvSpace()
    with RunStore.open(tmp_path / "a") as store:
        first = store.generations()[0]["extra"]["offspring"]
        assert store.config["initial_population"] == [[3, 3, 3, 1, 1, 1], [0] * 6]
    assert first[:2] == [space.key([int(v) for v in s.split()]) for s in seeds]
    # another run's front seeds the first generation
    rc, _, err = run_cli("search", *data, "--out", str(tmp_path / "b"), "--seed", "4",
                         "--initial-population", str(tmp_path / "a"))
    assert rc == 0, err
    front_keys = {r["key"] for r in json.loads((tmp_path / "a" / "front.json").read_text())}
    with RunStore.open(tmp_path / "b") as store:
        first = store.generations()[0]["extra"]["offspring"]
    assert front_keys <= set(first[:len(front_keys)])
    (tmp_path / "bad.txt").write_text("9 9 9 9 9 9\n")
    rc, _, err = run_cli("search", *data, "--out", str(tmp_path / "c"),
                         "--initial-population", str(tmp_path / "bad.txt"))
    assert rc == 2 and err.startswith("rwenas: error: --initial-population")
    assert len(err.strip().splitlines()) == 1


def test_stop_reason_by_hand():
    gens = [{"seconds": 30.0, "hypervolume": hv} for hv in (1.0, 2.0, 2.0, 2.0)]
    assert stop_reason({"max_minutes": 2.0}, gens) is not None
    assert stop_reason({"max_minutes": 2.5}, gens) is None
    assert stop_reason({"stop_after_stagnation": 2}, gens).startswith("hypervolume stagnated")
    assert stop_reason({"stop_after_stagnation": 3}, gens) is None
    assert stop_reason({"stop_after_stagnation": 1}, gens[:2]) is None


def test_max_minutes_stops_and_a_larger_limit_resumes_to_the_same_front(tmp_path, run_cli):
    straight = run_search(config(), tmp_path / "straight", progress=False)
    stopped = run_search(config(max_minutes=1e-6), tmp_path / "budget", progress=False,
                         after=write_figures)
    assert stopped.stopped.startswith("time budget reached")
    with RunStore.open(tmp_path / "budget") as store:
        assert store.last_generation() == 0
    assert 'id="stopped"' in (tmp_path / "budget" / "report.html").read_text()
    # resuming with the same limit stops again at once; a larger one finishes the run
    assert run_search(resume=tmp_path / "budget", progress=False,
                      trust_plugins=True).stopped is not None
    rc, out, err = run_cli("search", "--resume", str(tmp_path / "budget"), "--space", SPACE,
                           "--max-minutes", "60", "--quiet")
    assert rc == 0, err
    assert "stopped early" not in out
    assert front(tmp_path / "budget") == front(tmp_path / "straight")
    assert straight.stopped is None
    with RunStore.open(tmp_path / "budget") as store:
        assert store.get_state("limits") == {"max_minutes": 60.0}


def test_stagnation_stops_only_after_k_flat_generations(tmp_path):
    result = run_search(config(stop_after_stagnation=1, generations=8), tmp_path / "s",
                        progress=False)
    with RunStore.open(tmp_path / "s") as store:
        hv = [g["hypervolume"] for g in store.generations()]
    assert all(b > a for a, b in zip(hv[:-1], hv[:-1][1:], strict=False))
    if result.stopped:
        assert len(hv) < 8 and hv[-1] == hv[-2]
    else:
        assert len(hv) == 8


ROWS = [  # a front of four: error falls as multiply-adds rise
    {"rwe_error": 0.40, "madds_m": 1.0, "objectives": {"rwe": 0.40, "madds": 1.0}},
    {"rwe_error": 0.22, "madds_m": 2.0, "objectives": {"rwe": 0.22, "madds": 2.0}},
    {"rwe_error": 0.20, "madds_m": 6.0, "objectives": {"rwe": 0.20, "madds": 6.0}},
    {"rwe_error": 0.19, "madds_m": 10.0, "objectives": {"rwe": 0.19, "madds": 10.0}},
]


def test_knee_and_budget_picks_by_hand():
    # normalised sums: 0+1, 0.111+0.143, 0.556+0.048, 1+0: the knee is row 1
    assert knee_index(ROWS, ["rwe", "madds"]) == 1
    assert budget_index(ROWS, "madds<=6", ["rwe", "madds"]) == 2
    assert budget_index(ROWS, "madds < 6", ["rwe", "madds"]) == 1
    assert budget_index(ROWS, "madds<=10,rwe<0.2", ["rwe", "madds"]) == 3
    assert parse_budget("madds<=1e1") == [("madds", "<=", 10.0)]
    with pytest.raises(ConfigError, match=r"no front member has madds <= 0\.5"):
        budget_index(ROWS, "madds<=0.5", ["rwe", "madds"])
    with pytest.raises(ConfigError, match="invalid budget"):
        parse_budget("madds=<3")
    with pytest.raises(ConfigError, match="stores no 'flops'"):
        budget_index(ROWS, "flops<=3", ["rwe", "madds"])


def test_picks_in_train_export_and_report(tmp_path, run_cli):
    from rwenas.train.pick import pick_from_run

    cfg = config(objectives=["rwe", "madds", USER_OBJECTIVE])
    run_search(cfg, tmp_path / "p", progress=False, after=write_figures)
    rows = json.loads((tmp_path / "p" / "front.json").read_text())
    assert len(rows) >= 2
    budget = sorted(r["objectives"][USER_OBJECTIVE] for r in rows)[len(rows) // 2]
    expr = f"{USER_OBJECTIVE}<={budget:g}"
    picked = pick_from_run(tmp_path / "p", expr, space=SPACE)
    within = [r for r in rows if r["objectives"][USER_OBJECTIVE] <= budget]
    assert picked.row["rwe_error"] == min(r["rwe_error"] for r in within)
    assert picked.architecture.label.endswith(expr)
    knee = pick_from_run(tmp_path / "p", "knee", trust_plugins=True)
    assert knee.index == knee_index(rows, cfg["objectives"])
    rc, _, err = run_cli("export", "--from-run", str(tmp_path / "p"), "--pick", "knee",
                         "--space", SPACE, "--no-onnx", "--out", str(tmp_path / "exp"))
    assert rc == 0, err
    genotype = json.loads((tmp_path / "exp" / "genotype.json").read_text())
    assert genotype["key"] == knee.row["key"]
    ts = torch.jit.load(str(tmp_path / "exp" / "model.torchscript.pt"))
    assert ts(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    rc, _, err = run_cli("report", str(tmp_path / "p"), "--pick", expr, "--trust-plugins")
    assert rc == 0, err
    text = (tmp_path / "p" / "report.html").read_text()
    assert f'id="pick-knee" data-key="{escape(knee.row["key"])}"' in text
    assert f'id="pick-budget-4" data-key="{escape(picked.row["key"])}"' in text
    assert escape(expr) in text
    rc, _, err = run_cli("report", str(tmp_path / "p"), "--pick", "madds<=0", "--space", SPACE)
    assert rc == 2 and "no front member has madds <= 0" in err
