"""Evaluate one architecture: RWE error and complexity of its search-setting network.

This is the unit of work of ``rwenas evaluate`` and of every search evaluation. The random
backbone's seed is derived from the run seed and the architecture's canonical key, so the
result depends neither on evaluation order nor on which worker ran it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from rwenas.build import build_network
from rwenas.complexity import complexity
from rwenas.data import DatasetInfo, Split
from rwenas.estimators.rwe import RWEConfig, rwe
from rwenas.spaces import SearchSpace, format_genome


def derive_seed(seed: int, key: str) -> int:
    """A 31-bit seed from the run seed and an architecture's canonical key."""
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Evaluation:
    """What one RWE evaluation measured."""

    genome: str
    key: str
    rwe_error: float
    madds_m: float
    params_m: float
    seconds: float
    features_seconds: float
    classifier_seconds: float
    seed: int
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_genome(space: SearchSpace, genome: Any, split: Split, info: DatasetInfo, *,
                    config: RWEConfig | None = None, seed: int = 0, setting: str = "search",
                    network: dict[str, Any] | None = None) -> Evaluation:
    """RWE error + params/MAdds of ``genome`` built at ``setting`` for dataset ``info``."""
    t0 = time.perf_counter()
    genome = space.validate(genome)
    key = space.key(genome)
    arch_seed = derive_seed(seed, key)
    options = dict(network or {})

    def factory():
        return build_network(space, genome, in_channels=info.in_channels,
                             num_classes=info.num_classes, setting=setting, **options)

    cx = complexity(factory(), (info.in_channels, info.image_size, info.image_size))
    result = rwe(factory, split, config, seed=arch_seed)
    return Evaluation(
        genome=format_genome(genome), key=key, rwe_error=result.error,
        madds_m=cx.madds_m, params_m=cx.params_m, seconds=time.perf_counter() - t0,
        features_seconds=result.features_seconds,
        classifier_seconds=result.classifier_seconds, seed=arch_seed, warning=result.warning,
    )
