"""Objectives a search can minimise, read from an evaluation's measurements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rwenas.errors import ConfigError

#: objective name → (evaluation field, label for plots and tables)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "rwe": ("rwe_error", "RWE error"),
    "madds": ("madds_m", "multiply-adds (M)"),
    "params": ("params_m", "parameters (M)"),
    "latency": ("latency_ms", "latency, batch 1 (ms)"),
    "latency_batch": ("latency_batch_ms", "latency, batch of latency_batch (ms)"),
    "memory": ("memory_mb", "peak activation memory (MB)"),
}

#: measurements that cost extra time and are only taken when an objective or constraint
#: needs them
MEASURED = {"latency": "latency", "latency_batch": "latency_batch", "memory": "memory"}

#: hard constraints: config key → evaluation field (value must be <= the bound)
CONSTRAINTS: dict[str, str] = {
    "max_madds": "madds_m",
    "max_params": "params_m",
    "max_latency_ms": "latency_ms",
}

#: objective value given to an evaluation that failed for good (worse than any real one)
WORST = {"rwe": 1.0}
WORST_DEFAULT = 1e12


def check_objectives(names: Sequence[str]) -> None:
    """At least two known, distinct objectives, RWE error among them."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError("objectives must be a list of names, e.g. rwe,madds")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"unknown objective(s) {', '.join(unknown)} "
                          f"(known: {', '.join(OBJECTIVES)})")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError("give at least two distinct objectives, e.g. rwe,madds")
    if "rwe" not in names:
        raise ConfigError("the objectives must include rwe (the RWE error)")


def objective_values(record: Mapping[str, Any], names: Sequence[str]) -> list[float]:
    """The objective vector of an evaluation record (a dict with the evaluation fields)."""
    return [float(record[OBJECTIVES[n][0]]) for n in names]  # KeyError: not measured


def measurements(names: Sequence[str], config: Mapping[str, Any] | None = None) -> list[str]:
    """Extra measurements the objectives and constraints in ``config`` need."""
    needed = {MEASURED[n] for n in names if n in MEASURED}
    if config is not None and config.get("max_latency_ms") is not None:
        needed.add("latency")
    return sorted(needed)


def constraint_values(record: Mapping[str, Any], config: Mapping[str, Any]) -> list[float]:
    """pymoo inequality constraints ``value - bound <= 0`` for the bounds set in ``config``;
    a missing value (failed evaluation) counts as violating every bound."""
    out = []
    for key, fld in CONSTRAINTS.items():
        bound = config.get(key)
        if bound is None:
            continue
        value = record.get(fld)
        out.append(WORST_DEFAULT if value is None else float(value) - float(bound))
    return out


def active_constraints(config: Mapping[str, Any]) -> list[str]:
    return [k for k in CONSTRAINTS if config.get(k) is not None]


def worst_values(names: Sequence[str]) -> list[float]:
    return [WORST.get(n, WORST_DEFAULT) for n in names]


def label(name: str) -> str:
    return OBJECTIVES[name][1]
