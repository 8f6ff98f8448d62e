"""Choosing RWE's open settings without peeking (``rwenas study tune``).

RWE variants (:data:`VARIANTS`: BatchNorm mode and standardisation, width and depth of the
feature network, which features, how many images, how many random backbones, which
initialisation) are measured on the bench's *tuning* half only
(:func:`rwenas.study.bench.pool_halves`), each with its seconds per architecture. The variant with
the best Spearman among those within a stated budget of seconds per architecture is picked and
written to ``picked.json``; ``rwenas study correlation --half confirmation --tuned
picked.json`` then reports it on the confirmation half, which the choice never saw.

RWE's defaults in code are not changed by tuning: ``picked.json`` is the evidence for
changing them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError
from rwenas.estimators.proxies import RWEEstimator

__all__ = ["VARIANTS", "RWEVariant", "Variant", "load_tuned", "tune_rwe", "variant_estimators"]

DEFAULT_BUDGET = 5.0
DEFAULT_IMAGES = (2000, 500)


@dataclass(frozen=True)
class Variant:
    """One RWE setting: :class:`~rwenas.estimators.rwe.RWEConfig` options, the feature
    network's options (``channels``, ``layers``) and the search-split sizes."""

    name: str
    description: str
    rwe: Mapping[str, Any] = field(default_factory=dict)
    network: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[int, int] = DEFAULT_IMAGES

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.name, "description": self.description, "rwe": dict(self.rwe),
                "network": dict(self.network), "images": list(self.images)}


def _v(name: str, description: str, **kw: Any) -> Variant:
    return Variant(name, description, **kw)


#: the variants measured by default (the first is RWE's current default)
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    _v("default", "eval BN, standardised, C=10, 5 cells, last cell, 2000/500 images, 1 init"),
    _v("bn-batch", "batch-statistics BN", rwe={"bn_mode": "batch"}),
    _v("bn-calibrated", "calibrated BN", rwe={"bn_mode": "calibrated"}),
    _v("no-standardise", "features not standardised", rwe={"standardize": False}),
    _v("c16", "wider: C=16", network={"channels": 16}),
    _v("l8", "deeper: 8 cells", network={"layers": 8}),
    _v("c16-l8", "wider and deeper: C=16, 8 cells", network={"channels": 16, "layers": 8}),
    _v("all-cells", "pooled output of every cell, concatenated",
       rwe={"features": "all_cells"}),
    _v("images-5k", "5000/1000 images", images=(5000, 1000)),
    _v("images-10k", "10000/2000 images", images=(10000, 2000)),
    _v("inits-3", "softmax averaged over 3 random backbones", rwe={"inits": 3}),
    _v("kaiming-normal", "Kaiming normal init", rwe={"init": "kaiming_normal"}),
    _v("kaiming-uniform", "Kaiming uniform init", rwe={"init": "kaiming_uniform"}),
    _v("xavier-normal", "Xavier normal init", rwe={"init": "xavier_normal"}),
    _v("xavier-uniform", "Xavier uniform init", rwe={"init": "xavier_uniform"}),
)}


class RWEVariant(RWEEstimator):
    """RWE with a variant's settings: ``network`` options for the feature network and
    ``images = (train, val)`` sizes of the search split it scores on (the study gives it
    such a split)."""

    def __init__(self, variant: Variant, **overrides: Any) -> None:
        super().__init__(**{**dict(variant.rwe), **overrides})
        self.variant = variant
        self.network = dict(variant.network)
        self.images = tuple(variant.images)


def resolve_variants(spec: str | Sequence[str | Variant] | None) -> list[Variant]:
    """Variants by name (comma-separated or a list; ``None``/``all``: every one); a list
    may also hold :class:`Variant` objects (kept)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(VARIANTS.values())
    if not isinstance(spec, str) and all(isinstance(v, Variant) for v in spec) and spec:
        return list(spec)
    names = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec)
             if p.strip()]
    bad = [n for n in names if n not in VARIANTS]
    if bad or not names:
        raise ConfigError(f"unknown RWE variant(s) {', '.join(bad) or '(none given)'} "
                          f"(known: {', '.join(VARIANTS)})")
    return [VARIANTS[n] for n in dict.fromkeys(names)]


def variant_estimators(spec: str | Sequence[str | Variant],
                       rwe_overrides: Mapping[str, Any] | None = None
                       ) -> dict[str, RWEVariant]:
    """``{"rwe[<name>]": RWEVariant}`` for the variants ``spec`` names (see
    :func:`resolve_variants`), to be measured beside plain ``rwe``; ``default`` is left out,
    since it is plain ``rwe``."""
    return {f"rwe[{v.name}]": RWEVariant(v, **dict(rwe_overrides or {}))
            for v in resolve_variants(spec) if v.name != "default"}


def tune_rwe(bench_dir: str | Path, variants: str | Sequence[str | Variant] | None = None, *,
             budget: float = DEFAULT_BUDGET, sources: Sequence[str] | None = None,
             split_seed: int = 0, seed: int = 0, resamples: int = 2000,
             rwe_overrides: Mapping[str, Any] | None = None,
             out_dir: str | Path | None = None, progress: bool = False,
             score_store: str | Path | None = None) -> dict[str, Any]:
    """Measure RWE variants on the tuning half and pick one.

    Each variant scores every architecture of the tuning half (sources ``sources``, split
    by ``split_seed``); its Spearman and Kendall with the truth get bootstrap intervals, and
    its Spearman minus the default variant's a paired interval. The pick: the best point
    Spearman among the variants whose seconds per architecture
    (:func:`rwenas.study.stats.typical_seconds`, the median; the mean is reported too) are at
    most ``budget`` (ties: the cheaper). Returns ``{"rows",
    "picked", "budget", "n"}``; with ``out_dir`` writes ``tune.md``, ``tune.csv`` and
    ``picked.json``. ``score_store``: see
    :func:`rwenas.study.pool.correlate_pool`."""
    from rwenas.study import stats
    from rwenas.study.bench import Bench, _check_sources
    from rwenas.study.correlation import scores_from_values
    from rwenas.study.pool import pool_records, score_pool
    from rwenas.study.scores import open_score_store

    if not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
        raise ConfigError(f"budget must be a positive number of seconds, got {budget!r}")
    chosen = resolve_variants(variants)
    wanted = _check_sources(sources)
    with Bench.open(bench_dir) as bench:
        config, space = bench.config, bench.space
    records = pool_records(bench_dir, sources=wanted, half="tuning", split_seed=split_seed)
    if len(records) < 3:
        raise ConfigError(f"the tuning half of {bench_dir} has {len(records)} trained "
                          "architecture(s); need at least 3")
    ests = {v.name: RWEVariant(v, **dict(rwe_overrides or {})) for v in chosen}
    with open_score_store(score_store) as store:
        scores = score_pool(records, ests, space=space, dataset=config["dataset"],
                            data_dir=config.get("data_dir"), seed=seed, progress=progress,
                            store=store)
    truth = np.array([r["truth"] for r in records])
    seconds = {name: [sc.seconds for sc in got] for name, got in scores.items()}
    n = len(truth)
    idx = stats.bootstrap_indices(n, resamples, seed)
    samples: dict[str, np.ndarray] = {}
    rows = []
    for v in chosen:
        s = scores_from_values([sc.value for sc in scores[v.name]])
        rho_s = stats.spearman_rows(s[idx], truth[idx])
        samples[v.name] = rho_s
        rows.append({"variant": v.name, "description": v.description, "n": n,
                     "spearman": stats.interval(rho_s, stats.spearman(s, truth), n),
                     "kendall": stats.interval(stats.kendall_resamples(s, truth, idx),
                                               stats.kendall(s, truth), n),
                     "seconds": stats.typical_seconds(seconds[v.name]),
                     "seconds_mean": float(np.mean(seconds[v.name])),
                     "failed": sum(not sc.finite for sc in scores[v.name]), "diff": None})
    if "default" in samples:
        base = next(r for r in rows if r["variant"] == "default")
        for r in rows:
            if r["variant"] != "default":
                r["diff"] = stats.interval(samples[r["variant"]] - samples["default"],
                                           r["spearman"].value - base["spearman"].value, n)
    for r in rows:
        r["within_budget"] = r["seconds"] <= budget
    eligible = [r for r in rows if r["within_budget"] and math.isfinite(r["spearman"].value)]
    picked = max(eligible, key=lambda r: (r["spearman"].value, -r["seconds"]), default=None)
    result = {"rows": rows, "picked": picked, "budget": budget, "n": n,
              "sources": list(wanted), "split_seed": split_seed, "seed": seed}
    if out_dir is not None:
        _write(result, Path(out_dir), config, bench_dir, chosen)
    return result


def _write(result: Mapping[str, Any], out: Path, config: Mapping[str, Any],
           bench_dir: str | Path, chosen: Sequence[Variant]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["variant", "description", "n", "spearman", "spearman_lo", "spearman_hi",
              "kendall", "kendall_lo", "kendall_hi", "diff_vs_default", "diff_lo", "diff_hi",
              "seconds", "seconds_mean", "within_budget", "failed"]
    with open(out / "tune.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in result["rows"]:
            d = r["diff"]
            w.writerow({"variant": r["variant"], "description": r["description"], "n": r["n"],
                        "spearman": r["spearman"].value, "spearman_lo": r["spearman"].lo,
                        "spearman_hi": r["spearman"].hi, "kendall": r["kendall"].value,
                        "kendall_lo": r["kendall"].lo, "kendall_hi": r["kendall"].hi,
                        "diff_vs_default": d.value if d else None,
                        "diff_lo": d.lo if d else None, "diff_hi": d.hi if d else None,
                        "seconds": r["seconds"], "seconds_mean": r["seconds_mean"],
                        "within_budget": r["within_budget"],
                        "failed": r["failed"]})
    picked = result["picked"]
    lines = ["# RWE variants on the tuning half", "",
             f"{result['n']} architectures of the tuning half (sources "
             f"{','.join(result['sources'])}, split seed {result['split_seed']}) of "
             f"{bench_dir}; budget {result['budget']:g} s per architecture (the median of "
             "the wall times, mean beside it). Intervals: 95 % bootstrap; the last column is "
             "the paired interval against the default.", "",
             "| variant | settings | Spearman | Kendall | s / arch (median, mean) | "
             "within budget | − default (Spearman) |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mark = "**" if picked is not None and r is picked else ""
        lines.append(f"| {mark}{r['variant']}{mark} | {r['description']} | "
                     f"{r['spearman'].fmt()} | {r['kendall'].fmt()} | {r['seconds']:.2f}, "
                     f"{r['seconds_mean']:.2f} | "
                     f"{'yes' if r['within_budget'] else 'no'} | "
                     f"{r['diff'].fmt() if r['diff'] else '–'} |")
    lines.append("")
    if picked is None:
        lines.append("No variant is within the budget: nothing picked.")
    else:
        lines.append(f"Picked: **{picked['variant']}** ({picked['description']}), Spearman "
                     f"{picked['spearman'].fmt()} at {picked['seconds']:.2f} s per "
                     "architecture. Report it on the confirmation half only: `rwenas study "
                     f"correlation --half confirmation --split-seed {result['split_seed']} "
                     f"--tuned {out / 'picked.json'} ...`.")
        d = picked["diff"]
        if d is not None and math.isfinite(d.value):
            verdict = ("ahead of it on this half" if d.lo > 0 else
                       "behind it on this half" if d.hi < 0 else
                       "the interval contains 0: not told apart from it on this half")
            lines.append(f"Against the default: {d.fmt()} (paired Spearman difference; "
                         f"{verdict}).")
        variant = next(v for v in chosen if v.name == picked["variant"])
        (out / "picked.json").write_text(json.dumps({
            **variant.to_dict(), "spearman": picked["spearman"].value,
            "spearman_lo": picked["spearman"].lo, "spearman_hi": picked["spearman"].hi,
            "seconds": picked["seconds"], "budget": result["budget"], "half": "tuning",
            "n": result["n"], "split_seed": result["split_seed"],
            "sources": result["sources"], "bench": str(bench_dir),
            "dataset": config["dataset"]}, indent=2) + "\n")
    (out / "tune.md").write_text("\n".join(lines) + "\n")


def load_tuned(path: str | Path) -> tuple[RWEVariant, dict[str, Any]]:
    """The RWE estimator of a ``picked.json`` written by :func:`tune_rwe`, and the file's
    content; :class:`ConfigError` when it is missing or malformed."""
    p = Path(path)
    if p.is_dir():
        p = p / "picked.json"
    try:
        data = json.loads(p.read_text())
        variant = Variant(str(data["variant"]), str(data.get("description", "")),
                          rwe=dict(data.get("rwe") or {}),
                          network=dict(data.get("network") or {}),
                          images=tuple(int(v) for v in data["images"]))
    except FileNotFoundError:
        raise ConfigError(f"tuned RWE file {p} does not exist") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p} is not a picked.json of rwenas study tune ({exc})") from None
    return RWEVariant(variant), data
