"""Budgets that end a search early, at a generation boundary, leaving it resumable.

``max_minutes``: the search time so far — the wall-clock seconds of its finished generations,
summed over every session of the run (a generation interrupted by a kill is not counted) —
has reached ``max_minutes``. The generation that crosses the limit is finished first.

``stop_after_stagnation``: the hypervolume of everything evaluated has not improved for ``K``
generations (it never decreases, so "not improved" means "unchanged").

Both are checked before a generation starts. A stopped run is resumed with ``rwenas search
--resume``; giving a larger limit there (or a larger ``K``) extends it, and the new limits are
kept in the run's store for later resumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: settings that may change when a run is resumed
LIMITS = ("max_minutes", "stop_after_stagnation")


def stop_reason(config: Mapping[str, Any], generations: Sequence[Mapping[str, Any]]
                ) -> str | None:
    """Why the search must stop before its next generation, or ``None`` to go on."""
    minutes = config.get("max_minutes")
    if minutes is not None and generations:
        spent = sum(float(g["seconds"]) for g in generations) / 60.0
        if spent >= float(minutes):
            return (f"time budget reached: {spent:.2f} of {float(minutes):g} minutes spent "
                    f"after {len(generations)} generations")
    k = config.get("stop_after_stagnation")
    if k is not None and len(generations) > k:
        hv = [float(g["hypervolume"] or 0.0) for g in generations]
        before = hv[-k - 1]
        if max(hv[-k:]) <= before + 1e-12 * max(1.0, abs(before)):
            return (f"hypervolume stagnated: no improvement over {before:.6g} for {k} "
                    "generations")
    return None


def stored_limits(store: Any) -> dict[str, Any]:
    """The limits an earlier resume of the run stored (only the names of :data:`LIMITS`; the
    values are checked with the rest of the configuration)."""
    limits = store.get_state("limits")
    if not isinstance(limits, Mapping):
        return {}
    return {k: limits[k] for k in LIMITS if k in limits}


def apply_limits(store: Any, config: dict[str, Any], changed: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """``config`` with the limits a resumed run keeps in its store, updated by the ones given
    now (``changed``), which are stored for later resumes."""
    limits = stored_limits(store)
    limits.update({k: changed[k] for k in LIMITS if k in changed})
    if limits:
        store.set_state("limits", limits)
    return {**config, **limits}
