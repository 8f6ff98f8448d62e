"""Evaluate one architecture: RWE error and complexity of its search-setting network.

This is the unit of work of ``rwenas evaluate`` and of every search evaluation. The network is
built from the canonical genome and its random backbone seeded from the run seed and the
canonical key, so the result is a function of (run seed, key): it depends neither on
evaluation order, nor on which worker ran it, nor on which of several equivalent genomes
was given.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rwenas.build import build_network
from rwenas.complexity import complexity, latency_ms, onnx_latency_ms, peak_activation_mb
from rwenas.data import DatasetInfo, Split
from rwenas.device import device_label, resolve_device
from rwenas.estimators.rwe import RWEConfig, rwe
from rwenas.spaces import SearchSpace, canonical_genome, format_genome


def derive_seed(seed: int, key: str) -> int:
    """A 31-bit seed from the run seed and an architecture's canonical key."""
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Evaluation:
    """What one RWE evaluation measured."""

    genome: str
    key: str
    rwe_error: float | None
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
    latency_onnx_ms: float | None = None
    #: values of the estimator and function objectives (lower is better) and, for
    #: estimators, the raw score as its paper defines it
    objectives: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    #: where it ran (:func:`rwenas.device.device_label`: ``cpu``, ``cuda:<GPU name>``), so a
    #: run's cost can be stated in the right unit wherever it is read later
    device: str = "cpu"
    #: False when the features or the classifier were not finite (``rwe_error`` is then 1.0
    #: and ``warning`` says why); a search records such an evaluation as failed.
    finite: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_genome(space: SearchSpace, genome: Any, split: Split, info: DatasetInfo, *,
                    config: RWEConfig | None = None, seed: int = 0, setting: str = "search",
                    network: dict[str, Any] | None = None, measure: Sequence[str] = (),
                    latency_batch: int = 64, objectives: Sequence[str] = (),
                    with_rwe: bool = True) -> Evaluation:
    """RWE error + params/MAdds of ``genome`` built at ``setting`` for dataset ``info``.

    ``measure`` adds ``latency`` (batch 1), ``latency_batch`` (batch ``latency_batch``) and
    ``memory`` (peak activation MB, batch 1), measured on this machine's CPU (or the GPU RWE
    uses), median of repeated timed passes after warm-up, and ``latency_onnx`` (batch 1 in
    ONNX Runtime on one CPU thread). ``objectives`` are estimator names and
    ``module:function`` objectives (:mod:`rwenas.objectives`), scored on the same
    network (same seed); ``with_rwe=False`` skips RWE (``rwe_error`` is ``None``).
    """
    t0 = time.perf_counter()
    genome = space.validate(genome)
    key = space.key(genome)
    arch_seed = derive_seed(seed, key)
    # Build once, seeded exactly as rwe() would seed a factory; counting and timing the
    # network in eval mode leaves its weights and BatchNorm statistics untouched. Built from
    # the canonical genome, so equivalent genomes get the very same network and weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch_seed)
        net = build_network(space, canonical_genome(space, genome),
                            in_channels=info.in_channels,
                            num_classes=info.num_classes, setting=setting, **dict(network or {}))
    shape = (info.in_channels, info.image_size, info.image_size)
    cx = complexity(net, shape)
    extra: dict[str, float] = {}
    device = (config or RWEConfig()).device
    if measure:
        net = net.to(resolve_device(device))
        if "latency" in measure:
            extra["latency_ms"] = latency_ms(net, shape, batch=1)
        if "latency_batch" in measure:
            extra["latency_batch_ms"] = latency_ms(net, shape, batch=latency_batch)
        if "memory" in measure:
            extra["memory_mb"] = peak_activation_mb(net, shape)
        if "latency_onnx" in measure:
            extra["latency_onnx_ms"] = onnx_latency_ms(net.cpu(), shape)
    values: dict[str, float] = {}
    raw: dict[str, float] = {}
    if objectives:
        # RWE folds BatchNorm into the network it is given: score an untouched copy
        values, raw = score_objectives(objectives, space, genome, copy.deepcopy(net), split,
                                       info, seed=arch_seed, setting=setting,
                                       network=network)
    error, features_s, classifier_s, warning, finite = None, 0.0, 0.0, None, True
    if with_rwe:
        result = rwe(net, split, config, seed=arch_seed)
        error, features_s, classifier_s = (result.error, result.features_seconds,
                                           result.classifier_seconds)
        warning, finite = result.warning, result.finite
    return Evaluation(
        genome=format_genome(genome), key=key, rwe_error=error,
        madds_m=cx.madds_m, params_m=cx.params_m, seconds=time.perf_counter() - t0,
        features_seconds=features_s, classifier_seconds=classifier_s, seed=arch_seed,
        warning=warning, objectives=values, raw=raw, finite=finite,
        device=device_label(device), **extra,
    )


def score_objectives(names: Sequence[str], space: SearchSpace, genome: Sequence[int],
                     net: torch.nn.Module, split: Split, info: DatasetInfo, *, seed: int,
                     setting: str = "search", network: dict[str, Any] | None = None
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """(values, raw scores) of the estimator and ``module:function`` objectives ``names``.

    An estimator scores the network built from the canonical genome with ``seed`` (the
    network RWE sees; an estimator with its own scale, like ``short_training``, rebuilds it at
    that scale). A function gets ``(network, canonical genome, info)``, its value must be a
    finite number. A non-finite estimator value counts as the worst (1e12)."""
    from rwenas.objectives import WORST_DEFAULT, load_function, make_objective_estimator

    canonical = canonical_genome(space, genome)
    values: dict[str, float] = {}
    raw: dict[str, float] = {}
    for name in names:
        if ":" in name:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                value = load_function(name)(copy.deepcopy(net), canonical, info)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"objective {name} returned {value!r}, not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"objective {name} returned {value}, not a finite number")
            values[name] = value
            continue
        estimator = make_objective_estimator(name)
        scale = getattr(estimator, "network", None) or {}
        if scale:
            options = {**dict(network or {}), **scale}

            def factory(options: dict[str, Any] = options) -> torch.nn.Module:
                return build_network(space, canonical, in_channels=info.in_channels,
                                     num_classes=info.num_classes, setting=setting, **options)
        else:
            factory = net  # type: ignore[assignment]  # estimators deep-copy a module
        score = estimator.score(factory, split, seed=seed)
        values[name] = score.value if math.isfinite(score.value) else WORST_DEFAULT
        raw[name] = score.raw
    return values, raw
