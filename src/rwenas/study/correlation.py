"""The pool study's statistics and its outputs (``rwenas study correlation``).

:func:`correlation_report` turns estimator values and the ground truth of a pool into every
number the study reports (see :mod:`rwenas.study.stats` for the methods):

* per estimator: Spearman and Kendall with seeded bootstrap 95 % intervals;
* per estimator other than the reference (RWE): the paired bootstrap interval of
  ``Spearman_RWE - Spearman_other`` on the same resamples, and the share of resamples on which
  RWE's Spearman is the larger;
* at equal cost: the partial rank correlation with the truth controlling for MAdds and for
  params (of the trained network), with bootstrap intervals, and Spearman within MAdds bins
  (quartiles by default; ``n`` per bin given);
* all of this overall and per source group (and overall without the pooling/skip-only
  ``light`` cells, which size baselines rank last by construction);
* where the truth and each estimator place each source group (the mean placement, 0 = best,
  1 = worst): an estimator that misplaces a whole kind of architecture shows here;
* the truth's reliability: test–retest Spearman over the retested architectures with its
  interval, and the bound ``sqrt(reliability)`` on any estimator's correlation.
* optionally, every estimator's own reliability (:func:`estimator_retest`): the Spearman
  between its scores under two seeds (another search split, other random weights), and its
  Spearman with the truth under the second seed. A search selects architectures on the first
  seed's scores, so on the architectures it visited the second seed shows how much of a
  correlation was selection on the estimator's own noise.

Signs: estimator values are lower-is-better, so correlations are computed with ``-value`` (a
perfect estimator scores +1). A failed estimate (``+inf``, or NaN) ranks as the worst.
:func:`write_report` writes ``study.md``, ``correlation.csv``, ``bins.csv``, ``placement.csv``
and ``correlation.png`` (Spearman with its interval per estimator and group, the bound dashed).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.study import stats
from rwenas.study.stats import Interval

__all__ = ["correlation_report", "estimator_retest", "format_report", "scores_from_values",
           "write_report"]

GROUP_ALL = "all"
GROUP_NO_LIGHT = "all but light"


def scores_from_values(values: Sequence[float]) -> np.ndarray:
    """``-value`` with failed estimates (+inf, NaN) below every finite one."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    worst = (v[finite].max() + 1.0) if finite.any() else 0.0
    return -np.where(finite | np.isneginf(v), v, worst)


def _group_stats(scores: Mapping[str, np.ndarray], truth: np.ndarray, madds: np.ndarray,
                 params: np.ndarray, reference: str | None, resamples: int,
                 seed: int) -> list[dict[str, Any]]:
    n = len(truth)
    nan = Interval(math.nan, math.nan, math.nan, n)
    if n < 3:
        return [{"estimator": e, "n": n, "spearman": nan, "kendall": nan, "diff": None,
                 "p_reference_better": math.nan, "partial_madds": nan,
                 "partial_params": nan} for e in scores]
    idx = stats.bootstrap_indices(n, resamples, seed)
    # the ranks of the truth and of the controls on every resample, shared by all estimators
    r_truth = stats.rank_rows(truth[idx])
    r_madds = stats.rank_rows(madds[idx])[0]
    r_params = stats.rank_rows(params[idx])[0]
    rows: list[dict[str, Any]] = []
    rho_samples: dict[str, np.ndarray] = {}
    for name, s in scores.items():
        r_s = stats.rank_rows(s[idx])
        rho_s = stats.pearson_of_ranks(r_s, r_truth)
        rho = stats.interval(rho_s, stats.spearman(s, truth), n)
        tau = stats.interval(stats.kendall_resamples(s, truth, idx), stats.kendall(s, truth), n)
        pm = stats.interval(stats.partial_from_ranks(r_s[0], r_truth[0], r_madds),
                            stats.partial_spearman(s, truth, madds), n)
        pp = stats.interval(stats.partial_from_ranks(r_s[0], r_truth[0], r_params),
                            stats.partial_spearman(s, truth, params), n)
        rho_samples[name] = rho_s
        rows.append({"estimator": name, "n": n, "spearman": rho, "kendall": tau,
                     "diff": None, "p_reference_better": math.nan, "partial_madds": pm,
                     "partial_params": pp})
    if reference in scores:
        ref = rho_samples[reference]
        ref_value = next(r["spearman"].value for r in rows if r["estimator"] == reference)
        for r in rows:
            if r["estimator"] == reference:
                continue
            d = ref - rho_samples[r["estimator"]]
            r["diff"] = stats.interval(d, ref_value - r["spearman"].value, n)
            finite = d[np.isfinite(d)]
            r["p_reference_better"] = float(np.mean(finite > 0)) if len(finite) else math.nan
    return rows


def correlation_report(values: Mapping[str, Sequence[float]], truth: Sequence[float],
                       sources: Sequence[str], madds: Sequence[float],
                       params: Sequence[float], *, reference: str | None = "rwe",
                       resamples: int = stats.RESAMPLES, seed: int = 0, bins: int = 4,
                       retest: Mapping[str, Any] | None = None,
                       seconds: Mapping[str, float] | None = None,
                       failed: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Every statistic of the pool study (see the module docstring).

    ``values[estimator]``: lower-is-better values, one per architecture; ``truth``: the
    ground-truth accuracy (mean of the runs); ``sources``: each architecture's source;
    ``madds``/``params``: its cost (the controls). Returns ``{"n", "reference", "resamples",
    "seed", "groups": [{"group", "n", "rows": [...]}], "bins": {...}, "retest", "seconds",
    "failed"}``; rows hold :class:`~rwenas.study.stats.Interval` values."""
    truth = np.asarray(truth, dtype=float)
    sources = np.asarray(list(sources), dtype=object)
    madds = np.asarray(madds, dtype=float)
    params = np.asarray(params, dtype=float)
    scores = {name: scores_from_values(v) for name, v in values.items()}
    for name, s in scores.items():
        if len(s) != len(truth):
            raise ValueError(f"{name}: {len(s)} values for {len(truth)} architectures")
    reference = reference if reference in scores else None
    present = [s for s in dict.fromkeys(sources.tolist())]
    masks: list[tuple[str, np.ndarray]] = [(GROUP_ALL, np.ones(len(truth), dtype=bool))]
    if len(present) > 1:
        masks += [(src, sources == src) for src in present]
        if "light" in present:
            masks.append((GROUP_NO_LIGHT, sources != "light"))
    groups = []
    for group, mask in masks:
        rows = _group_stats({k: v[mask] for k, v in scores.items()}, truth[mask],
                            madds[mask], params[mask], reference, resamples, seed)
        groups.append({"group": group, "n": int(mask.sum()), "rows": rows})
    labels = stats.quantile_bins(madds, bins) if len(truth) >= bins else np.zeros(
        len(truth), dtype=int)
    bin_info = []
    bin_rows: dict[str, list[Interval]] = {k: [] for k in scores}
    for b in range(int(labels.max()) + 1 if len(labels) else 0):
        m = labels == b
        bin_info.append({"bin": b + 1, "n": int(m.sum()), "madds_lo": float(madds[m].min()),
                         "madds_hi": float(madds[m].max())})
        n_b = int(m.sum())
        idx = stats.bootstrap_indices(n_b, resamples, seed) if n_b >= 3 else None
        for name, s in scores.items():
            if idx is None:
                bin_rows[name].append(Interval(math.nan, math.nan, math.nan, n_b))
                continue
            sb, tb = s[m], truth[m]
            bin_rows[name].append(stats.interval(stats.spearman_rows(sb[idx], tb[idx]),
                                                 stats.spearman(sb, tb), n_b))
    placement: dict[str, dict[str, float]] = {}
    if len(present) > 1:
        placement["truth"] = stats.mean_placement(truth, sources)
        placement.update({k: stats.mean_placement(v, sources) for k, v in scores.items()})
    return {"n": len(truth), "reference": reference, "resamples": resamples, "seed": seed,
            "groups": groups, "bins": {"info": bin_info, "rows": bin_rows},
            "placement": placement,
            "retest": dict(retest or {}), "seconds": dict(seconds or {}),
            "failed": dict(failed or {})}


def estimator_retest(first: Mapping[str, Sequence[float]], second: Mapping[str, Sequence[float]],
                     truth: Sequence[float], *, resamples: int = stats.RESAMPLES,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Each estimator scored twice (``first``/``second``: lower-is-better values per
    architecture under two seeds): ``agreement``, the Spearman between its two scorings, and
    ``spearman``, its Spearman with ``truth`` under the second, each with a bootstrap
    interval over architectures; ``bound`` = sqrt(agreement), what its correlation with an
    exact truth could reach at most (0 when the agreement is not positive)."""
    truth = np.asarray(truth, dtype=float)
    n = len(truth)
    idx = stats.bootstrap_indices(n, resamples, seed)
    r_truth = stats.rank_rows(truth[idx])  # shared by all estimators, as in _group_stats
    rows = []
    for name, values in first.items():
        a, b = scores_from_values(values), scores_from_values(second[name])
        if len(a) != n or len(b) != n:
            raise ValueError(f"{name}: {len(a)} and {len(b)} values for {n} architectures")
        r_b = stats.rank_rows(b[idx])  # the second scoring's ranks serve both correlations
        agree = stats.interval(stats.pearson_of_ranks(stats.rank_rows(a[idx]), r_b),
                               stats.spearman(a, b), n)
        rho = stats.interval(stats.pearson_of_ranks(r_b, r_truth), stats.spearman(b, truth), n)
        rows.append({"estimator": name, "n": n, "agreement": agree, "spearman": rho,
                     "bound": stats.reliability_bound(agree.value)})
    return rows


# -- outputs ---------------------------------------------------------------------------------------
def _f(x: float, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _iv(x: Interval | None) -> str:
    return "–" if x is None else x.fmt(2)


def format_report(report: Mapping[str, Any], title: str = "") -> str:
    """The markdown of ``study.md``."""
    ref = report["reference"]
    lines = ["# Estimator study: rank correlation with trained test accuracy", ""]
    if title:
        lines += [title, ""]
    lines += [f"{report['n']} architectures. Ground truth: test accuracy, the mean of both "
              "runs where an architecture was trained twice. Intervals: 95 % percentile "
              f"bootstrap over architectures ({report['resamples']} resamples, seed "
              f"{report['seed']}); the paired interval of {ref or 'the reference'} − other is "
              "taken on the same resamples. Partial: Spearman controlling for the trained "
              "network's MAdds (params), by residualised ranks.", ""]
    rt = report.get("retest") or {}
    if rt.get("n"):
        rel = Interval(rt["spearman"], rt["spearman_lo"], rt["spearman_hi"], rt["n"])
        lines += [f"**Reliability of the truth:** test–retest Spearman {rel.fmt(2)} over "
                  f"{rt['n']} architectures trained twice (mean |Δacc| "
                  f"{_f(100 * rt['mean_abs_diff'])} points). No estimator can correlate with "
                  f"this truth by more than sqrt(reliability) = {_f(rt['bound'])} "
                  f"[{_f(rt['bound_lo'])}, {_f(rt['bound_hi'])}]."
                  + (" Too few retested architectures for these intervals to mean much."
                     if rt["n"] < 10 else ""), ""]
    else:
        lines += ["**Reliability of the truth:** unknown (no architecture trained twice).", ""]
    seconds = report.get("seconds") or {}
    failed = report.get("failed") or {}
    for g in report["groups"]:
        head = "All architectures" if g["group"] == GROUP_ALL else f"Source group: {g['group']}"
        lines += [f"## {head} (n = {g['n']})", ""]
        diff_head = f" | {ref} − this (Spearman) | P({ref} better)" if ref else ""
        lines.append("| estimator | Spearman | Kendall" + diff_head +
                     " | partial, MAdds | partial, params | s / arch (median) | failed |")
        lines.append("|---" * (7 + (2 if ref else 0)) + "|")
        for r in g["rows"]:
            name = f"**{r['estimator']}**" if r["estimator"] == ref else r["estimator"]
            diff = ""
            if ref:
                diff = f" | {_iv(r['diff'])} | {_f(r['p_reference_better'])}"
            lines.append(f"| {name} | {_iv(r['spearman'])} | {_iv(r['kendall'])}{diff} | "
                         f"{_iv(r['partial_madds'])} | {_iv(r['partial_params'])} | "
                         f"{_f(seconds.get(r['estimator'], math.nan))} | "
                         f"{failed.get(r['estimator'], 0)} |")
        lines.append("")
    again = report.get("estimator_retest")
    if again:
        first = next(g for g in report["groups"] if g["group"] == GROUP_ALL)["rows"]
        rho_first = {r["estimator"]: r["spearman"] for r in first}
        lines += [f"## Each estimator scored again (seed {again['seed']}, all architectures)",
                  "", "Another search split and other random weights: how well each estimator "
                  f"agrees with itself, and its Spearman with the truth at seed {again['seed']} "
                  f"beside the one at seed {report['seed']} above. sqrt(agreement) bounds its "
                  "correlation with an exact truth.", "",
                  f"| estimator | agreement (Spearman, seed {report['seed']} vs "
                  f"{again['seed']}) | sqrt(agreement) | Spearman, seed {report['seed']} | "
                  f"Spearman, seed {again['seed']} |", "|---|---|---|---|---|"]
        for r in again["rows"]:
            lines.append(f"| {r['estimator']} | {_iv(r['agreement'])} | {_f(r['bound'])} | "
                         f"{_iv(rho_first.get(r['estimator']))} | {_iv(r['spearman'])} |")
        lines.append("")
    info = report["bins"]["info"]
    if info:
        lines += ["## Spearman within MAdds bins (all architectures)", ""]
        lines.append("| estimator | " + " | ".join(
            f"bin {b['bin']}: {b['madds_lo']:.2f}–{b['madds_hi']:.2f} M, n = {b['n']}"
            for b in info) + " |")
        lines.append("|---" * (len(info) + 1) + "|")
        for name, ivs in report["bins"]["rows"].items():
            lines.append(f"| {name} | " + " | ".join(_iv(iv) for iv in ivs) + " |")
        lines.append("")
    placement = report.get("placement") or {}
    if placement:
        counts = {g["group"]: g["n"] for g in report["groups"]}
        srcs = list(placement["truth"])
        lines += ["## Where each source is placed (all architectures)", "",
                  "Mean placement of a source's members among all architectures: 0 = best, "
                  "1 = worst (by trained accuracy for the truth, by score for an estimator).",
                  ""]
        lines.append("| ranking | " + " | ".join(f"{s} (n = {counts.get(s, '?')})"
                                               for s in srcs) + " |")
        lines.append("|---" * (len(srcs) + 1) + "|")
        for name, by_source in placement.items():
            label = "**truth**" if name == "truth" else name
            lines.append(f"| {label} | " + " | ".join(_f(by_source[s]) for s in srcs) + " |")
        lines.append("")
    return "\n".join(lines)


CSV_FIELDS = ["group", "estimator", "n", "spearman", "spearman_lo", "spearman_hi", "kendall",
              "kendall_lo", "kendall_hi", "diff", "diff_lo", "diff_hi", "p_reference_better",
              "partial_madds", "partial_madds_lo", "partial_madds_hi", "partial_params",
              "partial_params_lo", "partial_params_hi", "seconds_median", "failed"]


def _csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for g in report["groups"]:
        for r in g["rows"]:
            row: dict[str, Any] = {"group": g["group"], "estimator": r["estimator"],
                                   "n": r["n"],
                                   "p_reference_better": r["p_reference_better"],
                                   "seconds_median": report["seconds"].get(r["estimator"]),
                                   "failed": report["failed"].get(r["estimator"], 0)}
            for k in ("spearman", "kendall", "diff", "partial_madds", "partial_params"):
                iv = r[k]
                row[k], row[k + "_lo"], row[k + "_hi"] = ((iv.value, iv.lo, iv.hi) if iv
                                                          else (None, None, None))
            out.append(row)
    rt = report.get("retest") or {}
    if rt.get("n"):
        out.append({"group": GROUP_ALL, "estimator": "retest", "n": rt["n"],
                    "spearman": rt["spearman"], "spearman_lo": rt["spearman_lo"],
                    "spearman_hi": rt["spearman_hi"], "kendall": rt["kendall"]})
    return out


def write_report(report: Mapping[str, Any], out_dir: str | Path, title: str = ""
                 ) -> dict[str, Path]:
    """Write ``study.md``, ``correlation.csv``, ``bins.csv``, ``placement.csv`` (empty of
    rows with one source), ``correlation.png`` and, where the report has it,
    ``estimator_retest.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "correlation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(_csv_rows(report))
    with open(out / "bins.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["bin", "n", "madds_lo", "madds_hi", "estimator",
                                          "spearman", "spearman_lo", "spearman_hi"])
        w.writeheader()
        for name, ivs in report["bins"]["rows"].items():
            for b, iv in zip(report["bins"]["info"], ivs, strict=True):
                w.writerow({**b, "estimator": name, "spearman": iv.value,
                            "spearman_lo": iv.lo, "spearman_hi": iv.hi})
    placement = report.get("placement") or {}
    with open(out / "placement.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["ranking", "source", "mean_placement"])
        w.writeheader()
        for name, by_source in placement.items():
            for src, v in by_source.items():
                w.writerow({"ranking": name, "source": src, "mean_placement": v})
    again = report.get("estimator_retest")
    if again:
        with open(out / "estimator_retest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[
                "estimator", "n", "seed", "retest_seed", "agreement", "agreement_lo",
                "agreement_hi", "bound", "spearman", "spearman_lo", "spearman_hi"])
            w.writeheader()
            for r in again["rows"]:
                ag, rho = r["agreement"], r["spearman"]
                w.writerow({"estimator": r["estimator"], "n": r["n"], "seed": report["seed"],
                            "retest_seed": again["seed"], "agreement": ag.value,
                            "agreement_lo": ag.lo, "agreement_hi": ag.hi, "bound": r["bound"],
                            "spearman": rho.value, "spearman_lo": rho.lo,
                            "spearman_hi": rho.hi})
    (out / "study.md").write_text(format_report(report, title))
    png = out / "correlation.png"
    _plot(report, png, title)
    return {"md": out / "study.md", "csv": out / "correlation.csv",
            "bins": out / "bins.csv", "placement": out / "placement.csv", "png": png}


def _plot(report: Mapping[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report["groups"]
    names = [r["estimator"] for r in groups[0]["rows"]]
    x = np.arange(len(names))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 4), 4.6))
    for k, g in enumerate(groups):
        v = np.array([r["spearman"].value for r in g["rows"]], dtype=float)
        lo = np.array([r["spearman"].lo for r in g["rows"]], dtype=float)
        hi = np.array([r["spearman"].hi for r in g["rows"]], dtype=float)
        err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
        ax.errorbar(x - 0.4 + width * (k + 0.5), v, yerr=err, fmt="o", ms=4, capsize=2,
                    label=f"{g['group']} (n={g['n']})")
    rt = report.get("retest") or {}
    if rt.get("n") and math.isfinite(rt.get("bound", math.nan)):
        ax.axhline(rt["bound"], color="grey", ls="--", lw=1,
                   label=f"sqrt(reliability) {rt['bound']:.2f}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("Spearman with test accuracy (95 % CI)")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        import textwrap

        width = int(fig.get_size_inches()[0] * 12)  # characters of 8-point text per line
        ax.set_title("\n".join(textwrap.wrap(title, width)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
