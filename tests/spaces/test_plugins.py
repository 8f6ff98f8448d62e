"""A search space defined right here, used through the plugin path with no rwenas change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rwenas.cli import main
from rwenas.errors import GenomeError
from rwenas.models.base import Network
from rwenas.spaces import SearchSpace, check_integers, get_space

KERNELS = (1, 3)
WIDTHS = (4, 8, 16)


class TinyNet(Network):
    def __init__(self, n_convs: int, kernel: int, width: int, *, in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(n_convs):
            layers += [nn.Conv2d(c, width, kernel, padding=kernel // 2), nn.ReLU()]
            c = width
        self.body = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


class TinySpace:
    """Genome [n_convs 0..2, kernel choice, width choice]."""

    name = "tiny"
    n_var = 3
    lower = np.array([0, 0, 0])
    upper = np.array([2, len(KERNELS) - 1, len(WIDTHS) - 1])

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(v) for v in rng.integers(self.lower, self.upper + 1))

    def validate(self, genome: Sequence[Any]) -> tuple[int, ...]:
        return check_integers(genome, self.n_var, self.lower, self.upper, self.name)

    def decode(self, genome: Sequence[int]) -> dict[str, int]:
        n, k, w = self.validate(genome)
        return {"n_convs": n, "kernel": KERNELS[k], "width": WIDTHS[w]}

    def key(self, genome: Sequence[int]) -> str:
        g = self.decode(genome)
        return "tiny:identity" if g["n_convs"] == 0 else f"tiny:{json.dumps(g, sort_keys=True)}"

    def genotype_to_json(self, genotype: dict[str, int]) -> dict[str, int]:
        return genotype

    def genotype_from_json(self, data: Any) -> dict[str, int]:
        if not isinstance(data, dict) or set(data) != {"n_convs", "kernel", "width"}:
            raise GenomeError("tiny genotype needs n_convs, kernel and width")
        return data

    def build(self, genome_or_genotype: Any, **setting: Any) -> TinyNet:
        g = (genome_or_genotype if isinstance(genome_or_genotype, dict)
             else self.decode(genome_or_genotype))
        return TinyNet(g["n_convs"], g["kernel"], g["width"], **setting)


PLUGIN = f"{__name__}:TinySpace"
DATA = ["--dataset", "synthetic", "--train-size", "200", "--val-size", "100", "--epochs", "2"]


def test_protocol_and_lookup():
    space = get_space(PLUGIN)
    assert isinstance(space, SearchSpace)
    for name in ("micro", "macro", "nb301", "mobilenetv2"):
        assert isinstance(get_space(name), SearchSpace)
    assert space.key((0, 0, 0)) == space.key((0, 1, 2))  # no convolution: same network


def test_show_evaluate_search_through_the_plugin_path(tmp_path, capsys):
    assert main(["show", "--space", PLUGIN, "--genome", "2 1 1", "--json",
                 "--dataset", "fashion-mnist"]) == 0
    shown = json.loads(capsys.readouterr().out)
    # two convs: 1->8 (3x3) and 8->8 (3x3) + classifier 8->10
    assert shown["params_m"] * 1e6 == (9 * 8 + 8) + (9 * 64 + 8) + (8 * 10 + 10)
    assert shown["madds_m"] * 1e6 == 28 * 28 * (9 * 8 + 9 * 64) + 80
    assert main(["evaluate", "--space", PLUGIN, "--genome", "1 1 2", *DATA, "--json"]) == 0
    (ev,) = json.loads(capsys.readouterr().out)
    assert 0 <= ev["rwe_error"] <= 1
    run = tmp_path / "run"
    assert main(["search", "--space", PLUGIN, *DATA, "--pop-size", "4", "--generations", "2",
                 "--out", str(run), "--quiet"]) == 0
    front = json.loads((run / "front.json").read_text())
    assert front and all(r["key"].startswith("tiny:") for r in front)
