"""What a training run writes besides its checkpoint: ``metrics.csv``, the training-curve
plot ``curve.png`` and the content of ``result.json``."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rwenas.fit.checkpoint import atomic_write_bytes

__all__ = ["metrics_csv", "plot_curves", "result_json"]


def metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """``metrics.csv``'s text: one row per epoch."""
    columns = ["epoch", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc"]
    if history and "test_top5" in history[0]:
        columns.append("test_top5")
    columns.append("seconds")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow([row[c] if isinstance(row[c], int) else f"{row[c]:.6g}"
                         for c in columns])
    return buf.getvalue()


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss and error (top-1, top-5 where recorded) per epoch, training and test, as PNG
    (matplotlib's Agg canvas; no display, no pyplot state; written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_err = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train (augmented)",
                 marker=".")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], label="test", marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_err.plot(epochs, [100 * (1 - r["train_acc"]) for r in history], label="train",
                marker=".")
    ax_err.plot(epochs, [100 * (1 - r["test_acc"]) for r in history], label="test top-1",
                marker=".")
    if history and "test_top5" in history[0]:
        ax_err.plot(epochs, [100 * (1 - r["test_top5"]) for r in history],
                    label="test top-5", marker=".")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def result_json(res: Any, run_info: Mapping[str, Any],
                 device: torch.device) -> dict[str, Any]:
    """``result.json``'s content of a finished :class:`rwenas.fit.loop.TrainResult`."""
    last = res.history[-1] if res.history else {}
    out: dict[str, Any] = {
        "test_error": res.test_error,
        "test_accuracy": last.get("test_acc"),
    }
    if res.test_top5_error is not None:
        out["test_top5_error"] = res.test_top5_error
    out.update({
        "params_m": round(res.params_m, 6),
        "madds_m": round(res.madds_m, 6),
        "seconds": round(res.seconds, 3),
        "epochs": res.epochs,
        "final": last,
        "device": str(device),
    })
    for key in ("architecture", "network", "recipe", "dataset", "data", "seed"):
        if key in run_info:
            out[key] = run_info[key]
    return out
