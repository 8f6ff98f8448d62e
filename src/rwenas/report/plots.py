"""Figures of a search run, drawn from its results store (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rwenas.search.objectives import label


def plot_front_by_generation(store: Any, objectives: Sequence[str], out: str | Path,
                             x: int = 1, y: int = 0) -> Path:
    """Every evaluated architecture in grey and the front after each generation in colour
    (objective ``x`` against objective ``y``; by default multiply-adds against RWE error)."""
    evaluations = {e["key"]: e for e in store.evaluations() if e["status"] == "ok"}
    generations = store.generations()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    pts = [e["objectives"] for e in evaluations.values()]
    if pts:
        ax.scatter([p[x] for p in pts], [p[y] for p in pts], s=10, c="0.75",
                   label="evaluated", zorder=1)
    cmap = plt.get_cmap("viridis")
    for i, g in enumerate(generations):
        front = sorted((evaluations[k]["objectives"] for k in g["front"] if k in evaluations),
                       key=lambda p: p[x])
        if not front:
            continue
        colour = cmap(i / max(1, len(generations) - 1))
        last = i == len(generations) - 1
        ax.step([p[x] for p in front], [p[y] for p in front], where="post", color=colour,
                lw=2.2 if last else 1.0, alpha=1.0 if last else 0.7, zorder=2 + i,
                label=f"front, generation {g['generation']}" if last or i == 0 else None)
        if last:
            ax.scatter([p[x] for p in front], [p[y] for p in front], color=colour, s=28,
                       zorder=3 + i, edgecolor="black", linewidth=0.5)
    ax.set_xlabel(label(objectives[x]))
    ax.set_ylabel(label(objectives[y]))
    ax.set_title("Pareto front by generation")
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def plot_hypervolume(store: Any, out: str | Path) -> Path:
    """Hypervolume of the non-dominated set of everything evaluated, by generation."""
    generations = store.generations()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot([g["generation"] for g in generations],
            [g["hypervolume"] or 0.0 for g in generations], marker="o")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.set_title("Hypervolume by generation")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
