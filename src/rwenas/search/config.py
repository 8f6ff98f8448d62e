"""Search configuration: defaults, named profiles, TOML files and flags, resolved and checked.

Precedence: built-in defaults < ``--profile`` < ``--config FILE.toml`` < command-line flags.
The resolved configuration is stored in the run (``config.json`` and the SQLite store), and a
resumed run uses it unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from rwenas.checks import (
    MAX_CHANNELS,
    MAX_GENERATIONS,
    MAX_IMAGE_SIZE,
    MAX_LAYERS,
    MAX_MINUTES,
    MAX_POP_SIZE,
    MAX_RETRIES,
    MAX_SEED,
    MAX_THREADS,
    MAX_WORKERS,
    check_device,
    check_number,
    check_text,
)
from rwenas.errors import ConfigError
from rwenas.estimators.rwe import RWEConfig

DEFAULTS: dict[str, Any] = {
    "space": "micro",
    "dataset": "fashion-mnist",
    "data_dir": None,
    "download": False,
    "image_size": None,
    "train_size": None,
    "val_size": None,
    "seed": 0,
    "pop_size": 20,
    "generations": 30,
    "objectives": ["rwe", "madds"],
    "algorithm": "nsga2",
    "initial_population": None,
    "max_minutes": None,
    "stop_after_stagnation": None,
    "crossover_prob": 0.9,
    "mutation_eta": 3.0,
    "executor": "local",
    "workers": 1,
    "threads": None,
    "ray_address": None,
    "gpus_per_eval": 0.0,
    "max_retries": 2,
    "max_madds": None,
    "max_params": None,
    "max_latency_ms": None,
    "latency_batch": 64,
    "network": {},
    "rwe": {},
}

#: paper = SPEC settings on the full 40k/10k split; quick = a demo for a 2-core laptop.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"pop_size": 20, "generations": 30, "train_size": None, "val_size": None},
    "quick": {"pop_size": 10, "generations": 10, "train_size": 2000, "val_size": 500},
}

EXECUTORS = ("local", "process", "ray")


def _merge(base: dict[str, Any], over: Mapping[str, Any], source: str) -> None:
    for key, value in over.items():
        if key not in DEFAULTS:
            raise ConfigError(f"{source}: unknown setting {key!r} "
                              f"(known: {', '.join(sorted(DEFAULTS))})")
        if key in ("network", "rwe"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {key!r} must be a table of settings")
            base[key] = {**base[key], **value}
        else:
            base[key] = value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file with one-line errors."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None


def resolve_config(profile: str | None = None, file: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < profile < file < overrides, validated."""
    config = copy.deepcopy(DEFAULTS)
    if profile is not None:
        if not isinstance(profile, str) or profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        _merge(config, PROFILES[profile], f"profile {profile}")
    explicit: set[str] = set()  # settings a file or an option gave
    if file is not None:
        data = load_toml(file)
        prof = data.pop("profile", None)
        if prof is not None and profile is None:
            return resolve_config(prof, file, overrides)
        _merge(config, data, str(file))
        explicit |= set(data)
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        _merge(config, given, "option")
        explicit |= set(given)
    if profile == "paper" and "executor" not in explicit:
        config.update(paper_executor(config["rwe"].get("device", "auto"),
                                     config["workers"] if "workers" in explicit else None))
    validate_config(config)
    if "inference_batch" not in config["rwe"]:
        batch = gpu_inference_batch(config)
        if batch != RWEConfig.inference_batch:
            config["rwe"]["inference_batch"] = batch
    return config


def gpu_inference_batch(config: Mapping[str, Any]) -> int:
    """The RWE inference batch for a search whose settings name none: larger where the
    evaluations run on a GPU (``default_inference_batch``) — this machine's, or the Ray
    workers' when ``gpus_per_eval`` gives each evaluation a share of one."""
    from rwenas.estimators.rwe import CUDA_INFERENCE_BATCH, default_inference_batch

    if config["executor"] == "ray":
        return CUDA_INFERENCE_BATCH if config["gpus_per_eval"] else RWEConfig.inference_batch
    return default_inference_batch(config["rwe"].get("device", "auto"))


def paper_executor(device: Any, workers: int | None = None) -> dict[str, Any]:
    """The paper profile's executor where none is given: on a CPU with several cores, one
    single-threaded worker process per core (``workers`` of them if given), each evaluating
    its own architecture — 1.2-1.4x faster than one process sharing each feature pass among
    threads, whose interpreter lock and one-threaded classifiers leave cores idle (README,
    "Executors on 2 cores"); the worker start-up is nothing against 600 evaluations. Where
    evaluations run on a GPU (or on one core) the default, ``local``, stays."""
    if str(device).startswith(("cuda", "mps")):
        return {}
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return {}
    cores = os.cpu_count() or 1
    if cores < 2:
        return {}
    return {"executor": "process",
            "workers": min(cores, MAX_WORKERS) if workers is None else workers}


#: Numeric settings: bounds for :func:`rwenas.checks.check_number` (one place for flags and
#: files; the CLI's flags use the same limits).
NUMBERS: dict[str, dict[str, Any]] = {
    "seed": {"integer": True, "low": 0, "high": MAX_SEED},
    "pop_size": {"integer": True, "low": 2, "high": MAX_POP_SIZE},
    "generations": {"integer": True, "low": 1, "high": MAX_GENERATIONS},
    "workers": {"integer": True, "low": 1, "high": MAX_WORKERS},
    "max_retries": {"integer": True, "low": 0, "high": MAX_RETRIES},
    "latency_batch": {"integer": True, "low": 1, "high": 65536},
    "train_size": {"integer": True, "low": 1, "optional": True},
    "val_size": {"integer": True, "low": 1, "optional": True},
    "image_size": {"integer": True, "low": 1, "high": MAX_IMAGE_SIZE, "optional": True},
    "threads": {"integer": True, "low": 1, "high": MAX_THREADS, "optional": True},
    "crossover_prob": {"low": 0, "high": 1},
    "mutation_eta": {"low": 0, "low_open": True, "high": 1e6},
    "gpus_per_eval": {"low": 0, "high": 1024},
    "max_madds": {"low": 0, "low_open": True, "optional": True},
    "max_params": {"low": 0, "low_open": True, "optional": True},
    "max_latency_ms": {"low": 0, "low_open": True, "optional": True},
    "max_minutes": {"low": 0, "low_open": True, "high": MAX_MINUTES, "optional": True},
    "stop_after_stagnation": {"integer": True, "low": 1, "high": MAX_GENERATIONS,
                              "optional": True},
}
TEXTS = {"space": False, "dataset": False, "data_dir": True, "ray_address": True,
         "executor": False}


#: settings only the ray executor uses, with their flags
RAY_ONLY = {"gpus_per_eval": "--gpus-per-eval", "ray_address": "--ray-address"}


def validate_config(config: dict[str, Any]) -> None:
    """Check types and ranges (in place: numbers are normalised); :class:`ConfigError`
    names the first bad setting."""
    for key, limits in NUMBERS.items():
        value = config[key]
        if isinstance(value, str):  # a quoted number in a TOML file is still a type error
            raise ConfigError(f"setting {key!r} must be a number, got {value!r}")
        config[key] = check_number(f"setting {key!r}", value, **limits)
    for key, optional in TEXTS.items():
        check_text(f"setting {key!r}", config[key], optional=optional)
    if not isinstance(config["download"], bool):
        raise ConfigError(f"setting 'download' must be true or false, got {config['download']!r}")
    if config["executor"] not in EXECUTORS:
        raise ConfigError(f"unknown executor {config['executor']!r} "
                          f"(known: {', '.join(EXECUTORS)})")
    if config["executor"] != "ray":  # Ray's settings, silently unused by the others
        for key, flag in RAY_ONLY.items():
            if config[key]:
                raise ConfigError(f"{flag} ({key}) applies to the ray executor only, not to "
                                  f"{config['executor']!r}; add --executor ray or drop it")
    from rwenas.search.algorithms import ALGORITHMS

    check_text("setting 'algorithm'", config["algorithm"])
    if config["algorithm"] not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {config['algorithm']!r} "
                          f"(known: {', '.join(ALGORITHMS)})")
    config["initial_population"] = check_initial_population(config["initial_population"],
                                                            config["pop_size"])
    objectives = config["objectives"]
    if isinstance(objectives, str):
        objectives = config["objectives"] = [o.strip() for o in objectives.split(",") if o]
    from rwenas.objectives import check_objectives

    check_objectives(objectives)
    config["network"] = validate_network(config["network"])
    try:
        rwe = RWEConfig(**config["rwe"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid rwe settings: {exc}") from None
    check_rwe(rwe)
    check_device(rwe.device, cuda_here=config["executor"] != "ray")


def check_initial_population(initial: Any, pop_size: int) -> list[list[int]] | None:
    """The ``initial_population`` setting: ``None`` or a non-empty list of at most
    ``pop_size`` genomes, each a list of integers (checked against the space when the search
    starts)."""
    if initial is None:
        return None
    if (not isinstance(initial, list | tuple) or not initial
            or not all(isinstance(g, list | tuple) for g in initial)):
        raise ConfigError("initial_population must be a non-empty list of genomes")
    if len(initial) > pop_size:
        raise ConfigError(f"initial_population holds {len(initial)} genomes, more than "
                          f"pop_size {pop_size}")
    out = []
    for i, genome in enumerate(initial):
        if len(genome) > 10_000 or any(isinstance(v, str) for v in genome):
            raise ConfigError(f"initial_population genome {i + 1} is not a list of integers")
        out.append([check_number(f"initial_population genome {i + 1}", v, integer=True,
                                 low=-2**31, high=2**31) for v in genome])
    return out


def validate_network(network: Any) -> dict[str, Any]:
    """The ``[network]`` table of a search: ``channels`` (C or [C1, C2, C3]) and ``layers``
    within the bounds the CLI's flags have; a space's own options (numbers finite) pass on to
    its ``build``, which checks them."""
    if not isinstance(network, Mapping):
        raise ConfigError("setting 'network' must be a table of settings")
    out = dict(network)
    for key, value in out.items():  # other keys belong to the space (mobilenetv2: width, head)
        if key not in ("channels", "layers") and isinstance(value, float):
            check_number(f"network {key}", value)
    if "channels" in out:
        channels = out["channels"]
        many = isinstance(channels, list | tuple)
        parts = list(channels) if many else [channels]
        if not parts or len(parts) > 8 or any(isinstance(c, str) for c in parts):
            raise ConfigError(f"network channels must be C or [C1, C2, C3], got {channels!r}")
        values = [check_number("network channels", c, integer=True, low=1, high=MAX_CHANNELS)
                  for c in parts]
        out["channels"] = values if many else values[0]
    if "layers" in out:
        if isinstance(out["layers"], str):
            raise ConfigError(f"network layers must be an integer, got {out['layers']!r}")
        out["layers"] = check_number("network layers", out["layers"], integer=True, low=1,
                                     high=MAX_LAYERS)
    return out


def check_rwe(rwe: RWEConfig) -> None:
    """Types and finiteness of the RWE settings that the estimator itself does not check."""
    for name in ("init", "bn_mode", "precision", "device"):
        check_text(f"rwe {name}", getattr(rwe, name))
    for name in ("standardize", "channels_last"):
        if not isinstance(getattr(rwe, name), bool):
            raise ConfigError(f"rwe {name} must be true or false, got {getattr(rwe, name)!r}")
    for name in ("epochs", "batch_size", "folds", "inference_batch", "calibration_size"):
        value = getattr(rwe, name)
        if isinstance(value, str):
            raise ConfigError(f"rwe {name} must be an integer, got {value!r}")
        check_number(f"rwe {name}", value, integer=True, low=1, high=10**7)
    for name, limits in (("lr", {"low": 0, "low_open": True}),
                         ("momentum", {"low": 0, "high": 1})):
        value = getattr(rwe, name)
        if isinstance(value, str):
            raise ConfigError(f"rwe {name} must be a number, got {value!r}")
        check_number(f"rwe {name}", value, **limits)
