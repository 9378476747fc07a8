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
