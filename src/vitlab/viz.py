"""Plots, written as PNG files with matplotlib's non-interactive Agg backend.

Every plot goes through :func:`save_figure`, which writes to a temporary file beside the target and
renames it into place, so that an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically and close it. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    from vitlab.train.checkpoint import FILE_MODE

    os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would make the plot unreadable to others
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ------------------------------------------------------------------------------ activations (Mish, Swish)


def plot_activations(out: str | os.PathLike[str]) -> Path:
    """Mish, Swish, GELU and ReLU (left) and their first derivatives (right) on x ∈ [−5, 5], as one PNG.

    The derivatives are taken by autograd through vitlab's modules (``get_activation``); Mish's minimum
    (x ≈ −1.1924, y ≈ −0.30884) is marked. Returns the written path.
    """
    import torch

    from vitlab.nn.activations import get_activation

    x = torch.linspace(-5.0, 5.0, 1001, dtype=torch.float64, requires_grad=True)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (("mish", "Mish"), ("swish", "Swish (SiLU)"), ("gelu", "GELU"), ("relu", "ReLU")):
        y = get_activation(name)(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        ax_f.plot(x.detach(), y.detach(), label=label)
        ax_d.plot(x.detach(), grad, label=label)
    ax_f.plot([-1.19237], [-0.30884], "k.", ms=6)
    ax_f.annotate("min ≈ −0.3088 at −1.1924", (-1.19237, -0.30884), (-4.8, 1.5), fontsize=8,
                  arrowprops=dict(arrowstyle="->", lw=0.6))
    ax_f.set(title="activation f(x)", xlabel="x", ylim=(-1.0, 5.0))
    ax_d.set(title="first derivative f'(x)", xlabel="x", ylim=(-0.3, 1.3))
    for ax in (ax_f, ax_d):
        ax.axhline(0, color="0.7", lw=0.6)
        ax.axvline(0, color="0.7", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out)


def plot_legendre_fit(x, y, y_pred, out: str | os.PathLike[str], fit: dict | None = None) -> Path:  # noqa: ANN001
    """sin(x) against the fitted a + b·P3(c + d·x) of the Legendre demo. x, y, y_pred: (N,). Returns the path."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(x, y, label="sin(x)")
    label = "a + b·P3(c + d·x)"
    if fit is not None:
        label += f"\na={fit['a']:.2g}, b={fit['b']:.4f}, c={fit['c']:.2g}, d={fit['d']:.4f}"
        ax.set_title(f"Legendre P3 fit, final loss {fit['loss']:.4f}")
    ax.plot(x, y_pred, "--", label=label)
    ax.set(xlabel="x", ylabel="y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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


# ------------------------------------------------------------------------------------ training runs
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


# ------------------------------------------------------------------ mixing, calibration, positional encoding


def plot_mixing(out: str | os.PathLike[str], n: int = 8, seed: int = 0) -> Path:
    """Original / Mixup / CutMix / Cutout samples from the embedded digits, one row each, as a PNG.

    ``n`` training digits (8×8, mixed at their own resolution, upsampled ×8 with nearest for display) go
    through :class:`vitlab.mixing.Mixer` in ``'elem'`` mode (one draw per sample; the partner of sample
    ``i`` is ``n − 1 − i``), each technique with its own ``torch.Generator`` seeded from ``seed``. A mixed
    image's title gives its soft target, ``λ`` on its own label and ``1 − λ`` on its partner's.
    """
    import torch
    import torch.nn.functional as F

    from vitlab.data.digits import load_digits_splits
    from vitlab.mixing import Mixer

    images, labels = load_digits_splits(seed=0)["train"]
    # the first training image of each class, then the next ones, so the columns show different digits
    order = torch.cat([torch.nonzero(labels == c).flatten()[:1] for c in range(10)])
    pick = order[:n] if n <= order.numel() else torch.arange(n)
    x, y = images[pick], labels[pick]
    rows = [("original", None)]
    rows.append(("Mixup α=0.8", Mixer(10, mixup_alpha=0.8, mode="elem", generator=torch.Generator().manual_seed(seed))))
    rows.append(("CutMix α=1.0", Mixer(10, cutmix_alpha=1.0, mode="elem", generator=torch.Generator().manual_seed(seed + 1))))
    rows.append(("Cutout 4×4", Mixer(10, cutout_size=4, mode="elem", generator=torch.Generator().manual_seed(seed + 2))))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.35 * n, 1.62 * len(rows)), squeeze=False)
    for r, (name, mixer) in enumerate(rows):
        if mixer is None:
            shown, soft = x, F.one_hot(y, 10).float()
        else:
            shown, soft = mixer(x, y)
        big = F.interpolate(shown, scale_factor=8, mode="nearest")  # (n, 1, 64, 64)
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(big[i, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            own, partner = int(y[i]), int(y[n - 1 - i])
            lam = float(soft[i, own]) if own != partner else 1.0
            if mixer is None or name.startswith("Cutout") or lam >= 1.0 - 1e-9:
                ax.set_title(f"{own}: 1.00", fontsize=8)
            else:
                ax.set_title(f"{own}: {lam:.2f} | {partner}: {1.0 - lam:.2f}", fontsize=7)
            if i == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle("mixing on the embedded digits (titles: soft target, label: weight λ)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def _reliability_panel(ax, ax_count, probs, labels, n_bins: int, title: str | None) -> float:  # noqa: ANN001
    """Draw one reliability diagram (bars + gap) and its confidence histogram; returns the ECE."""
    from vitlab.metrics import expected_calibration_error, reliability_bins

    acc, conf, counts = reliability_bins(probs, labels, n_bins)
    ece = float(expected_calibration_error(probs, labels, n_bins))
    acc, conf, counts = acc.cpu().numpy(), conf.cpu().numpy(), counts.cpu().numpy()
    width = 1.0 / n_bins
    left = [b * width for b in range(n_bins)]
    filled = counts > 0
    ax.bar([l for l, f in zip(left, filled) if f], acc[filled], width=width, align="edge", color="tab:blue",
           edgecolor="black", lw=0.5, label="accuracy")
    # the gap between accuracy and mean confidence of each bin, shaded
    gap_lo = [min(a, c) for a, c in zip(acc[filled], conf[filled])]
    gap_h = [abs(a - c) for a, c in zip(acc[filled], conf[filled])]
    ax.bar([l for l, f in zip(left, filled) if f], gap_h, bottom=gap_lo, width=width, align="edge",
           facecolor=(1.0, 0.3, 0.3, 0.25), edgecolor="tab:red", hatch="///", lw=0.8,
           label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1.0, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.set_title(f"{title + ': ' if title else ''}ECE = {ece:.4f} ({n_bins} bins)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    total = max(int(counts.sum()), 1)
    ax_count.bar(left, counts / total, width=width, align="edge", color="0.5", edgecolor="black", lw=0.5)
    ax_count.set(xlim=(0, 1), xlabel="confidence (max probability)", ylabel="fraction")
    ax_count.grid(alpha=0.3)
    return ece


def plot_reliability_diagram(
    probs,  # noqa: ANN001 - torch.Tensor (N, C)
    labels,  # noqa: ANN001 - torch.Tensor (N,)
    out: str | os.PathLike[str],
    n_bins: int = 15,
    title: str | None = None,
) -> Path:
    """Reliability diagram (Guo et al. 2017, Fig. 1): accuracy per confidence bin against the diagonal.

    Bars are the accuracy of the samples whose confidence (largest probability) falls in each of
    ``n_bins`` equal-width bins ``(lo, hi]`` (:func:`vitlab.metrics.reliability_bins`); the shaded part
    of each bar is its gap to the bin's mean confidence; the ECE (:func:`vitlab.metrics.expected_calibration_error`)
    is in the title. Below: the fraction of samples per bin. Empty bins have no bar.

    Args:
        probs: (N, C) predicted probabilities (``logits.softmax(1)``).
        labels: (N,) true class indices.
        out: output PNG path.
        n_bins: number of bins (15 in the paper).
        title: prefix of the title.

    Returns:
        The written path.
    """
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(4.6, 5.6), sharex=True,
                                       gridspec_kw=dict(height_ratios=[3, 1]))
    _reliability_panel(ax, ax_count, probs, labels, n_bins, title)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_temperature_scaling(
    logits,  # noqa: ANN001 - torch.Tensor (N, C)
    labels,  # noqa: ANN001 - torch.Tensor (N,)
    temperature: float,
    out: str | os.PathLike[str],
    n_bins: int = 15,
) -> Path:
    """Reliability diagrams before and after temperature scaling (Guo et al. 2017, Sec. 4.2), side by side.

    Left: ``softmax(logits)``; right: ``softmax(logits / T)`` with ``T = temperature`` (e.g. from
    :func:`vitlab.metrics.fit_temperature` on the validation split). Accuracy is the same in both (a
    positive temperature changes no argmax); only the confidences move.

    Args:
        logits: (N, C) logits.
        labels: (N,) true class indices.
        temperature: ``T > 0``.
        out: output PNG path.
        n_bins: number of bins.

    Returns:
        The written path.
    """
    if not temperature > 0:
        from vitlab.errors import ConfigError

        raise ConfigError(f"temperature must be > 0, got {temperature}; use fit_temperature(logits, labels)")
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 5.6), sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
    logits = logits.detach().double()
    _reliability_panel(axes[0, 0], axes[1, 0], logits.softmax(1), labels, n_bins, "before (T = 1)")
    _reliability_panel(axes[0, 1], axes[1, 1], (logits / temperature).softmax(1), labels, n_bins,
                       f"after (T = {temperature:.3g})")
    fig.tight_layout()
    return save_figure(fig, out)


def plot_posenc(out: str | os.PathLike[str], length: int = 64, dim: int = 128) -> Path:
    """The 1D sinusoidal encoding (Vaswani et al. 2017, Sec. 3.5) and its dot-product matrix, side by side.

    Left: ``PE`` (``length`` positions × ``dim`` channels, interleaved sin / cos). Right:
    ``PE · PEᵀ``, whose entry (p, q) is ``Σ_i cos((p − q) ω_i)``: constant along every diagonal (it
    depends only on the offset), symmetric, largest (``dim / 2``) on the main diagonal.
    """
    import torch

    from vitlab.nn.posenc import sinusoidal_1d

    pe = sinusoidal_1d(length, dim, dtype=torch.float64)
    gram = pe @ pe.T
    fig, (ax_pe, ax_dot) = plt.subplots(1, 2, figsize=(11, 4.4))
    im = ax_pe.imshow(pe.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax_pe.set(title=f"PE(pos, j), d = {dim} (even j: sin, odd j: cos)", xlabel="channel j", ylabel="position")
    fig.colorbar(im, ax=ax_pe, fraction=0.046)
    im = ax_dot.imshow(gram.numpy(), cmap="viridis", interpolation="nearest")
    ax_dot.set(title="PE(p) · PE(q) = Σᵢ cos((p − q) ωᵢ)", xlabel="position q", ylabel="position p")
    fig.colorbar(im, ax=ax_dot, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, out)


# ------------------------------------------------------------------------ reproduce (vitlab reproduce)


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
    import math

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
    import numpy as np

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


# ------------------------------------------------------------------ what a ViT learned (ViT paper, Fig. 6 and 7)


def _image_for_display(image):  # noqa: ANN001, ANN202 - (C, H, W) tensor -> array for imshow, with its colour map
    array = image.detach().float().cpu()
    array = (array - array.min()) / (array.max() - array.min()).clamp_min(1e-12)
    if array.shape[0] == 1:
        return array[0].numpy(), "gray"
    return array[:3].permute(1, 2, 0).numpy(), None


def plot_attention_rollout(images, maps, out: str | os.PathLike[str], titles: list[str] | None = None) -> Path:  # noqa: ANN001
    """Each image beside itself with its attention-rollout map laid over it (bilinear upsampling), as a PNG.

    Args:
        images: (B, C, H, W) the model's input images.
        maps: (B, h, w) relevance per patch (:meth:`VisionTransformer.attention_rollout`).
        titles: one caption per image (e.g. "true 3 / predicted 3 (0.98)").
    """
    import torch.nn.functional as F

    count = images.shape[0]
    upsampled = F.interpolate(maps.detach().float().cpu().unsqueeze(1), size=images.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
    fig, axes = plt.subplots(2, count, figsize=(1.9 * count, 4.0), squeeze=False)
    for i in range(count):
        picture, cmap = _image_for_display(images[i])
        axes[0, i].imshow(picture, cmap=cmap)
        axes[1, i].imshow(picture, cmap=cmap)
        axes[1, i].imshow(upsampled[i].numpy(), cmap="jet", alpha=0.5)
        if titles:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("attention rollout (Abnar & Zuidema 2020): where the prediction looks", fontsize=10)
    return save_figure(fig, out)


def plot_position_similarity(similarity, out: str | os.PathLike[str]) -> Path:  # noqa: ANN001
    """ViT Fig. 7 (centre): for each patch, the cosine similarity of its position embedding to all others.

    Args:
        similarity: (h, w, h, w) from :func:`vitlab.models.vit_analysis.position_embedding_similarity`.
    """
    height, width = similarity.shape[:2]
    fig, axes = plt.subplots(height, width, figsize=(0.9 * width + 1, 0.9 * height + 0.6), squeeze=False)
    for r in range(height):
        for c in range(width):
            image = axes[r, c].imshow(similarity[r, c].cpu().numpy(), cmap="viridis", vmin=-1, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(str(r + 1), fontsize=7)
    for c in range(width):
        axes[-1, c].set_xlabel(str(c + 1), fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    fig.suptitle("position embedding similarity (input patch row / column)", fontsize=10)
    return save_figure(fig, out)


def plot_patch_components(components, share, out: str | os.PathLike[str]) -> Path:  # noqa: ANN001
    """ViT Fig. 7 (left): the principal components of the patch-embedding filters, one tile each.

    Args:
        components: (k, C, P, P) from :func:`vitlab.models.vit_analysis.patch_embedding_components`.
        share: (k,) the share of variance each explains.
    """
    count = components.shape[0]
    cols = min(7, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < count:
            picture, cmap = _image_for_display(components[index])
            ax.imshow(picture, cmap=cmap or None)
            ax.set_title(f"{100 * float(share[index]):.1f}%", fontsize=7)
    fig.suptitle("principal components of the patch-embedding filters (% of variance)", fontsize=10)
    return save_figure(fig, out)


def write_vit_figures(model, images, out_dir: str | os.PathLike[str], titles: list[str] | None = None) -> list[Path]:  # noqa: ANN001
    """The ViT paper's views of what was learned, for a trained :class:`~vitlab.models.VisionTransformer`.

    Writes ``patch_embedding_pcs.png`` (Fig. 7 left), ``position_similarity.png`` (Fig. 7 centre; learned
    position embeddings only) and ``attention_rollout.png`` (Fig. 6 style, on ``images``) into ``out_dir``.
    Models that are not ViTs get none (returns ``[]``).

    Args:
        model: the trained model.
        images: (B, C, H, W) a few input images, as the model takes them (normalised).
        titles: one caption per image.
    """
    from vitlab.models.vit import VisionTransformer
    from vitlab.models.vit_analysis import patch_embedding_components, position_embedding_similarity
    from vitlab.nn.posenc import LearnedPositionEmbedding

    if not isinstance(model, VisionTransformer):
        return []
    out_dir = Path(out_dir)
    written = []
    if model.patch_embed.stem_type == "linear":  # a convolutional stem has no single patch filter bank
        components, share = patch_embedding_components(model.patch_embed.proj.weight)
        written.append(plot_patch_components(components, share, out_dir / "patch_embedding_pcs.png"))
    if isinstance(model.pos_embed, LearnedPositionEmbedding):
        similarity = position_embedding_similarity(model.pos_embed.weight, model.patch_embed.grid_size, model.num_prefix_tokens)
        written.append(plot_position_similarity(similarity, out_dir / "position_similarity.png"))
    maps = model.attention_rollout(images)
    written.append(plot_attention_rollout(images, maps, out_dir / "attention_rollout.png", titles))
    return written
