"""Figures of a search run, drawn from its results store (matplotlib, no display needed).

``*_figure`` functions take the store's records (``store.evaluations()``,
``store.generations()``) and return a matplotlib figure; :func:`figure_png` turns one into PNG
bytes (for a web page); ``plot_*`` write a figure of a store to a file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rwenas.objectives import label

Record = Mapping[str, Any]


def front_figure(evaluations: Sequence[Record], generations: Sequence[Record],
                 objectives: Sequence[str], x: int = 1, y: int = 0,
                 picks: Mapping[str, Record] | None = None) -> Figure:
    """Every evaluated architecture in grey and the front after each generation in colour
    (objective ``x`` against objective ``y``; by default multiply-adds against RWE error).
    ``picks`` (label → evaluation record) are marked and labelled on the plot."""
    ok = {e["key"]: e for e in evaluations if e["status"] == "ok"}
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    pts = [e["objectives"] for e in ok.values()]
    if pts:
        ax.scatter([p[x] for p in pts], [p[y] for p in pts], s=10, c="0.75",
                   label="evaluated", zorder=1)
    # viridis without its palest yellow, which is hard to see on white
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.88, 256)))
    drawn = [g for g in generations if any(k in ok for k in g["front"])]
    for i, g in enumerate(drawn):
        front = sorted((ok[k]["objectives"] for k in g["front"] if k in ok),
                       key=lambda p: (p[x], p[y]))
        colour = cmap(i / max(1, len(drawn) - 1))
        last = i == len(drawn) - 1
        ax.step([p[x] for p in front], [p[y] for p in front], where="post", color=colour,
                lw=2.2 if last else 1.0, alpha=1.0 if last else 0.7, zorder=2 + i,
                label=f"front, generation {g['generation']}" if last or i == 0 else None)
        if last:
            ax.scatter([p[x] for p in front], [p[y] for p in front], color=colour, s=28,
                       zorder=3 + i, edgecolor="black", linewidth=0.5)
    if len(drawn) > 2:
        norm = matplotlib.colors.Normalize(drawn[0]["generation"], drawn[-1]["generation"])
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                           pad=0.02, fraction=0.05)
        bar.set_label("generation of the front")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for name, e in (picks or {}).items():
        px, py = e["objectives"][x], e["objectives"][y]
        ax.scatter([px], [py], s=120, facecolor="none", edgecolor="#d62728", linewidth=1.6,
                   zorder=100)
        ax.annotate(name, (px, py), xytext=(6, 6), textcoords="offset points",
                    fontsize=10, fontweight="bold", color="#d62728", zorder=101)
    ax.set_xlabel(label(objectives[x]))
    ax.set_ylabel(label(objectives[y]))
    ax.set_title("Pareto front by generation")
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no successful evaluation yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    fig.tight_layout()
    return fig


def hypervolume_figure(generations: Sequence[Record]) -> Figure:
    """Hypervolume of the non-dominated set of everything evaluated, by generation."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot([g["generation"] for g in generations],
            [g["hypervolume"] or 0.0 for g in generations], marker="o")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.set_title("Hypervolume by generation")
    ax.grid(alpha=0.3)
    if generations:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        numbers = [g["generation"] for g in generations]
        if min(numbers) == max(numbers):
            ax.set_xlim(numbers[0] - 1, numbers[0] + 1)
    else:
        ax.text(0.5, 0.5, "no finished generation yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    fig.tight_layout()
    return fig


def time_figure(evaluations: Sequence[Record], generations: Sequence[Record]) -> Figure:
    """Evaluation time per generation, stacked: backbone features, linear classifiers, and
    the rest (building the network, counting its cost); the generation's wall-clock time as a
    marker, the number evaluated / cache hits above each bar."""
    gens = sorted({int(e["generation"]) for e in evaluations}
                  | {int(g["generation"]) for g in generations})
    features = dict.fromkeys(gens, 0.0)
    classifier = dict.fromkeys(gens, 0.0)
    total = dict.fromkeys(gens, 0.0)
    for e in evaluations:
        g = int(e["generation"])
        features[g] += e["features_seconds"] or 0.0
        classifier[g] += e["classifier_seconds"] or 0.0
        total[g] += e["seconds"] or 0.0
    other = {g: max(0.0, total[g] - features[g] - classifier[g]) for g in gens}
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    bottom = [0.0] * len(gens)
    for name, part, colour in (("features", features, "#4c72b0"),
                               ("classifiers", classifier, "#dd8452"),
                               ("other (build, count)", other, "#c0c0c0")):
        values = [part[g] for g in gens]
        ax.bar(gens, values, bottom=bottom, color=colour, label=name, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if generations:
        ax.plot([g["generation"] for g in generations], [g["seconds"] for g in generations],
                "k_", markersize=18, markeredgewidth=2, label="generation wall time",
                linestyle="none")
        for g in generations if len(gens) <= 20 else ():
            ax.annotate(f"{g['n_evaluated']}/{g['cache_hits']}",
                        (g["generation"], max(g["seconds"], total.get(g["generation"], 0.0))),
                        xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7,
                        color="0.3")
    ax.set_xlabel("generation" + (" (labels: evaluated / cache hits)" if len(gens) <= 20
                                  else ""))
    ax.set_ylabel("seconds")
    ax.set_title("Time by generation")
    ax.grid(alpha=0.3, axis="y")
    if gens:
        if len(gens) <= 20:
            ax.set_xticks(gens)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize=8)
        ax.margins(y=0.12)
    else:
        ax.text(0.5, 0.5, "nothing evaluated yet", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 144) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _save(fig: Figure, out: str | Path) -> Path:
    try:
        fig.savefig(out)
    finally:
        plt.close(fig)
    return Path(out)


def plot_front_by_generation(store: Any, objectives: Sequence[str], out: str | Path,
                             x: int = 1, y: int = 0) -> Path:
    """Write :func:`front_figure` of a store to ``out``."""
    return _save(front_figure(store.evaluations(), store.generations(), objectives, x, y), out)


def plot_hypervolume(store: Any, out: str | Path) -> Path:
    """Write :func:`hypervolume_figure` of a store to ``out``."""
    return _save(hypervolume_figure(store.generations()), out)


def plot_time(store: Any, out: str | Path) -> Path:
    """Write :func:`time_figure` of a store to ``out``."""
    return _save(time_figure(store.evaluations(), store.generations()), out)
