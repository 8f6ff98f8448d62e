"""What a finished (or stopped) search run shows: figures and the HTML report, drawn from
its results store alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_figures"]


def write_figures(store: Any, config: dict[str, Any]) -> dict[str, Path]:
    """``front.png``, ``hypervolume.png`` and ``report.html`` of the run in ``store``: what
    the command line has :func:`rwenas.search.nsga2.run_search` call at the end (``after``)."""
    from rwenas.report.html import write_report
    from rwenas.report.plots import plot_front_by_generation, plot_hypervolume

    run_dir = store.run_dir
    paths = {"front.png": run_dir / "front.png", "hypervolume.png": run_dir / "hypervolume.png"}
    plot_front_by_generation(store, list(config["objectives"]), paths["front.png"])
    plot_hypervolume(store, paths["hypervolume.png"])
    paths["report.html"] = write_report(run_dir, space=config["space"])
    return paths
