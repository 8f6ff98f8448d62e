"""The Pareto front and its hypervolume: small utilities that the search, the stored run's
outputs and the report all use (so that none of them imports another for these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from rwenas.objectives import constraint_values

__all__ = ["flat_record", "hypervolume", "non_dominated", "pareto_front", "reference_point"]


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points`` (minimisation)."""
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(NonDominatedSorting().do(points, only_non_dominated_front=True))


def hypervolume(points: np.ndarray, ref: Sequence[float]) -> float:
    """Hypervolume dominated by ``points`` up to ``ref`` (points not better than ``ref`` in
    every objective contribute nothing)."""
    ref = np.asarray(ref, dtype=float)
    inside = points[np.all(points < ref, axis=1)] if len(points) else points
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref)(inside))




def reference_point(F: np.ndarray, ok: Sequence[bool], objectives: Sequence[str]
                    ) -> list[float]:
    """The hypervolume reference point of a run from its first generation's objectives ``F``
    (see :meth:`Search._reference_point`); failed rows (``ok`` false) and non-finite values
    are left out."""
    ok_rows = np.asarray(ok, dtype=bool)
    F = F[ok_rows] if ok_rows.any() else F
    ref = []
    for i, name in enumerate(objectives):
        if name == "rwe":
            ref.append(1.0)
            continue
        col = F[:, i][np.isfinite(F[:, i]) & (np.abs(F[:, i]) < 1e12)]
        if len(col) == 0:
            ref.append(1e12)
            continue
        worst, best = float(col.max()), float(col.min())
        ref.append(worst + max(abs(worst), worst - best) or 1.0)
    return ref


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored evaluation with its ``extra`` measurements lifted to the top level."""
    return {**(record.get("extra") or {}), **record}


def pareto_front(records: Any, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Non-dominated set of the successful records that satisfy every constraint of
    ``config``, sorted by the last objective then the others."""
    ok = [e for e in records if e["status"] == "ok"
          and all(g <= 0 for g in constraint_values(flat_record(e), config))]
    if not ok:
        return []
    idx = non_dominated(np.array([e["objectives"] for e in ok], dtype=float))
    return sorted((ok[i] for i in idx), key=lambda e: e["objectives"][::-1])
