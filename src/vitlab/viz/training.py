"""Training runs: learning curves, confusion matrices, the seq2seq curves, and the seed comparisons of
``vitlab reproduce`` (Fig. of each recipe's arms over seeds) and Müller et al.'s penultimate-layer projection.

Every figure is written by :func:`vitlab.viz.figure.save_figure` (atomic PNG).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vitlab.viz.figure import plt, save_figure


def plot_learning_curves(history: list[dict], out: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch (train and validation) from a run's metrics rows, as a PNG."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], label="train (augmented, smoothed)")
    val_rows = [row for row in history if "val_loss" in row]
    if val_rows:
        ax_loss.plot([r["epoch"] for r in val_rows], [r["val_loss"] for r in val_rows], label="validation NLL")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [row["train_acc"] for row in history], label="train")
    if val_rows:
        ax_acc.plot([r["epoch"] for r in val_rows], [r["val_acc1"] for r in val_rows], label="validation top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.suptitle("learning curves")
    return save_figure(fig, out)


def plot_confusion_matrix(confusion, classes: list[str], out: str | os.PathLike[str]) -> Path:
    """Confusion matrix (rows: true class, columns: predicted), counts written in the cells, as a PNG."""
    counts = confusion.cpu().numpy()
    k = counts.shape[0]
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    if k <= 30:
        peak = counts.max() if counts.size else 0
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    color = "white" if counts[i, j] > peak / 2 else "black"
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(k), classes, rotation=90 if max(map(len, classes)) > 2 else 0)
        ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = counts.sum()
    accuracy = counts.trace() / total if total else 0.0
    ax.set_title(f"confusion matrix (accuracy {accuracy:.4f}, n={int(total)})")
    return save_figure(fig, out)


def plot_seq2seq_curves(rows: list[dict], path: str | os.PathLike[str], title: str = "seq2seq training") -> Path:
    """Training loss and test exact-match accuracy of a seq2seq run against the step.

    Args:
        rows: metric rows with ``step`` and ``loss``; rows that also hold ``test_accuracy`` are plotted on the
            right-hand axis.
        path: output PNG.
        title: figure title.
    """
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    evals = [(r["step"], r["test_accuracy"]) for r in rows if r.get("test_accuracy") not in (None, "")]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(steps, losses, color="tab:blue", lw=1.0, label="train loss (label-smoothed)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    if evals:
        ax2.plot([s for s, _ in evals], [a for _, a in evals], "o-", color="tab:red", label="test exact match")
    ax2.set_ylabel("test exact-match accuracy", color="tab:red")
    ax2.set_ylim(0.0, 1.02)
    ax.set_title(title)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return save_figure(fig, path)


def plot_seed_comparison(
    variants: list[str],
    values: list[list[float]],
    intervals: list[tuple[float, float, float]],
    label: str,
    out: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """One metric of a recipe's variants: each seed as a dot, the mean with its 95% interval as a bar.

    Args:
        variants: the variant names (x axis).
        values: per variant, the metric of each seed.
        intervals: per variant, (mean, low, high); low/high NaN (one seed) draws the mean only.
        label: y-axis label (metric and unit).
        out: PNG path.
    """
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(variants), 3.2))
    for i, (vals, (mean, low, high)) in enumerate(zip(values, intervals)):
        jitter = [i + 0.12 * (j - (len(vals) - 1) / 2) / max(len(vals), 1) for j in range(len(vals))]
        ax.scatter(jitter, vals, s=14, color="0.55", zorder=2, label="seed" if i == 0 else None)
        if not (math.isnan(low) or math.isnan(high)):
            ax.errorbar([i + 0.25], [mean], yerr=[[mean - low], [high - mean]], fmt="o", color="C0", capsize=4,
                        zorder=3, label="mean, 95% interval" if i == 0 else None)
        else:
            ax.plot([i + 0.25], [mean], "o", color="C0", zorder=3, label="mean" if i == 0 else None)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels(variants, rotation=15)
    ax.set_ylabel(label)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out)


def plot_penultimate_projection(panels: list[dict], out: str | os.PathLike[str], ncols: int = 2) -> Path:
    """Müller et al. 2019 Fig. 1: activations projected onto the plane through three class templates.

    Args:
        panels: each ``{"title": str, "coords": (N, 2) array, "labels": (N,) ints in 0..2, "names": 3 class
            names, "templates": (3, 2) array of the templates' own coordinates}``.
        out: PNG path.
        ncols: panels per row.
    """
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        coords, labels = np.asarray(panel["coords"]), np.asarray(panel["labels"])
        for k in range(3):
            pts = coords[labels == k]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.6, color=f"C{k}", label=str(panel["names"][k]))
        tmpl = np.asarray(panel["templates"])
        ax.scatter(tmpl[:, 0], tmpl[:, 1], marker="*", s=120, c=[f"C{k}" for k in range(3)], edgecolors="k", zorder=3)
        ax.set_title(panel["title"], fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, markerscale=2, title="class (★ = template)", title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)
