"""A MobileNetV2-style search space (Once-for-All / NSGANetV2 family), built on the public
search-space protocol only — the way a user's plugin space would be written.

Five stages of inverted-residual blocks; per stage a depth (2–4 blocks) and, per block, a
kernel size (3/5/7) and an expansion ratio (3/4/6). Genome per stage:
``[depth_choice, k_1, e_1, k_2, e_2, k_3, e_3, k_4, e_4]`` (choices are indices), 45 integers.
Blocks beyond a stage's depth are unused, so they do not enter the canonical key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rwenas.errors import GenomeError
from rwenas.spaces.base import Genome, check_integers

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
DEPTHS = (2, 3, 4)
#: output channels and first-block stride of each stage (MobileNetV2/OFA widths)
STAGES = ((24, 2), (40, 2), (80, 2), (112, 1), (160, 2))


@dataclass(frozen=True)
class MobileGenotype:
    """Per stage, the (kernel, expansion) of each of its blocks."""

    stages: tuple[tuple[tuple[int, int], ...], ...]

    def to_json(self) -> list[list[list[int]]]:
        return [[[k, e] for k, e in stage] for stage in self.stages]


class MobileNetSpace:
    """MobileNetV2-style space: 5 stages × (depth, kernel, expansion)."""

    name = "mobilenetv2"
    max_depth = max(DEPTHS)
    #: named network scales: CIFAR-size inputs (stem stride 1) and ImageNet-size (stride 2)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "search": {"width": 0.5, "head": 256, "stem_stride": 1},
        "validation": {"width": 1.0, "head": 1280, "stem_stride": 1},
        "imagenet": {"width": 1.0, "head": 1280, "stem_stride": 2},
    }

    def __init__(self) -> None:
        per_stage = [len(DEPTHS) - 1] + [len(KERNELS) - 1, len(EXPANSIONS) - 1] * self.max_depth
        self._upper = np.array(per_stage * len(STAGES), dtype=np.int64)

    @property
    def n_var(self) -> int:
        return len(self._upper)

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(self.n_var, dtype=np.int64)

    @property
    def upper(self) -> np.ndarray:
        return self._upper.copy()

    def sample(self, rng: np.random.Generator) -> Genome:
        return tuple(int(v) for v in rng.integers(0, self._upper + 1))

    def validate(self, genome: Sequence[Any]) -> Genome:
        return check_integers(genome, self.n_var, self.lower, self._upper, self.name)

    def decode(self, genome: Sequence[int]) -> MobileGenotype:
        g = self.validate(genome)
        width = 1 + 2 * self.max_depth
        stages = []
        for s in range(len(STAGES)):
            chunk = g[s * width:(s + 1) * width]
            depth = DEPTHS[chunk[0]]
            stages.append(tuple((KERNELS[chunk[1 + 2 * b]], EXPANSIONS[chunk[2 + 2 * b]])
                                for b in range(depth)))
        return MobileGenotype(tuple(stages))

    def encode(self, genotype: MobileGenotype) -> Genome:
        genome: list[int] = []
        for stage in genotype.stages:
            if len(stage) not in DEPTHS:
                raise GenomeError(f"stage depth {len(stage)} not in {DEPTHS}")
            genome.append(DEPTHS.index(len(stage)))
            for b in range(self.max_depth):
                k, e = stage[b] if b < len(stage) else (KERNELS[0], EXPANSIONS[0])
                if k not in KERNELS or e not in EXPANSIONS:
                    raise GenomeError(f"block ({k}, {e}) outside kernels {KERNELS} / "
                                      f"expansions {EXPANSIONS}")
                genome += [KERNELS.index(k), EXPANSIONS.index(e)]
        return self.validate(genome)

    def canonical(self, genome: Sequence[int]) -> Genome:
        """The genome with the choices of unused blocks (beyond a stage's depth) zeroed, so
        that a network is a function of the key alone."""
        return self.encode(self.decode(genome))

    def key(self, genome: Sequence[int]) -> str:
        gt = self.decode(genome)
        return f"{self.name}:" + "|".join(",".join(f"k{k}e{e}" for k, e in stage)
                                           for stage in gt.stages)

    def genotype_to_json(self, genotype: MobileGenotype) -> list:
        return genotype.to_json()

    def genotype_from_json(self, data: Any) -> MobileGenotype:
        try:
            stages = tuple(tuple((int(k), int(e)) for k, e in stage) for stage in data)
        except (TypeError, ValueError):
            raise GenomeError("mobilenetv2 genotype must be a list of stages, each a list of "
                              "[kernel, expansion] pairs") from None
        if len(stages) != len(STAGES):
            raise GenomeError(f"mobilenetv2 genotype needs {len(STAGES)} stages")
        gt = MobileGenotype(stages)
        self.encode(gt)  # range checks
        return gt

    def describe(self, genotype: MobileGenotype) -> str:
        return "\n".join(
            f"stage {s + 1} ({STAGES[s][0]} ch, stride {STAGES[s][1]}): "
            + ", ".join(f"MB{e} {k}x{k}" for k, e in stage)
            for s, stage in enumerate(genotype.stages))

