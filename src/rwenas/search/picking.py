"""Picking one member of a Pareto front as users ask for it: the knee, or the most accurate
one within a budget. Used by ``rwenas train``/``export`` (on ``front.json``) and the report
(on the store's records).

``knee``: with every objective of the run normalised to [0, 1] over the front, the member
farthest below the line (hyperplane) through the front's extremes, i.e. with the smallest sum
of normalised objectives (ties: lower error).

``"madds<=10"``: the lowest error (the RWE error, or the run's first objective when it has no
RWE) among the members that meet every condition; conditions are ``NAME OP NUMBER`` with
``OP`` one of ``<=``, ``<``, ``>=``, ``>``, joined by ``,``. ``NAME`` is any stored objective
of the run (an estimator, a ``module:function``) or measurement (``madds``, ``params``,
``latency``, ``latency_onnx``, ``memory``, ``rwe``, or the field names ``madds_m``, …).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rwenas.errors import ConfigError
from rwenas.objectives import value_of

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.:]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+|inf)\s*$")
_OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b}


def is_budget(pick: str) -> bool:
    """Whether ``pick`` is a budget expression like ``madds<=10``."""
    return any(op in str(pick) for op in ("<", ">"))


def parse_budget(text: str) -> list[tuple[str, str, float]]:
    """``[(name, op, bound), …]`` of a budget expression (ConfigError if malformed)."""
    out = []
    for part in str(text).split(","):
        m = _CONDITION.match(part)
        if m is None:
            raise ConfigError(f"invalid budget {part.strip()!r}: write NAME<=NUMBER, e.g. "
                              "madds<=10 (also <, >=, >; several joined by ',')")
        bound = float(m.group(3))
        if math.isnan(bound):
            raise ConfigError(f"invalid budget {part.strip()!r}: the bound is not a number")
        out.append((m.group(1), m.group(2), bound))
    return out


def error_of(row: Mapping[str, Any], objectives: Sequence[str]) -> float:
    """The accuracy-standing value of a row: its RWE error, else its first objective."""
    err = row.get("rwe_error")
    if err is None and objectives:
        err = value_of(row, objectives[0])
    if err is None:
        raise ConfigError("a front member has neither an RWE error nor objectives")
    return float(err)


def knee_index(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> int:
    """Index of the knee of ``rows`` (a front) over ``objectives``."""
    if not rows:
        raise ConfigError("the front is empty")
    names = list(objectives) or ["rwe", "madds"]
    cols = []
    for name in names:
        col = [value_of(r, name) for r in rows]
        if any(v is None for v in col):
            raise ConfigError(f"a front member has no {name!r}; cannot find the knee")
        cols.append([float(v) for v in col])  # type: ignore[arg-type]
    sums = [0.0] * len(rows)
    for col in cols:
        lo, hi = min(col), max(col)
        for i, v in enumerate(col):
            sums[i] += (v - lo) / (hi - lo) if hi > lo else 0.0
    return min(range(len(rows)), key=lambda i: (round(sums[i], 12),
                                                error_of(rows[i], names), i))


def budget_index(rows: Sequence[Mapping[str, Any]], budget: str,
                 objectives: Sequence[str]) -> int:
    """Index of the lowest-error member of ``rows`` that meets ``budget``."""
    if not rows:
        raise ConfigError("the front is empty")
    conditions = parse_budget(budget)
    ok = list(range(len(rows)))
    for name, op, bound in conditions:
        values = [value_of(r, name) for r in rows]
        if all(v is None for v in values):
            known = sorted({*objectives, "rwe", "madds", "params"})
            raise ConfigError(f"the front stores no {name!r} (objectives and measurements: "
                              f"{', '.join(known)})")
        meets = [i for i in ok if values[i] is not None and _OPS[op](values[i], bound)]
        if not meets:
            present = [v for v in values if v is not None]
            best = min(present) if op in ("<=", "<") else max(present)
            raise ConfigError(f"no front member has {name} {op} {bound:g} (the "
                              f"{'smallest' if op in ('<=', '<') else 'largest'} is "
                              f"{best:.4g})")
        ok = meets
    madds = [value_of(rows[i], "madds") for i in ok]
    return min(zip(ok, madds, strict=True), key=lambda t: (
        error_of(rows[t[0]], objectives), t[1] if t[1] is not None else 0.0, t[0]))[0]


#: the named picks of a front: lowest error, middle by MAdds, fewest MAdds
LMS = ("L", "M", "S")


def _number(row: Mapping[str, Any], key: str, index: int) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"front.json row {index} has no numeric {key!r}")
    return float(value)


def lms_index(rows: Sequence[Mapping[str, Any]], which: str, objectives: Sequence[str]) -> int:
    """Index of the ``L``, ``M`` or ``S`` member of ``rows`` (a front, as ``front.json``
    rows): ``L`` the lowest RWE error (the first objective for a run without RWE; ties: fewer
    multiply-adds), ``S`` the fewest multiply-adds, ``M`` the middle of the front sorted by
    multiply-adds (index ``len // 2``)."""
    n = len(rows)
    if n == 0:
        raise ConfigError("the front is empty")
    which = str(which).upper()
    if which not in LMS:
        raise ConfigError(f"unknown pick {which!r} (known: {', '.join(LMS)})")
    if which == "L" and any(r.get("rwe_error") is None for r in rows):
        return min(range(n), key=lambda i: (error_of(rows[i], objectives), i))
    err = [_number(r, "rwe_error", i) if which == "L" else 0.0 for i, r in enumerate(rows)]
    madds = [_number(r, "madds_m", i) for i, r in enumerate(rows)]
    if which == "L":
        return min(range(n), key=lambda i: (err[i], madds[i], i))
    by_madds = sorted(range(n), key=lambda i: (madds[i], err[i], i))
    return by_madds[0] if which == "S" else by_madds[n // 2]


def select(rows: Sequence[Mapping[str, Any]], pick: str,
           objectives: Sequence[str]) -> int | None:
    """Index picked by ``knee`` or a budget; ``None`` for other picks (L/M/S, an index)."""
    text = str(pick).strip()
    if text.lower() == "knee":
        return knee_index(rows, objectives)
    if is_budget(text):
        return budget_index(rows, text, objectives)
    return None


def record_row(record: Mapping[str, Any], objectives: Sequence[str]) -> dict[str, Any]:
    """A stored evaluation as a front.json-like row (objectives by name, measurements)."""
    extra = record.get("extra") or {}
    return {**extra, "madds_m": record.get("madds_m"), "params_m": record.get("params_m"),
            "objectives": dict(zip(objectives, record["objectives"], strict=False))}
