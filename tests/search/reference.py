"""Hand references for the search tests, written independently of pymoo and rwenas."""

from __future__ import annotations


def dominates(a, b) -> bool:
    """Pareto dominance for minimisation: no worse everywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def hypervolume_2d(points: list[list[float]], ref: list[float]) -> float:
    """Area dominated by 2-D ``points`` up to ``ref``, by a sweep over the first objective."""
    inside = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    area, best = 0.0, ref[1]
    for x, y in inside:
        if y < best:
            area += (ref[0] - x) * (best - y)
            best = y
    return area
