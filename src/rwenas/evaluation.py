"""Evaluate one architecture: RWE error and complexity of its search-setting network.

This is the unit of work of ``rwenas evaluate`` and of every search evaluation. The random
backbone's seed is derived from the run seed and the architecture's canonical key, so the
result depends neither on evaluation order nor on which worker ran it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rwenas.build import build_network
from rwenas.complexity import complexity, latency_ms, peak_activation_mb
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
    latency_ms: float | None = None
    latency_batch_ms: float | None = None
    memory_mb: float | None = None
    #: False when the features or the classifier were not finite (``rwe_error`` is then 1.0
    #: and ``warning`` says why); a search records such an evaluation as failed.
    finite: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_genome(space: SearchSpace, genome: Any, split: Split, info: DatasetInfo, *,
                    config: RWEConfig | None = None, seed: int = 0, setting: str = "search",
                    network: dict[str, Any] | None = None, measure: Sequence[str] = (),
                    latency_batch: int = 64) -> Evaluation:
    """RWE error + params/MAdds of ``genome`` built at ``setting`` for dataset ``info``.

    ``measure`` adds ``latency`` (batch 1), ``latency_batch`` (batch ``latency_batch``) and
    ``memory`` (peak activation MB, batch 1), measured on this machine's CPU (or the GPU RWE
    uses), median of repeated timed passes after warm-up.
    """
    t0 = time.perf_counter()
    genome = space.validate(genome)
    key = space.key(genome)
    arch_seed = derive_seed(seed, key)
    # Build once, seeded exactly as rwe() would seed a factory; counting and timing the
    # network in eval mode leaves its weights and BatchNorm statistics untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch_seed)
        net = build_network(space, genome, in_channels=info.in_channels,
                            num_classes=info.num_classes, setting=setting, **dict(network or {}))
    shape = (info.in_channels, info.image_size, info.image_size)
    cx = complexity(net, shape)
    extra: dict[str, float] = {}
    if measure:
        from rwenas.estimators.rwe import resolve_device

        net = net.to(resolve_device((config or RWEConfig()).device))
        if "latency" in measure:
            extra["latency_ms"] = latency_ms(net, shape, batch=1)
        if "latency_batch" in measure:
            extra["latency_batch_ms"] = latency_ms(net, shape, batch=latency_batch)
        if "memory" in measure:
            extra["memory_mb"] = peak_activation_mb(net, shape)
    result = rwe(net, split, config, seed=arch_seed)
    return Evaluation(
        genome=format_genome(genome), key=key, rwe_error=result.error,
        madds_m=cx.madds_m, params_m=cx.params_m, seconds=time.perf_counter() - t0,
        features_seconds=result.features_seconds,
        classifier_seconds=result.classifier_seconds, seed=arch_seed, warning=result.warning,
        finite=result.finite, **extra,
    )
