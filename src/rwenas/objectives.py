"""Objectives a search can minimise.

Three kinds, all minimised:

* built-in measurements of an evaluation (:data:`OBJECTIVES`): ``rwe``, ``madds``, ``params``,
  ``latency``, ``latency_batch``, ``latency_onnx``, ``memory``;
* any registered estimator of the study (``jacob_cov``, ``synflow``, ``naswot``, …, see
  :func:`estimator_names`), by its lower-is-better ``Score.value`` (a proxy whose paper says
  "higher is better" is negated; ``Score.raw`` is stored next to it);
* a function of the user's, ``package.module:function``, called as
  ``function(network, genome, info) -> float`` (imported like plugin search spaces).

A built-in name wins over an estimator of the same name (``madds`` and ``params`` are costs to
minimise here, not accuracy predictors).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
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
    "latency_onnx": ("latency_onnx_ms", "ONNX Runtime latency, batch 1 (ms)"),
}

#: measurements that cost extra time and are only taken when an objective or constraint
#: needs them
MEASURED = {"latency": "latency", "latency_batch": "latency_batch", "memory": "memory",
            "latency_onnx": "latency_onnx"}

#: what the ONNX Runtime latency needs, and how to get it
ONNX_EXTRA = "pip install 'rwenas[onnx]'"

#: hard constraints: config key → evaluation field (value must be <= the bound)
CONSTRAINTS: dict[str, str] = {
    "max_madds": "madds_m",
    "max_params": "params_m",
    "max_latency_ms": "latency_ms",
}

#: objective value given to an evaluation that failed for good (worse than any real one)
WORST = {"rwe": 1.0}
WORST_DEFAULT = 1e12


def estimator_names() -> list[str]:
    """Names of the study's registered estimators usable as objectives (those that are not
    also built-in objectives)."""
    from rwenas.estimators.proxies import ESTIMATORS
    from rwenas.estimators.short_training import ShortTraining

    return [n for n in (*ESTIMATORS, ShortTraining.name) if n not in OBJECTIVES]


def make_objective_estimator(name: str) -> Any:
    """The estimator behind objective ``name`` (default options)."""
    from rwenas.estimators.proxies import ESTIMATORS, make_estimator
    from rwenas.estimators.short_training import ShortTraining

    return make_estimator(name, {**ESTIMATORS, ShortTraining.name: ShortTraining})


def kind(name: str) -> str:
    """``builtin``, ``estimator`` or ``function`` (``module:function``); ConfigError if none."""
    if name in OBJECTIVES:
        return "builtin"
    if ":" in name:
        return "function"
    if name in estimator_names():
        return "estimator"
    raise ConfigError(f"unknown objective {name!r} (built-in: {', '.join(OBJECTIVES)}; "
                      f"estimators: {', '.join(estimator_names())}; or a function as "
                      "package.module:function)")


_FUNCTION_NAME = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def is_objective_name(name: Any) -> bool:
    """Whether ``name`` is a well-formed objective name (built-in, a registered estimator or
    ``package.module:function``), without importing anything: for names read from a stored
    run."""
    if not isinstance(name, str):
        return False
    return (name in OBJECTIVES or _FUNCTION_NAME.fullmatch(name) is not None
            or name in estimator_names())


def load_function(spec: str) -> Callable[..., Any]:
    """The objective function ``package.module:function`` (imported as plugin spaces are: it
    runs that module; see :func:`check_stored_objectives` for names from a stored run)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ConfigError(f"objective {spec!r} names no module (give package.module:function)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the module is the user's: any failure is theirs to fix
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else ""
        raise ConfigError(f"cannot import objective module {module_name!r}: "
                          f"{type(exc).__name__}: {first}") from None
    func = getattr(module, attr, None) if attr.isidentifier() else None
    if not callable(func):
        raise ConfigError(f"module {module_name!r} has no objective function {attr!r}")
    return func


def check_stored_objectives(names: Any, *, given: Any = None, trust: bool = False,
                            where: str = "the stored run") -> None:
    """Refuse to import the user objectives (``module:function``) that a stored run names
    unless the user vouches for them, as :func:`rwenas.spaces.check_stored_space` does for
    plugin spaces: each is used only when the user names it again (``given``, from
    ``--objectives``, a list or a comma-separated string) or passes ``trust``
    (``--trust-plugins``); otherwise :class:`ConfigError` names the module."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where} names no valid objectives ({str(names)[:80]!r})")
    if trust:
        return
    if isinstance(given, str):
        given = [g.strip() for g in given.split(",")]
    vouched = set(given) if isinstance(given, list | tuple) else set()
    for name in names:
        if ":" in name and name not in OBJECTIVES and name not in vouched:
            module = name.partition(":")[0]
            raise ConfigError(f"{where} uses the objective function {name!r}; loading it "
                              f"imports and runs module {module!r}. If you trust it, give "
                              f"--objectives {','.join(names)} (or --trust-plugins)")


def check_objectives(names: Sequence[str]) -> None:
    """At least two distinct objectives, each built-in, a registered estimator or an
    importable ``module:function``; ``latency_onnx`` needs onnx and onnxruntime."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError("objectives must be a list of names, e.g. rwe,madds")
    for name in names:
        if kind(name) == "function":
            load_function(name)
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError("give at least two distinct objectives, e.g. rwe,madds")
    if "latency_onnx" in names:
        check_onnx()


def check_onnx() -> None:
    """ConfigError naming the extra when onnx or onnxruntime is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the latency_onnx objective needs {' and '.join(missing)}: "
                          f"{ONNX_EXTRA}")


def custom_objectives(names: Sequence[str]) -> list[str]:
    """The objectives an evaluation computes besides its built-in measurements."""
    return [n for n in names if kind(n) != "builtin"]


def objective_values(record: Mapping[str, Any], names: Sequence[str]) -> list[float]:
    """The objective vector of an evaluation record (a dict with the evaluation fields; the
    values of estimators and functions under ``record["objectives"]``)."""
    custom = record.get("objectives") or {}
    return [float(record[OBJECTIVES[n][0]]) if n in OBJECTIVES else float(custom[n])
            for n in names]  # KeyError: not measured


def primary(names: Sequence[str]) -> int:
    """Index of the objective that stands for accuracy: the RWE error, else the first."""
    return list(names).index("rwe") if "rwe" in names else 0


def value_of(row: Mapping[str, Any], name: str) -> float | None:
    """The stored value called ``name`` of a front.json row or a (flattened) evaluation
    record: an objective of the run, or a measurement (``madds``, ``madds_m``, ``params``,
    ``latency``, …), ``None`` if the row has none."""
    objectives = row.get("objectives")
    if isinstance(objectives, Mapping) and objectives.get(name) is not None:
        return float(objectives[name])
    for key in (OBJECTIVES[name][0] if name in OBJECTIVES else None, name):
        if key is not None and row.get(key) is not None:
            return float(row[key])
    return None


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
    """Axis and column label of objective ``name``."""
    if name in OBJECTIVES:
        return OBJECTIVES[name][1]
    if ":" not in name:
        try:
            if getattr(make_objective_estimator(name), "higher_is_better", False):
                return f"−{name} (negated: lower is better)"
        except ConfigError:
            pass
    return name
