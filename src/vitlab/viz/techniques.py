"""The techniques, one figure each: activations (Mish, Swish), the Legendre P3 fit, mixing (CutMix, Mixup,
Cutout), calibration (reliability diagram, temperature scaling) and positional encodings.

Every figure is written by :func:`vitlab.viz.figure.save_figure` (atomic PNG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from vitlab.data.digits import load_digits_splits
from vitlab.errors import ConfigError
from vitlab.metrics import expected_calibration_error, reliability_bins
from vitlab.mixing import Mixer
from vitlab.nn.activations import get_activation
from vitlab.nn.posenc import sinusoidal_1d
from vitlab.viz.figure import plt, save_figure


def plot_activations(out: str | os.PathLike[str]) -> Path:
    """Mish, Swish, GELU and ReLU (left) and their first derivatives (right) on x ∈ [−5, 5], as one PNG.

    The derivatives are taken by autograd through vitlab's modules (``get_activation``); Mish's minimum
    (x ≈ −1.1924, y ≈ −0.30884) is marked. Returns the written path.
    """

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


def plot_mixing(out: str | os.PathLike[str], n: int = 8, seed: int = 0) -> Path:
    """Original / Mixup / CutMix / Cutout samples from the embedded digits, one row each, as a PNG.

    ``n`` training digits (8×8, mixed at their own resolution, upsampled ×8 with nearest for display) go
    through :class:`vitlab.mixing.Mixer` in ``'elem'`` mode (one draw per sample; the partner of sample
    ``i`` is ``n − 1 − i``), each technique with its own ``torch.Generator`` seeded from ``seed``. A mixed
    image's title gives its soft target, ``λ`` on its own label and ``1 − λ`` on its partner's.
    """

    images, labels = load_digits_splits(seed=0)["train"]
    # the first training image of each class, then the next ones, so the columns show different digits
    order = torch.cat([torch.nonzero(labels == c).flatten()[:1] for c in range(10)])
    pick = order[:n] if n <= order.numel() else torch.arange(n)
    x, y = images[pick], labels[pick]
    rows = [("original", None)]
    rows.append(("Mixup α=0.8", Mixer(10, mixup_alpha=0.8, mode="elem", generator=torch.Generator().manual_seed(seed))))
    rows.append(
        ("CutMix α=1.0", Mixer(10, cutmix_alpha=1.0, mode="elem", generator=torch.Generator().manual_seed(seed + 1)))
    )
    rows.append(
        ("Cutout 4×4", Mixer(10, cutout_size=4, mode="elem", generator=torch.Generator().manual_seed(seed + 2)))
    )
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
    acc, conf, counts = reliability_bins(probs, labels, n_bins)
    ece = float(expected_calibration_error(probs, labels, n_bins))
    acc, conf, counts = acc.cpu().numpy(), conf.cpu().numpy(), counts.cpu().numpy()
    width = 1.0 / n_bins
    left = [b * width for b in range(n_bins)]
    filled = counts > 0
    ax.bar([x for x, f in zip(left, filled) if f], acc[filled], width=width, align="edge", color="tab:blue",
           edgecolor="black", lw=0.5, label="accuracy")
    # the gap between accuracy and mean confidence of each bin, shaded
    gap_lo = [min(a, c) for a, c in zip(acc[filled], conf[filled])]
    gap_h = [abs(a - c) for a, c in zip(acc[filled], conf[filled])]
    ax.bar([x for x, f in zip(left, filled) if f], gap_h, bottom=gap_lo, width=width, align="edge",
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
