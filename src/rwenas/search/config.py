"""Search configuration: defaults, named profiles, TOML files and flags, resolved and checked.

Precedence: built-in defaults < ``--profile`` < ``--config FILE.toml`` < command-line flags.
The resolved configuration is stored in the run (``config.json`` and the SQLite store), and a
resumed run uses it unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

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
_INT_KEYS = ("seed", "pop_size", "generations", "workers", "max_retries")


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
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        _merge(config, PROFILES[profile], f"profile {profile}")
    if file is not None:
        data = load_toml(file)
        prof = data.pop("profile", None)
        if prof is not None and profile is None:
            return resolve_config(prof, file, overrides)
        _merge(config, data, str(file))
    if overrides:
        _merge(config, {k: v for k, v in overrides.items() if v is not None}, "option")
    validate_config(config)
    return config


def validate_config(config: dict[str, Any]) -> None:
    """Check types and ranges; :class:`ConfigError` names the first bad setting."""
    for key in _INT_KEYS:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting {key!r} must be an integer, got {value!r}")
    if config["pop_size"] < 2:
        raise ConfigError("pop_size must be at least 2")
    if config["generations"] < 1:
        raise ConfigError("generations must be at least 1")
    if config["workers"] < 1:
        raise ConfigError("workers must be at least 1")
    if config["max_retries"] < 0:
        raise ConfigError("max_retries must be at least 0")
    if config["executor"] not in EXECUTORS:
        raise ConfigError(f"unknown executor {config['executor']!r} "
                          f"(known: {', '.join(EXECUTORS)})")
    for key in ("train_size", "val_size", "image_size", "threads"):
        value = config[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"setting {key!r} must be a positive integer, got {value!r}")
    if not 0.0 <= float(config["crossover_prob"]) <= 1.0:
        raise ConfigError("crossover_prob must lie in [0, 1]")
    if float(config["mutation_eta"]) <= 0:
        raise ConfigError("mutation_eta must be positive")
    for key in ("max_madds", "max_params", "max_latency_ms"):
        value = config[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value <= 0):
            raise ConfigError(f"setting {key!r} must be a positive number, got {value!r}")
    if (isinstance(config["latency_batch"], bool) or not isinstance(config["latency_batch"], int)
            or config["latency_batch"] < 1):
        raise ConfigError("latency_batch must be a positive integer")
    if float(config["gpus_per_eval"]) < 0:
        raise ConfigError("gpus_per_eval must be at least 0")
    from rwenas.search.algorithms import ALGORITHMS

    if config["algorithm"] not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {config['algorithm']!r} "
                          f"(known: {', '.join(ALGORITHMS)})")
    minutes = config["max_minutes"]
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float)
                                or not 0 < minutes < float("inf")):
        raise ConfigError(f"setting 'max_minutes' must be a positive number, got {minutes!r}")
    k = config["stop_after_stagnation"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"setting 'stop_after_stagnation' must be a positive integer, "
                          f"got {k!r}")
    initial = config["initial_population"]
    if initial is not None:
        if (not isinstance(initial, list) or not initial
                or not all(isinstance(g, list | tuple) for g in initial)):
            raise ConfigError("initial_population must be a non-empty list of genomes")
        if len(initial) > config["pop_size"]:
            raise ConfigError(f"initial_population holds {len(initial)} genomes, more than "
                              f"pop_size {config['pop_size']}")
        config["initial_population"] = [list(g) for g in initial]
    objectives = config["objectives"]
    if isinstance(objectives, str):
        objectives = config["objectives"] = [o.strip() for o in objectives.split(",") if o]
    from rwenas.search.objectives import check_objectives

    check_objectives(objectives)
    try:
        RWEConfig(**config["rwe"])
    except TypeError as exc:
        raise ConfigError(f"invalid rwe settings: {exc}") from None
